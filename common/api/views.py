"""People API: users with roles, API tokens, and who am I."""
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from .. import selectors, services
from ..permissions import IsCurator
from . import serializers as s


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Users and their roles. Curators create users and issue API tokens."""

    serializer_class = s.UserSerializer
    filterset_fields = ["is_active", "username"]

    def get_queryset(self):
        return selectors.users_visible_to(self.request.user)

    def get_permissions(self):
        if self.action in ("create", "token", "revoke_token", "deactivate"):
            return [IsCurator()]
        return super().get_permissions()

    @extend_schema(request=s.UserCreateSerializer, responses={201: s.UserSerializer})
    def create(self, request):
        data = s.UserCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_create(**data.validated_data)
        return Response(s.UserSerializer(self.get_queryset().get(pk=user.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={201: s.TokenSerializer})
    @action(detail=True, methods=["post"])
    def token(self, request, pk=None):
        """Issue a new API token for the user (the old one stops working)."""
        issued = services.api_token_rotate(user=self.get_object())
        return Response({"token": issued.key, "prefix": issued.token.prefix, "user": issued.token.user_id},
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @token.mapping.delete
    def revoke_token(self, request, pk=None):
        """Revoke the user's API token (a leaked key); the user stays active. 404 if none."""
        if not services.api_token_revoke(user=self.get_object()):
            return Response({"detail": "This user has no API token."}, status=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=s.UserSerializer)
    @action(detail=True, methods=["post"])
    def deactivate(self, request, pk=None):
        user = services.user_deactivate(user=self.get_object(), by=request.user)
        return Response(s.UserSerializer(user).data)

    @extend_schema(responses=s.UserSerializer)
    @action(detail=False, methods=["get"])
    def me(self, request):
        return Response(s.UserSerializer(self.get_queryset().get(pk=request.user.pk)).data)
