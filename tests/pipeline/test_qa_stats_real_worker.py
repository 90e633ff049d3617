"""Debounced QA statistics on a real Celery worker (Redis + PostgreSQL): two submits, one report."""
from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from labeling import services as ls
from pipeline import refresh
from pipeline.models import QAReport
from tests import factories
from tests.conftest import wait_for
from tests.factories import quad

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_two_submits_give_one_report_on_the_worker(real_worker, spec, vendor, monkeypatch):
    monkeypatch.setattr(refresh, "DEBOUNCE_SECONDS", 2)
    cache.delete(refresh.pending_key(spec.id))
    factories.make_batch(spec, vendor, images=2)
    for _ in range(2):
        annotator = factories.make_user("annotator", vendor=vendor)
        task = ls.task_claim_next(annotator=annotator).task
        ls.annotation_create(task=task, annotator=annotator, regions=[quad()], time_spent_seconds=12, submit=True)
    report = wait_for(lambda: QAReport.objects.filter(spec=spec).first(), timeout=60)
    assert report.payload["throughput"]["overall"]["annotations"] == 2
    time.sleep(4)  # longer than the debounce: a second computation would have come by now
    assert QAReport.objects.filter(spec=spec).count() == 1
    assert cache.get(refresh.pending_key(spec.id)) is None
