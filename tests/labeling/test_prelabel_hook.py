"""Pipeline predictions become the starting point of labeling tasks."""
import pytest

from labeling.models import Prediction as TaskPrediction
from labeling.models import Task
from pipeline import services as pipeline_services
from tests import factories

pytestmark = pytest.mark.django_db


def _store(image, regions):
    detector = pipeline_services.model_version_builtin(kind="detector")
    recognizer = pipeline_services.model_version_builtin(kind="recognizer")
    return pipeline_services.prediction_store(image=image, job=None, detector_version=detector,
                                              recognizer_version=recognizer, regions=regions)


def test_pipeline_prediction_prelabels_the_images_task(django_capture_on_commit_callbacks):
    batch = factories.make_batch(images=1)
    task = Task.objects.get(batch=batch)
    regions = [
        {"points": [[-3, 5], [150, 5], [150, 40], [-3, 40]], "score": 0.9, "latex": r"x^{2}", "latex_confidence": 0.6},
        {"points": [[10, 50], [90, 50], [90, 90], [10, 90]], "score": 0.8, "latex": r"\frac{1}{", "latex_confidence": 0.9},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        _store(task.image, regions)
    task.refresh_from_db()
    assert task.status == Task.Status.PRELABELED
    pred = TaskPrediction.objects.get(image=task.image)
    kept = pred.regions
    assert [r["latex"] for r in kept] == [r"x^{2}", ""]  # unbalanced LaTeX dropped, region kept
    assert kept[0]["points"][0][0] == 0.0  # clipped into the image
    # The second region's reading was dropped: the annotator types it from nothing, so the
    # task is as unsure as can be, not min(0.9, 0.6, 0.8, 0.9).
    assert task.model_confidence == 0.0
    assert [r["confidence"] for r in kept] == [pytest.approx(0.6), 0.0]


def test_prediction_for_an_image_without_task_is_stored_for_later(django_capture_on_commit_callbacks):
    image = factories.make_image()
    with django_capture_on_commit_callbacks(execute=True):
        _store(image, [{"points": [[1, 1], [50, 1], [50, 20], [1, 20]], "score": 0.5, "latex": "a"}])
    assert TaskPrediction.objects.filter(image=image).count() == 1
