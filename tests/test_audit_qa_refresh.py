"""Audit of the debounced refresh (pipeline/refresh.py): a write that is rolled back must not hold
back the refresh of the next write that commits."""
from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import transaction

from curation import services as cs
from pipeline import refresh, tasks
from tests import factories

pytestmark = [pytest.mark.django_db]


class _Refused(Exception):
    pass


def test_a_rolled_back_change_does_not_swallow_the_next_refresh(spec, monkeypatch, django_capture_on_commit_callbacks):
    """A page submit that changes an image's categories and then fails elsewhere is rolled back;
    the curator's corrected submit a few seconds later commits. The pending marker used to be
    taken by the rolled-back write (whose scheduling callback was discarded), so the committed
    change scheduled nothing: the spec page kept the old progress for up to an hour (forever for
    a draft spec, which the hourly sweep skips) while saying "about a minute"."""
    scheduled: list[int] = []
    monkeypatch.setattr(tasks.spec_stats_refresh, "apply_async", lambda args, countdown: scheduled.append(args[0]))
    image = factories.make_image(spec=spec, categories=["printed"])
    cache.delete(refresh.pending_key(spec.id))

    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(_Refused), transaction.atomic():
            cs.image_update(image=image, categories=["handwritten"])
            raise _Refused  # another field of the same submit refused: everything is undone
    assert scheduled == []

    with django_capture_on_commit_callbacks(execute=True):
        cs.image_update(image=image, categories=["handwritten"])
    assert scheduled == [spec.id]

    # Still debounced: a second committed change within the minute schedules nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        cs.image_update(image=image, categories=["printed"])
    assert scheduled == [spec.id]


def test_category_gold_and_price_changes_schedule_a_refresh(spec, monkeypatch, django_capture_on_commit_callbacks):
    """Quotas, gold answers and prices feed the progress and QA statistics too; without a refresh
    a draft spec (which the hourly sweep skips) kept the old figures for ever."""
    from decimal import Decimal

    from labeling import services as ls

    scheduled: list[int] = []
    monkeypatch.setattr(tasks.spec_stats_refresh, "apply_async", lambda args, countdown: scheduled.append(args[0]))
    batch = factories.make_batch(spec, images=1)

    def changes(call) -> list[int]:
        scheduled.clear()
        cache.delete(refresh.pending_key(spec.id))
        with django_capture_on_commit_callbacks(execute=True):
            call()
        return list(scheduled)

    category = spec.categories.get(slug="printed")
    assert changes(lambda: cs.category_update(category=category, target_quota=99)) == [spec.id]
    custom = []
    assert changes(lambda: custom.append(cs.category_create(spec=spec, name="Graph paper"))) == [spec.id]
    assert changes(lambda: cs.category_delete(category=custom[0])) == [spec.id]
    task = batch.tasks.get()
    assert changes(lambda: ls.task_set_gold(task=task, answer={"latex": "x"})) == [spec.id]
    assert changes(lambda: ls.batch_update(batch=batch, unit_price=Decimal("0.5"))) == [spec.id]
    assert changes(lambda: ls.batch_update(batch=batch, name="renamed")) == []


def test_progress_of_a_non_numeric_spec_id_is_a_404_not_a_500(curator):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(curator)
    r = api.get("/api/v1/specs/abc/progress/")
    assert r.status_code == 404 and r["Content-Type"].startswith("application/json")
