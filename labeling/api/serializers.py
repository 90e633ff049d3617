from rest_framework import serializers

from common.fields import OptionalEmailField

from ..models import Vendor


class VendorSerializer(serializers.ModelSerializer):
    contact_email = OptionalEmailField()

    class Meta:
        model = Vendor
        fields = ["id", "name", "slug", "contact_email", "active", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"slug": {"required": False}}
