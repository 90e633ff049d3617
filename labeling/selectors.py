"""Reads for labeling, always starting from the user."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from common.roles import can_read_all_data, is_curator

from .models import Vendor, VendorMembership


def vendor_of(user: User) -> Vendor | None:
    """The vendor `user` works for, or None (curators, model teams)."""
    if not getattr(user, "is_authenticated", False):
        return None
    cached = getattr(user, "_mathset_vendor", False)
    if cached is False:
        membership = VendorMembership.objects.select_related("vendor").filter(user=user).first()
        cached = membership.vendor if membership else None
        user._mathset_vendor = cached
    return cached


def vendor_curation_filters(user: User) -> tuple[Q, Q] | None:
    """Filters on specs and images for what a vendor user may see.

    Until batches exist, a vendor sees no spec or image; the labeling workflow
    widens this to the specs and images of its own batches.
    """
    vendor = vendor_of(user)
    if vendor is None:
        return None
    return Q(pk__in=[]), Q(pk__in=[])


def vendors_visible_to(user: User) -> QuerySet[Vendor]:
    """All vendors for curators and model teams; only their own for vendor users."""
    if can_read_all_data(user) or is_curator(user):
        return Vendor.objects.all()
    vendor = vendor_of(user)
    if vendor is None:
        return Vendor.objects.none()
    return Vendor.objects.filter(pk=vendor.pk)
