"""An annotator's first save on a task racing the takedown of its image (threads on PostgreSQL,
each with its own connection).

The first save turns the lease into a slot (an UPDATE of the claim) and then inserts the
annotation, whose foreign key to the task takes a KEY SHARE lock on the task row. The takedown
deletes the image's tasks nobody has answered. Whichever commits first, the other must see it:
either the task stays (it has an answer now) and the draft is withdrawn, or the task is gone and
the save is refused with "You hold no lease" (a 400). Never an annotation left pointing at a
deleted task (PostgreSQL's deferred foreign-key check failing one transaction at commit: a 500),
nor a deadlock between the claim and task locks."""
from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ValidationError

from common import roles
from curation import services
from curation.models import Image, Takedown
from labeling import services as labeling_services
from labeling.models import Annotation, Claim, Task
from labeling.services import annotation_create, task_claim_next
from tests import factories
from tests.factories import quad
from tests.pg_threads import backend_pid, start_thread, waiting_on_a_lock

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                       reason="needs PostgreSQL (row locks, concurrent connections): set DATABASE_URL"),
]

BODY = {"kind": "copyright", "reason": "Letter from the publisher.", "requested_by": "Mirae Publishing Co."}
NO_LEASE = "You hold no lease on this task"





def _leased_task(*, overlap: int = 1, answered_by_another: bool = False):
    """One image with one task, leased by `annotator` (and, with `answered_by_another`, already
    holding another annotator's submitted answer)."""
    spec = factories.make_spec()
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1, overlap=overlap)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    if answered_by_another:
        other = factories.make_user(roles.ANNOTATOR, vendor=vendor)
        annotation_create(task=task_claim_next(annotator=other).task, annotator=other, submit=True,
                          regions=[quad(latex="y")])
    task = task_claim_next(annotator=annotator).task
    assert task is not None
    return task, annotator, factories.make_user(roles.CURATOR), Image.objects.get(pk=task.image_id)


def _save(task_id: int, annotator, submit: bool):
    def go():
        task = Task.objects.select_related("batch", "image").get(pk=task_id)
        return annotation_create(task=task, annotator=annotator, submit=submit, regions=[quad(latex="x")])
    return go


def _is_clean_refusal(result) -> bool:
    return isinstance(result, ValidationError | DjangoValidationError) and NO_LEASE in str(result)


def _assert_consistent(*, task_id: int, annotator, save_result, submit: bool, answered_by_another: bool = False):
    """Either the save won (task and answer kept, a draft withdrawn by the takedown) or the
    takedown did (task gone, the save refused with a 400)."""
    mine = Annotation.objects.filter(task_id=task_id, annotator=annotator)
    takedown = Takedown.objects.get()
    if isinstance(save_result, Annotation):
        assert Task.objects.filter(pk=task_id).exists(), "an answer was saved on a task the takedown deleted"
        annotation = mine.get()
        expected = Annotation.Status.SUBMITTED if submit else Annotation.Status.WITHDRAWN
        assert annotation.status == expected
        assert takedown.tasks_removed == 0
        assert takedown.annotations_withdrawn == (0 if submit else 1)
        task = Task.objects.get(pk=task_id)
        claims = Claim.objects.filter(task_id=task_id)
        assert task.slots_taken == claims.filter(state=Claim.State.ANNOTATED).count()
        assert not claims.filter(state=Claim.State.LIVE).exists()
    else:
        assert _is_clean_refusal(save_result), save_result
        assert not mine.exists()
        if answered_by_another:  # the task stays for the other answer; only the lease was given up
            assert Task.objects.filter(pk=task_id).exists()
            assert not Claim.objects.filter(task_id=task_id, state=Claim.State.LIVE).exists()
        else:
            assert not Task.objects.filter(pk=task_id).exists()
            assert takedown.tasks_removed == 1


