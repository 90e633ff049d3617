"""The whole labeling loop through the API: next task, annotate, version, submit,
review, rework, acceptance; and the 409 on a stale version."""
from __future__ import annotations

import pytest

from common import roles
from labeling.models import Annotation, AnnotationVersion, Claim, Region, Task
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db


def claim(api) -> dict:
    r = api.post("/api/v1/tasks/next/")
    assert r.status_code == 200, r.content
    return r.json()


def test_annotator_labels_a_task_and_reviewer_accepts_it(batch, annotator_api, reviewer_api):
    nxt = claim(annotator_api)
    assert nxt["reason"] == "claimed" and nxt["task"]["batch"] == batch.id and nxt["lease_expires_at"]
    task_id = nxt["task"]["id"]
    r = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad(), quad(100, 50, 190, 90)],
                                                    "time_spent_seconds": 12.5})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["status"] == "draft" and body["version"] == 1 and len(body["regions"]) == 2
    assert body["regions"][0]["points"] == [[10.0, 10.0], [90.0, 10.0], [90.0, 40.0], [10.0, 40.0]]
    assert body["regions"][0]["latex_normalized"]
    r = annotator_api.post(f"/api/v1/annotations/{body['id']}/submit/", {"version": 1})
    assert r.status_code == 200, r.content
    assert Task.objects.get(pk=task_id).status == Task.Status.SUBMITTED
    queue = reviewer_api.get("/api/v1/annotations/review-queue/").json()
    assert [a["id"] for a in queue["results"]] == [body["id"]]
    r = reviewer_api.post("/api/v1/reviews/", {"annotation": body["id"], "decision": "accept"})
    assert r.status_code == 201, r.content
    assert Task.objects.get(pk=task_id).status == Task.Status.ACCEPTED
    assert Annotation.objects.get(pk=body["id"]).status == Annotation.Status.ACCEPTED


def test_an_acceptance_with_reasons_is_refused_naming_them(batch, annotator_api, reviewer_api):
    """Reasons say what was wrong; stored with an acceptance they would count as rejection causes."""
    task_id = claim(annotator_api)["task"]["id"]
    ann = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}).json()
    r = reviewer_api.post("/api/v1/reviews/", {"annotation": ann["id"], "decision": "accept",
                                               "reasons": ["wrong_region"]}, format="json")
    assert r.status_code == 400 and "takes no reasons" in r.json()["reasons"][0], r.content
    assert Task.objects.get(pk=task_id).status == Task.Status.SUBMITTED
    assert not Annotation.objects.get(pk=ann["id"]).reviews.exists()


def test_rejection_returns_work_to_annotator_with_reason(batch, annotator_api, reviewer_api):
    task_id = claim(annotator_api)["task"]["id"]
    ann = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}).json()
    r = reviewer_api.post("/api/v1/reviews/", {"annotation": ann["id"], "decision": "reject",
                                               "reasons": ["latex_error"], "comment": "x squared, not x"})
    assert r.status_code == 201, r.content
    assert Task.objects.get(pk=task_id).status == Task.Status.REJECTED
    nxt = claim(annotator_api)
    assert nxt["reason"] == "rework" and nxt["task"]["id"] == task_id and nxt["annotation"] == ann["id"]
    mine = annotator_api.get(f"/api/v1/annotations/{ann['id']}/").json()
    assert mine["status"] == "rejected" and mine["reviews"][0]["reasons"] == ["latex_error"]
    assert mine["reviews"][0]["comment"] == "x squared, not x"
    r = annotator_api.put(f"/api/v1/annotations/{ann['id']}/",
                          {"version": 1, "regions": [quad(latex="x^{2}")], "submit": True})
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "submitted" and r.json()["version"] == 2
    assert Task.objects.get(pk=task_id).status == Task.Status.SUBMITTED


def test_each_save_is_a_new_version_and_history_keeps_all(batch, annotator, annotator_api):
    task_id = claim(annotator_api)["task"]["id"]
    ann = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad(latex="a")]}).json()
    for n, latex in enumerate(["b", "c"], start=1):
        r = annotator_api.patch(f"/api/v1/annotations/{ann['id']}/", {"version": n, "regions": [quad(latex=latex)],
                                                                      "time_spent_seconds": 3})
        assert r.status_code == 200, r.content
    history = annotator_api.get(f"/api/v1/annotations/{ann['id']}/history/").json()["results"]
    assert [v["number"] for v in history] == [1, 2, 3]
    assert [v["regions"][0]["latex"] for v in history] == ["a", "b", "c"]
    assert {v["author"] for v in history} == {annotator.id}
    assert Region.objects.filter(version__annotation_id=ann["id"]).count() == 3


def test_stale_version_gets_409_with_current_state_and_nothing_lost(batch, annotator_api):
    task_id = claim(annotator_api)["task"]["id"]
    ann = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad(latex="a")]}).json()
    first = annotator_api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "regions": [quad(latex="tab1")]})
    assert first.status_code == 200
    stale = annotator_api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "regions": [quad(latex="tab2")]})
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2
    assert stale.json()["current"]["regions"][0]["latex"] == "tab1"
    assert AnnotationVersion.objects.filter(annotation_id=ann["id"]).count() == 2


