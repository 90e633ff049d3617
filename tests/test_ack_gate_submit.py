"""The work guide gate holds at hand-in too, not only when a task is claimed: an annotator
who holds a lease (or a draft, or rework) when a new guide version is published may keep
saving drafts, but hands nothing in until they have acknowledged that version. The API
answers a 400 with the sentence `tasks/next/` reports for the same gate (the version to
read and the guide's link). Reviews are not gated."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from common import roles
from guides.services import guide_acknowledge, guide_version_create, guide_version_publish
from labeling import gating, services
from labeling.models import Annotation, Review, Task
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(vendor, spec):
    return factories.make_batch(spec, vendor, images=3)


@pytest.fixture
def reviewer(vendor):
    return factories.make_user(roles.REVIEWER, vendor=vendor)


@pytest.fixture
def acknowledged(spec, annotator):
    """The spec's guide, version 1 published and acknowledged by the annotator."""
    v1 = factories.make_guide(spec=spec)
    guide_acknowledge(version=v1, user=annotator)
    return v1


def _publish_new_version(v1):
    v2 = guide_version_create(guide=v1.guide, body_md="Changed rules", created_by=v1.created_by)
    return guide_version_publish(version=v2, by=v1.created_by)


def _claim(api) -> int:
    body = api.post("/api/v1/tasks/next/").json()
    assert body["task"] is not None, body
    return body["task"]["id"]


def _hold_message(v2) -> str:
    return f"version {v2.number} of the work guide"


def test_a_new_guide_version_blocks_the_hand_in_of_a_held_draft_until_acknowledged(batch, annotator, acknowledged):
    api = client_for(annotator)
    task_id = _claim(api)
    draft = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()]}, format="json")
    assert draft.status_code == 201, draft.content
    v2 = _publish_new_version(acknowledged)

    r = api.post(f"/api/v1/annotations/{draft.json()['id']}/submit/", {"version": 1}, format="json")
    assert r.status_code == 400, r.content
    [message] = r.json()["guide"]
    assert _hold_message(v2) in message and f"/guides/{v2.guide_id}/" in message
    assert message == gating.guide_acknowledgement_missing(annotator=annotator, batch=batch, handing_in=True)
    assert Annotation.objects.get().status == Annotation.Status.DRAFT

    # Drafts are still saved, so no work is lost meanwhile.
    r = api.put(f"/api/v1/annotations/{draft.json()['id']}/", {"version": 1, "regions": [quad(latex="y")]},
                format="json")
    assert r.status_code == 200 and r.json()["version"] == 2, r.content
    # Handing in with the save is refused the same way, and leaves the draft as it was.
    r = api.put(f"/api/v1/annotations/{draft.json()['id']}/", {"version": 2, "regions": [quad()], "submit": True},
                format="json")
    assert r.status_code == 400 and _hold_message(v2) in r.json()["guide"][0], r.content
    assert (Annotation.objects.get().version, Annotation.objects.get().status) == (2, Annotation.Status.DRAFT)

    guide_acknowledge(version=v2, user=annotator)
    r = api.post(f"/api/v1/annotations/{draft.json()['id']}/submit/", {"version": 2}, format="json")
    assert r.status_code == 200 and r.json()["status"] == Annotation.Status.SUBMITTED, r.content
    assert Task.objects.get(pk=task_id).status == Task.Status.SUBMITTED


def test_the_labeling_page_says_on_opening_which_guide_version_to_read_first(batch, annotator, acknowledged):
    from django.test import Client

    task_id = _claim(client_for(annotator))
    page = Client()
    page.force_login(annotator)
    assert 'id="guide-hold"' not in page.get(f"/label/{task_id}/").content.decode()
    v2 = _publish_new_version(acknowledged)
    html = page.get(f"/label/{task_id}/").content.decode()
    assert 'id="guide-hold"' in html and _hold_message(v2) in html and f'href="/guides/{v2.guide_id}/"' in html
    guide_acknowledge(version=v2, user=annotator)
    assert 'id="guide-hold"' not in page.get(f"/label/{task_id}/").content.decode()


def test_a_first_answer_submitted_at_once_is_refused_but_may_be_saved_as_a_draft(batch, annotator, acknowledged):
    api = client_for(annotator)
    task_id = _claim(api)
    v2 = _publish_new_version(acknowledged)

    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}, format="json")
    assert r.status_code == 400, r.content
    assert _hold_message(v2) in r.json()["guide"][0] and "task" not in r.json()  # not the page's "already saved"
    assert not Annotation.objects.exists()
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()]}, format="json")
    assert r.status_code == 201 and r.json()["status"] == Annotation.Status.DRAFT, r.content


def test_the_submit_service_refuses_rework_after_a_new_version(batch, annotator, reviewer, acknowledged):
    api = client_for(annotator)
    task_id = _claim(api)
    done = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}, format="json")
    assert done.status_code == 201, done.content
    annotation = Annotation.objects.get()
    services.review_create(annotation=annotation, reviewer=reviewer, decision=Review.Decision.REJECT,
                           reasons=[Review.Reason.LATEX_ERROR])
    v2 = _publish_new_version(acknowledged)

    annotation.refresh_from_db()
    with pytest.raises(ValidationError) as exc:
        services.annotation_submit(annotation=annotation, by=annotator, version=annotation.version)
    assert _hold_message(v2) in exc.value.message_dict["guide"][0]
    assert Annotation.objects.get().status == Annotation.Status.REJECTED


def test_reviews_are_not_gated_by_the_annotators_guide(batch, annotator, reviewer, acknowledged):
    api = client_for(annotator)
    task_id = _claim(api)
    done = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}, format="json")
    assert done.status_code == 201, done.content
    _publish_new_version(acknowledged)  # neither the annotator nor the reviewer has read it
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": done.json()["id"], "decision": "accept"},
                                  format="json")
    assert r.status_code == 201, r.content


def test_a_spec_without_a_published_guide_hands_in_as_before(batch, annotator):
    api = client_for(annotator)
    task_id = _claim(api)
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}, format="json")
    assert r.status_code == 201 and r.json()["status"] == Annotation.Status.SUBMITTED, r.content


@pytest.mark.browser
@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the live server must see the rows
def test_the_labeling_page_keeps_the_answer_as_a_draft_and_links_the_guide_to_read(browser_page, vendor, spec,
                                                                                   annotator):
    from tests.browser.test_labeling_ui import drag, open_next_task, press, to_screen, type_latex

    factories.make_batch(spec, vendor, images=1)
    v1 = factories.make_guide(spec=spec)
    guide_acknowledge(version=v1, user=annotator)
    page = browser_page(annotator)
    task_id = open_next_task(page)
    v2 = _publish_new_version(v1)  # while the annotator works on the task they hold

    press(page, "r")
    drag(page, to_screen(page, 20, 20), to_screen(page, 80, 50))
    type_latex(page, "x^{2}")
    page.click("#btn-submit")
    note = page.locator("#messages .note-error", has_text=f"version {v2.number} of the work guide")
    note.wait_for()
    assert "saved as a draft" in note.inner_text()
    assert note.get_by_role("link", name="Open the guide").get_attribute("href") == f"/guides/{v2.guide_id}/"
    assert f"/label/{task_id}/" in page.url and not page.errors
    annotation = Annotation.objects.get(task_id=task_id)
    assert annotation.status == Annotation.Status.DRAFT and annotation.current.regions.count() == 1
