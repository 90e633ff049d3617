"""Keyset ("seek") paging by `cursor`, beside limit/offset on every list endpoint.

Walking a list by cursor gives exactly the rows, in exactly the order, that walking it by offset
gives (ties broken by id, NULLs where this database sorts them), with the filters and the
user's scope applied; its pages are read without OFFSET or COUNT, in the same number of queries
at any depth; a bad cursor is a 400 naming `cursor`; both kinds of answer match the schema.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.db.models import Count, F
from django.test.utils import CaptureQueriesContext
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from common import roles
from common.pagination import LimitOffsetPagination
from curation.models import Image
from labeling.models import Batch, Task
from tests import factories
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def walk(client, url: str, *, cursor: bool, limit: int = 2) -> list[dict]:
    """Every row of the list at `url`, following `next` from the first page."""
    url += ("&" if "?" in url else "?") + f"limit={limit}" + ("&cursor=" if cursor else "")
    rows: list[dict] = []
    for _ in range(200):
        r = client.get(url)
        assert r.status_code == 200, r.content
        assert_response_matches_schema(r)
        body = r.json()
        if cursor:
            assert set(body) == {"next", "results"}, body.keys()
            assert body["next"] is None or "offset=" not in body["next"]
        else:
            assert set(body) == {"count", "next", "previous", "results"}
        assert len(body["results"]) <= limit
        rows += body["results"]
        url = body["next"]
        if url is None:
            return rows
    raise AssertionError("the walk did not end")


def ids(rows) -> list[int]:
    return [r["id"] for r in rows]


def assert_walks_agree(client, url: str, ordering: str, tie_break: str, key=None) -> list[dict]:
    """Cursor and offset walks of `url` sorted by `ordering` give the same rows in the same order.

    By offset, rows tied on `ordering` come in whatever order the database picks, so the offset
    walk states the tie-breaker (`tie_break`, the id in the direction of the last term) that
    the cursor appends by itself; without it the offset walk must still agree on the values."""
    sep = "&" if "?" in url else "?"
    by_cursor = walk(client, f"{url}{sep}ordering={ordering}", cursor=True)
    by_offset = walk(client, f"{url}{sep}ordering={ordering},{tie_break}", cursor=False)
    assert ids(by_cursor) == ids(by_offset), ordering
    assert len(set(ids(by_cursor))) == len(by_cursor)  # nothing twice
    if key is not None:
        # Without the tie-breaker an offset walk agrees on the sequence of values only: PostgreSQL
        # may order tied rows differently from one page's query to the next, so that walk can
        # repeat one tied row and miss another (which is why the cursor appends the id).
        plain_offset = walk(client, f"{url}{sep}ordering={ordering}", cursor=False)
        assert [key(r) for r in plain_offset] == [key(r) for r in by_cursor]
    return by_cursor


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture
def images(spec, source):
    """Nine images: widths and creation times with ties (three and two alike), three in another spec."""
    other = factories.make_spec()
    made = [factories.make_image(spec=spec if i < 6 else other, source=source,
                                 data=factories.png_bytes(width=120 + i % 3)) for i in range(9)]
    when = [T0, T0, T0, T0 + dt.timedelta(seconds=1), T0 + dt.timedelta(seconds=1), T0 + dt.timedelta(seconds=5),
            T0, T0 + dt.timedelta(seconds=1), T0 + dt.timedelta(seconds=9)]
    for image, at in zip(made, when, strict=True):
        Image.objects.filter(pk=image.pk).update(created_at=at)
    return made


@pytest.fixture
def tasks(spec):
    """Two vendors' batches, eight tasks; model confidences with ties and NULLs, priorities with ties."""
    vendor_a, vendor_b = factories.make_vendor(), factories.make_vendor()
    batch_a = factories.make_batch(spec, vendor_a, images=4)
    batch_b = factories.make_batch(spec, vendor_b, images=4)
    confidences = [None, 0.5, 0.5, None, 0.2, 0.5, None, 0.9]
    all_tasks = list(Task.objects.order_by("id"))
    assert len(all_tasks) == 8
    for i, (task, c) in enumerate(zip(all_tasks, confidences, strict=True)):
        Task.objects.filter(pk=task.pk).update(model_confidence=c, priority=i % 2)
    return {"a": batch_a, "b": batch_b, "vendor_a": vendor_a, "vendor_b": vendor_b}


