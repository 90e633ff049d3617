"""Paging of the remaining list pages that stopped at a fixed number of rows.

The pre-labeling jobs page showed the 50 newest jobs, the evaluations page the 100 newest runs of
a snapshot (its snapshot menus the 50 and 100 newest snapshots), the notifications page the 100
newest notifications, the guide editor's example picker the 40 newest images of the spec, and a
snapshot's "left out of commercial exports" the first 100 items ("first 100 of N shown"): rows
past the cut could not be reached in the browser at all. As for import jobs, takedowns and
snapshots (tests/curation/test_list_pages_paging.py): every row must be reachable by following
the pages' links, in one order, each row once; the links keep the filters; a damaged page link is
a clear 400 with a way back, not a 500; a page costs the same queries whatever its size; and no
role (nor, for notifications, any other user) reaches rows it could not read before.
"""
from __future__ import annotations

import hashlib
import re
from html import unescape

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common import roles
from curation.models import Image, ImportJob, Snapshot, SnapshotItem, Takedown
from guides.models import GuideExample, Notification
from pipeline.models import EvaluationRun, PrelabelItem, PrelabelJob, QAReport
from tests import factories
from tests.curation.test_list_pages_paging import follow, link, walk
from tests.pages import text

pytestmark = pytest.mark.django_db

BAD_CURSORS = ["garbage", "eyJvIjpbIi1pZCJdLCJ2IjpbMS41XX0", "eyJvIjpbXSwidiI6W119", "%ff%fe", "A" * 5000]


# ------------------------------------------------------------------ helpers


def make_images(spec, source, n: int, prefix: str = "img") -> list[Image]:
    """`n` image rows of `spec` (no files: the pages below list them, never read their pixels)."""
    return Image.objects.bulk_create([
        Image(spec=spec, source=source, file=f"images/{prefix}{i}.png", thumbnail=f"thumbs/{prefix}{i}.jpg",
              original_filename=f"{prefix}-{i:03d}.png", sha256=hashlib.sha256(f"{prefix}{i}".encode()).hexdigest(), phash="0" * 16,
              width=200, height=100, format="PNG", file_size=1) for i in range(n)])


def make_prelabel_jobs(spec, n: int, *, status=PrelabelJob.Status.DONE, images=()) -> list[PrelabelJob]:
    jobs = PrelabelJob.objects.bulk_create([PrelabelJob(spec=spec, status=status, total=len(images))
                                            for _ in range(n)])
    PrelabelItem.objects.bulk_create([
        PrelabelItem(job=job, image=image, status="failed" if i == 0 else "done",
                     error="UnidentifiedImageError: x" if i == 0 else "")
        for job in jobs for i, image in enumerate(images)])
    return jobs


def make_ready_snapshots(spec, n: int, prefix: str = "snap") -> list[Snapshot]:
    return Snapshot.objects.bulk_create(
        [Snapshot(spec=spec, name=f"{prefix}-{i}", ratios={"test": 1.0}, content_hash="", status=Snapshot.Status.READY,
                  intended_use=spec.intended_use) for i in range(n)])


def make_runs(snapshot, n: int, *, exact_match: float = 0.5) -> list[EvaluationRun]:
    return EvaluationRun.objects.bulk_create(
        [EvaluationRun(snapshot=snapshot, status=EvaluationRun.Status.DONE, total=3, processed=3,
                       metrics={"overall": {"exact_match": exact_match}}) for _ in range(n)])


def make_notifications(user, n: int, text_: str = "Note") -> list[Notification]:
    return Notification.objects.bulk_create(
        [Notification(user=user, kind=Notification.Kind.QUESTION_ASKED, message=f"{text_} {i}", url="/guides/")
         for i in range(n)])


