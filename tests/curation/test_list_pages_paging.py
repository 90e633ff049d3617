"""Paging of the curator list pages: import jobs, takedowns, snapshots and the image browser.

The import job, takedown and snapshot pages showed the 200 (500, 200) newest rows and nothing
past them (the spec page the 5 newest imports, with no way to the rest); the
image browser paged by OFFSET only, so a deep page read and dropped every row before it. Every
row must be reachable by following the pages' links, in one order, each row once; the links keep
the filters; a damaged page link is a clear 400, not a 500; a page costs the same queries
whatever its size; and only curators (and, for images, model teams) read these pages at all.
"""
from __future__ import annotations

import re
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common import roles
from curation.models import Image, ImportJob, Snapshot, Takedown
from tests import factories
from tests.pages import text

pytestmark = pytest.mark.django_db


# ------------------------------------------------------------------ helpers


def link(response, rel: str) -> str | None:
    """The href of the page's first link with rel=`rel` ("next", "prev"), or None."""
    html = response.content.decode()
    for tag in re.findall(r"<a\b[^>]*>", html):
        if re.search(rf'\brel="{rel}"', tag):
            return unescape(re.search(r'href="([^"]*)"', tag).group(1))
    return None


def follow(client, path: str, href: str):
    """GET a page link as the browser resolves it (a bare "?query" keeps the path)."""
    return client.get(href if href.startswith("/") else path + href)


def job_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r"<tr><td>(\d+)</td>", response.content.decode())]


def takedown_refs(response) -> list[int]:
    html = response.content.decode()
    return [int(ref) for ref in re.findall(r'<tr>\s*<td>[^<]*</td>\s*<td class="num">(?:<a [^>]*>)?(\d+)', html)]


def image_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<a class="thumb" href="/images/(\d+)/"', response.content.decode())]


def walk(client, path: str, first: str, read, rel: str = "next", max_pages: int = 200):
    """Follow `rel` links from `first`; the rows of each page (a list per page) and the last response."""
    pages = []
    response = follow(client, path, first)
    assert response.status_code == 200, response.content[:500]
    pages.append(read(response))
    while (href := link(response, rel)) is not None:
        assert len(pages) < max_pages, "the links go round in circles"
        response = follow(client, path, href)
        assert response.status_code == 200, response.content[:500]
        pages.append(read(response))
    return pages, response


def make_jobs(spec, source, n: int, **kw) -> list[ImportJob]:
    return ImportJob.objects.bulk_create(
        [ImportJob(spec=spec, source=source, archive=f"imports/{i}.zip", **kw) for i in range(n)])


def make_takedowns(n: int, start: int = 1) -> list[Takedown]:
    return Takedown.objects.bulk_create(
        [Takedown(image_ref=start + i, kind=Takedown.Kind.COPYRIGHT, reason=f"Request {start + i}",
                  requested_by="Rights holder") for i in range(n)])


def make_snapshots(spec, n: int) -> list[Snapshot]:
    return Snapshot.objects.bulk_create(
        [Snapshot(spec=spec, name=f"release-{i}", ratios={"train": 1.0}, content_hash="", status=Snapshot.Status.READY)
         for i in range(n)])


def snapshot_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-snapshot="(\d+)">', response.content.decode())]


def newest_first(qs) -> list[int]:
    return list(qs.order_by("-created_at", "-id").values_list("id", flat=True))


# --------------------------------------------------------------- import jobs


def test_every_import_job_is_reachable_through_the_older_links(client, curator, spec, source):
    make_jobs(spec, source, 205)
    expected = newest_first(ImportJob.objects.all())
    client.force_login(curator)
    first = client.get("/imports/")
    assert "205 in all" in text(first)
    assert link(first, "prev") is None  # the newest page has nothing newer
    pages, last = walk(client, "/imports/", "", job_ids)
    assert [pk for page in pages for pk in page] == expected  # each once, newest first, the oldest too
    assert len(pages) > 1 and all(len(p) == len(pages[0]) for p in pages[:-1])
    assert "Older" in text(first) and "Newer" in text(last)
    # and back again through the newer links, the same pages in reverse
    back, top = walk(client, "/imports/", link(last, "prev"), job_ids, rel="prev")
    assert [pk for page in reversed(back) for pk in page] + pages[-1] == expected
    assert link(top, "prev") is None