@pytest.fixture
def batches(spec):
    """Six batches created at the same instant (default ordering -created_at, -id ties everywhere),
    deadlines with ties and NULLs, two without a creator."""
    vendor = factories.make_vendor()
    made = [factories.make_batch(spec, vendor, images=1) for _ in range(6)]
    deadlines = [None, dt.date(2026, 1, 1), None, dt.date(2026, 1, 1), dt.date(2025, 6, 1), None]
    for i, (batch, deadline) in enumerate(zip(made, deadlines, strict=True)):
        Batch.objects.filter(pk=batch.pk).update(created_at=T0, deadline=deadline,
                                                  **({"created_by": None} if i in (1, 4) else {}))
    return made


# ----------------------------------------------------------------------------- the walks


def test_walking_images_by_cursor_gives_the_offset_walk(curator_api, images):
    by_cursor = walk(curator_api, "/api/v1/images/", cursor=True)
    assert ids(by_cursor) == ids(walk(curator_api, "/api/v1/images/", cursor=False)) == sorted(i.id for i in images)
    assert ids(walk(curator_api, "/api/v1/images/?ordering=-id", cursor=True)) == sorted(ids(by_cursor), reverse=True)
    for ordering, tie_break, key in [
        ("created_at", "id", lambda r: r["created_at"]),
        ("-created_at", "-id", lambda r: r["created_at"]),
        ("width", "id", lambda r: r["width"]),
        ("-width,created_at", "id", lambda r: (r["width"], r["created_at"])),
    ]:
        assert_walks_agree(curator_api, "/api/v1/images/", ordering, tie_break, key)