def make_left_out(spec, source, n: int, *, commercial: int = 0) -> Snapshot:
    """A ready commercial snapshot with `n` items whose licence forbids commercial use (and
    `commercial` items whose licence allows it)."""
    snapshot = Snapshot.objects.create(spec=spec, name="frozen", ratios={"train": 1.0}, content_hash="",
                                       status=Snapshot.Status.READY, intended_use="commercial",
                                       item_count=n + commercial, commercial_items=commercial)
    images = make_images(spec, source, n + commercial, prefix="lo")
    SnapshotItem.objects.bulk_create([
        SnapshotItem(snapshot=snapshot, image=image, annotation_version=1, split="train", file=image.file,
                     sha256=image.sha256, width=200, height=100,
                     licence={"code": "x", "name": "NC" if i < n else "Open", "allows_commercial": i >= n},
                     source={"name": "Somewhere"})
        for i, image in enumerate(images)])
    return snapshot


def newest_first(qs) -> list[int]:
    return list(qs.order_by("-created_at", "-id").values_list("id", flat=True))


def job_rows(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-job="(\d+)">', response.content.decode())]


def run_rows(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-run="(\d+)">', response.content.decode())]


def notification_rows(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'href="/notifications/(\d+)/"', response.content.decode())]


def picker_rows(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li data-image="(\d+)"', response.content.decode())]


def left_out_rows(response) -> list[int]:
    table = re.search(r'id="left-out-table".*?</table>', response.content.decode(), re.S)
    return [int(pk) for pk in re.findall(r'href="/images/(\d+)/"', table.group(0))] if table else []


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(url)
    assert r.status_code == 200, r.content[:300]
    return len(ctx.captured_queries)


def deeper(client, url: str) -> str:
    """The URL of the page after `url`'s (its rel=next link, resolved against `url`'s path)."""
    href = link(client.get(url), "next")
    assert href, url
    return href if href.startswith("/") else url.split("?")[0] + href


def assert_same_cost(client, url_of) -> None:
    """A first and a second page cost the same queries at 5 and at 50 rows a page."""
    counts = {}
    for size in (5, 50):
        counts[(size, "first")] = queries(client, url_of(size))
        counts[(size, "deeper")] = queries(client, deeper(client, url_of(size)))
    assert len(set(counts.values())) == 1, counts


# ------------------------------------------------------- pre-labeling jobs


def test_every_prelabel_job_is_reachable_through_the_older_links(client, curator, model_team, spec):
    make_prelabel_jobs(spec, 120)
    expected = newest_first(PrelabelJob.objects.all())
    for user in (curator, model_team):
        client.force_login(user)
        first = client.get("/pipeline/jobs/")
        assert link(first, "prev") is None
        pages, last = walk(client, "/pipeline/jobs/", "", job_rows)
        assert [len(p) for p in pages] == [50, 50, 20]
        assert [pk for page in pages for pk in page] == expected  # past the 50 newest too, each once
        assert "Older" in text(first) and "Newer" in text(last)
        back, top = walk(client, "/pipeline/jobs/", link(last, "prev"), job_rows, rel="prev")
        assert [pk for page in reversed(back) for pk in page] + pages[-1] == expected
        assert link(top, "prev") is None


def test_prelabel_job_pages_keep_the_filters_and_the_page_size(client, curator, spec):
    other = factories.make_spec(name="Other spec")
    make_prelabel_jobs(spec, 13, status=PrelabelJob.Status.CANCELLED)
    make_prelabel_jobs(spec, 9, status=PrelabelJob.Status.DONE)
    make_prelabel_jobs(other, 6, status=PrelabelJob.Status.CANCELLED)
    client.force_login(curator)
    query = f"?status=cancelled&spec={spec.pk}&limit=4"
    first = client.get("/pipeline/jobs/" + query)
    href = link(first, "next")
    assert "status=cancelled" in href and f"spec={spec.pk}" in href and "limit=4" in href and "cursor=" in href
    pages, _ = walk(client, "/pipeline/jobs/", query, job_rows)
    assert [len(p) for p in pages] == [4, 4, 4, 1]
    assert [pk for page in pages for pk in page] == newest_first(
        PrelabelJob.objects.filter(spec=spec, status=PrelabelJob.Status.CANCELLED))


@pytest.mark.parametrize(("limit", "rows"), [("1", 1), ("0", 1), ("100000", 200), ("abc", 50)])
def test_the_prelabel_job_page_size_is_bounded(client, curator, spec, limit, rows):
    make_prelabel_jobs(spec, 205)
    client.force_login(curator)
    r = client.get("/pipeline/jobs/", {"limit": limit})
    assert r.status_code == 200 and len(job_rows(r)) == rows


def test_a_prelabel_job_page_costs_the_same_queries_at_any_size(client, curator, spec, source):
    images = make_images(spec, source, 2)
    make_prelabel_jobs(spec, 2 * 50 + 1, images=images)
    client.force_login(curator)
    assert_same_cost(client, lambda size: f"/pipeline/jobs/?limit={size}")


# ------------------------------------------------------------- evaluations


def test_every_evaluation_run_of_a_snapshot_is_reachable(client, model_team, curator, spec):
    snap, elsewhere = make_ready_snapshots(spec, 2)
    make_runs(snap, 130)
    theirs = {run.pk for run in make_runs(elsewhere, 4)}
    expected = newest_first(EvaluationRun.objects.filter(snapshot=snap))
    for user in (model_team, curator):
        client.force_login(user)
        first = client.get(f"/evaluations/?snapshot={snap.pk}")
        assert "130 in all" in text(first)
        pages, last = walk(client, "/evaluations/", f"?snapshot={snap.pk}", run_rows)
        assert [len(p) for p in pages] == [50, 50, 30]
        assert [pk for page in pages for pk in page] == expected  # past the 100 newest too
        assert not theirs & {pk for page in pages for pk in page}
        assert f"snapshot={snap.pk}" in link(first, "next") and "cursor=" in link(first, "next")
        back, top = walk(client, "/evaluations/", link(last, "prev"), run_rows, rel="prev")
        assert [pk for page in reversed(back) for pk in page] + pages[-1] == expected


def test_the_best_value_is_the_best_of_all_runs_of_the_snapshot_not_of_one_page(client, model_team, spec):
    (snap,) = make_ready_snapshots(spec, 1)
    (best,) = make_runs(snap, 1, exact_match=0.9)  # the oldest: on the last page
    make_runs(snap, 12, exact_match=0.4)
    client.force_login(model_team)
    html = client.get(f"/evaluations/?snapshot={snap.pk}&limit=5").content.decode()
    assert "best" not in re.search(r'<td class="num[^"]*" data-col="0">', html).group(0)
    pages, _ = walk(client, "/evaluations/", f"?snapshot={snap.pk}&limit=5", lambda r: r.content.decode())
    row = re.search(rf'<tr data-run="{best.pk}">(.*?)</tr>', pages[-1], re.S).group(1)
    assert 'class="num best" data-col="0"' in row


def test_an_older_snapshot_can_be_chosen_in_both_snapshot_menus(client, model_team, spec):
    snaps = make_ready_snapshots(spec, 120)
    for s in snaps:
        make_runs(s, 1)
    oldest = Snapshot.objects.order_by("created_at", "id").first()
    client.force_login(model_team)
    html = client.get(f"/evaluations/?snapshot={oldest.pk}").content.decode()
    start = re.search(r'<select id="e-snapshot".*?</select>', html, re.S).group(0)
    compare = re.search(r'<select id="e-compare".*?</select>', html, re.S).group(0)
    assert f'<option value="{oldest.pk}" selected>' in start
    assert f'<option value="{oldest.pk}" selected>' in compare
    # and the snapshot's own page leads there, so any snapshot of the (paged) list can be compared on
    detail = client.get(f"/snapshots/{oldest.pk}/").content.decode()
    assert f'href="/evaluations/?snapshot={oldest.pk}"' in detail


def test_an_evaluation_page_costs_the_same_queries_at_any_size(client, model_team, spec):
    (snap,) = make_ready_snapshots(spec, 1)
    make_runs(snap, 2 * 50 + 1)
    client.force_login(model_team)
    assert_same_cost(client, lambda size: f"/evaluations/?snapshot={snap.pk}&limit={size}")


# ----------------------------------------------------------- notifications


def test_every_notification_is_reachable_and_only_ones_own(client, annotator, curator):
    make_notifications(annotator, 130)
    others = {n.pk for n in make_notifications(curator, 7, "Other")}
    expected = newest_first(Notification.objects.filter(user=annotator))
    client.force_login(annotator)
    first = client.get("/notifications/")
    assert "130 in all" in text(first)
    pages, last = walk(client, "/notifications/", "", notification_rows)
    assert [len(p) for p in pages] == [50, 50, 30]
    assert [pk for page in pages for pk in page] == expected  # past the 100 newest too
    back, _ = walk(client, "/notifications/", link(last, "prev"), notification_rows, rel="prev")
    assert [pk for page in reversed(back) for pk in page] + pages[-1] == expected
    # a page link made for one user shows another user only their own notifications
    cursor = re.search(r"cursor=([^&]+)", link(first, "next")).group(1)
    client.force_login(curator)
    r = client.get(f"/notifications/?cursor={cursor}&limit=200")
    assert r.status_code == 200 and set(notification_rows(r)) <= others and "Note " not in text(r)


def test_a_notification_page_costs_the_same_queries_at_any_size(client, annotator):
    make_notifications(annotator, 2 * 50 + 1)
    client.force_login(annotator)
    assert_same_cost(client, lambda size: f"/notifications/?limit={size}")


# ------------------------------------------------ the guide editor's picker


@pytest.fixture
def draft(spec):
    curator = factories.make_user(roles.CURATOR)
    return factories.make_guide(spec=spec, publish=False, by=curator), curator


def test_the_example_picker_pages_through_every_image_of_the_spec(client, spec, source, draft):
    version, curator = draft
    make_images(spec, source, 95)
    elsewhere = {im.pk for im in make_images(factories.make_spec(name="Elsewhere"), source, 5, prefix="else")}
    expected = list(Image.objects.filter(spec=spec).order_by("-id").values_list("id", flat=True))
    client.force_login(curator)
    path = f"/guide-versions/{version.pk}/edit/"
    pages, last = walk(client, path, "", picker_rows)
    assert [len(p) for p in pages] == [40, 40, 15]
    assert [pk for page in pages for pk in page] == expected  # the oldest image too, no other spec's
    assert not elsewhere & set(expected)
    back, _ = walk(client, path, link(last, "prev"), picker_rows, rel="prev")
    assert [pk for page in reversed(back) for pk in page] + pages[-1] == expected


def test_the_example_picker_finds_an_image_by_file_name_and_fills_the_form(client, spec, source, draft):
    version, curator = draft
    images = make_images(spec, source, 60)
    wanted = images[3]  # far past the newest 40
    client.force_login(curator)
    path = f"/guide-versions/{version.pk}/edit/"
    r = client.get(path, {"q": "img-003"})
    assert r.status_code == 200 and picker_rows(r) == [wanted.pk]
    use = unescape(re.search(rf'<li data-image="{wanted.pk}".*?href="([^"]*)"', r.content.decode(), re.S).group(1))
    form = follow(client, path, use)
    assert form.status_code == 200
    assert re.search(rf'name="ex-image" value="{wanted.pk}"|value="{wanted.pk}"[^>]*name="ex-image"',
                     form.content.decode())


def test_an_older_image_is_accepted_as_an_example_by_its_id(client, spec, source, draft):
    version, curator = draft
    images = make_images(spec, source, 60)
    client.force_login(curator)
    r = client.post(f"/guide-versions/{version.pk}/examples/", {"ex-image": str(images[0].pk), "ex-kind": "good",
                                                                "ex-regions": "[]"})
    assert r.status_code == 302
    assert list(GuideExample.objects.filter(version=version).values_list("image_id", flat=True)) == [images[0].pk]


@pytest.mark.parametrize("which", ["other spec", "no such image"])
def test_an_image_the_curator_may_not_pick_is_a_400_naming_the_field(client, spec, source, draft, which):
    version, curator = draft
    make_images(spec, source, 3)
    other = make_images(factories.make_spec(name="Elsewhere"), source, 1, prefix="else")[0]
    image_id = other.pk if which == "other spec" else 10**9
    client.force_login(curator)
    r = client.post(f"/guide-versions/{version.pk}/examples/", {"ex-image": str(image_id), "ex-kind": "bad"})
    assert r.status_code == 400
    errors = re.search(r'<ul class="errorlist" id="id_ex-image_error">(.*?)</ul>', r.content.decode(), re.S)
    assert errors and "No such image in this spec" in errors.group(1)  # beside the image field
    assert not GuideExample.objects.exists()


@pytest.mark.parametrize("role", [roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER, roles.MODEL_TEAM])
def test_the_picker_and_the_id_path_are_for_curators_only(client, spec, source, draft, vendor, role):
    version, _ = draft
    images = make_images(spec, source, 3)
    user = factories.make_user(role, vendor=vendor if role in roles.VENDOR_ROLES else None)
    client.force_login(user)
    r = client.get(f"/guide-versions/{version.pk}/edit/?limit=200")
    assert r.status_code in (403, 404) and not picker_rows(r)
    r = client.post(f"/guide-versions/{version.pk}/examples/", {"ex-image": str(images[0].pk), "ex-kind": "good"})
    assert r.status_code in (403, 404) and not GuideExample.objects.exists()


def test_a_picker_page_costs_the_same_queries_at_any_size(client, spec, source, draft):
    version, curator = draft
    make_images(spec, source, 2 * 50 + 1)
    client.force_login(curator)
    assert_same_cost(client, lambda size: f"/guide-versions/{version.pk}/edit/?limit={size}")


# ------------------------------------------------ snapshot: left out of exports


def test_every_left_out_image_is_reachable_from_the_snapshot_page(client, curator, model_team, spec, source):
    snapshot = make_left_out(spec, source, 130, commercial=4)
    expected = list(SnapshotItem.objects.filter(snapshot=snapshot, licence__allows_commercial=False)
                    .order_by("image_id").values_list("image_id", flat=True))
    allowed = set(SnapshotItem.objects.filter(snapshot=snapshot, licence__allows_commercial=True)
                  .values_list("image_id", flat=True))
    path = f"/snapshots/{snapshot.pk}/"
    for user in (curator, model_team):
        client.force_login(user)
        first = client.get(path)
        assert 'id="left-out-count">130<' in first.content.decode()
        assert "first 100 of" not in text(first).lower()
        pages, last = walk(client, path, "", left_out_rows)
        assert [len(p) for p in pages] == [100, 30]
        assert [pk for page in pages for pk in page] == expected and not allowed & set(expected)
        back, _ = walk(client, path, link(last, "prev"), left_out_rows, rel="prev")
        assert [pk for page in reversed(back) for pk in page] + pages[-1] == expected
        small, _ = walk(client, path, "?limit=40", left_out_rows)
        assert [len(p) for p in small] == [40, 40, 40, 10]


def test_the_left_out_list_is_never_shown_to_vendor_users(client, spec, source, vendor):
    snapshot = make_left_out(spec, source, 5)
    for role in (roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER):
        client.force_login(factories.make_user(role, vendor=vendor))
        r = client.get(f"/snapshots/{snapshot.pk}/?limit=2&cursor=eyJvIjpbImltYWdlX2lkIiwiaWQiXSwidiI6WzAsMF19")
        assert r.status_code == 404 and not left_out_rows(r)


def test_a_left_out_page_costs_the_same_queries_at_any_size(client, curator, spec, source):
    snapshot = make_left_out(spec, source, 2 * 50 + 1)
    client.force_login(curator)
    assert_same_cost(client, lambda size: f"/snapshots/{snapshot.pk}/?limit={size}")


# ------------------------------------------------------------------ bad cursors


@pytest.fixture
def every_page(spec, source, curator, annotator):
    """A path of each page, with rows in it."""
    version = factories.make_guide(spec=spec, publish=False, by=curator)
    make_images(spec, source, 3)
    make_prelabel_jobs(spec, 3)
    (snap,) = make_ready_snapshots(spec, 1)
    make_runs(snap, 3)
    make_notifications(curator, 3)
    left = make_left_out(spec, source, 3)
    return {"/pipeline/jobs/": "", "/evaluations/": f"snapshot={snap.pk}", "/notifications/": "",
            f"/guide-versions/{version.pk}/edit/": "", f"/snapshots/{left.pk}/": ""}


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_bad_cursor_is_a_clear_400_with_a_way_back(client, curator, every_page, cursor):
    client.force_login(curator)
    for path, query in every_page.items():
        r = client.get(f"{path}?{query + '&' if query else ''}cursor={cursor}")
        assert r.status_code == 400, path
        alert = re.search(r'<[^>]*role="alert"[^>]*>(.*?)</(?:p|div)>', r.content.decode(), re.S)
        assert alert and "This page link is not valid" in text(r), path
        back = path + (f"?{query}" if query else "")
        assert f'href="{back}"' in alert.group(1), (path, alert.group(1))  # the first page, filters kept


def test_a_cursor_of_another_list_is_refused_not_misread(client, curator, spec):
    make_prelabel_jobs(spec, 7)
    client.force_login(curator)
    job_cursor = re.search(r"cursor=([^&]+)", link(client.get("/pipeline/jobs/?limit=2"), "next")).group(1)
    version = factories.make_guide(spec=spec, publish=False, by=curator)
    assert client.get(f"/guide-versions/{version.pk}/edit/?cursor={job_cursor}").status_code == 400


@pytest.mark.parametrize("role", [roles.VENDOR_MANAGER, roles.ANNOTATOR, roles.REVIEWER])
def test_vendor_users_never_reach_jobs_or_evaluations_through_a_page_link(client, curator, spec, vendor, role):
    make_prelabel_jobs(spec, 5)
    (snap,) = make_ready_snapshots(spec, 1)
    make_runs(snap, 5)
    client.force_login(curator)
    job_cursor = re.search(r"cursor=([^&]+)", link(client.get("/pipeline/jobs/?limit=2"), "next")).group(1)
    run_cursor = re.search(r"cursor=([^&]+)",
                           link(client.get(f"/evaluations/?snapshot={snap.pk}&limit=2"), "next")).group(1)
    client.force_login(factories.make_user(role, vendor=vendor))
    for url in (f"/pipeline/jobs/?cursor={job_cursor}", "/pipeline/jobs/?limit=200",
                f"/evaluations/?snapshot={snap.pk}&cursor={run_cursor}"):
        r = client.get(url)
        assert r.status_code in (403, 404), url
        assert not job_rows(r) and not run_rows(r)


# ------------------------------------------------------------- the rest


def test_import_jobs_and_takedowns_have_an_index_in_their_page_order():
    for model in (ImportJob, Takedown):
        fields = [[f.lstrip("-") for f in index.fields] for index in model._meta.indexes]
        assert ["created_at", "id"] in fields, model
    call_command("makemigrations", "curation", "--check", "--dry-run", verbosity=0)  # exits 1 when one is missing


def test_the_qa_page_says_corrections_may_be_latex_or_corners(client, curator, spec):
    from django.utils import timezone

    QAReport.objects.create(spec=spec, computed_at=timezone.now(), payload={
        "reviews": {"overall": {"reviews": 4, "accepted": 3, "rejected": 1, "corrected_on_acceptance": 2,
                                "corrected_rate": 0.667}, "by_vendor": []}})
    client.force_login(curator)
    page = text(client.get(f"/specs/{spec.pk}/qa/"))
    assert "came with the reviewer's corrections (LaTeX or corners)" in page
    assert "corrections to the LaTeX" not in page
