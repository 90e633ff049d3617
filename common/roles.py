"""The five roles of the platform, as Django groups.

Curators own specs and data; vendor managers, annotators and reviewers belong to
one outsourcing vendor and see only that vendor's work; model teams read data and
exports and register models.
"""
from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

CURATOR = "curator"
VENDOR_MANAGER = "vendor_manager"
ANNOTATOR = "annotator"
REVIEWER = "reviewer"
MODEL_TEAM = "model_team"

ROLES = [CURATOR, VENDOR_MANAGER, ANNOTATOR, REVIEWER, MODEL_TEAM]
VENDOR_ROLES = {VENDOR_MANAGER, ANNOTATOR, REVIEWER}
ROLE_LABELS = {
    CURATOR: "Curator",
    VENDOR_MANAGER: "Vendor manager",
    ANNOTATOR: "Annotator",
    REVIEWER: "Reviewer",
    MODEL_TEAM: "Model team",
}
ROLE_CHOICES = [(r, ROLE_LABELS[r]) for r in ROLES]


def roles_of(user: User | AnonymousUser) -> frozenset[str]:
    """The role names of `user`, cached on the user object for the request.

    The vendor roles count only while the user's vendor is active: a curator switching a
    vendor off (the admin's `active` box) stops its people working at once, pages and queue
    alike, and switching it back on gives them their roles again (nothing is removed)."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_mathset_roles", None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if cached & VENDOR_ROLES:
            from labeling.selectors import member_vendor

            vendor = member_vendor(user)
            if vendor is not None and not vendor.active:
                cached = cached - VENDOR_ROLES
        user._mathset_roles = cached
    return cached


def has_role(user: User | AnonymousUser, *roles: str) -> bool:
    """True when `user` holds any of `roles`. Superusers count as curators."""
    if getattr(user, "is_superuser", False) and CURATOR in roles:
        return True
    return bool(roles_of(user) & set(roles))


def is_curator(user: User | AnonymousUser) -> bool:
    return has_role(user, CURATOR)


def is_vendor_user(user: User | AnonymousUser) -> bool:
    return not is_curator(user) and has_role(user, *VENDOR_ROLES)


def can_read_all_data(user: User | AnonymousUser) -> bool:
    """Curators and model teams read every spec, source and image."""
    return has_role(user, CURATOR, MODEL_TEAM)


def primary_role(user: User | AnonymousUser) -> str | None:
    """The role that decides the user's landing page."""
    if is_curator(user):
        return CURATOR
    for role in (VENDOR_MANAGER, REVIEWER, ANNOTATOR, MODEL_TEAM):
        if role in roles_of(user):
            return role
    return None
