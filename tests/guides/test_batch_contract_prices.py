"""The batch's price and the contract's are one number: the batches page, the batch API
and the cost report price the same accepted work alike."""
from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from common import roles
from guides import selectors
from guides import services as guides
from labeling import services as labeling
from labeling.models import Batch
from tests import factories
from tests.guides.test_cost_report_labeling import _label

pytestmark = pytest.mark.django_db


def _people(vendor):
    return (factories.make_user(roles.ANNOTATOR, vendor=vendor), factories.make_user(roles.REVIEWER, vendor=vendor))


def _page(user) -> str:
    client = Client()
    client.force_login(user)
    return client.get("/batches/").content.decode()


def test_a_new_contract_prices_the_vendors_batches_of_the_spec_by_their_kind():
    vendor, spec = factories.make_vendor(), factories.make_spec()
    full = factories.make_batch(spec, vendor, images=1, kind="full", unit_price=D("0.99"))
    latex = factories.make_batch(spec, vendor, images=1, kind="latex", unit_price=D("0.99"))
    other_spec = factories.make_batch(factories.make_spec(), vendor, images=1, unit_price=D("0.99"))

    factories.make_contract(vendor=vendor, spec=spec, price_full=D("0.30"), price_latex=D("0.20"), currency="EUR")

    full.refresh_from_db(), latex.refresh_from_db(), other_spec.refresh_from_db()
    assert (full.unit_price, full.currency) == (D("0.30"), "EUR")
    assert (latex.unit_price, latex.currency) == (D("0.20"), "EUR")
    assert (other_spec.unit_price, other_spec.currency) == (D("0.99"), "USD")


def test_changing_a_contract_price_reprices_its_batches_and_other_terms_leave_them_alone():
    vendor, spec = factories.make_vendor(), factories.make_spec()
    contract = factories.make_contract(vendor=vendor, spec=spec, price_full=D("0.30"))
    batch = factories.make_batch(spec, vendor, images=1)
    assert batch.unit_price == D("0.30")

    guides.contract_update(contract=contract, price_full=D("0.45"))
    batch.refresh_from_db()
    assert batch.unit_price == D("0.45")

    batch.unit_price = D("0.01")  # a raw write the services would never make
    batch.save()
    guides.contract_update(contract=contract, notes="renewed")
    batch.refresh_from_db()
    assert batch.unit_price == D("0.01")


def test_batches_page_and_cost_report_agree_under_a_contract():
    vendor, spec = factories.make_vendor("Acme"), factories.make_spec()
    factories.make_contract(vendor=vendor, spec=spec, price_full=D("0.30"))
    batch = factories.make_batch(spec, vendor, images=3)
    annotator, reviewer = _people(vendor)
    for decision in ("accept", "accept", "reject"):
        _label(annotator, reviewer, decision)

    report, _, _ = selectors.cost_report_for(user=factories.make_user(roles.CURATOR))
    (line,) = report.batches
    assert line.amount == D("0.60")
    html = _page(factories.make_user(roles.VENDOR_MANAGER, vendor=vendor))
    assert f'data-cost="{batch.pk}">0.60 USD' in html


def test_a_batch_without_a_contract_is_in_the_cost_report_at_its_own_price():
    acme, other = factories.make_vendor("Acme"), factories.make_vendor("Other")
    spec = factories.make_spec()
    batch = factories.make_batch(spec, acme, images=2, unit_price=D("0.40"), currency="EUR")
    factories.make_batch(spec, other, images=1, unit_price=D("9.00"))
    annotator, reviewer = _people(acme)
    _label(annotator, reviewer, "accept")

    report, contracts, _ = selectors.cost_report_for(user=factories.make_user(roles.CURATOR))
    assert contracts == []
    lines = {b.batch_id: b for b in report.batches}
    assert (lines[batch.pk].amount, lines[batch.pk].currency, lines[batch.pk].pending) == (D("0.40"), "EUR", 1)
    assert report.totals == {"EUR": D("0.40")} and report.unpriced_total == 0
    (month,) = report.months
    assert (month.unit_price, month.currency, month.accepted) == (D("0.40"), "EUR", 1)

    # a vendor manager sees only their own vendor's batches, by name on the page and in the CSV
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=other)
    mine, _, _ = selectors.cost_report_for(user=manager)
    assert {b.vendor_id for b in mine.batches} == {other.pk}
    client = Client()
    client.force_login(factories.make_user(roles.CURATOR))
    html = client.get("/contracts/report/").content.decode()
    assert "Acme" in html and batch.name in html and "0.4000 EUR" in html
    api = APIClient()
    api.force_authenticate(manager)
    csv = api.get("/api/v1/cost-report/csv/").content.decode()
    assert "Other" in csv and "Acme" not in csv


