"""The cost report on a fixture with known answers: accepted tasks times the
contract price, rejected work unpaid, per batch, per month, per currency, with
pace warnings; and the contract API's bad input."""
import csv
import datetime as dt
import io
from decimal import Decimal

import pytest

from guides.costs import BatchInfo, TaskRow, Terms, cost_report, cost_report_csv
from tests import factories

D = Decimal
V1, V2, S1, S2 = 1, 2, 10, 20
TERMS = [
    Terms(vendor_id=V1, spec_id=S1, currency="USD",
          prices={"regions": D("0.10"), "latex": D("0.25"), "full": D("0.30")}, deadline=dt.date(2026, 6, 30)),
    Terms(vendor_id=V2, spec_id=S1, currency="KRW",
          prices={"regions": D("100"), "latex": D("250"), "full": D("320")}, deadline=dt.date(2026, 6, 30)),
]


def row(vendor, spec, kind, status, batch, month=None, count=1):
    return TaskRow(vendor_id=vendor, spec_id=spec, kind=kind, status=status, batch_id=batch,
                   accepted_on=dt.date(2026, month, 15) if month else None, count=count)


ROWS = [
    # batch 1 (V1, S1): 10 full accepted in Jan, 5 full accepted in Feb, 4 rejected, 6 pending
    row(V1, S1, "full", "accepted", 1, 1, 10),
    row(V1, S1, "full", "accepted", 1, 2, 5),
    row(V1, S1, "full", "rejected", 1, count=4),
    row(V1, S1, "full", "submitted", 1, count=6),
    # batch 2 (V1, S1): 20 latex accepted in Feb, 3 regions accepted in Feb, 1 rejected
    row(V1, S1, "latex", "accepted", 2, 2, 20),
    row(V1, S1, "regions", "accepted", 2, 2, 3),
    row(V1, S1, "latex", "rejected", 2),
    # batch 3 (V2, S1): 7 full accepted in Feb, priced in KRW
    row(V2, S1, "full", "accepted", 3, 2, 7),
    # batch 4 (V1, S2): no contract for that spec: counted, not priced
    row(V1, S2, "full", "accepted", 4, 3, 2),
]
BATCHES = [
    # 100 tasks from Jan 1 to Apr 11 (100 days): by Mar 2 (60 days) 60 are due; 15 are done -> behind.
    BatchInfo(batch_id=1, name="b1", vendor_id=V1, spec_id=S1, target=100, started_on=dt.date(2026, 1, 1),
              deadline=dt.date(2026, 4, 11)),
    # 23 of 30 done, and no deadline of its own: the contract's (June 30) applies; 60/180 days -> 10 due: on pace.
    BatchInfo(batch_id=2, name="b2", vendor_id=V1, spec_id=S1, target=30, started_on=dt.date(2026, 1, 1)),
    # Deadline passed with 7 of 8 done: overdue.
    BatchInfo(batch_id=3, name="b3", vendor_id=V2, spec_id=S1, target=8, started_on=dt.date(2026, 1, 1),
              deadline=dt.date(2026, 2, 28)),
]
TODAY = dt.date(2026, 3, 2)


@pytest.fixture
def report():
    return cost_report(rows=ROWS, contracts=TERMS, batches=BATCHES, today=TODAY)


def test_batch_totals_pay_accepted_work_only(report):
    lines = {b.batch_id: b for b in report.batches}
    assert lines[1].amount == D("4.50")          # 15 x 0.30; 4 rejected and 6 pending unpaid
    assert (lines[1].rejected, lines[1].pending) == (4, 6)
    assert lines[2].amount == D("5.30")          # 20 x 0.25 + 3 x 0.10
    assert lines[2].accepted == {"regions": 3, "latex": 20, "full": 0}
    assert lines[3].amount == D("2240") and lines[3].currency == "KRW"
    assert lines[4].currency is None and lines[4].unpriced == 2 and lines[4].amount == 0


def test_totals_are_per_currency_never_mixed(report):
    assert report.totals == {"KRW": D("2240"), "USD": D("9.80")}
    assert report.rejected_total == 5
    assert report.unpriced_total == 2


def test_month_lines(report):
    months = {(m.month, m.vendor_id, m.kind): (m.accepted, m.amount) for m in report.months}
    assert months == {
        ("2026-01", V1, "full"): (10, D("3.00")),
        ("2026-02", V1, "full"): (5, D("1.50")),
        ("2026-02", V1, "latex"): (20, D("5.00")),
        ("2026-02", V1, "regions"): (3, D("0.30")),
        ("2026-02", V2, "full"): (7, D("2240")),
        ("2026-03", V1, "full"): (2, D("0")),
    }


def test_pace_warnings_for_batches_behind_their_deadline(report):
    warnings = {w.batch_id: w for w in report.pace_warnings}
    assert set(warnings) == {1, 3}
    assert (warnings[1].done, warnings[1].expected_by_today, warnings[1].overdue) == (15, 60, False)
    assert warnings[1].days_left == 40 and warnings[1].needed_per_day == pytest.approx(85 / 40, abs=0.01)
    assert warnings[3].overdue is True and warnings[3].done == 7


