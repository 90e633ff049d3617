"""A hostile and a careful read of the paged list pages (common/page_cursor.py and its pages).

- A page link's token is base64 JSON the user can write: a datetime in it that leaves the
  datetime range once put in the database connection's zone (9999-12-31T23:59:59-14:00) was a
  500 on SQLite (Django converts it before asking), where every other damaged link is a 400.
- The pre-labeling jobs page picked its page on the selector, whose progress counts group every
  job's items: every page aggregated the items of every job ever run before its LIMIT (over a
  second at 100,000 jobs on PostgreSQL), and the (created_at, id) index of pipeline.0012 went
  unused. The page must be picked on the jobs alone, the counts read for its jobs only.
- The evaluations page's links did not name the snapshot when it was the latest run's: once a
  run started on another snapshot, "Older" showed that snapshot's runs past the first page's
  position (none), not the rest of the list being read.
- The guide editor's picker form (a GET) had no action: on the edit page shown again after a
  refused example (the POST-only /examples/ URL), "Find" answered 405.
- `?snapshot=²` on the evaluations page: "²".isdigit() is true and int() refuses it, a 500.

And what was checked and holds: the image browser's switch from offset to cursor links exactly
at OFFSET_LINKS_BELOW rows both ways; rows deleted between two page loads neither repeat nor
hide others; the page size is bounded whatever `limit` says.
"""
from __future__ import annotations

import base64
import json
import re
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from curation.models import Image, ImportJob
from pipeline.models import PrelabelJob
from tests import factories
from tests.curation.test_list_pages_paging import (
    follow,
    image_ids,
    job_ids,
    link,
    make_jobs,
    make_snapshots,
    make_takedowns,
    walk,
)
from tests.test_list_pages_paging_more import (
    job_rows,
    make_images,
    make_notifications,
    make_prelabel_jobs,
    make_ready_snapshots,
    make_runs,
    notification_rows,
    picker_rows,
    run_rows,
)

pytestmark = pytest.mark.django_db


def token(order: list[str], values: list) -> str:
    raw = json.dumps({"o": order, "v": values}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# ------------------------------------------------ crafted tokens: a 400, never a 500


@pytest.fixture
def newest_first_pages(curator, spec, source):
    """Each newest-first page (ordered by created_at, id) with rows in it: path -> query."""
    make_jobs(spec, source, 3)
    make_takedowns(3)
    make_snapshots(spec, 3)
    make_prelabel_jobs(spec, 3)
    (snap,) = make_ready_snapshots(spec, 1)
    make_runs(snap, 3)
    make_notifications(curator, 3)
    return {"/imports/": "", "/takedowns/": "", "/snapshots/": "", "/pipeline/jobs/": "",
            "/evaluations/": f"snapshot={snap.pk}&", "/notifications/": ""}


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                                  "9999-12-31T23:59:59.999999-00:01", "0001-01-01T00:00:00+00:01"])
@pytest.mark.parametrize("order", [["-created_at", "-id"], ["created_at", "id"]], ids=["older", "newer"])
def test_a_token_with_a_datetime_beyond_the_database_range_is_a_400(client, curator, newest_first_pages, when,
                                                                    order):
    client.force_login(curator)
    cursor = token(order, [when, 1])
    for path, query in newest_first_pages.items():
        r = client.get(f"{path}?{query}cursor={cursor}")
        assert r.status_code == 400, path
        assert "This page link is not valid" in r.content.decode(), path


@pytest.mark.parametrize("values", [
    ["2026-01-01T00:00:00+00:00", 2**64], ["2026-01-01T00:00:00+00:00", -(2**63) - 1], ["2026-01-01T00:00:00+00:00", True], ["2026-01-01T00:00:00+00:00", 1.0],
    ["2026-01-01T00:00:00+00:00", None], [None, 1], [1767225600, 1], ["2026-01-01", 1], ["2026-01-01T00:00:00", 1],
    [["2026-01-01T00:00:00+00:00"], 1], [{"a": 1}, 1], ["2026-01-01T00:00:00+00:00\u0000", 1],
    ["2026-01-01T00:00:00+00:00"], ["2026-01-01T00:00:00+00:00", 1, 2],
])
def test_a_token_of_other_types_or_arity_is_a_400(client, curator, newest_first_pages, values):
    client.force_login(curator)
    cursor = token(["-created_at", "-id"], values)
    for path, query in newest_first_pages.items():
        assert client.get(f"{path}?{query}cursor={cursor}").status_code == 400, (path, values)


