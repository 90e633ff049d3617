"""Reads around takedowns: the answer every file endpoint gives for a taken-down image.

The write path is :func:`curation.services.image_takedown` (and ``source_takedown``). Once an
image is taken down its files are erased; every endpoint that would serve its pixels, or a
crop or overlay of them, answers **410 Gone** with the reason instead (API: ``ImageGone``;
pages and the signed-file view: :func:`gone_response`), so a client can tell "erased on
request" from "never existed" (404).
"""
from __future__ import annotations

from django.http import HttpResponse
from rest_framework import status
from rest_framework.exceptions import APIException

from .models import Image, Takedown


def gone_message(image: Image | None) -> str:
    """Why the image's files are gone, in words (no free-text reason: it may hold personal data)."""
    if image is None or image.taken_down_at is None:
        return "This image's files are gone."
    kind = Takedown.objects.filter(image_ref=image.pk).values_list("kind", flat=True).first()
    label = Takedown.Kind(kind).label.lower() if kind else "takedown"
    return f"This image was taken down on {image.taken_down_at:%Y-%m-%d} ({label}); its files are erased."


class ImageGone(APIException):
    """410 Gone: the image was taken down and its files erased."""

    status_code = status.HTTP_410_GONE
    default_detail = "This image was taken down; its files are erased."
    default_code = "taken_down"


def refuse_taken_down(image: Image | None) -> None:
    """Raise ImageGone when `image` was taken down (API views that serve pixels call it first)."""
    if image is not None and image.taken_down_at is not None:
        raise ImageGone(gone_message(image))


def gone_response(image: Image | None) -> HttpResponse:
    """The plain-text 410 answer of non-API views (signed files)."""
    return HttpResponse(gone_message(image), status=410, content_type="text/plain; charset=utf-8")