def test_import_job_pages_keep_the_filters_and_the_page_size(client, curator, spec, source):
    other_spec = factories.make_spec(name="Other spec")
    make_jobs(spec, source, 30, status=ImportJob.Status.DONE)
    make_jobs(spec, source, 23, status=ImportJob.Status.FAILED)
    make_jobs(other_spec, source, 7, status=ImportJob.Status.FAILED)
    client.force_login(curator)
    query = f"?status=failed&spec={spec.pk}&limit=5"
    first = client.get("/imports/" + query)
    assert "23 in all" in text(first)
    href = link(first, "next")
    assert "status=failed" in href and f"spec={spec.pk}" in href and "limit=5" in href and "cursor=" in href
    pages, _ = walk(client, "/imports/", query, job_ids)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [pk for page in pages for pk in page] == newest_first(
        ImportJob.objects.filter(spec=spec, status=ImportJob.Status.FAILED))


@pytest.mark.parametrize(("limit", "rows"), [("1", 1), ("0", 1), ("-3", 1), ("100000", 200), ("abc", 50), ("", 50)])
def test_the_import_job_page_size_is_bounded(client, curator, spec, source, limit, rows):
    make_jobs(spec, source, 205)
    client.force_login(curator)
    r = client.get("/imports/", {"limit": limit})
    assert r.status_code == 200 and len(job_ids(r)) == rows


def test_the_spec_page_links_to_all_of_its_import_jobs(client, curator, spec, source):
    other_spec = factories.make_spec(name="Other spec")
    make_jobs(spec, source, 7)
    make_jobs(other_spec, source, 4)
    client.force_login(curator)
    r = client.get(f"/specs/{spec.pk}/")
    assert "Recent imports" in text(r) and "All imports of this spec" in text(r)
    href = unescape(re.search(r'<a href="([^"]*)">All imports of this spec</a>', r.content.decode()).group(1))
    listed = client.get(href)
    assert job_ids(listed) == newest_first(ImportJob.objects.filter(spec=spec)) and "7 in all" in text(listed)


# ------------------------------------------------------------------ takedowns


def test_every_takedown_is_reachable_through_the_older_links(client, curator):
    make_takedowns(501)
    expected = list(Takedown.objects.order_by("-created_at", "-id").values_list("image_ref", flat=True))
    client.force_login(curator)
    first = client.get("/takedowns/")
    assert "501 in all" in text(first)
    pages, last = walk(client, "/takedowns/", "?limit=200", takedown_refs)
    assert [len(p) for p in pages] == [200, 200, 101]
    assert [ref for page in pages for ref in page] == expected  # the oldest (past the 500th) too
    assert 1 in pages[-1]
    back, top = walk(client, "/takedowns/", link(last, "prev"), takedown_refs, rel="prev")
    assert [ref for page in reversed(back) for ref in page] + pages[-1] == expected
    assert link(top, "prev") is None


# ------------------------------------------------------------------ snapshots


def test_every_snapshot_is_reachable_through_the_older_links(client, curator, model_team, spec):
    make_snapshots(spec, 205)
    other_spec = factories.make_spec(name="Other spec")
    make_snapshots(other_spec, 3)
    expected = newest_first(Snapshot.objects.filter(spec=spec))
    for user in (curator, model_team):
        client.force_login(user)
        first = client.get(f"/snapshots/?spec={spec.pk}")
        assert "205 in all" in text(first)
        pages, last = walk(client, "/snapshots/", f"?spec={spec.pk}", snapshot_ids)
        assert [pk for page in pages for pk in page] == expected  # past the 200 newest too, no other spec's
        back, top = walk(client, "/snapshots/", link(last, "prev"), snapshot_ids, rel="prev")
        assert [pk for page in reversed(back) for pk in page] + pages[-1] == expected
    assert len(snapshot_ids(client.get("/snapshots/?limit=100000"))) == 200


# --------------------------------------------------------------- image browser


@pytest.fixture
def many_images(spec, source):
    return [factories.make_image(spec=spec, source=source, filename=f"m{i}.png") for i in range(23)]


