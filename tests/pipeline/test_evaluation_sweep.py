"""The beat sweep rescues evaluation runs whose worker died: queued again once with partial
samples removed, then failed; live runs and late original workers are left alone or stopped."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from pipeline import evaluation, tasks
from pipeline.models import EvaluationRun, EvaluationSample
from pipeline.services import model_version_builtin
from tests.pipeline.evaluation_helpers import StubReader, box, make_eval_snapshot, region

pytestmark = pytest.mark.django_db

BOX = box(10, 10, 90, 40)


def two_image_run(curator) -> EvaluationRun:
    snap = make_eval_snapshot([([region(BOX, "a+b")], ("printed",)), ([region(BOX, "x")], ("printed",))])
    return evaluation.evaluation_create(snapshot=snap, detector_version=model_version_builtin(kind="detector"),
                                        recognizer_version=model_version_builtin(kind="recognizer"),
                                        created_by=curator, batch_size=1)


def reader() -> StubReader:
    return StubReader(detections=[[BOX], [BOX]], readings=["a+b", "x"])


def died_after_one_batch(run: EvaluationRun, *, minutes_ago: int) -> EvaluationRun:
    """A run whose worker stored its first batch `minutes_ago` and then vanished."""
    done = evaluation.evaluation_run(run=run, reader=reader())
    assert done.status == "done" and EvaluationSample.objects.filter(run=run).count() == 2
    EvaluationSample.objects.filter(run=run).exclude(pk=EvaluationSample.objects.filter(run=run).first().pk).delete()
    then = timezone.now() - timedelta(minutes=minutes_ago)
    EvaluationRun.objects.filter(pk=run.pk).update(status="running", processed=1, heartbeat_at=then, metrics=None,
                                                   finished_at=None)
    run.refresh_from_db()
    return run


def test_a_run_whose_worker_stopped_beating_is_queued_again_and_then_finishes(
        curator, monkeypatch, django_capture_on_commit_callbacks):
    run = died_after_one_batch(two_image_run(curator), minutes_ago=45)
    sent = []
    monkeypatch.setattr(tasks.run_evaluation, "delay", lambda run_id: sent.append(run_id))
    with django_capture_on_commit_callbacks(execute=True):
        out = evaluation.evaluations_sweep()
    assert out == {"requeued": [run.pk], "failed": [], "resent": []} and sent == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.processed, run.started_at) == ("queued", 0, None)
    with django_capture_on_commit_callbacks(execute=True):  # just queued again: not sent twice
        assert evaluation.evaluations_sweep() == {"requeued": [], "failed": [], "resent": []}
    assert not EvaluationSample.objects.filter(run=run).exists()  # no partial samples left over

    run = evaluation.evaluation_run(run=run, reader=reader())
    assert (run.status, run.attempts, run.processed) == ("done", 2, 2)
    assert run.metrics["overall"]["exact_match"] == 1.0
    assert EvaluationSample.objects.filter(run=run).count() == 2


def test_a_run_that_used_its_attempts_is_failed_with_the_reason(curator):
    run = died_after_one_batch(two_image_run(curator), minutes_ago=45)
    EvaluationRun.objects.filter(pk=run.pk).update(attempts=2)
    assert evaluation.evaluations_sweep() == {"requeued": [], "failed": [run.pk], "resent": []}
    run.refresh_from_db()
    assert run.status == "failed" and "2 attempts" in run.error


def test_a_run_that_beat_recently_is_left_alone(curator):
    run = died_after_one_batch(two_image_run(curator), minutes_ago=5)
    assert evaluation.evaluations_sweep() == {"requeued": [], "failed": [], "resent": []}
    run.refresh_from_db()
    assert run.status == "running" and EvaluationSample.objects.filter(run=run).count() == 1


def test_the_original_worker_stops_writing_once_its_run_was_claimed_again(curator):
    run = two_image_run(curator)
    original = evaluation.evaluation_run(run=run, reader=reader())  # claim 1 (ran to the end here)
    EvaluationRun.objects.filter(pk=run.pk).update(status="running", attempts=2)  # claimed again since
    assert not evaluation._still_running(original)
    assert evaluation._mine(original).update(processed=99) == 0


def test_a_queued_run_nobody_claimed_is_sent_again_and_runs_once(curator, monkeypatch,
                                                               django_capture_on_commit_callbacks):
    """Its message was lost (a broker restart): before, the sweep only looked at running runs and
    the run stayed queued for ever."""
    run = two_image_run(curator)
    EvaluationRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=45))
    sent = []
    monkeypatch.setattr(tasks.run_evaluation, "delay", lambda run_id: sent.append(run_id))
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluation.evaluations_sweep() == {"requeued": [], "failed": [], "resent": [run.pk]}
        assert evaluation.evaluations_sweep()["resent"] == []  # waits another period before trying again
    assert sent == [run.pk]
    run.refresh_from_db()
    done = evaluation.evaluation_run(run=run, reader=reader())
    assert (done.status, done.attempts) == ("done", 1)
    assert evaluation.evaluation_run(run=run, reader=reader()).attempts == 1  # a second delivery does nothing


def test_a_recently_queued_run_is_not_sent_again(curator):
    two_image_run(curator)
    assert evaluation.evaluations_sweep() == {"requeued": [], "failed": [], "resent": []}


def test_celery_beat_runs_the_evaluation_sweep():
    from django.conf import settings

    from config.celery import app

    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["evaluations-sweep"]
    assert entry["task"] in app.tasks and entry["schedule"] <= 600
    assert app.tasks[entry["task"]]() == {"requeued": [], "failed": [], "resent": []}
