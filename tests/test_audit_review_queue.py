"""Audit of the reviewer's queue and the annotator's rework list (Django's test client and the API).

A closed batch's work can no longer be reviewed (`review_create` refuses it), so it must not
stand at the head of the review queue: the oldest submitted annotation is what `/review/` opens
and what "Send decision and open the next" opens next (both POST to /review/next/), so one closed batch's leftover stopped every
reviewer of the vendor for good. Rework of a closed batch cannot be saved either, so "My work"
must not offer to fix it."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from common import roles
from labeling import services
from labeling.models import Annotation, Batch
from labeling.services import annotation_create, review_create, task_claim_next
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


def page_client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def api_client(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


@pytest.fixture
def world(vendor, spec):
    first = factories.make_batch(spec, vendor, images=1, name="Closed soon")
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    old = annotation_create(task=task_claim_next(annotator=annotator).task, annotator=annotator,
                            regions=[quad()], submit=True)
    services.batch_update(batch=Batch.objects.get(pk=first.pk), status=Batch.Status.CLOSED)
    second = factories.make_batch(spec, vendor, images=1, name="Still open")
    new = annotation_create(task=task_claim_next(annotator=annotator).task, annotator=annotator,
                            regions=[quad()], submit=True)
    assert old.task.batch_id == first.pk and new.task.batch_id == second.pk
    return {"old": old, "new": new, "annotator": annotator,
            "reviewer": factories.make_user(roles.REVIEWER, vendor=vendor)}


def test_the_review_page_opens_reviewable_work_not_a_closed_batchs_leftover(world):
    html = page_client(world["reviewer"]).post("/review/next/", follow=True).content.decode()
    assert f'data-annotation="{world["new"].id}"' in html, "the queue is stuck on the closed batch's annotation"
    assert "1 waiting" in html


def test_after_a_decision_the_next_one_is_not_the_closed_batchs_again(world):
    reviewer = world["reviewer"]
    r = api_client(reviewer).post("/api/v1/reviews/", {"annotation": world["new"].id, "decision": "accept"},
                                  format="json")
    assert r.status_code == 201, r.content
    html = page_client(reviewer).post("/review/next/", follow=True).content.decode()
    assert "Nothing is waiting for your review" in html


def test_the_review_queue_api_lists_only_what_can_be_reviewed(world):
    body = api_client(world["reviewer"]).get("/api/v1/annotations/review-queue/").json()
    assert [a["id"] for a in body["results"]] == [world["new"].id]


def test_a_review_of_a_closed_batchs_annotation_still_says_the_batch_is_closed(world):
    r = api_client(world["reviewer"]).post("/api/v1/reviews/", {"annotation": world["old"].id, "decision": "accept"},
                                           format="json")
    assert r.status_code == 400 and "is closed" in r.json()["annotation"][0], r.content
    assert Annotation.objects.get(pk=world["old"].id).status == Annotation.Status.SUBMITTED


def test_my_work_does_not_offer_to_fix_rework_of_a_closed_batch(vendor, spec):
    batch = factories.make_batch(spec, vendor, images=2)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    anns = [annotation_create(task=task_claim_next(annotator=annotator).task, annotator=annotator,
                              regions=[quad()], submit=True) for _ in range(2)]
    for a in anns:
        review_create(annotation=a, reviewer=reviewer, decision="reject", reasons=["latex_error"], comment="fix it")
    client = page_client(annotator)
    html = client.get("/work/").content.decode()
    assert html.count("Fix it") == 2
    services.batch_update(batch=Batch.objects.get(pk=batch.pk), status=Batch.Status.CLOSED)
    html = client.get("/work/").content.decode()
    # The reasons stay readable, but the page no longer sends the annotator to rework that cannot be saved.
    assert "LaTeX error" in html and "fix it" in html
    assert "Fix it" not in html and "closed" in html
