"""Audit of the pre-labeling job and offline evaluation lifecycles, as curators and model teams use them.

The models are replaced by a fast stub reader (the real ones are covered by test_prelabel_job.py), so
these tests exercise the job machinery: skipping, forcing, cancelling, failures, progress and the pages.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from pipeline import runtime, services
from pipeline.models import ModelVersion, Prediction, PrelabelItem, PrelabelJob
from pipeline.selectors import prelabel_job_progress
from tests import factories


class StubReader:
    """Reads every image as one formula with a known confidence; counts the images it read."""

    reading = {"stub": True}

    def __init__(self, confidences=None, on_read=None):
        self.confidences = list(confidences or [])
        self.on_read = on_read
        self.read_images = 0

    def read(self, images, *, with_masks=False):
        if self.on_read:
            self.on_read()
        self.read_images += len(images)
        out = []
        for _ in images:
            conf = self.confidences.pop(0) if self.confidences else 0.9
            out.append({"regions": [{"points": [[10, 10], [90, 10], [90, 40], [10, 40]], "score": 0.99,
                                     "latex": "x^{2}", "latex_confidence": conf}], "seconds": 0.01})
        return out


@pytest.fixture
def stub(monkeypatch):
    reader = StubReader()
    monkeypatch.setattr(runtime, "reader_for", lambda *versions: reader)
    return reader


@pytest.fixture
def images(spec, source):
    return [factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100)) for _ in range(4)]


def _corrupt(image) -> None:
    (Path(settings.MEDIA_ROOT) / image.file).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")


def _run(capture, **kw) -> PrelabelJob:
    with capture(execute=True):
        job = services.prelabel_job_create(**kw)
    job.refresh_from_db()
    return job


def _client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c



# ---------------------------------------------------------------- pre-labeling jobs

def test_retry_failed_refuses_a_cancelled_job_and_leaves_it_cancelled(curator, spec, images, stub,
                                                                      django_capture_on_commit_callbacks):
    # Before: the job went back to "running" with the cancelled items still pending and never queued (a job
    # stuck running, whose ETA counted down), and the sweep then re-queued every image the curator cancelled.
    from rest_framework.test import APIClient

    _corrupt(images[0])
    with django_capture_on_commit_callbacks(execute=False) as queued:
        job = services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=1)
    services.prelabel_chunk_run(job_id=job.id, image_ids=[images[0].id])  # its image fails
    services.prelabel_job_cancel(job=job)
    for callback in queued:
        callback()
    api = APIClient()
    api.force_authenticate(curator)
    with django_capture_on_commit_callbacks(execute=True) as requeued:
        resp = api.post(f"/api/v1/prelabel-jobs/{job.id}/retry-failed/")
    assert resp.status_code == 400 and "status" in resp.json()
    assert not requeued
    job.refresh_from_db()
    assert job.status == PrelabelJob.Status.CANCELLED
    assert prelabel_job_progress(job) == {"total": 4, "done": 0, "skipped": 0, "failed": 1, "pending": 3,
                                          "finished": 1, "eta_seconds": None}
    assert services.prelabel_jobs_sweep(stale_after_seconds=0) == []
    assert stub.read_images == 0


def test_cancel_during_a_batch_stores_nothing_more_and_counts_exactly(curator, spec, images, stub,
                                                                       django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        job = services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=2)
    services.prelabel_chunk_run(job_id=job.id, image_ids=[images[0].id, images[1].id])
    stub.on_read = lambda: services.prelabel_job_cancel(job=job)  # the curator cancels while the model reads
    for callback in queued:
        callback()
    job.refresh_from_db()
    assert job.status == PrelabelJob.Status.CANCELLED
    assert prelabel_job_progress(job) == {"total": 4, "done": 2, "skipped": 0, "failed": 0, "pending": 2,
                                          "finished": 2, "eta_seconds": None}
    assert Prediction.objects.count() == 2
    assert stub.read_images == 4  # the batch in flight was read; no chunk after it ran the model
    row = _client(curator).get("/pipeline/jobs/").content.decode()
    assert 'class="status">cancelled<' in row and "2/4" in row and "Cancel</button>" not in row


def test_a_model_error_on_one_image_fails_only_that_image_and_the_job_finishes(curator, spec, images, stub,
                                                                              django_capture_on_commit_callbacks,
                                                                              monkeypatch):
    # Before: the exception escaped the chunk, its images stayed pending with no error anywhere, the job
    # stayed "running" for ever and the sweep re-queued the same failing chunk every 15 minutes.
    import numpy as np

    poison = images[2]
    (Path(settings.MEDIA_ROOT) / poison.file).write_bytes(factories.png_bytes(31, 7))  # decodes fine
    plain_read = StubReader.read

    def read(self, batch, *, with_masks=False):
        if any(isinstance(im, np.ndarray) and im.shape[:2] == (7, 31) for im in batch):
            raise RuntimeError("shape mismatch in the decoder")
        return plain_read(self, batch, with_masks=with_masks)

    monkeypatch.setattr(StubReader, "read", read)
    job = _run(django_capture_on_commit_callbacks, created_by=curator, spec=spec, chunk_size=4)
    assert job.status == PrelabelJob.Status.DONE
    assert prelabel_job_progress(job) == {"total": 4, "done": 3, "skipped": 0, "failed": 1, "pending": 0,
                                          "finished": 4, "eta_seconds": None}
    failed = PrelabelItem.objects.get(job=job, status=PrelabelItem.Status.FAILED)
    assert failed.image_id == poison.id and failed.error == "RuntimeError: shape mismatch in the decoder"
    assert sorted(Prediction.objects.values_list("image_id", flat=True)) == sorted(
        i.id for i in images if i != poison)


def test_a_corrupt_image_shows_its_error_on_the_jobs_page_and_in_the_api(curator, spec, images, stub,
                                                                         django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    _corrupt(images[1])
    job = _run(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    assert job.status == PrelabelJob.Status.DONE
    api = APIClient()
    api.force_authenticate(curator)
    failures = api.get(f"/api/v1/prelabel-jobs/{job.id}/failures/").json()["results"]
    assert [f["image"] for f in failures] == [images[1].id] and "cannot decode image" in failures[0]["error"]
    page = _client(curator).get("/pipeline/jobs/").content.decode()
    assert f'data-failures-of="{job.id}"' in page
    assert "cannot decode image" in page and f"/images/{images[1].id}/" in page


def test_a_deleted_image_leaves_the_progress_of_a_finished_job_complete(curator, spec, images, stub,
                                                                        django_capture_on_commit_callbacks):
    # Before: the job said done with "3/4" and one image pending for ever (its item went with the image).
    from curation.services import image_delete
    from pipeline.selectors import prelabel_jobs_visible_to

    with django_capture_on_commit_callbacks(execute=False) as queued:
        job = services.prelabel_job_create(created_by=curator, spec=spec)
    image_delete(image=images[3])
    for callback in queued:
        callback()
    job.refresh_from_db()
    assert job.status == PrelabelJob.Status.DONE
    expected = {"total": 3, "done": 3, "skipped": 0, "failed": 0, "pending": 0, "finished": 3, "eta_seconds": None}
    assert prelabel_job_progress(job) == expected
    assert prelabel_job_progress(prelabel_jobs_visible_to(curator).get(pk=job.pk)) == expected
    assert "3/3" in _client(curator).get("/pipeline/jobs/").content.decode()


def _labeling_world(spec, source, capture, images=3):
    from common import roles

    vendor = factories.make_vendor()
    with capture(execute=True):
        batch = factories.make_batch(spec=spec, vendor=vendor, images=images, source=source)
    return batch, factories.make_user(roles.ANNOTATOR, vendor=vendor), factories.make_user(roles.REVIEWER, vendor=vendor)


def test_forced_rerun_leaves_submitted_and_accepted_tasks_where_they_are(curator, spec, source, stub,
                                                                        django_capture_on_commit_callbacks):
    from labeling.models import Prediction as LabelPrediction
    from labeling.models import Task
    from labeling.services import annotation_create, review_create, task_claim_next

    batch, annotator, reviewer = _labeling_world(spec, source, django_capture_on_commit_callbacks)
    _run(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    accepted = task_claim_next(annotator=annotator).task
    review_create(annotation=annotation_create(task=accepted, annotator=annotator, submit=True,
                                               regions=[factories.quad(latex="y")],
                                               started_from=LabelPrediction.objects.get(image=accepted.image)),
                  reviewer=reviewer, decision="accept")
    submitted = task_claim_next(annotator=annotator).task
    annotation_create(task=submitted, annotator=annotator, submit=True, regions=[factories.quad(latex="z")])
    stub.confidences = [0.05] * 3
    forced = _run(django_capture_on_commit_callbacks, created_by=curator, spec=spec, force=True)
    assert prelabel_job_progress(forced)["done"] == 3
    statuses = dict(Task.objects.filter(batch=batch).values_list("pk", "status"))
    assert statuses[accepted.pk] == "accepted" and statuses[submitted.pk] == "submitted"
    assert sorted(statuses.values()) == ["accepted", "prelabeled", "submitted"]
    # only the open task takes the new, lower confidence for the queue
    assert dict(Task.objects.filter(batch=batch).values_list("status", "model_confidence")) == {
        "accepted": 0.9, "submitted": 0.9, "prelabeled": 0.05}


def test_forced_rerun_keeps_the_prediction_an_annotation_started_from(curator, spec, source, stub,
                                                                     django_capture_on_commit_callbacks):
    from labeling.models import Prediction as LabelPrediction
    from labeling.services import annotation_create, review_create, task_claim_next

    _batch, annotator, reviewer = _labeling_world(spec, source, django_capture_on_commit_callbacks, images=1)
    _run(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    task = task_claim_next(annotator=annotator).task
    start = LabelPrediction.objects.get(image=task.image)
    review_create(annotation=annotation_create(task=task, annotator=annotator, submit=True, started_from=start,
                                               regions=[factories.quad(latex="y")]),
                  reviewer=reviewer, decision="accept")
    seen = start.regions
    stub.confidences = [0.05]
    _run(django_capture_on_commit_callbacks, created_by=curator, spec=spec, force=True)
    start.refresh_from_db()
    # what the annotator saw is what QA's "pre-label changes" compares the accepted answer with
    assert start.regions == seen


def test_low_confidence_images_come_first_in_the_work_queue(curator, spec, source, stub,
                                                           django_capture_on_commit_callbacks):
    from labeling.services import task_claim_next

    batch, annotator, _ = _labeling_world(spec, source, django_capture_on_commit_callbacks, images=4)
    stub.confidences = [0.9, 0.2, 0.5, 0.7]  # in image order
    _run(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    ids = sorted(batch.tasks.values_list("image_id", flat=True))
    first = task_claim_next(annotator=annotator).task
    assert first.image_id == ids[1] and first.model_confidence == 0.2
    assert list(Prediction.objects.order_by("min_confidence").values_list("image_id", flat=True)) == [
        ids[1], ids[2], ids[3], ids[0]]


def test_predictions_record_the_jobs_versions_when_another_is_activated_mid_job(curator, spec, images, stub,
                                                                               django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    # a stored file, as activation checks (the stub never reads it)
    weights = default_storage.save("models/test-other.pt", ContentFile(b"weights"))
    other = ModelVersion.objects.create(kind="recognizer", name="other", version="2", source="upload",
                                        weights=weights)
    stub.on_read = lambda: services.model_version_activate(version=other)
    job = _run(django_capture_on_commit_callbacks, created_by=curator, spec=spec, chunk_size=2)
    assert job.recognizer_version != other and job.status == PrelabelJob.Status.DONE
    assert set(Prediction.objects.values_list("recognizer_version", flat=True)) == {job.recognizer_version_id}
    assert ModelVersion.objects.get(pk=other.pk).is_active


def test_two_jobs_on_overlapping_images_predict_each_image_once(curator, spec, images, stub,
                                                               django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as first:
        whole = services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=2)
    with django_capture_on_commit_callbacks(execute=False) as second:
        part = services.prelabel_job_create(created_by=curator, images=images[1:3], chunk_size=1)
    services.prelabel_chunk_run(job_id=part.id, image_ids=[images[1].id])
    for callback in first + second:
        callback()
    whole.refresh_from_db()
    part.refresh_from_db()
    assert (whole.status, part.status) == ("done", "done")
    assert prelabel_job_progress(whole) | {"eta_seconds": None} == {
        "total": 4, "done": 3, "skipped": 1, "failed": 0, "pending": 0, "finished": 4, "eta_seconds": None}
    assert prelabel_job_progress(part)["done"] == 1 and prelabel_job_progress(part)["skipped"] == 1
    assert Prediction.objects.count() == 4 and stub.read_images == 4


def test_bad_job_input_is_a_400_naming_the_field_and_stores_nothing(curator_api, spec, images):
    empty = factories.make_spec()
    for body, field in (({"spec": 10**30}, "spec"), ({"spec": "x"}, "spec"), ({"image_ids": [10**30]}, "image_ids"),
                        ({"spec": spec.id, "chunk_size": 0}, "chunk_size"), ({"image_ids": []}, "image_ids"),
                        ({}, "spec"), ({"spec": spec.id, "force": "maybe"}, "force"), ({"spec": -1}, "spec"),
                        ({"image_ids": "1"}, "image_ids"), ({"spec": empty.id}, "images")):
        resp = curator_api.post("/api/v1/prelabel-jobs/", body, format="json")
        assert resp.status_code == 400 and field in resp.json(), (body, resp.content)
    assert not PrelabelJob.objects.exists() and not PrelabelItem.objects.exists()
