"""Audit: pipeline predictions handed to labeling (prediction_store → labeling.prelabel hook)."""
from __future__ import annotations

import pytest

from labeling.models import Prediction as TaskPrediction
from labeling.models import Task
from pipeline import services as pipeline_services
from pipeline.models import ModelVersion
from tests import factories

pytestmark = pytest.mark.django_db

GOOD = {"points": [[10, 10], [90, 10], [90, 40], [10, 40]], "score": 0.9, "latex": "x", "latex_confidence": 0.7}


def _store(image, regions, detector=None, recognizer=None):
    detector = detector or pipeline_services.model_version_builtin(kind="detector")
    recognizer = recognizer or pipeline_services.model_version_builtin(kind="recognizer")
    return pipeline_services.prediction_store(image=image, job=None, detector_version=detector,
                                              recognizer_version=recognizer, regions=regions)


def _task():
    return Task.objects.get(batch=factories.make_batch(images=1))


def test_registry_names_and_versions_at_their_full_length_still_prelabel(django_capture_on_commit_callbacks):
    # The registry allows 80-character names and 40-character versions; "detector+recognizer"
    # overflowed the labeling prediction's columns (120 / 60): a DataError escaped the
    # on-commit hook, crashing the chunk after each stored image, and no task was pre-labeled.
    task = _task()
    detector = ModelVersion.objects.create(kind="detector", name="d" * 80, version="2024.06.01-" + "a" * 29,
                                           source="http")
    recognizer = ModelVersion.objects.create(kind="recognizer", name="r" * 80, version="2024.06.01-" + "b" * 29,
                                             source="http")
    other = ModelVersion.objects.create(kind="recognizer", name="r" * 80, version="2024.06.01-" + "c" * 29,
                                        source="http")
    with django_capture_on_commit_callbacks(execute=True):
        _store(task.image, [GOOD], detector, recognizer)
        _store(task.image, [GOOD], detector, other)
    task.refresh_from_db()
    assert task.status == Task.Status.PRELABELED
    preds = TaskPrediction.objects.filter(image=task.image)
    # two recognizer versions stay two predictions, not one overwriting the other
    assert preds.count() == 2
    assert len({(p.model_name, p.model_version) for p in preds}) == 2


def test_a_region_without_score_from_an_external_model_is_stored(django_capture_on_commit_callbacks):
    # The external model contract makes "score" and "latex_confidence" optional, null included;
    # float(None) raised a TypeError in prediction_store, failing the chunk on every retry.
    task = _task()
    region = {**GOOD, "score": None, "latex_confidence": None}
    with django_capture_on_commit_callbacks(execute=True):
        pred = _store(task.image, [region])
    assert pred.pk is not None
    task.refresh_from_db()
    assert task.status == Task.Status.PRELABELED
    assert TaskPrediction.objects.get(image=task.image).regions[0]["latex"] == "x"


@pytest.mark.parametrize("bad", [
    [[300, 150], [400, 150], [400, 190], [300, 190]],      # wholly outside the 200x100 image: clips to nothing
    [[10, 50], [90, 90], [90, 50], [10, 90]],               # self-intersecting ("bow tie")
])
def test_one_unusable_region_does_not_drop_the_images_whole_prelabel(django_capture_on_commit_callbacks, bad):
    # One region the annotation format refuses made predictions_import refuse the whole item:
    # the image lost every pre-label (only a log line said so) and its task stayed "new".
    task = _task()
    with django_capture_on_commit_callbacks(execute=True):
        _store(task.image, [GOOD, {**GOOD, "points": bad, "latex": "y"}])
    task.refresh_from_db()
    assert task.status == Task.Status.PRELABELED
    assert [r["latex"] for r in TaskPrediction.objects.get(image=task.image).regions] == ["x"]
