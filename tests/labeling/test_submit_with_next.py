"""A save with `"next": true` answers the annotation and the annotator's next task,
by the same service call and rules as `tasks/next/`: one round trip per cycle."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from common import roles
from common.services import api_token_rotate
from labeling import services
from labeling.models import Annotation, Claim, Region, Task
from tests import factories
from tests.factories import quad
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db


def token_client(user) -> APIClient:
    """Token auth, as the annotators' tools use it: roles and vendor are read afresh per request."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_rotate(user=user).key}")
    return client


def next_task(api) -> dict:
    r = api.post("/api/v1/tasks/next/")
    assert r.status_code == 200, r.content
    return r.json()


@pytest.fixture
def annotator(vendor):
    return factories.make_user(roles.ANNOTATOR, vendor=vendor)


@pytest.fixture
def api(annotator):
    return token_client(annotator)


def test_submit_with_next_answers_the_annotation_and_claims_the_next_task(vendor, spec, annotator, api):
    batch = factories.make_batch(spec, vendor, images=3)
    first = next_task(api)["task"]["id"]
    r = api.post("/api/v1/annotations/", {"task": first, "regions": [quad()], "submit": True, "next": True})
    assert r.status_code == 201, r.content
    assert_response_matches_schema(r)
    body = r.json()
    saved = Annotation.objects.get(task_id=first, annotator=annotator)
    assert body["annotation"]["id"] == saved.id and body["annotation"]["status"] == "submitted"
    assert Task.objects.get(pk=first).status == Task.Status.SUBMITTED
    nxt = body["next"]
    assert nxt["reason"] == "claimed" and nxt["task"]["batch"] == batch.id and nxt["task"]["id"] != first
    live = Claim.objects.get(task_id=nxt["task"]["id"], annotator=annotator, state=Claim.State.LIVE)
    assert nxt["lease_expires_at"] == live.expires_at.isoformat().replace("+00:00", "Z")
    # Exactly what tasks/next/ answers now (the same task, held under that lease).
    again = next_task(api)
    assert again["reason"] == "leased" and again["task"] == nxt["task"]
    assert again["lease_expires_at"] == nxt["lease_expires_at"]


def test_without_next_the_answer_is_the_plain_annotation(vendor, spec, api):
    factories.make_batch(spec, vendor, images=2)
    task_id = next_task(api)["task"]["id"]
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True})
    assert r.status_code == 201 and r.json()["task"] == task_id and "next" not in r.json()
    assert_response_matches_schema(r)
    assert not Claim.objects.filter(state=Claim.State.LIVE).exists()  # nothing claimed on the side


def test_next_gives_rework_first_as_tasks_next_does(vendor, spec, annotator, api):
    factories.make_batch(spec, vendor, images=3)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    first = next_task(api)["task"]["id"]
    rejected = api.post("/api/v1/annotations/", {"task": first, "regions": [quad()], "submit": True}).json()
    second = next_task(api)["task"]["id"]  # leased before the rejection comes in
    services.review_create(annotation=Annotation.objects.get(pk=rejected["id"]), reviewer=reviewer,
                           decision="reject", reasons=["latex_error"])
    r = api.post("/api/v1/annotations/", {"task": second, "regions": [quad()], "submit": True, "next": True})
    assert r.status_code == 201, r.content
    nxt = r.json()["next"]
    assert nxt["reason"] == "rework" and nxt["task"]["id"] == first and nxt["annotation"] == rejected["id"]
    assert nxt == next_task(api)


def test_next_is_empty_with_the_blocked_batches_when_no_work_is_left(vendor, spec, annotator, api):
    gated_spec = factories.make_spec()
    gated = factories.make_batch(gated_spec, vendor, images=1)
    factories.make_guide(spec=gated_spec)  # published, not acknowledged: the batch waits on the annotator
    factories.make_batch(spec, vendor, images=1)
    task_id = next_task(api)["task"]["id"]
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True, "next": True})
    assert r.status_code == 201, r.content
    assert_response_matches_schema(r)
    nxt = r.json()["next"]
    assert nxt["task"] is None and nxt["reason"] == "empty" and list(nxt["blocked"]) == [str(gated.id)]
    assert nxt == next_task(api)


