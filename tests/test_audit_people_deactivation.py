"""Audit of people: a deactivated person's work goes back to the others at once, and a
curator cannot switch themselves off through the API (the people page already refused)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from common import roles
from common.services import user_deactivate
from labeling.models import Annotation, Claim, Task
from labeling.services import task_claim_next
from tests import factories

pytestmark = pytest.mark.django_db


def test_deactivating_an_annotator_frees_their_leased_slot(curator_api, vendor):
    leaver = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_batch(vendor=vendor, images=1, overlap=1)
    held = task_claim_next(annotator=leaver)
    assert held.reason == "claimed"

    assert curator_api.post(f"/api/v1/users/{leaver.id}/deactivate/").status_code == 200

    # Before: the lease stayed live for its 30 minutes and the only task was nobody's.
    assert not Claim.objects.filter(annotator=leaver, state=Claim.State.LIVE).exists()
    task = Task.objects.get(pk=held.task.pk)
    assert task.slots_taken == 0 and task.status != Task.Status.IN_PROGRESS
    colleague = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    taken = task_claim_next(annotator=colleague)
    assert taken.reason == "claimed" and taken.task.pk == held.task.pk


def test_deactivating_a_reviewer_drops_their_review_hold(vendor):
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    task = factories.make_batch(vendor=vendor, images=1).tasks.get()
    annotation = Annotation.objects.create(task=task, annotator=annotator, status=Annotation.Status.SUBMITTED,
                                           review_holder=reviewer,
                                           review_held_until=timezone.now() + timedelta(minutes=10))

    user_deactivate(user=reviewer)

    annotation.refresh_from_db()
    assert annotation.review_holder_id is None and annotation.review_held_until is None


def test_an_expired_lease_is_released_once(vendor):
    """A lapsed lease nobody reaped yet still counts in slots_taken: released, it is counted back once."""
    leaver = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_batch(vendor=vendor, images=1, overlap=1)
    held = task_claim_next(annotator=leaver)
    Claim.objects.filter(pk=held.claim.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    user_deactivate(user=leaver)

    assert Task.objects.get(pk=held.task.pk).slots_taken == 0


def test_curator_cannot_deactivate_themselves_through_the_api(curator_api, curator):
    r = curator_api.post(f"/api/v1/users/{curator.id}/deactivate/")
    assert r.status_code == 400 and "user" in r.json(), r.content
    curator.refresh_from_db()
    assert curator.is_active


def test_token_for_a_deactivated_user_is_refused(curator_api, annotator):
    user_deactivate(user=annotator)
    r = curator_api.post(f"/api/v1/users/{annotator.id}/token/")
    # Before: 201 with a key that every request then answered 401.
    assert r.status_code == 400 and "user" in r.json(), r.content


def test_people_page_refuses_a_token_for_a_deactivated_user_with_a_message(client, curator, annotator):
    user_deactivate(user=annotator)
    client.force_login(curator)
    r = client.post(f"/people/{annotator.pk}/token/", follow=True)
    assert r.status_code == 200 and "is deactivated" in r.content.decode()
    assert "new-token" not in r.content.decode()
