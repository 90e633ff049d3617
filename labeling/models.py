"""Labeling: outsourcing vendors and their people; batches, tasks, annotations and
reviews build on these."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class Vendor(models.Model):
    """An outsourcing company. Its members see only their own vendor's work."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    contact_email = models.EmailField(blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VendorMembership(models.Model):
    """Ties a vendor manager, annotator or reviewer to exactly one vendor."""

    vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE, related_name="memberships")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vendor_membership")
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["vendor_id", "user_id"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.vendor}"
