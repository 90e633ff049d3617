"""Serializers of the guides API. Input serializers validate shapes; services validate meaning."""
from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.fields import RowIdField
from common.unchangeable import CREATE_ONLY_HELP
from curation.api.serializers import absolute_url
from curation.models import DatasetSpec, Image
from labeling.models import Vendor

from .. import selectors
from ..models import (
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


def _user(serializer) -> object:
    request = serializer.context.get("request")
    # Schema generation builds serializers without a request: nobody may see anything then.
    return request.user if request is not None else AnonymousUser()


@extend_schema_field({"type": "string", "pattern": "^(good|bad)$", "description": "`good` or `bad` example"})
class ExampleKindField(serializers.ChoiceField):
    """Documented as a pattern: an enum named `kind` would clash with curation's Source.kind in the schema."""

    def __init__(self, **kwargs):
        super().__init__(choices=GuideExample.Kind.choices, **kwargs)


# ----------------------------------------------------------------- guides


class GuideSerializer(serializers.ModelSerializer):
    spec_name = serializers.CharField(source="spec.name", read_only=True)
    current_version = serializers.SerializerMethodField()
    draft_version = serializers.SerializerMethodField()

    class Meta:
        model = Guide
        fields = ["id", "spec", "spec_name", "title", "current_version", "draft_version", "created_at"]

    def _versions(self, obj):
        return list(obj.versions.all())  # prefetched, newest first

    def get_current_version(self, obj) -> int | None:
        return next((v.id for v in self._versions(obj) if v.status == GuideVersion.Status.PUBLISHED), None)

    def get_draft_version(self, obj) -> int | None:
        return next((v.id for v in self._versions(obj) if v.status == GuideVersion.Status.DRAFT), None)


class GuideCreateSerializer(serializers.Serializer):
    spec = serializers.PrimaryKeyRelatedField(queryset=DatasetSpec.objects.none())
    title = serializers.CharField(max_length=200)
    body_md = serializers.CharField(required=False, allow_blank=True, default="")
    change_notes = serializers.CharField(required=False, allow_blank=True, default="")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["spec"].queryset = selectors.guide_specs_visible_to(_user(self))


class FaqEntrySerializer(serializers.ModelSerializer):
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    spec = serializers.IntegerField(source="version.guide.spec_id", read_only=True)

    class Meta:
        model = FaqEntry
        fields = ["id", "version", "version_number", "spec", "question_text", "answer_md", "answer_html",
                  "source_question", "position"]


class GuideExampleSerializer(serializers.ModelSerializer):
    overlay_url = serializers.SerializerMethodField()
    kind = ExampleKindField(read_only=True)
    image_width = serializers.IntegerField(source="image.width", read_only=True)
    image_height = serializers.IntegerField(source="image.height", read_only=True)

    class Meta:
        model = GuideExample
        fields = ["id", "version", "image", "image_width", "image_height", "kind", "caption", "regions", "position",
                  "overlay_url"]

    def get_overlay_url(self, obj) -> str:
        return absolute_url(self.context, f"/api/v1/guide-examples/{obj.pk}/overlay/")


class GuideExampleCreateSerializer(serializers.Serializer):
    version = serializers.PrimaryKeyRelatedField(queryset=GuideVersion.objects.none())
    image = serializers.PrimaryKeyRelatedField(queryset=Image.objects.all())
    kind = ExampleKindField()
    caption = serializers.CharField(required=False, allow_blank=True, default="")
    regions = serializers.JSONField(required=False, default=list)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = selectors.guide_versions_visible_to(_user(self))


class GuideVersionSerializer(serializers.ModelSerializer):
    spec = serializers.IntegerField(source="guide.spec_id", read_only=True)
    guide_title = serializers.CharField(source="guide.title", read_only=True)
    published_by = serializers.CharField(source="published_by.username", read_only=True, default=None)
    faq = FaqEntrySerializer(many=True, read_only=True)
    examples = GuideExampleSerializer(many=True, read_only=True)
    acknowledged_by_me = serializers.SerializerMethodField()

    class Meta:
        model = GuideVersion
        fields = ["id", "guide", "guide_title", "spec", "number", "status", "body_md", "body_html", "change_notes",
                  "published_at", "published_by", "created_at", "updated_at", "faq", "examples", "acknowledged_by_me"]

    def get_acknowledged_by_me(self, obj) -> bool:
        return bool(getattr(obj, "my_acks", []))


class GuideVersionCreateSerializer(serializers.Serializer):
    guide = serializers.PrimaryKeyRelatedField(queryset=Guide.objects.none())
    body_md = serializers.CharField(required=False, allow_blank=True, allow_null=True, default=None)
    change_notes = serializers.CharField(required=False, allow_blank=True, default="")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["guide"].queryset = selectors.guides_visible_to(_user(self))


class GuideVersionUpdateSerializer(serializers.Serializer):
    body_md = serializers.CharField(required=False, allow_blank=True)
    change_notes = serializers.CharField(required=False, allow_blank=True)


class DiffSerializer(serializers.Serializer):
    old = serializers.IntegerField()
    new = serializers.IntegerField()
    old_number = serializers.IntegerField()
    new_number = serializers.IntegerField()
    html = serializers.CharField()
    unified = serializers.CharField()


class AckRequiredSerializer(serializers.Serializer):
    spec = serializers.IntegerField()
    version = serializers.IntegerField(allow_null=True, help_text="Guide version to acknowledge first, or null")
    number = serializers.IntegerField(allow_null=True)
    url = serializers.CharField(allow_null=True, help_text="Page where the version is read and acknowledged")


class ReaderSerializer(serializers.Serializer):
    user = serializers.IntegerField(source="user.id")
    username = serializers.CharField(source="user.username")
    vendor = serializers.CharField(source="vendor.name")
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    latest_read_version = serializers.IntegerField(allow_null=True)


class AcknowledgementSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    guide = serializers.IntegerField(source="version.guide_id", read_only=True)
    spec = serializers.IntegerField(source="version.guide.spec_id", read_only=True)

    class Meta:
        model = GuideAcknowledgement
        fields = ["id", "version", "version_number", "guide", "spec", "user", "username", "acknowledged_at"]


# ---------------------------------------------------------- questions & answers


class AnswerSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", read_only=True)

    class Meta:
        model = Answer
        fields = ["id", "author", "body", "body_html", "created_at"]


class QuestionSerializer(serializers.ModelSerializer):
    asked_by = serializers.CharField(source="asked_by.username", read_only=True)
    vendor_name = serializers.CharField(source="vendor.name", read_only=True)
    spec_name = serializers.CharField(source="spec.name", read_only=True)
    answers = AnswerSerializer(many=True, read_only=True)
    crop_url = serializers.SerializerMethodField()

    class Meta:
        model = Question
        fields = ["id", "spec", "spec_name", "guide_version", "vendor", "vendor_name", "asked_by", "title", "body",
                  "body_html", "image", "region", "task_ref", "status", "promoted_to_faq", "faq_question",
                  "faq_answer", "answers", "crop_url", "created_at", "updated_at"]

    def get_crop_url(self, obj) -> str | None:
        return absolute_url(self.context, f"/api/v1/questions/{obj.pk}/crop/") if obj.image_id and obj.region else None


class QuestionCreateSerializer(serializers.Serializer):
    spec = serializers.PrimaryKeyRelatedField(queryset=DatasetSpec.objects.none())
    guide_version = serializers.PrimaryKeyRelatedField(queryset=GuideVersion.objects.none(), required=False,
                                                       allow_null=True, default=None)
    title = serializers.CharField(max_length=200)
    body = serializers.CharField()
    image = serializers.PrimaryKeyRelatedField(queryset=Image.objects.none(), required=False, allow_null=True,
                                               default=None)
    region = serializers.JSONField(required=False, allow_null=True, default=None,
                                   help_text="Four [x, y] points in image pixels")
    task_ref = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        user = _user(self)
        self.fields["spec"].queryset = selectors.guide_specs_visible_to(user)
        self.fields["guide_version"].queryset = selectors.guide_versions_visible_to(user)
        # Narrowed to the spec in validate(); here: images the user may point at at all.
        self.fields["image"].queryset = Image.objects.all()

    def validate(self, attrs):
        image = attrs.get("image")
        if image is not None and not selectors.question_images_for(user=_user(self), spec=attrs["spec"]).filter(
                pk=image.pk).exists():
            raise serializers.ValidationError({"image": [f'Invalid pk "{image.pk}" - object does not exist.']})
        return attrs


class AnswerCreateSerializer(serializers.Serializer):
    body = serializers.CharField()
    close = serializers.BooleanField(required=False, default=False)


class PromoteSerializer(serializers.Serializer):
    faq_question = serializers.CharField(required=False, allow_blank=True, default="")
    faq_answer = serializers.CharField(required=False, allow_blank=True, default="")


# ------------------------------------------------------------- notifications


class NotificationSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True, help_text="question_asked, question_answered, question_closed, "
                                                          "guide_published")
    unread = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "kind", "message", "url", "question", "read_at", "unread", "created_at"]

    def get_unread(self, obj) -> bool:
        return obj.read_at is None