def test_predictions_prelabel_tasks_and_annotation_records_its_start(batch, model_team, annotator_api):
    task = batch.tasks.order_by("id").first()
    api = client_for(model_team)
    r = api.post("/api/v1/predictions/bulk/", {"model_name": "formula-det", "model_version": "1.2.0", "items": [
        {"image": task.image_id, "confidence": 0.1, "regions": [quad(latex="y", confidence=0.4)]}]})
    assert r.status_code == 201, r.content
    task.refresh_from_db()
    assert task.status == Task.Status.PRELABELED and task.model_confidence == 0.1
    nxt = claim(annotator_api)
    assert nxt["task"]["id"] == task.id  # lowest model confidence first
    pred = nxt["task"]["predictions"][0]
    assert pred["model_version"] == "1.2.0" and pred["regions"][0]["confidence"] == 0.4
    ann = annotator_api.post("/api/v1/annotations/", {"task": task.id, "regions": pred["regions"][:0] + [quad()],
                                                      "started_from": pred["id"]}).json()
    assert ann["started_from"] == pred["id"]


def test_batch_created_by_filter_with_gold_from_imported_truth(curator_api, spec, vendor, source):
    factories.make_image(spec=spec, source=source, categories=("handwritten",), truth_latex=r"\frac{a}{b}",
                         meta={"ink_bbox": [5, 5, 50, 40]})
    factories.make_image(spec=spec, source=source, categories=("printed",))
    r = curator_api.post("/api/v1/batches/", {"spec": spec.id, "vendor": vendor.id, "unit_price": "0.30",
                                              "currency": "EUR", "quantity": 10, "categories": ["handwritten"]})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["task_count"] == 1 and body["unit_price"] == "0.3000" and body["currency"] == "EUR"
    task = Task.objects.get(batch_id=body["id"])
    assert task.is_gold and task.gold_answer["latex"] == r"\frac{a}{b}"
    assert task.gold_answer["regions"][0]["points"][2] == [50.0, 40.0]


def test_gold_answer_and_prices_are_hidden_from_annotators(batch, annotator_api, vendor):
    task = batch.tasks.first()
    task.is_gold, task.gold_answer = True, {"latex": "z"}
    task.save()
    body = annotator_api.get(f"/api/v1/tasks/{task.id}/").json()
    assert body["is_gold"] is None and body["gold_answer"] is None
    assert annotator_api.get(f"/api/v1/batches/{batch.id}/").json()["unit_price"] is None
    manager = client_for(factories.make_user(roles.VENDOR_MANAGER, vendor=vendor))
    assert manager.get(f"/api/v1/batches/{batch.id}/").json()["unit_price"] == "0.2500"
    assert manager.get(f"/api/v1/tasks/{task.id}/").json()["gold_answer"] is None


def test_annotator_never_gets_a_task_twice_and_queue_empties(vendor, spec):
    batch = factories.make_batch(spec, vendor, images=2, overlap=2)
    a1 = client_for(factories.make_user(roles.ANNOTATOR, vendor=vendor))
    seen = []
    for _ in range(2):
        task_id = claim(a1)["task"]["id"]
        assert a1.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}).status_code == 201
        seen.append(task_id)
    assert sorted(seen) == sorted(batch.tasks.values_list("id", flat=True))
    assert claim(a1) == {"task": None, "reason": "empty", "lease_expires_at": None, "annotation": None, "blocked": {}}


def test_expired_lease_returns_task_to_queue(vendor, spec):
    factories.make_batch(spec, vendor, images=1, overlap=1)
    a1, a2 = (client_for(factories.make_user(roles.ANNOTATOR, vendor=vendor)) for _ in range(2))
    task_id = claim(a1)["task"]["id"]
    assert claim(a2)["task"] is None
    Claim.objects.filter(task_id=task_id).update(expires_at="2000-01-01T00:00:00Z")
    assert claim(a2)["task"]["id"] == task_id
    assert Claim.objects.get(task_id=task_id, annotator__username__startswith="annotator", state="live")
    # a1's lease is gone: it cannot save an answer any more
    r = a1.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()]})
    assert r.status_code == 400 and "lease" in r.json()["task"][0]


def test_release_gives_the_slot_back(vendor, spec, annotator_api):
    factories.make_batch(spec, vendor, images=1)
    task_id = claim(annotator_api)["task"]["id"]
    assert annotator_api.post(f"/api/v1/tasks/{task_id}/release/").status_code == 204
    other = client_for(factories.make_user(roles.ANNOTATOR, vendor=vendor))
    assert claim(other)["task"]["id"] == task_id


