"""Audit of the money side: cost report arithmetic over real labeling rows, the CSV
download's escaping, the month work is paid in, and day boundaries in the
curators' time zone."""
import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from common import roles
from guides import costs, selectors
from labeling import services as labeling
from labeling.models import Batch, Review, Task
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db
D = Decimal
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def _label(annotator, reviewer, decision):
    task = labeling.task_claim_next(annotator=annotator).task
    annotation = labeling.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()])
    labeling.review_create(annotation=annotation, reviewer=reviewer, decision=decision,
                           reasons=[] if decision == "accept" else ["latex_error"], comment="")
    return annotation


def _people(vendor):
    return factories.make_user(roles.ANNOTATOR, vendor=vendor), factories.make_user(roles.REVIEWER, vendor=vendor)


def _cells(text: str) -> list[str]:
    return [c for r in csv.reader(io.StringIO(text)) for c in r]


# ------------------------------------------------------------------ CSV


def test_cost_report_csv_escapes_names_a_spreadsheet_would_run_as_formulas():
    vendor = factories.make_vendor('=HYPERLINK("http://evil.example","x")')
    spec = factories.make_spec(name="+spec")
    factories.make_contract(vendor=vendor, spec=spec)
    factories.make_batch(spec, vendor, images=2, name="@SUM(A1)")
    annotator, reviewer = _people(vendor)
    _label(annotator, reviewer, "accept")
    curator = factories.make_user(roles.CURATOR)
    api = APIClient()
    api.force_authenticate(curator)
    page_csv = _client(curator).get("/contracts/report/?download=csv").content.decode()
    api_csv = api.get("/api/v1/cost-report/csv/").content.decode()
    for text in (page_csv, api_csv):
        cells = _cells(text)
        assert not [c for c in cells if c.startswith(FORMULA_STARTS)], cells
        # the names are still all there, readable, behind a leading apostrophe
        assert "'@SUM(A1)" in cells and "'+spec" in cells and '\'=HYPERLINK("http://evil.example","x")' in cells
        # numbers are left alone: 0.30 per full task, one accepted
        assert "0.3000" in cells


def test_csv_cell_escaping_leaves_numbers_and_plain_text_alone():
    assert costs.csv_safe("-0.5") == "'-0.5"  # a text cell that looks like a formula is text
    assert costs.csv_safe(D("-0.5")) == D("-0.5")  # an amount stays a number
    assert costs.csv_safe(3) == 3 and costs.csv_safe("Acme") == "Acme" and costs.csv_safe("") == ""


# ------------------------------------------------------------------ arithmetic over real rows


def test_reworked_task_is_paid_once_and_overlap_pays_per_task():
    vendor = factories.make_vendor()
    spec = factories.make_spec()
    factories.make_contract(vendor=vendor, spec=spec, price_regions=D("0.10"), price_latex=D("0.25"),
                            price_full=D("0.30"))
    latex = factories.make_batch(spec, vendor, images=1, kind="latex")
    annotator, reviewer = _people(vendor)
    annotation = _label(annotator, reviewer, "reject")
    annotation.refresh_from_db()
    annotation = labeling.annotation_update(annotation=annotation, by=annotator, version=annotation.version,
                                            regions=[quad()], submit=True)
    labeling.review_create(annotation=annotation, reviewer=reviewer, decision="accept")
    latex.status = Batch.Status.CLOSED
    latex.save()

    full = factories.make_batch(spec, vendor, images=1, kind="full", overlap=2)
    other = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    _label(annotator, reviewer, "accept")
    _label(other, reviewer, "accept")

    report, _, _ = selectors.cost_report_for(user=factories.make_user(roles.CURATOR))
    lines = {b.batch_id: b for b in report.batches}
    # rejected, reworked, accepted: one task, paid once at the LaTeX price, no longer "rejected"
    assert (lines[latex.id].accepted_total, lines[latex.id].rejected, lines[latex.id].amount) == (1, 0, D("0.25"))
    # overlap 2, both accepted: one accepted task, paid once at the full price (per task, as documented)
    assert (lines[full.id].accepted["full"], lines[full.id].amount) == (1, D("0.30"))
    assert report.totals == {"USD": D("0.55")} and report.rejected_total == 0


