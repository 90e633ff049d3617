"""Admin for curation. Writes that have rules go through the services."""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from common.latex import character_problems
from common.service_admin import NoRawDeleteMixin, ServiceAdminMixin

from . import services
from .models import (
    Category,
    DatasetSpec,
    Export,
    Image,
    ImportJob,
    Licence,
    ModelRequirement,
    Snapshot,
    Source,
    Takedown,
)


@admin.register(Licence)
class LicenceAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["code", "name", "family", "allows_commercial", "allows_derivatives", "share_alike",
                    "requires_attribution"]
    list_filter = ["family", "allows_commercial", "share_alike"]
    search_fields = ["code", "name"]

    def save_model(self, request, obj, form, change):
        data = {f: form.cleaned_data[f] for f in services.LICENCE_FIELDS if f in form.cleaned_data}
        if change:
            services.licence_update(licence=obj, **data)
        else:
            obj.pk = services.licence_create(**data).pk
            obj._state.adding = False


@admin.register(Source)
class SourceAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "licence", "copyright_holder", "acquired_on"]
    list_filter = ["kind", "licence__family", "licence__allows_commercial"]
    search_fields = ["name", "copyright_holder"]
    readonly_fields = ["created_by", "created_at"]

    def save_model(self, request, obj, form, change):
        data = {f: form.cleaned_data[f] for f in services.SOURCE_FIELDS if f in form.cleaned_data}
        if change:
            services.source_update(source=obj, **data)
        else:
            obj.pk = services.source_create(created_by=request.user, **data).pk
            obj._state.adding = False


class CategoryInline(admin.TabularInline):
    model = Category
    extra = 0
    can_delete = False  # removing a kind goes through category_delete (the spec page's Remove)
    fields = ["slug", "name", "target_quota", "is_builtin", "position"]
    readonly_fields = ["is_builtin"]


class RequirementInline(admin.TabularInline):
    model = ModelRequirement
    extra = 0


@admin.register(DatasetSpec)
class DatasetSpecAdmin(NoRawDeleteMixin, ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["name", "status", "intended_use", "serving_target", "created_at"]
    list_filter = ["status", "intended_use", "serving_target"]
    search_fields = ["name", "slug"]
    inlines = [CategoryInline, RequirementInline]
    prepopulated_fields = {"slug": ["name"]}

    def save_model(self, request, obj, form, change):
        data = {f: form.cleaned_data[f] for f in services.SPEC_FIELDS if f in form.cleaned_data}
        if change:
            services.spec_update(spec=obj, **data)
        else:
            # The service adds the five default kinds; inline rows add to them.
            obj.pk = services.spec_create(created_by=request.user, **data).pk
            obj._state.adding = False


class ImageAdminForm(forms.ModelForm):
    """The image change form, refusing what ingest refuses: a source whose licence forbids the
    spec's commercial use, a truth holding a control, surrogate or non-character (an edit must not
    side-step the checks every upload passes)."""

    class Meta:
        model = Image
        fields = ["spec", "source", "categories", "original_filename", "capture_session", "truth_latex", "meta"]

    def clean_truth_latex(self):
        truth = self.cleaned_data.get("truth_latex") or ""
        problems = character_problems(truth)  # as images_ingest checks an imported truth
        if problems:
            raise ValidationError(problems)
        return truth

    def clean(self):
        cleaned = super().clean()
        spec = cleaned.get("spec") or getattr(self.instance, "spec", None)
        source = cleaned.get("source")
        if spec is not None and source is not None:
            services.licence_check(spec=spec, source=source)  # a ValidationError naming `source`
        return cleaned


@admin.register(Image)
class ImageAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    form = ImageAdminForm
    list_display = ["id", "original_filename", "spec", "source", "width", "height", "format", "created_at"]
    list_filter = ["spec", "source__licence__family", "format"]
    search_fields = ["original_filename", "sha256", "capture_session"]
    readonly_fields = ["file", "thumbnail", "sha256", "phash", "width", "height", "format", "file_size",
                       "uploaded_by", "created_at", "taken_down_at"]
    filter_horizontal = ["categories"]
    actions = ["delete_with_files"]

    def has_add_permission(self, request):
        return False  # images come in through ingest (API, upload page, commands)

    @admin.action(description="Delete selected images and their files")
    def delete_with_files(self, request, queryset):
        deleted = 0
        for image in queryset:
            try:
                services.image_delete(image=image)
            except ValidationError as exc:  # frozen in a snapshot: said, not a 500
                self.message_user(request, f"Image {image.pk}: {' '.join(exc.messages)}", messages.ERROR)
            else:
                deleted += 1
        if deleted:
            self.message_user(request, f"{deleted} image(s) deleted with their files.", messages.SUCCESS)


@admin.register(ImportJob)
class ImportJobAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    list_display = ["id", "spec", "source", "status", "total", "imported", "duplicates", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in ImportJob._meta.fields]


class _ReadOnlyAdmin(NoRawDeleteMixin, admin.ModelAdmin):
    """Snapshots are frozen and exports are built by workers: the admin only reads them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Snapshot)
class SnapshotAdmin(_ReadOnlyAdmin):
    list_display = ["id", "spec", "name", "status", "item_count", "content_hash", "created_by", "created_at"]
    list_filter = ["spec", "status"]


@admin.register(Export)
class ExportAdmin(_ReadOnlyAdmin):
    list_display = ["id", "snapshot", "format", "status", "images", "excluded_images", "size", "created_at"]
    list_filter = ["status", "format"]


@admin.register(Takedown)
class TakedownAdmin(admin.ModelAdmin):
    """Read-only: takedowns are recorded by `services.image_takedown` / `source_takedown` (the
    image page, the API) and never edited nor deleted."""

    list_display = ["created_at", "image_ref", "spec", "source", "kind", "requested_by", "whole_source", "actor"]
    list_filter = ["kind", "whole_source"]
    search_fields = ["image_ref", "requested_by", "reason"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
