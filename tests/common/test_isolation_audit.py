# ruff: noqa: F811  (tests take the imported `world` fixture as an argument)
"""Isolation audit: what the per-vendor URL walk of tests/labeling/test_vendor_isolation.py
does not look at.

* a spec shared by two vendors: the quota figures a vendor user reads count only their
  own vendor's work;
* list filters given another vendor's (or an invisible) id answer exactly as for an id
  that does not exist, so not even existence leaks through a 400;
* model teams read data but never prices, costs or vendor people (names, e-mail);
* which writes each role may make at all, on its own vendor's objects.
"""
from __future__ import annotations

import json
import re

import pytest
from django.urls import get_resolver
from drf_spectacular.generators import SchemaGenerator

from common import roles
from guides import services as guides_services
from guides.selectors import spec_current_guide_version
from labeling import services
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for
from tests.labeling.test_vendor_isolation import MARK, SKIP_PREFIXES, fill, walk, world  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

VENDOR_ROLES = [roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER]
MISSING = 987654321


def body_of(response) -> str:
    return "" if hasattr(response, "streaming_content") else response.content.decode("utf-8", "replace")


# ---------------------------------------------------------------- a spec shared by two vendors


@pytest.fixture
def shared(world):
    """Vendor B also has a batch on vendor A's spec, with one task accepted."""
    a, b = world["A"], world[MARK]
    factories.make_batch(a["spec"], b["vendor"], images=2, name=f"Shared {MARK}")
    annotator = factories.make_user(roles.ANNOTATOR, vendor=b["vendor"], username=f"annotator3-{MARK}")
    guides_services.guide_acknowledge(version=spec_current_guide_version(spec=a["spec"]), user=annotator)
    task = services.task_claim_next(annotator=annotator).task
    assert task.batch.vendor_id == b["vendor"].pk and task.batch.spec_id == a["spec"].pk
    annotation = services.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad(latex="y")])
    services.review_create(annotation=annotation, reviewer=b["people"][roles.REVIEWER], decision="accept")
    return world


def _counts(categories) -> dict:
    return {c["category"] if "category" in c else c["slug"]: (c["collected"], c["labeled"], c["accepted"])
            for c in categories}


@pytest.mark.parametrize("role", VENDOR_ROLES)
def test_quota_figures_of_a_shared_spec_count_only_the_vendors_own_work(shared, role):
    a = shared["A"]
    api = client_for(a["people"][role])
    spec = a["spec"].pk
    own_slice = _counts(api.get(f"/api/v1/specs/{spec}/progress/").json()["by_category"])
    assert own_slice["printed"] == (3, 1, 1)  # A's three images; one submitted (rejected later), one accepted
    in_spec = _counts(api.get(f"/api/v1/specs/{spec}/").json()["categories"])
    in_list = _counts(api.get("/api/v1/categories/", {"spec": spec}).json()["results"])
    one = api.get(f"/api/v1/categories/{a['category'].pk}/").json()
    assert {k: in_spec[k] for k in own_slice} == own_slice
    assert {k: in_list[k] for k in own_slice} == own_slice
    assert (one["collected"], one["labeled"], one["accepted"]) == own_slice[one["slug"]]


def test_curators_and_model_teams_still_read_every_vendors_quota_figures(shared):
    spec = shared["A"]["spec"].pk
    for user in (factories.make_user(roles.CURATOR), factories.make_user(roles.MODEL_TEAM)):
        api = client_for(user)
        assert _counts(api.get(f"/api/v1/specs/{spec}/").json()["categories"])["printed"] == (5, 2, 2)
        assert _counts(api.get("/api/v1/categories/", {"spec": spec}).json()["results"])["printed"] == (5, 2, 2)


# ---------------------------------------------------------------- filters as an existence oracle