def test_annotators_see_no_cost_report():
    vendor = factories.make_vendor()
    factories.make_batch(factories.make_spec(), vendor, images=1)
    report, contracts, _ = selectors.cost_report_for(user=factories.make_user(roles.ANNOTATOR, vendor=vendor))
    assert report.batches == [] and contracts == []


def test_the_same_kind_at_two_batch_prices_gets_one_month_line_per_price():
    vendor, spec = factories.make_vendor(), factories.make_spec()
    factories.make_batch(spec, vendor, images=1, unit_price=D("0.10"))
    factories.make_batch(spec, vendor, images=1, unit_price=D("0.20"))
    annotator, reviewer = _people(vendor)
    _label(annotator, reviewer, "accept")
    _label(annotator, reviewer, "accept")
    report, _, _ = selectors.cost_report_for(user=factories.make_user(roles.CURATOR))
    assert sorted((m.unit_price, m.amount) for m in report.months) == [(D("0.10"), D("0.10")), (D("0.20"), D("0.20"))]
    assert report.totals == {"USD": D("0.30")}



def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_a_batch_under_a_contract_takes_its_price_and_refuses_another():
    vendor, spec = factories.make_vendor(), factories.make_spec()
    factories.make_contract(vendor=vendor, spec=spec, price_latex=D("0.20"), currency="EUR")
    for _ in range(2):
        factories.make_image(spec=spec)
    api = _api(factories.make_user(roles.CURATOR))
    body = {"spec": spec.pk, "vendor": vendor.pk, "kind": "latex", "quantity": 1}

    r = api.post("/api/v1/batches/", {**body, "unit_price": "0.50"}, format="json")
    assert r.status_code == 400 and "sets 0.2000 EUR per latex task" in r.json()["unit_price"][0], r.content
    r = api.post("/api/v1/batches/", {**body, "currency": "USD"}, format="json")
    assert r.status_code == 400 and "in EUR" in r.json()["currency"][0], r.content
    assert not Batch.objects.exists()  # nothing half-made

    r = api.post("/api/v1/batches/", body, format="json")
    assert r.status_code == 201, r.content
    assert (r.json()["unit_price"], r.json()["currency"]) == ("0.2000", "EUR")
    r = api.post("/api/v1/batches/", {**body, "unit_price": "0.2", "currency": "eur"}, format="json")
    assert r.status_code == 201, r.content  # the same price, said again, is no conflict


def test_a_batch_without_a_contract_needs_a_price():
    vendor, spec = factories.make_vendor("Acme"), factories.make_spec()
    factories.make_image(spec=spec)
    api = _api(factories.make_user(roles.CURATOR))
    r = api.post("/api/v1/batches/", {"spec": spec.pk, "vendor": vendor.pk, "quantity": 1}, format="json")
    assert r.status_code == 400 and "Acme has no contract" in r.json()["unit_price"][0], r.content
    r = api.post("/api/v1/batches/", {"spec": spec.pk, "vendor": vendor.pk, "quantity": 1, "unit_price": "0.5"},
                 format="json")
    assert r.status_code == 201 and (r.json()["unit_price"], r.json()["currency"]) == ("0.5000", "USD"), r.content


def test_a_batch_under_a_contract_cannot_be_repriced_on_its_own():
    vendor, spec = factories.make_vendor(), factories.make_spec()
    factories.make_contract(vendor=vendor, spec=spec, price_full=D("0.30"))
    batch = factories.make_batch(spec, vendor, images=1)
    api = _api(factories.make_user(roles.CURATOR))
    r = api.patch(f"/api/v1/batches/{batch.pk}/", {"unit_price": "0.99"}, format="json")
    assert r.status_code == 400 and "change the contract" in r.json()["unit_price"][0], r.content
    r = api.patch(f"/api/v1/batches/{batch.pk}/", {"unit_price": "0.3", "name": "renamed"}, format="json")
    assert r.status_code == 200, r.content  # the same price is no change
    batch.refresh_from_db()
    assert (batch.unit_price, batch.name) == (D("0.30"), "renamed")
    with pytest.raises(ValidationError):
        labeling.batch_update(batch=batch, currency="EUR")
    # a batch with no contract keeps its own price, changeable
    loose = factories.make_batch(factories.make_spec(), vendor, images=1, unit_price=D("0.10"))
    assert labeling.batch_update(batch=loose, unit_price=D("0.12")).unit_price == D("0.12")
