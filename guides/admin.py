"""Admin for guides: read-mostly; changes go through the services (admin actions)."""
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from common.service_admin import NoRawDeleteMixin

from . import services
from .models import (
    Answer,
    Contract,
    FaqEntry,
    Guide,
    GuideAcknowledgement,
    GuideExample,
    GuideVersion,
    Notification,
    Question,
)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class FaqInline(ReadOnlyInline):
    model = FaqEntry
    fields = ["position", "question_text", "answer_md", "source_question"]


class ExampleInline(ReadOnlyInline):
    model = GuideExample
    fields = ["kind", "image", "caption", "regions"]


@admin.register(Guide)
class GuideAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["title", "spec", "created_at"]
    search_fields = ["title", "spec__name"]
    readonly_fields = ["spec", "created_by", "created_at"]

    def has_add_permission(self, request):
        return False  # created through the pages or the API (guide_create)


@admin.register(GuideVersion)
class GuideVersionAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["guide", "number", "status", "published_at", "published_by"]
    list_filter = ["status"]
    search_fields = ["guide__title", "body_md"]
    readonly_fields = [f.name for f in GuideVersion._meta.fields]
    inlines = [ExampleInline, FaqInline]
    actions = ["publish"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Publish the selected drafts")
    def publish(self, request, queryset):
        for version in queryset.filter(status=GuideVersion.Status.DRAFT):
            try:
                services.guide_version_publish(version=version, by=request.user)
            except ValidationError as exc:
                self.message_user(request, f"{version}: {'; '.join(exc.messages)}", messages.ERROR)


@admin.register(GuideAcknowledgement)
class GuideAcknowledgementAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["user", "version", "acknowledged_at"]
    list_filter = ["version__guide"]
    search_fields = ["user__username"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AnswerInline(ReadOnlyInline):
    model = Answer
    fields = ["author", "body", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Question)
class QuestionAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["title", "vendor", "spec", "status", "promoted_to_faq", "created_at"]
    list_filter = ["status", "promoted_to_faq", "vendor"]
    search_fields = ["title", "body"]
    readonly_fields = [f.name for f in Question._meta.fields]
    inlines = [AnswerInline]
    actions = ["close"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Close the selected questions")
    def close(self, request, queryset):
        for question in queryset:
            services.question_close(question=question, by=request.user)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["user", "kind", "message", "read_at", "emailed_at", "created_at"]
    list_filter = ["kind"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Contract)
class ContractAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["vendor", "spec", "currency", "price_regions", "price_latex", "price_full", "agreed_quantity",
                    "deadline"]
    list_filter = ["vendor", "currency"]
    readonly_fields = [f.name for f in Contract._meta.fields]

    def has_add_permission(self, request):
        return False  # through the contracts page or API (contract_create validates)