def _filter_targets(b: dict) -> dict[str, int]:
    """Query parameter name -> the other vendor's object it names."""
    people = b["people"]
    out = {k: b[k].pk for k in ("batch", "spec", "vendor", "task", "image", "annotation", "guide", "question",
                                "source", "category", "snapshot", "contract", "review", "prediction")}
    out.update(annotator=people[roles.ANNOTATOR].pk, reviewer=people[roles.REVIEWER].pk,
               user=people[roles.ANNOTATOR].pk, version=b["version"].pk, guide_version=b["version"].pk,
               job=b["prelabel_job"].pk)
    return out


def _oracles(world) -> list:
    a, b = world["A"], world[MARK]
    schema = SchemaGenerator().get_schema(request=None, public=True)
    targets = _filter_targets(b)
    found, tried = [], 0
    for role in VENDOR_ROLES:
        api = client_for(a["people"][role])
        for path, ops in schema["paths"].items():
            if "{" in path or "get" not in ops:
                continue
            for param in (p["name"] for p in ops["get"].get("parameters", []) if p["in"] == "query"):
                if param not in targets:
                    continue
                foreign, missing = api.get(path, {param: targets[param]}), api.get(path, {param: MISSING})
                tried += 1
                same = (foreign.status_code == missing.status_code and
                        body_of(foreign).replace(str(targets[param]), "ID") == body_of(missing).replace(str(MISSING), "ID"))
                if not same:
                    found.append((role, path, param, foreign.status_code, missing.status_code))
    assert tried > 60
    return found


def test_list_filters_answer_another_vendors_id_as_one_that_does_not_exist(world):
    assert _oracles(world) == []


def test_guides_filtered_by_an_invisible_spec_is_an_empty_list_like_a_missing_one(world):
    api = client_for(world["A"]["people"][roles.ANNOTATOR])
    for spec in (world[MARK]["spec"].pk, MISSING):
        r = api.get("/api/v1/guides/", {"spec": spec})
        assert (r.status_code, r.json()["count"]) == (200, 0)
    assert api.get("/api/v1/guides/", {"spec": world["A"]["spec"].pk}).json()["count"] == 1
    assert api.get("/api/v1/guides/", {"spec": "x"}).status_code == 400


# ---------------------------------------------------------------- model teams: no prices, costs or people

PRICE_KEYS = {"unit_price", "currency", "price_regions", "price_latex", "price_full", "amount", "totals",
              "accepted_total", "cost", "cost_per_accepted"}
# Annotations (and their history) name their annotator: model teams read them as data today.
# Reported, not changed here; every other route must name nobody.
PEOPLE_ALLOWED = ("/api/v1/annotations/",)


