"""Keyset paging by `cursor` on the extra actions that page: a pre-label job's failures, an
evaluation's samples, the review queue, an annotation's history, a batch's history and a vendor's
members.

As on the lists (tests/common/test_keyset_pagination.py): a cursor walk gives exactly the rows,
in exactly the order, of the offset walk (ties on the ordering broken by id, NULLs where the
action's ordering puts them); it keeps the action's filters and the user's scope; its pages are
read without OFFSET or COUNT, in the same number of queries at any depth; a bad cursor is a 400
naming `cursor`; the schema offers `cursor` on each of them. Without `cursor` they page by
limit/offset exactly as before.
"""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common import roles
from curation.models import SnapshotItem
from labeling import services as labeling
from labeling.models import Annotation
from pipeline import evaluation
from pipeline.models import EvaluationSample, PrelabelItem, PrelabelJob
from pipeline.services import model_version_builtin
from tests import factories
from tests.common.test_keyset_pagination import T0, ids, walk
from tests.factories import quad
from tests.labeling.conftest import client_for
from tests.pipeline.evaluation_helpers import box, make_eval_snapshot, region

pytestmark = pytest.mark.django_db


def assert_same_walks(client, url: str, *, key=ids) -> list[dict]:
    """The cursor walk of `url` equals its offset walk (both follow `next` two rows at a time)."""
    by_cursor = walk(client, url, cursor=True)
    assert key(by_cursor) == key(walk(client, url, cursor=False)), url
    return by_cursor


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture
def failed_job(curator, spec, source):
    """A job with five failed images (their items made in an order unlike the images'), two done
    ones, and another job's failure."""
    images = [factories.make_image(spec=spec, source=source, data=factories.png_bytes(120 + i)) for i in range(8)]
    job, other = (PrelabelJob.objects.create(spec=spec, created_by=curator, status=PrelabelJob.Status.DONE)
                  for _ in range(2))
    for n, i in enumerate([4, 0, 6, 2, 5]):
        PrelabelItem.objects.create(job=job, image=images[i], status=PrelabelItem.Status.FAILED,
                                    error=f"RuntimeError: {n}", attempts=1 + n % 2)
    for i in (1, 3):
        PrelabelItem.objects.create(job=job, image=images[i], status=PrelabelItem.Status.DONE)
    PrelabelItem.objects.create(job=other, image=images[7], status=PrelabelItem.Status.FAILED, error="elsewhere")
    return {"job": job, "failed": sorted(images[i].id for i in [4, 0, 6, 2, 5])}


@pytest.fixture
def samples_run(curator):
    """A queued run given nine samples directly: edit distances and IoUs with ties and NULLs."""
    snap = make_eval_snapshot([([region(box(10, 10, 90, 40), "a")], ("printed",)),
                               ([region(box(10, 10, 90, 40), "b")], ("handwritten",))])
    run = evaluation.evaluation_create(snapshot=snap, detector_version=None, created_by=curator,
                                       recognizer_version=model_version_builtin(kind="recognizer"))
    items = list(SnapshotItem.objects.filter(snapshot=snap).order_by("id"))
    assert len(items) == 2
    values = [(0.5, 0.8), (None, None), (0.5, None), (1.0, 0.3), (0.5, 0.8), (None, 0.9), (0.0, 0.8), (0.5, 0.8),
              (1.0, 0.3)]
    for n, (distance, iou) in enumerate(values):
        item = items[n % 2]
        EvaluationSample.objects.create(run=run, item=item, region_index=n, categories=list(item.categories),
                                        truth_latex=f"t{n}", edit_distance=distance, iou=iou)
    return run


