"""Admin for labeling. Workflow rows are read-only here: they change only through
the services (queue, annotation saves, reviews), which the actions below call."""
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from common.service_admin import NoRawDeleteMixin

from . import services
from .models import (
    Annotation,
    AnnotationVersion,
    Batch,
    BatchEvent,
    Claim,
    Prediction,
    Region,
    Review,
    Task,
    Vendor,
    VendorMembership,
)


class MembershipInline(admin.TabularInline):
    model = VendorMembership
    extra = 0
    can_delete = False  # a vendor person without a vendor could no longer work or be managed
    raw_id_fields = ["user"]


@admin.register(Vendor)
class VendorAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "contact_email", "active"]
    search_fields = ["name"]
    inlines = [MembershipInline]


class ReadOnlyAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    """Browse and search only: writes (deletes included) go through labeling.services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _set_status(status: str, label: str):
    def action(modeladmin, request, queryset):
        done, refused = 0, []
        for batch in queryset:
            try:
                services.batch_update(batch=batch, by=request.user, status=status)
            except ValidationError as exc:
                # A reopening needs a reason, which an admin action has no place to ask for.
                refused.append(f"{batch.name}: {' '.join(exc.messages)}")
            else:
                done += 1
        modeladmin.message_user(request, f"{done} batch(es) {label}.", messages.SUCCESS)
        for line in refused:
            modeladmin.message_user(request, f"{line} Reopen it from its edit page.", messages.ERROR)

    action.__name__ = f"batch_{status}"
    action.short_description = f"Mark selected batches {label}"
    return action


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ["name", "spec", "vendor", "kind", "unit_price", "currency", "agreed_quantity", "overlap",
                    "deadline", "status", "created_at"]
    list_filter = ["status", "kind", "vendor"]
    search_fields = ["name", "spec__name", "vendor__name"]
    list_select_related = ["spec", "vendor"]
    actions = [_set_status(Batch.Status.ACTIVE, "active"), _set_status(Batch.Status.PAUSED, "paused"),
               _set_status(Batch.Status.CLOSED, "closed")]


@admin.register(BatchEvent)
class BatchEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "batch", "by", "kind", "changes", "reason"]
    list_filter = ["kind"]
    search_fields = ["batch__name", "by__username", "reason"]
    list_select_related = ["batch", "by"]


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = ["id", "batch", "image", "status", "overlap", "slots_taken", "is_gold", "priority",
                    "model_confidence", "updated_at"]
    list_filter = ["status", "is_gold", "batch__vendor"]
    raw_id_fields = ["batch", "image"]
    list_select_related = ["batch", "image"]


@admin.register(Claim)
class ClaimAdmin(ReadOnlyAdmin):
    list_display = ["task", "annotator", "state", "claimed_at", "expires_at"]
    list_filter = ["state"]
    raw_id_fields = ["task", "annotator"]


class RegionInline(admin.TabularInline):
    model = Region
    extra = 0
    can_delete = False
    fields = ["index", "kind", "points", "latex", "latex_normalized", "illegible", "cut_off", "categories"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AnnotationVersion)
class AnnotationVersionAdmin(ReadOnlyAdmin):
    list_display = ["annotation", "number", "author", "time_spent_seconds", "started_from", "created_at"]
    raw_id_fields = ["annotation", "author", "started_from"]
    inlines = [RegionInline]


@admin.register(Annotation)
class AnnotationAdmin(ReadOnlyAdmin):
    list_display = ["id", "task", "annotator", "status", "version", "submitted_at", "updated_at"]
    list_filter = ["status", "task__batch__vendor"]
    raw_id_fields = ["task", "annotator", "current"]
    list_select_related = ["task", "annotator"]


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ["annotation", "reviewer", "decision", "reasons", "created_at"]
    list_filter = ["decision"]
    raw_id_fields = ["annotation", "version", "reviewer"]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ["image", "model_name", "model_version", "confidence", "created_at"]
    list_filter = ["model_name", "model_version"]
    raw_id_fields = ["image"]
