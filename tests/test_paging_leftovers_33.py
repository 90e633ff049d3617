"""What the final read of the paged pages (80baf60) left for the API.

- A cursor token is base64 JSON a client can write. One holding a datetime that leaves the
  datetime range once put in the database connection's zone (9999-12-31T23:59:59-14:00,
  0001-01-01T00:00:00+14:00) decoded, and SQLite's conversion to UTC then raised OverflowError:
  a 500 on every API list ordered by a date (import jobs, pre-labeling jobs, evaluations,
  notifications, images), where every other damaged cursor is a 400 naming `cursor`. The pages
  had their own check; the token's decoding now refuses it, for both.
- The API's pre-labeling jobs list paged on the selector, whose progress counts group every
  job's items: each page (by offset or cursor) aggregated the items of every job ever run before
  its LIMIT, and the offset count counted that grouped query. The page is now picked among the
  jobs alone, with the same filters, ordering and scope, and only its jobs are read with their
  counts; the answer is the same, row for row.
"""
from __future__ import annotations

import base64
import json
import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common.pagination import cursor_after, keyset_order
from pipeline import selectors
from pipeline.api.serializers import PrelabelJobSerializer
from pipeline.models import PrelabelJob
from tests import factories
from tests.curation.test_list_pages_paging import make_jobs
from tests.test_list_pages_paging_more import (
    make_images,
    make_notifications,
    make_prelabel_jobs,
    make_ready_snapshots,
    make_runs,
)

pytestmark = pytest.mark.django_db

ISO_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")


def _payload(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _token(payload: dict) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _next_cursor(response) -> str:
    return parse_qs(urlparse(response.json()["next"]).query)["cursor"][0]


# ------------------------------------------------ 1. a cursor's datetime beyond the database's range


@pytest.fixture
def date_ordered_lists(curator, spec, source):
    """API lists whose cursor holds a datetime, with rows in them: (path, query)."""
    make_jobs(spec, source, 3)
    make_prelabel_jobs(spec, 3)
    (snap,) = make_ready_snapshots(spec, 1)
    make_runs(snap, 3)
    make_notifications(curator, 3)
    make_images(spec, source, 3)
    return [
        ("/api/v1/import-jobs/", ""),  # Meta.ordering: -created_at, then -pk
        ("/api/v1/prelabel-jobs/", "ordering=-created_at"),
        ("/api/v1/prelabel-jobs/", "ordering=created_at"),
        ("/api/v1/evaluations/", ""),
        ("/api/v1/evaluations/", "ordering=created_at"),
        ("/api/v1/notifications/", ""),
        ("/api/v1/images/", "ordering=-created_at"),
    ]


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                                  "9999-12-31T23:59:59.999999-00:01", "0001-01-01T00:00:00+00:01"])
def test_an_api_cursor_with_a_datetime_beyond_the_database_range_is_a_400(curator_api, date_ordered_lists, when):
    for path, query in date_ordered_lists:
        first = curator_api.get(f"{path}?{query}&cursor=&limit=1")
        assert first.status_code == 200, (path, query, first.content)
        payload = _payload(_next_cursor(first))
        dated = [i for i, v in enumerate(payload["v"]) if isinstance(v, str) and ISO_DATETIME.match(v)]
        assert dated, (path, query, payload)  # the list's cursor does hold a datetime
        for i in dated:
            payload["v"][i] = when
        r = curator_api.get(f"{path}?{query}&cursor={_token(payload)}&limit=1")
        assert r.status_code == 400, (path, query, r.status_code)
        assert "cursor" in r.json(), (path, query, r.json())


def test_an_api_cursor_far_in_the_past_or_future_but_in_range_still_pages(curator_api, spec, source):
    jobs = make_jobs(spec, source, 3)
    first = curator_api.get("/api/v1/import-jobs/?cursor=&limit=1")
    payload = _payload(_next_cursor(first))
    payload["v"][0] = "9999-12-31T00:00:00+00:00"
    r = curator_api.get(f"/api/v1/import-jobs/?cursor={_token(payload)}&limit=10")
    assert r.status_code == 200
    assert [row["id"] for row in r.json()["results"]] == [j.pk for j in reversed(jobs)]
    payload["v"][0] = "0001-01-02T00:00:00+00:00"
    r = curator_api.get(f"/api/v1/import-jobs/?cursor={_token(payload)}&limit=10")
    assert r.status_code == 200 and r.json()["results"] == []


# ------------------------------------------------ 2. the API's pre-labeling jobs: the page's cost


def _expected(user, query: dict, limit: int) -> list[dict]:
    """The first page as the API answered it before: the selector (filtered, ordered), paged."""
    qs = selectors.prelabel_jobs_visible_to(user)
    if "status" in query:
        qs = qs.filter(status=query["status"])
    if "spec" in query:
        qs = qs.filter(spec_id=query["spec"])
    if "ordering" in query:
        qs = qs.order_by(*query["ordering"].split(","))
    return PrelabelJobSerializer(list(keyset_order(qs)[:limit]), many=True).data