def test_next_is_null_when_the_user_may_no_longer_take_tasks_and_the_save_stands(vendor, spec, annotator, api):
    factories.make_batch(spec, vendor, images=2)
    task_id = next_task(api)["task"]["id"]
    annotator.groups.clear()  # no longer an annotator: tasks/next/ would answer 400
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True, "next": True})
    assert r.status_code == 201, r.content
    assert_response_matches_schema(r)
    assert r.json()["next"] is None and r.json()["annotation"]["status"] == "submitted"
    assert Annotation.objects.filter(task_id=task_id, status=Annotation.Status.SUBMITTED).exists()
    assert api.post("/api/v1/tasks/next/").status_code == 400


def test_bad_input_with_next_stores_nothing_and_claims_nothing(vendor, spec, annotator, api):
    factories.make_batch(spec, vendor, images=3)
    task_id = next_task(api)["task"]["id"]
    bad = quad(latex=r"\frac{a}{b")
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad(), bad], "submit": True, "next": True})
    assert r.status_code == 400 and "regions[1].latex" in r.json()
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "next": "maybe"})
    assert r.status_code == 400 and "next" in r.json()
    assert not Annotation.objects.exists() and not Region.objects.exists()
    assert list(Claim.objects.filter(annotator=annotator).values_list("task_id", "state")) == \
        [(task_id, Claim.State.LIVE)]


def test_update_and_submit_carry_the_next_task_too(vendor, spec, annotator, api):
    factories.make_batch(spec, vendor, images=3)
    first = next_task(api)["task"]["id"]
    draft = api.post("/api/v1/annotations/", {"task": first, "regions": [quad()]}).json()
    r = api.put(f"/api/v1/annotations/{draft['id']}/", {"version": 1, "regions": [quad(latex="y")], "next": True})
    assert r.status_code == 200, r.content
    assert_response_matches_schema(r)
    assert r.json()["annotation"]["version"] == 2 and r.json()["next"]["reason"] == "claimed"
    held = r.json()["next"]["task"]["id"]
    r = api.post(f"/api/v1/annotations/{draft['id']}/submit/", {"version": 2, "next": True})
    assert r.status_code == 200, r.content
    assert_response_matches_schema(r)
    assert r.json()["annotation"]["status"] == "submitted"
    assert r.json()["next"]["reason"] == "leased" and r.json()["next"]["task"]["id"] == held
    # A stale version still answers 409 with the current state, and claims nothing more.
    r = api.post(f"/api/v1/annotations/{draft['id']}/submit/", {"version": 1, "next": True})
    assert r.status_code == 409 and r.json()["current_version"] == 2
    assert Claim.objects.filter(annotator=annotator, state=Claim.State.LIVE).count() == 1


def test_a_failed_claim_leaves_the_saved_answer_standing(vendor, spec, annotator, api, monkeypatch, caplog):
    from django.db import OperationalError

    factories.make_batch(spec, vendor, images=2)
    task_id = next_task(api)["task"]["id"]

    def broken(**kwargs):
        raise OperationalError("could not serialize access")

    monkeypatch.setattr(services, "task_claim_next", broken)
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True, "next": True})
    assert r.status_code == 201, r.content
    assert r.json()["next"] is None and r.json()["annotation"]["status"] == "submitted"
    assert Annotation.objects.filter(task_id=task_id, status=Annotation.Status.SUBMITTED).exists()
    assert "Claiming the next task after a save failed" in caplog.text
    monkeypatch.undo()
    assert next_task(api)["reason"] == "claimed"  # the connection is fine for the next request
