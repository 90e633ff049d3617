"""Labeling API: vendors and members, batches, tasks and the work queue,
annotations with versions, reviews, and model predictions."""
from __future__ import annotations

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django.db.models import Count, Prefetch
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from common import roles
from common.permissions import IsCurator, IsCuratorOrReadOnly
from common.serializing import represent
from common.unchangeable import NOT_STORED, refuse_changes
from curation.selectors import images_visible_to, specs_visible_to

from .. import selectors, services
from ..filters import AnnotationFilter, BatchFilter, PredictionFilter, ReviewFilter, TaskFilter
from ..models import Prediction
from . import serializers as s

logger = logging.getLogger(__name__)


def _conflict(exc: services.StaleVersion, request) -> Response:
    current = selectors.annotations_visible_to(request.user).get(pk=exc.current.pk)
    return Response({"detail": f"Someone saved version {current.version} first; reload and reapply your change.",
                     "current_version": current.version,
                     "current": s.AnnotationSerializer(current, context={"request": request}).data},
                    status=status.HTTP_409_CONFLICT)


def _next_task_body(request) -> dict:
    """What `tasks/next/` answers `request.user`: the work queue's next task for them
    (one service call, `task_claim_next`), rendered as NextTaskSerializer."""
    result = services.task_claim_next(annotator=request.user)
    body = {"task": result.task, "reason": result.reason, "annotation": result.annotation_id,
            "lease_expires_at": result.claim.expires_at if result.claim else None,
            "blocked": {str(k): v for k, v in result.blocked.items()}}
    if result.task is not None:
        # The service loaded the task with its batch and image; only pre-labels are missing.
        result.task.image._prefetched_objects_cache = {"predictions": selectors.image_predictions(result.task.image)}
    return represent(s.NextTaskSerializer, body, {"request": request})


def _with_next(request, annotation_body: dict, wanted: bool) -> dict:
    """The annotation as answered, or with `next` asked: {"annotation": ..., "next": ...}.

    The next task is claimed after the save has committed, in its own transaction
    (a failed claim never undoes a saved answer, nor turns it into an error): `next`
    is null when the user may not take tasks from the queue (e.g. no longer an
    annotator) or the claim failed; `tasks/next/` then says why."""
    if not wanted:
        return annotation_body
    try:
        nxt = _next_task_body(request)
    except DjangoValidationError:
        nxt = None
    except DatabaseError:  # rolled back by the service's atomic block; the answer was saved before
        logger.exception("Claiming the next task after a save failed (user %s)", request.user.pk)
        nxt = None
    return {"annotation": annotation_body, "next": nxt}


def _maybe_next(plain):
    """The schema of an answer that carries the next task when the request asks `next: true`."""
    return PolymorphicProxySerializer(
        component_name=f"{plain.__name__.removesuffix('Serializer')}OrWithNext",
        serializers=[plain, s.AnnotationWithNextSerializer], resource_type_field_name=None)


class VendorViewSet(viewsets.ModelViewSet):
    """Outsourcing companies. Vendor users see only their own."""

    serializer_class = s.VendorSerializer
    permission_classes = [IsCuratorOrReadOnly]
    filterset_fields = ["active", "slug"]
    http_method_names = ["get", "post", "head", "options"]
    # Members page as every other paged read does, so one client loop (follow `next`) walks any of them.
    cursor_paging_actions = ("list", "members")

    def get_queryset(self):
        return selectors.vendors_visible_to(self.request.user)

    def perform_create(self, serializer):
        serializer.instance = services.vendor_create(**serializer.validated_data)

    def get_permissions(self):
        if self.action == "members":
            return []  # authenticated (default) checked in `members`; curators or the vendor's managers write
        return super().get_permissions()

    @extend_schema(methods=["GET"], responses=s.MemberSerializer(many=True))
    @extend_schema(methods=["POST"], request=s.MemberCreateSerializer, responses={201: s.MemberSerializer})
    @action(detail=True, methods=["get", "post"])
    def members(self, request, pk=None):
        """The vendor's managers, annotators and reviewers. Curators and the vendor's
        managers add people (a new account in a vendor role)."""
        if not request.user.is_authenticated:
            raise PermissionDenied()
        vendor = self.get_object()
        if request.method == "POST":
            if not selectors.can_add_members(request.user, vendor):
                raise PermissionDenied("Only curators and the vendor's managers add members.")
            data = s.MemberCreateSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            user = services.vendor_member_create(vendor=vendor, **data.validated_data)
            user = selectors.members_visible_to(request.user, vendor).get(pk=user.pk)
            return Response(s.MemberSerializer(user).data, status=status.HTTP_201_CREATED)
        qs = selectors.members_visible_to(request.user, vendor)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.MemberSerializer(page, many=True).data)


class BatchViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Batches of tasks given to vendors. Curators create one by filter; prices show
    only to curators and vendor managers."""

    serializer_class = s.BatchSerializer
    permission_classes = [IsCuratorOrReadOnly]
    filterset_class = BatchFilter
    ordering_fields = ["created_at", "deadline", "id"]
    cursor_paging_actions = ("list", "history")

    def get_queryset(self):
        if self.action == "history":  # finds the batch only (a 404 when not visible): no task count
            return selectors.batches_visible_to(self.request.user)
        # Ordered explicitly: Django drops Meta.ordering from a query with an aggregate (GROUP BY),
        # and unordered offset pages may repeat or skip batches on PostgreSQL.
        return (selectors.batches_visible_to(self.request.user).annotate(task_count=Count("tasks"))
                .order_by("-created_at", "-id"))

    @extend_schema(request=s.BatchCreateSerializer, responses={201: s.BatchSerializer})
    def create(self, request):
        """Create a batch from the spec's images matching a filter (categories,
        source, not yet labeled), lowest model confidence first, up to `quantity`."""
        data = s.BatchCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        spec = specs_visible_to(request.user).filter(pk=v.pop("spec")).first()
        if spec is None:
            raise ValidationError({"spec": ["Unknown spec."]})
        vendor = selectors.vendors_visible_to(request.user).filter(pk=v.pop("vendor")).first()
        if vendor is None:
            raise ValidationError({"vendor": ["Unknown vendor."]})
        batch = services.batch_create(spec=spec, vendor=vendor, created_by=request.user, **v)
        return Response(self.get_serializer(self.get_queryset().get(pk=batch.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.BatchUpdateSerializer, responses=s.BatchSerializer)
    def partial_update(self, request, pk=None):
        """Change a batch's name, status, deadline, price or agreed quantity. What only
        making a batch takes (spec, vendor, kind, overlap, the image filter) is a 400
        unless sent as stored. Each change is kept in the batch's `history`, with the
        `reason` given; reopening a closed batch needs one (else a 400 naming `reason`)."""
        batch = self.get_object()
        filters = batch.filters or {}
        refuse_changes(request.data, {
            "spec": batch.spec_id, "vendor": batch.vendor_id, "kind": batch.kind, "overlap": batch.overlap,
            "quantity": batch.agreed_quantity, "categories": filters.get("categories", NOT_STORED),
            "source": filters.get("source", NOT_STORED), "only_unlabeled": filters.get("only_unlabeled", NOT_STORED),
            "lowest_confidence_first": filters.get("lowest_confidence_first", NOT_STORED),
        })
        data = s.BatchUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.batch_update(batch=batch, by=request.user, **data.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=batch.pk)).data)

    def filter_queryset(self, queryset):
        # The list's filters and ordering choose batches: applied to the one batch whose history
        # is read they would only turn it into a 404 (?kind=latex on a full batch).
        if self.action == "history":
            return queryset
        return super().filter_queryset(queryset)

    @extend_schema(responses=s.BatchEventSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """Who made the batch, and who changed its status, deadline, price, currency, agreed
        quantity or name: when, from what to what, and why; oldest first. People are named by
        username (null: no user, e.g. a command). Who sees no prices sees no price values, nor
        the changes of prices alone."""
        batch = self.get_object()
        page = self.paginate_queryset(selectors.batch_history(batch, request.user))
        return self.get_paginated_response(
            s.BatchEventSerializer(page, many=True, context=self.get_serializer_context()).data)


class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Tasks of the batches you may see. `next` gives an annotator their next task."""

    filterset_class = TaskFilter
    ordering_fields = ["id", "priority", "model_confidence", "updated_at"]

    def get_queryset(self):
        qs = selectors.tasks_visible_to(self.request.user)
        if self.action in ("retrieve", "next"):
            qs = qs.prefetch_related(Prefetch("image__predictions", queryset=Prediction.objects.order_by("-id")))
        return qs

    def get_serializer_class(self):
        return s.TaskDetailSerializer if self.action == "retrieve" else s.TaskSerializer

    @extend_schema(request=None, responses=s.NextTaskSerializer)
    @action(detail=False, methods=["post"])
    def next(self, request):
        """Your next task: rework sent back to you first, then the task you hold a
        lease on, then a new one from your vendor's active batches under a 30-minute
        lease. `task` is null when there is no work (`blocked` says which batches wait
        on you, e.g. to acknowledge a guide)."""
        return Response(_next_task_body(request))

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """Give your lease on this task back to the queue."""
        services.claim_release(task=self.get_object(), annotator=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.TaskGoldSerializer, responses=s.TaskSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsCurator])
    def gold(self, request, pk=None):
        """Curators: set (or clear with null) the task's known answer."""
        task = self.get_object()
        data = s.TaskGoldSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.task_set_gold(task=task, answer=data.validated_data["gold_answer"])
        return Response(s.TaskSerializer(self.get_queryset().get(pk=task.pk), context={"request": request}).data)


class AnnotationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Annotations with their current regions. Each save is a new version (optimistic
    concurrency: send the `version` you edited; a stale one answers 409 with the
    current state). Reviewers find theirs in `review-queue`."""

    serializer_class = s.AnnotationSerializer
    filterset_class = AnnotationFilter
    ordering_fields = ["id", "updated_at", "submitted_at"]
    # The review queue can hold a vendor's whole backlog, and a history many versions: a cursor reads
    # every page at the same cost, however deep.
    cursor_paging_actions = ("list", "review_queue", "history")

    def get_queryset(self):
        return selectors.annotations_visible_to(self.request.user)

    def _prediction(self, pk):
        if pk is None:
            return None
        prediction = selectors.predictions_visible_to(self.request.user).filter(pk=pk).first()
        if prediction is None:
            raise ValidationError({"started_from": ["Unknown prediction."]})
        return prediction

    def _respond(self, annotation, code=status.HTTP_200_OK, with_next=False):
        fresh = self.get_queryset().get(pk=annotation.pk)
        return Response(_with_next(self.request, self.get_serializer(fresh).data, with_next), status=code)

    @extend_schema(request=s.AnnotationCreateSerializer, responses={201: _maybe_next(s.AnnotationSerializer)})
    def create(self, request):
        """Save your first answer for a task you hold a lease on (optionally `submit` at once).
        With `next: true` the answer also carries your next task, as `tasks/next/` would
        give it: one round trip for "submit, then next"."""
        data = s.AnnotationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        with_next = v.pop("next")
        task = selectors.task_visible_to(request.user, v.pop("task"))
        if task is None:
            raise ValidationError({"task": ["Unknown task."]})
        annotation = services.annotation_create(task=task, annotator=request.user,
                                                started_from=self._prediction(v.pop("started_from")), **v)
        # The service hands back the saved annotation with its regions: no need to read it again.
        body = represent(s.AnnotationSerializer, annotation, self.get_serializer_context())
        return Response(_with_next(request, body, with_next), status=status.HTTP_201_CREATED)

    @extend_schema(request=s.AnnotationUpdateSerializer,
                   responses={200: _maybe_next(s.AnnotationSerializer), 409: s.ConflictSerializer})
    def update(self, request, pk=None):
        """Save a new version; `version` must be the current one, else 409. `next: true`
        as for a new annotation."""
        annotation = self.get_object()
        refuse_changes(request.data, {"task": annotation.task_id})  # a full representation sends it unchanged
        data = s.AnnotationUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        with_next = v.pop("next")
        try:
            annotation = services.annotation_update(annotation=annotation, by=request.user,
                                                    started_from=self._prediction(v.pop("started_from")), **v)
        except services.StaleVersion as exc:
            return _conflict(exc, request)
        return self._respond(annotation, with_next=with_next)

    @extend_schema(request=s.AnnotationUpdateSerializer,
                   responses={200: _maybe_next(s.AnnotationSerializer), 409: s.ConflictSerializer})
    def partial_update(self, request, pk=None):
        """Same as PUT: a new version always holds the full list of regions."""
        return self.update(request, pk=pk)

    @extend_schema(request=s.AnnotationSubmitSerializer,
                   responses={200: _maybe_next(s.AnnotationSerializer), 409: s.ConflictSerializer})
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        """Hand the current version in for review (`next: true`: with your next task)."""
        annotation = self.get_object()
        data = s.AnnotationSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        with_next = v.pop("next")
        try:
            annotation = services.annotation_submit(annotation=annotation, by=request.user, **v)
        except services.StaleVersion as exc:
            return _conflict(exc, request)
        return self._respond(annotation, with_next=with_next)

    @extend_schema(responses=s.AnnotationVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """Every saved version, oldest first, with author, time spent and regions."""
        annotation = self.get_object()
        page = self.paginate_queryset(selectors.annotation_history(annotation))
        return self.get_paginated_response(s.AnnotationVersionSerializer(page, many=True).data)

    @extend_schema(request=None, responses={200: s.AnnotationSerializer, 204: None})
    @action(detail=False, methods=["post"], url_path="review-next")
    def review_next(self, request):
        """The next submitted annotation for you to review, held for you for 10 minutes so that
        reviewers side by side get different ones (the one you hold, else the oldest nobody
        holds); 204 when nothing is waiting or all of it is open with other reviewers."""
        annotation = services.review_open_next(reviewer=request.user)
        if annotation is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        annotation = selectors.annotations_reviewable_by(request.user).get(pk=annotation.pk)
        return Response(self.get_serializer(annotation).data)

    @extend_schema(responses=s.AnnotationSerializer(many=True))
    @action(detail=False, methods=["get"], url_path="review-queue")
    def review_queue(self, request):
        """Submitted annotations you may review, oldest first."""
        qs = self.filter_queryset(selectors.annotations_reviewable_by(request.user))
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class ReviewViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Reviewers' decisions. POST accepts or rejects a submitted annotation with
    reason codes (wrong_region, missing_formula, latex_error, guide_violation, other).
    An acceptance may carry `corrections` ({region index: LaTeX} or {region index: {"latex": LaTeX,
    "points": [[x, y] x4]}}): the reviewer fixes those regions' LaTeX and/or moves their corners
    and accepts in one step; the fixed answer becomes the annotation's next version, authored by
    the reviewer, and the review lists what changed (`corrections`: {index: [old LaTeX, new LaTeX]};
    `geometry_corrections`: {index: [old points, new points]})."""

    serializer_class = s.ReviewSerializer
    filterset_class = ReviewFilter

    def get_queryset(self):
        return selectors.reviews_visible_to(self.request.user)

    @extend_schema(request=s.ReviewCreateSerializer,
                   responses={201: s.ReviewSerializer, 409: s.ConflictSerializer})
    def create(self, request):
        data = s.ReviewCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        # A closed batch's annotation is out of the queue but still found here, so that the
        # service refuses it saying why ("The batch … is closed").
        annotation = (selectors.annotations_reviewable_by(request.user, include_closed=True)
                      .filter(pk=v.pop("annotation")).first())
        if annotation is None:
            raise ValidationError({"annotation": ["No submitted annotation with this id awaits your review."]})
        try:
            review = services.review_create(annotation=annotation, reviewer=request.user, **v)
        except services.StaleVersion as exc:
            return _conflict(exc, request)
        return Response(s.ReviewSerializer(self.get_queryset().get(pk=review.pk)).data,
                        status=status.HTTP_201_CREATED)


class PredictionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Models' pre-labels per image. Model teams and curators import them in bulk."""

    serializer_class = s.PredictionSerializer
    filterset_class = PredictionFilter

    def get_queryset(self):
        return selectors.predictions_visible_to(self.request.user)

    @extend_schema(request=s.PredictionImportSerializer,
                   responses={201: s.PredictionImportResultSerializer,
                              403: OpenApiResponse(description="Only model teams and curators import")})
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """Import up to 2000 images' predictions of one model version, all or nothing,
        in the annotation region format (plus `confidence` per item and region)."""
        if not roles.has_role(request.user, roles.MODEL_TEAM, roles.CURATOR):
            raise PermissionDenied("Only model teams and curators import predictions.")
        data = s.PredictionImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        saved = services.predictions_import(created_by=request.user, images=images_visible_to(request.user),
                                            **data.validated_data)
        return Response({"imported": len(saved), "ids": [p.id for p in saved]}, status=status.HTTP_201_CREATED)


