from django.contrib import admin, messages

from common.service_admin import NoRawDeleteMixin

from . import webhooks
from .models import ModelVersion, Prediction, PrelabelJob, Webhook, WebhookDelivery


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


class _ReadOnly(NoRawDeleteMixin, admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _webhooks_set_active(active: bool, label: str):
    def action(modeladmin, request, queryset):
        for webhook in queryset:
            webhooks.webhook_update(webhook=webhook, active=active)
        modeladmin.message_user(request, f"{queryset.count()} webhook(s) {label}.", messages.SUCCESS)

    action.__name__ = f"webhooks_{label.replace(' ', '_')}"
    action.short_description = f"{label.capitalize()} selected webhooks"
    return action


@admin.register(Webhook)
class WebhookAdmin(_ReadOnly):
    """Browse webhooks and switch them off (a receiver gone wrong); never their secret. Owners
    make, change and delete them through the API (pipeline.webhooks services)."""

    list_display = ["id", "owner", "url", "events", "active", "secret_prefix", "created_at"]
    list_filter = ["active"]
    search_fields = ["url", "owner__username"]
    list_select_related = ["owner"]
    exclude = ["secret"]  # HMAC key: shown to its owner once, at creation
    actions = [_webhooks_set_active(False, "switched off"), _webhooks_set_active(True, "switched on")]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_ReadOnly):
    """What was sent to each webhook: read-only records."""

    list_display = ["id", "webhook", "event", "status", "attempts", "response_code", "created_at", "delivered_at"]
    list_filter = ["status", "event"]
    search_fields = ["webhook__url", "webhook__owner__username"]
    list_select_related = ["webhook"]
