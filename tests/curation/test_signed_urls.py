"""Signed file URLs for external models: absolute, opened without a login, one file each,
expiring; an expired or tampered token is a 403, a good token for something gone a 404."""
from __future__ import annotations

import hashlib
import time

import pytest
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from curation import signed_urls
from curation.models import Image, SnapshotItem
from tests import factories

pytestmark = pytest.mark.django_db


def _get(url: str, base: str = "http://models.example"):
    """GET an absolute URL as an anonymous client (no session, no token)."""
    assert url.startswith(base + "/"), url
    return Client().get(url[len(base):])


def _body(resp) -> bytes:
    return b"".join(resp.streaming_content) if resp.streaming else resp.content


@pytest.fixture(autouse=True)
def _public_base(settings):
    settings.PUBLIC_BASE_URL = "http://models.example"


def test_an_image_url_is_absolute_and_streams_the_file_without_a_login(spec, source):
    image = factories.make_image(spec=spec, source=source)
    url = signed_urls.image_url(image.pk)
    assert url.startswith("http://models.example/signed-files/")
    resp = _get(url)
    assert resp.status_code == 200 and resp.streaming  # a FileResponse
    assert resp["Content-Type"] == "image/png"
    assert hashlib.sha256(_body(resp)).hexdigest() == image.sha256
    # the token, not the session, is the permission: the user-scoped endpoint still refuses
    assert Client().get(image.file_url).status_code in (401, 403)


def test_a_snapshot_item_url_serves_the_items_frozen_file():
    from tests.pipeline.evaluation_helpers import box, make_eval_snapshot, region

    snap = make_eval_snapshot([([region(box(10, 10, 90, 40), "x")], ("printed",))])
    item = SnapshotItem.objects.get(snapshot=snap)
    frozen = factories.png_bytes(30, 20)
    # the item keeps its own path: serve that, never the live image's current file
    SnapshotItem.objects.filter(pk=item.pk).update(file=default_storage.save("frozen/copy.png", ContentFile(frozen)))
    resp = _get(signed_urls.snapshot_item_url(item.pk))
    assert resp.status_code == 200 and _body(resp) == frozen
    assert _get(signed_urls.image_url(item.image_id)).status_code == 200
    assert _body(_get(signed_urls.image_url(item.image_id))) != frozen


def test_a_token_opens_only_the_file_it_names(spec, source):
    first, second = factories.make_image(spec=spec, source=source), factories.make_image(spec=spec, source=source)
    token = signed_urls.make_token(signed_urls.IMAGE, first.pk)
    payload, stamp, mac = token.split(":")
    # the same signature over another id, another kind, or a token of another purpose (salt)
    forged_id = signing.b64_encode(f'["image",{second.pk}]'.encode()).decode()
    forged_kind = signing.b64_encode(f'["item",{first.pk}]'.encode()).decode()
    for bad in (f"{forged_id}:{stamp}:{mac}", f"{forged_kind}:{stamp}:{mac}",
                signing.dumps(["image", second.pk]), signing.dumps(["image", second.pk], salt="other"),
                token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "not-a-token", "1"):
        resp = Client().get(f"/signed-files/{bad}/")
        assert resp.status_code == 403, bad
        assert second.sha256.encode() not in resp.content
    assert signed_urls.read_token(token) == signed_urls.SignedTarget(kind="image", pk=first.pk)


def test_an_expired_url_is_a_403(spec, source, settings, monkeypatch):
    image = factories.make_image(spec=spec, source=source)
    real_time = time.time
    with monkeypatch.context() as m:
        m.setattr(signing.time, "time", lambda: real_time() - settings.MATHSET_SIGNED_URL_MAX_AGE - 5)
        old = signed_urls.image_url(image.pk)
    fresh = signed_urls.image_url(image.pk)
    assert _get(old).status_code == 403 and b"expired" in _get(old).content
    assert _get(fresh).status_code == 200
    settings.MATHSET_SIGNED_URL_MAX_AGE = 1
    with monkeypatch.context() as m:
        m.setattr(signing.time, "time", lambda: real_time() - 10)
        short = signed_urls.image_url(image.pk)
    assert _get(short).status_code == 403  # the setting decides the lifetime
    with pytest.raises(signed_urls.InvalidSignedUrl) as exc:
        signed_urls.read_token(short.rstrip("/").rsplit("/", 1)[1])
    assert exc.value.reason == "expired"


def test_a_good_token_for_something_gone_is_a_404(spec, source):
    image = factories.make_image(spec=spec, source=source)
    url = signed_urls.image_url(image.pk)
    default_storage.delete(image.file)
    assert _get(url).status_code == 404  # the stored file is missing
    Image.objects.filter(pk=image.pk).delete()
    assert _get(url).status_code == 404  # the row is gone
    assert _get(signed_urls.snapshot_item_url(987654)).status_code == 404


def test_only_get_is_served(spec, source):
    image = factories.make_image(spec=spec, source=source)
    path = signed_urls.image_url(image.pk)[len("http://models.example"):]
    assert Client().post(path).status_code == 405
