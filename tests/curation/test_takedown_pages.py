"""The takedown pages (no browser): the image page's Take down form, the takedowns list."""
from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from common import roles
from curation.models import Image, Takedown
from tests import factories

pytestmark = pytest.mark.django_db

FORM = {"kind": "personal_data", "reason": "The pupil's parent asked for erasure (ticket 4411).",
        "requested_by": "Parent of the pupil"}


@pytest.fixture
def image(spec, source):
    return factories.make_image(spec=spec, source=source, data=factories.png_bytes(120, 60, seed=3))


def test_the_image_page_offers_curators_the_takedown_form(client, curator, image):
    client.force_login(curator)
    page = client.get(f"/images/{image.pk}/").content.decode()
    assert f'action="/images/{image.pk}/takedown/"' in page and "Take down" in page
    assert 'name="reason"' in page and 'name="requested_by"' in page and 'value="copyright"' in page


def test_a_curator_takes_an_image_down_from_its_page(client, curator, image, django_capture_on_commit_callbacks):
    client.force_login(curator)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/images/{image.pk}/takedown/", FORM)
    assert r.status_code == 302 and r["Location"] == "/takedowns/"
    assert not default_storage.exists(image.file) and not default_storage.exists(image.thumbnail)
    listing = client.get("/takedowns/").content.decode()
    assert "Parent of the pupil" in listing and "Personal-data erasure" in listing
    page = client.get(f"/images/{image.pk}/").content.decode()
    assert "Taken down" in page and image.file_url not in page and f'action="/images/{image.pk}/takedown/"' not in page
    grid = client.get("/images/").content.decode()
    assert image.thumbnail_url not in grid and "taken down" in grid


def test_a_bad_form_is_a_400_naming_the_field_and_nothing_is_stored(client, curator, image):
    client.force_login(curator)
    r = client.post(f"/images/{image.pk}/takedown/", {**FORM, "reason": ""})
    assert r.status_code == 400 and 'id="id_reason_errors"' in r.content.decode()
    r = client.post(f"/images/{image.pk}/takedown/", {**FORM, "kind": "whim"})
    assert r.status_code == 400 and 'id="id_kind_errors"' in r.content.decode()
    assert not Takedown.objects.exists() and default_storage.exists(image.file)
    assert Image.objects.get(pk=image.pk).taken_down_at is None


@pytest.mark.parametrize("role", [roles.VENDOR_MANAGER, roles.ANNOTATOR, roles.REVIEWER, roles.MODEL_TEAM])
def test_other_roles_cannot_take_down_nor_list(client, role, image, vendor):
    user = factories.make_user(role, vendor=vendor if role != roles.MODEL_TEAM else None)
    client.force_login(user)
    assert client.post(f"/images/{image.pk}/takedown/", FORM).status_code in (403, 404)
    assert client.get("/takedowns/").status_code in (302, 403, 404)
    assert not Takedown.objects.exists() and default_storage.exists(image.file)
    if role == roles.MODEL_TEAM:  # may read the image page, without the form
        assert 'name="requested_by"' not in client.get(f"/images/{image.pk}/").content.decode()
