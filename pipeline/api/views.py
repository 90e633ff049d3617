"""Pipeline API: model registry, pre-labeling jobs, predictions, offline evaluations."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from common import roles
from common.fields import unstorable_char
from common.filters import IdField
from common.http_files import bytes_response
from common.permissions import IsCurator
from common.uploads import UploadLimitsMixin, raise_if_refused
from curation.models import Image
from curation.selectors import images_visible_to, snapshots_visible_to, specs_visible_to

from .. import evaluation, selectors, services, stats, webhooks
from ..filters import (
    EvaluationRunFilter,
    ModelVersionFilter,
    PredictionFilter,
    PrelabelJobFilter,
    QAReportFilter,
    WebhookDeliveryFilter,
    WebhookFilter,
)
from ..models import EvaluationSample, Webhook, WebhookDelivery
from . import serializers as s


class IsModelTeamOrCuratorWrite(BasePermission):
    """Curators and model teams read and register models; nobody else sees them."""

    message = "Only curators and model teams can manage models."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        return roles.has_role(user, roles.CURATOR, roles.MODEL_TEAM)


class ModelVersionViewSet(UploadLimitsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Model versions (detectors, recognizers, external pipelines) and which one is active."""

    serializer_class = s.ModelVersionSerializer
    permission_classes = [IsModelTeamOrCuratorWrite]
    filterset_class = ModelVersionFilter
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self):
        return selectors.model_versions_visible_to(self.request.user)

    def upload_limits(self) -> dict | None:
        if self.action == "create":
            return {"max_file_bytes": services.MAX_UPLOAD_BYTES, "file_fields": ["file", *services.SIDE_MODELS]}
        return None

    @extend_schema(request={"multipart/form-data": s.ModelUploadSerializer}, responses={201: s.ModelVersionSerializer})
    def create(self, request):
        """Upload a model: TorchScript (detectors) or a state dict + config (both kinds)."""
        raise_if_refused(request)
        data = s.ModelUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        upload = v.pop("file")
        # sizes before reading: the service would refuse a file over the limit only after it was
        # read whole into memory (the size check is kept there for other callers)
        for field, sent in {"file": upload, **{k: v[k] for k in services.SIDE_MODELS if k in v}}.items():
            services.check_upload_size(field=field, size=sent.size)
        side_models = {field: v.pop(field).read() for field in services.SIDE_MODELS if field in v}
        mv = services.model_version_upload(file_name=upload.name, content=upload.read(), fmt=v.pop("format"),
                                           side_models=side_models, created_by=request.user, **v)
        return Response(s.ModelVersionSerializer(mv).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.HttpModelSerializer, responses={201: s.ModelVersionSerializer})
    @action(detail=False, methods=["post"], url_path="http")
    def register_http(self, request):
        """Register an external model reached over HTTP (predict endpoint taking image URLs)."""
        data = s.HttpModelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        mv = services.model_version_register_http(created_by=request.user, **data.validated_data)
        return Response(s.ModelVersionSerializer(mv).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.ModelVersionSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        """Make this version the active one of its kind (workers pick it up for new jobs)."""
        mv = services.model_version_activate(version=self.get_object())
        return Response(s.ModelVersionSerializer(mv).data)


class PrelabelJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pre-labeling jobs with progress (done, skipped, failed, pending, ETA)."""

    serializer_class = s.PrelabelJobSerializer
    filterset_class = PrelabelJobFilter
    # A job over a whole spec can fail on thousands of images: a cursor reads each page at the same cost.
    cursor_paging_actions = ("list", "failures")

    def get_permissions(self):
        if self.request.method in SAFE_METHODS:
            return [IsModelTeamOrCuratorWrite()]
        return [IsCurator()]

    def get_queryset(self):
        return selectors.prelabel_jobs_visible_to(self.request.user)

    def list(self, request, *args, **kwargs):
        # (No docstring: the schema describes the list by the class's.) The page is picked among
        # the jobs alone, filtered, ordered and paged (offset or cursor) as the selector's would
        # be, then only its jobs are read with their progress counts: paged on the selector, whose
        # counts group every job's items, each page (and the offset count) grouped the items of
        # every job ever run. The order is the selector's: by id, as Django leaves Meta.ordering
        # out of a GROUP BY query, so the cursors given out before stay valid.
        picked = self.filter_queryset(selectors.prelabel_jobs_listed_to(request.user).order_by("pk"))
        page = self.paginate_queryset(picked)
        jobs = selectors.prelabel_jobs_with_progress(request.user, [job.pk for job in page])
        return self.get_paginated_response(self.get_serializer(jobs, many=True).data)

    @extend_schema(request=s.PrelabelJobCreateSerializer, responses={201: s.PrelabelJobSerializer})
    def create(self, request):
        """Pre-label a spec's images or the listed image ids with the active models."""
        data = s.PrelabelJobCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        spec = images = None
        if "spec" in v:
            spec = specs_visible_to(request.user).filter(pk=v["spec"]).first()
            if spec is None:
                raise ValidationError({"spec": "no such spec"})
        else:
            wanted = set(v["image_ids"])
            found = set(images_visible_to(request.user).filter(pk__in=wanted).values_list("pk", flat=True))
            missing = sorted(wanted - found)
            if missing:
                raise ValidationError({"image_ids": f"unknown image id(s): {missing[:20]}"})
            images = list(Image.objects.filter(pk__in=found))
        job = services.prelabel_job_create(created_by=request.user, spec=spec, images=images, force=v["force"],
                                           chunk_size=v["chunk_size"])
        job = get_object_or_404(self.get_queryset(), pk=job.pk)
        return Response(s.PrelabelJobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.PrelabelJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel: queued chunks do nothing, a running chunk stops storing after its batch."""
        services.prelabel_job_cancel(job=self.get_object())
        return Response(s.PrelabelJobSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=s.PrelabelJobSerializer)
    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        """Queue the failed images again."""
        services.prelabel_job_retry_failed(job=self.get_object())
        return Response(s.PrelabelJobSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=s.PrelabelJobSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Queue the still-pending images of a running job again (e.g. after a worker died)."""
        services.prelabel_job_resume(job=self.get_object())
        return Response(s.PrelabelJobSerializer(self.get_object()).data)

    @extend_schema(responses=s.FailureSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])  # the job's failures, not a filtered job list
    def failures(self, request, pk=None):
        """The failed images with their recorded errors."""
        page = self.paginate_queryset(selectors.prelabel_job_failures(self.get_object()))
        return self.get_paginated_response(s.FailureSerializer(page, many=True).data)


class PredictionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Model predictions per image (regions with 4 points, masks as RLE, LaTeX, confidences)."""

    serializer_class = s.ModelPredictionSerializer
    filterset_class = PredictionFilter

    def get_queryset(self):
        return selectors.predictions_visible_to(self.request.user).order_by("min_confidence", "id")


class EvaluationRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Offline evaluations of model versions on a snapshot's test split: metrics overall and per
    category, time per image, QPS and a verdict per requirement of the spec."""

    serializer_class = s.EvaluationRunSerializer
    permission_classes = [IsModelTeamOrCuratorWrite]
    filterset_class = EvaluationRunFilter
    ordering_fields = ["id", "created_at", "finished_at"]
    # A run holds a sample per test region; a model team pulls them all, at the same cost per page by cursor.
    cursor_paging_actions = ("list", "samples")

    def get_queryset(self):
        return selectors.evaluation_runs_visible_to(self.request.user)

    @extend_schema(request=s.EvaluationCreateSerializer, responses={201: s.EvaluationRunSerializer})
    def create(self, request):
        """Queue an evaluation (runs on a Celery worker); answers 201 with the queued run."""
        data = s.EvaluationCreateSerializer(
            data=request.data, snapshots=snapshots_visible_to(request.user),
            specs=specs_visible_to(request.user), versions=selectors.model_versions_visible_to(request.user))
        data.is_valid(raise_exception=True)
        run = evaluation.evaluation_create(created_by=request.user, **data.validated_data)
        return Response(s.EvaluationRunSerializer(self.get_queryset().get(pk=run.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.EvaluationRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued or running evaluation (a running one stops before its next batch)."""
        evaluation.evaluation_cancel(run=self.get_object())
        return Response(s.EvaluationRunSerializer(self.get_object()).data)

    @extend_schema(parameters=[OpenApiParameter("category", str, description="Only samples of images in this "
                                                                             "category (any of theirs)")],
                   responses=s.EvaluationSampleSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])
    def samples(self, request, pk=None):
        """Per-region results, worst first (largest token edit distance, then missed detections)."""
        category = request.query_params.get("category")
        if category and unstorable_char(category) is not None:  # PostgreSQL's jsonb cannot compare it (a 500)
            raise DRFValidationError({"category": ["Null and surrogate characters are not allowed."]})
        qs = selectors.evaluation_samples_worst_first(self.get_object(), category=category)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(
            s.EvaluationSampleSerializer(page, many=True, context=self.get_serializer_context()).data)

    @extend_schema(parameters=[OpenApiParameter("sample_id", int, OpenApiParameter.PATH)],
                   responses={(200, "image/jpeg"): OpenApiTypes.BINARY, 404: None})
    @action(detail=True, methods=["get"], url_path=r"samples/(?P<sample_id>[0-9]+)/crop", filter_backends=[])
    def crop(self, request, pk=None, sample_id=None):
        """The sample's truth region cut out of the frozen image and straightened (JPEG)."""
        sample = get_object_or_404(EvaluationSample.objects.select_related("item"), run=self.get_object(),
                                   pk=sample_id)
        if sample.points is None:
            raise Http404("This sample has no region.")
        try:
            data = evaluation.sample_crop_jpeg(sample=sample)
        except FileNotFoundError:
            raise Http404("The stored image is missing.") from None
        # Ranges, an ETag (the bytes' sha256: the crop is deterministic) and 304s (common.http_files).
        return bytes_response(data, request=request, content_type="image/jpeg", cache_control="private, max-age=3600")


class QAReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """QA statistics per spec (curators): agreement, gold accuracy, reviews, pre-label changes,
    throughput and cost, recomputed by a Celery worker after submits and reviews (debounced)."""

    serializer_class = s.QAReportSerializer
    filterset_class = QAReportFilter
    permission_classes = [IsCurator]

    def get_queryset(self):
        return selectors.qa_reports_visible_to(self.request.user)

    @extend_schema(parameters=[OpenApiParameter("spec", int, required=True, description="Spec id")],
                   responses=s.QAReportSerializer)
    @action(detail=False, methods=["get"])
    def latest(self, request):
        """The newest report of `spec` (404 when none was computed yet)."""
        field = IdField()  # bounded: a number beyond 64 bits would otherwise reach the database
        try:
            spec_id = field.clean(request.query_params.get("spec"))
        except ValidationError as exc:
            raise DRFValidationError({"spec": exc.messages}) from None
        report = self.get_queryset().filter(spec_id=spec_id).order_by("-computed_at", "-id").first()
        if report is None:
            raise Http404
        return Response(self.get_serializer(report).data)

    @extend_schema(request=s.QARecomputeSerializer, responses={202: s.QARecomputeResultSerializer})
    @action(detail=False, methods=["post"])
    def recompute(self, request):
        """Compute a spec's statistics now (on a worker), without waiting for the debounce."""
        data = s.QARecomputeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        spec = specs_visible_to(request.user).filter(pk=data.validated_data["spec"]).first()
        if spec is None:
            raise DRFValidationError({"spec": ["Unknown spec."]})
        stats.spec_stats_request(spec=spec)
        return Response({"spec": spec.pk, "scheduled": True}, status=status.HTTP_202_ACCEPTED)


class MayOwnWebhooks(BasePermission):
    """Curators and model teams have webhooks; vendor people are refused outright (403)."""

    message = "Only curators and model teams can have webhooks."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and webhooks.may_own_webhooks(user))


class WebhookViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your webhooks: URLs Mathset POSTs signed JSON to when an event you subscribed to happens
    (a snapshot or export is ready, an evaluation or pre-labeling job finished, a batch closed), for
    the objects you may see. Each POST carries `X-Mathset-Event`, `X-Mathset-Delivery` (its id) and
    `X-Mathset-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the webhook's secret>`.
    A network error or 5xx answer is retried with a growing delay; 3xx and 4xx are final. Each
    user sees only their own webhooks."""

    serializer_class = s.WebhookSerializer
    permission_classes = [MayOwnWebhooks]
    filterset_class = WebhookFilter
    ordering_fields = ["id", "created_at"]
    cursor_paging_actions = ("list", "deliveries")

    def get_queryset(self):
        return selectors.webhooks_visible_to(self.request.user)

    @extend_schema(request=s.WebhookWriteSerializer, responses={201: s.WebhookCreatedSerializer})
    def create(self, request):
        """Register a webhook; the answer holds its signing `secret`, shown this once."""
        data = s.WebhookWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = webhooks.webhook_create(owner=request.user, **data.validated_data)
        body = s.WebhookCreatedSerializer(issued.webhook).data
        body["secret"] = issued.secret
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.WebhookWriteSerializer(partial=True), responses=s.WebhookSerializer)
    def partial_update(self, request, pk=None):
        """Change the URL (checked again), the events or `active`."""
        webhook = self.get_object()
        data = s.WebhookWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        webhook = webhooks.webhook_update(webhook=webhook, **data.validated_data)
        return Response(s.WebhookSerializer(webhook).data)

    def destroy(self, request, pk=None):
        """Delete the webhook and its delivery records."""
        webhooks.webhook_delete(webhook=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={201: s.WebhookCreatedSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """Give the webhook a new signing secret, shown this once (the old one stops signing)."""
        issued = webhooks.webhook_secret_rotate(webhook=self.get_object())
        body = s.WebhookCreatedSerializer(issued.webhook).data
        body["secret"] = issued.secret
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[
        OpenApiParameter("status", str, enum=WebhookDelivery.Status.values, description="Only deliveries in this state"),
        OpenApiParameter("event", str, enum=[*Webhook.Event.values, WebhookDelivery.PING],
                         description="Only deliveries of this event")],
        responses=s.WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])  # the webhook's deliveries, not a webhook list
    def deliveries(self, request, pk=None):
        """What was sent to the webhook, newest first: status, tries, the last HTTP status or error."""
        found = WebhookDeliveryFilter(request.query_params, queryset=selectors.webhook_deliveries_of(self.get_object()))
        if not found.is_valid():
            raise DRFValidationError(found.errors)
        page = self.paginate_queryset(found.qs)
        return self.get_paginated_response(s.WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(request=None, responses={202: s.WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def ping(self, request, pk=None):
        """Send the webhook a `ping` event now (whatever its events), to try the receiver."""
        delivery = webhooks.webhook_ping(webhook=self.get_object())
        delivery.refresh_from_db()  # a worker running eagerly may have sent it already
        return Response(s.WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=[OpenApiParameter("delivery_id", int, OpenApiParameter.PATH)], request=None,
                   responses={202: s.WebhookDeliverySerializer})
    @action(detail=True, methods=["post"], url_path=r"deliveries/(?P<delivery_id>[0-9]+)/redeliver",
            filter_backends=[])
    def redeliver(self, request, pk=None, delivery_id=None):
        """Send a recorded delivery's payload again, as a new delivery."""
        delivery = get_object_or_404(selectors.webhook_deliveries_of(self.get_object()), pk=delivery_id)
        again = webhooks.webhook_redeliver(delivery=delivery)
        again.refresh_from_db()
        return Response(s.WebhookDeliverySerializer(again).data, status=status.HTTP_202_ACCEPTED)
