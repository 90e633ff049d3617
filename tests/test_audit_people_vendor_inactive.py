"""Audit of people: a vendor switched off (its `active` box in the admin) stops its people
working, and takes no new people."""
import pytest
from django.test import Client
from rest_framework.test import APIClient

from common import roles
from common.services import api_token_rotate
from labeling.models import VendorMembership
from tests import factories

pytestmark = pytest.mark.django_db


def _switch_off(vendor):
    vendor.active = False
    vendor.save(update_fields=["active"])


def test_member_token_stops_working_when_the_vendor_is_switched_off(vendor):
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_batch(vendor=vendor, images=1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_rotate(user=annotator).key}")
    assert api.post("/api/v1/tasks/next/").status_code == 200

    _switch_off(vendor)

    # Before: 200, and the annotator kept taking the vendor's tasks.
    assert api.get("/api/v1/users/me/").status_code == 401
    assert api.post("/api/v1/tasks/next/").status_code == 401


def test_member_session_loses_vendor_roles_when_the_vendor_is_switched_off(vendor):
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_batch(vendor=vendor, images=1)
    _switch_off(vendor)
    client = Client()
    client.force_login(annotator)
    assert client.get("/").status_code == 403  # the no-role page, not the work page
    assert client.post("/api/v1/tasks/next/").status_code == 400


def test_vendor_roles_come_back_with_the_vendor(vendor):
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    _switch_off(vendor)
    assert not roles.has_role(manager, roles.VENDOR_MANAGER)
    vendor.active = True
    vendor.save(update_fields=["active"])
    manager.refresh_from_db()
    manager._mathset_roles = None
    manager.__dict__.pop("_mathset_vendor", None)
    assert roles.has_role(manager, roles.VENDOR_MANAGER)


def test_curator_cannot_create_people_in_a_switched_off_vendor(curator_api, vendor):
    _switch_off(vendor)
    r = curator_api.post("/api/v1/users/", {"username": "late", "password": "long-enough-pw",
                                            "role": "annotator", "vendor": vendor.id})
    assert r.status_code == 400 and "vendor" in r.json(), r.content
    assert not VendorMembership.objects.filter(user__username="late").exists()


def test_curator_cannot_add_members_to_a_switched_off_vendor(curator_api, vendor):
    _switch_off(vendor)
    r = curator_api.post(f"/api/v1/vendors/{vendor.id}/members/", {"username": "late", "password": "long-enough-pw",
                                                                   "role": "annotator"})
    assert r.status_code == 400 and "vendor" in r.json(), r.content


def test_a_switched_off_vendors_people_see_none_of_its_work_and_cannot_save_held_work(vendor):
    """Its people's browser sessions still listed the vendor's batches and tasks, and a lease
    taken before the switch could still be saved and handed in."""
    from labeling import selectors
    from labeling.services import task_claim_next
    from tests.factories import quad

    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_batch(vendor=vendor, images=1)
    task = task_claim_next(annotator=annotator).task
    _switch_off(vendor)
    annotator = type(annotator).objects.get(pk=annotator.pk)  # a new request: nothing cached
    assert not selectors.batches_visible_to(annotator).exists()
    assert not selectors.tasks_visible_to(annotator).exists()
    client = Client()
    client.force_login(annotator)
    r = client.post("/api/v1/annotations/", {"task": task.pk, "regions": [quad()], "submit": True},
                    content_type="application/json")
    assert r.status_code in (400, 403, 404), r.content
    from labeling.models import Annotation

    assert not Annotation.objects.exists()


def test_a_password_like_the_username_is_refused(curator_api):
    r = curator_api.post("/api/v1/users/", {"username": "margarethe", "password": "margarethe1",
                                            "role": "curator"})
    assert r.status_code == 400 and "password" in r.json(), r.content
