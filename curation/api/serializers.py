"""Serializers of the curation API. Output serializers describe rows; input
serializers validate requests before a service is called."""
from __future__ import annotations

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.fields import OptionalURLField, SlugRelatedField
from common.roles import is_curator
from common.unchangeable import CREATE_ONLY_HELP

from .. import selectors
from ..models import Category, DatasetSpec, Image, ImportJob, Licence, ModelRequirement, Source, Takedown
from ..services import INGEST_OUTCOMES


def absolute_url(context: dict, path: str | None) -> str | None:
    """`path` on this site as an absolute URL when the serializer has the request in its
    context (as DRF's FileField and hyperlinked fields do), else the path unchanged.

    API clients (model teams' scripts) download what the API names as it is, without
    knowing where the API is served. The host is the one the client asked for, checked
    against ALLOWED_HOSTS, so a forged Host header cannot point links elsewhere; behind a
    TLS-terminating proxy the links say https only with SECURE_PROXY_SSL_HEADER set."""
    request = context.get("request")
    if path is None or request is None:
        return path
    return request.build_absolute_uri(path)


@extend_schema_field(OpenApiTypes.URI)
class AbsoluteURLField(serializers.CharField):
    """A read-only link to this site (the attribute is a path such as "/api/v1/..."),
    answered as an absolute URL: see `absolute_url`."""

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value) -> str | None:
        return absolute_url(self.context, super().to_representation(value))


class LicenceSerializer(serializers.ModelSerializer):
    url = OptionalURLField()

    class Meta:
        model = Licence
        fields = ["id", "code", "name", "family", "version", "url", "allows_commercial", "allows_derivatives",
                  "share_alike", "requires_attribution", "description"]


class SourceSerializer(serializers.ModelSerializer):
    licence = SlugRelatedField(slug_field="code", queryset=Licence.objects.all())
    licence_name = serializers.CharField(source="licence.name", read_only=True)
    allows_commercial = serializers.BooleanField(source="licence.allows_commercial", read_only=True)
    url = OptionalURLField()

    class Meta:
        model = Source
        fields = ["id", "name", "kind", "licence", "licence_name", "allows_commercial", "copyright_holder",
                  "attribution", "url", "contract_reference", "acquired_on", "notes", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"attribution": {"required": False}}


class ModelRequirementSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelRequirement
        fields = ["metric", "threshold"]


