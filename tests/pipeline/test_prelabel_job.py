"""Pre-labeling jobs in eager mode: predictions stored, idempotent re-runs, corrupt images isolated, cancel."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from pipeline import services
from pipeline.models import ModelVersion, Prediction, PrelabelItem, PrelabelJob
from pipeline.selectors import prelabel_job_progress
from tests import factories


def _corrupt(image) -> None:
    (Path(settings.MEDIA_ROOT) / image.file).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")


@pytest.fixture
def images(spec, source):
    return [factories.make_image(spec=spec, source=source, data=factories.png_bytes(160, 90)) for _ in range(4)]


def _run_job(capture, **kw) -> PrelabelJob:
    with capture(execute=True):
        job = services.prelabel_job_create(**kw)
    job.refresh_from_db()
    return job


def test_job_predicts_every_image_with_four_point_regions(curator, spec, images, django_capture_on_commit_callbacks):
    job = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec, chunk_size=3)
    assert job.status == PrelabelJob.Status.DONE
    progress = prelabel_job_progress(job)
    assert progress == {"total": 4, "done": 4, "skipped": 0, "failed": 0, "pending": 0, "finished": 4,
                        "eta_seconds": None}
    preds = Prediction.objects.filter(job=job)
    assert sorted(p.image_id for p in preds) == sorted(i.id for i in images)
    for p in preds:
        assert p.detector_version.kind == "detector" and p.recognizer_version.kind == "recognizer"
        for r in p.regions:
            assert len(r["points"]) == 4 and "latex" in r and "mask_rle" in r
    assert ModelVersion.objects.filter(is_active=True).count() == 2


def test_rerun_skips_done_images_and_never_duplicates(curator, spec, images, django_capture_on_commit_callbacks):
    _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    again = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    assert prelabel_job_progress(again)["skipped"] == 4
    assert Prediction.objects.count() == 4
    forced = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec, force=True)
    assert prelabel_job_progress(forced)["done"] == 4
    assert Prediction.objects.count() == 4  # replaced, not duplicated
    assert set(Prediction.objects.values_list("job_id", flat=True)) == {forced.id}


def test_redelivered_chunk_does_not_redo_finished_items(curator, spec, images, django_capture_on_commit_callbacks):
    job = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    before = list(Prediction.objects.order_by("id").values_list("id", "created_at"))
    job.status = PrelabelJob.Status.RUNNING
    job.save()
    services.prelabel_chunk_run(job_id=job.id, image_ids=[i.id for i in images])
    assert list(Prediction.objects.order_by("id").values_list("id", "created_at")) == before


def test_corrupt_image_fails_only_itself_with_its_error(curator, spec, images, django_capture_on_commit_callbacks):
    _corrupt(images[1])
    job = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec, chunk_size=4)
    assert job.status == PrelabelJob.Status.DONE
    failed = PrelabelItem.objects.get(job=job, status=PrelabelItem.Status.FAILED)
    assert failed.image_id == images[1].id and "cannot decode image" in failed.error
    assert PrelabelItem.objects.filter(job=job, status=PrelabelItem.Status.DONE).count() == 3


def test_retry_failed_requeues_only_failed_items(curator, spec, images, django_capture_on_commit_callbacks):
    _corrupt(images[0])
    job = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    (Path(settings.MEDIA_ROOT) / images[0].file).write_bytes(factories.png_bytes(160, 90))  # fixed on disk
    with django_capture_on_commit_callbacks(execute=True):
        services.prelabel_job_retry_failed(job=job)
    job.refresh_from_db()
    assert prelabel_job_progress(job)["done"] == 4 and job.status == PrelabelJob.Status.DONE


def test_cancelled_job_processes_nothing_more(curator, spec, images, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=2)
    services.prelabel_job_cancel(job=job)
    for cb in callbacks:  # the queued chunks arrive after the cancel
        cb()
    job.refresh_from_db()
    assert job.status == PrelabelJob.Status.CANCELLED
    assert Prediction.objects.count() == 0
    assert prelabel_job_progress(job)["pending"] == 4
    with pytest.raises(ValidationError):
        services.prelabel_job_cancel(job=job)


def test_job_needs_images(curator, spec):
    with pytest.raises(ValidationError) as exc:
        services.prelabel_job_create(created_by=curator, spec=spec)
    assert "images" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        services.prelabel_job_create(created_by=curator)
    assert "spec" in exc.value.message_dict


def test_prelabeled_hook_runs_after_commit(curator, spec, images, django_capture_on_commit_callbacks, monkeypatch):
    seen = []
    monkeypatch.setattr(services, "PRELABELED_HOOKS", [lambda image_id, pred: seen.append((image_id, pred.id))])
    _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    assert sorted(i for i, _ in seen) == sorted(i.id for i in images)


def test_resume_requeues_only_pending_items(curator, spec, images, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # the worker "died": chunks never ran
        job = services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=2)
    services.prelabel_chunk_run(job_id=job.id, image_ids=[images[0].id])  # one image got done before
    with django_capture_on_commit_callbacks(execute=True):
        assert services.prelabel_job_resume(job=job) == 3
    job.refresh_from_db()
    assert job.status == PrelabelJob.Status.DONE and Prediction.objects.count() == 4


def test_sweep_resumes_stalled_jobs_only(curator, spec, images, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    with django_capture_on_commit_callbacks(execute=False):
        stalled = services.prelabel_job_create(created_by=curator, spec=spec)
        fresh = services.prelabel_job_create(created_by=curator, images=images[:1])
    PrelabelJob.objects.filter(pk=stalled.pk).update(started_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert services.prelabel_jobs_sweep(stale_after_seconds=600) == [stalled.id]
    assert len(queued) == 1 and fresh.id


def test_external_http_model_prelabels_through_its_endpoint(curator, spec, images, django_capture_on_commit_callbacks,
                                                          monkeypatch, settings):
    from pipeline import runtime

    settings.PUBLIC_BASE_URL = "http://mathset.example"

    calls = []

    class FakeResponse:
        status_code = 200

        def __init__(self, n):
            self.n = n

        def json(self):
            return {"results": [{"regions": [{"points": [[0, 0], [9, 0], [9, 5], [0, 5]], "score": 0.9,
                                              "latex": "x", "latex_confidence": 0.4}]} for _ in range(self.n)]}

    import ipaddress

    from pipeline import endpoints

    # The pinned call to the checked address (redirects refused: tests/pipeline/test_http_model.py).
    def fake_post(url, *, json, timeout):
        calls.append((url, json["images"]))
        return FakeResponse(len(json["images"]))

    monkeypatch.setattr(endpoints, "post", fake_post)
    # ml.example resolves nowhere; the check before each call (pipeline/endpoints.py) must find an address
    monkeypatch.setattr(endpoints, "resolve", lambda host, port: [ipaddress.ip_address("203.0.113.9")])
    runtime.clear_cache()
    services.model_version_register_http(name="ext", version="1", endpoint_url="http://ml.example/predict",
                                         activate=True)
    job = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    assert calls and calls[0][0] == "http://ml.example/predict" and len(calls[0][1]) == 4
    # absolute signed URLs the model can fetch without a login (tests/pipeline/test_http_model.py fetches them)
    assert all(url.startswith("http://mathset.example/signed-files/") for url in calls[0][1])
    assert prelabel_job_progress(job)["done"] == 4
    pred = Prediction.objects.filter(job=job).first()
    assert pred.recognizer_version is None and pred.min_confidence == 0.4
    assert pred.regions[0]["latex"] == "x"
    assert pred.reading == {}  # an external model's settings are its own


def test_prediction_records_how_the_worker_read_it(curator, spec, images, django_capture_on_commit_callbacks,
                                                   monkeypatch):
    from pipeline.runtime import clear_cache

    clear_cache()
    plain = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    reading = Prediction.objects.filter(job=plain).first().reading
    assert reading["beam_width"] == 1 and reading["views"] == [] and reading["refine_corners"] is True
    assert reading["encoder"] in ("float32", "bfloat16") and reading["orient"] is True
    assert reading["orienter"] is True  # the committed detector folder keeps an orienter

    monkeypatch.setenv("MATHSET_RECOGNIZER_VIEWS", "wide,trim")
    clear_cache()  # a worker reads the variable when it loads its reader
    try:
        viewed = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec, force=True)
    finally:
        monkeypatch.delenv("MATHSET_RECOGNIZER_VIEWS")
        clear_cache()
    assert prelabel_job_progress(viewed)["done"] == 4
    assert all(p.reading["views"] == ["wide", "trim"] for p in Prediction.objects.filter(job=viewed))
    assert Prediction.objects.count() == 4  # the same versions: replaced, with how they were read now


def test_job_runs_an_uploaded_detector_version(curator, spec, images, django_capture_on_commit_callbacks):
    import io

    import torch

    from pipeline.ml.detector import DetectorConfig, TinyUNet
    from pipeline.runtime import clear_cache

    buf = io.BytesIO()
    torch.save(TinyUNet(DetectorConfig()).state_dict(), buf)
    uploaded = services.model_version_upload(kind="detector", name="team", version="7", file_name="w.pt",
                                             content=buf.getvalue(), fmt="state_dict",
                                             config=DetectorConfig().to_dict(), activate=True)
    clear_cache()
    job = _run_job(django_capture_on_commit_callbacks, created_by=curator, spec=spec)
    assert job.detector_version == uploaded
    assert prelabel_job_progress(job)["done"] == 4
    assert set(Prediction.objects.filter(job=job).values_list("detector_version", flat=True)) == {uploaded.id}
