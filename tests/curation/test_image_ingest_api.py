"""POST /api/v1/images/ and /images/bulk/: good uploads, duplicates, and every kind of bad input."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from django.test import override_settings
from PIL import Image as PILImage

from curation.models import Image
from tests.conftest import stored_files
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


def upload(api, spec, source, data, name="a.png", categories=("printed",), url="/api/v1/images/"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    payload = {"spec": spec.id if spec else "", "source": source.id if source else "",
               "file": SimpleUploadedFile(name, data), "categories": list(categories)}
    if spec is None:
        payload.pop("spec")
    if source is None:
        payload.pop("source")
    return api.post(url, payload, format="multipart")


def assert_nothing_stored():
    assert Image.objects.count() == 0
    assert stored_files() == []


def test_upload_stores_image_thumbnail_and_metadata(curator_api, spec, source):
    r = upload(curator_api, spec, source, png_bytes(200, 80))
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["width"], body["height"], body["format"]) == (200, 80, "PNG")
    assert body["categories"] == ["printed"] and body["licence"] == "cc-by-4.0" and body["duplicate"] is False
    assert len(body["sha256"]) == 64 and len(body["phash"]) == 16
    assert len(stored_files()) == 2  # image + thumbnail
    thumb = curator_api.get(body["thumbnail_url"])
    assert thumb.status_code == 200
    assert PILImage.open(io.BytesIO(b"".join(thumb.streaming_content))).format == "JPEG"


def test_exact_duplicate_is_reported_not_stored_twice(curator_api, spec, source):
    data = png_bytes()
    first = upload(curator_api, spec, source, data)
    second = upload(curator_api, spec, source, data, name="copy.png")
    assert second.status_code == 200
    assert second.json()["duplicate"] is True and second.json()["id"] == first.json()["id"]
    assert Image.objects.count() == 1 and len(stored_files()) == 2


def test_exif_orientation_is_applied(curator_api, spec, source):
    img = PILImage.new("RGB", (300, 100), "white")
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    r = upload(curator_api, spec, source, buf.getvalue(), name="rot.jpg")
    assert r.status_code == 201, r.content
    assert (r.json()["width"], r.json()["height"]) == (100, 300)


def test_not_an_image_is_refused(curator_api, spec, source):
    r = upload(curator_api, spec, source, b"%PDF-1.4 this is not an image", name="doc.png")
    assert r.status_code == 400 and "not an image" in r.json()["file"][0]
    assert_nothing_stored()


def test_truncated_image_is_refused(curator_api, spec, source):
    data = png_bytes(400, 300)
    r = upload(curator_api, spec, source, data[: len(data) // 2])
    assert r.status_code == 400 and "truncated or corrupt" in r.json()["file"][0]
    assert_nothing_stored()


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused(curator_api, spec, source):
    r = upload(curator_api, spec, source, _png_claiming(30000, 30000), name="bomb.png")
    assert r.status_code == 400 and "decompression bomb" in r.json()["file"][0]
    assert_nothing_stored()


@override_settings(MATHSET_MAX_UPLOAD_BYTES=1000)
def test_file_over_size_limit_is_refused(curator_api, spec, source):
    r = upload(curator_api, spec, source, png_bytes(600, 600, fmt="BMP"), name="big.bmp")
    assert r.status_code == 400 and "the limit is 1000 bytes" in r.json()["file"][0]
    assert_nothing_stored()


def test_missing_source_is_refused(curator_api, spec):
    r = upload(curator_api, spec, None, png_bytes())
    assert r.status_code == 400 and "source" in r.json()
    assert_nothing_stored()


def test_unknown_source_is_refused(curator_api, spec, source):
    source.id += 1000
    r = upload(curator_api, spec, source, png_bytes())
    assert r.status_code == 400 and "source" in r.json()
    assert_nothing_stored()


def test_unknown_category_is_refused(curator_api, spec, source):
    r = upload(curator_api, spec, source, png_bytes(), categories=["printed", "watercolour"])
    assert r.status_code == 400 and "watercolour" in r.json()["categories"][0]
    assert_nothing_stored()


def test_non_commercial_source_refused_for_commercial_spec(curator_api, spec, nc_source):
    r = upload(curator_api, spec, nc_source, png_bytes())
    assert r.status_code == 400
    message = r.json()["source"][0]
    assert "forbids commercial use" in message and "CC BY-NC-SA 3.0" in message
    assert_nothing_stored()


def test_non_commercial_source_accepted_for_research_spec(curator_api, research_spec, nc_source):
    assert upload(curator_api, research_spec, nc_source, png_bytes()).status_code == 201


def test_bulk_upload_stores_all_and_reports_duplicates(curator_api, spec, source):
    from django.core.files.uploadedfile import SimpleUploadedFile

    same = png_bytes()
    files = [SimpleUploadedFile(f"f{i}.png", png_bytes()) for i in range(5)]
    files += [SimpleUploadedFile("dup1.png", same), SimpleUploadedFile("dup2.png", same)]
    r = curator_api.post("/api/v1/images/bulk/", {"spec": spec.id, "source": source.id, "files": files,
                                                 "categories": ["handwritten", "shadow"]}, format="multipart")
    assert r.status_code == 201, r.content
    assert len(r.json()["created"]) == 6 and [d["filename"] for d in r.json()["duplicates"]] == ["dup2.png"]
    assert Image.objects.count() == 6
    assert set(Image.objects.first().categories.values_list("slug", flat=True)) == {"handwritten", "shadow"}


def test_bulk_upload_with_one_bad_file_stores_nothing(curator_api, spec, source):
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(f"f{i}.png", png_bytes()) for i in range(3)] + [SimpleUploadedFile("bad.png", b"junk")]
    r = curator_api.post("/api/v1/images/bulk/", {"spec": spec.id, "source": source.id, "files": files},
                         format="multipart")
    assert r.status_code == 400
    assert "bad.png" in r.json()["files[3]"][0]
    assert_nothing_stored()


def test_database_failure_leaves_no_orphan_file(curator_api, spec, source, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Image.objects, "bulk_create", boom)
    with pytest.raises(RuntimeError):
        upload(curator_api, spec, source, png_bytes())
    assert_nothing_stored()


def test_annotator_cannot_upload(api, annotator, spec, source):
    api.force_authenticate(annotator)
    r = upload(api, spec, source, png_bytes())
    assert r.status_code == 403
