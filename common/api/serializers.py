from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.fields import OptionalEmailField
from labeling.models import Vendor

from .. import roles


class UserSerializer(serializers.ModelSerializer):
    email = OptionalEmailField(read_only=True)
    roles = serializers.SerializerMethodField()
    vendor = serializers.SerializerMethodField()
    token = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "is_active", "roles", "vendor", "token"]
        read_only_fields = fields

    def get_roles(self, obj) -> list[str]:
        return sorted(g.name for g in obj.groups.all() if g.name in roles.ROLES)

    def get_vendor(self, obj) -> int | None:
        membership = getattr(obj, "vendor_membership", None)
        return membership.vendor_id if membership else None

    # Inline and nullable, as every OpenAPI 3.0 validator reads it (not drf-spectacular's allOf + nullable).
    @extend_schema_field({"type": "object", "nullable": True, "required": ["prefix", "created"],
                          "description": "The API token the user holds, never its key; null if none.",
                          "properties": {"prefix": {"type": "string"},
                                         "created": {"type": "string", "format": "date-time"}}})
    def get_token(self, obj) -> dict | None:
        token = getattr(obj, "api_token", None)
        if token is None:
            return None
        return {"prefix": token.prefix, "created": serializers.DateTimeField().to_representation(token.created)}


class UserCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, min_length=8)
    role = serializers.ChoiceField(choices=roles.ROLE_CHOICES)
    email = OptionalEmailField()
    first_name = serializers.CharField(required=False, allow_blank=True)
    last_name = serializers.CharField(required=False, allow_blank=True)
    vendor = serializers.PrimaryKeyRelatedField(queryset=Vendor.objects.all(), required=False, allow_null=True)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The key, shown this once: Mathset keeps only its digest.")
    prefix = serializers.CharField()
    user = serializers.IntegerField()
