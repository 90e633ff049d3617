"""A deactivated annotator's unfinished work goes back to the pool, not only their leases.

A first save turns the lease into a permanent slot (an annotated claim), so a draft, and
rework sent back after a rejection, kept its task's slot for good: the task waited for a
person who can no longer log in, and a batch with overlap never completed. What they had
handed in (submitted, accepted) stays as it is.
"""
from __future__ import annotations

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, F, Q

from common import roles
from common.services import user_deactivate
from labeling import services
from labeling.models import Annotation, AnnotationVersion, Claim, Review, Task
from labeling.selectors import batches_with_progress
from tests import factories
from tests.factories import quad

needs_postgres = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="needs PostgreSQL (row locks, concurrent connections): set DATABASE_URL")


def slot_mismatches() -> list:
    """Tasks whose slot count is not their live plus annotated claims."""
    return list(Task.objects.annotate(n=Count("claims", filter=Q(claims__state__in=["live", "annotated"])))
                .exclude(n=F("slots_taken")).values_list("id", "n", "slots_taken"))


def world(*, overlap: int = 1, annotators: int = 4):
    vendor = factories.make_vendor()
    batch = factories.make_batch(factories.make_spec(), vendor, images=1, overlap=overlap)
    people = [factories.make_user(roles.ANNOTATOR, vendor=vendor) for _ in range(annotators)]
    return batch, batch.tasks.get(), people, factories.make_user(roles.REVIEWER, vendor=vendor)


def draft(task, annotator) -> Annotation:
    assert services.task_claim_next(annotator=annotator).task.pk == task.pk
    return services.annotation_create(task=task, annotator=annotator, regions=[quad()])


def handed_in(task, annotator) -> Annotation:
    assert services.task_claim_next(annotator=annotator).task.pk == task.pk
    return services.annotation_create(task=task, annotator=annotator, regions=[quad()], submit=True)


def rejected(task, annotator, reviewer) -> Annotation:
    annotation = handed_in(task, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="reject", reasons=["latex_error"],
                           comment="the exponent is wrong")
    annotation.refresh_from_db()
    return annotation


def progress(batch) -> tuple:
    row = batches_with_progress(factories.make_user(roles.CURATOR)).get(pk=batch.pk)
    return row.n_in_progress, row.n_submitted, row.n_accepted, row.n_rejected


# ------------------------------------------------------------- the gap


@pytest.mark.django_db
def test_a_draft_no_longer_keeps_the_slot_of_a_deactivated_annotator():
    batch, task, (leaver, colleague, *_), _ = world()
    mine = draft(task, leaver)
    saved = AnnotationVersion.objects.filter(annotation=mine).count()

    user_deactivate(user=leaver)

    # Before: the draft's annotated claim held the only slot; the colleague got nothing, for ever.
    assert Task.objects.values_list("slots_taken", flat=True).get(pk=task.pk) == 0
    assert not Claim.objects.filter(annotator=leaver, state__in=["live", "annotated"]).exists()
    assert progress(batch) == (0, 0, 0, 0)
    taken = services.task_claim_next(annotator=colleague)
    assert (taken.reason, taken.task.pk) == ("claimed", task.pk)
    # Their draft is kept (versions and all), out of the workflow.
    mine.refresh_from_db()
    assert mine.status == Annotation.Status.WITHDRAWN and mine.submitted_at is None
    assert AnnotationVersion.objects.filter(annotation=mine).count() == saved
    # The colleague's answer completes the task as if the leaver had never started.
    theirs = services.annotation_create(task=task, annotator=colleague, regions=[quad()], submit=True)
    assert Task.objects.get(pk=task.pk).status == Task.Status.SUBMITTED
    services.review_create(annotation=theirs, reviewer=factories.make_user(roles.REVIEWER, vendor=batch.vendor),
                           decision="accept")
    assert Task.objects.get(pk=task.pk).status == Task.Status.ACCEPTED
    assert progress(batch) == (0, 0, 1, 0)
    assert not slot_mismatches()


