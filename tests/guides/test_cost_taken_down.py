"""Work on an image taken down (copyright takedown, erasure request) in the cost report: accepted
work stays paid, work handed in but never reviewed is counted apart as "taken down" (neither paid
nor pending, for the curator to settle), and withdrawn drafts and rework leave the report. Over real labeling rows, the page, the CSV and the API (checked against the schema)."""
from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.test import Client
from rest_framework.test import APIClient

from common import roles
from curation import services as curation
from guides import selectors
from guides.costs import TAKEN_DOWN, WITHDRAWN, BatchInfo, TaskRow, cost_report
from labeling import services as labeling
from labeling.models import Task
from tests import factories
from tests.factories import quad
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db
D = Decimal


def _hand_in(annotator):
    task = labeling.task_claim_next(annotator=annotator).task
    return task, labeling.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()])


def _take_down(image, curator, capture):
    with capture(execute=True):
        curation.image_takedown(image=image, kind="copyright", reason="Publisher's letter", requested_by="Mirae",
                                actor=curator)


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    """One batch of five at 0.30 USD a task: accepted, rejected, handed in, a draft, and one
    handed in that stays on a live image; the first four images are then taken down."""
    vendor, spec = factories.make_vendor(), factories.make_spec()
    batch = factories.make_batch(spec, vendor, images=5, unit_price=D("0.30"), currency="USD")
    def annotator():  # one each: a rejected task comes back first as rework to whoever did it
        return factories.make_user(roles.ANNOTATOR, vendor=vendor)

    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    curator = factories.make_user(roles.CURATOR)
    accepted, a1 = _hand_in(annotator())
    labeling.review_create(annotation=a1, reviewer=reviewer, decision="accept", reasons=[], comment="")
    rejected, a2 = _hand_in(annotator())
    labeling.review_create(annotation=a2, reviewer=reviewer, decision="reject", reasons=["latex_error"], comment="")
    handed_in, _ = _hand_in(annotator())
    drafter = annotator()
    drafted = labeling.task_claim_next(annotator=drafter).task
    labeling.annotation_create(task=drafted, annotator=drafter, regions=[quad()])
    for task in (accepted, rejected, handed_in, drafted):
        _take_down(task.image, curator, django_capture_on_commit_callbacks)
    live = Task.objects.filter(batch=batch).exclude(pk__in=[accepted.pk, rejected.pk, handed_in.pk, drafted.pk]).get()
    other = annotator()
    assert labeling.task_claim_next(annotator=other).task.pk == live.pk
    labeling.annotation_create(task=live, annotator=other, submit=True, regions=[quad()])
    return {"batch": batch, "curator": curator, "vendor": vendor}


def test_handed_in_work_on_a_taken_down_image_is_counted_apart_not_pending(world):
    report, _, _ = selectors.cost_report_for(user=world["curator"])
    (line,) = report.batches
    # The rejected task's rework was withdrawn by the takedown: nothing to pay, nothing pending.
    assert (line.accepted_total, line.rejected, line.pending, line.taken_down) == (1, 0, 1, 1)
    assert report.taken_down_total == 1
    assert report.totals == {"USD": D("0.30")}  # the accepted task stays paid; the taken-down one is not


def test_the_page_says_what_to_settle(world):
    client = Client()
    client.force_login(world["curator"])
    html = client.get("/contracts/report/").content.decode()
    assert 'id="taken-down-total"' in html and "Taken down before review: 1 task." in html
    assert "<th title=\"Image taken down before the work was reviewed\">Taken down</th>" in html


def test_the_csv_has_a_last_taken_down_column(world):
    api = APIClient()
    api.force_authenticate(world["curator"])
    text = api.get("/api/v1/cost-report/csv/").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-1] == "taken_down" and rows[0][:11] == [
        "section", "period_or_batch", "vendor", "spec", "kind", "accepted", "rejected", "pending", "unit_price",
        "currency", "amount"]
    by_section = {r[0]: r for r in rows[1:]}
    assert (by_section["batch_total"][7], by_section["batch_total"][-1]) == ("1", "1")
    assert by_section["total"][-1] == "1"
    assert all(len(r) == len(rows[0]) for r in rows)


def test_the_api_reports_it_and_matches_the_schema(world):
    api = APIClient()
    api.force_authenticate(world["curator"])
    response = api.get("/api/v1/cost-report/")
    assert response.status_code == 200
    assert_response_matches_schema(response)
    body = response.json()
    assert body["taken_down_total"] == 1
    assert [(b["pending"], b["taken_down"]) for b in body["batches"]] == [(1, 1)]


def test_a_vendor_manager_sees_its_own_taken_down_count(world):
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=world["vendor"])
    report, _, _ = selectors.cost_report_for(user=manager)
    assert report.taken_down_total == 1
    stranger = factories.make_user(roles.VENDOR_MANAGER, vendor=factories.make_vendor())
    assert selectors.cost_report_for(user=stranger)[0].taken_down_total == 0


def test_pure_report_counts_taken_down_rows_apart_and_skips_withdrawn_ones():
    info = BatchInfo(batch_id=1, name="b", vendor_id=1, spec_id=1, target=10, started_on=dt.date(2026, 1, 1),
                     unit_price=D("1"), currency="EUR")
    rows = [TaskRow(vendor_id=1, spec_id=1, kind="full", status=TAKEN_DOWN, batch_id=1, count=3),
            TaskRow(vendor_id=1, spec_id=1, kind="full", status=WITHDRAWN, batch_id=1, count=2),
            TaskRow(vendor_id=1, spec_id=1, kind="full", status="submitted", batch_id=1, count=4)]
    report = cost_report(rows=rows, contracts=[], batches=[info], today=dt.date(2026, 2, 1))
    (line,) = report.batches
    assert (line.taken_down, line.pending, line.accepted_total, line.amount) == (3, 4, 0, D("0"))
    assert report.taken_down_total == 3 and report.totals == {}
