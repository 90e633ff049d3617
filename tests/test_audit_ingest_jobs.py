"""Audit of zip import jobs and TSV imports, as curators meet them: a long or non-ASCII
archive name, the job's progress while it runs, a job cut short by the task time limit
or by a dying worker, and a TSV saved with a byte-order mark."""
from __future__ import annotations

import io
import zipfile
from io import StringIO

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from curation import services
from curation.models import Image, ImportJob
from curation.tasks import run_import_job
from tests.conftest import stored_files
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _job(spec, source, members: dict[str, bytes], **fields) -> ImportJob:
    name = default_storage.save(f"imports/{spec.id}/batch.zip", ContentFile(_zip(members)))
    return ImportJob.objects.create(spec=spec, source=source, archive=name, **fields)


@pytest.mark.parametrize("filename", [
    "Übungsblatt Brüche " + "ä" * 150 + ".zip",   # 2 bytes a character: over 255 bytes
    "scans_" + "x" * 245 + ".zip",                  # the 255 characters a browser may send
])
def test_long_or_non_ascii_archive_name_is_queued_not_a_500(curator_api, spec, source, filename,
                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        r = curator_api.post("/api/v1/import-jobs/", {"spec": spec.id, "source": source.id,
                                                      "archive": SimpleUploadedFile(filename, _zip({"a.png": png_bytes()}))},
                             format="multipart")
    assert r.status_code == 201, r.content
    job = ImportJob.objects.get(id=r.json()["id"])
    # The stored name, read before the job runs: a finished job's archive is deleted and its name cleared.
    base = job.archive.rsplit("/", 1)[-1]
    assert base.endswith(".zip") and len(base.encode()) <= 255 and base.split("-", 1)[1][:6] == filename[:6]
    with django_capture_on_commit_callbacks(execute=True):
        for callback in queued:
            callback()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE and job.imported == 1 and job.archive == ""


def test_job_records_refused_files_while_it_runs(spec, source, monkeypatch):
    """The upload page's bar counts imported + duplicates + errors: errors must be there mid-run."""
    members = {f"bad{i:02}.png": b"not an image" for i in range(30)}
    members.update({f"good{i:02}.png": png_bytes(seed=i) for i in range(30)})
    job = _job(spec, source, members)
    seen = []
    real = services.images_ingest

    def spy(**kw):
        seen.append(len(ImportJob.objects.get(id=job.id).errors))
        return real(**kw)

    monkeypatch.setattr(services, "images_ingest", spy)
    services.import_job_run(job=job)
    job.refresh_from_db()
    assert (job.status, job.total, job.imported, len(job.errors)) == ("done", 60, 30, 30)
    # The last chunks (good files) are ingested after the 30 refused ones were recorded.
    assert seen[-1] == 30


def test_job_cut_by_the_time_limit_goes_on_and_finishes(spec, source, monkeypatch,
                                                        django_capture_on_commit_callbacks):
    members = {f"p{i:02}.png": png_bytes(seed=i) for i in range(60)}
    members["broken.png"] = b"not an image"
    job = _job(spec, source, members)
    real, calls = services.images_ingest, []

    def limited(**kw):
        calls.append(1)
        if len(calls) == 2:  # the worker's soft time limit strikes in the second chunk
            raise SoftTimeLimitExceeded()
        return real(**kw)

    monkeypatch.setattr(services, "images_ingest", limited)
    with django_capture_on_commit_callbacks(execute=True):
        services.import_job_run(job=job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE, job.errors
    assert (job.total, job.imported, job.duplicates) == (61, 60, 0)
    assert [e["file"] for e in job.errors] == ["broken.png"]
    assert Image.objects.filter(spec=spec).count() == 60
    assert len([n for n in stored_files() if n.startswith("images/")]) == 60  # no orphan from the cut chunk


def test_job_of_a_worker_that_died_is_taken_over_when_redelivered(spec, source):
    """acks_late: a dead worker's message comes back, but the job already says "running"."""
    members = {f"p{i:02}.png": png_bytes(seed=i) for i in range(40)}
    job = _job(spec, source, members)
    first = dict(list(members.items())[:25])
    services.images_ingest(spec=spec, source=source, files=list(first.items()))  # the dead worker's chunk
    ImportJob.objects.filter(id=job.id).update(status=ImportJob.Status.RUNNING, total=40, imported=25)

    run_import_job.push_request(delivery_info={"redelivered": True})
    try:
        run_import_job.run(job.id)
    finally:
        run_import_job.pop_request()
    job.refresh_from_db()
    assert (job.status, job.imported, job.duplicates, job.errors) == ("done", 40, 0, [])
    assert Image.objects.filter(spec=spec).count() == 40


def test_a_second_delivery_does_not_run_a_running_job_twice(spec, source):
    job = _job(spec, source, {"a.png": png_bytes()}, status=ImportJob.Status.RUNNING)
    run_import_job.push_request(delivery_info={"redelivered": False})
    try:
        run_import_job.run(job.id)
    finally:
        run_import_job.pop_request()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.RUNNING and Image.objects.count() == 0


def test_tsv_with_a_byte_order_mark_keeps_its_first_line(tmp_path, spec):
    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "first.png").write_bytes(png_bytes(seed=1))
    (folder / "second.png").write_bytes(png_bytes(seed=2))
    tsv = tmp_path / "pages.tsv"
    tsv.write_bytes("\ufefffirst.png\t\\frac{1}{2}\r\nsecond.png\tx^{2}\r\n".encode())  # as Excel saves it
    out = StringIO()
    call_command("import_images", str(folder), "--spec", spec.slug, "--tsv", str(tsv), "--no-ink-bbox", stdout=out)
    truths = dict(Image.objects.filter(spec=spec).values_list("original_filename", "truth_latex"))
    assert truths == {"first.png": "\\frac{1}{2}", "second.png": "x^{2}"}
    assert "no LaTeX" not in out.getvalue()
