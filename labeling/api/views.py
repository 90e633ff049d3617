"""Labeling API."""
from rest_framework import viewsets

from common.permissions import IsCuratorOrReadOnly

from .. import selectors, services
from . import serializers as s


class VendorViewSet(viewsets.ModelViewSet):
    """Outsourcing companies. Vendor users see only their own."""

    serializer_class = s.VendorSerializer
    permission_classes = [IsCuratorOrReadOnly]
    filterset_fields = ["active", "slug"]
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self):
        return selectors.vendors_visible_to(self.request.user)

    def perform_create(self, serializer):
        serializer.instance = services.vendor_create(**serializer.validated_data)