def test_a_well_formed_token_far_in_the_past_or_future_pages_normally(client, curator, spec, source):
    jobs = make_jobs(spec, source, 3)
    client.force_login(curator)
    future = token(["-created_at", "-id"], ["9999-12-31T00:00:00+00:00", 1])
    assert job_ids(client.get(f"/imports/?cursor={future}")) == [j.pk for j in reversed(jobs)]
    past = token(["-created_at", "-id"], ["0001-01-02T00:00:00+00:00", 1])
    r = client.get(f"/imports/?cursor={past}")
    assert r.status_code == 200 and job_ids(r) == []
    for pk in (2**63 - 1, -(2**63)):  # the id's extremes: compared, not refused
        r = client.get(f"/imports/?cursor={token(['created_at', 'id'], ['2000-01-01T00:00:00+00:00', pk])}")
        assert r.status_code == 200 and job_ids(r) == [j.pk for j in reversed(jobs)]


# ------------------------------------------------ pre-labeling jobs: the page's cost


def test_the_prelabel_job_page_is_picked_without_grouping_every_jobs_items(client, curator, spec, source):
    images = make_images(spec, source, 3)
    jobs = make_prelabel_jobs(spec, 12, images=images)
    client.force_login(curator)
    with CaptureQueriesContext(connection) as ctx:
        r = client.get("/pipeline/jobs/?limit=5")
    assert r.status_code == 200
    newest = sorted(jobs, key=lambda j: (j.created_at, j.pk), reverse=True)[:5]
    assert job_rows(r) == [j.pk for j in newest]
    picks = [q["sql"] for q in ctx.captured_queries
             if '"pipeline_prelabeljob"' in q["sql"] and "LIMIT" in q["sql"].upper()]
    assert picks, "no query picks the page"
    for sql in picks:  # the page's LIMIT is applied to the jobs, not after grouping all their items
        assert "pipeline_prelabelitem" not in sql and "GROUP BY" not in sql.upper(), sql
    grouped = [q["sql"] for q in ctx.captured_queries
               if "pipeline_prelabelitem" in q["sql"] and "GROUP BY" in q["sql"].upper()]
    assert grouped and all(" IN (" in sql for sql in grouped), grouped  # the counts of the page's jobs only
    # the progress shown is still each job's own: 3 items, one failed
    assert r.content.decode().count("UnidentifiedImageError") >= 5


def test_the_prelabel_job_page_still_shows_only_what_its_filter_asks_for(client, curator, spec):
    other = factories.make_spec(name="Elsewhere")
    make_prelabel_jobs(spec, 4)
    theirs = make_prelabel_jobs(other, 3, status=PrelabelJob.Status.CANCELLED)
    client.force_login(curator)
    pages, _ = walk(client, "/pipeline/jobs/", f"?spec={other.pk}&limit=2", job_rows)
    assert sorted(pk for page in pages for pk in page) == sorted(j.pk for j in theirs)
    pages, _ = walk(client, "/pipeline/jobs/", "?status=cancelled&limit=2", job_rows)
    assert sorted(pk for page in pages for pk in page) == sorted(j.pk for j in theirs)


# ------------------------------------------------ evaluations: the snapshot travels


def test_the_evaluation_page_links_keep_the_snapshot_they_page(client, model_team, spec):
    first_snapshot, second_snapshot = make_ready_snapshots(spec, 2)
    runs = make_runs(first_snapshot, 5)
    client.force_login(model_team)
    first = client.get("/evaluations/?limit=2")  # no `snapshot`: the latest run's
    newest = sorted(runs, key=lambda run: (run.created_at, run.pk), reverse=True)
    assert run_rows(first) == [run.pk for run in newest[:2]]
    make_runs(second_snapshot, 1)  # meanwhile, a run on another snapshot
    older = follow(client, "/evaluations/", link(first, "next"))
    assert older.status_code == 200
    assert run_rows(older) == [run.pk for run in newest[2:4]]


@pytest.mark.parametrize("value", ["²", "٣", "١٢"])
def test_a_snapshot_id_of_other_digits_is_no_500(client, model_team, spec, value):
    (snap,) = make_ready_snapshots(spec, 1)
    make_runs(snap, 2)
    client.force_login(model_team)
    assert client.get("/evaluations/", {"snapshot": value}).status_code in (200, 404)


# ------------------------------------------------ the guide editor's picker form


def test_the_picker_form_finds_images_on_the_page_shown_again_after_a_refused_example(client, spec, source,
                                                                                     curator):
    version = factories.make_guide(spec=spec, publish=False, by=curator)
    images = make_images(spec, source, 3)
    client.force_login(curator)
    r = client.post(f"/guide-versions/{version.pk}/examples/", {"ex-image": str(10**9), "ex-kind": "bad"})
    assert r.status_code == 400
    form = re.search(r'<form method="get"[^>]*aria-label="Find an image of this spec"[^>]*>', r.content.decode())
    action = unescape(re.search(r'action="([^"]*)"', form.group(0)).group(1)) if "action=" in form.group(0) else ""
    target = (action or f"/guide-versions/{version.pk}/examples/").split("#")[0]
    found = client.get(target, {"q": "img-001"})
    assert found.status_code == 200 and picker_rows(found) == [images[1].pk]


