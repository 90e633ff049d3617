"""Curation API: licences, sources, specs, categories, images, import jobs."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from common.http_files import ranged_responses, stored_file_response
from common.permissions import IsCurator, IsCuratorOrReadOnly
from common.unchangeable import NOT_STORED, refuse_changes
from common.uploads import UploadLimitsMixin, refusal_of

from .. import imaging, selectors, services
from ..filters import CategoryFilter, ImageFilter, SourceFilter, SpecFilter
from ..models import Category
from ..progress import spec_progress
from ..takedowns import refuse_taken_down
from . import serializers as s


class FormatIsAFilter(DefaultContentNegotiation):
    """Content negotiation for views whose `?format=` is a documented filter (an image's file
    format, an export's format), not DRF's renderer override: without this, every such request
    answered 404 "Not found". The renderer is still chosen by the Accept header."""

    settings = type("NoFormatOverride", (), {"URL_FORMAT_OVERRIDE": None})()


def _read_upload(upload) -> tuple[str, bytes]:
    return upload.name, upload.read()


class LicenceViewSet(viewsets.ModelViewSet):
    """The licence catalogue and the flags that decide what may be exported."""

    serializer_class = s.LicenceSerializer
    permission_classes = [IsCuratorOrReadOnly]
    filterset_fields = ["family", "allows_commercial", "code"]
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self):
        return selectors.licences_visible_to(self.request.user)

    def perform_create(self, serializer):
        serializer.instance = services.licence_create(**serializer.validated_data)


class SourceViewSet(viewsets.ModelViewSet):
    """Where images come from, their copyright holder and licence."""

    serializer_class = s.SourceSerializer
    permission_classes = [IsCuratorOrReadOnly]
    filterset_class = SourceFilter
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.sources_visible_to(self.request.user)

    def perform_create(self, serializer):
        serializer.instance = services.source_create(created_by=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.source_update(source=serializer.instance, **serializer.validated_data)

    @extend_schema(request=s.TakedownCreateSerializer, responses={201: s.TakedownSerializer(many=True)})
    @action(detail=True, methods=["post"], permission_classes=[IsCurator])
    def takedown(self, request, pk=None):
        """Take down every image of the source (curators): files erased after commit, snapshot items
        marked, export zips holding them withdrawn, open work taken out of the queue."""
        source = self.get_object()
        data = s.TakedownCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        done = services.source_takedown(source=source, kind=v["reason_kind"], reason=v["reason"],
                                        requested_by=v["requested_by"], actor=request.user)
        return Response(s.TakedownSerializer(done, many=True).data, status=status.HTTP_201_CREATED)


class DatasetSpecViewSet(viewsets.ModelViewSet):
    """Dataset specs with their categories (and quota progress) and model requirements."""

    serializer_class = s.DatasetSpecSerializer
    permission_classes = [IsCuratorOrReadOnly]
    filterset_class = SpecFilter
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        # The categories' progress is read from the specs' stored reports by the serializer, one
        # query for the whole page (selectors.with_quota_progress), not counted here per request.
        categories = Category.objects.order_by("position", "id")
        return selectors.specs_visible_to(self.request.user).prefetch_related(
            Prefetch("categories", queryset=categories, to_attr="categories_with_progress"), "requirements"
        )

    def _refetch(self, pk):
        return self.get_queryset().get(pk=pk)

    @extend_schema(responses=s.SpecProgressSerializer)
    @action(detail=True, methods=["get"])
    def progress(self, request, pk=None):
        """Collected, pre-labeled, labeled and accepted images per category, per split of the latest
        snapshot and per vendor (vendor users: their own vendor's work only)."""
        spec = get_object_or_404(selectors.specs_visible_to(request.user), pk=pk)
        return Response(s.SpecProgressSerializer(spec_progress(request.user, spec)).data)

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        spec = services.spec_create(created_by=self.request.user, **data)
        serializer.instance = self._refetch(spec.pk)

    @extend_schema(request=s.DatasetSpecUpdateSerializer)
    def partial_update(self, request, *args, **kwargs):
        """Change a spec. `default_quota` and `custom_categories` only make a new spec's
        categories: sent here they are a 400 (change categories under `categories/`)."""
        return super().partial_update(request, *args, **kwargs)

    def perform_update(self, serializer):
        # Everything sent goes to the service, which refuses what cannot be changed.
        spec = services.spec_update(spec=serializer.instance, **serializer.validated_data)
        serializer.instance = self._refetch(spec.pk)


class CategoryViewSet(viewsets.ModelViewSet):
    """Kinds of image per spec, with the target quota and the collected count."""

    permission_classes = [IsCuratorOrReadOnly]
    filterset_class = CategoryFilter
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.categories_visible_to(self.request.user).order_by("spec_id", "position", "id")

    def get_serializer_class(self):
        if self.action in ("create",):
            return s.CategoryWriteSerializer
        return s.CategoryProgressSerializer

    @extend_schema(request=s.CategoryWriteSerializer, responses={201: s.CategoryProgressSerializer})
    def create(self, request, *args, **kwargs):
        data = s.CategoryWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        spec = data.validated_data.pop("spec")
        if not selectors.specs_visible_to(request.user).filter(pk=spec.pk).exists():
            return Response({"spec": ["Unknown spec."]}, status=400)
        category = services.category_create(spec=spec, **data.validated_data)
        category = self.get_queryset().get(pk=category.pk)
        return Response(s.CategoryProgressSerializer(category, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=s.CategoryUpdateSerializer, responses=s.CategoryProgressSerializer)
    def partial_update(self, request, *args, **kwargs):
        """Rename a category or change its quota; its spec and slug cannot be changed."""
        category = self.get_object()
        data = s.CategoryUpdateSerializer(category, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        # Everything sent goes to the service, which refuses what cannot be changed.
        category = services.category_update(category=category, **data.validated_data)
        return Response(s.CategoryProgressSerializer(self.get_queryset().get(pk=category.pk),
                                                     context=self.get_serializer_context()).data)

    def perform_destroy(self, instance):
        services.category_delete(category=instance)


class ImageViewSet(UploadLimitsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Images with provenance. Upload one (`POST`), many at once (`bulk`), or a zip (`import-jobs`)."""

    serializer_class = s.ImageSerializer
    permission_classes = [IsCuratorOrReadOnly]
    filterset_class = ImageFilter
    ordering_fields = ["id", "created_at", "width", "height", "file_size"]
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    content_negotiation_class = FormatIsAFilter

    def get_queryset(self):
        return selectors.images_visible_to(self.request.user)

    def upload_limits(self) -> dict | None:
        if self.action == "create":
            return {"max_file_bytes": settings.MATHSET_MAX_UPLOAD_BYTES, "file_fields": ["file"], "max_files": 1}
        if self.action == "bulk":
            return {"max_file_bytes": settings.MATHSET_MAX_UPLOAD_BYTES, "file_fields": ["files"],
                    "max_files": settings.MATHSET_BULK_MAX_FILES, "max_total_bytes": settings.MATHSET_BULK_MAX_BYTES}
        return None

    def _refuse_too_big(self, request) -> None:
        refused = refusal_of(request)
        if refused is None:
            return
        # the body, or the files of a bulk upload together: no one file is to blame
        whole_request = refused.body_limit is not None or refused.total_limit is not None
        # a bulk upload's file by its index; a part sent under another name by that name
        field = f"files[{refused.index}]" if refused.field == "files" and not whole_request else refused.field
        if whole_request or not refused.complete:
            raise ValidationError({field: refused.message()})
        # named and worded as decode_image refuses it once received whole
        raise ValidationError({field: imaging.too_big(filename=refused.file_name, size=refused.size)})

    def _target(self, serializer_class, request):
        data = serializer_class(
            data=request.data,
            specs=selectors.specs_visible_to(request.user),
            sources=selectors.sources_visible_to(request.user),
        )
        data.is_valid(raise_exception=True)
        return data.validated_data

    @extend_schema(request={"multipart/form-data": s.ImageUploadSerializer},
                   responses={201: s.ImageUploadResultSerializer, 200: s.ImageUploadResultSerializer})
    def create(self, request, *args, **kwargs):
        """Upload one image. An exact duplicate in the spec answers 200 with `duplicate: true`."""
        self._refuse_too_big(request)
        v = self._target(s.ImageUploadSerializer, request)
        name, data = _read_upload(v["file"])
        image, created = services.image_ingest(
            spec=v["spec"], source=v["source"], data=data, filename=name, categories=v["categories"],
            uploaded_by=request.user, capture_session=v["capture_session"],
        )
        image = self.get_queryset().get(pk=image.pk)
        body = dict(s.ImageSerializer(image, context={"request": request}).data, duplicate=not created)
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request={"multipart/form-data": s.ImageBulkUploadSerializer},
                   responses={201: s.IngestResultSerializer})
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """Upload many images in one request, all or nothing: one bad file fails the
        request with a 400 naming it, and nothing is stored."""
        self._refuse_too_big(request)
        v = self._target(s.ImageBulkUploadSerializer, request)
        files = [_read_upload(f) for f in v["files"]]
        result = services.images_ingest(
            spec=v["spec"], source=v["source"], files=files, categories=v["categories"],
            uploaded_by=request.user, capture_session=v["capture_session"],
        )
        ids = {im.id for im in result.created} | {im.id for _, im in result.duplicates} | {f.image.id for f in result.files}
        # Each image is serialised once and its data shared by the three lists: a file is in
        # `files` and in `created` or `duplicates`, and serialising dominates the response's cost.
        images = list(self.get_queryset().filter(pk__in=ids))
        data = dict(zip([im.id for im in images],
                        s.ImageSerializer(images, many=True, context={"request": request}).data, strict=True))
        body = {
            "created": [data[im.id] for im in result.created],
            "duplicates": [{"filename": name, "image": data[im.id]} for name, im in result.duplicates],
            # In request order, so a client matches results to its files by index, not by name.
            "files": [
                {"index": f.index, "filename": f.filename, "outcome": f.outcome, "same_as": f.same_as,
                 "image": data[f.image.id]}
                for f in result.files
            ],
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ImageUpdateSerializer, responses=s.ImageSerializer)
    def partial_update(self, request, *args, **kwargs):
        """Change an image's categories or capture session; its spec, source and file are fixed."""
        image = self.get_object()
        refuse_changes(request.data, {"spec": image.spec_id, "source": image.source_id, "file": NOT_STORED})
        data = s.ImageUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.image_update(image=image, **data.validated_data)
        return Response(s.ImageSerializer(self.get_queryset().get(pk=image.pk), context={"request": request}).data)

    def perform_destroy(self, instance):
        services.image_delete(image=instance)

    @extend_schema(request=s.TakedownCreateSerializer, responses={201: s.TakedownSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsCurator])
    def takedown(self, request, pk=None):
        """Take the image down (curators): a copyright takedown or a personal-data erasure. Its files
        are erased once this commits, its snapshot items are marked (exports leave them out), export
        zips holding it are withdrawn (410) and its open work leaves the queue."""
        image = self.get_object()
        data = s.TakedownCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        done = services.image_takedown(image=image, kind=v["reason_kind"], reason=v["reason"],
                                       requested_by=v["requested_by"], actor=request.user)
        return Response(s.TakedownSerializer(done).data, status=status.HTTP_201_CREATED)

    def _serve(self, image, name: str, kind: str, content_type: str | None = None):
        # Ranges, ETag (the stored sha256 of the image's bytes, per file kind) and 304s: the
        # labeling and review pages load these 12-48 MP photos again and again.
        return stored_file_response(name, request=self.request, content_type=content_type,
                                    cache_control="private, max-age=3600", etag=f"{image.sha256}.{kind}",
                                    last_modified=image.created_at)

    @extend_schema(responses={(200, "image/*"): OpenApiTypes.BINARY, **ranged_responses("image/*"), 410: None})
    @action(detail=True, methods=["get"])
    def file(self, request, pk=None):
        """The image file (orientation applied); 410 Gone once the image was taken down."""
        image = self.get_object()
        refuse_taken_down(image)
        mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "TIFF": "image/tiff",
                "BMP": "image/bmp", "GIF": "image/gif"}.get(image.format)
        return self._serve(image, image.file, "file", mime)

    @extend_schema(responses={(200, "image/jpeg"): OpenApiTypes.BINARY, **ranged_responses("image/jpeg"), 410: None})
    @action(detail=True, methods=["get"])
    def thumbnail(self, request, pk=None):
        """A JPEG thumbnail, at most 256 pixels on its longer side; 410 Gone once taken down."""
        image = self.get_object()
        refuse_taken_down(image)
        return self._serve(image, image.thumbnail, "thumb", "image/jpeg")

    @extend_schema(
        parameters=[OpenApiParameter("max_distance", int, description="Hamming distance in bits (default 8)")],
        responses=s.NearDuplicateSerializer(many=True),
    )
    # A plain list, neither filtered nor paginated: the schema must not offer the list's filters.
    @action(detail=True, methods=["get"], url_path="near-duplicates", filter_backends=[], pagination_class=None)
    def near_duplicates(self, request, pk=None):
        """Images of the same spec that look alike (perceptual hash within max_distance bits)."""
        image = self.get_object()
        try:
            max_distance = int(request.query_params.get("max_distance", 8))
        except ValueError:
            return Response({"max_distance": ["Must be an integer."]}, status=400)
        if not 0 <= max_distance <= 64:
            return Response({"max_distance": ["Must be between 0 and 64."]}, status=400)
        pairs = selectors.images_near_duplicates(user=request.user, image=image, max_distance=max_distance)
        ctx = {"request": request}
        return Response([{"distance": d, "image": s.ImageSerializer(im, context=ctx).data} for im, d in pairs])


class ImportJobViewSet(UploadLimitsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                       viewsets.GenericViewSet):
    """Zips of images ingested in the background by a Celery worker."""

    serializer_class = s.ImportJobSerializer
    permission_classes = [IsCurator]
    parser_classes = [MultiPartParser, FormParser]
    filterset_fields = ["spec", "status"]

    def get_queryset(self):
        return selectors.import_jobs_visible_to(self.request.user).prefetch_related("categories")

    def upload_limits(self) -> dict | None:
        if self.action == "create":
            return {"max_file_bytes": settings.MATHSET_MAX_ARCHIVE_BYTES, "file_fields": ["archive"], "max_files": 1}
        return None

    @extend_schema(request={"multipart/form-data": s.ImportJobCreateSerializer}, responses={201: s.ImportJobSerializer})
    def create(self, request, *args, **kwargs):
        """Queue a zip of images (at most MATHSET_MAX_ARCHIVE_BYTES) for ingest by a worker."""
        refused = refusal_of(request)
        if refused is not None:
            # named as the service names an archive over the limit
            message = refused.message()
            raise ValidationError({"archive": f"{refused.file_name}: {message}" if refused.file_name else message})
        data = s.ImportJobCreateSerializer(
            data=request.data,
            specs=selectors.specs_visible_to(request.user),
            sources=selectors.sources_visible_to(request.user),
        )
        data.is_valid(raise_exception=True)
        v = data.validated_data
        # the uploaded file itself, not its bytes: a big one is a temporary file, which the
        # storage moves into place without reading it into memory
        upload = v["archive"]
        job = services.import_job_create(spec=v["spec"], source=v["source"], archive=upload, filename=upload.name,
                                         categories=v["categories"], created_by=request.user)
        return Response(s.ImportJobSerializer(job).data, status=status.HTTP_201_CREATED)


class TakedownViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Takedowns recorded (curators, read-only): take an image or a source down with their
    `takedown/` actions."""

    serializer_class = s.TakedownSerializer
    permission_classes = [IsCurator]
    filterset_fields = ["spec", "source", "kind", "whole_source"]

    def get_queryset(self):
        return selectors.takedowns_visible_to(self.request.user)
