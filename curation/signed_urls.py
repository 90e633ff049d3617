"""Absolute, signed, expiring URLs of image files, for external models that cannot log in.

An external model (an HTTP ML backend, like Label Studio's) is sent image URLs and fetches
them itself. Our file endpoints need a user's token, so it is sent these instead:
``{PUBLIC_BASE_URL}/signed-files/<token>/``, where the token is
:func:`django.core.signing.dumps` of ``[kind, id]`` (a timestamped HMAC with ``SECRET_KEY``
and a salt used for nothing else). The GET needs no authentication; the token is the
permission, for one file, for ``MATHSET_SIGNED_URL_MAX_AGE`` seconds (1 h by default).

Two kinds of file are signed:

* ``image`` — a live :class:`~curation.models.Image` (pre-labeling), served from ``Image.file``;
* ``item`` — a :class:`~curation.models.SnapshotItem` (offline evaluation), served from the
  item's frozen ``file`` path, so what a model is scored on is what the snapshot froze.

The kind is part of the signed payload: an item's token never opens the image with the same
id, nor the reverse, and changing anything in a token breaks its signature.

Answers of the view (``curation.views.signed_file``): 403 for a token that is expired,
tampered with or signed for something else (one answer for all, so nothing is learnt by
probing); 404 when the token is good but the image or item, or its stored file, is gone.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "mathset.curation.signed-urls.model-fetch"
IMAGE = "image"
ITEM = "item"
KINDS = (IMAGE, ITEM)


class InvalidSignedUrl(Exception):
    """The token is expired, tampered with, or not one of ours; ``reason`` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedTarget:
    """What a valid token names."""

    kind: str
    pk: int


def make_token(kind: str, pk: int) -> str:
    """A token naming one image or snapshot item, stamped with the current time."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return signing.dumps([kind, int(pk)], salt=SALT, compress=False)


def read_token(token: str, *, max_age: int | None = None) -> SignedTarget:
    """The image or item a token names; raises :class:`InvalidSignedUrl` if it is expired
    (older than `max_age`, default the setting) or not a genuine token of this module."""
    max_age = settings.MATHSET_SIGNED_URL_MAX_AGE if max_age is None else max_age
    try:
        payload = signing.loads(token, salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise InvalidSignedUrl("expired") from None
    except signing.BadSignature:
        raise InvalidSignedUrl("bad signature") from None
    # A genuine token always holds [kind, int]; anything else was not made by make_token.
    if (not isinstance(payload, list) or len(payload) != 2 or payload[0] not in KINDS
            or not isinstance(payload[1], int) or isinstance(payload[1], bool)):
        raise InvalidSignedUrl("bad payload")
    return SignedTarget(kind=payload[0], pk=payload[1])


def _absolute(token: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("curation:signed-file", args=[token])


def image_url(image_id: int) -> str:
    """Absolute signed URL of a live image's file."""
    return _absolute(make_token(IMAGE, image_id))


def snapshot_item_url(item_id: int) -> str:
    """Absolute signed URL of a snapshot item's frozen file."""
    return _absolute(make_token(ITEM, item_id))
