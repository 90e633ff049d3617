"""Write paths for labeling."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from .models import Vendor, VendorMembership


@transaction.atomic
def vendor_create(*, name: str, contact_email: str = "", slug: str = "") -> Vendor:
    """Register an outsourcing company."""
    vendor = Vendor(name=name, slug=slug or slugify(name)[:80], contact_email=contact_email)
    if not vendor.slug:
        raise ValidationError({"name": "The name must contain letters or digits."})
    vendor.full_clean()
    vendor.save()
    return vendor


@transaction.atomic
def vendor_member_add(*, vendor: Vendor, user: User) -> VendorMembership:
    """Make `user` a member of `vendor`; a user works for one vendor only."""
    existing = VendorMembership.objects.filter(user=user).select_related("vendor").first()
    if existing and existing.vendor_id != vendor.id:
        raise ValidationError({"user": f"{user.username} already works for {existing.vendor.name}."})
    if existing:
        return existing
    return VendorMembership.objects.create(vendor=vendor, user=user)
