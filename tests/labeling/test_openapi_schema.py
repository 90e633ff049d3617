"""The OpenAPI schema is valid, and the labeling endpoints answer what it declares."""
from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from common import roles
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db


@pytest.fixture
def spec_doc(curator_api):
    r = curator_api.get("/api/schema/", {"format": "json"})
    assert r.status_code == 200
    return r.json()


def test_schema_is_valid_openapi(spec_doc):
    validate(spec_doc)
    labeling_paths = [p for p in spec_doc["paths"] if p.split("/")[3] in
                      ("vendors", "batches", "tasks", "annotations", "reviews", "predictions")]
    assert len(labeling_paths) >= 15
    for path in labeling_paths:
        for method, op in spec_doc["paths"][path].items():
            assert op.get("responses"), f"{method} {path} has no typed response"


def test_labeling_responses_match_the_schema(curator, vendor, spec, source, model_team):
    checked = set()
    curator_api = client_for(curator)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    ann_api, rev_api, man_api, mt_api = (client_for(u) for u in (annotator, reviewer, manager, model_team))
    for _ in range(3):
        factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100))
    truth = factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100), truth_latex="a+b")

    def ok(r, code=200):
        assert r.status_code == code, r.content[:400]
        assert_response_matches_schema(r)
        checked.add((r.wsgi_request.method, r.wsgi_request.path, r.status_code))
        return r.json() if r.content else None

    ok(mt_api.post("/api/v1/predictions/bulk/", {"model_name": "m", "model_version": "1", "items": [
        {"image": truth.id, "confidence": 0.5, "regions": [quad(confidence=0.9)]}]}), 201)
    batch = ok(curator_api.post("/api/v1/batches/", {"spec": spec.id, "vendor": vendor.id, "unit_price": "0.5",
                                                     "quantity": 4, "overlap": 1}), 201)
    ok(curator_api.patch(f"/api/v1/batches/{batch['id']}/", {"deadline": "2027-01-31"}))
    for api in (curator_api, man_api, ann_api):
        ok(api.get("/api/v1/batches/"))
        ok(api.get(f"/api/v1/batches/{batch['id']}/"))
        ok(api.get("/api/v1/tasks/", {"batch": batch["id"], "status": ["new", "prelabeled"]}))
        ok(api.get("/api/v1/vendors/"))
        ok(api.get(f"/api/v1/vendors/{vendor.id}/members/"))
    ok(man_api.post(f"/api/v1/vendors/{vendor.id}/members/", {"username": "m2", "password": "pass-word-123",
                                                              "role": "reviewer"}), 201)
    nxt = ok(ann_api.post("/api/v1/tasks/next/"))
    task_id = nxt["task"]["id"]
    ok(ann_api.get(f"/api/v1/tasks/{task_id}/"))
    ok(curator_api.get(f"/api/v1/tasks/{task_id}/"))
    ok(curator_api.post(f"/api/v1/tasks/{task_id}/gold/", {"gold_answer": {"latex": "x"}}))
    ann = ok(ann_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()]}), 201)
    ok(ann_api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "regions": [quad(latex="y")]}))
    ok(ann_api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "regions": [quad(latex="z")]}), 409)
    ok(ann_api.post(f"/api/v1/annotations/{ann['id']}/submit/", {"version": 2}))
    ok(ann_api.get(f"/api/v1/annotations/{ann['id']}/history/"))
    ok(rev_api.get("/api/v1/annotations/review-queue/"))
    ok(rev_api.post("/api/v1/reviews/", {"annotation": ann["id"], "decision": "reject", "reasons": ["wrong_region"]}),
       201)
    ok(ann_api.get("/api/v1/annotations/"))
    ok(ann_api.get(f"/api/v1/annotations/{ann['id']}/"))
    reviews = ok(rev_api.get("/api/v1/reviews/"))["results"]
    ok(rev_api.get(f"/api/v1/reviews/{reviews[0]['id']}/"))
    predictions = ok(ann_api.get("/api/v1/predictions/"))["results"]
    ok(ann_api.get(f"/api/v1/predictions/{predictions[0]['id']}/"))
    ok(ann_api.get(f"/api/v1/vendors/{vendor.id}/"))
    second_api = client_for(factories.make_user(roles.ANNOTATOR, vendor=vendor))
    second = ok(second_api.post("/api/v1/tasks/next/"))
    assert second["task"]["id"] != task_id
    ok(second_api.post(f"/api/v1/tasks/{second['task']['id']}/release/"), 204)
    assert len(checked) >= 27
