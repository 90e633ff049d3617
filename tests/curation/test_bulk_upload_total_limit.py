"""The files of one POST /api/v1/images/bulk/ add up to at most MATHSET_BULK_MAX_BYTES, refused while
they stream in (common/uploads.py), and the upload page sends its files in requests under that total.

Before: only each file was limited (MATHSET_MAX_UPLOAD_BYTES, 25 MB), so one request of
MATHSET_BULK_MAX_FILES (500) files could write 12.5 GB to temporary files, and the page sent 20 files
a request whatever their sizes."""
from __future__ import annotations

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from common import roles, uploads
from curation.models import Image
from tests import factories
from tests.conftest import stored_files
from tests.pipeline.test_model_upload_streaming_limit import Body, spy_on_kept

URL = "/api/v1/images/bulk/"
PER_FILE = 100_000
TOTAL = 150_000


def _bmp(seed: int) -> bytes:
    return factories.png_bytes(200, 100, seed=seed, fmt="BMP")  # 60,054 bytes


@pytest.fixture
def kept(monkeypatch, settings):
    settings.MATHSET_MAX_UPLOAD_BYTES = PER_FILE
    settings.MATHSET_BULK_MAX_BYTES = TOTAL
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    return spy_on_kept(monkeypatch)


def _files(n: int) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(f"f{i}.bmp", _bmp(7000 + i)) for i in range(n)]


def _nothing_stored() -> None:
    assert Image.objects.count() == 0
    assert stored_files() == []


@pytest.mark.django_db
def test_files_adding_up_to_more_than_the_total_are_refused_while_they_stream(curator_api, spec, source, kept,
                                                                              settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    files = _files(3)
    size = len(_bmp(0))
    assert size < PER_FILE and 2 * size <= TOTAL < 3 * size
    resp = curator_api.post(URL, {"spec": spec.id, "source": source.id, "files": files}, format="multipart")
    assert resp.status_code == 400, (resp.status_code, resp.content[:500])
    assert resp.json() == {"files": [
        f"the files sent add up to at least {3 * size:,} bytes; at most {TOTAL:,} bytes ({TOTAL // 2**20} MB) "
        "are accepted in one request: send them in several"]}
    _nothing_stored()
    assert sum(n for _, n in kept) <= TOTAL, kept
    assert list((tmp_path / "uploads").iterdir()) == []  # the parts kept before were deleted with the request


@pytest.mark.django_db
def test_a_body_longer_than_the_files_may_add_up_to_is_refused_unread(curator_api, spec, source, kept, settings):
    body = encode_multipart(BOUNDARY, {"spec": spec.id, "source": source.id, "files": _files(1)})
    declared = TOTAL + settings.DATA_UPLOAD_MAX_MEMORY_SIZE + uploads.FORM_OVERHEAD_BYTES + 1
    # under what MATHSET_BULK_MAX_FILES files of MATHSET_MAX_UPLOAD_BYTES each may add up to
    assert declared < PER_FILE * settings.MATHSET_BULK_MAX_FILES
    stream = Body(body)
    resp = curator_api.generic("POST", URL, body, content_type=MULTIPART_CONTENT,
                               **{"CONTENT_LENGTH": str(declared), "wsgi.input": stream})
    assert resp.status_code == 400, (resp.status_code, resp.content[:500])
    assert resp.json()["files"][0].startswith(f"the request is {declared:,} bytes; at most {declared - 1:,} bytes")
    assert f"at most {TOTAL:,} bytes in all" in resp.json()["files"][0]
    assert stream.read_bytes == 0
    _nothing_stored()


@pytest.mark.django_db
def test_files_within_the_total_still_upload(curator_api, spec, source, kept):
    resp = curator_api.post(URL, {"spec": spec.id, "source": source.id, "files": _files(2)}, format="multipart")
    assert resp.status_code == 201, resp.content[:500]
    assert Image.objects.count() == 2


@pytest.mark.django_db
def test_the_default_total_is_512_mib(settings):
    assert settings.MATHSET_BULK_MAX_BYTES == 512 * 2**20


@pytest.mark.django_db
def test_the_upload_page_tells_its_script_the_total(client, curator, spec, source, settings):
    settings.MATHSET_BULK_MAX_BYTES = TOTAL
    settings.MATHSET_MAX_ARCHIVE_BYTES = 3 * TOTAL
    client.force_login(curator)
    html = client.get("/upload/").content.decode()
    config = json.loads(re.search(r'<script id="upload-config" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert (config["chunkBytes"], config["maxArchiveBytes"]) == (TOTAL, 3 * TOTAL)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_upload_page_splits_files_into_requests_under_the_total(page, live_server, login, settings):
    settings.MATHSET_MAX_UPLOAD_BYTES = PER_FILE
    settings.MATHSET_BULK_MAX_BYTES = TOTAL
    factories.make_user(roles.CURATOR, username="cora")
    spec = factories.make_spec(status="active")
    source = factories.make_source("cc-by-4.0")
    login("cora")
    page.goto(f"{live_server.url}/upload/")
    page.get_by_label("Spec").select_option(str(spec.pk))
    page.get_by_label("Source").select_option(str(source.pk))
    sent = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith(URL) else None)
    page.locator("#up-files").set_input_files([
        {"name": f"f{i}.bmp", "mimeType": "image/bmp", "buffer": _bmp(8000 + i)} for i in range(3)])
    page.get_by_role("button", name="Upload 3 files").click()
    page.wait_for_selector("#up-progress-panel[data-done=true]")
    assert "3 of 3 files done · 3 created" in page.locator("#up-status").inner_text()
    # 2 + 1: the server refuses a request whose files add up to more than TOTAL, so each was under it
    assert len(sent) == 2, sent
    assert Image.objects.filter(spec=spec).count() == 3
