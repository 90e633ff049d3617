"""Exact duplicates are found by the hash of the stored (metadata-stripped) bytes, so the
same photo uploaded once from the phone and once after a tool rewrote its EXIF is one image."""
from __future__ import annotations

import hashlib
import importlib
import io

import numpy as np
import pytest
from django.apps import apps
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from curation import services
from curation.imaging import decode_image
from curation.models import Image
from tests.conftest import stored_files

pytestmark = pytest.mark.django_db


def _page() -> PILImage.Image:
    arr = np.full((60, 120, 3), 255, np.uint8)
    arr[10:20, 5:15] = 0
    arr[40:50, 90:110] = (200, 0, 0)
    return PILImage.fromarray(arr)


def _jpeg(**exif_tags) -> bytes:
    exif = PILImage.Exif()
    for tag, value in exif_tags.items():
        exif[int(tag[1:])] = value
    buf = io.BytesIO()
    _page().save(buf, "JPEG", quality=95, exif=exif, comment=b"from " + str(sorted(exif_tags)).encode())
    return buf.getvalue()


PHONE = _jpeg(t271="PhoneMaker", t42033="SERIAL-0042", t306="2024:05:01 08:00:00")  # make, serial, time
REWRITTEN = _jpeg(t271="PhoneMaker", t305="ExifTool 12.76")  # software tag, no serial


def test_the_two_uploads_differ_only_in_metadata():
    assert PHONE != REWRITTEN
    assert decode_image(PHONE, "a.jpg").content == decode_image(REWRITTEN, "b.jpg").content


def test_hash_is_of_the_stored_bytes(spec, source):
    image, created = services.image_ingest(spec=spec, source=source, data=PHONE, filename="a.jpg")
    assert created
    with default_storage.open(image.file, "rb") as fh:
        stored = fh.read()
    assert stored != PHONE  # metadata went
    assert image.sha256 == hashlib.sha256(stored).hexdigest()


def test_second_upload_with_other_exif_is_an_exact_duplicate(spec, source):
    first, created = services.image_ingest(spec=spec, source=source, data=PHONE, filename="a.jpg")
    again, created_again = services.image_ingest(spec=spec, source=source, data=REWRITTEN, filename="b.jpg")
    assert created and not created_again
    assert again.id == first.id
    assert Image.objects.filter(spec=spec).count() == 1
    assert len(stored_files()) == 2  # one file and its thumbnail


def test_both_in_one_call_are_reported_as_duplicates(spec, source):
    result = services.images_ingest(spec=spec, source=source, files=[("a.jpg", PHONE), ("b.jpg", REWRITTEN)])
    assert [im.original_filename for im in result.created] == ["a.jpg"]
    assert [(name, im.id) for name, im in result.duplicates] == [("b.jpg", result.created[0].id)]


def test_batch_import_counts_the_rewrite_as_a_duplicate(spec, source):
    items = [services.IngestItem(name="a.jpg", data=PHONE), services.IngestItem(name="b.jpg", data=REWRITTEN)]
    report = services.ingest_batch(spec=spec, source=source, items=items)
    assert (report.imported, report.duplicates, report.failures) == (1, 1, [])


def test_migration_rehashes_rows_from_their_stored_files(spec, source):
    """Rows stored before the change carry the hash of the original upload: the data
    migration recomputes it from the stored file, so a re-upload is still found."""
    image, _ = services.image_ingest(spec=spec, source=source, data=PHONE, filename="a.jpg")
    old_hash = hashlib.sha256(PHONE).hexdigest()
    Image.objects.filter(id=image.id).update(sha256=old_hash)  # as the old ingest stored it
    migration = importlib.import_module("curation.migrations.0008_image_sha256_of_stored_bytes")
    migration.rehash_stored(apps, None)
    image.refresh_from_db()
    with default_storage.open(image.file, "rb") as fh:
        assert image.sha256 == hashlib.sha256(fh.read()).hexdigest() != old_hash
    again, created = services.image_ingest(spec=spec, source=source, data=PHONE, filename="a-again.jpg")
    assert not created and again.id == image.id
