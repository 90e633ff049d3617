"""Two more races on PostgreSQL (threads, each with its own connection): a review deciding on an
annotation while its image is taken down, and a claim reaping a lapsed lease while its holder's
first save turns that lease into a slot.

- A rejection must never leave rework on a taken-down image (its files are erased; the annotator
  would be handed a task whose picture answers 410): whichever commits first, the other sees it.
- `_reap_expired` runs with the task locked and then updates the lease; the first save updates
  the lease and then locks the task (its annotation's foreign key). Waiting on each other was a
  deadlock (PostgreSQL failed one of the two: a 500); the reap now skips a lease someone holds.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from common import roles
from curation import services
from curation.models import Image, Takedown
from labeling import services as labeling_services
from labeling.models import Annotation, Claim, Review, Task
from labeling.services import annotation_create, review_create, task_claim_next
from tests import factories
from tests.factories import quad
from tests.pg_threads import backend_pid, start_thread, waiting_on_a_lock

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                       reason="needs PostgreSQL (row locks, concurrent connections): set DATABASE_URL"),
]

BODY = {"kind": "personal_data", "reason": "A parent asked for the photo to be erased.", "requested_by": "Parent"}





def _submitted():
    spec, vendor = factories.make_spec(), factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = task_claim_next(annotator=annotator).task
    annotation = annotation_create(task=task, annotator=annotator, submit=True, regions=[quad(latex="x")])
    reviewer = factories.make_user(roles.REVIEWER)
    return annotation, annotator, reviewer, factories.make_user(roles.CURATOR), Image.objects.get(pk=task.image_id)


def _reject(annotation_id: int, reviewer):
    def go():
        annotation = Annotation.objects.select_related("task__batch").get(pk=annotation_id)
        return review_create(annotation=annotation, reviewer=reviewer, decision="reject", reasons=["latex_error"])
    return go


def _no_rework_left(annotation_id: int, annotator) -> None:
    annotation = Annotation.objects.get(pk=annotation_id)
    assert annotation.status != Annotation.Status.REJECTED, "rework left on a taken-down image"
    assert task_claim_next(annotator=annotator).reason != "rework"


def test_a_rejection_in_flight_when_the_image_is_taken_down_ends_withdrawn():
    """The review holds the annotation (its conditional UPDATE) when the takedown starts: the
    takedown waits for it, then withdraws the rework the rejection made."""
    annotation, annotator, reviewer, curator, image = _submitted()
    deciding, takedown_pid, results = threading.Event(), [], [None, None]
    real_refresh = labeling_services._task_refresh_status

    def paused_refresh(task_id):  # after the review's UPDATE and its second look at the image
        if not deciding.is_set():
            deciding.set()
            waiting_on_a_lock(takedown_pid)
            time.sleep(0.2)
        return real_refresh(task_id)

    labeling_services._task_refresh_status = paused_refresh
    try:
        def take_down():
            assert deciding.wait(10)
            takedown_pid.append(backend_pid())
            return services.image_takedown(image=image, actor=curator, **BODY)

        threads = [start_thread(_reject(annotation.pk, reviewer), results, 0), start_thread(take_down, results, 1)]
        for t in threads:
            t.join(60)
    finally:
        labeling_services._task_refresh_status = real_refresh
    assert isinstance(results[0], Review), results
    assert isinstance(results[1], Takedown), results
    assert Annotation.objects.get(pk=annotation.pk).status == Annotation.Status.WITHDRAWN
    assert Takedown.objects.get().annotations_withdrawn == 1
    _no_rework_left(annotation.pk, annotator)


def test_a_rejection_arriving_while_the_takedown_commits_is_refused():
    """The takedown holds the submitted annotation when the review arrives (it passed the first
    look at the image before the takedown committed): once it has the row, it looks again and is
    refused; the annotation stays submitted, not rework."""
    annotation, annotator, reviewer, curator, image = _submitted()
    holding, review_pid, results = threading.Event(), [], [None, None]
    real_take_down = labeling_services.tasks_take_down

    def paused_take_down(**kwargs):
        done = real_take_down(**kwargs)
        holding.set()
        waiting_on_a_lock(review_pid)
        time.sleep(0.2)
        return done

    real_first_look = labeling_services._refuse_if_taken_down
    looks = []

    def first_look_passes(image_id):  # the review read the image before the takedown committed
        looks.append(image_id)
        if len(looks) == 1:
            return None
        return real_first_look(image_id)

    labeling_services.tasks_take_down = paused_take_down
    labeling_services._refuse_if_taken_down = first_look_passes
    try:
        def reject():
            assert holding.wait(10)
            review_pid.append(backend_pid())
            return _reject(annotation.pk, reviewer)()

        threads = [start_thread(lambda: services.image_takedown(image=image, actor=curator, **BODY), results, 0),
                   start_thread(reject, results, 1)]
        for t in threads:
            t.join(60)
    finally:
        labeling_services.tasks_take_down = real_take_down
        labeling_services._refuse_if_taken_down = real_first_look
    assert isinstance(results[0], Takedown), results
    assert isinstance(results[1], ValidationError | DjangoValidationError), results
    assert "taken down" in str(results[1])
    assert len(looks) == 2
    assert Annotation.objects.get(pk=annotation.pk).status == Annotation.Status.SUBMITTED
    assert not Review.objects.exists()
    _no_rework_left(annotation.pk, annotator)


def test_a_first_save_on_a_lapsed_lease_while_a_claim_reaps_it():
    """The holder's first save has turned their lapsed lease into a slot (not committed) when
    another annotator's claim, holding the task, tries to reap that lease: the claim skips it
    (it finds nothing to take) and the save completes; no deadlock, the slot counted once."""
    spec, vendor = factories.make_spec(), factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    lapsed, other = (factories.make_user(roles.ANNOTATOR, vendor=vendor) for _ in range(2))
    task = task_claim_next(annotator=lapsed).task
    Claim.objects.filter(task=task, annotator=lapsed).update(expires_at=timezone.now() - timedelta(minutes=1))
    saving, claim_pid, results = threading.Event(), [], [None, None]
    real_save_version = labeling_services._save_version

    def paused_save_version(**kwargs):  # after the lease's UPDATE (lease_to_slot), before the insert
        saving.set()
        waiting_on_a_lock(claim_pid, timeout=3)
        time.sleep(0.2)
        return real_save_version(**kwargs)

    labeling_services._save_version = paused_save_version
    try:
        def save():
            fresh = Task.objects.select_related("batch", "image").get(pk=task.pk)
            return annotation_create(task=fresh, annotator=lapsed, regions=[quad(latex="x")])

        def claim():
            assert saving.wait(10)
            claim_pid.append(backend_pid())
            return task_claim_next(annotator=other).reason

        threads = [start_thread(save, results, 0), start_thread(claim, results, 1)]
        for t in threads:
            t.join(60)
    finally:
        labeling_services._save_version = real_save_version
    assert isinstance(results[0], Annotation), results
    assert results[1] == "empty", results
    task.refresh_from_db()
    assert task.slots_taken == 1
    assert Claim.objects.get(task=task, annotator=lapsed).state == Claim.State.ANNOTATED
    assert not Claim.objects.filter(task=task, annotator=other).exists()


def test_a_snapshot_build_lets_rows_that_refer_to_its_images_be_written(monkeypatch):
    """The build locks the spec's accepted images until its items commit (so a takedown waits
    for it), but only FOR NO KEY UPDATE: a pre-label stored meanwhile for one of them (its foreign
    key takes KEY SHARE on the image) is written at once, not held up for the whole build."""
    from curation import snapshots
    from curation.tasks import build_snapshot
    from labeling.models import Prediction

    spec, vendor = factories.make_spec(), factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    annotator, reviewer = factories.make_user(roles.ANNOTATOR, vendor=vendor), factories.make_user(roles.REVIEWER)
    task = task_claim_next(annotator=annotator).task
    annotation = annotation_create(task=task, annotator=annotator, submit=True, regions=[quad(latex="x")])
    review_create(annotation=annotation, reviewer=reviewer, decision="accept")
    curator = factories.make_user(roles.CURATOR)
    monkeypatch.setattr(build_snapshot, "delay", lambda snapshot_id: None)  # built below, in a thread
    snap = snapshots.snapshot_create(spec=spec, name="locking", created_by=curator)
    locked, release, results = threading.Event(), threading.Event(), [None]
    real_assign = snapshots.assign_splits

    def held_assign(*args, **kwargs):  # the images are locked; the items are not written yet
        locked.set()
        release.wait(20)
        return real_assign(*args, **kwargs)

    monkeypatch.setattr(snapshots, "assign_splits", held_assign)
    builder = start_thread(lambda: snapshots.snapshot_build(snapshot=snap).status, results, 0)
    try:
        assert locked.wait(10)
        with connection.cursor() as cur:
            cur.execute("SET lock_timeout = '2s'")
        try:
            Prediction.objects.create(image_id=task.image_id, model_name="m", model_version="1", regions=[],
                                      confidence=0.5)
        finally:
            with connection.cursor() as cur:
                cur.execute("SET lock_timeout = 0")
    finally:
        release.set()
        builder.join(60)
    assert results[0] == "ready", results


def test_switching_an_annotator_off_while_their_source_is_taken_down():
    """One annotator holds a lease on one image of a source and a draft on another when they are
    switched off and the source is taken down at once. Giving their work back used to lock the
    lease (and its task) before the draft, the takedown the draft before the lease: a deadlock.
    Both now take the annotations first."""
    from common.services import user_deactivate

    spec, vendor, source = factories.make_spec(), factories.make_vendor(), factories.make_source()
    for _ in range(2):
        factories.make_image(spec=spec, source=source)
    factories.make_batch(spec, vendor, images=0, quantity=2)
    annotator, curator = factories.make_user(roles.ANNOTATOR, vendor=vendor), factories.make_user(roles.CURATOR)
    drafted = task_claim_next(annotator=annotator).task
    draft = annotation_create(task=drafted, annotator=annotator, regions=[quad(latex="x")])
    leased = task_claim_next(annotator=annotator).task
    assert leased is not None and leased.pk != drafted.pk
    released, takedown_pid, results = threading.Event(), [], [None, None]
    real_refresh = labeling_services._task_refresh_status

    def paused_refresh(task_id):  # the lease is given back (claim and task locked), the draft not yet
        found = real_refresh(task_id)
        if threading.current_thread().name == "deactivate" and not released.is_set():
            released.set()
            waiting_on_a_lock(takedown_pid, timeout=3)
            time.sleep(0.2)
        return found

    labeling_services._task_refresh_status = paused_refresh
    try:
        def take_down():
            assert released.wait(10)
            takedown_pid.append(backend_pid())
            return services.source_takedown(source=source, actor=curator, **BODY)

        def deactivate():
            threading.current_thread().name = "deactivate"
            return user_deactivate(user=annotator, by=curator)

        switch_off = start_thread(deactivate, results, 0)
        take = start_thread(take_down, results, 1)
        for t in (switch_off, take):
            t.join(60)
    finally:
        labeling_services._task_refresh_status = real_refresh
    assert not isinstance(results[0], Exception), results
    assert isinstance(results[1], list) and len(results[1]) == 2, results
    assert Annotation.objects.get(pk=draft.pk).status == Annotation.Status.WITHDRAWN
    assert not Claim.objects.filter(annotator=annotator, state=Claim.State.LIVE).exists()
