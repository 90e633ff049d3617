"""An evaluation queued through the API's service runs on a real Celery worker process
(Redis + PostgreSQL) with the committed weights, and a cancelled run is left alone."""
from __future__ import annotations

import pytest

from pipeline import evaluation
from pipeline.models import EvaluationRun, EvaluationSample
from pipeline.services import model_version_builtin
from tests.conftest import wait_for
from tests.pipeline.evaluation_helpers import box, make_eval_snapshot, region

# serialized_rollback: the flush after each transactional test would drop the roles and licences
# created by data migrations, which the next test needs.
pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _finished(run) -> bool:
    run.refresh_from_db()
    return run.status not in (EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING)


def test_real_worker_runs_an_evaluation_with_the_committed_weights(real_worker, curator):
    snap = make_eval_snapshot([([region(box(10, 10, 90, 40), "x^{2}+1")], ("printed",)),
                               ([region(box(20, 30, 180, 80), "a+b")], ("handwritten",))],
                              requirements=[{"metric": "exact_match", "threshold": 0.9}])
    run = evaluation.evaluation_create(snapshot=snap, detector_version=model_version_builtin(kind="detector"),
                                       recognizer_version=model_version_builtin(kind="recognizer"),
                                       created_by=curator)
    wait_for(lambda: _finished(run), timeout=300, interval=0.5)
    assert run.status == "done", run.error
    assert run.processed == 2 and EvaluationSample.objects.filter(run=run).count() == 2
    assert set(run.metrics["by_category"]) == {"printed", "handwritten"}
    assert run.qps > 0 and [v["metric"] for v in run.verdicts] == ["exact_match"]
