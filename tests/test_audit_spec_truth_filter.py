"""`has_truth` on the image list tells which images carry a known answer, that is which tasks
are gold. Tasks hide `is_gold` from everybody but curators, so annotators cannot single out the
tasks their accuracy is measured on: the image list must not tell them either."""
from __future__ import annotations

import pytest

from common import roles
from curation.models import Image
from labeling.services import batch_create
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def vendor_with_gold(spec, source):
    from decimal import Decimal

    vendor = factories.make_vendor()
    factories.make_image(spec=spec, source=source, truth_latex="x^2", data=factories.png_bytes(200, 100))
    factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100))
    batch_create(spec=spec, vendor=vendor, name="B", unit_price=Decimal("0.25"), quantity=2)
    assert Image.objects.filter(tasks__batch__vendor=vendor).count() == 2
    return vendor


@pytest.mark.parametrize("role", [roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER])
def test_vendor_users_cannot_pick_out_gold_images_by_has_truth(api, vendor_with_gold, role):
    api.force_authenticate(factories.make_user(role, vendor=vendor_with_gold))
    assert api.get("/api/v1/images/").json()["count"] == 2
    r = api.get("/api/v1/images/?has_truth=true")
    assert r.status_code == 400, r.json()
    assert "has_truth" in r.json()


def test_curators_still_filter_by_has_truth(curator_api, vendor_with_gold):
    assert curator_api.get("/api/v1/images/?has_truth=true").json()["count"] == 1
    assert curator_api.get("/api/v1/images/?has_truth=false").json()["count"] == 1


def test_model_team_page_neither_offers_the_filter_nor_marks_truth(client, model_team, spec, source):
    factories.make_image(spec=spec, source=source, truth_latex="x^2", filename="gold.png")
    client.force_login(model_team)
    page = client.get("/images/").content.decode()
    assert "gold.png" in page
    assert 'name="has_truth"' not in page and "badge ok\">truth" not in page
    assert client.get("/images/?has_truth=true").status_code in (200, 400)
    assert "gold.png" not in client.get("/images/?has_truth=true").content.decode()


def test_image_browser_past_the_end_shows_the_last_page(curator):
    from django.test import Client

    spec = factories.make_spec()
    for _ in range(5):
        factories.make_image(spec=spec)
    client = Client()
    client.force_login(curator)
    r = client.get("/images/", {"spec": spec.pk, "limit": 2, "offset": 1000000})
    assert r.status_code == 200
    assert (r.context["first"], r.context["last"], r.context["count"]) == (5, 5, 5)
    assert len(r.context["images"]) == 1 and r.context["prev_url"]
