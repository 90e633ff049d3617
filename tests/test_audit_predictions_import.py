"""Audit: bulk prediction import as model teams meet it (POST /api/v1/predictions/bulk/)."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from labeling.models import Prediction, Task
from labeling.services import predictions_import
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import batch, client_for  # noqa: F401  (the batch fixture)

pytestmark = pytest.mark.django_db

URL = "/api/v1/predictions/bulk/"


@pytest.mark.parametrize("key", ["region", "score", "result", "predictions"])
def test_an_item_with_a_misspelled_or_foreign_key_is_refused_not_stored_empty(batch, model_team, key):  # noqa: F811
    # "region" for "regions", or Label Studio's "score"/"result": silently ignored, the image
    # got an empty pre-label (or no queue confidence) and its task was moved to pre-labeled.
    api = client_for(model_team)
    first, second = batch.tasks.order_by("id").values_list("image_id", flat=True)[:2]
    items = [{"image": first, "regions": [quad()], "confidence": 0.4},
             {"image": second, key: 0.3 if key == "score" else [quad()]}]
    r = api.post(URL, {"model_name": "m", "model_version": "1", "items": items}, format="json")
    assert r.status_code == 400 and f"items[1].{key}" in r.json(), r.content
    assert Prediction.objects.count() == 0
    assert set(Task.objects.values_list("status", flat=True)) == {Task.Status.NEW}


def test_reimport_with_a_higher_confidence_moves_the_task_back_in_the_queue(vendor, spec):
    # A model team re-imports the same version with corrected (recalibrated) confidences:
    # the prediction is replaced, but the task kept the old, lower confidence, so the
    # "lowest confidence first" queue still handed it out first.
    two = factories.make_batch(spec, vendor, images=2)
    first, second = two.tasks.order_by("id")
    predictions_import(model_name="m", model_version="1", items=[
        {"image": first.image_id, "regions": [quad()], "confidence": 0.1},
        {"image": second.image_id, "regions": [quad()], "confidence": 0.5}])
    predictions_import(model_name="m", model_version="1", items=[
        {"image": first.image_id, "regions": [quad()], "confidence": 0.9}])
    first.refresh_from_db()
    assert Prediction.objects.get(image=first.image).confidence == 0.9
    assert first.model_confidence == 0.9
    assert list(Task.objects.order_by("model_confidence").values_list("pk", flat=True)) == [second.pk, first.pk]


def test_reimport_keeps_the_lowest_confidence_of_the_images_other_models(batch):  # noqa: F811
    task = batch.tasks.order_by("id").first()
    predictions_import(model_name="a", model_version="1", items=[{"image": task.image_id, "confidence": 0.3}])
    predictions_import(model_name="b", model_version="1", items=[{"image": task.image_id, "confidence": 0.2}])
    predictions_import(model_name="b", model_version="1", items=[{"image": task.image_id, "confidence": 0.8}])
    task.refresh_from_db()
    assert task.model_confidence == 0.3  # model a's, now the lowest of the image's predictions


@pytest.mark.parametrize(("field", "value"), [("model_name", "n" * 121), ("model_version", "v" * 61)])
def test_a_service_caller_with_a_name_too_long_gets_a_field_error_not_a_database_error(batch, field, value):  # noqa: F811
    task = batch.tasks.first()
    names = {"model_name": "m", "model_version": "1", field: value}
    with pytest.raises(ValidationError) as exc:
        predictions_import(items=[{"image": task.image_id, "regions": [quad()]}], **names)
    assert field in exc.value.message_dict
    assert Prediction.objects.count() == 0
