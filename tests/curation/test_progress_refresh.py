"""Quota progress stored by the debounced Celery refresh: pages and the API read the stored
report; every write that changes a count schedules a refresh."""
from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from curation import services as cs
from curation.models import ProgressReport
from curation.progress import progress_compute, spec_progress
from labeling import services as ls
from pipeline import refresh, tasks
from tests import factories
from tests.schema import assert_response_matches_schema

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

COUNTS = ("collected", "prelabeled", "labeled", "accepted")


def progress_of(user, spec) -> dict:
    c = APIClient()
    c.force_authenticate(user)
    r = c.get(f"/api/v1/specs/{spec.id}/progress/")
    assert r.status_code == 200
    assert_response_matches_schema(r)
    return r.json()


def printed(body) -> tuple:
    row = next(c for c in body["by_category"] if c["category"] == "printed")
    return tuple(row[k] for k in COUNTS)


def test_progress_is_read_from_the_stored_report_until_the_worker_refreshes_it(qa_world):
    assert progress_of(qa_world.curator, qa_world.spec)["computed_at"] is None  # no refresh yet: computed now
    tasks.spec_stats_refresh(qa_world.spec.id)
    stored = progress_of(qa_world.curator, qa_world.spec)
    assert stored["computed_at"] is not None and printed(stored) == (3, 0, 2, 2)
    factories.make_image(spec=qa_world.spec, categories=["printed"])
    assert printed(progress_of(qa_world.curator, qa_world.spec)) == (3, 0, 2, 2)  # still the stored one
    tasks.spec_stats_refresh(qa_world.spec.id)
    assert printed(progress_of(qa_world.curator, qa_world.spec)) == (4, 0, 2, 2)


def test_the_stored_report_holds_what_a_live_computation_gives(qa_world):
    factories.make_snapshot(spec=qa_world.spec, name="s1", created_by=qa_world.curator, ratios={"train": 1, "test": 0})
    live = progress_compute(spec=qa_world.spec)
    report = cs.spec_progress_refresh(spec=qa_world.spec)
    assert report.payload == live and report.duration_ms >= 0
    assert ProgressReport.objects.filter(spec=qa_world.spec).count() == 1
    cs.spec_progress_refresh(spec=qa_world.spec)  # replaced, not added
    assert ProgressReport.objects.filter(spec=qa_world.spec).count() == 1


def test_a_vendor_reads_only_their_slice_of_the_stored_report(qa_world):
    before = progress_of(qa_world.manager1, qa_world.spec)
    cs.spec_progress_refresh(spec=qa_world.spec)
    after = progress_of(qa_world.manager1, qa_world.spec)
    assert [v["vendor_name"] for v in after["by_vendor"]] == ["V1"]
    assert printed(after) == (2, 0, 1, 1)  # A and C only, as computed live for the vendor
    assert {k: v for k, v in after.items() if k != "computed_at"} == {
        k: v for k, v in before.items() if k != "computed_at"}
    assert after["by_split"] == [] and after["snapshot"] is None


def test_images_count_as_collected_before_any_batch():
    spec = factories.make_spec()
    factories.make_image(spec=spec, categories=["printed"])
    curator = factories.make_user("curator")
    body = spec_progress(curator, spec)
    assert printed(body) == (1, 0, 0, 0) and body["by_vendor"] == []


def test_the_spec_page_says_when_the_progress_was_computed(qa_world):
    from django.test import Client

    c = Client()
    c.force_login(qa_world.curator)
    assert "Computed just now" in c.get(f"/specs/{qa_world.spec.id}/").content.decode()
    cs.spec_progress_refresh(spec=qa_world.spec)
    assert "As of " in c.get(f"/specs/{qa_world.spec.id}/").content.decode()


@pytest.fixture
def scheduled(monkeypatch):
    """The specs whose refresh was scheduled after commit."""
    calls: list[int] = []
    monkeypatch.setattr(tasks.spec_stats_refresh, "apply_async", lambda args, countdown: calls.append(args[0]))
    return calls


def _changes(spec, vendor, curator):
    """Every write that changes a count of the quota progress, one at a time."""
    image = factories.make_image(spec=spec, categories=["printed"])
    yield "image upload", lambda: factories.make_image(spec=spec, categories=["printed"])
    yield "image categories", lambda: cs.image_update(image=image, categories=["handwritten"])
    yield "batch", lambda: factories.make_batch(spec, vendor, images=1)
    yield "pre-label", lambda: ls.predictions_import(model_name="det", model_version="1", items=[
        {"image": image.id, "regions": [factories.quad()]}])
    annotator = factories.make_user("annotator", vendor=vendor)

    answers = []

    def submit():
        task = ls.task_claim_next(annotator=annotator).task
        answers.append(ls.annotation_create(task=task, annotator=annotator, regions=[factories.quad()], submit=True))

    yield "submit", submit
    yield "review", lambda: ls.review_create(annotation=answers[0], reviewer=curator, decision="accept")
    yield "snapshot", lambda: factories.make_snapshot(spec=spec, name="s", created_by=curator)
    yield "image delete", lambda: cs.image_delete(image=factories.make_image(spec=spec, categories=["printed"]))


def test_every_change_to_a_count_schedules_a_refresh(spec, vendor, scheduled, django_capture_on_commit_callbacks):
    curator = factories.make_user("curator")
    seen = []
    for name, change in _changes(spec, vendor, curator):
        cache.delete(refresh.pending_key(spec.id))
        with django_capture_on_commit_callbacks(execute=True):
            change()
        seen.append((name, scheduled.count(spec.id)))
        scheduled.clear()
    assert [name for name, n in seen if n == 0] == []
    assert len(seen) == 8
