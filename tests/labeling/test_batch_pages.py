"""The curator's batch pages: /batches/new/ makes a batch through `services.batch_create`,
/batches/<id>/edit/ changes one through `services.batch_update`. A refusal (of the form or of
the service) answers 400 with the form as sent and each error beside its field, and stores
nothing; anybody but a curator is refused, as on the other curator pages."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.test import Client
from rest_framework.test import APIClient

from common import roles
from curation.models import DatasetSpec
from labeling import services
from labeling.models import Annotation, Batch, Task
from tests import factories
from tests.factories import quad
from tests.pages import field_errors, text

pytestmark = pytest.mark.django_db

NEW = "/batches/new/"
MATCHES = "/batches/new/matches/"


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def cur(curator) -> Client:
    return page_client(curator)


@pytest.fixture
def images(spec, source):
    """Four images of the spec: three printed, one handwritten."""
    return [factories.make_image(spec=spec, source=source, categories=cats, data=factories.png_bytes(200, 100))
            for cats in (["printed"], ["printed"], ["printed", "shadow"], ["handwritten"])]


def form_data(spec, vendor, /, **overrides) -> dict:
    data = {"spec": spec.pk, "vendor": vendor.pk, "name": "Homework round 1", "kind": "full", "quantity": "3",
            "overlap": "1", "unit_price": "0.20", "currency": "USD", "deadline": "2026-12-31",
            "categories": ["printed"], "source": "", "only_unlabeled": "on", "lowest_confidence_first": "on",
            "status": "active"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def message_texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# ---------------------------------------------------------------- the form


def test_new_batch_page_offers_open_specs_active_vendors_and_preselects_the_spec(cur, spec, vendor, images):
    closed = factories.make_spec(name="Old closed spec", status=DatasetSpec.Status.CLOSED)
    dormant = services.vendor_create(name="Dormant Ltd", active=False)
    r = cur.get(NEW, {"spec": spec.pk})
    assert r.status_code == 200
    html = r.content.decode()
    assert f'<option value="{spec.pk}" selected>' in html
    assert closed.name not in html and dormant.name not in html and vendor.name in html
    # the chosen spec's categories as checkboxes, and every open spec's for the script
    assert 'name="categories" value="printed"' in html and 'name="categories" value="whiteout"' in html
    config = json.loads(html.split('id="batch-form-config" type="application/json">')[1].split("</script>")[0])
    assert {c["slug"] for c in config["categories"][str(spec.pk)]} >= {"printed", "handwritten"}
    assert str(closed.pk) not in config["categories"]
    assert config["matchesUrl"] == MATCHES
    assert "<script>" not in html  # CSP: no inline script
    assert "js/labeling/batch_form.js" in html


def test_curator_creates_a_batch_with_its_own_price_and_is_told_how_many_tasks(cur, curator, spec, vendor, images):
    r = cur.post(NEW, form_data(spec, vendor), follow=True)
    assert r.redirect_chain == [("/batches/", 302)]
    batch = Batch.objects.get()
    assert (batch.name, batch.kind, batch.unit_price, batch.currency, batch.agreed_quantity, batch.status) == (
        "Homework round 1", "full", Decimal("0.2000"), "USD", 3, "active")
    assert batch.deadline == dt.date(2026, 12, 31) and batch.created_by == curator
    assert batch.filters == {"categories": ["printed"], "source": None, "only_unlabeled": True,
                             "lowest_confidence_first": True}
    assert set(batch.tasks.values_list("image_id", flat=True)) == {i.pk for i in images[:3]}
    assert message_texts(r) == ["Batch Homework round 1 created with 3 tasks."]
    assert "Homework round 1" in text(r)


def test_a_batch_under_a_contract_takes_the_contract_price_and_the_form_shows_it(cur, spec, vendor, images):
    factories.make_contract(vendor=vendor, spec=spec, price_latex=Decimal("0.25"), currency="EUR")
    html = cur.get(NEW).content.decode()
    config = json.loads(html.split('id="batch-form-config" type="application/json">')[1].split("</script>")[0])
    assert config["contracts"][f"{spec.pk}:{vendor.pk}"]["currency"] == "EUR"
    assert config["contracts"][f"{spec.pk}:{vendor.pk}"]["prices"]["latex"] == "0.2500"
    r = cur.post(NEW, form_data(spec, vendor, kind="latex", unit_price="", currency="", status="paused"))
    assert r.status_code == 302, field_errors(r, "id_unit_price")
    batch = Batch.objects.get()
    assert (batch.unit_price, batch.currency, batch.status) == (Decimal("0.25"), "EUR", "paused")


def test_a_refused_form_under_a_contract_says_the_contract_price_beside_the_price(cur, spec, vendor, images):
    factories.make_contract(vendor=vendor, spec=spec, price_full=Decimal("0.30"))
    r = cur.post(NEW, form_data(spec, vendor, unit_price="0.99"))
    assert r.status_code == 400
    assert "sets 0.3000 USD per full task" in field_errors(r, "id_unit_price")
    assert "Contract price: 0.3000 USD per task" in text(r)  # the hint, worked out on the server too
    assert not Batch.objects.exists() and not Task.objects.exists()


@pytest.mark.parametrize(("overrides", "field", "expected"), [
    ({"unit_price": ""}, "unit_price", "has no contract for"),
    ({"unit_price": "-1"}, "unit_price", "greater than or equal to 0"),
    ({"unit_price": "cheap"}, "unit_price", "Enter a number"),
    ({"quantity": "0"}, "quantity", "greater than or equal to 1"),
    ({"quantity": "many"}, "quantity", "Enter a whole number"),
    ({"quantity": ""}, "quantity", "required"),
    ({"overlap": "11"}, "overlap", "less than or equal to 10"),
    ({"currency": "US"}, "currency", "three-letter"),
    ({"currency": "U$D"}, "currency", "three-letter"),
    ({"deadline": "next week"}, "deadline", "Enter a valid date"),
    ({"kind": "everything"}, "kind", "Select a valid choice"),
    ({"status": "closed"}, "status", "Select a valid choice"),
    ({"categories": ["nonsense"]}, "categories", "nonsense"),
    ({"categories": ["whiteout"]}, "quantity", "No image of the spec matches this filter."),
    ({"spec": "999999"}, "spec", "Select a valid choice"),
    ({"vendor": ""}, "vendor", "required"),
])
def test_bad_input_answers_400_with_the_error_beside_its_field_and_stores_nothing(cur, spec, vendor, images,
                                                                                  overrides, field, expected):
    r = cur.post(NEW, form_data(spec, vendor, **overrides))
    assert r.status_code == 400
    assert expected in field_errors(r, f"id_{field}"), text(r)
    assert not Batch.objects.exists() and not Task.objects.exists()
    html = r.content.decode()
    assert 'value="Homework round 1"' in html  # what the curator typed is kept
    assert f'<option value="{vendor.pk}" selected>' in html or overrides.get("vendor") == ""


def test_a_source_without_images_in_the_spec_is_refused_beside_the_source(cur, spec, vendor, images):
    other = factories.make_source(name="Other photos")
    r = cur.post(NEW, form_data(spec, vendor, source=str(other.pk)))
    assert r.status_code == 400
    assert f"has no image from {other.name}" in field_errors(r, "id_source")
    assert not Batch.objects.exists()


def test_closed_specs_and_switched_off_vendors_are_refused_beside_their_field(cur, spec, vendor, images):
    dormant = services.vendor_create(name="Dormant Ltd", active=False)
    r = cur.post(NEW, form_data(spec, dormant))
    assert r.status_code == 400 and "Select a valid choice" in field_errors(r, "id_vendor")
    closed = factories.make_spec(name="Closed spec", status=DatasetSpec.Status.CLOSED)
    r = cur.post(NEW, form_data(closed, vendor))
    assert r.status_code == 400 and "Select a valid choice" in field_errors(r, "id_spec")
    assert not Batch.objects.exists()


def test_a_refused_form_keeps_the_chosen_categories_ticked(cur, spec, vendor, images):
    r = cur.post(NEW, form_data(spec, vendor, categories=["printed", "shadow"], quantity="0"))
    assert r.status_code == 400
    html = r.content.decode()
    assert 'name="categories" value="printed" checked' in html and 'name="categories" value="shadow" checked' in html
    assert 'name="categories" value="handwritten" checked' not in html


def test_fewer_matching_images_than_asked_makes_a_smaller_batch_and_says_so(cur, spec, vendor, images):
    r = cur.post(NEW, form_data(spec, vendor, quantity="10"), follow=True)
    assert r.status_code == 200
    batch = Batch.objects.get()
    assert batch.agreed_quantity == 3 and batch.tasks.count() == 3
    assert message_texts(r) == ["Batch Homework round 1 created with 3 tasks: only 3 images match the filter, "
                                "fewer than the 10 asked for; its agreed quantity is 3."]


def test_an_empty_name_takes_the_services_default(cur, spec, vendor, images):
    assert cur.post(NEW, form_data(spec, vendor, name="")).status_code == 302
    assert Batch.objects.get().name == f"{spec.name} for {vendor.name}"


# ---------------------------------------------------------------- the live count


def test_matches_counts_images_of_the_filter_not_yet_in_a_task(cur, spec, vendor, images):
    assert cur.get(MATCHES, {"spec": spec.pk, "categories": "printed"}).json() == {"count": 3, "more": False}
    assert cur.get(MATCHES, {"spec": spec.pk}).json()["count"] == 4
    factories.make_batch(spec, vendor, images=0, quantity=2, categories=["printed"])
    assert cur.get(MATCHES, {"spec": spec.pk, "categories": "printed"}).json()["count"] == 1
    assert cur.get(MATCHES, {"spec": spec.pk, "categories": "printed", "only_unlabeled": "0"}).json()["count"] == 3
    assert cur.get(MATCHES, {"spec": spec.pk, "categories": ["printed", "handwritten"]}).json()["count"] == 2


def test_matches_answers_400_for_a_filter_it_cannot_read(cur, spec, images):
    assert cur.get(MATCHES).status_code == 400
    assert cur.get(MATCHES, {"spec": "x"}).status_code == 400
    assert cur.get(MATCHES, {"spec": 999999}).status_code == 400
    assert cur.get(MATCHES, {"spec": spec.pk, "source": "x"}).status_code == 400
    for bad in ("chalkboard", "print\x00ed"):  # not the spec's; a NUL byte PostgreSQL refuses in text
        r = cur.get(MATCHES, {"spec": spec.pk, "categories": ["printed", bad]})
        assert r.status_code == 400 and "categories" in r.json(), r.content


# ---------------------------------------------------------------- who may


@pytest.mark.parametrize("role", [roles.VENDOR_MANAGER, roles.ANNOTATOR, roles.REVIEWER, roles.MODEL_TEAM])
def test_only_curators_open_the_batch_pages(role, spec, vendor, images):
    batch = factories.make_batch(spec, vendor, images=1)
    user = factories.make_user(role, vendor=vendor if role in roles.VENDOR_ROLES else None)
    client = page_client(user)
    for url in (NEW, f"/batches/{batch.pk}/edit/", f"{MATCHES}?spec={spec.pk}"):
        assert client.get(url).status_code == 403, url
    assert client.post(NEW, form_data(spec, vendor)).status_code == 403
    assert client.post(f"/batches/{batch.pk}/edit/", {"name": "Mine now", "status": "closed",
                                                      "agreed_quantity": "1"}).status_code == 403
    assert Batch.objects.count() == 1
    batch.refresh_from_db()
    assert (batch.name, batch.status) != ("Mine now", "closed")


def test_anonymous_users_are_sent_to_the_login_page(spec, vendor, images):
    batch = factories.make_batch(spec, vendor, images=1)
    for url in (NEW, f"/batches/{batch.pk}/edit/", MATCHES):
        r = Client().get(url)
        assert r.status_code == 302 and "/accounts/login/" in r["Location"], url


def test_the_overview_links_new_batch_and_edit_for_curators_only(cur, spec, vendor, images):
    batch = factories.make_batch(spec, vendor, images=1)
    html = cur.get("/batches/").content.decode()
    assert 'href="/batches/new/"' in html and f'href="/batches/{batch.pk}/edit/"' in html
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    html = page_client(manager).get("/batches/").content.decode()
    assert batch.name in html
    assert "/batches/new/" not in html and "/edit/" not in html


def test_the_spec_page_links_a_new_batch_of_that_spec(cur, spec):
    html = cur.get(f"/specs/{spec.pk}/").content.decode()
    assert f'href="/batches/new/?spec={spec.pk}"' in html


# ---------------------------------------------------------------- editing


def test_the_edit_page_changes_status_deadline_name_and_agreed_quantity(cur, spec, vendor, images):
    batch = factories.make_batch(spec, vendor, images=2, quantity=6, deadline=dt.date(2026, 6, 30))
    url = f"/batches/{batch.pk}/edit/"
    html = cur.get(url).content.decode()
    assert 'value="2026-06-30"' in html and f'value="{batch.name}"' in html
    r = cur.post(url, {"name": "Renamed", "status": "paused", "deadline": "2026-07-15", "unit_price": "0.3",
                       "currency": "eur", "agreed_quantity": "5"}, follow=True)
    assert r.redirect_chain == [("/batches/", 302)], text(r)
    assert message_texts(r) == ["Batch Renamed saved."]
    batch.refresh_from_db()
    assert (batch.name, batch.status, batch.deadline, batch.unit_price, batch.currency, batch.agreed_quantity) == (
        "Renamed", "paused", dt.date(2026, 7, 15), Decimal("0.3"), "EUR", 5)


def test_the_edit_page_clears_a_deadline(cur, spec, vendor, images):
    batch = factories.make_batch(spec, vendor, images=1, deadline=dt.date(2026, 6, 30))
    r = cur.post(f"/batches/{batch.pk}/edit/", {"name": batch.name, "status": "active", "deadline": "",
                                                "unit_price": "0.25", "currency": "USD", "agreed_quantity": "1"})
    assert r.status_code == 302
    batch.refresh_from_db()
    assert batch.deadline is None


@pytest.mark.parametrize(("overrides", "field", "expected"), [
    ({"agreed_quantity": "3"}, "agreed_quantity", "The batch has 2 tasks; it cannot deliver more."),
    ({"agreed_quantity": "0"}, "agreed_quantity", "greater than or equal to 1"),
    ({"status": "finished"}, "status", "Select a valid choice"),
    ({"deadline": "soon"}, "deadline", "Enter a valid date"),
    ({"currency": "EURO"}, "currency", "three"),
    ({"unit_price": ""}, "unit_price", "required"),
    ({"name": ""}, "name", "required"),
])
def test_a_refused_edit_answers_400_beside_the_field_and_changes_nothing(cur, spec, vendor, images,
                                                                         overrides, field, expected):
    batch = factories.make_batch(spec, vendor, images=2)
    data = {"name": "Renamed", "status": "paused", "deadline": "2026-07-15", "unit_price": "0.25",
            "currency": "USD", "agreed_quantity": "2", **overrides}
    r = cur.post(f"/batches/{batch.pk}/edit/", data)
    assert r.status_code == 400
    assert expected in field_errors(r, f"id_{field}"), text(r)
    before = (batch.name, batch.status, batch.deadline, batch.agreed_quantity)
    batch.refresh_from_db()
    assert (batch.name, batch.status, batch.deadline, batch.agreed_quantity) == before
    if field != "name":
        assert 'value="Renamed"' in r.content.decode()  # the input is kept


def test_a_batch_under_a_contract_shows_its_price_as_the_contracts_and_keeps_it(cur, spec, vendor, images):
    factories.make_contract(vendor=vendor, spec=spec, price_full=Decimal("0.30"))
    batch = factories.make_batch(spec, vendor, images=2)
    url = f"/batches/{batch.pk}/edit/"
    html = cur.get(url).content.decode()
    assert "priced by the contract" in html.lower()
    assert 'name="unit_price"' in html and "disabled" in html.split('name="unit_price"')[1].split(">")[0]
    r = cur.post(url, {"name": "Renamed", "status": "active", "unit_price": "9.99", "currency": "JPY",
                       "agreed_quantity": "2"})
    assert r.status_code == 302
    batch.refresh_from_db()
    assert (batch.name, batch.unit_price, batch.currency) == ("Renamed", Decimal("0.30"), "USD")


def test_an_unknown_batch_is_404(cur):
    assert cur.get("/batches/999999/edit/").status_code == 404


def test_closing_a_batch_on_the_edit_page_ends_its_work(cur, spec, vendor, images, annotator):
    batch = factories.make_batch(spec, vendor, images=2)
    api = APIClient()
    api.force_authenticate(annotator)
    task_id = api.post("/api/v1/tasks/next/").json()["task"]["id"]
    url = f"/batches/{batch.pk}/edit/"
    assert "nothing more is saved" in text(cur.get(url))  # the status's help says what closing means
    r = cur.post(url, {"name": batch.name, "status": "closed", "unit_price": "0.25", "currency": "USD",
                       "agreed_quantity": "2", "deadline": "2020-01-01"})
    assert r.status_code == 302
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CLOSED
    # the annotator's open work is refused, the queue hands out nothing more of it
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}, format="json")
    assert r.status_code == 400 and "is closed" in r.json()["task"][0]
    assert not Annotation.objects.exists()
    assert api.post("/api/v1/tasks/next/").json()["task"] is None
    # the overview shows it closed, not overdue though its deadline is past; My work no longer lists it
    overview = cur.get("/batches/").content.decode()
    row = overview.split(f'data-batch="{batch.pk}"')[1].split("</tr>")[0]
    assert "Closed" in row and "overdue" not in row
    assert batch.name not in page_client(annotator).get("/work/").content.decode()


def test_a_closed_batch_can_be_reopened_on_the_edit_page(cur, spec, vendor, images, annotator):
    """`batch_update` allows any status: a batch closed by mistake is set active again, with a
    reason (tests/labeling/test_batch_history.py: none given is refused)."""
    batch = factories.make_batch(spec, vendor, images=1)
    services.batch_update(batch=batch, status=Batch.Status.CLOSED)
    r = cur.post(f"/batches/{batch.pk}/edit/", {"name": batch.name, "status": "active", "unit_price": "0.25",
                                                "currency": "USD", "agreed_quantity": "1",
                                                "reason": "Closed by mistake"})
    assert r.status_code == 302
    api = APIClient()
    api.force_authenticate(annotator)
    assert api.post("/api/v1/tasks/next/").json()["task"]["batch"] == batch.pk