def test_guide_gate_blocks_a_batch_until_the_current_version_is_acknowledged(vendor, spec, batch, annotator,
                                                                             annotator_api):
    from guides.services import guide_acknowledge, guide_version_create, guide_version_publish
    from labeling import gating

    other_spec = factories.make_spec()
    open_batch = factories.make_batch(other_spec, vendor, images=1)  # no guide: never gated
    v1 = factories.make_guide(spec=spec)
    body = claim(annotator_api)
    # The one-query check says exactly what the per-batch hook says.
    assert body["blocked"] == {str(batch.id): gating.guide_acknowledgement_missing(annotator=annotator, batch=batch)}
    assert f"version {v1.number} " in body["blocked"][str(batch.id)]
    assert body["task"]["batch"] == open_batch.id
    annotator_api.post(f"/api/v1/tasks/{body['task']['id']}/release/")
    guide_acknowledge(version=v1, user=annotator)
    v2 = guide_version_create(guide=v1.guide, body_md="Changed rules", created_by=v1.created_by)
    body = claim(annotator_api)
    assert body["blocked"] == {} and body["task"]["batch"] == batch.id  # a draft asks nothing
    annotator_api.post(f"/api/v1/tasks/{body['task']['id']}/release/")
    guide_version_publish(version=v2, by=v1.created_by)
    body = claim(annotator_api)
    assert list(body["blocked"]) == [str(batch.id)] and f"version {v2.number} " in body["blocked"][str(batch.id)]


def test_reviewer_cannot_review_own_vendor_draft_or_twice(batch, annotator_api, reviewer_api):
    task_id = claim(annotator_api)["task"]["id"]
    ann = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()]}).json()
    r = reviewer_api.post("/api/v1/reviews/", {"annotation": ann["id"], "decision": "accept"})
    assert r.status_code == 400 and "annotation" in r.json()
    annotator_api.post(f"/api/v1/annotations/{ann['id']}/submit/", {"version": 1})
    r = reviewer_api.post("/api/v1/reviews/", {"annotation": ann["id"], "decision": "reject"})
    assert r.status_code == 400 and "reasons" in r.json()
    assert reviewer_api.post("/api/v1/reviews/", {"annotation": ann["id"], "decision": "accept"}).status_code == 201
    assert reviewer_api.post("/api/v1/reviews/", {"annotation": ann["id"], "decision": "accept"}).status_code == 400


def test_vendor_manager_adds_an_annotator(vendor, manager):
    api = client_for(manager)
    r = api.post(f"/api/v1/vendors/{vendor.id}/members/", {"username": "ann-new", "password": "pass-word-123",
                                                            "role": "annotator"})
    assert r.status_code == 201, r.content
    assert r.json()["roles"] == ["annotator"]
    names = [m["username"] for m in api.get(f"/api/v1/vendors/{vendor.id}/members/").json()["results"]]
    assert "ann-new" in names and manager.username in names



def test_model_team_lists_vendors_but_not_their_people(vendor, manager):
    model_team = client_for(factories.make_user(roles.MODEL_TEAM))
    assert model_team.get(f"/api/v1/vendors/{vendor.id}/").status_code == 200
    r = model_team.get(f"/api/v1/vendors/{vendor.id}/members/")
    assert r.status_code == 200 and r.json()["count"] == 0
    assert manager.username not in r.content.decode()


def test_a_vendor_manager_who_also_holds_another_role_adds_members_only_to_their_own_vendor(vendor):
    from django.contrib.auth.models import Group, User

    other = factories.make_vendor()
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    manager.groups.add(Group.objects.get(name=roles.MODEL_TEAM))  # model teams may read every vendor
    api = client_for(manager)
    assert api.get(f"/api/v1/vendors/{other.id}/").status_code == 200
    r = api.post(f"/api/v1/vendors/{other.id}/members/", {"username": "planted", "password": "pass-word-123",
                                                           "role": "vendor_manager"})
    assert r.status_code == 403, r.content
    assert not User.objects.filter(username="planted").exists()
    assert api.get(f"/api/v1/vendors/{other.id}/members/").json()["count"] == 0
    r = api.post(f"/api/v1/vendors/{vendor.id}/members/", {"username": "mine", "password": "pass-word-123",
                                                            "role": "annotator"})
    assert r.status_code == 201, r.content

def test_a_skipped_task_comes_back_only_when_nothing_else_is_left():
    vendor = factories.make_vendor()
    factories.make_batch(factories.make_spec(), vendor, images=2)
    api = client_for(factories.make_user(roles.ANNOTATOR, vendor=vendor))
    first = api.post("/api/v1/tasks/next/").json()["task"]["id"]
    assert api.post(f"/api/v1/tasks/{first}/release/").status_code in (200, 204)
    second = api.post("/api/v1/tasks/next/").json()["task"]["id"]
    assert second != first
    assert api.post(f"/api/v1/tasks/{second}/release/").status_code in (200, 204)
    # Both skipped: the queue still hands them out rather than leaving the annotator idle.
    assert api.post("/api/v1/tasks/next/").json()["task"]["id"] in {first, second}
