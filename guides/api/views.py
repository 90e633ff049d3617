"""Guides API: guides and versions, examples, FAQ, acknowledgements, questions,
notifications, contracts and the cost report.

Every queryset comes from a selector, and detail actions look the object up
before checking the role, so another vendor's object is always a 404.
"""
from __future__ import annotations

from dataclasses import asdict

import django_filters
from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from common import roles
from common.downloads import csv_response
from common.fields import parse_row_id
from common.filters import IdFilter
from common.http_files import bytes_response, stored_file_response
from common.unchangeable import refuse_changes
from curation.takedowns import refuse_taken_down

from .. import costs, imaging, rendering, selectors, services
from ..filters import (
    AcknowledgementFilter,
    ContractFilter,
    FaqFilter,
    GuideExampleFilter,
    GuideVersionFilter,
    NotificationFilter,
    QuestionFilter,
)
from ..models import Contract, FaqEntry, Guide, GuideAcknowledgement, GuideExample, GuideVersion, Notification, Question
from . import serializers as s

JPEG = OpenApiResponse(OpenApiTypes.BINARY, description="JPEG image")


class CuratorWrites(BasePermission):
    """Reads for anyone signed in (selectors scope them); writes for curators.

    On detail routes the role is checked against the object, i.e. after the
    scoped lookup, so a foreign object answers 404 rather than 403.
    """

    message = "Only curators can change this."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or getattr(view, "detail", False) or roles.is_curator(request.user)

    def has_object_permission(self, request, view, obj) -> bool:
        return request.method in SAFE_METHODS or roles.is_curator(request.user)


def _require_curator(request) -> None:
    if not roles.is_curator(request.user):
        raise PermissionDenied("Only curators can do this.")


def _jpeg(request, data: bytes):
    # Ranges, an ETag (the bytes' sha256: the rendering is deterministic) and 304s (common.http_files).
    return bytes_response(data, request=request, content_type="image/jpeg", cache_control="private, max-age=300")


class _GuideFilter(django_filters.FilterSet):
    # An id filter, not a choice among every spec: a spec the user may not see must
    # answer like one that does not exist (an empty list), not reveal that it exists.
    spec = IdFilter(field_name="spec_id", label="Spec id")

    class Meta:
        model = Guide
        fields = ["spec"]


class GuideViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                   viewsets.GenericViewSet):
    """The work guide of each spec; its text lives in versions."""

    queryset = Guide.objects.none()  # for the schema; get_queryset() scopes by user
    serializer_class = s.GuideSerializer
    permission_classes = [CuratorWrites]
    filterset_class = _GuideFilter

    def get_queryset(self):
        return selectors.guides_visible_to(self.request.user).prefetch_related(
            Prefetch("versions", queryset=GuideVersion.objects.order_by("-number").only("id", "guide_id", "status",
                                                                                        "number"))
        ).order_by("spec_id")

    @extend_schema(request=s.GuideCreateSerializer, responses={201: s.GuideSerializer})
    def create(self, request, *args, **kwargs):
        data = s.GuideCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        v = data.validated_data
        guide = services.guide_create(spec=v["spec"], title=v["title"], created_by=request.user,
                                      body_md=v["body_md"], change_notes=v["change_notes"])
        return Response(s.GuideSerializer(self.get_queryset().get(pk=guide.pk)).data, status=status.HTTP_201_CREATED)


class GuideVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                          mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Versions of a guide. Drafts (curators only) can change; published ones never do."""

    queryset = GuideVersion.objects.none()  # for the schema; get_queryset() scopes by user
    serializer_class = s.GuideVersionSerializer
    permission_classes = [CuratorWrites]
    filterset_class = GuideVersionFilter
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.guide_versions_visible_to(self.request.user).prefetch_related(
            Prefetch("faq", queryset=FaqEntry.objects.select_related("version__guide")),
            Prefetch("examples", queryset=GuideExample.objects.select_related("image")),
            Prefetch("acknowledgements", queryset=GuideAcknowledgement.objects.filter(user=self.request.user),
                     to_attr="my_acks"),
        ).order_by("guide_id", "-number")

    def _out(self, version, code=status.HTTP_200_OK):
        version = self.get_queryset().get(pk=version.pk)
        return Response(s.GuideVersionSerializer(version, context=self.get_serializer_context()).data, status=code)

    @extend_schema(request=s.GuideVersionCreateSerializer, responses={201: s.GuideVersionSerializer})
    def create(self, request, *args, **kwargs):
        data = s.GuideVersionCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        version = services.guide_version_create(created_by=request.user, **data.validated_data)
        return self._out(version, status.HTTP_201_CREATED)

    @extend_schema(request=s.GuideVersionUpdateSerializer, responses={200: s.GuideVersionSerializer})
    def partial_update(self, request, *args, **kwargs):
        """Change a draft's text or change notes; its guide is fixed."""
        version = self.get_object()
        refuse_changes(request.data, {"guide": version.guide_id})
        data = s.GuideVersionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.guide_version_update(version=version, **data.validated_data)
        return self._out(version)

    @extend_schema(request=None, responses={200: s.GuideVersionSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Publish a draft; annotators must then acknowledge it before their next task."""
        version = self.get_object()
        return self._out(services.guide_version_publish(version=version, by=request.user))

    @extend_schema(parameters=[OpenApiParameter("spec", int, required=True)],
                   responses={200: s.AckRequiredSerializer})
    @action(detail=False, methods=["get"], url_path="acknowledgement-required", pagination_class=None)
    def acknowledgement_required(self, request):
        """The version you must acknowledge before taking a task of `spec` (null when none)."""
        raw = parse_row_id(request.query_params.get("spec", ""))
        spec = selectors.guide_specs_visible_to(request.user).filter(pk=raw).first() if raw is not None else None
        if spec is None:
            raise ValidationError({"spec": ["Give the id of a spec you work on."]})
        version = selectors.guide_acknowledgement_required(user=request.user, spec=spec)
        return Response({"spec": spec.id, "version": version.id if version else None,
                         "number": version.number if version else None,
                         "url": f"/guides/{version.guide_id}/" if version else None})

    @extend_schema(request=None, responses={201: s.AcknowledgementSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def acknowledge(self, request, pk=None):
        """I have read this (current, published) version."""
        version = self.get_object()
        ack = services.guide_acknowledge(version=version, user=request.user)
        return Response(s.AcknowledgementSerializer(ack).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("against", int, required=True, description="Id of the older version")],
        responses={200: s.DiffSerializer},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request, pk=None):
        """What changed between `against` and this version (side-by-side HTML and unified text)."""
        version = self.get_object()
        raw = parse_row_id(request.query_params.get("against", ""))
        if raw is None:
            raise ValidationError({"against": ["Give the id of the version to compare with."]})
        other = selectors.guide_versions_visible_to(request.user).filter(pk=raw, guide_id=version.guide_id).first()
        if other is None:
            raise ValidationError({"against": [f"No version {raw} of this guide."]})
        old, new = sorted([other, version], key=lambda v: v.number)
        labels = {"old_label": f"version {old.number}", "new_label": f"version {new.number}"}
        return Response({
            "old": old.id, "new": new.id, "old_number": old.number, "new_number": new.number,
            "html": rendering.diff_html(old.body_md, new.body_md, **labels),
            "unified": rendering.diff_unified(old.body_md, new.body_md, **labels),
        })

    @extend_schema(responses={200: s.ReaderSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None)
    def readers(self, request, pk=None):
        """Who of the vendors on this spec has read this version (curators, vendor managers)."""
        version = self.get_object()
        if not (roles.is_curator(request.user) or roles.has_role(request.user, roles.VENDOR_MANAGER)):
            raise PermissionDenied("Only curators and vendor managers see who has read a guide.")
        return Response(s.ReaderSerializer(selectors.version_readers(user=request.user, version=version),
                                           many=True).data)


class GuideExampleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                          mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Good and bad example images of a version, with their regions drawn."""

    queryset = GuideExample.objects.none()  # for the schema; get_queryset() scopes by user
    serializer_class = s.GuideExampleSerializer
    permission_classes = [CuratorWrites]
    filterset_class = GuideExampleFilter

    def get_queryset(self):
        return selectors.guide_examples_visible_to(self.request.user).order_by("version_id", "position", "id")

    @extend_schema(request=s.GuideExampleCreateSerializer, responses={201: s.GuideExampleSerializer})
    def create(self, request, *args, **kwargs):
        data = s.GuideExampleCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        example = services.guide_example_add(**data.validated_data)
        return Response(s.GuideExampleSerializer(example, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.guide_example_remove(example=instance)

    @extend_schema(responses={(200, "image/jpeg"): JPEG})
    @action(detail=True, methods=["get"])
    def overlay(self, request, pk=None):
        """The example image with its regions outlined (green: good, red: bad)."""
        example = self.get_object()
        refuse_taken_down(example.image)  # 410: its files were erased on request
        return _jpeg(request, imaging.draw_regions(example.image, example.regions, kind=example.kind))

    @extend_schema(responses={(200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The image file")})
    @action(detail=True, methods=["get"])
    def image(self, request, pk=None):
        """The example's image file, as stored (for pointing at a region in a question)."""
        example = self.get_object()
        refuse_taken_down(example.image)
        content_type = f"image/{example.image.format.lower()}"
        return stored_file_response(example.image.file, request=request, content_type=content_type,
                                    cache_control="private, max-age=300", etag=f"{example.image.sha256}.file",
                                    last_modified=example.image.created_at)


class FaqViewSet(viewsets.ReadOnlyModelViewSet):
    """FAQ entries of the guide versions you may read (published ones for vendors)."""

    queryset = FaqEntry.objects.none()  # for the schema; get_queryset() scopes by user
    serializer_class = s.FaqEntrySerializer
    filterset_class = FaqFilter

    def get_queryset(self):
        return selectors.faq_entries_visible_to(self.request.user).order_by("version_id", "position", "id")


class AcknowledgementViewSet(viewsets.ReadOnlyModelViewSet):
    """Who read which version: all for curators, a vendor's people for its manager, else your own."""

    queryset = GuideAcknowledgement.objects.none()  # for the schema; get_queryset() scopes by user
    serializer_class = s.AcknowledgementSerializer
    filterset_class = AcknowledgementFilter

    def get_queryset(self):
        return selectors.acknowledgements_visible_to(self.request.user)


class QuestionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                      viewsets.GenericViewSet):
    """Questions of vendor members to curators; vendors see only their own vendor's."""

    queryset = Question.objects.none()  # for the schema; get_queryset() scopes by user
    serializer_class = s.QuestionSerializer
    filterset_class = QuestionFilter

    def get_queryset(self):
        return selectors.questions_visible_to(self.request.user)

    def _out(self, question, code=status.HTTP_200_OK):
        question = self.get_queryset().get(pk=question.pk)
        return Response(s.QuestionSerializer(question, context=self.get_serializer_context()).data, status=code)

    @extend_schema(request=s.QuestionCreateSerializer, responses={201: s.QuestionSerializer})
    def create(self, request, *args, **kwargs):
        data = s.QuestionCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        question = services.question_ask(asked_by=request.user, **data.validated_data)
        return self._out(question, status.HTTP_201_CREATED)

    @extend_schema(request=s.AnswerCreateSerializer, responses={201: s.QuestionSerializer})
    @action(detail=True, methods=["post"])
    def answer(self, request, pk=None):
        """A curator answers (and optionally closes) the question; the asker is notified."""
        question = self.get_object()
        _require_curator(request)
        data = s.AnswerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.question_answer(question=question, author=request.user, **data.validated_data)
        return self._out(question, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.QuestionSerializer})
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        question = self.get_object()
        return self._out(services.question_close(question=question, by=request.user))

    @extend_schema(request=None, responses={200: s.QuestionSerializer})
    @action(detail=True, methods=["post"])
    def reopen(self, request, pk=None):
        question = self.get_object()
        return self._out(services.question_reopen(question=question, by=request.user))

    @extend_schema(request=s.PromoteSerializer, responses={200: s.QuestionSerializer})
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        """Put the answer into the FAQ of the spec's next guide version."""
        question = self.get_object()
        _require_curator(request)
        data = s.PromoteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._out(services.question_promote_to_faq(question=question, by=request.user, **data.validated_data))

    @extend_schema(request=None, responses={200: s.QuestionSerializer})
    @action(detail=True, methods=["post"])
    def demote(self, request, pk=None):
        """Take the answer back out of the FAQ (the open draft and later versions; published ones keep it)."""
        question = self.get_object()
        _require_curator(request)
        return self._out(services.question_demote_from_faq(question=question, by=request.user))

    @extend_schema(responses={(200, "image/jpeg"): JPEG, 404: None})
    @action(detail=True, methods=["get"])
    def crop(self, request, pk=None):
        """The region the question points at, cut out and straightened."""
        question = self.get_object()
        if question.image is None or not question.region:
            return Response({"detail": "This question points at no region."}, status=status.HTTP_404_NOT_FOUND)
        refuse_taken_down(question.image)
        return _jpeg(request, imaging.crop_region(question.image, question.region))

    @extend_schema(responses={(200, "image/jpeg"): JPEG, 404: None})
    @action(detail=True, methods=["get"])
    def overlay(self, request, pk=None):
        """The whole image with the question's region outlined."""
        question = self.get_object()
        if question.image is None:
            return Response({"detail": "This question points at no image."}, status=status.HTTP_404_NOT_FOUND)
        regions = [question.region] if question.region else []
        refuse_taken_down(question.image)
        return _jpeg(request, imaging.draw_regions(question.image, regions, kind="question"))


class NotificationViewSet(viewsets.ReadOnlyModelViewSet):
    """Your notifications; mark them read one by one or all at once."""

    queryset = Notification.objects.none()  # for the schema; get_queryset() scopes by user
    serializer_class = s.NotificationSerializer
    filterset_class = NotificationFilter

    def get_queryset(self):
        return selectors.notifications_of(self.request.user)

    @extend_schema(request=None, responses={200: s.NotificationSerializer})
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        notification = services.notification_mark_read(notification=self.get_object())
        return Response(s.NotificationSerializer(notification).data)

    @extend_schema(request=None, responses={200: s.UnreadCountSerializer})
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request):
        services.notifications_mark_all_read(user=request.user)
        return Response({"unread": selectors.notifications_unread_count(user=request.user)})

    @extend_schema(responses={200: s.UnreadCountSerializer})
    @action(detail=False, methods=["get"], url_path="unread-count")
    def unread_count(self, request):
        return Response({"unread": selectors.notifications_unread_count(user=request.user)})


class ContractViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                      mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Prices per task kind, quantity and deadline agreed with a vendor for a spec."""

    queryset = Contract.objects.none()  # for the schema; get_queryset() scopes by user
    serializer_class = s.ContractSerializer
    permission_classes = [CuratorWrites]
    filterset_class = ContractFilter
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.contracts_visible_to(self.request.user)

    def perform_create(self, serializer):
        serializer.instance = services.contract_create(created_by=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        # Everything sent goes to the service, which refuses what cannot be changed (vendor, spec).
        serializer.instance = services.contract_update(contract=serializer.instance, by=self.request.user,
                                                       **serializer.validated_data)


def _report(request):
    query = s.CostReportQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    q = query.validated_data
    if not (roles.is_curator(request.user) or roles.has_role(request.user, roles.VENDOR_MANAGER)):
        raise PermissionDenied("Only curators and vendor managers see costs.")
    return selectors.cost_report_for(user=request.user, vendor_id=q.get("vendor"), spec_id=q.get("spec"),
                                     today=q.get("today"))


class CostReportView(APIView):
    """Accepted tasks times the contract's price (or, without a contract, the batch's), per
    batch and per month, with pace warnings."""

    @extend_schema(parameters=[s.CostReportQuerySerializer], responses={200: s.CostReportSerializer})
    def get(self, request):
        report, _, available = _report(request)
        data = asdict(report)
        for line, src in zip(data["batches"], report.batches, strict=True):
            line["accepted_total"] = src.accepted_total
        data["rows_available"] = available
        return Response(s.CostReportSerializer(data).data)


class CostReportCsvView(APIView):
    """The cost report as a CSV download."""

    @extend_schema(parameters=[s.CostReportQuerySerializer],
                   responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV")})
    def get(self, request):
        report, contracts, _ = _report(request)
        vendor_names, spec_names = selectors.cost_report_names(report, contracts)
        text = costs.cost_report_csv(report, vendor_names=vendor_names, spec_names=spec_names)
        # UTF-8 with a BOM: Excel on a Korean Windows reads a CSV without one as CP949.
        return csv_response(text, "mathset-costs.csv")