@pytest.fixture
def queue(spec):
    """Vendor A: six submitted annotations by two annotators, submitted at tied instants; vendor B:
    two more. A reviewer of each vendor, and a reviewer of A who annotated one of A's."""
    vendor_a, vendor_b = factories.make_vendor(), factories.make_vendor()
    factories.make_batch(spec, vendor_a, images=7)
    factories.make_batch(spec, vendor_b, images=2)
    a1, a2 = (factories.make_user(roles.ANNOTATOR, vendor=vendor_a) for _ in range(2))
    b1 = factories.make_user(roles.ANNOTATOR, vendor=vendor_b)
    both = factories.make_user(roles.ANNOTATOR, vendor=vendor_a)
    both.groups.add(Group.objects.get(name=roles.REVIEWER))

    def submit(user):
        task = labeling.task_claim_next(annotator=user).task
        return labeling.annotation_create(task=task, annotator=user, submit=True, regions=[quad()])

    made = [submit(u) for u in (a1, a2, a1, a2, a1, a2)] + [submit(b1), submit(b1), submit(both)]
    when = [T0, T0 + dt.timedelta(seconds=1), T0, T0, T0 + dt.timedelta(seconds=1), T0 + dt.timedelta(seconds=3),
            T0, T0 + dt.timedelta(seconds=2), T0]
    for annotation, at in zip(made, when, strict=True):
        Annotation.objects.filter(pk=annotation.pk).update(submitted_at=at, updated_at=at)
    return {"a": made[:6], "b": made[6:8], "own": made[8], "a1": a1, "both": User.objects.get(pk=both.pk),
            "reviewer_a": factories.make_user(roles.REVIEWER, vendor=vendor_a),
            "reviewer_b": factories.make_user(roles.REVIEWER, vendor=vendor_b)}


@pytest.fixture
def history(vendor, spec, annotator):
    """An annotation saved in six versions."""
    factories.make_batch(spec, vendor, images=1)
    task = labeling.task_claim_next(annotator=annotator).task
    ann = labeling.annotation_create(task=task, annotator=annotator, regions=[quad()])
    for v in range(1, 6):
        labeling.annotation_update(annotation=ann, by=annotator, version=v, regions=[quad(), quad(100, 50, 150, 90)])
    return ann


@pytest.fixture
def batch_events(curator, vendor, spec):
    """A batch made and then changed five times (six events), and another batch's change."""
    batch = factories.make_batch(spec, vendor, images=1)
    for n in range(5):
        labeling.batch_update(batch=batch, by=curator, name=f"renamed {n}")
    labeling.batch_update(batch=factories.make_batch(spec, vendor, images=1), by=curator, name="elsewhere")
    return batch


@pytest.fixture
def members(vendor, annotator):
    """The vendor's annotator and five more people; another vendor's reviewer."""
    made = [annotator] + [factories.make_user(role, vendor=vendor) for role in
                          (roles.REVIEWER, roles.VENDOR_MANAGER, roles.ANNOTATOR, roles.REVIEWER, roles.ANNOTATOR)]
    return {"people": made, "outsider": factories.make_user(roles.REVIEWER, vendor=factories.make_vendor())}


def _order_key(sample: EvaluationSample):
    """Worst first, as the selector orders: -edit_distance NULLs last, iou NULLs first, id."""
    distance, iou = sample.edit_distance, sample.iou
    return (distance is None, -(distance or 0), iou is not None, iou or 0, sample.id)


# ----------------------------------------------------------------------------- the walks


def test_job_failures_walk_by_cursor_as_by_offset(curator, model_team, annotator, failed_job):
    job = failed_job["job"]
    url = f"/api/v1/prelabel-jobs/{job.id}/failures/"
    for user in (curator, model_team):
        rows = assert_same_walks(client_for(user), url, key=lambda rows: rows)  # failures carry no id
        assert [r["image"] for r in rows] == failed_job["failed"]  # by image; one item per image and job
        assert [r["error"] for r in rows] == [f"RuntimeError: {n}" for n in (1, 3, 0, 4, 2)]
    # Jobs are curator and model-team business: a vendor user finds no job, with or without a cursor.
    assert client_for(annotator).get(f"{url}?cursor=").status_code == 404
    assert client_for(annotator).get(url).status_code == 404


