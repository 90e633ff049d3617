"""Labeling API serializers. Regions are validated by services.regions_clean, so
input fields here only fix the shape for the schema; errors still name the field."""
from __future__ import annotations

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common import roles
from common.fields import OptionalEmailField
from common.serializing import represent
from curation.api.serializers import AbsoluteURLField
from curation.models import Source

from ..models import Annotation, AnnotationVersion, Batch, BatchEvent, Prediction, Region, Review, Task, Vendor
from ..selectors import can_see_prices
from ..services import MAX_REASON_LENGTH

POINT_SCHEMA = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
RLE_SCHEMA = {
    "type": "object",
    "properties": {"size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
                            "description": "[height, width]"},
                   "counts": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]}},
    "required": ["size", "counts"],
}
REGION_INPUT_SCHEMA = {
    "type": "object",
    "description": 'A quadrilateral ("points": 4 [x, y] in image pixels, any order; stored clockwise from the '
                   'top-left) or a pixel mask ("mask": COCO RLE of the image size), with its LaTeX.',
    "properties": {
        "kind": {"type": "string", "enum": ["quad", "mask"]},
        "points": {"type": "array", "items": POINT_SCHEMA},
        "mask": RLE_SCHEMA,
        "latex": {"type": "string"},
        "illegible": {"type": "boolean"},
        "cut_off": {"type": "boolean"},
        "categories": {"type": "array", "items": {"type": "string"}},
        "confidence": {"type": "number", "description": "Predictions only: 0..1"},
    },
    "required": ["kind"],
}


class _PassThroughField(serializers.Field):
    """Hands the parsed JSON to the service untouched: the service checks it in full
    and names the exact field (DRF's JSONField would refuse 1e999 without saying where)."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


@extend_schema_field({"type": "array", "items": REGION_INPUT_SCHEMA})
class RegionsField(_PassThroughField):
    """A list of regions, checked in full by the service (errors name e.g. regions[2].points)."""


class VendorSerializer(serializers.ModelSerializer):
    contact_email = OptionalEmailField()

    class Meta:
        model = Vendor
        fields = ["id", "name", "slug", "contact_email", "active", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"slug": {"required": False}}


class MemberSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()
    email = serializers.CharField(read_only=True, help_text="May be empty")

    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "is_active", "roles"]
        read_only_fields = fields

    def get_roles(self, obj) -> list[str]:
        return sorted(g.name for g in obj.groups.all() if g.name in roles.ROLES)


class MemberCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, min_length=8)
    role = serializers.ChoiceField(choices=sorted(roles.VENDOR_ROLES))
    email = OptionalEmailField()
    first_name = serializers.CharField(required=False, allow_blank=True, default="")
    last_name = serializers.CharField(required=False, allow_blank=True, default="")


class BatchSerializer(serializers.ModelSerializer):
    spec_name = serializers.CharField(source="spec.name", read_only=True)
    vendor_name = serializers.CharField(source="vendor.name", read_only=True)
    unit_price = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()
    task_count = serializers.IntegerField(read_only=True, default=None, allow_null=True)

    class Meta:
        model = Batch
        fields = ["id", "name", "spec", "spec_name", "vendor", "vendor_name", "kind", "unit_price", "currency",
                  "agreed_quantity", "overlap", "deadline", "status", "filters", "task_count", "created_at"]
        read_only_fields = fields

    def _prices(self) -> bool:
        request = self.context.get("request")
        return bool(request and can_see_prices(request.user))

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True,
                          "description": "Only for curators and vendor managers"})
    def get_unit_price(self, obj):
        return str(obj.unit_price) if self._prices() else None

    def get_currency(self, obj) -> str | None:
        return obj.currency if self._prices() else None


class BatchCreateSerializer(serializers.Serializer):
    spec = serializers.IntegerField()
    vendor = serializers.IntegerField()
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=Batch.Kind.choices, default=Batch.Kind.FULL)
    unit_price = serializers.DecimalField(
        max_digits=10, decimal_places=4, min_value=0, required=False,
        help_text="Price per accepted task. Leave out where the vendor has a contract for the spec: the contract's "
                  "price for the kind applies (another one is refused). Required otherwise.")
    currency = serializers.CharField(max_length=3, required=False,
                                     help_text="ISO 4217 code; the contract's where there is one, else USD")
    quantity = serializers.IntegerField(min_value=1, help_text="How many tasks (images) to put in the batch")
    overlap = serializers.IntegerField(min_value=1, max_value=10, default=1)
    deadline = serializers.DateField(required=False, allow_null=True, default=None)
    status = serializers.ChoiceField(choices=Batch.Status.choices, default=Batch.Status.ACTIVE)
    categories = serializers.ListField(child=serializers.SlugField(), required=False, default=list,
                                       help_text="Only images in any of these category slugs")
    source = serializers.PrimaryKeyRelatedField(queryset=Source.objects.all(), required=False, allow_null=True,
                                                default=None)
    only_unlabeled = serializers.BooleanField(default=True, help_text="Skip images already in a task")
    lowest_confidence_first = serializers.BooleanField(default=True)


class BatchUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    status = serializers.ChoiceField(choices=Batch.Status.choices, required=False)
    deadline = serializers.DateField(required=False, allow_null=True)
    unit_price = serializers.DecimalField(max_digits=10, decimal_places=4, min_value=0, required=False)
    currency = serializers.CharField(max_length=3, required=False)
    agreed_quantity = serializers.IntegerField(min_value=1, required=False)
    reason = serializers.CharField(
        required=False, allow_blank=True, write_only=True, trim_whitespace=True, max_length=MAX_REASON_LENGTH,
        help_text="Why: kept in the batch's history with the change. Required to reopen a closed batch (set it "
                  "active or paused).")


def _change_pair(kind: str) -> dict:
    return {"type": "array", "items": {"type": kind, "nullable": True}, "minItems": 2, "maxItems": 2,
            "description": "[old, new]"}


# Prices and dates as text (prices at four decimal places), the quantity as a number.
BATCH_CHANGES_SCHEMA = {
    "type": "object",
    "description": "{field: [old, new]} of each field the event changed; old is null on `created`. Price fields "
                   "(unit_price, currency) only for curators and vendor managers.",
    "properties": {field: _change_pair("integer" if field == "agreed_quantity" else "string")
                   for field in Batch.EDITABLE},
    "additionalProperties": False,
}


class BatchEventSerializer(serializers.ModelSerializer):
    """One entry of a batch's history."""

    by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                      help_text="Username of who made the change; null: no user (a command)")
    changes = serializers.SerializerMethodField()

    class Meta:
        model = BatchEvent
        fields = ["id", "at", "by", "kind", "changes", "reason"]
        read_only_fields = fields

    @extend_schema_field(BATCH_CHANGES_SCHEMA)
    def get_changes(self, obj):
        request = self.context.get("request")
        if request and can_see_prices(request.user):
            return obj.changes
        return {k: v for k, v in obj.changes.items() if k not in Batch.PRICE_FIELDS}


