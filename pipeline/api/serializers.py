"""Serializers of the pipeline API: output rows, and input validation before services."""
from __future__ import annotations

import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.fields import RowIdField, holds_unstorable
from curation.api.serializers import absolute_url
from curation.models import DatasetSpec, Snapshot

from .. import endpoints
from ..models import (
    EvaluationRun,
    EvaluationSample,
    ModelVersion,
    Prediction,
    PrelabelJob,
    QAReport,
    Webhook,
    WebhookDelivery,
)
from ..selectors import prelabel_job_progress


class ModelVersionSerializer(serializers.ModelSerializer):
    training_licences = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    allows_commercial = serializers.SerializerMethodField()
    side_models = serializers.SerializerMethodField(help_text="the side models a detector version brought "
                                                    "(refiner.pt, orienter.pt)")
    # A plain string: the model's URLField(blank=True) became oneOf(uri, empty string) in the schema,
    # and "" matched both, so every uploaded version failed a strict client's validation.
    endpoint_url = serializers.CharField(read_only=True, help_text="An external (HTTP) model's predict URL, "
                                                                   "its password (if any) shown as ***; "
                                                                   "empty for uploaded versions")

    class Meta:
        model = ModelVersion
        fields = ["id", "kind", "name", "version", "source", "format", "weights_sha256", "side_models", "endpoint_url",
                  "config", "metrics", "training_licences", "allows_commercial", "notes", "is_active", "created_at"]

    @extend_schema_field(serializers.BooleanField())
    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data.get("endpoint_url"):
            data["endpoint_url"] = endpoints.redacted(data["endpoint_url"])
        return data

    def get_allows_commercial(self, obj) -> bool:
        return all(lic.allows_commercial for lic in obj.training_licences.all())

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_side_models(self, obj) -> list[str]:
        return sorted(obj.side_files or {})