def _priced(value) -> bool:
    """A price or cost anywhere in a JSON value (a non-empty PRICE_KEYS entry)."""
    if isinstance(value, dict):
        return any((k in PRICE_KEYS and v not in (None, "", {}, [], 0)) or _priced(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_priced(v) for v in value)
    return False


def test_model_team_reads_no_prices_costs_or_vendor_people_on_any_url(world):
    team = factories.make_user(roles.MODEL_TEAM)
    api = client_for(team)
    people = [u for label in ("A", MARK) for u in world[label]["people"].values()]
    for u in people:
        u.email = f"{u.username}@vendor.example"
        u.save(update_fields=["email"])
    every_id = sorted({o.pk for label in ("A", MARK) for o in world[label].values() if hasattr(o, "pk")})
    routes = [(r, p) for r, p in walk(get_resolver().url_patterns) if not r.startswith(SKIP_PREFIXES)]
    checked = 0
    for route, pattern in routes:
        methods = getattr(pattern.callback, "actions", None) or {"get": None}
        if "get" not in methods or "format" in route:
            continue
        has_param = bool(re.search(r"<|\(\?P<", route))
        for pk in (every_id if has_param else [0]):
            path = fill(route, pk)
            r = api.get(path)
            assert r.status_code < 500, (path, r.status_code)
            text = body_of(r)
            if r.status_code != 200 or not text:
                continue
            checked += 1
            if r["Content-Type"].startswith("application/json"):
                assert not _priced(json.loads(text)), path
            else:
                assert "0.2500" not in text and "0.3000" not in text, path  # batch and contract prices
            if not path.startswith(PEOPLE_ALLOWED):
                for u in people:
                    assert u.email not in text and f'"{u.username}"' not in text and f">{u.username}<" not in text, \
                        (path, u.username)
    assert checked > 80


# ---------------------------------------------------------------- what each role may write at all

# Routes (method, path with ids replaced by {id}) where each role's write may succeed on its own
# vendor's objects; anything else answering 2xx is a role doing what it should not.
ALLOWED_WRITES = {
    roles.ANNOTATOR: {("post", "/api/v1/tasks/next/"), ("patch", "/api/v1/annotations/{id}/"),
                      ("put", "/api/v1/annotations/{id}/"), ("post", "/api/v1/annotations/{id}/submit/"),
                      ("post", "/api/v1/annotations/"), ("post", "/api/v1/tasks/{id}/release/")},
    roles.REVIEWER: {("post", "/api/v1/reviews/"), ("post", "/api/v1/annotations/review-next/")},
    roles.VENDOR_MANAGER: {("post", "/api/v1/vendors/{id}/members/")},
    roles.MODEL_TEAM: {("post", "/api/v1/predictions/bulk/"), ("post", "/api/v1/exports/"),
                       ("post", "/api/v1/snapshots/"), ("post", "/api/v1/model-versions/"),
                       ("post", "/api/v1/model-versions/{id}/activate/"), ("post", "/api/v1/evaluations/")},
}
EVERYONE = {("post", "/api/v1/guide-versions/{id}/acknowledge/"), ("post", "/api/v1/notifications/read-all/"),
            ("post", "/api/v1/notifications/{id}/read/")}
VENDOR_PEOPLE = {("post", "/api/v1/questions/"), ("post", "/api/v1/questions/{id}/close/"),
                 ("post", "/api/v1/questions/{id}/reopen/")}


@pytest.mark.parametrize("role", [*VENDOR_ROLES, roles.MODEL_TEAM])
def test_each_role_writes_only_what_it_may(world, role):
    a = world["A"]
    user = a["people"][role] if role in a["people"] else factories.make_user(role)
    api = client_for(user)
    ids = sorted({o.pk for o in a.values() if hasattr(o, "pk")})
    payload = {"task": a["task"].pk, "annotation": a["annotation"].pk, "spec": a["spec"].pk,
               "vendor": a["vendor"].pk, "batch": a["batch"].pk, "image": a["image"].pk, "guide": a["guide"].pk,
               "version": 1, "decision": "accept", "regions": [quad()], "model_name": "x", "model_version": "1",
               "items": [{"image": a["image"].pk, "regions": []}], "unit_price": "1", "quantity": 1,
               "username": f"new-{role}", "password": "pass-word-123", "role": roles.VENDOR_MANAGER,
               "title": "t", "body": "b", "body_md": "b", "name": "n", "kind": "good", "snapshot": a["snapshot"].pk,
               "format": "coco", "slug": "zz", "target_quota": 3, "gold_answer": {"latex": "x"}, "status": "closed"}
    allowed = ALLOWED_WRITES[role] | EVERYONE | (VENDOR_PEOPLE if role in VENDOR_ROLES else set())
    done = []
    for route, pattern in walk(get_resolver().url_patterns):
        if not route.startswith("api/v1/") or "format" in route:
            continue
        for method in sorted(getattr(pattern.callback, "actions", None) or {}):
            if method in ("get", "head", "options"):
                continue
            has_param = bool(re.search(r"<|\(\?P<", route))
            for pk in (ids if has_param else [0]):
                r = getattr(api, method)(fill(route, pk), payload, format="json")
                assert r.status_code < 500, (method, route, pk, r.status_code)
                if r.status_code < 300:
                    done.append((method, fill(route, "{id}")))
    assert set(done) <= allowed, sorted(set(done) - allowed)
