"""Id filters of every API list: a number that cannot be an id is a 400 naming the filter."""
from __future__ import annotations

import importlib

import pytest

from common.filters import IdFilter

pytestmark = pytest.mark.django_db

APPS = ["common", "labeling", "curation", "guides", "pipeline"]


def _id_filters():
    """(list URL, filter name) of every IdFilter of every routed viewset's FilterSet."""
    for app in APPS:
        router = getattr(importlib.import_module(f"{app}.api.urls"), "router", None)
        for prefix, viewset, _ in (router.registry if router else []):
            filterset = getattr(viewset, "filterset_class", None)
            for name, flt in (filterset.base_filters.items() if filterset else []):
                if isinstance(flt, IdFilter):
                    yield f"/api/v1/{prefix}/", name


def test_every_list_filters_foreign_keys_by_bounded_ids():
    found = list(_id_filters())
    assert len(found) > 30  # the walk below covers them all


@pytest.mark.parametrize("value", [str(2**63), "1e20", "-1", "1.5"])
def test_id_filter_beyond_an_id_is_a_400_naming_the_filter_not_a_database_error(curator_api, value):
    for url, name in _id_filters():
        r = curator_api.get(url, {name: value})
        assert r.status_code == 400 and name in r.json(), (url, name, r.status_code, r.content[:200])


def test_id_filter_still_filters(curator_api, spec):
    from tests.factories import make_spec

    other = make_spec()
    r = curator_api.get("/api/v1/categories/", {"spec": other.id})
    assert r.status_code == 200
    assert {c["spec"] for c in r.json()["results"]} == {other.id}


def test_qa_report_latest_with_a_spec_beyond_an_id_is_a_400_naming_spec(curator_api):
    r = curator_api.get("/api/v1/qa-reports/latest/", {"spec": str(2**63)})
    assert r.status_code == 400 and "spec" in r.json()
