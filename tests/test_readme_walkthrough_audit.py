"""Found by following the README as a new user, on the demo `make run` brings up.

* "Errors are JSON (...), a 404 under /api/ included": under `make run` (DEBUG on) an API URL
  that names no view answered Django's HTML debug page.
* The image list's documented filters `commercial` and `has_truth` (and every other yes/no
  filter declared in a FilterSet) took `1`/`0` for "no filter" and listed every image with a 200;
  any other word did the same, where the README promises a 400 naming the field.
* `manage.py evaluate_detector --photos N` without the real data beside the project ended in a
  FileNotFoundError traceback; its sibling commands say which file is missing.
"""
from __future__ import annotations

import importlib

import pytest
from django.core.management import CommandError, call_command

from tests import factories

pytestmark = pytest.mark.django_db

APPS = ["common", "labeling", "curation", "guides", "pipeline"]


# ------------------------------------------------------------------ JSON 404 with DEBUG on


def test_an_unknown_api_url_answers_json_404_under_make_run_debug(curator_api, client, settings):
    settings.DEBUG = True  # `make run`
    for url in ("/api/v1/nope/", "/api/v1/exports/1/downlod/", "/api/v1/specs/999999/"):
        r = curator_api.get(url)
        assert r.status_code == 404 and r["Content-Type"] == "application/json", (url, r.content[:80])
        assert "detail" in r.json()
    assert curator_api.post("/api/v1/no-such-thing", {}).status_code == 404
    assert curator_api.post("/api/v1/no-such-thing", {})["Content-Type"] == "application/json"
    r = client.get("/no-such-page/")  # pages keep Django's HTML
    assert r.status_code == 404 and r["Content-Type"].startswith("text/html")


# ------------------------------------------------------------------ yes/no filters


def _boolean_filters():
    """(list URL, filter name) of every yes/no filter of every routed viewset's FilterSet."""
    import django_filters

    for app in APPS:
        router = getattr(importlib.import_module(f"{app}.api.urls"), "router", None)
        for prefix, viewset, _ in (router.registry if router else []):
            filterset = getattr(viewset, "filterset_class", None)
            for name, flt in (filterset.base_filters.items() if filterset else []):
                if isinstance(flt, django_filters.BooleanFilter):
                    yield f"/api/v1/{prefix}/", name, flt


def test_every_declared_yes_no_filter_refuses_what_it_cannot_read(curator_api):
    from common.filters import BooleanFilter

    found = list(_boolean_filters())
    assert {("/api/v1/images/", "commercial"), ("/api/v1/images/", "has_truth")} <= {(u, n) for u, n, _ in found}
    for url, name, flt in found:
        assert isinstance(flt, BooleanFilter), (url, name)
        r = curator_api.get(url, {name: "maybe"})
        assert r.status_code == 400 and name in r.json(), (url, name, r.status_code, r.content[:200])
        for value in ("1", "0", "TRUE", "False"):
            assert curator_api.get(url, {name: value}).status_code == 200, (url, name, value)


def test_image_filters_read_1_and_0_as_true_and_false(curator_api):
    spec = factories.make_spec(intended_use="research")
    free = factories.make_image(spec=spec, source=factories.make_source("cc-by-4.0"), truth_latex="x^{2}")
    nc = factories.make_image(spec=spec, source=factories.make_source("cc-by-nc-sa-3.0"))

    def ids(**params):
        r = curator_api.get("/api/v1/images/", {"spec": spec.id, **params})
        assert r.status_code == 200, r.content[:200]
        return {row["id"] for row in r.json()["results"]}

    assert ids(commercial="true") == ids(commercial="1") == {free.id}
    assert ids(commercial="false") == ids(commercial="0") == {nc.id}
    assert ids(has_truth="1") == {free.id} and ids(has_truth="0") == {nc.id}


# ------------------------------------------------------------------ evaluate_detector --photos


def test_evaluate_detector_photos_without_the_real_data_names_the_missing_file(tmp_path, monkeypatch):
    from pipeline.management.commands import evaluate_detector
    from pipeline.ml import data

    monkeypatch.setenv("MATHSET_SHARED_DATA", str(tmp_path / "no-data"))
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")  # nothing rendered earlier stands in for the data
    monkeypatch.setattr(data, "mathtext_samples", lambda n, seed=0: [])  # (rendering 300 formulas is slow)
    monkeypatch.setattr(evaluate_detector, "make_reader", lambda options: None)  # the models are not the point
    with pytest.raises(CommandError) as err:
        call_command("evaluate_detector", "--photos", "1", "--results", str(tmp_path / "det.jsonl"))
    assert "no such file" in str(err.value) and "MATHSET_SHARED_DATA" in str(err.value)
    assert str(tmp_path / "no-data") in str(err.value)