class RegionSerializer(serializers.ModelSerializer):
    points = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()), allow_null=True)
    mask = serializers.JSONField(source="mask_rle", allow_null=True)

    class Meta:
        model = Region
        fields = ["index", "kind", "points", "mask", "latex", "latex_normalized", "illegible", "cut_off",
                  "categories"]
        read_only_fields = fields


class PredictionSerializer(serializers.ModelSerializer):
    regions = serializers.JSONField()

    class Meta:
        model = Prediction
        fields = ["id", "image", "model_name", "model_version", "regions", "confidence", "created_at"]
        read_only_fields = fields


class TaskSerializer(serializers.ModelSerializer):
    """A task; `is_gold` and `gold_answer` are null for everybody but curators."""

    spec = serializers.IntegerField(source="batch.spec_id", read_only=True)
    kind = serializers.CharField(source="batch.kind", read_only=True)
    image_width = serializers.IntegerField(source="image.width", read_only=True)
    image_height = serializers.IntegerField(source="image.height", read_only=True)
    image_url = AbsoluteURLField(source="image.file_url")
    is_gold = serializers.SerializerMethodField()
    gold_answer = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = ["id", "batch", "spec", "kind", "image", "image_width", "image_height", "image_url", "status",
                  "overlap", "priority", "model_confidence", "is_gold", "gold_answer", "created_at", "updated_at"]
        read_only_fields = fields

    def _curator(self) -> bool:
        request = self.context.get("request")
        return bool(request and roles.is_curator(request.user))

    def get_is_gold(self, obj) -> bool | None:
        return obj.is_gold if self._curator() else None

    @extend_schema_field({"type": "object", "nullable": True, "additionalProperties": True})
    def get_gold_answer(self, obj):
        return obj.gold_answer if self._curator() else None


class TaskDetailSerializer(TaskSerializer):
    predictions = PredictionSerializer(source="image.predictions", many=True, read_only=True)

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "predictions"]
        read_only_fields = fields


# A nullable nested object spelled so that every OpenAPI 3.0 validator reads it the
# same way (drf-spectacular's allOf + nullable is read as "never null" by some).
NULLABLE_TASK_SCHEMA = {"oneOf": [{"$ref": "#/components/schemas/TaskDetail"},
                                  {"type": "object", "nullable": True, "enum": [None]}]}


