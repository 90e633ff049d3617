"""Pre-labeling on a real Celery worker (Redis + PostgreSQL): nothing lost, nothing duplicated."""
from __future__ import annotations

import pytest
from django.db.models import Count

from pipeline import services
from pipeline.models import Prediction, PrelabelItem, PrelabelJob
from pipeline.selectors import prelabel_job_progress
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


def test_real_worker_prelabels_50_images_losing_none_and_duplicating_none(real_worker, curator, spec, source):
    images = [factories.make_image(spec=spec, source=source, data=factories.png_bytes(160, 90)) for _ in range(50)]
    job = services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=8)

    def finished():
        job.refresh_from_db()
        return job.status == PrelabelJob.Status.DONE

    wait_for(finished, timeout=600, interval=1.0)
    progress = prelabel_job_progress(job)
    assert progress["done"] == 50 and progress["failed"] == 0 and progress["pending"] == 0
    assert Prediction.objects.filter(image__in=images).count() == 50
    dupes = Prediction.objects.values("image_id").annotate(n=Count("id")).filter(n__gt=1)
    assert not dupes.exists()
    assert not PrelabelItem.objects.filter(job=job).exclude(status=PrelabelItem.Status.DONE).exists()
