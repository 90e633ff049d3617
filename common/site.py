"""The address people (and their scripts) reach this site at, for links made without a request."""
from __future__ import annotations

from django.conf import settings


def site_url() -> str:
    """`MATHSET_BASE_URL` when set, else `PUBLIC_BASE_URL`, without a trailing slash: links in mail
    and in webhook payloads are opened far from any request (a bare "/questions/7/" opens nothing)."""
    base = getattr(settings, "MATHSET_BASE_URL", "") or getattr(settings, "PUBLIC_BASE_URL", "")
    return base.rstrip("/")
