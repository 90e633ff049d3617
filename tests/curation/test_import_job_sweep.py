"""The beat sweep rescues zip imports as it does exports and snapshots: a job whose worker died
(still running long after any task could) is queued again and goes on after the files already
recorded; after the allowed rescues it fails keeping what was imported; a queued job whose
message was lost has it sent again. Before, both stayed as they were for ever."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from curation import snapshots
from curation.models import Image, ImportJob
from curation.tasks import run_import_job
from tests.factories import png_bytes
from tests.test_audit_ingest_jobs import _job

pytestmark = pytest.mark.django_db

LONG_AGO = timezone.now() - timedelta(days=1)


@pytest.fixture
def sent(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(run_import_job, "delay", lambda job_id: calls.append(job_id))
    return calls


def test_a_dead_workers_import_is_queued_again_and_goes_on(spec, source, sent, django_capture_on_commit_callbacks):
    members = {f"p{i}.png": png_bytes(seed=i) for i in range(4)}
    job = _job(spec, source, members)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, started_at=LONG_AGO, imported=0)

    with django_capture_on_commit_callbacks(execute=True):
        result = snapshots.builds_sweep()
    assert result.requeued_imports == [job.pk] and sent == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.attempts, job.started_at) == (ImportJob.Status.QUEUED, 1, None)

    # the message it was sent runs the job to the end
    from curation import services

    services.import_job_run(job=job)
    job.refresh_from_db()
    assert (job.status, job.imported) == (ImportJob.Status.DONE, 4) and Image.objects.count() == 4


def test_a_running_import_that_started_recently_is_left_alone(spec, source, sent):
    job = _job(spec, source, {"a.png": png_bytes()})
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, started_at=timezone.now())
    assert snapshots.builds_sweep().requeued_imports == [] and sent == []


def test_after_the_allowed_rescues_the_import_fails_keeping_its_counts(spec, source, sent):
    job = _job(spec, source, {"a.png": png_bytes()})
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, started_at=LONG_AGO, attempts=2,
                                               imported=1)
    result = snapshots.builds_sweep(max_attempts=2)
    job.refresh_from_db()
    assert result.failed_imports == [job.pk] and sent == []
    assert (job.status, job.imported) == (ImportJob.Status.FAILED, 1) and job.finished_at is not None
    assert "stopped without finishing (2 rescues)" in job.errors[-1]["error"]


def test_a_queued_import_whose_message_was_lost_is_sent_again(spec, source, sent):
    job = _job(spec, source, {"a.png": png_bytes()})
    ImportJob.objects.filter(pk=job.pk).update(created_at=LONG_AGO)
    fresh = _job(spec, source, {"b.png": png_bytes(seed=1)})
    assert snapshots.builds_sweep().resent_imports == [job.pk] and sent == [job.pk]
    assert fresh.pk not in sent
