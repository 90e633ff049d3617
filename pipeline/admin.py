from django.contrib import admin

from common.service_admin import NoRawDeleteMixin

from .models import ModelVersion, Prediction, PrelabelJob


@admin.register(ModelVersion)
class ModelVersionAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["kind", "name", "version", "source", "is_active", "created_at"]
    list_filter = ["kind", "source", "is_active"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]


@admin.register(PrelabelJob)
class PrelabelJobAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["id", "spec", "status", "total", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in PrelabelJob._meta.fields]


@admin.register(Prediction)
class PredictionAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["id", "image", "detector_version", "recognizer_version", "min_confidence", "created_at"]
    readonly_fields = [f.name for f in Prediction._meta.fields]