def test_evaluation_samples_walk_worst_first_with_ties_and_nulls(model_team, annotator, samples_run):
    url = f"/api/v1/evaluations/{samples_run.pk}/samples/"
    rows = assert_same_walks(client_for(model_team), url)
    expected = sorted(EvaluationSample.objects.filter(run=samples_run), key=_order_key)
    assert ids(rows) == [s.id for s in expected] and len(rows) == 9
    assert [(r["edit_distance"], r["iou"]) for r in rows][:3] == [(1.0, 0.3), (1.0, 0.3), (0.5, None)]
    assert [r["edit_distance"] for r in rows][-2:] == [None, None]
    # `category` narrows the cursor walk as it narrows the offset one.
    printed = assert_same_walks(client_for(model_team), f"{url}?category=printed")
    assert ids(printed) == [s.id for s in expected if s.categories == ["printed"]] and len(printed) == 5
    assert client_for(annotator).get(f"{url}?cursor=").status_code == 404


def test_review_queue_walks_oldest_first_in_the_reviewers_scope(curator, queue):
    def expected(annotations):
        fresh = Annotation.objects.filter(pk__in=[a.pk for a in annotations])
        return list(fresh.order_by("submitted_at", "id").values_list("id", flat=True))

    url = "/api/v1/annotations/review-queue/"
    rows = assert_same_walks(client_for(queue["reviewer_a"]), url)
    assert ids(rows) == expected(queue["a"] + [queue["own"]])  # ties on submitted_at: by id
    # Never one's own: a reviewer who also annotated walks the vendor's others only.
    assert ids(assert_same_walks(client_for(queue["both"]), url)) == expected(queue["a"])
    assert ids(assert_same_walks(client_for(queue["reviewer_b"]), url)) == expected(queue["b"])
    assert ids(assert_same_walks(client_for(curator), url)) == expected(queue["a"] + queue["b"] + [queue["own"]])
    # An annotator reviews nothing: the offset walk is empty, and so is the cursor walk.
    assert assert_same_walks(client_for(queue["a1"]), url) == []
    # The queue's filters and `ordering` hold in cursor mode too (ties broken by id, as the cursor does).
    a1 = assert_same_walks(client_for(queue["reviewer_a"]), f"{url}?annotator={queue['a1'].id}")
    assert ids(a1) == expected(queue["a"][0::2])
    reviewer = client_for(queue["reviewer_a"])
    newest = walk(reviewer, f"{url}?ordering=-submitted_at", cursor=True)
    assert ids(newest) == ids(walk(reviewer, f"{url}?ordering=-submitted_at,-id", cursor=False))
    assert [r["submitted_at"] for r in newest] == sorted((r["submitted_at"] for r in newest), reverse=True)


def test_members_and_history_walk_by_cursor_in_the_users_scope(vendor, annotator, history, members):
    url = f"/api/v1/vendors/{vendor.id}/members/"
    people = assert_same_walks(client_for(annotator), url)
    assert [r["username"] for r in people] == sorted(u.username for u in members["people"])
    outsider = client_for(members["outsider"])
    assert outsider.get(f"{url}?cursor=").status_code == outsider.get(url).status_code == 404

    url = f"/api/v1/annotations/{history.id}/history/"
    rows = assert_same_walks(client_for(annotator), url, key=lambda rows: rows)  # versions carry no id
    assert [r["number"] for r in rows] == [1, 2, 3, 4, 5, 6]
    other = factories.make_user(roles.ANNOTATOR, vendor=vendor)  # not theirs: not found either way
    assert client_for(other).get(f"{url}?cursor=").status_code == 404
    assert client_for(other).get(url).status_code == 404


def test_a_batchs_history_walks_by_cursor_in_the_users_scope(curator, vendor, batch_events):
    url = f"/api/v1/batches/{batch_events.id}/history/"
    rows = assert_same_walks(client_for(curator), url, key=lambda rows: rows)
    assert [r["kind"] for r in rows] == ["created"] + ["changed"] * 5
    assert [r["changes"]["name"][1] for r in rows[1:]] == [f"renamed {n}" for n in range(5)]
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    assert assert_same_walks(client_for(manager), url, key=lambda rows: rows) == rows
    outsider = client_for(factories.make_user(roles.VENDOR_MANAGER, vendor=factories.make_vendor()))
    assert outsider.get(f"{url}?cursor=").status_code == outsider.get(url).status_code == 404


