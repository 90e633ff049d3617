"""An answer started from a model's prediction stays linked to it when a later save does not name
it again (the API showed `started_from: null` after any save from such a client)."""
from __future__ import annotations

import pytest

from labeling import services
from labeling.models import Prediction
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db


def test_a_save_without_started_from_keeps_the_prediction_the_answer_started_from(vendor, spec, annotator):
    factories.make_batch(spec, vendor, images=1)
    task = services.task_claim_next(annotator=annotator).task
    prediction = Prediction.objects.create(image=task.image, model_name="det", model_version="1",
                                           regions=[quad()], confidence=0.5)
    api = client_for(annotator)
    r = api.post("/api/v1/annotations/", {"task": task.pk, "regions": [quad()], "started_from": prediction.pk},
                 format="json")
    assert r.status_code == 201 and r.json()["started_from"] == prediction.pk, r.content
    r = api.put(f"/api/v1/annotations/{r.json()['id']}/", {"version": 1, "regions": [quad(latex="y")]}, format="json")
    assert r.status_code == 200 and r.json()["started_from"] == prediction.pk, r.content
    # a save that names another prediction of the image says so
    other = Prediction.objects.create(image=task.image, model_name="det", model_version="2", regions=[quad()])
    r = api.put(f"/api/v1/annotations/{r.json()['id']}/", {"version": 2, "regions": [quad()], "started_from": other.pk},
                format="json")
    assert r.status_code == 200 and r.json()["started_from"] == other.pk, r.content