@extend_schema_field(NULLABLE_TASK_SCHEMA)
class _NullableTaskField(serializers.Field):
    def to_representation(self, value):
        return represent(TaskDetailSerializer, value, self.context)


class NextTaskSerializer(serializers.Serializer):
    task = _NullableTaskField(allow_null=True, help_text="null when there is no work for you")
    reason = serializers.ChoiceField(choices=["rework", "leased", "claimed", "empty"])
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    annotation = serializers.IntegerField(allow_null=True, help_text="Your annotation of the task, if any")
    blocked = serializers.DictField(child=serializers.CharField(),
                                    help_text="Batch id -> why you cannot take its tasks yet (e.g. guide)")


class TaskGoldSerializer(serializers.Serializer):
    gold_answer = serializers.JSONField(allow_null=True)


_POINTS_SCHEMA = {"type": "array", "minItems": 4, "maxItems": 4,
                  "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                  "description": "4 corners [x, y] in image pixels, from the formula's top-left as read"}


@extend_schema_field({
    "type": "object", "maxProperties": 500,
    "additionalProperties": {"oneOf": [
        {"type": "string", "description": "The corrected LaTeX of the region"},
        {"type": "object", "minProperties": 1, "additionalProperties": False,
         "properties": {"latex": {"type": "string", "description": "The corrected LaTeX"},
                        "points": {**_POINTS_SCHEMA, "description": "The region's corners, moved: checked as an "
                                                                    "annotator's (inside the image, a simple "
                                                                    "quadrilateral) and stored clockwise"}}},
    ]},
    "description": "Accept with corrections: region index (the regions' `index`, 0-based, as text) -> the "
                   "corrected LaTeX of that region (a string), or an object with the corrected `latex` and/or "
                   "`points` (its 4 corners moved). LaTeX is checked and normalised as an annotator's, corners "
                   "are checked as an annotator's (inside the image, a simple quadrilateral of some area). A "
                   "region that is only a pixel mask gets no corners; one with a mask beside its quad keeps the "
                   "mask. Flags and categories stay as set, and a region flagged illegible gets no new text (it "
                   "is not delivered: reject instead). Only with decision accept. Stored as a new version of "
                   "the annotation authored by you, which exports deliver; a correction equal to what is stored "
                   "is ignored. Errors name `corrections.<index>` (a string value, or the entry as a whole), "
                   "`corrections.<index>.latex` or `corrections.<index>.points`.",
    "example": {"1": "x^{2}+1", "2": {"points": [[98, 48], [198, 48], [198, 96], [98, 96]]}},
})
class CorrectionsField(_PassThroughField):
    """{index: LaTeX | {"latex", "points"}}, checked in full by the service (errors name e.g.
    corrections.2 or corrections.2.points)."""


CORRECTIONS_RECORD_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2,
                             "description": "[annotator's LaTeX, reviewer's LaTeX]"},
    "description": "Regions whose LaTeX the reviewer corrected on acceptance: index -> [old, new]; empty for a plain "
                   "acceptance or a rejection. The corrected answer is the annotation's next version.",
}

GEOMETRY_CORRECTIONS_RECORD_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": _POINTS_SCHEMA, "minItems": 2, "maxItems": 2,
                             "description": "[annotator's points, reviewer's points]"},
    "description": "Regions whose corners the reviewer moved on acceptance: index -> [old points, new points]; "
                   "empty when none moved. The corrected answer is the annotation's next version.",
}


@extend_schema_field(CORRECTIONS_RECORD_SCHEMA)
class CorrectionsRecordField(serializers.JSONField):
    """The text part of `Review.corrections`: {index: [old, new]} (`Review.latex_corrections`)."""


@extend_schema_field(GEOMETRY_CORRECTIONS_RECORD_SCHEMA)
class GeometryCorrectionsRecordField(serializers.JSONField):
    """The moved corners of `Review.corrections`: {index: [old, new]} (`Review.geometry_corrections`)."""


class ReviewSerializer(serializers.ModelSerializer):
    reviewer_username = serializers.CharField(source="reviewer.username", read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True,
                                              help_text="The version decided on (the annotator's)")
    # Kept {index: [old LaTeX, new LaTeX]} as clients first read it; moved corners come beside it.
    corrections = CorrectionsRecordField(source="latex_corrections", read_only=True)
    geometry_corrections = GeometryCorrectionsRecordField(read_only=True)

    class Meta:
        model = Review
        fields = ["id", "annotation", "version_number", "reviewer", "reviewer_username", "decision", "reasons",
                  "comment", "corrections", "geometry_corrections", "created_at"]
        read_only_fields = fields


