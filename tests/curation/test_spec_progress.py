"""Quota progress per category, split and vendor (curation/progress.py), API and spec page."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests import factories
from tests.schema import assert_response_matches_schema

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

COUNTS = ("collected", "prelabeled", "labeled", "accepted")


def client(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def counts(row) -> tuple:
    return tuple(row[k] for k in COUNTS)


def test_progress_per_category_and_vendor(qa_world, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        r = client(qa_world.curator).get(f"/api/v1/specs/{qa_world.spec.id}/progress/")
    assert r.status_code == 200
    assert_response_matches_schema(r)
    cats = {c["category"]: c for c in r.json()["by_category"]}
    # Printed: A (rejected task), C and G (accepted). Handwritten: P, pre-labeled and accepted.
    assert counts(cats["printed"]) == (3, 0, 2, 2) and cats["printed"]["target"] == 10
    assert counts(cats["handwritten"]) == (1, 1, 1, 1)
    assert counts(cats["shadow"]) == (0, 0, 0, 0)
    vendors = {v["vendor_name"]: v for v in r.json()["by_vendor"]}
    assert counts(vendors["V1"]) == (2, 0, 1, 1)
    assert counts(vendors["V2"]) == (2, 1, 2, 2)
    assert {c["category"]: counts(c) for c in vendors["V2"]["by_category"]} == {
        "printed": (1, 0, 1, 1), "handwritten": (1, 1, 1, 1)}
    assert r.json()["by_split"] == [] and r.json()["snapshot"] is None


def test_progress_per_split_uses_the_latest_snapshot(qa_world):
    factories.make_snapshot(spec=qa_world.spec, name="s1", created_by=qa_world.curator, ratios={"train": 1, "test": 0})
    r = client(qa_world.curator).get(f"/api/v1/specs/{qa_world.spec.id}/progress/")
    assert_response_matches_schema(r)
    body = r.json()
    assert body["snapshot_name"] == "s1"
    rows = {(s["split"], s["category"]): s for s in body["by_split"]}
    # The snapshot holds every image with an accepted annotation: A, C, G (printed) and P.
    assert counts(rows[("train", "printed")]) == (3, 0, 2, 2) and rows[("train", "printed")]["target"] == 10
    assert counts(rows[("train", "handwritten")]) == (1, 1, 1, 1)
    assert counts(rows[("test", "printed")]) == (0, 0, 0, 0) and rows[("test", "printed")]["target"] == 0
    assert counts(rows[("unassigned", "printed")]) == (0, 0, 0, 0)
    assert rows[("unassigned", "printed")]["target"] is None


def test_vendor_manager_sees_only_their_vendor(qa_world):
    r = client(qa_world.manager1).get(f"/api/v1/specs/{qa_world.spec.id}/progress/")
    assert r.status_code == 200
    assert_response_matches_schema(r)
    body = r.json()
    assert [v["vendor_name"] for v in body["by_vendor"]] == ["V1"]
    cats = {c["category"]: c for c in body["by_category"]}
    assert counts(cats["printed"]) == (2, 0, 1, 1)  # A and C only
    assert counts(cats["handwritten"]) == (0, 0, 0, 0)
    assert body["by_split"] == [] and body["snapshot"] is None


def test_foreign_vendor_cannot_read_the_progress(qa_world):
    from common import roles
    from tests import factories

    outsider = factories.make_user(roles.VENDOR_MANAGER)
    assert client(outsider).get(f"/api/v1/specs/{qa_world.spec.id}/progress/").status_code == 404


def test_spec_page_shows_progress_charts_and_links_qa(qa_world):
    from django.test import Client

    c = Client()
    c.force_login(qa_world.curator)
    html = c.get(f"/specs/{qa_world.spec.id}/").content.decode()
    assert 'id="spec-progress"' in html and html.count("<svg") >= 2
    assert f'href="/specs/{qa_world.spec.id}/qa/"' in html
    assert "V1" in html and "V2" in html