class JSONObjectField(serializers.JSONField):
    """A JSON object given either as JSON or as a JSON string (multipart uploads)."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                data = json.loads(data) if data.strip() else {}
            except ValueError:
                raise serializers.ValidationError("must be a JSON object")
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be a JSON object")
        if holds_unstorable(data):
            raise serializers.ValidationError("must not hold the character U+0000 or lone surrogates")
        return data


class ModelUploadSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[ModelVersion.Kind.DETECTOR, ModelVersion.Kind.RECOGNIZER])
    name = serializers.SlugField(max_length=80)
    version = serializers.CharField(max_length=40)
    format = serializers.ChoiceField(choices=[ModelVersion.Format.STATE_DICT, ModelVersion.Format.TORCHSCRIPT])
    file = serializers.FileField()
    refiner_file = serializers.FileField(required=False, help_text="detectors: the corner refiner's state dict "
                                         "(settings under config['refiner'])")
    orienter_file = serializers.FileField(required=False, help_text="detectors: the orienter's state dict "
                                          "(settings under config['orienter'])")
    config = JSONObjectField(required=False, default=dict)
    metrics = JSONObjectField(required=False, default=dict)
    training_licences = serializers.ListField(child=serializers.CharField(max_length=40), required=False, default=list)
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    activate = serializers.BooleanField(required=False, default=False)


class HttpModelSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=80)
    version = serializers.CharField(max_length=40)
    endpoint_url = serializers.URLField()
    config = JSONObjectField(required=False, default=dict)
    metrics = JSONObjectField(required=False, default=dict)
    training_licences = serializers.ListField(child=serializers.CharField(max_length=40), required=False, default=list)
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    activate = serializers.BooleanField(required=False, default=False)


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    skipped = serializers.IntegerField()
    failed = serializers.IntegerField()
    pending = serializers.IntegerField()
    finished = serializers.IntegerField()
    eta_seconds = serializers.FloatField(allow_null=True)


class PrelabelJobSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()

    class Meta:
        model = PrelabelJob
        fields = ["id", "spec", "status", "force", "chunk_size", "detector_version", "recognizer_version", "total",
                  "progress", "created_at", "started_at", "finished_at"]

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, obj) -> dict:
        return prelabel_job_progress(obj)


class PrelabelJobCreateSerializer(serializers.Serializer):
    spec = serializers.IntegerField(required=False)
    image_ids = serializers.ListField(child=RowIdField(), required=False, max_length=100_000)
    force = serializers.BooleanField(required=False, default=False)
    chunk_size = serializers.IntegerField(required=False, default=16, min_value=1, max_value=256)

    def validate(self, attrs):
        if ("spec" in attrs) == ("image_ids" in attrs):
            raise serializers.ValidationError({"spec": "give either a spec or image_ids"})
        if "image_ids" in attrs and not attrs["image_ids"]:
            raise serializers.ValidationError({"image_ids": "must not be empty"})
        return attrs


class FailureSerializer(serializers.Serializer):
    image = serializers.IntegerField(source="image_id")
    error = serializers.CharField()
    attempts = serializers.IntegerField()


class ModelPredictionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prediction
        fields = ["id", "image", "job", "task_id", "detector_version", "recognizer_version", "regions",
                  "min_confidence", "seconds", "reading", "created_at"]


# ---------------------------------------------------------------- offline evaluation

class VerdictSerializer(serializers.Serializer):
    metric = serializers.CharField()
    label = serializers.CharField()
    threshold = serializers.FloatField()
    lower_is_better = serializers.BooleanField()
    value = serializers.FloatField(allow_null=True)
    met = serializers.BooleanField(allow_null=True, help_text="None: the run could not measure it")


class EvaluationMetricsSerializer(serializers.Serializer):
    """Figures of a run or of one category (None where not measured)."""

    images = serializers.IntegerField()
    regions = serializers.IntegerField()
    recognized = serializers.IntegerField()
    exact_match = serializers.FloatField(allow_null=True)
    token_edit_distance = serializers.FloatField(allow_null=True)
    within_1 = serializers.FloatField(allow_null=True)
    bleu4 = serializers.FloatField(allow_null=True)
    detection_precision = serializers.FloatField(allow_null=True)
    detection_recall = serializers.FloatField(allow_null=True)
    detection_f1 = serializers.FloatField(allow_null=True)
    mean_iou = serializers.FloatField(allow_null=True)
    true_positives = serializers.IntegerField(allow_null=True)
    false_positives = serializers.IntegerField(allow_null=True)
    false_negatives = serializers.IntegerField(allow_null=True)


class EvaluationResultSerializer(serializers.Serializer):
    """Absent `overall` and empty `by_category` until the run is done."""

    overall = EvaluationMetricsSerializer(required=False)
    by_category = serializers.DictField(child=EvaluationMetricsSerializer())


class EvaluationRunSerializer(serializers.ModelSerializer):
    # Plain text in the schema: an enum here would clash with other "status" enums by name.
    status = serializers.CharField(read_only=True, help_text="queued, running, done, failed or cancelled")
    spec = serializers.IntegerField(source="snapshot.spec_id", read_only=True)
    snapshot_name = serializers.CharField(source="snapshot.name", read_only=True)
    metrics = serializers.SerializerMethodField()
    verdicts = VerdictSerializer(many=True, read_only=True)

    class Meta:
        model = EvaluationRun
        fields = ["id", "snapshot", "snapshot_name", "spec", "detector_version", "recognizer_version", "status",
                  "batch_size", "total", "processed", "metrics", "verdicts", "passed", "latency_p50_ms",
                  "latency_p95_ms", "qps", "inference_seconds", "device", "error", "created_by", "created_at",
                  "started_at", "finished_at"]
        read_only_fields = fields

    @extend_schema_field(EvaluationResultSerializer)
    def get_metrics(self, obj) -> dict:
        # Always an object (a nullable $ref is not portable across OpenAPI 3.0 validators).
        return obj.metrics or {"by_category": {}}


class EvaluationCreateSerializer(serializers.Serializer):
    snapshot = serializers.PrimaryKeyRelatedField(queryset=Snapshot.objects.none())
    spec = serializers.PrimaryKeyRelatedField(queryset=DatasetSpec.objects.none(), required=False,
                                              help_text="Optional: the snapshot must belong to it")
    detector_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.none(), required=False, allow_null=True, default=None,
        help_text="A detector, or an external full-pipeline (HTTP) version, scored end to end "
                  "(recognizer_version then stays empty)")
    # default None: an omitted side is "not evaluated", like an explicit null
    recognizer_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.none(), required=False,
                                                            allow_null=True, default=None)
    batch_size = serializers.IntegerField(required=False, default=8, min_value=1, max_value=64)

    def __init__(self, *args, snapshots=None, specs=None, versions=None, **kwargs):
        super().__init__(*args, **kwargs)
        for name, queryset in (("snapshot", snapshots), ("spec", specs), ("detector_version", versions),
                               ("recognizer_version", versions)):
            if queryset is not None:  # the schema generator builds the serializer without querysets
                self.fields[name].queryset = queryset


class EvaluationSampleSerializer(serializers.ModelSerializer):
    image = serializers.IntegerField(source="item.image_id", read_only=True)
    crop_url = serializers.SerializerMethodField()

    class Meta:
        model = EvaluationSample
        fields = ["id", "item", "image", "region_index", "categories", "points", "truth_latex",
                  "predicted_latex", "edits", "edit_distance", "exact", "iou", "confidence", "image_predicted", "image_matched",
                  "latency_ms", "crop_url"]
        read_only_fields = fields

    def get_crop_url(self, obj) -> str | None:
        if obj.points is None:
            return None
        return absolute_url(self.context, f"/api/v1/evaluations/{obj.run_id}/samples/{obj.pk}/crop/")


class QAReportSerializer(serializers.ModelSerializer):
    """A spec's QA statistics at `computed_at` (see pipeline/stats.py for every section)."""

    payload = serializers.JSONField(help_text="Sections: agreement (overall, by_vendor, by_annotator, by_category), "
                                              "gold (overall, by_vendor, by_annotator), reviews (rates and reasons), "
                                              "prelabel (kept/moved/deleted/added per model and category), "
                                              "throughput (median seconds, cost per vendor and per formula)")

    class Meta:
        model = QAReport
        fields = ["id", "spec", "computed_at", "duration_ms", "payload"]
        read_only_fields = fields


