"""Reads of people, scoped by the asking user."""
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from . import roles


def users_visible_to(user: User) -> QuerySet[User]:
    """Curators see every user; vendor managers their vendor's people; others themselves."""
    qs = User.objects.prefetch_related("groups").select_related("vendor_membership__vendor", "api_token").order_by("username")
    if roles.is_curator(user):
        return qs
    if roles.has_role(user, roles.VENDOR_MANAGER):
        from labeling.selectors import vendor_of

        vendor = vendor_of(user)
        if vendor is not None:
            return qs.filter(vendor_membership__vendor=vendor)
    return qs.filter(pk=user.pk)


def active_curators() -> QuerySet[User]:
    """Everyone who works as a curator now: the curator group and superusers (who count as
    curators everywhere, `roles.has_role`), switched-on accounts only. Who a new question is
    addressed to."""
    return (User.objects.filter(Q(groups__name=roles.CURATOR) | Q(is_superuser=True), is_active=True)
            .distinct().order_by("pk"))
