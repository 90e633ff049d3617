"""Snapshot and export API: freeze a spec's accepted work, build exports, download them.

Curators create snapshots; curators and model teams read them and build and download
exports. Vendor users see none of it (the selectors return nothing for them).
"""
from __future__ import annotations

import hashlib

from django.http import Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from common.downloads import content_disposition
from common.http_files import ranged_responses, stored_file_response
from common.permissions import IsCuratorOrReadOnly
from common.roles import can_read_all_data

from .. import selectors, snapshots
from ..filters import ExportFilter, SnapshotFilter
from ..models import DatasetSpec, Export, Snapshot, SnapshotItem
from .serializers import absolute_url
from .views import FormatIsAFilter


class CanReadAllOrReadOnly(BasePermission):
    """Anyone signed in may read (selectors decide what); curators and model teams write."""

    message = "Only curators and model teams can do this."

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in SAFE_METHODS or can_read_all_data(request.user)


class SnapshotSerializer(serializers.ModelSerializer):
    spec_slug = serializers.CharField(source="spec.slug", read_only=True)
    # Plain text in the schema: an enum here would clash with other "status" enums by name.
    status = serializers.CharField(read_only=True, help_text="queued, building, ready or failed")

    class Meta:
        model = Snapshot
        fields = ["id", "spec", "spec_slug", "name", "status", "error", "created_by", "created_at", "started_at",
                  "finished_at", "ratios", "seed", "content_hash", "item_count", "split_counts",
                  "near_duplicate_pairs", "category_counts", "licence_counts", "commercial_items", "taken_down_items"]
        read_only_fields = fields


class RebuildCheckSerializer(serializers.Serializer):
    content_hash = serializers.CharField(help_text="The hash recorded when the snapshot was built")
    recomputed_hash = serializers.CharField(help_text="SHA-256 over the frozen items as they are now")
    items = serializers.IntegerField()
    matches = serializers.BooleanField()
    taken_down = serializers.IntegerField(help_text="Items taken down since the freeze (exports leave them out)")
    amended = serializers.BooleanField(help_text="Whether takedowns amended the snapshot since the freeze; the "
                                                 "recorded hash still covers the items as frozen")
    amendment = serializers.CharField(help_text="The amendment in words, empty when none")


class SnapshotItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = SnapshotItem
        fields = ["image", "annotation", "annotation_version", "split", "sha256", "width", "height",
                  "capture_session", "categories", "regions", "licence", "source"]
        read_only_fields = fields


class SnapshotCreateSerializer(serializers.Serializer):
    spec = serializers.PrimaryKeyRelatedField(queryset=DatasetSpec.objects.none())
    name = serializers.CharField(max_length=200)
    ratios = serializers.ListField(child=serializers.FloatField(min_value=0), min_length=3, max_length=3,
                                   required=False, help_text="Weights of train, validation, test")
    seed = serializers.IntegerField(required=False, default=0)

    def __init__(self, *args, specs=None, **kwargs):
        super().__init__(*args, **kwargs)
        if specs is not None:
            self.fields["spec"].queryset = specs


class ExportSerializer(serializers.ModelSerializer):
    # Plain text in the schema: an enum here would clash with other "status" enums by name.
    status = serializers.CharField(read_only=True, help_text="queued, running, done, failed or withdrawn (its zip "
                                                             "held an image taken down since; download answers 410)")
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = ["id", "snapshot", "format", "status", "size", "images", "regions", "excluded_images", "licences",
                  "excluded", "error", "created_by", "created_at", "finished_at", "download_url", "withdrawn_at",
                  "withdrawn_reason"]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download_url(self, obj: Export) -> str | None:
        if obj.status != Export.Status.DONE:
            return None
        return absolute_url(self.context, reverse("export-download", kwargs={"pk": obj.pk}))


class ExportCreateSerializer(serializers.Serializer):
    snapshot = serializers.PrimaryKeyRelatedField(queryset=Snapshot.objects.none())
    # The formats the exporters write (curation.exporters.FORMATS, which Export.Format lists):
    # an enum in the schema, shared with Export.format and the `format` filter.
    format = serializers.ChoiceField(choices=Export.Format.choices)

    def __init__(self, *args, snapshots=None, **kwargs):
        super().__init__(*args, **kwargs)
        if snapshots is not None:
            self.fields["snapshot"].queryset = snapshots


class SnapshotViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                      viewsets.GenericViewSet):
    """Frozen, reproducible datasets of a spec (image, accepted annotation version, split)."""

    serializer_class = SnapshotSerializer
    permission_classes = [IsCuratorOrReadOnly]
    filterset_class = SnapshotFilter
    # A model team pulls a whole snapshot's items: by cursor every page costs the same at any depth.
    cursor_paging_actions = ("list", "items")

    def get_queryset(self):
        return selectors.snapshots_visible_to(self.request.user)

    @extend_schema(request=SnapshotCreateSerializer,
                   responses={202: SnapshotSerializer, 201: SnapshotSerializer},
                   description="Queue a snapshot; a worker freezes it. 202 while it is queued or building "
                               "(poll the snapshot's status), 201 when it was already built (eager workers).")
    def create(self, request, *args, **kwargs):
        data = SnapshotCreateSerializer(data=request.data, specs=selectors.specs_visible_to(request.user))
        data.is_valid(raise_exception=True)
        v = data.validated_data
        snapshot = snapshots.snapshot_create(spec=v["spec"], name=v["name"], created_by=request.user,
                                             ratios=v.get("ratios") or snapshots.DEFAULT_RATIOS, seed=v["seed"])
        snapshot.refresh_from_db()
        code = status.HTTP_201_CREATED if snapshot.status == Snapshot.Status.READY else status.HTTP_202_ACCEPTED
        return Response(SnapshotSerializer(snapshot).data, status=code)

    @extend_schema(request=None, responses={200: RebuildCheckSerializer})
    @action(detail=True, methods=["get"], url_path="rebuild-check")
    def rebuild_check(self, request, pk=None):
        """Re-compute the content hash from the frozen items and say whether it matches the recorded one."""
        check = snapshots.snapshot_rebuild_check(snapshot=self.get_object())
        return Response(RebuildCheckSerializer(check).data)

    @extend_schema(parameters=[OpenApiParameter("split", str, description="train, validation or test")],
                   responses={200: SnapshotItemSerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[])  # reads `split` only, not the snapshot filters
    def items(self, request, pk=None):
        """The frozen items (image, accepted annotation version, split, regions), paginated, in image order."""
        snapshot = self.get_object()
        qs = SnapshotItem.objects.filter(snapshot=snapshot).order_by("image_id")
        split = request.query_params.get("split")
        if split:
            if split not in snapshots.SPLIT_NAMES:  # also keeps U+0000 away from PostgreSQL (a 500)
                raise ValidationError({"split": [f"Use one of {', '.join(snapshots.SPLIT_NAMES)}."]})
            qs = qs.filter(split=split)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(SnapshotItemSerializer(page, many=True).data)


class ExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    viewsets.GenericViewSet):
    """Exports of snapshots, built by a Celery worker into a zip; download when done."""

    serializer_class = ExportSerializer
    permission_classes = [CanReadAllOrReadOnly]
    filterset_class = ExportFilter
    content_negotiation_class = FormatIsAFilter  # `?format=coco` filters exports

    def get_queryset(self):
        return selectors.exports_visible_to(self.request.user)

    def perform_content_negotiation(self, request, force=False):
        # The download is a zip whatever the client asks for. Without `force`, a client that
        # asks for what the schema promises (`Accept: application/zip`, as generated clients
        # send, or application/octet-stream) was refused with 406, since no DRF renderer
        # offers those types; forced, negotiation falls back to JSON, used for its errors.
        return super().perform_content_negotiation(request, force=force or self.action == "download")

    @extend_schema(request=ExportCreateSerializer, responses={201: ExportSerializer})
    def create(self, request, *args, **kwargs):
        data = ExportCreateSerializer(data=request.data, snapshots=selectors.snapshots_visible_to(request.user))
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job = snapshots.export_create(snapshot=v["snapshot"], format=v["format"], created_by=request.user)
        return Response(ExportSerializer(job, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY, **ranged_responses("application/zip"),
                              410: None})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        """The export's zip, streamed from storage in chunks (constant memory). 410 Gone with the
        reason when it was withdrawn because an image in it was taken down (build it again)."""
        job = self.get_object()
        if job.status == Export.Status.WITHDRAWN:
            return Response({"detail": job.withdrawn_reason or "This export was withdrawn."}, status=status.HTTP_410_GONE)
        if job.status != Export.Status.DONE or not job.file:
            raise Http404("This export is not ready.")
        # `content_disposition` replaces line breaks, quotes, path and shell-special characters, so
        # `curl -OJ` and `wget --content-disposition` save it as given, whatever the snapshot was called.
        name = f"{job.snapshot.spec.slug}-{job.snapshot.name}-{job.format}.zip"
        # Resumable (`curl -C -`, `wget -c`: Range, 206) and revalidated by a strong ETag. The zip
        # of a done export never changes, so its name, size and finish time identify its bytes.
        validator = hashlib.sha256(f"{job.file}\0{job.size}\0{job.finished_at}".encode()).hexdigest()[:32]
        # Both an ASCII filename= (curl -OJ reads only that one) and filename*= with the real
        # name: Django gives a non-ASCII name (a snapshot called "수식 인식") only the latter.
        return stored_file_response(job.file, request=request, content_type="application/zip",
                                    etag=f"export-{job.pk}-{validator}",
                                    last_modified=job.finished_at, disposition=content_disposition(name))