@pytest.mark.parametrize("submit", [False, True], ids=["draft", "submit"])
@pytest.mark.parametrize("pause", ["before-insert", "after-insert"])
def test_a_first_save_in_flight_when_the_image_is_taken_down(monkeypatch, pause, submit):
    """The save has turned its lease into a slot (and, after-insert, inserted its annotation)
    and not committed yet when the takedown runs: the takedown must wait for it and then keep
    the task, which now holds an answer, instead of deleting it from under the annotation."""
    task, annotator, curator, image = _leased_task()
    saving, takedown_pid, results = threading.Event(), [], [None, None]
    real_save_version = labeling_services._save_version

    def hold():
        saving.set()
        waiting_on_a_lock(takedown_pid, timeout=3)  # the takedown reaches (and waits on) our locks
        time.sleep(0.2)

    def paused_save_version(**kwargs):  # runs after the claim's UPDATE (lease_to_slot)
        if pause == "before-insert":
            hold()
        found = real_save_version(**kwargs)
        if pause == "after-insert":
            hold()
        return found

    monkeypatch.setattr(labeling_services, "_save_version", paused_save_version)

    def take_down():
        assert saving.wait(10)
        takedown_pid.append(backend_pid())
        return services.image_takedown(image=image, actor=curator, **BODY)

    threads = [start_thread(_save(task.pk, annotator, submit), results, 0), start_thread(take_down, results, 1)]
    for t in threads:
        t.join(60)
    assert isinstance(results[1], Takedown), results
    assert isinstance(results[0], Annotation) or _is_clean_refusal(results[0]), results
    _assert_consistent(task_id=task.pk, annotator=annotator, save_result=results[0], submit=submit)


def test_a_first_save_in_flight_on_an_answered_task_is_withdrawn_not_lost(monkeypatch):
    """Overlap 2, one answer in: the task is not the takedown's to delete; the second
    annotator's first draft, in flight, ends up withdrawn with its slot given back."""
    task, annotator, curator, image = _leased_task(overlap=2, answered_by_another=True)
    saving, takedown_pid, results = threading.Event(), [], [None, None]
    real_save_version = labeling_services._save_version

    def paused_save_version(**kwargs):
        found = real_save_version(**kwargs)
        saving.set()
        waiting_on_a_lock(takedown_pid, timeout=3)
        time.sleep(0.2)
        return found

    monkeypatch.setattr(labeling_services, "_save_version", paused_save_version)

    def take_down():
        assert saving.wait(10)
        takedown_pid.append(backend_pid())
        return services.image_takedown(image=image, actor=curator, **BODY)

    threads = [start_thread(_save(task.pk, annotator, False), results, 0), start_thread(take_down, results, 1)]
    for t in threads:
        t.join(60)
    assert isinstance(results[1], Takedown), results
    assert isinstance(results[0], Annotation) or _is_clean_refusal(results[0]), results
    _assert_consistent(task_id=task.pk, annotator=annotator, save_result=results[0], submit=False,
                       answered_by_another=True)


@pytest.mark.parametrize("submit", [False, True], ids=["draft", "submit"])
def test_a_first_save_arriving_while_the_takedown_commits_is_refused_cleanly(monkeypatch, submit):
    """The opposite interleaving: the takedown has deleted the unanswered task (and its lease)
    and not committed yet when the save arrives. The save waits on the lease and then finds it
    gone: a 400 saying so, not an annotation of a deleted task."""
    task, annotator, curator, image = _leased_task()
    done, save_pid, results = threading.Event(), [], [None, None]
    real_take_down = labeling_services.tasks_take_down

    def paused_take_down(**kwargs):  # inside the takedown's transaction, before its commit
        found = real_take_down(**kwargs)
        done.set()
        waiting_on_a_lock(save_pid, timeout=3)
        time.sleep(0.2)
        return found

    monkeypatch.setattr(labeling_services, "tasks_take_down", paused_take_down)

    def save():
        assert done.wait(10)
        save_pid.append(backend_pid())
        return _save(task.pk, annotator, submit)()

    def take_down():
        return services.image_takedown(image=image, actor=curator, **BODY)

    threads = [start_thread(save, results, 0), start_thread(take_down, results, 1)]
    for t in threads:
        t.join(60)
    assert isinstance(results[1], Takedown), results
    assert _is_clean_refusal(results[0]), results
    _assert_consistent(task_id=task.pk, annotator=annotator, save_result=results[0], submit=submit)


