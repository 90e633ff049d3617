"""Pre-labeling on a real Celery worker (Redis + PostgreSQL): nothing lost, nothing duplicated,
and a job whose worker is killed mid-way resumes cleanly."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db.models import Count

from pipeline import services
from pipeline.models import Prediction, PrelabelItem, PrelabelJob
from pipeline.selectors import prelabel_job_progress
from tests import factories
from tests.conftest import ROOT, wait_for

# serialized_rollback: the flush after each transactional test would drop the roles and licences
# created by data migrations, which the next test needs.
pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _no_duplicates() -> bool:
    return not Prediction.objects.values("image_id", "detector_version", "recognizer_version").annotate(
        n=Count("id")).filter(n__gt=1).exists()


def _done(job) -> bool:
    job.refresh_from_db()
    return job.status == PrelabelJob.Status.DONE


# 50 by default (a few minutes on the shared 2-core CPU); MATHSET_PRELABEL_WORKER_IMAGES=1000 for the full run.
N_IMAGES = int(os.environ.get("MATHSET_PRELABEL_WORKER_IMAGES", "50"))


def test_real_worker_prelabels_every_image_losing_none_and_duplicating_none(real_worker, curator, spec, source):
    images = [factories.make_image(spec=spec, source=source, data=factories.png_bytes(160, 90))
              for _ in range(N_IMAGES)]
    job = services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=8)
    wait_for(lambda: _done(job), timeout=max(600, N_IMAGES), interval=1.0)
    progress = prelabel_job_progress(job)
    assert progress["done"] == N_IMAGES and progress["failed"] == 0 and progress["pending"] == 0
    assert Prediction.objects.filter(image__in=images).count() == N_IMAGES
    assert _no_duplicates()


def test_job_resumes_cleanly_after_its_worker_is_killed(real_worker, curator, spec, source):
    """A second worker on its own queue takes the job and is SIGKILLed mid-way; resume finishes it."""
    from config.celery import app

    images = [factories.make_image(spec=spec, source=source, data=factories.png_bytes(160, 90)) for _ in range(24)]
    queue = real_worker["queue"] + "-victim"
    env = dict(real_worker["env"], MATHSET_CELERY_QUEUE=queue)
    celery = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"
    victim = subprocess.Popen([celery, "-A", "config", "worker", "-Q", queue, "-c", "1", "--loglevel", "WARNING",
                               "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"],
                              cwd=ROOT, env=env, start_new_session=True)
    old_queue = app.conf.task_default_queue
    try:
        app.conf.task_default_queue = queue
        job = services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=4)
        wait_for(lambda: PrelabelItem.objects.filter(job=job, status="done").count() >= 4, timeout=300, interval=0.5)
    finally:
        app.conf.task_default_queue = old_queue
        os.killpg(victim.pid, signal.SIGKILL)  # the worker and its pool child die mid-job
        victim.wait(timeout=30)
    assert PrelabelItem.objects.filter(job=job, status="pending").exists()
    services.prelabel_job_resume(job=job)  # now on the surviving worker's queue
    wait_for(lambda: _done(job), timeout=600, interval=1.0)
    progress = prelabel_job_progress(job)
    assert progress["done"] == 24 and progress["failed"] == 0
    assert Prediction.objects.filter(image__in=images).count() == 24
    assert _no_duplicates()