class QARecomputeSerializer(serializers.Serializer):
    spec = serializers.IntegerField(help_text="Id of the spec to recompute")


class QARecomputeResultSerializer(serializers.Serializer):
    spec = serializers.IntegerField()
    scheduled = serializers.BooleanField()


# ------------------------------------------------------------------------------ webhooks

_EVENTS_HELP = "The events it is sent: " + ", ".join(f"{v} ({label.lower()})" for v, label in Webhook.Event.choices)


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook as its owner reads it: never its secret, only the secret's first characters."""

    url = serializers.CharField(read_only=True, help_text="Where the events are POSTed")
    events = serializers.ListField(child=serializers.ChoiceField(choices=Webhook.Event.choices), read_only=True,
                                   help_text=_EVENTS_HELP)
    secret_prefix = serializers.CharField(read_only=True, help_text="The signing secret's first characters, to "
                                                                    "recognise it by (the secret is shown once)")

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "active", "secret_prefix", "created_at"]
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(read_only=True, help_text="The HMAC-SHA256 key of X-Mathset-Signature, shown "
                                                             "this once: keep it where the receiver can read it")

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookWriteSerializer(serializers.Serializer):
    """A new webhook, or (PATCH) the fields to change of one."""

    url = serializers.CharField(max_length=2000, help_text="An http(s) URL without user name or password, at a "
                                                           "host the platform may call (MATHSET_WEBHOOK_HOSTS); "
                                                           "never a link-local or metadata address")
    events = serializers.ListField(child=serializers.ChoiceField(choices=Webhook.Event.choices), allow_empty=False,
                                   max_length=len(Webhook.Event.choices) * 2, help_text=_EVENTS_HELP)
    active = serializers.BooleanField(required=False, default=True, help_text="Switched off, it is sent nothing")


class WebhookDeliverySerializer(serializers.ModelSerializer):
    payload = serializers.JSONField(read_only=True, help_text="The JSON body POSTed (and signed)")

    class Meta:
        model = WebhookDelivery
        fields = ["id", "webhook", "event", "status", "attempts", "response_code", "error", "payload", "created_at",
                  "last_attempt_at", "delivered_at"]
        read_only_fields = fields
