"""An image over MATHSET_MAX_UPLOAD_BYTES (POST /api/v1/images/ and /images/bulk/) is refused while it
streams in (common/uploads.py), as model uploads are (tests/pipeline/test_model_upload_streaming_limit.py).

Before: Django wrote the whole file to a temporary file, the view read it whole into memory, and only
then did `decode_image` refuse it. The 400 still names the field and says both sizes, in the words
`decode_image` uses; nothing is stored."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from curation.models import Image
from tests.conftest import stored_files
from tests.factories import png_bytes
from tests.pipeline.test_model_upload_streaming_limit import BIG, LIMIT, Body, spy_on_kept

pytestmark = pytest.mark.django_db


@pytest.fixture
def kept(monkeypatch, settings):
    settings.MATHSET_MAX_UPLOAD_BYTES = LIMIT
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    return spy_on_kept(monkeypatch)


def _refused(resp, field: str, says: str) -> None:
    assert resp.status_code == 400, (resp.status_code, resp.content[:500])
    assert says in resp.json()[field][0], resp.json()
    assert Image.objects.count() == 0
    assert stored_files() == []


def test_an_image_over_the_limit_is_not_kept_past_it(curator_api, spec, source, kept):
    resp = curator_api.post("/api/v1/images/", {"spec": spec.id, "source": source.id,
                                                "file": SimpleUploadedFile("big.bmp", b"\0" * BIG)}, format="multipart")
    _refused(resp, "file", f"big.bmp: the file is {BIG} bytes; the limit is {LIMIT} bytes.")
    assert len(kept) == 1 and kept[0][1] <= LIMIT, kept


def test_a_bulk_upload_stops_at_the_file_over_the_limit_and_names_it(curator_api, spec, source, kept):
    small = png_bytes()
    files = [SimpleUploadedFile("a.png", small), SimpleUploadedFile("big.bmp", b"\0" * BIG),
             SimpleUploadedFile("c.png", png_bytes(40, 30))]
    resp = curator_api.post("/api/v1/images/bulk/", {"spec": spec.id, "source": source.id, "files": files},
                            format="multipart")
    _refused(resp, "files[1]", f"big.bmp: the file is {BIG} bytes; the limit is {LIMIT} bytes.")
    assert kept == [["files", len(small)], ["files", kept[1][1]]] and kept[1][1] <= LIMIT, kept


def test_an_upload_longer_than_its_file_may_be_is_refused_unread(curator_api, spec, source, kept):
    body = encode_multipart(BOUNDARY, {"spec": spec.id, "source": source.id,
                                       "file": SimpleUploadedFile("a.png", png_bytes())})
    stream = Body(body)
    resp = curator_api.generic("POST", "/api/v1/images/", body, content_type=MULTIPART_CONTENT,
                               **{"CONTENT_LENGTH": str(10**9), "wsgi.input": stream})
    _refused(resp, "file", f"the request is {10**9:,} bytes; at most ")
    assert stream.read_bytes == 0


def test_images_within_the_limit_still_upload(curator_api, spec, source, kept):
    files = [SimpleUploadedFile("a.png", png_bytes()), SimpleUploadedFile("b.png", png_bytes(40, 30))]
    resp = curator_api.post("/api/v1/images/bulk/", {"spec": spec.id, "source": source.id, "files": files},
                            format="multipart")
    assert resp.status_code == 201, resp.content[:500]
    assert Image.objects.count() == 2
