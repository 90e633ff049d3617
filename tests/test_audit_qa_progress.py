"""Audit of the stored quota progress (curation/progress.py) against the spec's categories as a
curator edits them, worked out on tests/qa_world.py by hand."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from curation import services as cs
from curation.models import Category
from tests import factories
from tests.schema import assert_response_matches_schema

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

COUNTS = ("collected", "prelabeled", "labeled", "accepted")


def progress(user, spec) -> dict:
    c = APIClient()
    c.force_authenticate(user)
    r = c.get(f"/api/v1/specs/{spec.id}/progress/")
    assert r.status_code == 200
    assert_response_matches_schema(r)
    return r.json()


def test_quota_edits_show_at_once_in_the_stored_progress(qa_world):
    """A quota, a name or a new category is not a count: editing one schedules no refresh, and a
    draft spec is never swept, so the stored report used to keep the old targets and names for
    good while the quota table above the charts showed the new ones."""
    spec = qa_world.spec
    cs.spec_progress_refresh(spec=spec)
    printed = Category.objects.get(spec=spec, slug="printed")
    cs.category_update(category=printed, target_quota=25, name="Printed text")
    cs.category_create(spec=spec, name="Chalkboard", slug="chalkboard", target_quota=5)

    body = progress(qa_world.curator, spec)
    assert body["computed_at"] is not None  # still the stored report
    cats = {c["category"]: c for c in body["by_category"]}
    # Printed: A (rejected task), C and G (accepted), as before the edit; only the target and name change.
    assert (cats["printed"]["name"], cats["printed"]["target"]) == ("Printed text", 25)
    assert tuple(cats["printed"][k] for k in COUNTS) == (3, 0, 2, 2)
    assert cats["chalkboard"] == {"category": "chalkboard", "name": "Chalkboard", "target": 5,
                                  "collected": 0, "prelabeled": 0, "labeled": 0, "accepted": 0}
    assert [c["category"] for c in body["by_category"]][-1] == "chalkboard"

    # A vendor manager's slice carries the same targets.
    mine = {c["category"]: c for c in progress(qa_world.manager1, spec)["by_category"]}
    assert (mine["printed"]["target"], mine["printed"]["collected"]) == (25, 2)
    assert mine["chalkboard"]["target"] == 5

    # The spec page's quota table and its chart say the same target.
    c = Client()
    c.force_login(qa_world.curator)
    html = c.get(f"/specs/{spec.id}/").content.decode()
    assert "3 / 25 collected" in html and "Printed text" in html


def test_a_deleted_category_leaves_the_stored_progress(qa_world):
    spec = qa_world.spec
    extra = cs.category_create(spec=spec, name="Chalkboard", slug="chalkboard", target_quota=5)
    cs.spec_progress_refresh(spec=spec)
    assert "chalkboard" in {c["category"] for c in progress(qa_world.curator, spec)["by_category"]}
    cs.category_delete(category=extra)
    body = progress(qa_world.curator, spec)
    assert "chalkboard" not in {c["category"] for c in body["by_category"]}


def test_split_targets_follow_the_new_quota(qa_world):
    spec = qa_world.spec
    factories.make_snapshot(spec=spec, name="s1", created_by=qa_world.curator, ratios={"train": 3, "test": 1})
    cs.spec_progress_refresh(spec=spec)
    cs.category_update(category=Category.objects.get(spec=spec, slug="printed"), target_quota=20)
    rows = {(s["split"], s["category"]): s for s in progress(qa_world.curator, spec)["by_split"]}
    # quota 20 times 3/4 and 1/4
    assert rows[("train", "printed")]["target"] == 15 and rows[("test", "printed")]["target"] == 5
    assert rows[("unassigned", "printed")]["target"] is None
    assert rows[("train", "handwritten")]["target"] == 8  # quota 10 unchanged: round(7.5)


def test_splits_are_listed_train_validation_test_on_every_database(qa_world):
    """The snapshot's ratios are a JSON object: PostgreSQL's jsonb keeps its keys sorted by length,
    so the splits used to come out test, train, validation there (and train, validation, test on
    SQLite)."""
    spec = qa_world.spec
    factories.make_snapshot(spec=spec, name="s1", created_by=qa_world.curator,
                            ratios={"train": 8, "validation": 1, "test": 1})
    for body in (progress(qa_world.curator, spec), cs.spec_progress_refresh(spec=spec).payload):
        splits = list(dict.fromkeys(s["split"] for s in body["by_split"]))
        assert splits == ["train", "validation", "test", "unassigned"]