def test_a_claim_in_flight_when_the_image_is_taken_down(monkeypatch):
    """`task_claim_next` has locked the task (its candidate) and not committed its lease when the
    takedown runs: the takedown, now locking the tasks, waits for it and then deletes the task
    with the new lease (the annotator's first save then finds no lease)."""
    spec = factories.make_spec()
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    curator = factories.make_user(roles.CURATOR)
    image = Image.objects.get(spec=spec)
    claiming, takedown_pid, results = threading.Event(), [], [None, None]
    real_candidate = labeling_services._claim_candidate

    def paused_candidate(*args, **kwargs):  # the candidate task is row-locked now
        found = real_candidate(*args, **kwargs)
        if found is not None and not claiming.is_set():
            claiming.set()
            waiting_on_a_lock(takedown_pid, timeout=3)
            time.sleep(0.2)
        return found

    monkeypatch.setattr(labeling_services, "_claim_candidate", paused_candidate)

    def claim():
        return task_claim_next(annotator=annotator).task.pk

    def take_down():
        assert claiming.wait(10)
        takedown_pid.append(backend_pid())
        return services.image_takedown(image=image, actor=curator, **BODY)

    threads = [start_thread(claim, results, 0), start_thread(take_down, results, 1)]
    for t in threads:
        t.join(60)
    assert isinstance(results[1], Takedown), results
    assert isinstance(results[0], int), results
    task_id = results[0]
    assert not Task.objects.filter(pk=task_id).exists()
    assert not Claim.objects.filter(task_id=task_id).exists()


def test_a_claim_reaping_a_lapsed_lease_while_the_image_is_taken_down(monkeypatch):
    """`task_claim_next` has locked a full task whose only lease lapsed, and reaps that lease (an
    UPDATE of the claim) after the takedown has locked the leases and waits for the task."""
    from datetime import timedelta

    from django.utils import timezone

    spec = factories.make_spec()
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    lapsed, annotator = (factories.make_user(roles.ANNOTATOR, vendor=vendor) for _ in range(2))
    curator = factories.make_user(roles.CURATOR)
    task = task_claim_next(annotator=lapsed).task
    Claim.objects.filter(task=task, annotator=lapsed).update(expires_at=timezone.now() - timedelta(minutes=1))
    image = Image.objects.get(pk=task.image_id)
    claiming, takedown_pid, results = threading.Event(), [], [None, None]
    real_candidate = labeling_services._claim_candidate

    def paused_candidate(*args, **kwargs):
        found = real_candidate(*args, **kwargs)
        if found is not None and not claiming.is_set():
            claiming.set()
            waiting_on_a_lock(takedown_pid, timeout=3)
            time.sleep(0.2)
        return found

    monkeypatch.setattr(labeling_services, "_claim_candidate", paused_candidate)

    def claim():
        return task_claim_next(annotator=annotator).reason

    def take_down():
        assert claiming.wait(10)
        takedown_pid.append(backend_pid())
        return services.image_takedown(image=image, actor=curator, **BODY)

    threads = [start_thread(claim, results, 0), start_thread(take_down, results, 1)]
    for t in threads:
        t.join(60)
    # `_reap_expired` leaves the lease the takedown has locked alone (it held the task and waited
    # for that lease: a deadlock before), so this claim finds nothing to take; the takedown then
    # deletes the unanswered task with its lapsed lease.
    assert isinstance(results[1], Takedown), results
    assert results[0] in ("claimed", "empty"), results
    assert not Task.objects.filter(pk=task.pk).exists()