class ReviewCreateSerializer(serializers.Serializer):
    annotation = serializers.IntegerField()
    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    reasons = serializers.ListField(child=serializers.ChoiceField(choices=Review.Reason.choices), required=False,
                                    default=list)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    version = serializers.IntegerField(required=False, allow_null=True, default=None,
                                       help_text="The version you reviewed; a newer one answers 409")
    corrections = CorrectionsField(required=False, allow_null=True, default=None)


class ReviewInlineSerializer(serializers.ModelSerializer):
    corrections = CorrectionsRecordField(source="latex_corrections", read_only=True)
    geometry_corrections = GeometryCorrectionsRecordField(read_only=True)

    class Meta:
        model = Review
        fields = ["id", "decision", "reasons", "comment", "corrections", "geometry_corrections", "reviewer",
                  "created_at"]
        read_only_fields = fields


class AnnotationSerializer(serializers.ModelSerializer):
    regions = RegionSerializer(source="current.regions", many=True, read_only=True)
    batch = serializers.IntegerField(source="task.batch_id", read_only=True)
    annotator_username = serializers.CharField(source="annotator.username", read_only=True)
    time_spent_seconds = serializers.FloatField(source="current.time_spent_seconds", read_only=True,
                                                allow_null=True)
    started_from = serializers.IntegerField(source="current.started_from_id", read_only=True, allow_null=True)
    reviews = ReviewInlineSerializer(many=True, read_only=True, help_text="Newest first: why it was rejected")

    class Meta:
        model = Annotation
        fields = ["id", "task", "batch", "annotator", "annotator_username", "status", "version", "regions",
                  "time_spent_seconds", "started_from", "reviews", "created_at", "updated_at", "submitted_at"]
        read_only_fields = fields


class AnnotationCreateSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    regions = RegionsField()
    time_spent_seconds = serializers.FloatField(required=False, default=0)
    started_from = serializers.IntegerField(required=False, allow_null=True, default=None,
                                            help_text="The prediction the annotator started from")
    submit = serializers.BooleanField(default=False, help_text="Submit for review at once")
    next = serializers.BooleanField(default=False, help_text="Answer with your next task too, as tasks/next/ "
                                    "gives it: {\"annotation\": ..., \"next\": ...}")


class AnnotationUpdateSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The version you edited; if another save came first: 409")
    regions = RegionsField()
    time_spent_seconds = serializers.FloatField(required=False, default=0)
    started_from = serializers.IntegerField(required=False, allow_null=True, default=None)
    submit = serializers.BooleanField(default=False)
    next = serializers.BooleanField(default=False, help_text="Answer with your next task too, as tasks/next/ "
                                    "gives it: {\"annotation\": ..., \"next\": ...}")


class AnnotationSubmitSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    next = serializers.BooleanField(default=False, help_text="Answer with your next task too, as tasks/next/ "
                                    "gives it: {\"annotation\": ..., \"next\": ...}")


@extend_schema_field({"oneOf": [{"$ref": "#/components/schemas/NextTask"},
                                {"type": "object", "nullable": True, "enum": [None]}]})
class _NullableNextField(_PassThroughField):
    """The body tasks/next/ answers, already rendered (see NULLABLE_TASK_SCHEMA for the spelling)."""


class AnnotationWithNextSerializer(serializers.Serializer):
    """A save that asked for `next`: the annotation, and the next task as tasks/next/ answers it."""

    annotation = AnnotationSerializer()
    next = _NullableNextField(allow_null=True, help_text="null when you may not take tasks from the queue (or the "
                              "claim failed): tasks/next/ says why")


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    current_version = serializers.IntegerField()
    current = AnnotationSerializer()


class AnnotationVersionSerializer(serializers.ModelSerializer):
    author_username = serializers.CharField(source="author.username", read_only=True)
    regions = RegionSerializer(many=True, read_only=True)

    class Meta:
        model = AnnotationVersion
        fields = ["number", "author", "author_username", "time_spent_seconds", "started_from", "created_at",
                  "regions"]
        read_only_fields = fields


@extend_schema_field({"type": "array", "maxItems": 2000, "items": {
    "type": "object", "required": ["image"],
    "properties": {"image": {"type": "integer"}, "regions": {"type": "array", "items": REGION_INPUT_SCHEMA},
                   "confidence": {"type": "number", "nullable": True}}}})
class PredictionItemsField(_PassThroughField):
    """Items checked in full by the service, all or nothing (errors name e.g. items[3].regions[0].points)."""


class PredictionImportSerializer(serializers.Serializer):
    model_name = serializers.CharField(max_length=120)
    model_version = serializers.CharField(max_length=60)
    items = PredictionItemsField()


class PredictionImportResultSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.IntegerField())