@pytest.mark.django_db
def test_rework_of_a_deactivated_annotator_goes_back_to_the_pool_with_its_reasons_kept():
    batch, task, (leaver, colleague, *_), reviewer = world()
    mine = rejected(task, leaver, reviewer)
    assert progress(batch) == (0, 0, 0, 1)

    user_deactivate(user=leaver)

    # Before: the task stayed "rejected", its one slot the leaver's, waiting for a rework nobody would do.
    task.refresh_from_db()
    assert (task.slots_taken, task.status) in {(0, Task.Status.NEW), (0, Task.Status.PRELABELED)}
    assert progress(batch) == (0, 0, 0, 0)
    taken = services.task_claim_next(annotator=colleague)
    assert (taken.reason, taken.task.pk) == ("claimed", task.pk)
    # What the reviewer said stays on the withdrawn annotation, for reviewers and QA to read.
    mine.refresh_from_db()
    assert mine.status == Annotation.Status.WITHDRAWN and mine.submitted_at is not None
    review = Review.objects.get(annotation=mine)
    assert (review.decision, review.reasons, review.comment) == ("reject", ["latex_error"], "the exponent is wrong")
    # And it cannot be reworked or handed in any more (not by a script holding the old version either).
    with pytest.raises(ValidationError):
        services.annotation_update(annotation=mine, by=leaver, version=mine.version, regions=[quad()], submit=True)
    with pytest.raises(ValidationError):
        services.annotation_submit(annotation=mine, by=leaver, version=mine.version)
    assert not slot_mismatches()


@pytest.mark.django_db
def test_overlap_reopens_exactly_the_slots_of_the_people_switched_off():
    """Overlap 3: one leaver's draft, another's rework, a colleague's answer handed in. Two
    slots reopen (two more people get the task, a third does not); the answer handed in stays."""
    batch, task, (drafter, reworker, steady, new1, new2, new3), reviewer = world(overlap=3, annotators=6)
    draft(task, drafter)
    rejected(task, reworker, reviewer)
    kept = handed_in(task, steady)
    before = Annotation.objects.values_list("status", "version", "submitted_at", "current_id").get(pk=kept.pk)
    assert services.task_claim_next(annotator=new1).task is None  # all three slots taken
    assert Task.objects.values_list("status", "slots_taken").get(pk=task.pk) == ("rejected", 3)

    user_deactivate(user=drafter)
    user_deactivate(user=reworker)

    assert Task.objects.values_list("status", "slots_taken").get(pk=task.pk) == ("in_progress", 1)
    assert progress(batch) == (1, 0, 0, 0)
    assert services.task_claim_next(annotator=new1).task.pk == task.pk
    assert services.task_claim_next(annotator=new2).task.pk == task.pk
    assert services.task_claim_next(annotator=new3).task is None
    assert Annotation.objects.values_list("status", "version", "submitted_at", "current_id").get(
        pk=kept.pk) == before
    assert Claim.objects.get(task=task, annotator=steady).state == Claim.State.ANNOTATED
    assert not slot_mismatches()


@pytest.mark.django_db
def test_work_handed_in_stays_untouched_and_is_still_reviewed():
    batch, task, (leaver, *_), reviewer = world()
    second_task = factories.make_batch(batch.spec, batch.vendor, images=1).tasks.get()
    accepted = handed_in(task, leaver)
    services.review_create(annotation=accepted, reviewer=reviewer, decision="accept")
    waiting = handed_in(second_task, leaver)
    rows = lambda: sorted(Annotation.objects.filter(annotator=leaver).values_list(  # noqa: E731
        "id", "status", "version", "submitted_at", "current_id"))
    claims = lambda: sorted(Claim.objects.filter(annotator=leaver).values_list("id", "state"))  # noqa: E731
    tasks = lambda: sorted(Task.objects.values_list("id", "status", "slots_taken"))  # noqa: E731
    before = rows(), claims(), tasks()

    user_deactivate(user=leaver)

    assert (rows(), claims(), tasks()) == before
    # A handed-in answer is judged on its merits: it stays in the review queue and is accepted as usual.
    assert services.review_open_next(reviewer=reviewer).pk == waiting.pk
    services.review_create(annotation=waiting, reviewer=reviewer, decision="accept")
    assert Task.objects.get(pk=second_task.pk).status == Task.Status.ACCEPTED


