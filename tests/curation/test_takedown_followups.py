"""What a takedown left behind, closed: import archives that kept the photo in storage, quota
progress still counting it, its submitted work stuck in the review queue (with a 410 picture),
pre-label items failing on its missing file, a source takedown's counts stored on one row only,
and file names and capture sessions stored decomposed (NFD) before uploads were normalised."""
from __future__ import annotations

import importlib
import io
import unicodedata
import zipfile

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.apps import apps
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from common import roles
from curation import services, snapshots
from curation.models import Image, ImportJob, Takedown
from curation.progress import progress_compute
from labeling import selectors as labeling_selectors
from labeling import services as labeling_services
from labeling.models import Annotation, Task
from tests import factories
from tests.factories import png_bytes, quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _job(spec, source, data: bytes, **fields) -> ImportJob:
    name = default_storage.save(f"imports/{spec.id}/batch.zip", ContentFile(data))
    return ImportJob.objects.create(spec=spec, source=source, archive=name, **fields)


def _take_down(image, curator, capture):
    with capture(execute=True):
        return services.image_takedown(image=image, kind="copyright", reason="Letter from the publisher",
                                       requested_by="Mirae Publishing Co.", actor=curator)


# ------------------------------------------------------- 1. import archives


def test_a_done_import_deletes_its_archive_and_keeps_its_report(spec, source, django_capture_on_commit_callbacks):
    job = _job(spec, source, _zip({"a.png": png_bytes(seed=1), "b.png": png_bytes(seed=2), "c.png": b"nope"}))
    name = job.archive
    with django_capture_on_commit_callbacks(execute=True):
        services.import_job_run(job=job)
    job.refresh_from_db()
    assert (job.status, job.imported, len(job.errors)) == (ImportJob.Status.DONE, 2, 1)
    assert not default_storage.exists(name) and job.archive == ""