# ------------------------------------------------------------------------------ bad cursors


@pytest.fixture
def urls(failed_job, samples_run, queue, history, members, batch_events):
    return [
        f"/api/v1/batches/{batch_events.id}/history/",
        f"/api/v1/prelabel-jobs/{failed_job['job'].id}/failures/",
        f"/api/v1/evaluations/{samples_run.pk}/samples/",
        "/api/v1/annotations/review-queue/",
        f"/api/v1/annotations/{history.id}/history/",
        f"/api/v1/vendors/{history.task.batch.vendor_id}/members/",
    ]


def test_a_bad_cursor_on_an_extra_action_is_a_400_naming_cursor(curator_api, urls):
    for url in urls:
        for token in ["!!!", "e30", "A" * 5000]:
            r = curator_api.get(url, {"cursor": token})
            assert r.status_code == 400, (url, token, r.content)
            assert list(r.json()) == ["cursor"] and r.json()["cursor"], (url, r.json())
        first = curator_api.get(f"{url}?limit=1&cursor=").json()
        assert set(first) == {"next", "results"}, (url, first)
        r = curator_api.get(f"{first['next']}&offset=1")
        assert r.status_code == 400 and "offset" in r.json()["cursor"][0], url
    # A cursor of the review queue made for one ordering is refused under another.
    first = curator_api.get("/api/v1/annotations/review-queue/?limit=1&cursor=").json()
    r = curator_api.get(first["next"] + "&ordering=-submitted_at")
    assert r.status_code == 400 and "ordering" in r.json()["cursor"][0]


# ------------------------------------------------------------------------------- the queries


def test_extra_action_cursor_pages_run_no_offset_nor_count_in_constant_queries(curator_api, urls):
    for url in urls:
        curator_api.get(url)  # the first request reads the user's roles, once
        page, per_page = f"{url}?limit=2&cursor=", []
        while page:
            with CaptureQueriesContext(connection) as ctx:
                r = curator_api.get(page)
            assert r.status_code == 200, (url, r.content)
            sql = [q["sql"].upper() for q in ctx.captured_queries]
            assert not any(" OFFSET " in s for s in sql), (url, sql)
            # (A job's failures first read the job with its progress counts: a COUNT, but not the page's.)
            assert not any('"__COUNT"' in s for s in sql), (url, sql)
            per_page.append(len(sql))
            page = r.json()["next"]
        assert len(per_page) >= 3 and len(set(per_page)) == 1, (url, per_page)
        # The checks above would see them: the same depth by offset has an OFFSET and the page's COUNT.
        with CaptureQueriesContext(connection) as ctx:
            assert curator_api.get(f"{url}?limit=2&offset=2").status_code == 200
        sql = " ".join(q["sql"].upper() for q in ctx.captured_queries)
        assert " OFFSET " in sql and '"__COUNT"' in sql, url


# -------------------------------------------------------------------------------- the schema


def test_schema_offers_cursor_on_the_extra_actions_that_page():
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    for path in ["/api/v1/prelabel-jobs/{id}/failures/", "/api/v1/evaluations/{id}/samples/",
                 "/api/v1/annotations/review-queue/", "/api/v1/annotations/{id}/history/",
                 "/api/v1/vendors/{id}/members/", "/api/v1/batches/{id}/history/"]:
        params = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert {"limit", "offset", "cursor"} <= set(params), path
        assert "next" in params["cursor"]["description"], path
    # A write on the same URL takes no page: members' POST offers no paging parameters.
    assert "cursor" not in {p["name"] for p in paths["/api/v1/vendors/{id}/members/"]["post"].get("parameters", [])}
