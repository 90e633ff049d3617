"""The sweep (Celery beat) rescues exports and snapshots whose worker died, leaving no orphan file."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from common import roles
from config.celery import app
from curation import snapshots
from curation.models import Export, Snapshot
from tests import factories
from tests.conftest import stored_files
from tests.curation.test_snapshots import accepted_spec

pytestmark = pytest.mark.django_db

LONG_AGO = timedelta(hours=1)  # beyond twice Celery's hard time limit


@pytest.fixture
def ready_snapshot(curator):
    return factories.make_snapshot(spec=accepted_spec(images=2), name="sweep", created_by=curator)


def dead_export(snapshot, curator, *, attempts: int = 1) -> Export:
    """An export whose worker died mid-build: running since long ago, a partial zip on disk and
    a zip saved to storage that the dead run never recorded."""
    job = snapshots.export_create(snapshot=snapshot, format="jsonl", created_by=curator)
    Export.objects.filter(pk=job.pk).update(status=Export.Status.RUNNING, attempts=attempts,
                                            started_at=timezone.now() - LONG_AGO)
    (snapshots._partial_dir() / f"export-{job.pk}-{attempts}-x1y2.zip").write_bytes(b"PK half a zip")
    default_storage.save(f"exports/{snapshot.pk}/{job.pk}-0123456789ab-jsonl.zip", ContentFile(b"PK unrecorded"))
    job.refresh_from_db()
    return job


def export_files() -> list[str]:
    return [n for n in stored_files() if n.startswith(("exports/", "exports-partial/"))]


def test_a_dead_export_is_queued_again_once_and_then_built_leaving_only_its_zip(
        curator, ready_snapshot, django_capture_on_commit_callbacks):
    job = dead_export(ready_snapshot, curator)
    assert len(export_files()) == 2
    with django_capture_on_commit_callbacks(execute=True):
        result = snapshots.builds_sweep()
    assert result.requeued_exports == [job.pk] and result.failed_exports == []
    job.refresh_from_db()
    assert job.status == Export.Status.DONE and job.attempts == 2, job.error
    assert export_files() == [job.file]


def test_an_export_that_died_on_its_last_attempt_is_failed_and_its_files_removed(curator, ready_snapshot):
    job = dead_export(ready_snapshot, curator, attempts=2)
    result = snapshots.builds_sweep()
    assert result.failed_exports == [job.pk] and result.requeued_exports == []
    job.refresh_from_db()
    assert job.status == Export.Status.FAILED and "2 attempts" in job.error and job.finished_at
    assert export_files() == []


def test_a_running_export_within_the_time_limit_is_left_alone(curator, ready_snapshot):
    job = snapshots.export_create(snapshot=ready_snapshot, format="coco", created_by=curator)
    Export.objects.filter(pk=job.pk).update(status=Export.Status.RUNNING, attempts=1,
                                            started_at=timezone.now() - timedelta(seconds=60))
    result = snapshots.builds_sweep()
    assert result.requeued_exports == result.failed_exports == []
    job.refresh_from_db()
    assert job.status == Export.Status.RUNNING


def test_sweeping_twice_changes_nothing_more(curator, ready_snapshot):
    job = dead_export(ready_snapshot, curator, attempts=2)
    first = snapshots.builds_sweep()
    job.refresh_from_db()
    state = (job.status, job.error, job.finished_at, job.attempts)
    second = snapshots.builds_sweep()
    job.refresh_from_db()
    assert first.failed_exports == [job.pk]
    assert second == snapshots.SweepResult([], [], [], [], [], [])
    assert (job.status, job.error, job.finished_at, job.attempts) == state


def test_a_dead_snapshot_build_is_queued_again_then_built(curator, django_capture_on_commit_callbacks):
    spec = accepted_spec(images=2)
    snap = snapshots.snapshot_create(spec=spec, name="dead", created_by=curator)
    Snapshot.objects.filter(pk=snap.pk).update(status=Snapshot.Status.BUILDING, attempts=1,
                                               started_at=timezone.now() - LONG_AGO)
    with django_capture_on_commit_callbacks(execute=True):
        result = snapshots.builds_sweep()
    assert result.requeued_snapshots == [snap.pk]
    snap.refresh_from_db()
    assert snap.status == Snapshot.Status.READY and snap.attempts == 2 and snap.item_count == 2


def test_a_snapshot_build_dead_twice_is_failed(curator):
    spec = accepted_spec(images=1)
    snap = snapshots.snapshot_create(spec=spec, name="twice", created_by=curator)
    Snapshot.objects.filter(pk=snap.pk).update(status=Snapshot.Status.BUILDING, attempts=2,
                                               started_at=timezone.now() - LONG_AGO)
    assert snapshots.builds_sweep().failed_snapshots == [snap.pk]
    snap.refresh_from_db()
    assert snap.status == Snapshot.Status.FAILED and "stopped" in snap.error and not snap.items.exists()


def test_jobs_whose_message_was_lost_are_sent_again(curator, ready_snapshot):
    spec = accepted_spec(images=1)
    snap = snapshots.snapshot_create(spec=spec, name="lost", created_by=curator)
    job = snapshots.export_create(snapshot=ready_snapshot, format="jsonl", created_by=curator)
    Snapshot.objects.filter(pk=snap.pk).update(created_at=timezone.now() - LONG_AGO)
    Export.objects.filter(pk=job.pk).update(created_at=timezone.now() - LONG_AGO)
    result = snapshots.builds_sweep()  # eager Celery: the re-sent tasks run at once
    assert (result.resent_snapshots, result.resent_exports) == ([snap.pk], [job.pk])
    snap.refresh_from_db()
    job.refresh_from_db()
    assert snap.status == Snapshot.Status.READY and job.status == Export.Status.DONE


def test_celery_beat_runs_the_sweep_task():
    app.loader.import_default_modules()  # as a worker does at start: registers the apps' tasks
    entry = settings.CELERY_BEAT_SCHEDULE["builds-sweep"]
    assert entry["task"] in app.tasks and entry["schedule"] <= 600
    assert app.tasks[entry["task"]]() == {"requeued_exports": [], "failed_exports": [], "resent_exports": [],
                                         "requeued_snapshots": [], "failed_snapshots": [], "resent_snapshots": [],
                                         "requeued_imports": [], "failed_imports": [], "resent_imports": []}


def test_an_export_left_running_before_start_times_were_recorded_is_swept_too(curator, ready_snapshot):
    job = snapshots.export_create(snapshot=ready_snapshot, format="coco", created_by=curator)
    Export.objects.filter(pk=job.pk).update(status=Export.Status.RUNNING, attempts=0, started_at=None,
                                            created_at=timezone.now() - LONG_AGO)
    assert snapshots.builds_sweep().requeued_exports == [job.pk]
    job.refresh_from_db()
    assert job.status == Export.Status.QUEUED


# serialized_rollback, as the other real-worker tests: a plain flush re-creates content types that
# a later serialized_rollback test would then insert twice.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_real_worker_builds_an_export_the_sweep_rescued_from_a_dead_one(real_worker):
    from tests.conftest import wait_for

    curator = factories.make_user(roles.CURATOR)
    snap = factories.make_snapshot(spec=accepted_spec(images=2), name="rescued", created_by=curator)
    # The worker got the build message too: whichever claimed it, wait until it is built.
    snap = wait_for(lambda: Snapshot.objects.filter(pk=snap.pk, status=Snapshot.Status.READY).first())
    # Created with the task held back: this export's first worker "died" after claiming it.
    job = Export.objects.create(snapshot=snap, format="jsonl", created_by=curator, status=Export.Status.RUNNING,
                                attempts=1, started_at=timezone.now() - LONG_AGO)
    partial = snapshots._partial_dir() / f"export-{job.pk}-1-dead.zip"
    partial.write_bytes(b"PK half a zip")
    assert snapshots.builds_sweep().requeued_exports == [job.pk]
    assert not partial.exists()
    job = wait_for(lambda: Export.objects.filter(id=job.pk, status__in=["done", "failed"]).first())
    assert job.status == Export.Status.DONE and job.attempts == 2 and job.images == 2, job.error
    assert default_storage.exists(job.file)
    default_storage.delete(job.file)  # the worker's media folder outlives the test
