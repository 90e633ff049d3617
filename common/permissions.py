"""API permissions by role. Scoping of rows is the selectors' job, not these."""
from rest_framework.permissions import SAFE_METHODS, BasePermission

from . import roles


class IsCuratorOrReadOnly(BasePermission):
    """Anyone signed in may read (selectors decide what); only curators write."""

    message = "Only curators can change this."

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in SAFE_METHODS or roles.is_curator(request.user)


class IsCurator(BasePermission):
    message = "Only curators can do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and roles.is_curator(request.user))