def test_the_image_browser_switches_to_cursor_links_past_the_offset_pages(client, curator, many_images,
                                                                         monkeypatch):
    import curation.views

    monkeypatch.setattr(curation.views, "OFFSET_LINKS_BELOW", 8)
    expected = list(Image.objects.order_by("-id").values_list("id", flat=True))
    client.force_login(curator)
    # the offset walk, as bookmarks and the first pages have it
    by_offset = [image_ids(client.get("/images/", {"limit": 3, "offset": o})) for o in range(0, 23, 3)]
    assert [pk for page in by_offset for pk in page] == expected
    # the links: offsets for the first pages, then cursors (no OFFSET scan on deep pages)
    first = client.get("/images/?limit=3")
    assert "offset=3" in link(first, "next")
    pages, last = walk(client, "/images/", "?limit=3", image_ids)
    assert pages == by_offset  # every image once, in the offset walk's order
    deep = link(client.get("/images/?limit=3&offset=6"), "next")
    assert "cursor=" in deep and "offset=" not in deep
    assert "cursor=" in link(last, "prev") and "23 found" in text(last)
    # back to the first page through the previous links
    back, top = walk(client, "/images/", link(last, "prev"), image_ids, rel="prev")
    assert [pk for page in reversed(back) for pk in page] + pages[-1] == expected
    assert link(top, "prev") is None and image_ids(top) == expected[:3]


def test_image_cursor_pages_keep_the_filters(client, curator, spec, source, many_images, monkeypatch):
    import curation.views

    monkeypatch.setattr(curation.views, "OFFSET_LINKS_BELOW", 4)
    elsewhere = factories.make_spec(name="Elsewhere")
    other = [factories.make_image(spec=elsewhere, source=source) for _ in range(3)]
    client.force_login(curator)
    pages, _ = walk(client, "/images/", f"?spec={spec.pk}&limit=4", image_ids)
    assert [pk for page in pages for pk in page] == sorted((im.pk for im in many_images), reverse=True)
    # a cursor made on the unfiltered list only narrows a filtered one: never another spec's image
    unfiltered = link(client.get("/images/?limit=4&offset=4"), "next")
    cursor = re.search(r"cursor=([^&]+)", unfiltered).group(1)
    r = client.get(f"/images/?spec={spec.pk}&limit=50&cursor={cursor}")
    assert r.status_code == 200 and image_ids(r) and not set(image_ids(r)) & {im.pk for im in other}


@pytest.mark.parametrize("path", ["/images/", "/imports/", "/takedowns/", "/snapshots/"])
@pytest.mark.parametrize("cursor", ["garbage", "eyJvIjpbIi1pZCJdLCJ2IjpbMS41XX0", "eyJvIjpbIi1pZCJdLCJ2IjpbIjEiXX0",
                                    "eyJvIjpbXSwidiI6W119", "%ff%fe", "A" * 5000])
def test_a_bad_cursor_is_a_clear_400_on_the_page(client, curator, spec, source, path, cursor):
    factories.make_image(spec=spec, source=source)
    make_jobs(spec, source, 3)
    make_takedowns(3)
    make_snapshots(spec, 3)
    client.force_login(curator)
    r = client.get(f"{path}?cursor={cursor}")
    assert r.status_code == 400
    alert = re.search(r'<[^>]*role="alert"[^>]*>(.*?)</(?:p|div)>', r.content.decode(), re.S)
    assert alert and "This page link is not valid" in text(r)
    assert f'href="{path}"' in alert.group(1)  # and a way back to the first page


def test_a_cursor_of_another_list_is_refused_not_misread(client, curator, spec, source):
    make_jobs(spec, source, 7)
    client.force_login(curator)
    job_cursor = re.search(r"cursor=([^&]+)", link(client.get("/imports/?limit=2"), "next")).group(1)
    assert client.get(f"/images/?cursor={job_cursor}").status_code == 400


# -------------------------------------------------------------------- scoping