class UnreadCountSerializer(serializers.Serializer):
    unread = serializers.IntegerField()


# ------------------------------------------------------------------ contracts


class ContractSerializer(serializers.ModelSerializer):
    vendor_name = serializers.CharField(source="vendor.name", read_only=True)
    spec_name = serializers.CharField(source="spec.name", read_only=True)
    price_regions = serializers.DecimalField(max_digits=10, decimal_places=4, min_value=Decimal(0))
    price_latex = serializers.DecimalField(max_digits=10, decimal_places=4, min_value=Decimal(0))
    price_full = serializers.DecimalField(max_digits=10, decimal_places=4, min_value=Decimal(0))
    starts_on = serializers.DateField(required=False)

    class Meta:
        model = Contract
        fields = ["id", "vendor", "vendor_name", "spec", "spec_name", "reference", "currency", "price_regions",
                  "price_latex", "price_full", "agreed_quantity", "starts_on", "deadline", "notes", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"vendor": {"help_text": CREATE_ONLY_HELP}, "spec": {"help_text": CREATE_ONLY_HELP}}
        # Uniqueness is the service's job (a 400 naming `spec`), not a DRF validator.
        validators: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["vendor"].queryset = Vendor.objects.all()
        self.fields["spec"].queryset = DatasetSpec.objects.all()


class CostBatchSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField()
    name = serializers.CharField()
    vendor_id = serializers.IntegerField()
    spec_id = serializers.IntegerField()
    currency = serializers.CharField(allow_null=True)
    accepted = serializers.DictField(child=serializers.IntegerField())
    accepted_total = serializers.IntegerField()
    rejected = serializers.IntegerField()
    pending = serializers.IntegerField()
    taken_down = serializers.IntegerField(help_text="Tasks whose image was taken down before their work was "
                                                    "reviewed: neither paid nor pending; settle them with the vendor.")
    amount = serializers.DecimalField(max_digits=16, decimal_places=4)
    unpriced = serializers.IntegerField()


class CostMonthSerializer(serializers.Serializer):
    month = serializers.CharField()
    vendor_id = serializers.IntegerField()
    spec_id = serializers.IntegerField()
    kind = serializers.CharField()
    currency = serializers.CharField(allow_null=True)
    accepted = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=10, decimal_places=4, allow_null=True)
    amount = serializers.DecimalField(max_digits=16, decimal_places=4)


class PaceWarningSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField()
    name = serializers.CharField()
    vendor_id = serializers.IntegerField()
    spec_id = serializers.IntegerField()
    done = serializers.IntegerField()
    target = serializers.IntegerField()
    expected_by_today = serializers.IntegerField()
    deadline = serializers.DateField()
    days_left = serializers.IntegerField()
    needed_per_day = serializers.FloatField()
    actual_per_day = serializers.FloatField()
    overdue = serializers.BooleanField()


class CostReportSerializer(serializers.Serializer):
    rows_available = serializers.BooleanField(help_text="False until labeling's tasks are wired in")
    batches = CostBatchSerializer(many=True)
    months = CostMonthSerializer(many=True)
    totals = serializers.DictField(child=serializers.DecimalField(max_digits=16, decimal_places=4))
    rejected_total = serializers.IntegerField()
    unpriced_total = serializers.IntegerField()
    taken_down_total = serializers.IntegerField(help_text="Unreviewed tasks whose image was taken down: not paid")
    pace_warnings = PaceWarningSerializer(many=True)


class CostReportQuerySerializer(serializers.Serializer):
    vendor = RowIdField(required=False)  # a number beyond any id: a 400, not an overflow in the query
    spec = RowIdField(required=False)
    today = serializers.DateField(required=False, help_text="Date the pace is judged at (default: today)")