def test_currencies_are_never_summed_and_decimals_stay_exact():
    spec = factories.make_spec()
    usd, eur = factories.make_vendor(), factories.make_vendor()
    factories.make_contract(vendor=usd, spec=spec, price_regions=D("0.0001"), currency="USD")
    factories.make_contract(vendor=eur, spec=spec, price_regions=D("0.1000"), currency="EUR")
    for vendor in (usd, eur):
        factories.make_batch(spec, vendor, images=3, kind="regions")
        annotator, reviewer = _people(vendor)
        for _ in range(3):
            _label(annotator, reviewer, "accept")
    report, _, _ = selectors.cost_report_for(user=factories.make_user(roles.CURATOR))
    assert report.totals == {"EUR": D("0.3000"), "USD": D("0.0003")}
    assert all(isinstance(a, D) for a in report.totals.values())
    api = APIClient()
    api.force_authenticate(factories.make_user(roles.CURATOR))
    body = api.get("/api/v1/cost-report/").json()
    assert body["totals"] == {"EUR": "0.3000", "USD": "0.0003"}


# ------------------------------------------------------------------ the month work is paid in


def test_marking_an_accepted_task_gold_later_does_not_move_its_pay_month():
    vendor = factories.make_vendor()
    spec = factories.make_spec()
    factories.make_contract(vendor=vendor, spec=spec)
    factories.make_batch(spec, vendor, images=1)
    annotator, reviewer = _people(vendor)
    _label(annotator, reviewer, "accept")
    accepted_at = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
    Task.objects.update(updated_at=accepted_at)
    Review.objects.update(created_at=accepted_at)
    rows, _ = costs.labeling_task_rows()
    assert [(r.status, r.accepted_on.strftime("%Y-%m")) for r in rows] == [("accepted", "2026-01")]

    # December: a curator makes the accepted task a gold task (updated_at moves to now)
    labeling.task_set_gold(task=Task.objects.get(), answer={"latex": "x"})
    assert Task.objects.get().updated_at.month == timezone.now().month
    rows, _ = costs.labeling_task_rows()
    assert [(r.status, r.accepted_on.strftime("%Y-%m")) for r in rows] == [("accepted", "2026-01")]


def test_pay_month_and_batch_start_use_the_configured_time_zone(settings):
    settings.TIME_ZONE = "Asia/Seoul"  # UTC+9
    vendor = factories.make_vendor()
    spec = factories.make_spec()
    factories.make_contract(vendor=vendor, spec=spec)
    batch = factories.make_batch(spec, vendor, images=1)
    annotator, reviewer = _people(vendor)
    _label(annotator, reviewer, "accept")
    late = dt.datetime(2026, 1, 31, 20, tzinfo=dt.UTC)  # Feb 1, 05:00 in Seoul
    Task.objects.update(updated_at=late)
    Review.objects.update(created_at=late)
    Batch.objects.filter(pk=batch.pk).update(created_at=late)
    rows, infos = costs.labeling_task_rows()
    assert rows[0].accepted_on.strftime("%Y-%m") == "2026-02"
    assert infos[0].started_on == dt.date(2026, 2, 1)


# ------------------------------------------------------------------ pages against the API and a hand computation


def _zone_off_utc_date() -> str:
    """A time zone whose date differs from UTC's at this moment."""
    return "Pacific/Pago_Pago" if timezone.now().hour < 11 else "Pacific/Kiritimati"  # UTC-11 / UTC+14