def _with_progress(context: dict, categories: list) -> list:
    """`categories` with the quota progress the request's user may read (stored reports, see
    `selectors.with_quota_progress`): one batch per list, not a query per row."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None:  # no reader to scope the counts to: none shown
        for c in categories:
            if not hasattr(c, "progress_as_of"):
                c.collected = c.labeled = c.accepted = 0
                c.progress_as_of = None
        return categories
    return selectors.with_quota_progress(user, categories)


class CategoryProgressListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        items = list(data.all() if isinstance(data, models.manager.BaseManager) else data)
        return super().to_representation(_with_progress(self.context, items))


class CategoryProgressSerializer(serializers.ModelSerializer):
    """A category with its quota progress (collected images against the target), as of
    ``progress_as_of`` (when the stored progress report was computed; null: computed now)."""

    spec = serializers.PrimaryKeyRelatedField(read_only=True)
    collected = serializers.IntegerField(read_only=True)
    labeled = serializers.IntegerField(read_only=True, default=0)
    accepted = serializers.IntegerField(read_only=True, default=0)
    progress = serializers.SerializerMethodField()
    progress_as_of = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="When the counts were computed (the spec's stored progress report); null: computed now")

    class Meta:
        model = Category
        fields = ["id", "spec", "slug", "name", "description", "target_quota", "is_builtin", "position",
                  "collected", "labeled", "accepted", "progress", "progress_as_of"]
        read_only_fields = ["is_builtin", "position"]
        list_serializer_class = CategoryProgressListSerializer

    def to_representation(self, instance):
        _with_progress(self.context, [instance])
        return super().to_representation(instance)

    def get_progress(self, obj) -> float | None:
        collected = getattr(obj, "collected", 0)
        return round(collected / obj.target_quota, 4) if obj.target_quota else None


class CategoryWriteSerializer(serializers.ModelSerializer):
    spec = serializers.PrimaryKeyRelatedField(queryset=DatasetSpec.objects.all())
    slug = serializers.SlugField(required=False, allow_blank=True)

    class Meta:
        model = Category
        fields = ["spec", "slug", "name", "description", "target_quota"]
        validators = []  # uniqueness per spec is checked by the service, with a clearer message


class CategoryUpdateSerializer(serializers.ModelSerializer):
    """What a PATCH of a category may send: its name, description and quota change;
    its spec and slug only as stored (another value is a 400)."""

    spec = serializers.PrimaryKeyRelatedField(queryset=DatasetSpec.objects.all(), required=False,
                                              help_text=CREATE_ONLY_HELP)
    slug = serializers.SlugField(required=False, help_text=CREATE_ONLY_HELP)

    class Meta:
        model = Category
        fields = ["spec", "slug", "name", "description", "target_quota"]
        validators = []  # the service decides what may change


class CategoryInlineSerializer(serializers.Serializer):
    slug = serializers.SlugField(required=False, allow_blank=True)
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True)
    target_quota = serializers.IntegerField(min_value=0, required=False, default=0)


class DatasetSpecListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        specs = list(data.all() if isinstance(data, models.manager.BaseManager) else data)
        _with_progress(self.context, [c for spec in specs for c in getattr(spec, "categories_with_progress", [])])
        return super().to_representation(specs)


class DatasetSpecSerializer(serializers.ModelSerializer):
    answer_formats = serializers.ListField(
        child=serializers.ChoiceField(choices=DatasetSpec.ANSWER_FORMATS), allow_empty=False
    )
    requirements = ModelRequirementSerializer(many=True, required=False)
    categories = CategoryProgressSerializer(many=True, read_only=True, source="categories_with_progress")
    custom_categories = CategoryInlineSerializer(many=True, required=False, write_only=True)
    default_quota = serializers.IntegerField(min_value=0, required=False, write_only=True)
    slug = serializers.SlugField(required=False, allow_blank=True)

    progress_as_of = serializers.SerializerMethodField(
        help_text="When the categories' counts were computed (the stored progress report); null: computed now")

    class Meta:
        model = DatasetSpec
        fields = ["id", "name", "slug", "requirement", "intended_use", "answer_formats", "status",
                  "max_ms_per_image", "target_qps", "serving_target", "requirements", "categories",
                  "progress_as_of", "custom_categories", "default_quota", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        validators = []
        list_serializer_class = DatasetSpecListSerializer

    def to_representation(self, instance):
        _with_progress(self.context, list(getattr(instance, "categories_with_progress", [])))
        return super().to_representation(instance)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_progress_as_of(self, obj):
        cats = getattr(obj, "categories_with_progress", None) or []
        as_of = cats[0].progress_as_of if cats else None
        return serializers.DateTimeField().to_representation(as_of) if as_of else None


class DatasetSpecUpdateSerializer(DatasetSpecSerializer):
    """The request of a spec PATCH (schema only: the view parses with DatasetSpecSerializer,
    so that `default_quota` and `custom_categories`, which only a new spec takes, are
    refused with a 400 rather than ignored)."""

    class Meta(DatasetSpecSerializer.Meta):
        fields = [f for f in DatasetSpecSerializer.Meta.fields if f not in ("custom_categories", "default_quota")]


class ImageSerializer(serializers.ModelSerializer):
    categories = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    licence = serializers.CharField(source="source.licence.code", read_only=True)
    file_url = AbsoluteURLField()
    thumbnail_url = AbsoluteURLField()
    truth_latex = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = ["id", "spec", "source", "licence", "categories", "file_url", "thumbnail_url", "original_filename",
                  "sha256", "phash", "width", "height", "format", "file_size", "capture_session", "truth_latex",
                  "created_at", "taken_down_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_truth_latex(self, obj) -> str | None:
        # Known answers become gold tasks: only curators may see them.
        request = self.context.get("request")
        if request is not None and is_curator(request.user):
            return obj.truth_latex
        return None


class _IngestTargetSerializer(serializers.Serializer):
    """Spec, source and categories of an upload; the view supplies what the user may see."""

    spec = serializers.PrimaryKeyRelatedField(queryset=DatasetSpec.objects.none())
    source = serializers.PrimaryKeyRelatedField(queryset=Source.objects.none())
    categories = serializers.ListField(child=serializers.CharField(max_length=60), required=False, default=list,
                                       help_text="Category slugs (or ids) of the spec")
    capture_session = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")

    def __init__(self, *args, specs=None, sources=None, **kwargs):
        super().__init__(*args, **kwargs)
        if specs is not None:
            self.fields["spec"].queryset = specs
        if sources is not None:
            self.fields["source"].queryset = sources


class ImageUploadSerializer(_IngestTargetSerializer):
    file = serializers.FileField(allow_empty_file=True)


class ImageBulkUploadSerializer(_IngestTargetSerializer):
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False)


class ImageUpdateSerializer(serializers.Serializer):
    categories = serializers.ListField(child=serializers.CharField(max_length=60), required=False)
    capture_session = serializers.CharField(max_length=120, required=False, allow_blank=True)


class DuplicateSerializer(serializers.Serializer):
    filename = serializers.CharField()
    image = ImageSerializer()


class FileOutcomeSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The file's place among the request's `files`, from 0")
    filename = serializers.CharField(help_text="The file's base name as received")
    outcome = serializers.ChoiceField(
        choices=list(INGEST_OUTCOMES),
        help_text="created: stored as `image`; duplicate: the spec already holds these bytes as `image`; "
                  "repeated: an earlier file of this request (`same_as`) has these bytes, stored once as `image`")
    same_as = serializers.IntegerField(allow_null=True,
                                       help_text="For `repeated`, the index of the earlier file with the same bytes")
    image = ImageSerializer()


class IngestResultSerializer(serializers.Serializer):
    created = ImageSerializer(many=True)
    duplicates = DuplicateSerializer(many=True, help_text="Files not stored again (repeated ones included)")
    files = FileOutcomeSerializer(
        many=True, help_text="One entry per file, in request order: match results to files by `index`, "
                             "never by name (names repeat, and stored names are cut)")


class ImageUploadResultSerializer(ImageSerializer):
    duplicate = serializers.BooleanField(read_only=True)

    class Meta(ImageSerializer.Meta):
        fields = ImageSerializer.Meta.fields + ["duplicate"]
        read_only_fields = fields


class NearDuplicateSerializer(serializers.Serializer):
    distance = serializers.IntegerField()
    image = ImageSerializer()


class ImportJobSerializer(serializers.ModelSerializer):
    categories = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)

    class Meta:
        model = ImportJob
        fields = ["id", "spec", "source", "categories", "status", "total", "imported", "duplicates", "errors",
                  "created_at", "finished_at"]
        read_only_fields = fields


class ImportJobCreateSerializer(_IngestTargetSerializer):
    archive = serializers.FileField()


# ---------------------------------------------------------------- quota progress (curation/progress.py)


class _ProgressCounts(serializers.Serializer):
    collected = serializers.IntegerField()
    prelabeled = serializers.IntegerField()
    labeled = serializers.IntegerField()
    accepted = serializers.IntegerField()


class CategoryQuotaProgressSerializer(_ProgressCounts):
    category = serializers.CharField(help_text="Category slug")
    name = serializers.CharField()
    target = serializers.IntegerField()


class SplitProgressSerializer(_ProgressCounts):
    split = serializers.CharField(help_text='Split of the latest snapshot, or "unassigned"')
    category = serializers.CharField()
    target = serializers.IntegerField(allow_null=True, help_text="Category quota times the split's ratio")


class VendorCategoryProgressSerializer(_ProgressCounts):
    category = serializers.CharField()


class VendorProgressSerializer(_ProgressCounts):
    vendor = serializers.IntegerField()
    vendor_name = serializers.CharField()
    by_category = VendorCategoryProgressSerializer(many=True)


class SpecProgressSerializer(serializers.Serializer):
    """Quota progress per category, per split (latest snapshot) and per vendor."""

    spec = serializers.IntegerField()
    computed_at = serializers.DateTimeField(
        allow_null=True, help_text="When a worker last computed it (debounced after changes); null: computed for this "
                                   "request, no refresh has run yet")
    snapshot = serializers.IntegerField(allow_null=True, help_text="Latest snapshot, whose splits by_split counts")
    snapshot_name = serializers.CharField(allow_null=True)
    snapshot_created_at = serializers.DateTimeField(allow_null=True)
    by_category = CategoryQuotaProgressSerializer(many=True)
    by_split = SplitProgressSerializer(many=True)
    by_vendor = VendorProgressSerializer(many=True)


class TakedownCreateSerializer(serializers.Serializer):
    """A takedown request: what kind, what was asked, and by whom."""

    reason_kind = serializers.ChoiceField(choices=Takedown.Kind.choices,
                                          help_text="copyright (a rights holder's takedown), personal_data "
                                                    "(an erasure request under PIPA / GDPR) or other")
    reason = serializers.CharField(max_length=5000, help_text="The request, in words")
    requested_by = serializers.CharField(max_length=200, help_text="Who asked: rights holder, data subject, authority")


class TakedownSerializer(serializers.ModelSerializer):
    """A recorded takedown (read-only)."""

    image = serializers.IntegerField(source="image_ref", read_only=True, help_text="The image's id")
    reason_kind = serializers.ChoiceField(source="kind", choices=Takedown.Kind.choices, read_only=True)
    actor = serializers.CharField(source="actor.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Takedown
        fields = ["id", "image", "spec", "source", "reason_kind", "reason", "requested_by", "whole_source", "actor",
                  "created_at", "files_erased", "snapshot_items", "exports_withdrawn", "tasks_removed",
                  "annotations_withdrawn"]
        read_only_fields = fields