def test_batch_without_any_task_yet_is_behind_when_time_passed():
    info = BatchInfo(batch_id=9, name="idle", vendor_id=V1, spec_id=S1, target=10, started_on=dt.date(2026, 1, 1),
                     deadline=dt.date(2026, 1, 31))
    report = cost_report(rows=[], contracts=TERMS, batches=[info], today=dt.date(2026, 1, 16))
    assert [(w.batch_id, w.done, w.expected_by_today) for w in report.pace_warnings] == [(9, 0, 5)]


def test_csv_has_a_line_per_batch_month_and_currency_total(report):
    text = cost_report_csv(report, vendor_names={V1: "Acme", V2: "Beta"}, spec_names={S1: "Formulas", S2: "Other"})
    lines = list(csv.DictReader(io.StringIO(text)))
    totals = {r["currency"]: r["amount"] for r in lines if r["section"] == "total"}
    assert totals == {"KRW": "2240", "USD": "9.80"}
    b1 = next(r for r in lines if r["section"] == "batch_total" and r["period_or_batch"] == "b1")
    assert (b1["vendor"], b1["accepted"], b1["rejected"], b1["pending"], b1["amount"]) == ("Acme", "15", "4", "6", "4.50")
    assert sum(1 for r in lines if r["section"] == "month") == 6


def test_unknown_task_kind_is_an_error_not_a_silent_zero():
    with pytest.raises(ValueError):
        cost_report(rows=[row(V1, S1, "boxes", "accepted", 1, 1)], contracts=TERMS, today=TODAY)


# ---------------------------------------------------------------- contracts API


def _contract_payload(vendor_obj, spec_obj, **kw):
    data = {"vendor": vendor_obj.id, "spec": spec_obj.id, "currency": "EUR", "price_regions": "0.10", "price_latex": "0.20",
            "price_full": "0.25", "agreed_quantity": 500, "starts_on": "2026-01-01", "deadline": "2026-03-31"}
    data.update(kw)
    return data


def test_curator_creates_contract_and_report_reads_it(curator_api, vendor, spec, settings):
    response = curator_api.post("/api/v1/contracts/", _contract_payload(vendor, spec))
    assert response.status_code == 201, response.content
    assert response.json()["price_full"] == "0.2500"
    report = curator_api.get("/api/v1/cost-report/", {"today": "2026-02-01"}).json()
    # No task exists: an empty report (and rows_available says whether labeling is wired in).
    from guides.costs import labeling_task_rows

    assert report["rows_available"] is (labeling_task_rows() is not None)
    assert (report["totals"], report["batches"], report["months"]) == ({}, [], [])


@pytest.mark.parametrize("change,field", [
    ({"currency": "euro"}, "currency"),
    ({"price_full": "-1"}, "price_full"),
    ({"price_latex": "abc"}, "price_latex"),
    ({"agreed_quantity": 0}, "agreed_quantity"),
    ({"deadline": "2025-12-01"}, "deadline"),
    ({"deadline": "not a date"}, "deadline"),
    ({"vendor": 999999}, "vendor"),
])
def test_bad_contract_input_names_the_field(curator_api, vendor, spec, change, field):
    from guides.models import Contract

    response = curator_api.post("/api/v1/contracts/", _contract_payload(vendor, spec, **change))
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert Contract.objects.count() == 0


def test_second_contract_for_the_same_pair_names_spec(curator_api, vendor, spec):
    assert curator_api.post("/api/v1/contracts/", _contract_payload(vendor, spec)).status_code == 201
    response = curator_api.post("/api/v1/contracts/", _contract_payload(vendor, spec))
    assert response.status_code == 400 and "spec" in response.json()


@pytest.mark.parametrize("field", ["vendor", "spec"])
def test_contract_patch_refuses_another_vendor_or_spec_and_stores_nothing(curator_api, contract, field):
    other = {"vendor": factories.make_vendor, "spec": factories.make_spec}[field]()
    response = curator_api.patch(f"/api/v1/contracts/{contract.id}/", {field: other.id, "agreed_quantity": 7},
                                 format="json")
    assert response.status_code == 400 and response.json() == {field: ["This field cannot be changed."]}
    before = (contract.vendor_id, contract.spec_id, contract.agreed_quantity)
    contract.refresh_from_db()
    assert (contract.vendor_id, contract.spec_id, contract.agreed_quantity) == before


def test_contract_sent_back_whole_with_a_new_price_is_saved(curator_api, contract):
    body = curator_api.get(f"/api/v1/contracts/{contract.id}/").json()
    response = curator_api.patch(f"/api/v1/contracts/{contract.id}/", {**body, "price_full": "0.5000"}, format="json")
    assert response.status_code == 200, response.content
    contract.refresh_from_db()
    assert contract.price_full == D("0.5")


def test_annotator_cannot_see_contracts_or_costs(annotator_api, contract):
    assert annotator_api.get("/api/v1/contracts/").json()["results"] == []
    assert annotator_api.get("/api/v1/cost-report/").status_code == 403


def test_bad_report_query_names_the_field(curator_api):
    response = curator_api.get("/api/v1/cost-report/", {"today": "yesterday"})
    assert response.status_code == 400 and "today" in response.json()