def test_batches_page_marks_overdue_batches_by_the_local_date(settings):
    settings.TIME_ZONE = _zone_off_utc_date()
    today = timezone.localdate()
    assert today != timezone.now().astimezone(dt.UTC).date()
    vendor = factories.make_vendor()
    spec = factories.make_spec()
    late = factories.make_batch(spec, vendor, images=1, deadline=today - dt.timedelta(days=1))
    due_today = factories.make_batch(spec, vendor, images=1, deadline=today)
    closed = factories.make_batch(spec, vendor, images=1, deadline=today - dt.timedelta(days=1),
                                  status=Batch.Status.CLOSED)
    html = _client(factories.make_user(roles.CURATOR)).get("/batches/").content.decode()

    def cell(batch):
        start = html.index(f'data-deadline="{batch.pk}">')
        return html[start:html.index("</td>", start)]

    assert "overdue" in cell(late)
    assert "overdue" not in cell(due_today) and "overdue" not in cell(closed)


def test_batches_page_cost_matches_the_api_and_a_hand_computation():
    acme, other = factories.make_vendor("Acme"), factories.make_vendor("Other")
    spec = factories.make_spec()
    usd = factories.make_batch(spec, acme, images=4, unit_price=D("0.2500"), quantity=4)
    annotator, reviewer = _people(acme)
    for decision in ("accept", "accept", "accept", "reject"):
        _label(annotator, reviewer, decision)
    usd.status = Batch.Status.PAUSED
    usd.save()
    eur = factories.make_batch(spec, acme, images=2, unit_price=D("1.1000"), currency="EUR", quantity=2)
    _label(annotator, reviewer, "accept")
    factories.make_batch(factories.make_spec(), other, images=1, unit_price=D("9.99"))

    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=acme)
    html = _client(manager).get("/batches/").content.decode()
    # by hand: 3 accepted x 0.25 USD; 1 accepted x 1.10 EUR; never summed together
    assert f'data-cost="{usd.pk}">0.75 USD' in html and f'data-cost="{eur.pk}">1.10 EUR' in html
    assert f'data-total="{acme.pk}-USD">0.75 USD' in html and f'data-total="{acme.pk}-EUR">1.10 EUR' in html
    assert f'data-progress="{usd.pk}">3 / 4 accepted' in html and f'data-progress="{eur.pk}">1 / 2 accepted' in html
    assert "Other" not in html and "9.99" not in html
    api = APIClient()
    api.force_authenticate(manager)
    body = {b["id"]: b for b in api.get("/api/v1/batches/").json()["results"]}
    assert set(body) == {usd.pk, eur.pk}
    assert (body[usd.pk]["unit_price"], body[usd.pk]["currency"], body[usd.pk]["task_count"]) == ("0.2500", "USD", 4)
    # an annotator of the vendor sees neither the page nor a price
    api.force_authenticate(annotator)
    assert api.get(f"/api/v1/batches/{usd.pk}/").json()["unit_price"] is None
    assert _client(annotator).get("/batches/").status_code == 403


def test_a_batch_agrees_to_the_tasks_it_could_make_and_cannot_be_raised_above_them(curator):
    """Asking for 3 when 2 images match used to store 3 agreed against 2 tasks: progress could
    never reach 100 % and the pace warnings never stopped."""
    spec = factories.make_spec()
    for _ in range(2):
        factories.make_image(spec=spec)
    batch = labeling.batch_create(spec=spec, vendor=factories.make_vendor(), name="b", unit_price=D("0.1"),
                                  quantity=3)
    assert (batch.agreed_quantity, batch.tasks.count()) == (2, 2)
    api = APIClient()
    api.force_authenticate(curator)
    r = api.patch(f"/api/v1/batches/{batch.pk}/", {"agreed_quantity": 3}, format="json")
    assert r.status_code == 400 and "has 2 tasks" in r.json()["agreed_quantity"][0], r.content
    assert api.patch(f"/api/v1/batches/{batch.pk}/", {"agreed_quantity": 1}, format="json").status_code == 200
    batch.refresh_from_db()
    assert batch.agreed_quantity == 1