def test_a_failed_import_deletes_its_archive(spec, source, django_capture_on_commit_callbacks):
    job = _job(spec, source, b"PK\x03\x04 truncated, not a zip")
    name = job.archive
    with django_capture_on_commit_callbacks(execute=True):
        services.import_job_run(job=job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED and job.errors[-1]["file"] == name
    assert not default_storage.exists(name) and job.archive == ""


def test_an_import_cut_by_the_time_limit_keeps_its_archive_to_go_on(spec, source, monkeypatch,
                                                                     django_capture_on_commit_callbacks):
    from curation.tasks import run_import_job

    job = _job(spec, source, _zip({"a.png": png_bytes(seed=1), "b.png": png_bytes(seed=2)}))
    real = services.ingest_batch

    def one_chunk_then_time_limit(**kw):
        kw["items"] = [next(iter(kw["items"]))]
        kw["on_progress"](real(**kw))
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "ingest_batch", one_chunk_then_time_limit)
    monkeypatch.setattr(run_import_job, "delay", lambda job_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        services.import_job_run(job=job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.QUEUED and job.imported == 1
    assert job.archive and default_storage.exists(job.archive)


def test_the_sweep_keeps_a_rescued_imports_archive_and_deletes_it_when_it_gives_up(
        spec, source, monkeypatch, django_capture_on_commit_callbacks):
    from curation.tasks import run_import_job

    monkeypatch.setattr(run_import_job, "delay", lambda job_id: None)
    long_ago = timezone.now() - timezone.timedelta(days=1)
    rescued = _job(spec, source, _zip({"a.png": png_bytes(seed=1)}), status=ImportJob.Status.RUNNING,
                   started_at=long_ago)
    given_up = _job(spec, source, _zip({"b.png": png_bytes(seed=2)}), status=ImportJob.Status.RUNNING,
                    started_at=long_ago, attempts=2)
    gone = given_up.archive
    with django_capture_on_commit_callbacks(execute=True):
        result = snapshots.builds_sweep(max_attempts=2)
    assert result.requeued_imports == [rescued.pk] and result.failed_imports == [given_up.pk]
    rescued.refresh_from_db()
    given_up.refresh_from_db()
    assert rescued.status == ImportJob.Status.QUEUED and default_storage.exists(rescued.archive)
    assert given_up.status == ImportJob.Status.FAILED and given_up.archive == "" and not default_storage.exists(gone)
    assert given_up.errors[-1]["file"] == gone  # the report still names the file


def test_a_superseded_run_neither_overwrites_the_job_nor_deletes_the_archive(spec, source, monkeypatch,
                                                                             django_capture_on_commit_callbacks):
    """A worker the sweep gave up on, finishing late while a rescued run holds the job, must not
    delete the archive under that run (nor write its own outcome over it)."""
    job = _job(spec, source, _zip({"a.png": png_bytes(seed=1)}))
    real = services.ingest_batch
    later = timezone.now() + timezone.timedelta(minutes=5)

    def rescued_meanwhile(**kw):
        report = real(**kw)
        ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, started_at=later, attempts=1)
        return report

    monkeypatch.setattr(services, "ingest_batch", rescued_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        services.import_job_run(job=job)
    job.refresh_from_db()
    assert (job.status, job.started_at) == (ImportJob.Status.RUNNING, later)
    assert job.archive and default_storage.exists(job.archive)


def test_a_takedown_deletes_the_archives_finished_jobs_of_the_spec_still_hold(
        curator, spec, source, django_capture_on_commit_callbacks):
    image = factories.make_image(spec=spec, source=source, data=png_bytes(seed=3))
    # Jobs finished before archives were deleted on finishing still hold theirs.
    done = _job(spec, source, _zip({"x.png": png_bytes(seed=3)}), status=ImportJob.Status.DONE,
                finished_at=timezone.now())
    failed = _job(spec, source, _zip({"y.png": png_bytes(seed=4)}), status=ImportJob.Status.FAILED,
                  finished_at=timezone.now())
    running = _job(spec, source, _zip({"z.png": png_bytes(seed=5)}), status=ImportJob.Status.RUNNING,
                   started_at=timezone.now())
    elsewhere = _job(factories.make_spec(), source, _zip({"w.png": png_bytes(seed=6)}),
                     status=ImportJob.Status.DONE, finished_at=timezone.now())
    names = {j.pk: j.archive for j in (done, failed, running, elsewhere)}
    _take_down(image, curator, django_capture_on_commit_callbacks)
    for job in (done, failed):
        job.refresh_from_db()
        assert job.archive == "" and not default_storage.exists(names[job.pk])
    running.refresh_from_db()
    assert running.archive == names[running.pk] and default_storage.exists(running.archive)  # deleted on finishing
    elsewhere.refresh_from_db()
    assert default_storage.exists(elsewhere.archive)


def test_no_finished_jobs_archive_survives_a_takedown_after_an_import(curator, spec, source,
                                                                      django_capture_on_commit_callbacks):
    job = _job(spec, source, _zip({"pupil.png": png_bytes(seed=9)}))
    with django_capture_on_commit_callbacks(execute=True):
        services.import_job_run(job=job)
    image = Image.objects.get(spec=spec)
    _take_down(image, curator, django_capture_on_commit_callbacks)
    assert not [n for n in default_storage.listdir(f"imports/{spec.id}")[1]]


# ------------------------------------------------------- 2. quota progress


def _accepted(spec, vendor, images: int = 3):
    factories.make_batch(spec, vendor, images=images)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    while (task := labeling_services.task_claim_next(annotator=annotator).task) is not None:
        annotation = labeling_services.annotation_create(task=task, annotator=annotator, submit=True,
                                                         regions=[quad(latex=rf"x^{{{task.image_id}}}")])
        labeling_services.review_create(annotation=annotation, reviewer=reviewer, decision="accept")
    return annotator


def test_progress_leaves_taken_down_images_out(curator, spec, vendor, django_capture_on_commit_callbacks):
    _accepted(spec, vendor)
    factories.make_snapshot(spec=spec, name="v1", created_by=curator, ratios={"train": 1, "test": 0})
    image = Image.objects.filter(spec=spec).order_by("id").first()

    def printed(view):
        row = next(c for c in view["by_category"] if c["category"] == "printed")
        return tuple(row[m] for m in ("collected", "labeled", "accepted"))

    assert printed(progress_compute(spec=spec)) == (3, 3, 3)
    _take_down(image, curator, django_capture_on_commit_callbacks)
    view = progress_compute(spec=spec)
    assert printed(view) == (2, 2, 2)
    (mine,) = view["by_vendor"]
    assert (mine["collected"], mine["labeled"], mine["accepted"]) == (2, 2, 2)
    splits = {s["split"]: s for s in view["by_split"] if s["category"] == "printed"}
    assert (splits["train"]["collected"], splits["train"]["accepted"]) == (2, 2)
    assert all(s[m] >= 0 for s in view["by_split"] for m in ("collected", "labeled", "accepted"))


# ------------------------------------------------------- 3. review queue


def test_submitted_work_of_a_taken_down_image_leaves_the_review_queue(curator, spec, vendor, annotator,
                                                                      django_capture_on_commit_callbacks):
    factories.make_batch(spec, vendor, images=2)
    submitted = []
    for _ in range(2):
        task = labeling_services.task_claim_next(annotator=annotator).task
        submitted.append(labeling_services.annotation_create(task=task, annotator=annotator, submit=True,
                                                             regions=[quad()]))
    gone, kept = submitted
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    _take_down(gone.task.image, curator, django_capture_on_commit_callbacks)

    assert list(labeling_selectors.annotations_reviewable_by(reviewer)) == [kept]
    api = client_for(reviewer)
    assert api.post("/api/v1/annotations/review-next/").json()["id"] == kept.pk
    assert [a["id"] for a in api.get("/api/v1/annotations/review-queue/").json()["results"]] == [kept.pk]
    page = Client()
    page.force_login(reviewer)
    assert page.get("/review/").context["waiting"] == 1
    assert page.get(f"/review/{gone.pk}/").status_code == 404
    # A decision sent on it anyway is refused, saying why; the work stays submitted.
    r = api.post("/api/v1/reviews/", {"annotation": gone.pk, "decision": "accept"}, format="json")
    assert r.status_code == 400 and "taken down" in str(r.json()["annotation"])
    gone.refresh_from_db()
    assert gone.status == Annotation.Status.SUBMITTED
    assert Task.objects.get(pk=gone.task_id).status == Task.Status.SUBMITTED  # pending in the cost report
    # Once the other is decided, nothing is left for review.
    labeling_services.review_create(annotation=kept, reviewer=reviewer, decision="accept")
    assert labeling_services.review_open_next(reviewer=reviewer) is None


# ------------------------------------------------------- 4. pre-labeling


def test_a_pending_prelabel_item_of_a_taken_down_image_is_skipped_not_failed(curator, spec, source,
                                                                             django_capture_on_commit_callbacks):
    from pipeline import services as pipeline_services
    from pipeline.models import PrelabelItem, PrelabelJob
    from pipeline.selectors import prelabel_job_progress

    images = [factories.make_image(spec=spec, source=source, data=png_bytes(160, 90, seed=i)) for i in range(3)]
    with django_capture_on_commit_callbacks(execute=False):  # queued, not run yet
        job = pipeline_services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=8)
    _take_down(images[1], curator, django_capture_on_commit_callbacks)
    pipeline_services.prelabel_chunk_run(job_id=job.pk, image_ids=[i.pk for i in images])
    job.refresh_from_db()
    assert job.status == PrelabelJob.Status.DONE
    progress = prelabel_job_progress(job)
    assert (progress["done"], progress["skipped"], progress["failed"]) == (2, 1, 0)
    item = PrelabelItem.objects.get(job=job, image=images[1])
    assert item.status == PrelabelItem.Status.SKIPPED and "taken down" in item.error
    # A job created afterwards leaves it out.
    with django_capture_on_commit_callbacks(execute=False):
        later = pipeline_services.prelabel_job_create(created_by=curator, spec=spec, force=True)
    assert later.total == 2 and not later.items.filter(image=images[1]).exists()


# ------------------------------------------------------- 5. source takedown counts


def test_a_source_takedown_stores_each_images_own_counts(curator, spec, vendor, source,
                                                         django_capture_on_commit_callbacks):
    factories.make_batch(spec, vendor, images=3, source=source)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    drafted = labeling_services.task_claim_next(annotator=annotator).task
    labeling_services.annotation_create(task=drafted, annotator=annotator, regions=[quad()])  # a draft
    with django_capture_on_commit_callbacks(execute=True):
        services.source_takedown(source=source, kind="copyright", reason="All of it", requested_by="Holder",
                                 actor=curator)
    rows = {t.image_ref: (t.tasks_removed, t.annotations_withdrawn) for t in Takedown.objects.all()}
    assert len(rows) == 3
    assert rows.pop(drafted.image_id) == (0, 1)
    assert set(rows.values()) == {(1, 0)}


# ------------------------------------------------------- 6. NFC data migration


def test_the_migration_normalises_names_and_sessions_stored_decomposed(spec, source):
    nfd = unicodedata.normalize("NFD", "수학 숙제 3.png")
    session = unicodedata.normalize("NFD", "2학년 1반")
    assert nfd != unicodedata.normalize("NFC", nfd)
    old = [factories.make_image(spec=spec, source=source, data=png_bytes(seed=i)) for i in range(3)]
    Image.objects.filter(pk=old[0].pk).update(original_filename=nfd, capture_session=session)
    Image.objects.filter(pk=old[1].pk).update(original_filename=nfd)
    untouched = Image.objects.values_list("original_filename", "capture_session").get(pk=old[2].pk)

    migration = importlib.import_module("curation.migrations.0011_nfc_image_names")
    migration.names_to_nfc(apps, None, batch_size=1)

    first, second, third = (Image.objects.get(pk=im.pk) for im in old)
    assert (first.original_filename, first.capture_session) == ("수학 숙제 3.png", "2학년 1반")
    assert second.original_filename == "수학 숙제 3.png"
    assert (third.original_filename, third.capture_session) == untouched
    migration.Migration.operations[0].reverse_code(apps, None)  # reversible as a no-op