@pytest.mark.django_db
def test_rejecting_an_answer_of_someone_already_switched_off_reopens_the_task():
    """The rework would otherwise go to a person who can no longer log in."""
    _, task, (leaver, colleague, *_), reviewer = world()
    waiting = handed_in(task, leaver)
    user_deactivate(user=leaver)

    review = services.review_create(annotation=waiting, reviewer=reviewer, decision="reject",
                                    reasons=["wrong_region"])

    waiting.refresh_from_db()
    assert waiting.status == Annotation.Status.WITHDRAWN
    assert Review.objects.get(pk=review.pk).decision == "reject"
    assert Task.objects.values_list("slots_taken", flat=True).get(pk=task.pk) == 0
    assert services.task_claim_next(annotator=colleague).task.pk == task.pk
    assert not slot_mismatches()


@pytest.mark.django_db
def test_release_counts_and_runs_twice_without_counting_a_slot_back_twice():
    vendor = factories.make_vendor()
    batch = factories.make_batch(factories.make_spec(), vendor, images=3)
    leaver = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    first, second, third = batch.tasks.order_by("id")
    sent_back = handed_in(first, leaver)
    draft(second, leaver)
    assert services.task_claim_next(annotator=leaver).task.pk == third.pk  # a lease
    services.review_create(annotation=sent_back, reviewer=reviewer, decision="reject", reasons=["other"],
                           comment="blurred")

    assert services.member_work_release(user=leaver) == 3  # a lease, a draft and a rework
    assert services.member_work_release(user=leaver) == 0
    assert sorted(Task.objects.values_list("slots_taken", flat=True)) == [0, 0, 0]
    assert not slot_mismatches()


@pytest.mark.django_db
def test_switched_back_on_they_are_not_handed_the_task_they_gave_up_again():
    """One annotation per annotator and task: re-offered, their first save would hit that constraint."""
    _, task, (leaver, *_), reviewer = world(overlap=2)
    mine = rejected(task, leaver, reviewer)
    user_deactivate(user=leaver)
    leaver.is_active = True  # the Django admin can switch a user back on
    leaver.save(update_fields=["is_active"])

    again = services.task_claim_next(annotator=leaver)

    assert (again.task, again.reason) == (None, "empty")
    mine.refresh_from_db()
    assert mine.status == Annotation.Status.WITHDRAWN
    with pytest.raises(ValidationError):
        services.annotation_update(annotation=mine, by=leaver, version=mine.version, regions=[quad()])


# ----------------------------------------------------- racing the leaver


@pytest.mark.parametrize("run", range(3))
@pytest.mark.usefixtures("run")
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_postgres
def test_deactivation_racing_the_draft_being_handed_in_one_wins_and_slots_stay_exact():
    from tests.labeling.test_concurrency_postgres import run_threads

    _, task, (leaver, *_), _ = world()
    mine = draft(task, leaver)

    def act(i):
        if i == 0:
            return user_deactivate(user=leaver)
        return services.annotation_submit(annotation=mine, by=leaver, version=mine.version)

    deactivated, submitted = run_threads(2, act)
    assert not isinstance(deactivated, Exception), deactivated
    status = Annotation.objects.values_list("status", flat=True).get(pk=mine.pk)
    if isinstance(submitted, Exception):  # the release came first: the draft is withdrawn
        assert isinstance(submitted, ValidationError), submitted
        assert status == "withdrawn"
        assert Task.objects.values_list("slots_taken", flat=True).get(pk=task.pk) == 0
    else:  # handed in first: it stays, with its slot
        assert status == "submitted"
        assert Task.objects.values_list("status", "slots_taken").get(pk=task.pk) == ("submitted", 1)
    assert not slot_mismatches()


@pytest.mark.parametrize("run", range(3))
@pytest.mark.usefixtures("run")
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_postgres
def test_deactivation_racing_a_rejection_never_leaves_rework_for_the_leaver():
    """Whichever commits first, the rejected answer ends withdrawn and its slot free."""
    from tests.labeling.test_concurrency_postgres import run_threads

    _, task, (leaver, *_), reviewer = world()
    waiting = handed_in(task, leaver)

    def act(i):
        if i == 0:
            return user_deactivate(user=leaver)
        return services.review_create(annotation=waiting, reviewer=reviewer, decision="reject",
                                      reasons=["latex_error"])

    results = run_threads(2, act)
    assert not any(isinstance(r, Exception) for r in results), results
    assert Annotation.objects.values_list("status", flat=True).get(pk=waiting.pk) == "withdrawn"
    assert Task.objects.values_list("slots_taken", flat=True).get(pk=task.pk) == 0
    assert not slot_mismatches()