@pytest.fixture
def jobs_with_items(spec, source):
    images = make_images(spec, source, 3)
    other = factories.make_spec(name="Elsewhere")
    jobs = make_prelabel_jobs(spec, 7, images=images)
    jobs += make_prelabel_jobs(other, 5, status=PrelabelJob.Status.CANCELLED, images=images[:2])
    return jobs


@pytest.mark.parametrize("paging", ["offset", "cursor"])
def test_the_api_prelabel_job_page_is_picked_without_grouping_every_jobs_items(curator_api, curator, jobs_with_items,
                                                                              paging):
    params = {"limit": 5, **({"cursor": ""} if paging == "cursor" else {})}
    with CaptureQueriesContext(connection) as ctx:
        r = curator_api.get("/api/v1/prelabel-jobs/", params)
    assert r.status_code == 200
    sqls = [q["sql"] for q in ctx.captured_queries]
    picks = [sql for sql in sqls if '"pipeline_prelabeljob"' in sql and "LIMIT" in sql.upper()]
    assert picks, "no query picks the page"
    for sql in picks:  # the page's LIMIT is applied to the jobs, not after grouping all their items
        assert "pipeline_prelabelitem" not in sql and "GROUP BY" not in sql.upper(), sql
    grouped = [sql for sql in sqls if "pipeline_prelabelitem" in sql]
    assert grouped and all(" IN (" in sql for sql in grouped), grouped  # the counts of the page's jobs only
    if paging == "offset":
        counts = [sql for sql in sqls if '"__count"' in sql]  # the offset page's count of all jobs
        assert counts and all("pipeline_prelabelitem" not in sql for sql in counts), counts
        assert r.json()["count"] == 12
    assert r.json()["results"] == _expected(curator, {}, 5)
    assert all(row["progress"]["total"] in (2, 3) and row["progress"]["failed"] == 1 for row in r.json()["results"])


@pytest.mark.parametrize("query", [{}, {"ordering": "-created_at"}, {"ordering": "created_at"}, {"ordering": "-total"},
                                   {"ordering": "spec"}, {"status": "cancelled"}, {"status": "done", "ordering": "-id"}])
def test_the_api_prelabel_job_list_answers_as_before(curator_api, curator, jobs_with_items, query):
    """Same rows, order, shape and progress, by offset and by walking every cursor page."""
    r = curator_api.get("/api/v1/prelabel-jobs/", {**query, "limit": 4})
    assert r.status_code == 200
    assert r.json()["results"] == _expected(curator, query, 4)
    assert set(r.json()) == {"count", "next", "previous", "results"}
    walked, params = [], {**query, "limit": 4, "cursor": ""}
    while True:
        page = curator_api.get("/api/v1/prelabel-jobs/", params)
        assert page.status_code == 200 and set(page.json()) == {"next", "results"}
        walked += page.json()["results"]
        if page.json()["next"] is None:
            break
        params["cursor"] = _next_cursor(page)
    assert walked == _expected(curator, query, 100)


def test_a_cursor_made_on_the_selector_still_pages_the_api_list(curator_api, curator, jobs_with_items):
    """A client's cursor from before the change (made for the selector's order) stays valid."""
    ordered = keyset_order(selectors.prelabel_jobs_visible_to(curator))
    token = cursor_after(ordered, ordered[3])
    r = curator_api.get("/api/v1/prelabel-jobs/", {"cursor": token, "limit": 3})
    assert r.status_code == 200
    assert [row["id"] for row in r.json()["results"]] == [job.pk for job in ordered[4:7]]


def test_the_api_prelabel_job_list_shows_nothing_to_vendor_users(api, annotator, jobs_with_items):
    api.force_authenticate(annotator)
    r = api.get("/api/v1/prelabel-jobs/")
    assert r.status_code == 200 and r.json()["count"] == 0 and r.json()["results"] == []
    r = api.get("/api/v1/prelabel-jobs/", {"cursor": ""})
    assert r.status_code == 200 and r.json() == {"next": None, "results": []}


def _queries(api, params) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert api.get("/api/v1/prelabel-jobs/", params).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("paging", ["offset", "cursor"])
def test_the_api_prelabel_job_list_costs_the_same_queries_for_5_or_50_jobs(curator_api, spec, source, paging):
    images = make_images(spec, source, 2)
    params = {"limit": 100, **({"cursor": ""} if paging == "cursor" else {})}
    make_prelabel_jobs(spec, 5, images=images)
    _queries(curator_api, params)  # (the first request reads what is cached after it)
    few = _queries(curator_api, params)
    make_prelabel_jobs(spec, 45, images=images)
    assert _queries(curator_api, params) == few
