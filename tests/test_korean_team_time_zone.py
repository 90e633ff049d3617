"""Deadlines are days in the configured time zone (TIME_ZONE; a Korean team sets Asia/Seoul):
"deadline 2026-12-31" is over when 2026-12-31 has ended in Seoul, 15:00 UTC, not nine hours later.
Every comparison with "today" (overdue batches, the cost report's pace and days left, a
contract's default start) uses `timezone.localdate()`; checked either side of the boundary."""
from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from common import roles
from guides import selectors as guide_selectors
from tests import factories

pytestmark = pytest.mark.django_db

UTC = dt.UTC
# 2027-01-01 00:30 in Seoul, still 2026-12-31 in UTC; and 2026-12-31 23:30 in Seoul.
JUST_AFTER_MIDNIGHT_KST = dt.datetime(2026, 12, 31, 15, 30, tzinfo=UTC)
JUST_BEFORE_MIDNIGHT_KST = dt.datetime(2026, 12, 31, 14, 30, tzinfo=UTC)


def at(moment: dt.datetime):
    return mock.patch("django.utils.timezone.now", return_value=moment)


def _overdue_on_batches_page(batch) -> bool:
    client = Client()
    client.force_login(factories.make_user(roles.CURATOR))
    html = client.get("/batches/").content.decode()
    cell = html.split(f'data-deadline="{batch.pk}">', 1)[1].split("</td>", 1)[0]
    return "overdue" in cell


@pytest.mark.parametrize("zone, moment, overdue", [
    ("Asia/Seoul", JUST_AFTER_MIDNIGHT_KST, True),    # 1 January in Korea: the 31 December deadline is past
    ("Asia/Seoul", JUST_BEFORE_MIDNIGHT_KST, False),  # still 31 December in Korea
    ("UTC", JUST_AFTER_MIDNIGHT_KST, False),          # the UTC default: still 31 December
])
def test_a_batch_is_overdue_from_midnight_in_the_configured_zone(settings, zone, moment, overdue):
    settings.TIME_ZONE = zone
    batch = factories.make_batch(factories.make_spec(), factories.make_vendor(), images=2,
                                 deadline=dt.date(2026, 12, 31))
    with at(moment):
        assert timezone.localdate() == (dt.date(2027, 1, 1) if overdue else dt.date(2026, 12, 31))
        assert _overdue_on_batches_page(batch) is overdue


@pytest.mark.parametrize("zone, days_left", [("Asia/Seoul", 4), ("UTC", 5)])
def test_cost_report_days_left_count_from_today_in_the_configured_zone(settings, zone, days_left):
    settings.TIME_ZONE = zone
    vendor, spec = factories.make_vendor("주식회사 라벨"), factories.make_spec(name="수식 인식")
    with at(dt.datetime(2026, 12, 1, 3, 0, tzinfo=UTC)):  # started 1 December either way
        batch = factories.make_batch(spec, vendor, images=3, deadline=dt.date(2027, 1, 5))
    with at(JUST_AFTER_MIDNIGHT_KST):
        report, _, _ = guide_selectors.cost_report_for(user=factories.make_user(roles.CURATOR))
    [warning] = [w for w in report.pace_warnings if w.batch_id == batch.pk]
    assert warning.days_left == days_left and not warning.overdue


def test_a_contract_starts_today_in_the_configured_zone(settings):
    from guides.services import contract_create

    settings.TIME_ZONE = "Asia/Seoul"
    with at(JUST_AFTER_MIDNIGHT_KST):
        contract = contract_create(vendor=factories.make_vendor(), spec=factories.make_spec(), price_regions=1,
                                   price_latex=1, price_full=1, agreed_quantity=10, deadline=dt.date(2027, 2, 1),
                                   currency="KRW")
    assert contract.starts_on == dt.date(2027, 1, 1)
