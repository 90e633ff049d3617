"""Resumable, cacheable file downloads: the export zip, image files and thumbnails, signed
file URLs, and the helper itself (common/http_files.py) on a file larger than its chunk."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client, RequestFactory

from common import roles
from common.http_files import CHUNK_SIZE, stored_file_response
from common.services import api_token_rotate
from curation import signed_urls
from curation.models import Export
from tests import factories
from tests.labeling.conftest import client_for
from tests.ranged import assert_serves_ranges, body_of
from tests.test_audit_exports_download import _done_export

pytestmark = pytest.mark.django_db

TAKEDOWN = {"reason_kind": "copyright", "reason": "Letter of 2026-03-02 from the publisher.",
            "requested_by": "Mirae Publishing Co."}


# ---------------------------------------------------------------- exports


def test_an_export_download_resumes_and_revalidates(curator, model_team, django_capture_on_commit_callbacks):
    job = _done_export(curator, django_capture_on_commit_callbacks)
    url = f"/api/v1/exports/{job.pk}/download/"
    with default_storage.open(job.file, "rb") as fh:
        whole = fh.read()
    assert_serves_ranges(client_for(model_team), url, whole)
    resp = client_for(model_team).get(url, HTTP_RANGE="bytes=100-")
    assert resp["Content-Type"] == "application/zip"
    assert resp["Content-Disposition"].startswith("attachment; filename=")
    assert resp.streaming  # read from storage in chunks, never whole in memory


def test_a_rebuilt_export_has_another_etag(curator, model_team, django_capture_on_commit_callbacks):
    first = _done_export(curator, django_capture_on_commit_callbacks)
    api = client_for(model_team)
    tag = api.get(f"/api/v1/exports/{first.pk}/download/")["ETag"]
    with django_capture_on_commit_callbacks(execute=True):
        from curation import snapshots

        again = snapshots.export_create(snapshot=first.snapshot, format=first.format, created_by=curator)
    again.refresh_from_db()
    other = api.get(f"/api/v1/exports/{again.pk}/download/")
    assert other.status_code == 200 and other["ETag"] != tag
    # a resume of the first zip against the second one's URL is never stitched together
    resp = api.get(f"/api/v1/exports/{again.pk}/download/", HTTP_RANGE="bytes=10-", HTTP_IF_RANGE=tag)
    assert resp.status_code == 200 and "Content-Range" not in resp


def test_a_withdrawn_export_is_still_410_with_a_range_or_validator(curator, curator_api, model_team,
                                                                    django_capture_on_commit_callbacks):
    job = _done_export(curator, django_capture_on_commit_callbacks)
    url = f"/api/v1/exports/{job.pk}/download/"
    tag = client_for(model_team).get(url)["ETag"]
    image_id = job.snapshot.items.order_by("image_id").first().image_id
    with django_capture_on_commit_callbacks(execute=True):
        assert curator_api.post(f"/api/v1/images/{image_id}/takedown/", TAKEDOWN, format="json").status_code == 201
    job.refresh_from_db()
    assert job.status == Export.Status.WITHDRAWN
    api = client_for(model_team)
    for headers in ({"HTTP_RANGE": "bytes=10-"}, {"HTTP_IF_NONE_MATCH": tag},
                    {"HTTP_RANGE": "bytes=10-", "HTTP_IF_RANGE": tag}, {}):
        assert api.get(url, **headers).status_code == 410, headers
    assert api.head(url).status_code == 410


def test_an_unfinished_or_foreign_export_is_still_404_with_a_range(curator, model_team):
    from curation import snapshots
    from tests.curation.test_snapshots import accepted_spec

    snap = factories.make_snapshot(spec=accepted_spec(images=1), name="q", created_by=curator)
    job = snapshots.export_create(snapshot=snap, format="jsonl", created_by=curator)  # queued
    r = client_for(model_team).get(f"/api/v1/exports/{job.pk}/download/", HTTP_RANGE="bytes=0-")
    assert r.status_code == 404
    annotator = factories.make_user(roles.ANNOTATOR)
    r = client_for(annotator).get(f"/api/v1/exports/{job.pk}/download/", HTTP_RANGE="bytes=0-")
    assert r.status_code in (403, 404)


# ---------------------------------------------------------------- images


def test_an_image_file_and_its_thumbnail_resume_and_revalidate(curator, spec, source):
    data = factories.png_bytes(400, 300)
    image = factories.make_image(spec=spec, source=source, data=data)
    api = client_for(curator)
    with default_storage.open(image.file, "rb") as fh:
        whole = fh.read()
    assert_serves_ranges(api, f"/api/v1/images/{image.pk}/file/", whole)
    file_resp = api.get(f"/api/v1/images/{image.pk}/file/")
    assert image.sha256 in file_resp["ETag"]  # the stored digest of the bytes
    assert file_resp["Cache-Control"] == "private, max-age=3600" and file_resp["Content-Type"] == "image/png"
    assert file_resp.has_header("Last-Modified")
    thumb = assert_serves_ranges(api, f"/api/v1/images/{image.pk}/thumbnail/")
    assert thumb[:3] == b"\xff\xd8\xff"  # a JPEG
    assert api.get(f"/api/v1/images/{image.pk}/thumbnail/")["ETag"] != file_resp["ETag"]


def test_another_vendors_image_is_still_404_with_a_range(api, annotator, spec, source):
    image = factories.make_image(spec=spec, source=source)
    api.force_authenticate(annotator)
    for headers in ({"HTTP_RANGE": "bytes=0-10"}, {"HTTP_RANGE": "bytes=-5"}, {"HTTP_IF_NONE_MATCH": "*"}):
        assert api.get(f"/api/v1/images/{image.pk}/file/", **headers).status_code == 404
        assert api.get(f"/api/v1/images/{image.pk}/thumbnail/", **headers).status_code == 404
    assert api.head(f"/api/v1/images/{image.pk}/file/").status_code == 404


def test_a_taken_down_image_is_still_410_with_a_range(curator, curator_api, spec, source,
                                                      django_capture_on_commit_callbacks):
    image = factories.make_image(spec=spec, source=source)
    url = f"/api/v1/images/{image.pk}/file/"
    tag = curator_api.get(url)["ETag"]
    with django_capture_on_commit_callbacks(execute=True):
        assert curator_api.post(f"/api/v1/images/{image.pk}/takedown/", TAKEDOWN, format="json").status_code == 201
    for headers in ({"HTTP_RANGE": "bytes=0-10"}, {"HTTP_IF_NONE_MATCH": tag}, {}):
        assert curator_api.get(url, **headers).status_code == 410, headers
        assert curator_api.get(f"/api/v1/images/{image.pk}/thumbnail/", **headers).status_code == 410
    assert curator_api.head(url).status_code == 410


def test_a_missing_stored_file_is_still_404_with_a_range(curator_api, spec, source):
    image = factories.make_image(spec=spec, source=source)
    default_storage.delete(image.file)
    assert curator_api.get(f"/api/v1/images/{image.pk}/file/", HTTP_RANGE="bytes=0-10").status_code == 404
    assert curator_api.head(f"/api/v1/images/{image.pk}/file/").status_code == 404


# ---------------------------------------------------------------- signed files


@pytest.fixture
def _public_base(settings):
    settings.PUBLIC_BASE_URL = "http://models.example"


def test_a_signed_file_resumes_and_revalidates_without_a_login(_public_base, spec, source):
    image = factories.make_image(spec=spec, source=source, data=factories.png_bytes(300, 200))
    url = signed_urls.image_url(image.pk)[len("http://models.example"):]
    with default_storage.open(image.file, "rb") as fh:
        whole = fh.read()
    assert_serves_ranges(Client(), url, whole)
    assert Client().get(url, HTTP_RANGE="bytes=0-")["Cache-Control"] == "private, no-store"


def test_a_signed_file_of_a_taken_down_image_is_still_410(_public_base, curator_api, spec, source,
                                                          django_capture_on_commit_callbacks):
    image = factories.make_image(spec=spec, source=source)
    url = signed_urls.image_url(image.pk)[len("http://models.example"):]
    with django_capture_on_commit_callbacks(execute=True):
        assert curator_api.post(f"/api/v1/images/{image.pk}/takedown/", TAKEDOWN, format="json").status_code == 201
    assert Client().get(url, HTTP_RANGE="bytes=0-10").status_code == 410
    assert Client().head(url).status_code == 410


# ---------------------------------------------------------------- the helper


def test_ranges_across_chunk_boundaries_stream_in_chunks(tmp_path):
    data = os.urandom(CHUNK_SIZE * 3 + 12345)
    name = default_storage.save("big/blob.bin", ContentFile(data))
    rf = RequestFactory()
    start, end = CHUNK_SIZE - 7, 3 * CHUNK_SIZE + 99  # 2 chunks and 107 bytes
    resp = stored_file_response(name, request=rf.get("/", HTTP_RANGE=f"bytes={start}-{end}"),
                                cache_control="private")
    assert resp.status_code == 206 and resp.streaming
    chunks = list(resp.streaming_content)
    assert b"".join(chunks) == data[start:end + 1]
    assert max(len(c) for c in chunks) <= CHUNK_SIZE and len(chunks) == 3
    resp.close()
    resp = stored_file_response(name, request=rf.get("/", HTTP_RANGE="bytes=-1"), cache_control="private")
    assert body_of(resp) == data[-1:]
    resp.close()
    # without a request (or a Range) it is the plain whole file, with its validators
    resp = stored_file_response(name, cache_control="private")
    assert resp.status_code == 200 and body_of(resp) == data and resp.has_header("ETag")
    resp.close()


def test_an_empty_file_has_no_satisfiable_range():
    name = default_storage.save("empty/none.bin", ContentFile(b""))
    rf = RequestFactory()
    resp = stored_file_response(name, request=rf.get("/", HTTP_RANGE="bytes=0-"), cache_control="private")
    assert resp.status_code == 416 and resp["Content-Range"] == "bytes */0"
    resp = stored_file_response(name, request=rf.get("/"), cache_control="private")
    assert resp.status_code == 200 and body_of(resp) == b"" and resp["Content-Length"] == "0"
    resp.close()


def test_the_etag_changes_when_a_files_bytes_do():
    rf = RequestFactory()
    name = default_storage.save("changing/a.bin", ContentFile(b"a" * 100))
    first = stored_file_response(name, request=rf.get("/"), cache_control="private")
    first.close()
    default_storage.delete(name)
    assert default_storage.save(name, ContentFile(b"b" * 101)) == name
    second = stored_file_response(name, request=rf.get("/", HTTP_RANGE="bytes=50-", HTTP_IF_RANGE=first["ETag"]),
                                  cache_control="private")
    assert second["ETag"] != first["ETag"]
    assert second.status_code == 200 and body_of(second) == b"b" * 101
    second.close()


# ---------------------------------------------------------------- a real client


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.django_db(transaction=True)
def test_curl_resumes_an_interrupted_export_download(live_server, tmp_path, django_capture_on_commit_callbacks):
    curator, team = factories.make_user(roles.CURATOR), factories.make_user(roles.MODEL_TEAM)
    job = _done_export(curator, django_capture_on_commit_callbacks)
    with default_storage.open(job.file, "rb") as fh:
        whole = fh.read()
    out = tmp_path / "export.zip"
    out.write_bytes(whole[:len(whole) // 2])  # what a dropped connection left behind
    key = api_token_rotate(user=team).key
    # `-C -` asks for `Range: bytes=<size of out>-` and appends. (curl refuses `-C -` with `-J`:
    # name the file with `-o`.)
    done = subprocess.run(["curl", "-sS", "-f", "-C", "-", "-o", str(out), "-H", f"Authorization: Token {key}",
                           f"{live_server.url}/api/v1/exports/{job.pk}/download/"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == whole
