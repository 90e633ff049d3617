"""The worst-samples filter by category (API ?category= and the page): a sample belongs to
every category of its image, not only the first; "uncategorised" lists images without any."""
from __future__ import annotations

import re

import pytest

from pipeline import evaluation, selectors
from pipeline.services import model_version_builtin
from tests.labeling.conftest import client_for
from tests.pipeline.evaluation_helpers import StubReader, box, make_eval_snapshot, region

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(curator):
    snap = make_eval_snapshot([([region(box(10, 10, 90, 40), "a")], ("printed", "shadow")),
                               ([region(box(10, 10, 90, 40), "b")], ("handwritten",)),
                               ([region(box(10, 10, 90, 40), "c")], ())])
    run = evaluation.evaluation_create(snapshot=snap, detector_version=None, created_by=curator,
                                       recognizer_version=model_version_builtin(kind="recognizer"))
    return evaluation.evaluation_run(run=run, reader=StubReader(readings=["a", "b", "x"]))


def _truths(qs) -> list[str]:
    return sorted(s.truth_latex for s in qs)


def test_a_sample_is_listed_under_each_of_its_images_categories(run):
    assert run.status == "done", run.error
    assert set(run.metrics["by_category"]) == {"printed", "shadow", "handwritten", "uncategorised"}
    for category, expected in (("printed", ["a"]), ("shadow", ["a"]), ("handwritten", ["b"]),
                               ("uncategorised", ["c"]), (None, ["a", "b", "c"]), ("sha", []), ("", ["a", "b", "c"])):
        assert _truths(selectors.evaluation_samples_worst_first(run, category=category)) == expected, category


def test_api_and_page_filter_by_any_category(run, model_team):
    api = client_for(model_team)
    for category in ("printed", "shadow"):
        body = api.get(f"/api/v1/evaluations/{run.pk}/samples/?category={category}").json()
        assert [s["truth_latex"] for s in body["results"]] == ["a"], category
        assert body["results"][0]["categories"] == ["printed", "shadow"]
    assert api.get(f"/api/v1/evaluations/{run.pk}/samples/?category=uncategorised").json()["count"] == 1

    api.force_login(model_team)
    html = api.get(f"/evaluations/{run.pk}/samples/?category=shadow").content.decode()
    rows = re.findall(r'<tr data-sample="\d+">(.*?)</tr>', html, re.S)
    assert len(rows) == 1 and "printed, shadow" in rows[0]


def test_a_category_holding_a_nul_character_is_a_400_naming_category(run, model_team):
    """PostgreSQL's jsonb cannot compare U+0000: refused before the query, not a 500."""
    r = client_for(model_team).get(f"/api/v1/evaluations/{run.pk}/samples/", {"category": "prin\x00ted"})
    assert r.status_code == 400 and "category" in r.json()
    assert list(selectors.evaluation_samples_worst_first(run, category="prin\x00ted")) == []
