import json

import pytest

from labeling.models import Prediction, Task
from tests.factories import quad
from tests.labeling.conftest import batch, client_for  # noqa: F401


def post(api, payload):
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return api.generic("POST", "/api/v1/predictions/bulk/", body, content_type="application/json")


@pytest.mark.django_db
def test_probe(batch, model_team):  # noqa: F811
    api = client_for(model_team)
    ids = list(batch.tasks.values_list("image_id", flat=True))
    cases = [
        '[1,2]', '"x"', '5', 'null',
        {"model_name": "m\ud800", "model_version": "1", "items": [{"image": ids[0]}]},
        {"model_name": "m", "model_version": "1\x00", "items": [{"image": ids[0]}]},
        {"model_name": ["m"], "model_version": "1", "items": [{"image": ids[0]}]},
        {"model_name": "m", "model_version": 1, "items": [{"image": ids[0]}]},
        {"model_name": "m", "model_version": "1", "items": {"image": ids[0]}},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": {"a": 1}}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [{"kind": "mask", "mask": {"size": [10**10, 10**10], "counts": [10**20]}}]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [{"kind": "mask", "mask": {"size": [100, 200], "counts": [20000]}}]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [{"kind": "mask", "mask": {"size": [100, 200], "counts": "!!!!"}}]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [{"kind": "quad", "points": [[1, 2], [3, 4], [5, 6]]}]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [{"kind": "quad", "points": [[-5, -5], [-4, -5], [-4, -4], [-5, -4]]}]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [quad(latex="x" * 5000)]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [quad(latex=["x"])]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "region": [quad()]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "confidence": "0.5"}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [quad(confidence=-0.1)]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [quad(categories=["nope"])]}]},
        {"model_name": " ", "model_version": "1", "items": [{"image": ids[0]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": float(ids[0])}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [{**quad(), "kind": ["quad"]}]}]},
        {"model_name": "m", "model_version": "1", "items": [{"image": ids[0], "regions": [{**quad(), "illegible": "yes"}]}]},
    ]
    for c in cases:
        try:
            r = post(api, c)
            print(repr(c)[:150], "->", r.status_code, r.content[:200])
        except Exception as exc:
            print(repr(c)[:150], "-> EXC", type(exc).__name__, str(exc)[:200])
    print(Prediction.objects.count(), list(Task.objects.values_list("status", "model_confidence")))