# ------------------------------------------------ checked, and holding


def test_the_image_browser_switches_to_cursor_links_exactly_at_1000_rows(client, curator, spec, source):
    import curation.views

    assert curation.views.OFFSET_LINKS_BELOW == 1000
    make_images(spec, source, 1100)
    expected = list(Image.objects.order_by("-id").values_list("id", flat=True))
    client.force_login(curator)
    # the last offset page starts below row 1000; the page after it is linked by cursor
    assert "offset=952" in link(client.get("/images/?limit=48&offset=904"), "next")
    last_offset_page = client.get("/images/?limit=48&offset=952")
    deep = link(last_offset_page, "next")
    assert "cursor=" in deep and "offset=" not in deep
    deep_page = follow(client, "/images/", deep)
    assert image_ids(deep_page) == expected[1000:1048]
    # and back: the page before row 1000 is an offset page again; deeper ones go by cursor
    assert "offset=952" in link(client.get("/images/?limit=48&offset=1000"), "prev")
    back = link(client.get("/images/?limit=48&offset=1048"), "prev")
    assert "cursor=" in back and "offset=" not in back
    assert image_ids(follow(client, "/images/", back)) == expected[1000:1048]
    assert image_ids(follow(client, "/images/", link(deep_page, "prev"))) == expected[952:1000]


def test_rows_deleted_between_page_loads_are_neither_repeated_nor_hide_others(client, curator, spec, source):
    jobs = make_jobs(spec, source, 9)
    newest = [j.pk for j in sorted(jobs, key=lambda j: (j.created_at, j.pk), reverse=True)]
    client.force_login(curator)
    first = client.get("/imports/?limit=3")
    assert job_ids(first) == newest[:3]
    ImportJob.objects.filter(pk__in=[newest[2], newest[3]]).delete()  # the cursor's own row, and the next
    older = follow(client, "/imports/", link(first, "next"))
    assert job_ids(older) == newest[4:7]
    newer = follow(client, "/imports/", link(older, "prev"))  # back: the first page, read again in full
    assert job_ids(newer) == [newest[0], newest[1], newest[4]]
    assert link(newer, "prev") is None


@pytest.mark.parametrize("limit,rows", [("0", 1), ("-5", 1), ("abc", 50), ("1e3", 50), ("9" * 5000, 50),
                                        ("10_000", 200), ("١٠", 10), ("250", 200)])
def test_the_page_size_is_bounded_whatever_limit_says(client, curator, limit, rows):
    make_notifications(curator, 260)
    client.force_login(curator)
    r = client.get("/notifications/", {"limit": limit})
    assert r.status_code == 200 and len(notification_rows(r)) == rows


def test_the_draft_form_saves_on_the_page_shown_again_after_a_refused_example(client, spec, source, curator):
    """(Older than the picker, found beside it: the same page, the same missing action.)"""
    version = factories.make_guide(spec=spec, publish=False, by=curator)
    client.force_login(curator)
    r = client.post(f"/guide-versions/{version.pk}/examples/", {"ex-image": str(10**9), "ex-kind": "bad"})
    assert r.status_code == 400
    form = re.search(r'<form method="post"[^>]*class="card"[^>]*>', r.content.decode()).group(0)
    action = unescape(re.search(r'action="([^"]*)"', form).group(1)) if "action=" in form else ""
    target = action or f"/guide-versions/{version.pk}/examples/"
    saved = client.post(target, {"body_md": "Box every formula.", "change_notes": "first", "save": "1"})
    assert saved.status_code == 302
    version.refresh_from_db()
    assert version.body_md == "Box every formula."


def test_rows_tied_on_created_at_are_each_reached_once_both_ways(client, curator, spec, source):
    from django.utils import timezone

    jobs = make_jobs(spec, source, 11)
    ImportJob.objects.update(created_at=timezone.now())  # every row tied: the id decides
    expected = sorted((j.pk for j in jobs), reverse=True)
    client.force_login(curator)
    pages, last = walk(client, "/imports/", "?limit=3", job_ids)
    assert [pk for page in pages for pk in page] == expected
    back, top = walk(client, "/imports/", link(last, "prev"), job_ids, rel="prev")
    assert [pk for page in reversed(back) for pk in page] + pages[-1] == expected
    assert job_ids(top) == expected[:3] and link(top, "prev") is None