def test_cursor_walk_keeps_the_filters(curator_api, spec, images):
    mine = sorted(i.id for i in images if i.spec_id == spec.id)
    assert ids(walk(curator_api, f"/api/v1/images/?spec={spec.id}", cursor=True)) == mine
    rows = assert_walks_agree(curator_api, f"/api/v1/images/?spec={spec.id}", "-created_at", "-id")
    assert sorted(ids(rows)) == mine
    after = (T0 + dt.timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    later = walk(curator_api, f"/api/v1/images/?created_after={after}&ordering=created_at", cursor=True)
    assert ids(later) == ids(walk(curator_api, f"/api/v1/images/?created_after={after}&ordering=created_at,id",
                                  cursor=False))
    assert len(later) == 5


def test_walking_tasks_by_a_nullable_field_keeps_every_null_once(curator_api, tasks):
    assert ids(walk(curator_api, "/api/v1/tasks/", cursor=True)) == list(Task.objects.order_by("id")
                                                                         .values_list("id", flat=True))
    confidence, both = (lambda r: r["model_confidence"]), (lambda r: (r["model_confidence"], r["priority"]))
    for ordering, tie_break, key in [("model_confidence", "id", confidence), ("-model_confidence", "-id", confidence),
                                     ("-priority,model_confidence", "id", both),
                                     ("model_confidence,-priority", "-id", both)]:
        rows = assert_walks_agree(curator_api, "/api/v1/tasks/", ordering, tie_break, key)
        assert len(rows) == 8 and sum(r["model_confidence"] is None for r in rows) == 3
    only_a = walk(curator_api, f"/api/v1/tasks/?batch={tasks['a'].id}&ordering=-model_confidence", cursor=True)
    assert {r["batch"] for r in only_a} == {tasks["a"].id} and len(only_a) == 4


def test_cursor_walk_keeps_the_users_scope(tasks):
    annotator = factories.make_user(roles.ANNOTATOR, vendor=tasks["vendor_a"])
    client = APIClient()
    client.force_authenticate(annotator)
    rows = assert_walks_agree(client, "/api/v1/tasks/", "model_confidence", "id")
    assert {r["batch"] for r in rows} == {tasks["a"].id} and len(rows) == 4
    # A vendor user's images are those of their tasks (a join and SELECT DISTINCT).
    images = assert_walks_agree(client, "/api/v1/images/", "-created_at", "-id")
    assert sorted(ids(images)) == sorted(Task.objects.filter(batch=tasks["a"]).values_list("image_id", flat=True))


def test_walking_sources_in_their_default_non_id_order(curator_api, source):
    """Sources: by `name` by default; `kind` (ties), `acquired_on` (a nullable date), fields of the
    licence (a join) and `licence` itself (ordered as Licence.Meta orders: family, code)."""
    made = [source] + [factories.make_source(code, name=f"Src {name}", kind=kind)
                       for code, name, kind in [("cc0-1.0", "b", "web"), ("cc-by-4.0", "a", "web"),
                                                ("cc-by-nc-4.0", "e", "purchased"), ("cc0-1.0", "c", "web"),
                                                ("cc-by-sa-4.0", "d", "purchased")]]
    for i, s in enumerate(made):
        type(s).objects.filter(pk=s.pk).update(acquired_on=[None, dt.date(2024, 1, 1), None][i % 3])
    by_cursor = walk(curator_api, "/api/v1/sources/", cursor=True)
    assert ids(by_cursor) == ids(walk(curator_api, "/api/v1/sources/", cursor=False))
    assert [r["name"] for r in by_cursor] == sorted(s.name for s in made) and len(by_cursor) == 6
    for ordering, tie_break, key in [("kind", "id", lambda r: r["kind"]),
                                     ("-acquired_on", "-id", lambda r: r["acquired_on"]),
                                     ("acquired_on,-kind", "-id", lambda r: (r["acquired_on"], r["kind"])),
                                     ("licence__name", "id", lambda r: r["licence_name"]),
                                     ("-licence__allows_commercial,name", "id", lambda r: r["name"]),
                                     ("licence", "id", lambda r: r["licence"]),
                                     ("-licence", "-id", lambda r: r["licence"])]:
        assert_walks_agree(curator_api, "/api/v1/sources/", ordering, tie_break, key)
    web = walk(curator_api, "/api/v1/sources/?kind=web&ordering=-acquired_on", cursor=True)
    assert {r["kind"] for r in web} == {"web"} and len(web) == 3


def test_walking_batches_by_a_nullable_date_with_their_counts(curator_api, batches):
    """Batches are counted per row (a GROUP BY); `deadline` is a nullable date."""
    by_cursor = walk(curator_api, "/api/v1/batches/", cursor=True)
    assert sorted(ids(by_cursor)) == sorted(ids(walk(curator_api, "/api/v1/batches/", cursor=False)))
    assert all(r["task_count"] == 1 for r in by_cursor) and len(by_cursor) == 6
    assert_walks_agree(curator_api, "/api/v1/batches/", "deadline", "id", key=lambda r: r["deadline"])
    assert_walks_agree(curator_api, "/api/v1/batches/", "-deadline,created_at", "id", key=lambda r: r["deadline"])
    assert_walks_agree(curator_api, "/api/v1/batches/", "-created_at", "-id", key=lambda r: r["created_at"])


def paginate_all(queryset, limit: int = 2) -> list:
    """Every row of `queryset` through the paginator's cursor mode, as a view would page it."""
    pager, token, rows = LimitOffsetPagination(), "", []
    for _ in range(100):
        request = Request(APIRequestFactory().get("/api/v1/x/", {"cursor": token, "limit": limit}))
        rows += pager.paginate_queryset(queryset, request)
        link = pager.get_next_cursor_link()
        if link is None:
            return rows
        token = parse_qs(urlparse(link).query)["cursor"][0]
    raise AssertionError("the walk did not end")


def test_selector_orderings_with_explicit_nulls_related_fields_and_relations(batches):
    """Orderings the views' selectors use: F().asc(nulls_first=...), fields across a (nullable)
    relation, and a relation ordered by its model's Meta.ordering."""
    tasks = Task.objects.all()
    for i, task in enumerate(tasks.order_by("id")):
        Task.objects.filter(pk=task.pk).update(model_confidence=[None, 0.3, 0.3][i % 3])
    cases = [
        (tasks.order_by(F("model_confidence").asc(nulls_first=True)),
         tasks.order_by(F("model_confidence").asc(nulls_first=True), "id")),
        (tasks.order_by(F("model_confidence").desc(nulls_last=True)),
         tasks.order_by(F("model_confidence").desc(nulls_last=True), "-id")),
        (tasks.order_by("batch__deadline"), tasks.order_by("batch__deadline", "id")),
        (tasks.order_by("-batch__deadline", "image_id"), tasks.order_by("-batch__deadline", "image_id", "id")),
        (tasks.order_by("batch"), tasks.order_by("batch", "-id")),  # Batch.Meta: -created_at, -id
        (Batch.objects.order_by("created_by__username"), Batch.objects.order_by("created_by__username", "id")),
        (Batch.objects.annotate(n=Count("tasks")).order_by("-deadline"),
         Batch.objects.order_by("-deadline", "-id")),
        # Django drops Meta.ordering from GROUP BY queries (QuerySet.ordered is False): by primary key.
        (Batch.objects.annotate(n=Count("tasks")), Batch.objects.order_by("id")),
    ]
    for queryset, expected in cases:
        assert paginate_all(queryset) == list(expected), str(queryset.query)


def test_orderings_a_key_cannot_express_are_a_400_naming_cursor(images):
    request = Request(APIRequestFactory().get("/api/v1/images/", {"cursor": ""}))
    for queryset in [Image.objects.order_by("?"), Image.objects.annotate(n=Count("categories")).order_by("n"),
                     Image.objects.order_by("categories__slug"), Image.objects.order_by("meta")]:
        with pytest.raises(ValidationError) as raised:
            LimitOffsetPagination().paginate_queryset(queryset, request)
        assert list(raised.value.detail) == ["cursor"], raised.value.detail
        assert "limit" in str(raised.value.detail["cursor"][0])
    request = Request(APIRequestFactory().get("/api/v1/images/"))  # limit/offset pages them as before
    assert len(LimitOffsetPagination().paginate_queryset(Image.objects.order_by("?"), request)) == 9


# ------------------------------------------------------------------------------ bad cursors


def _token(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_a_bad_cursor_is_a_400_naming_the_cursor(curator_api, images):
    first = curator_api.get("/api/v1/images/?limit=2&cursor=").json()
    good = parse_qs(urlparse(first["next"]).query)["cursor"][0]
    payload = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    assert payload["o"] == ["id"]
    bad = [
        "!!!", "abc", "e30", _token([1, 2]), _token({"o": ["id"]}), _token({"o": ["id"], "v": []}),
        _token({"o": ["id"], "v": ["x"]}), _token({"o": ["id"], "v": [None]}), _token({"o": ["id"], "v": [2**70]}),
        _token({"o": ["id"], "v": [[1]]}), _token({"o": ["id"], "v": [1.5]}), _token({"o": ["id"], "v": ["1\u0000"]}),
        _token({"o": ["-id"], "v": [1]}), "A" * 5000, base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ]
    for token in bad:
        r = curator_api.get("/api/v1/images/", {"cursor": token})
        assert r.status_code == 400, (token, r.status_code, r.content)
        assert list(r.json()) == ["cursor"] and r.json()["cursor"], r.json()
    # A cursor made for one ordering is refused with another; so is a cursor with an offset.
    r = curator_api.get(f"/api/v1/images/?ordering=-created_at&cursor={good}")
    assert r.status_code == 400 and "ordering" in r.json()["cursor"][0]
    r = curator_api.get(f"/api/v1/images/?offset=2&cursor={good}")
    assert r.status_code == 400 and "offset" in r.json()["cursor"][0]
    created = _token({"o": ["-created_at", "-pk"], "v": ["2025-03-01T12:00:00", 1]})  # naive: refused
    assert curator_api.get(f"/api/v1/images/?ordering=-created_at&cursor={created}").status_code == 400
    created = _token({"o": ["-created_at", "-pk"], "v": ["not a time", 1]})
    assert curator_api.get(f"/api/v1/images/?ordering=-created_at&cursor={created}").status_code == 400
    assert curator_api.get(f"/api/v1/images/?cursor={good}").status_code == 200


def test_a_well_formed_cursor_past_the_end_gives_an_empty_last_page(curator_api, images):
    r = curator_api.get("/api/v1/images/", {"cursor": _token({"o": ["id"], "v": [max(i.id for i in images)]})})
    assert r.status_code == 200 and r.json() == {"next": None, "results": []}
    assert_response_matches_schema(r)


# ------------------------------------------------------------------------------- the queries


def test_deep_cursor_pages_run_no_offset_nor_count_in_constant_queries(curator_api, images):
    url, per_page = "/api/v1/images/?limit=2&ordering=-created_at&cursor=", []
    curator_api.get("/api/v1/users/me/")  # the first request reads the user's roles, once
    while url:
        with CaptureQueriesContext(connection) as ctx:
            r = curator_api.get(url)
        assert r.status_code == 200
        sql = [q["sql"].upper() for q in ctx.captured_queries]
        assert not any(" OFFSET " in s for s in sql), sql
        assert not any("COUNT(" in s for s in sql), sql
        per_page.append(len(sql))
        url = r.json()["next"]
    assert len(per_page) == 5 and len(set(per_page)) == 1, per_page
    # The check above would see an OFFSET: the same depth by offset has one, and a COUNT.
    with CaptureQueriesContext(connection) as ctx:
        assert curator_api.get("/api/v1/images/?limit=2&offset=8&ordering=-created_at").status_code == 200
    sql = " ".join(q["sql"].upper() for q in ctx.captured_queries)
    assert " OFFSET " in sql and "COUNT(" in sql


def test_task_pages_by_cursor_take_the_same_queries_at_any_depth(curator_api, tasks):
    url, per_page = "/api/v1/tasks/?limit=2&ordering=-model_confidence&cursor=", []
    curator_api.get("/api/v1/users/me/")  # the first request reads the user's roles, once
    while url:
        with CaptureQueriesContext(connection) as ctx:
            r = curator_api.get(url)
        per_page.append(len(ctx.captured_queries))
        assert not any(" OFFSET " in q["sql"].upper() for q in ctx.captured_queries)
        url = r.json()["next"]
    assert len(per_page) == 4 and len(set(per_page)) == 1, per_page


# -------------------------------------------------------------------------------- the schema


def test_schema_documents_the_cursor_and_both_answers():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]
    for path in ["/api/v1/images/", "/api/v1/tasks/", "/api/v1/batches/"]:
        params = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert {"limit", "offset", "cursor"} <= set(params)
        assert "next" in params["cursor"]["description"]
    page = schema["components"]["schemas"]["PaginatedImageList"]
    assert page["required"] == ["next", "results"] and {"count", "previous"} <= set(page["properties"])


def test_limit_offset_answers_are_unchanged(curator_api, images):
    body = curator_api.get("/api/v1/images/?limit=2&offset=2").json()
    assert set(body) == {"count", "next", "previous", "results"} and body["count"] == 9
    assert "offset=4" in body["next"] and "cursor" not in body["next"]
    assert ids(body["results"]) == sorted(i.id for i in images)[2:4]


def test_an_extra_action_not_named_in_cursor_paging_actions_pages_by_offset_only(images):
    """Cursor paging is opt-in per action: one its viewset does not name in `cursor_paging_actions`
    (every extra action that pages is named now: tests/common/test_cursor_extra_actions.py) keeps
    limit/offset, and its schema does not offer the parameter it would ignore."""
    from types import SimpleNamespace

    request = Request(APIRequestFactory().get("/api/v1/x/", {"cursor": "!!!", "limit": 2}))
    for view in (SimpleNamespace(action="other"), SimpleNamespace(action="items", cursor_paging_actions=("list",))):
        pager = LimitOffsetPagination()
        assert len(pager.paginate_queryset(Image.objects.all(), request, view)) == 2
        assert not pager.cursor_mode and pager.count == 9
        assert "cursor" not in {p["name"] for p in pager.get_schema_operation_parameters(view)}
    named = SimpleNamespace(action="items", cursor_paging_actions=("list", "items"))
    assert "cursor" in {p["name"] for p in LimitOffsetPagination().get_schema_operation_parameters(named)}
    with pytest.raises(ValidationError):
        LimitOffsetPagination().paginate_queryset(Image.objects.all(), request, named)
