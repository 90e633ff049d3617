"""Audit, in a real browser: a run's page and the comparison table follow a run as its worker
stores batches and finishes, instead of showing the status they were opened with."""
from __future__ import annotations

import pytest

from common import roles
from pipeline import evaluation
from pipeline.models import EvaluationRun
from pipeline.services import model_version_builtin
from tests import factories
from tests.pipeline.evaluation_helpers import StubReader
from tests.pipeline.test_evaluation_service import TRUTH_BOX, three_image_snapshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_evaluation_pages_show_live_progress_and_the_results_when_the_run_finishes(browser_page, monkeypatch):
    from pipeline import tasks

    monkeypatch.setattr(tasks.run_evaluation, "delay", lambda *a, **kw: None)  # the worker is this test
    snap = three_image_snapshot(requirements=[{"metric": "exact_match", "threshold": 0.9}])
    versions = model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                       created_by=factories.make_user(roles.CURATOR))
    page = browser_page(factories.make_user(roles.MODEL_TEAM))
    page.goto(f"/evaluations/{run.pk}/")
    status = page.locator("#run-status")
    assert "0/3" in status.inner_text() and "pending" in page.locator("dl.meta").inner_text()

    # the worker claims it and stores a batch: the page follows without a reload
    EvaluationRun.objects.filter(pk=run.pk).update(status=EvaluationRun.Status.RUNNING, processed=2)
    page.wait_for_function("() => document.querySelector('#run-status [data-field=count]').textContent === '2/3'",
                           timeout=10_000)
    assert "Running" in status.inner_text()
    assert page.locator("#run-status progress").evaluate("p => p.value") == 2
    assert page.locator("#by-category").count() == 0

    # it finishes: the page shows the figures and verdicts, and no Cancel button any more
    EvaluationRun.objects.filter(pk=run.pk).update(status=EvaluationRun.Status.QUEUED, processed=0)
    page.wait_for_timeout(100)
    evaluation.evaluation_run(run=run, reader=StubReader(detections=[[TRUTH_BOX]] * 3,
                                                         readings=["x^{2}+1", "a+b", r"\frac{1}{2}"]))
    page.locator("#by-category").wait_for(timeout=10_000)
    assert "Done" in status.inner_text() and page.locator("#run-status button").count() == 0
    verdicts = page.locator("#verdicts tbody").inner_text()
    assert "LaTeX exact match" in verdicts and "met" in verdicts

    # the comparison table follows a queued run the same way, then shows its figures
    second = evaluation.evaluation_create(snapshot=snap, detector_version=None, recognizer_version=versions[1],
                                          created_by=None)
    page.goto(f"/evaluations/?snapshot={snap.pk}")
    row = page.locator(f'tr[data-run="{second.pk}"]')
    assert "Queued" in row.inner_text()
    evaluation.evaluation_run(run=second, reader=StubReader(readings=["x^{2}+1", "a+b", r"\frac{1}{2}"]))
    page.wait_for_function(f"() => document.querySelector('tr[data-run=\"{second.pk}\"] .status')"
                           ".textContent.trim() === 'Done'", timeout=10_000)
    page.wait_for_load_state()
    assert "exact_match met" in page.locator(f'tr[data-run="{second.pk}"] td.verdicts').inner_text()
    assert not page.errors
