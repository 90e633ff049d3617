"""Zip imports: queued through the API, run by a Celery task (eagerly here, on the
real worker in the PostgreSQL+Redis run)."""
import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from curation.models import Image, ImportJob
from tests.conftest import wait_for
from tests.factories import make_source, make_spec, png_bytes


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _archive():
    good = {f"dir/{i}.png": png_bytes() for i in range(4)}
    return _zip({**good, "dir/copy.png": good["dir/0.png"], "dir/broken.png": b"not an image",
                 "readme.txt": b"ignored"})


@pytest.mark.django_db
def test_zip_import_job_ingests_and_reports_failures(curator_api, spec, source, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = curator_api.post("/api/v1/import-jobs/", {"spec": spec.id, "source": source.id, "categories": ["printed"],
                                                      "archive": SimpleUploadedFile("batch.zip", _archive())},
                             format="multipart")
    assert r.status_code == 201, r.content
    job = curator_api.get(f"/api/v1/import-jobs/{r.json()['id']}/").json()
    assert (job["status"], job["total"], job["imported"], job["duplicates"]) == ("done", 6, 4, 1)
    assert [e["file"] for e in job["errors"]] == ["dir/broken.png"] and "not an image" in job["errors"][0]["error"]
    assert Image.objects.filter(spec=spec, categories__slug="printed").count() == 4


@pytest.mark.django_db
def test_zip_import_of_a_non_zip_is_400(curator_api, spec, source):
    r = curator_api.post("/api/v1/import-jobs/", {"spec": spec.id, "source": source.id,
                                                  "archive": SimpleUploadedFile("x.zip", b"plain text")},
                         format="multipart")
    assert r.status_code == 400 and "not a zip" in r.json()["archive"][0]
    assert ImportJob.objects.count() == 0


# serialized_rollback, as the other real-worker tests: a plain flush re-creates content types that
# a later serialized_rollback test would then insert twice.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.worker
def test_real_worker_runs_the_import_job(real_worker, api):
    from common import roles
    from tests.factories import make_user

    curator = make_user(roles.CURATOR)
    spec, source = make_spec(), make_source()
    api.force_authenticate(curator)
    r = api.post("/api/v1/import-jobs/", {"spec": spec.id, "source": source.id,
                                          "archive": SimpleUploadedFile("batch.zip", _archive())}, format="multipart")
    assert r.status_code == 201, r.content
    job = wait_for(lambda: ImportJob.objects.filter(id=r.json()["id"], status="done").first(), timeout=60)
    assert (job.imported, job.duplicates, len(job.errors)) == (4, 1, 1)
    assert Image.objects.filter(spec=spec).count() == 4


@pytest.mark.django_db
def test_zip_bomb_member_is_refused_unread_and_the_rest_imports(curator_api, spec, source, settings, monkeypatch,
                                                                django_capture_on_commit_callbacks):
    settings.MATHSET_MAX_UPLOAD_BYTES = 100_000
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.png", png_bytes())
        zf.writestr("bomb.png", b"\0" * 5_000_000)  # ~5 KB compressed, 50x the limit inflated
    assert len(buf.getvalue()) < settings.MATHSET_MAX_UPLOAD_BYTES
    read = []
    real_read = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read",
                        lambda zf, name, pwd=None: read.append(getattr(name, "filename", name)) or real_read(zf, name, pwd))
    with django_capture_on_commit_callbacks(execute=True):
        r = curator_api.post("/api/v1/import-jobs/", {"spec": spec.id, "source": source.id,
                                                      "archive": SimpleUploadedFile("bomb.zip", buf.getvalue())},
                             format="multipart")
    assert r.status_code == 201, r.content
    job = curator_api.get(f"/api/v1/import-jobs/{r.json()['id']}/").json()
    assert (job["status"], job["total"], job["imported"]) == ("done", 2, 1)
    assert [e["file"] for e in job["errors"]] == ["bomb.png"] and "limit" in job["errors"][0]["error"]
    assert read == ["ok.png"]  # the bomb was never inflated


def _zip_with_a_corrupt_member() -> bytes:
    """30 good PNGs, one whose deflate stream is damaged (zlib.error when read) and a non-image."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(30):
            zf.writestr(f"{i:02d}.png", png_bytes(seed=i))
        zf.writestr("zz.png", png_bytes() + b"\0" * 4000)
        zf.writestr("bad.png", b"not an image")
    data = bytearray(buf.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("zz.png")
    start = info.header_offset + 30 + len(info.filename)
    for i in range(start, start + 20):
        data[i] ^= 0xFF
    return bytes(data)


@pytest.mark.django_db
def test_a_member_with_a_corrupt_deflate_stream_is_listed_and_the_rest_imports(
        curator_api, spec, source, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = curator_api.post("/api/v1/import-jobs/", {"spec": spec.id, "source": source.id,
                                                      "archive": SimpleUploadedFile("b.zip", _zip_with_a_corrupt_member())},
                             format="multipart")
    assert r.status_code == 201, r.content
    job = curator_api.get(f"/api/v1/import-jobs/{r.json()['id']}/").json()
    assert (job["status"], job["total"], job["imported"]) == ("done", 32, 30), job
    errors = {e["file"]: e["error"] for e in job["errors"]}
    assert set(errors) == {"zz.png", "bad.png"} and "unreadable zip member" in errors["zz.png"]
    assert Image.objects.filter(spec=spec).count() == 30


@pytest.mark.django_db
def test_a_job_that_fails_midway_keeps_the_counts_of_what_it_stored(
        curator_api, spec, source, monkeypatch, django_capture_on_commit_callbacks):
    from curation import services

    real = services._zip_item

    def failing_at_the_27th(zf, info):
        if info.filename == "26.png":
            raise MemoryError("worker out of memory")
        return real(zf, info)

    monkeypatch.setattr(services, "_zip_item", failing_at_the_27th)
    archive = _zip({f"{i:02d}.png": png_bytes(seed=100 + i) for i in range(30)})
    with django_capture_on_commit_callbacks(execute=True):
        r = curator_api.post("/api/v1/import-jobs/", {"spec": spec.id, "source": source.id,
                                                      "archive": SimpleUploadedFile("b.zip", archive)},
                             format="multipart")
    job = curator_api.get(f"/api/v1/import-jobs/{r.json()['id']}/").json()
    # the first chunk of 25 was stored before the failure: the job says so
    assert (job["status"], job["total"], job["imported"]) == ("failed", 30, 25), job
    assert Image.objects.filter(spec=spec).count() == 25
    assert "out of memory" in job["errors"][0]["error"]
