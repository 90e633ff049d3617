"""A zip for POST /api/v1/import-jobs/ is at most MATHSET_MAX_ARCHIVE_BYTES, refused while it streams in
(common/uploads.py), and is never held in memory whole.

Before: there was no limit at all, and the view read the whole upload into memory (`upload.read()`) to
hand the service bytes, which it wrapped in a BytesIO to check it was a zip: a 2 GB archive cost 2 GB of
RAM per request. Now the view hands the service the uploaded file (a temporary file for a big upload),
which the storage moves into place; the service checks the size again for its other callers."""
from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from common import uploads
from curation import services
from curation.models import Image, ImportJob
from tests.conftest import stored_files
from tests.factories import png_bytes
from tests.pipeline.test_model_upload_streaming_limit import Body, spy_on_kept

pytestmark = pytest.mark.django_db

URL = "/api/v1/import-jobs/"
LIMIT = 100_000  # more than one 64 KiB chunk, so a refusal mid-file is exercised


def _zip(padding: int = 0, images: int = 1) -> bytes:
    """A zip of `images` PNGs and, stored uncompressed so that it counts in full, `padding` random bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(images):
            zf.writestr(f"p{i}.png", png_bytes())
        if padding:
            zf.writestr("padding.bin", os.urandom(padding))
    return buf.getvalue()


def _fields(spec, source, archive: bytes, name: str = "batch.zip") -> dict:
    return {"spec": spec.id, "source": source.id, "archive": SimpleUploadedFile(name, archive)}


@pytest.fixture
def kept(monkeypatch, settings):
    settings.MATHSET_MAX_ARCHIVE_BYTES = LIMIT
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    return spy_on_kept(monkeypatch)


def _nothing_stored() -> None:
    assert ImportJob.objects.count() == 0
    assert stored_files() == []


def test_an_archive_over_the_limit_is_refused_while_it_streams(curator_api, spec, source, kept):
    archive = _zip(padding=3 * LIMIT)
    resp = curator_api.post(URL, _fields(spec, source, archive, "big.zip"), format="multipart")
    assert resp.status_code == 400, (resp.status_code, resp.content[:500])
    assert resp.json()["archive"] == [f"big.zip: the file is {len(archive):,} bytes; at most {LIMIT:,} bytes "
                                      f"({LIMIT // 2**20} MB) are accepted"]
    _nothing_stored()
    assert len(kept) == 1 and kept[0][0] == "archive" and kept[0][1] <= LIMIT, kept


def test_a_body_longer_than_the_archive_may_be_is_refused_unread(curator_api, spec, source, kept, settings):
    body = encode_multipart(BOUNDARY, {"spec": spec.id, "source": source.id,
                                       "archive": SimpleUploadedFile("a.zip", _zip())})
    declared = LIMIT + settings.DATA_UPLOAD_MAX_MEMORY_SIZE + uploads.FORM_OVERHEAD_BYTES + 1
    stream = Body(body)
    resp = curator_api.generic("POST", URL, body, content_type=MULTIPART_CONTENT,
                               **{"CONTENT_LENGTH": str(declared), "wsgi.input": stream})
    assert resp.status_code == 400, (resp.status_code, resp.content[:500])
    assert resp.json()["archive"][0].startswith(f"the request is {declared:,} bytes; at most {declared - 1:,} bytes")
    assert stream.read_bytes == 0
    _nothing_stored()


def test_the_default_limit_is_two_gib(settings):
    assert settings.MATHSET_MAX_ARCHIVE_BYTES == 2 * 2**30


def test_an_archive_within_the_limit_is_imported_from_its_temporary_file(
        curator_api, spec, source, kept, settings, django_capture_on_commit_callbacks):
    archive = _zip(images=2)
    assert len(archive) <= LIMIT
    with django_capture_on_commit_callbacks(execute=True):
        resp = curator_api.post(URL, _fields(spec, source, archive), format="multipart")
    assert resp.status_code == 201, resp.content[:500]
    job = ImportJob.objects.get()
    # the worker read the archive the storage moved into place (and deleted it once done)
    assert (job.status, job.imported, job.errors) == (ImportJob.Status.DONE, 2, [])
    assert Image.objects.filter(spec=spec).count() == 2


def test_the_view_hands_the_service_the_uploaded_file_not_its_bytes(curator_api, spec, source, monkeypatch):
    given = []
    real = services.import_job_create

    def spy(**kwargs):
        given.append(kwargs["archive"])
        return real(**kwargs)

    monkeypatch.setattr(services, "import_job_create", spy)
    resp = curator_api.post(URL, _fields(spec, source, _zip()), format="multipart")
    assert resp.status_code == 201, resp.content[:500]
    assert len(given) == 1 and isinstance(given[0], File), type(given[0])


def test_a_20_mb_archive_is_never_held_in_memory(curator_api, spec, source):
    """The body streams in 64 KiB chunks to a temporary file, which the storage moves into place."""
    archive = _zip(padding=20 * 2**20)
    body = encode_multipart(BOUNDARY, {"spec": spec.id, "source": source.id,
                                       "archive": SimpleUploadedFile("big.zip", archive)})
    stream = Body(body)
    # a first request imports what the first request imports (URLs, views: megabytes), outside the count
    assert curator_api.post(URL, _fields(spec, source, _zip()), format="multipart").status_code == 201
    tracemalloc.start()
    try:
        resp = curator_api.generic("POST", URL, b"", content_type=MULTIPART_CONTENT,
                                   **{"CONTENT_LENGTH": str(len(body)), "wsgi.input": stream})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status_code == 201, resp.content[:500]
    assert peak < len(archive) // 4, f"peak {peak:,} bytes for a {len(archive):,}-byte archive"
    with default_storage.open(ImportJob.objects.get(id=resp.json()["id"]).archive, "rb") as fh:
        assert fh.read() == archive


@pytest.mark.parametrize("as_file", [False, True], ids=["bytes", "file"])
def test_the_service_refuses_an_archive_over_the_limit_for_every_caller(spec, source, settings, as_file):
    settings.MATHSET_MAX_ARCHIVE_BYTES = LIMIT
    archive = _zip(padding=2 * LIMIT)
    with pytest.raises(ValidationError) as refused:
        services.import_job_create(spec=spec, source=source, filename="big.zip",
                                   archive=ContentFile(archive, name="big.zip") if as_file else archive)
    assert refused.value.message_dict == {"archive": [
        f"big.zip: the file is {len(archive):,} bytes; at most {LIMIT:,} bytes ({LIMIT // 2**20} MB) are accepted"]}
    _nothing_stored()


def test_the_service_takes_a_file_and_stores_it_whole(spec, source):
    archive = _zip(images=2)
    job = services.import_job_create(spec=spec, source=source, filename="x.zip",
                                     archive=ContentFile(archive, name="x.zip"))
    with default_storage.open(job.archive, "rb") as fh:
        assert fh.read() == archive


def test_the_service_refuses_a_file_that_is_not_a_zip_as_before(spec, source):
    with pytest.raises(ValidationError) as refused:
        services.import_job_create(spec=spec, source=source, filename="x.zip",
                                   archive=ContentFile(b"plain text", name="x.zip"))
    assert refused.value.message_dict == {"archive": ["x.zip: not a zip file."]}
    _nothing_stored()
