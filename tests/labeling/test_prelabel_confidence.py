"""The queue confidence a pipeline pre-label gives a task is that of what the annotator will
see: a region the annotation format left out, or a reading whose LaTeX failed the checks,
is work the annotator does from nothing, so it cannot make the task look sure."""
from __future__ import annotations

import pytest

from labeling.models import Task
from labeling.prelabel import regions_from_prediction, task_prelabel_from_prediction

pytestmark = pytest.mark.django_db

GOOD = {"points": [[10.0, 10.0], [90.0, 10.0], [90.0, 40.0], [10.0, 40.0]], "score": 0.9,
        "latex": "x^{2}", "latex_confidence": 0.8}
# A bow tie: the annotation format refuses a self-intersecting quad, so the region is left out.
TWISTED = {"points": [[10.0, 50.0], [90.0, 80.0], [90.0, 50.0], [10.0, 80.0]], "score": 0.99,
           "latex": "y", "latex_confidence": 0.99}


class _Version:
    def __init__(self, name):
        self.name, self.version = name, "1"


class _Prediction:
    """What pipeline.Prediction carries to the hook."""

    def __init__(self, regions, min_confidence):
        self.regions, self.min_confidence = regions, min_confidence
        self.detector_version, self.recognizer_version = _Version("det"), _Version("rec")


def _confidence_after(batch, regions, min_confidence):
    task = batch.tasks.first()
    task_prelabel_from_prediction(task.image_id, _Prediction(regions, min_confidence))
    return Task.objects.get(pk=task.pk).model_confidence


def test_a_clean_prelabel_takes_its_least_sure_region(batch):
    assert _confidence_after(batch, [GOOD], 0.8) == pytest.approx(0.8)


def test_a_region_left_out_makes_the_task_unsure_however_sure_the_model_was(batch):
    # Before, the task kept min_confidence of all regions (0.8 here): the twisted region's
    # formula, which the annotator must draw, did not pull the task forward in the queue.
    assert _confidence_after(batch, [GOOD, TWISTED], 0.8) == 0.0


def test_a_reading_that_failed_the_latex_checks_counts_as_unread(batch):
    bad = dict(GOOD, latex="\\frac{", latex_confidence=0.95, score=0.97)
    image = batch.tasks.first().image
    out = regions_from_prediction(_Prediction([bad], 0.95), width=image.width, height=image.height)
    assert out[0]["latex"] == "" and out[0]["confidence"] == 0.0
    assert _confidence_after(batch, [bad], 0.95) == 0.0


def test_a_prediction_with_no_region_keeps_the_detectors_figure(batch):
    assert _confidence_after(batch, [], 0.0) == 0.0
