"""Audit of the review page in a real browser: what a reviewer sees of a reworked annotation,
and what happens when another reviewer decided on the same annotation first."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from common import roles
from labeling.models import Annotation, Review
from tests import factories
from tests.browser.test_labeling_ui import labeling_setup  # noqa: F401  (fixture)
from tests.browser_fixtures import save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

REGION = {"kind": "quad", "points": [[80, 68], [330, 68], [330, 110], [80, 110]], "latex": "x^{2}+0=y_{0}"}


def client_for(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def submitted(annotator) -> dict:
    api = client_for(annotator)
    task = api.post("/api/v1/tasks/next/").json()["task"]
    r = api.post("/api/v1/annotations/", {"task": task["id"], "submit": True, "regions": [REGION]}, format="json")
    assert r.status_code == 201, r.content
    return r.json()


def open_review(browser_page, user):
    page = browser_page(user)
    page.goto("/review/")
    page.click("#review-next")  # a POST holds the next one and answers 303 to it
    page.wait_for_selector("#review-app[data-ready='1']")
    return page


def test_a_reworked_annotation_shows_the_reviewer_why_it_was_sent_back(browser_page, labeling_setup):  # noqa: F811
    """The reviewer of a resubmission must be able to check that what was asked for was fixed."""
    s = labeling_setup
    ann = submitted(s["annotator"])
    r = client_for(s["reviewer"]).post("/api/v1/reviews/", {
        "annotation": ann["id"], "decision": "reject", "reasons": ["latex_error", "missing_formula"],
        "comment": "The second line <b>is missing</b>."}, format="json")
    assert r.status_code == 201, r.content
    api = client_for(s["annotator"])
    r = api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "regions": [REGION, {
        **REGION, "points": [[80, 228], [330, 228], [330, 270], [80, 270]], "latex": "x^{3}+1=y_{1}"}],
        "submit": True}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "submitted", r.content

    page = open_review(browser_page, s["reviewer"])
    box = page.locator("#previous-reviews")
    assert box.is_visible(), "nothing on the page says this is rework, nor what was asked"
    text = box.inner_text()
    assert "LaTeX error" in text and "Missing formula" in text
    assert "The second line <b>is missing</b>." in text  # the comment as typed, never as markup
    assert "version 1" in text
    save_screenshot(page, "audit-review-rework")
    assert not page.errors, page.errors


def test_a_first_submission_shows_no_previous_reviews(browser_page, labeling_setup):  # noqa: F811
    s = labeling_setup
    submitted(s["annotator"])
    page = open_review(browser_page, s["reviewer"])
    assert not page.locator("#previous-reviews").is_visible()
    assert not page.locator("#open-next").is_visible()
    assert not page.errors, page.errors


def test_a_decision_already_taken_by_another_reviewer_says_so_and_moves_on(browser_page, labeling_setup):  # noqa: F811
    """Two reviewers opened the same (oldest) annotation: the second's decision cannot be stored.
    They are told plainly that it was decided and that their decision was not stored, and get to
    the next one, instead of a raw "annotation: No submitted annotation with this id awaits your review."
    with a Send button that can only fail again."""
    s = labeling_setup
    ann = submitted(s["annotator"])
    second = factories.make_user(roles.REVIEWER, vendor=s["batch"].vendor)
    page = open_review(browser_page, second)
    r = client_for(s["reviewer"]).post("/api/v1/reviews/", {"annotation": ann["id"], "decision": "accept"},
                                       format="json")
    assert r.status_code == 201, r.content

    page.check("#decision-reject")
    page.check("#reason-wrong_region")
    page.click("#btn-send")
    note = page.locator("#messages .note-error").first
    note.wait_for()
    text = note.inner_text()
    assert "already" in text and "accepted" in text, text
    assert "No submitted annotation with this id" not in text
    assert page.locator("#btn-send").is_disabled()
    save_screenshot(page, "audit-review-decided-elsewhere")
    nxt = page.locator("#open-next")
    assert nxt.is_visible()
    assert page.evaluate("() => document.activeElement.id") == "open-next"  # Enter goes on
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Nothing is waiting for your review")
    assert Review.objects.filter(annotation_id=ann["id"]).count() == 1
    assert Annotation.objects.get(pk=ann["id"]).status == Annotation.Status.ACCEPTED
    assert not page.errors, page.errors
