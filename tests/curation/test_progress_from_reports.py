"""Spec and category quota progress in the API and on the pages comes from the spec's stored
ProgressReport (no count over every image and task per request); computed on the spot, more
cheaply and without taken-down images, only before the first refresh."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from curation.models import Category, Image, ProgressReport
from curation.services import spec_progress_refresh
from labeling.models import Task
from tests.schema import assert_response_matches_schema

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

FIELDS = ("collected", "labeled", "accepted")
TASKS = Task._meta.db_table
TASKS_SQL = (f'"{TASKS}"', f"{TASKS} ")


def _api(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def _counts(rows, spec_id=None) -> dict:
    return {r["slug"]: tuple(r[f] for f in FIELDS) for r in rows if spec_id is None or r["spec"] == spec_id}


def _task_queries(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if any(t in q["sql"] for t in TASKS_SQL)]


def _store_report(spec, *, bump: int = 0):
    """Refresh the stored report, then (with `bump`) change its counts, so that reading it is
    told apart from counting now."""
    ProgressReport.objects.filter(spec=spec).delete()
    report = spec_progress_refresh(spec=spec)
    if bump:
        payload = report.payload
        for c in payload["by_category"]:
            for f in FIELDS:
                c[f] += bump
        for v in payload["by_vendor"]:
            for c in v["by_category"]:
                for f in FIELDS:
                    c[f] += bump
        report.payload = payload
        report.computed_at = timezone.now() - timedelta(minutes=3)
        report.save()
    return report


URLS = ["/api/v1/specs/", "/api/v1/categories/", "/api/v1/specs/{id}/", "/api/v1/categories/?spec={id}"]


@pytest.mark.parametrize("url", URLS)
def test_api_reads_the_stored_report_without_counting_tasks(qa_world, url):
    report = _store_report(qa_world.spec, bump=100)
    with CaptureQueriesContext(connection) as ctx:
        r = _api(qa_world.curator).get(url.format(id=qa_world.spec.id))
    assert r.status_code == 200
    assert_response_matches_schema(r)
    assert _task_queries(ctx) == [], "a stored report exists: no query over the tasks"
    body = r.json()
    rows = body.get("categories") or [c for s in body.get("results", []) for c in s.get("categories", [])] \
        or body.get("results", [])
    counts = _counts(rows, qa_world.spec.id)
    assert counts["printed"] == (103, 102, 102) and counts["handwritten"] == (101, 101, 101)
    as_of = {c["progress_as_of"] for c in rows if c["spec"] == qa_world.spec.id}
    assert len(as_of) == 1 and as_of.pop().startswith(report.computed_at.isoformat()[:19].replace("+00:00", ""))
    if "categories" in body:
        assert body["progress_as_of"] is not None


def test_vendor_users_read_their_vendors_slice_of_the_report(qa_world):
    _store_report(qa_world.spec, bump=10)
    with CaptureQueriesContext(connection) as ctx:
        r = _api(qa_world.manager1).get("/api/v1/categories/")
    assert r.status_code == 200
    assert _task_queries(ctx) == [] or all("batch" in q or "vendor" in q for q in _task_queries(ctx))
    counts = _counts(r.json()["results"], qa_world.spec.id)
    # V1's slice (printed: A and C; 1 labeled, 1 accepted; nothing handwritten), bumped in the report.
    assert counts["printed"] == (12, 11, 11)
    assert counts["handwritten"] == (0, 0, 0)  # V1 has no handwritten row in the report


def test_spec_page_shows_the_reports_counts_without_counting_tasks(qa_world):
    _store_report(qa_world.spec, bump=100)
    c = Client()
    c.force_login(qa_world.curator)
    with CaptureQueriesContext(connection) as ctx:
        html = c.get(f"/specs/{qa_world.spec.id}/").content.decode()
    assert _task_queries(ctx) == []
    assert "103 / 10 collected" in html and "102 labeled" in html


def test_without_a_report_progress_is_counted_now_and_equals_the_report(qa_world):
    ProgressReport.objects.filter(spec=qa_world.spec).delete()
    for user in (qa_world.curator, qa_world.manager1):
        r = _api(user).get(f"/api/v1/specs/{qa_world.spec.id}/")
        assert_response_matches_schema(r)
        assert r.json()["progress_as_of"] is None
        live = _api(user).get("/api/v1/categories/").json()["results"]
        assert {c["progress_as_of"] for c in live} == {None}
        _store_report(qa_world.spec)
        stored = _api(user).get("/api/v1/categories/").json()["results"]
        assert _counts(live) == _counts(stored)
        ProgressReport.objects.filter(spec=qa_world.spec).delete()


def test_only_specs_without_a_report_are_counted_now_in_one_query(qa_world):
    from tests import factories

    _store_report(qa_world.spec, bump=100)
    fresh = factories.make_spec()
    factories.make_image(spec=fresh, data=factories.png_bytes(31, 17))
    ProgressReport.objects.filter(spec=fresh).delete()
    with CaptureQueriesContext(connection) as ctx:
        r = _api(qa_world.curator).get("/api/v1/categories/?limit=100")
    assert r.status_code == 200
    assert len(_task_queries(ctx)) == 1
    rows = r.json()["results"]
    assert _counts(rows, qa_world.spec.id)["printed"] == (103, 102, 102)
    assert _counts(rows, fresh.id)["printed"] == (1, 0, 0)
    assert {c["progress_as_of"] is None for c in rows if c["spec"] == fresh.id} == {True}


def test_taken_down_images_are_not_counted_as_collected(qa_world):
    ProgressReport.objects.filter(spec=qa_world.spec).delete()
    printed = Category.objects.get(spec=qa_world.spec, slug="printed")
    before = _counts(_api(qa_world.curator).get("/api/v1/categories/").json()["results"])["printed"]
    image = Image.objects.filter(categories=printed, tasks__isnull=True).first() \
        or Image.objects.filter(categories=printed).first()
    Image.objects.filter(pk=image.pk).update(taken_down_at=timezone.now())
    after = _counts(_api(qa_world.curator).get("/api/v1/categories/").json()["results"])["printed"]
    assert after[0] == before[0] - 1