@pytest.mark.parametrize("role", [roles.VENDOR_MANAGER, roles.ANNOTATOR, roles.REVIEWER, roles.MODEL_TEAM])
def test_paging_never_shows_these_lists_to_other_roles(client, curator, spec, source, vendor, role):
    factories.make_image(spec=spec, source=source)
    make_jobs(spec, source, 5)
    make_takedowns(5)
    make_snapshots(spec, 4)
    client.force_login(curator)
    cursors = {path: re.search(r"cursor=([^&]+)", link(client.get(f"{path}?limit=2"), "next")).group(1)
               for path in ("/imports/", "/takedowns/")}
    user = factories.make_user(role, vendor=vendor if role in roles.VENDOR_ROLES else None)
    client.force_login(user)
    for path, cursor in cursors.items():
        for query in ("", "?limit=200", f"?cursor={cursor}"):
            r = client.get(path + query)
            assert r.status_code == 403, (path, query)
            assert "Request " not in r.content.decode() and "imports/" not in r.content.decode()
    r = client.get("/images/?cursor=eyJvIjpbIi1pZCJdLCJ2IjpbMTAwMDAwMDBdfQ")
    if role == roles.MODEL_TEAM:  # model teams read every image, as the API lets them
        assert r.status_code == 200
    else:
        assert r.status_code == 403 and 'class="thumb"' not in r.content.decode()
    snapshot_cursor = "eyJvIjpbIi1jcmVhdGVkX2F0IiwiLWlkIl0sInYiOlsiMjk5OS0wMS0wMVQwMDowMDowMCswMDowMCIsMV19"
    r = client.get(f"/snapshots/?cursor={snapshot_cursor}")
    if role == roles.MODEL_TEAM:
        assert r.status_code == 200 and snapshot_ids(r) == newest_first(Snapshot.objects.all())
    else:  # for vendor users the snapshot pages do not exist
        assert r.status_code == 404 and not snapshot_ids(r)


# -------------------------------------------------------------- query counts


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(url)
    assert r.status_code == 200
    return len(ctx.captured_queries)


def cursor_query(client, url: str) -> str:
    href = link(client.get(url), "next")
    return href[href.index("?"):]


def test_an_import_job_page_costs_the_same_queries_at_any_size(client, curator, spec, source):
    make_jobs(spec, source, 2 * 50 + 1)
    client.force_login(curator)
    counts = {(size, page): queries(client, "/imports/" + (cursor_query(client, f"/imports/?limit={size}")
                                                          if page == "deeper" else f"?limit={size}"))
              for size in (5, 50) for page in ("first", "deeper")}
    assert len(set(counts.values())) == 1, counts


def test_a_takedown_page_costs_the_same_queries_at_any_size(client, curator):
    make_takedowns(2 * 50 + 1)
    client.force_login(curator)
    counts = {(size, page): queries(client, "/takedowns/" + (cursor_query(client, f"/takedowns/?limit={size}")
                                                            if page == "deeper" else f"?limit={size}"))
              for size in (5, 50) for page in ("first", "deeper")}
    assert len(set(counts.values())) == 1, counts


def test_a_snapshot_page_costs_the_same_queries_at_any_size(client, curator, spec):
    make_snapshots(spec, 2 * 50 + 1)
    client.force_login(curator)
    counts = {(size, page): queries(client, "/snapshots/" + (cursor_query(client, f"/snapshots/?limit={size}")
                                                            if page == "deeper" else f"?limit={size}"))
              for size in (5, 50) for page in ("first", "deeper")}
    assert len(set(counts.values())) == 1, counts


def test_an_image_cursor_page_costs_the_same_queries_for_5_and_50_rows(client, curator, spec, source, monkeypatch):
    import curation.views

    monkeypatch.setattr(curation.views, "OFFSET_LINKS_BELOW", 1)
    sources = [factories.make_source() for _ in range(3)]
    for i in range(101):
        factories.make_image(spec=spec, source=sources[i % 3], categories=["printed", "shadow"][: 1 + i % 2])
    client.force_login(curator)
    offset = {size: queries(client, f"/images/?limit={size}") for size in (5, 50)}
    deeper = {size: queries(client, "/images/" + cursor_query(client, f"/images/?limit={size}")) for size in (5, 50)}
    back = {size: queries(client, link(client.get(
        "/images/" + cursor_query(client, "/images/" + cursor_query(client, f"/images/?limit={size}"))), "prev"))
        for size in (5, 50)}
    # a cursor page costs what an offset page costs: the same queries, a WHERE in place of an OFFSET
    assert offset[5] == offset[50] == deeper[5] == deeper[50] == back[5] == back[50], (offset, deeper, back)
