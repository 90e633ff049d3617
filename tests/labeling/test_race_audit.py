"""The labeling state machine when several people act at once, and its invalid
transitions done one after another: each answers 400/409 with a message, never a
500, and changes nothing.

Threaded tests use real commits and one connection per thread (PostgreSQL only);
the others run on SQLite too. Some run outside a test-wide transaction
(`transaction=True`) on purpose: that is how requests run when served, and a view
that relies on an enclosing atomic block only fails there.
"""
from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db.models import Count, F, Q

from common import roles
from labeling import services
from labeling.models import Annotation, AnnotationVersion, Claim, Review, Task
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for
from tests.labeling.test_concurrency_postgres import run_threads

needs_postgres = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="needs PostgreSQL (row locks, concurrent connections): set DATABASE_URL")
# Real commits between threads; the catalogue and role rows of data migrations come back after each test.
threaded = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True), needs_postgres]


def slot_mismatches() -> list:
    """Tasks whose slot count is not their live plus annotated claims."""
    return list(Task.objects.annotate(n=Count("claims", filter=Q(claims__state__in=["live", "annotated"])))
                .exclude(n=F("slots_taken")).values_list("id", "n", "slots_taken"))


def one_task_world(*, overlap: int = 1, reviewers: int = 1):
    vendor = factories.make_vendor()
    factories.make_batch(factories.make_spec(), vendor, images=1, overlap=overlap)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = services.task_claim_next(annotator=annotator).task
    return vendor, annotator, task, [factories.make_user(roles.REVIEWER, vendor=vendor) for _ in range(reviewers)]


def snapshot(annotation_id: int) -> tuple:
    """What a refused request must leave as it was."""
    a = Annotation.objects.get(pk=annotation_id)
    return (a.status, a.version, a.current_id, a.submitted_at, AnnotationVersion.objects.count(),
            Review.objects.count(), sorted(Claim.objects.values_list("id", "state")),
            sorted(Task.objects.values_list("id", "status", "slots_taken")))


# ------------------------------------------------------- stale saves, served


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_stale_save_answers_409_when_the_request_runs_in_no_transaction():
    """Served requests run outside any atomic block (no ATOMIC_REQUESTS): the 409 of a
    stale PUT was a 500 there (TransactionManagementError from set_rollback)."""
    _, annotator, task, _ = one_task_world()
    api = client_for(annotator)
    ann = api.post("/api/v1/annotations/", {"task": task.id, "regions": [quad(latex="a")]}, format="json").json()
    assert api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "regions": [quad(latex="b")]},
                   format="json").status_code == 200
    r = api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "regions": [quad(latex="c")]}, format="json")
    assert r.status_code == 409, r.content
    assert r.json()["current_version"] == 2
    assert list(AnnotationVersion.objects.filter(annotation_id=ann["id"]).values_list("number", flat=True)) == [1, 2]


# ------------------------------------------ a save racing a submit or review


@pytest.mark.django_db
def test_saving_an_annotation_submitted_meanwhile_says_so_instead_of_a_version_conflict():
    """A save built from the draft it read, after the same version was submitted: 400
    naming the status (a 409 "someone saved version 1 first" sends the client to
    reload and retry a save that can never succeed)."""
    _, annotator, task, _ = one_task_world()
    ann = services.annotation_create(task=task, annotator=annotator, regions=[quad()])
    read_before = Annotation.objects.get(pk=ann.pk)
    services.annotation_submit(annotation=Annotation.objects.get(pk=ann.pk), by=annotator, version=1)
    before = snapshot(ann.pk)
    with pytest.raises(ValidationError) as exc:
        services.annotation_update(annotation=read_before, by=annotator, version=1, regions=[quad(latex="y")])
    assert "cannot be changed" in str(exc.value.message_dict["status"])
    assert snapshot(ann.pk) == before


@pytest.mark.parametrize("run", range(4))
@pytest.mark.usefixtures("run")
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_postgres
def test_autosave_racing_submit_either_saves_then_conflicts_or_is_refused():
    _, annotator, task, _ = one_task_world()
    ann = services.annotation_create(task=task, annotator=annotator, regions=[quad()])
    api = [client_for(annotator), client_for(annotator)]

    def act(i):
        if i == 0:
            return api[0].post(f"/api/v1/annotations/{ann.id}/submit/", {"version": 1}, format="json")
        return api[1].put(f"/api/v1/annotations/{ann.id}/", {"version": 1, "regions": [quad(latex="z")]},
                          format="json")

    submit, save = run_threads(2, act)
    assert not isinstance(submit, Exception) and not isinstance(save, Exception), (submit, save)
    current = Annotation.objects.get(pk=ann.pk)
    if save.status_code == 200:  # the save first: the submit of version 1 is stale
        assert submit.status_code == 409 and submit.json()["current_version"] == 2, submit.content
        assert (current.status, current.version) == ("draft", 2)
    else:  # the submit first: the save is refused, saying why
        assert submit.status_code == 200, submit.content
        assert save.status_code == 400 and "status" in save.json(), save.content
        assert (current.status, current.version) == ("submitted", 1)
    assert AnnotationVersion.objects.filter(annotation=ann).count() == current.version


@pytest.mark.django_db
def test_submit_checks_the_version_it_hands_in_not_the_one_it_read():
    """A submit of version 2 built from version 1 as read (complete) must not hand in
    version 2 when that one is incomplete."""
    _, annotator, task, _ = one_task_world()
    ann = services.annotation_create(task=task, annotator=annotator, regions=[quad()])
    read_before = Annotation.objects.get(pk=ann.pk)
    services.annotation_update(annotation=Annotation.objects.get(pk=ann.pk), by=annotator, version=1,
                               regions=[quad(latex="")])  # a draft may still lack its LaTeX
    before = snapshot(ann.pk)
    with pytest.raises(ValidationError) as exc:
        services.annotation_submit(annotation=read_before, by=annotator, version=2)
    assert "regions[0].latex" in exc.value.message_dict
    assert snapshot(ann.pk) == before


@pytest.mark.django_db
def test_a_review_records_the_version_it_decided_on():
    """Reviewer A opens version 1; meanwhile B rejects it and the annotator hands in
    version 2; A's accept of version 2 must point at version 2."""
    _, annotator, task, (rev_a, rev_b) = one_task_world(reviewers=2)
    ann = services.annotation_create(task=task, annotator=annotator, regions=[quad()], submit=True)
    read_by_a = Annotation.objects.get(pk=ann.pk)
    services.review_create(annotation=Annotation.objects.get(pk=ann.pk), reviewer=rev_b, decision="reject",
                           reasons=["latex_error"])
    services.annotation_update(annotation=Annotation.objects.get(pk=ann.pk), by=annotator, version=1,
                               regions=[quad(latex="y")], submit=True)
    review = services.review_create(annotation=read_by_a, reviewer=rev_a, decision="accept", version=2)
    current = Annotation.objects.get(pk=ann.pk)
    assert (current.status, current.version) == ("accepted", 2)
    assert review.version_id == current.current_id


# ------------------------------------------------- claims and task status


@pytest.mark.django_db
def test_a_new_claim_on_a_task_awaiting_rework_keeps_it_rejected():
    """Overlap 2: one annotation rejected, the other slot given back and taken again.
    The task stays "rejected" (as its annotations say) rather than "in progress"."""
    vendor = factories.make_vendor()
    factories.make_batch(factories.make_spec(), vendor, images=1, overlap=2)
    first, second, third = (factories.make_user(roles.ANNOTATOR, vendor=vendor) for _ in range(3))
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    task = services.task_claim_next(annotator=first).task
    ann = services.annotation_create(task=task, annotator=first, regions=[quad()], submit=True)
    assert services.task_claim_next(annotator=second).task.id == task.id
    services.review_create(annotation=ann, reviewer=reviewer, decision="reject", reasons=["latex_error"])
    services.claim_release(task=task, annotator=second)
    assert Task.objects.get(pk=task.pk).status == "rejected"
    assert services.task_claim_next(annotator=third).task.id == task.id
    assert Task.objects.values_list("status", "slots_taken").get(pk=task.pk) == ("rejected", 2)


@pytest.mark.parametrize("run", range(3))
@pytest.mark.usefixtures("run")
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_postgres
def test_release_racing_the_first_save_one_wins_and_slots_stay_exact():
    _, annotator, task, _ = one_task_world()

    def act(i):
        if i == 0:
            return services.claim_release(task=task, annotator=annotator)
        return services.annotation_create(task=task, annotator=annotator, regions=[quad()], submit=True)

    released, saved = run_threads(2, act)
    assert isinstance(released, ValidationError) != isinstance(saved, ValidationError), (released, saved)
    assert not slot_mismatches()
    expect = ("new", 0) if isinstance(saved, ValidationError) else ("submitted", 1)
    assert Task.objects.values_list("status", "slots_taken").get(pk=task.pk) == expect
    assert Annotation.objects.count() == (0 if isinstance(saved, ValidationError) else 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_postgres
def test_double_clicked_first_save_stores_one_annotation():
    _, annotator, task, _ = one_task_world()
    api = [client_for(annotator) for _ in range(4)]
    answers = run_threads(4, lambda i: api[i].post("/api/v1/annotations/", {
        "task": task.id, "regions": [quad()], "submit": True}, format="json"))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 400, 400, 400], answers
    assert all("already annotated" in r.json()["task"][0] for r in answers if r.status_code == 400)
    assert (Annotation.objects.count(), AnnotationVersion.objects.count()) == (1, 1)
    assert Task.objects.values_list("status", "slots_taken").get(pk=task.pk) == ("submitted", 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_postgres
def test_reviewers_deciding_one_annotation_at_once_leave_one_review():
    _, annotator, task, reviewers = one_task_world(reviewers=4)
    ann = services.annotation_create(task=task, annotator=annotator, regions=[quad()], submit=True)
    api = [client_for(r) for r in reviewers]
    answers = run_threads(4, lambda i: api[i].post("/api/v1/reviews/", {
        "annotation": ann.id, "decision": ("accept", "reject")[i % 2], "reasons": ["other"], "comment": "why"},
        format="json"))
    assert sorted(r.status_code for r in answers) == [201, 400, 400, 400], answers
    review = Review.objects.get()
    expected = {"accept": "accepted", "reject": "rejected"}[review.decision]
    assert Annotation.objects.get(pk=ann.pk).status == expected
    assert Task.objects.get(pk=task.pk).status == expected


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_postgres
def test_concurrent_accepts_of_an_overlapping_task_complete_it():
    vendor = factories.make_vendor()
    factories.make_batch(factories.make_spec(), vendor, images=1, overlap=2)
    annotations = []
    for _ in range(2):
        a = factories.make_user(roles.ANNOTATOR, vendor=vendor)
        t = services.task_claim_next(annotator=a).task
        annotations.append(services.annotation_create(task=t, annotator=a, regions=[quad()], submit=True))
    reviewers = [factories.make_user(roles.REVIEWER, vendor=vendor) for _ in range(2)]
    results = run_threads(2, lambda i: services.review_create(
        annotation=Annotation.objects.get(pk=annotations[i].pk), reviewer=reviewers[i], decision="accept"))
    assert all(isinstance(r, Review) for r in results), results
    assert Task.objects.get().status == "accepted"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_postgres
def test_predictions_imported_while_annotators_submit_never_touch_their_work():
    vendor = factories.make_vendor()
    batch = factories.make_batch(factories.make_spec(), vendor, images=6)
    annotators = [factories.make_user(roles.ANNOTATOR, vendor=vendor) for _ in range(3)]
    image_ids = list(batch.tasks.values_list("image_id", flat=True))

    def act(i):
        if i == len(annotators):
            for n in range(5):
                services.predictions_import(model_name="m", model_version=str(n), items=[
                    {"image": pk, "regions": [quad(latex="w")], "confidence": 0.5} for pk in image_ids])
            return "imported"
        done = []
        while (task := services.task_claim_next(annotator=annotators[i]).task) is not None:
            services.annotation_create(task=task, annotator=annotators[i], regions=[quad()], submit=True)
            done.append(task.id)
        return done

    results = run_threads(len(annotators) + 1, act)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(t for r in results[:-1] for t in r) == sorted(batch.tasks.values_list("id", flat=True))
    assert set(Task.objects.values_list("status", flat=True)) == {"submitted"}
    assert set(Annotation.objects.values_list("status", "current__regions__latex")) == {("submitted", r"x^{2}+1")}
    assert not slot_mismatches()


# ---------------------------------------- invalid transitions, one at a time


@pytest.mark.django_db
def test_invalid_transitions_answer_400_and_change_nothing():
    vendor, annotator, task, (reviewer,) = one_task_world()
    other_vendor_reviewer = factories.make_user(roles.REVIEWER, vendor=factories.make_vendor())
    api, rev_api = client_for(annotator), client_for(reviewer)
    ann = api.post("/api/v1/annotations/", {"task": task.id, "regions": [quad()]}, format="json").json()
    url = f"/api/v1/annotations/{ann['id']}/"

    def refused(client, method, path, body, field, words):
        before = snapshot(ann["id"])
        r = getattr(client, method)(path, body, format="json")
        assert r.status_code == 400, (path, body, r.status_code, r.content)
        assert words in str(r.json().get(field)), (path, body, r.json())
        assert snapshot(ann["id"]) == before, (path, body)

    review = {"annotation": ann["id"], "decision": "accept"}
    refused(rev_api, "post", "/api/v1/reviews/", review, "annotation", "awaits your review")  # a draft
    refused(client_for(other_vendor_reviewer), "post", "/api/v1/reviews/", review, "annotation", "awaits your review")
    refused(api, "post", "/api/v1/annotations/", {"task": task.id, "regions": [quad()]}, "task", "already annotated")
    refused(api, "post", f"/api/v1/tasks/{task.id}/release/", {}, "task", "no lease")
    assert api.post(f"{url}submit/", {"version": 1}, format="json").status_code == 200
    refused(api, "post", f"{url}submit/", {"version": 1}, "status", "submitted annotation cannot be submitted")
    refused(api, "put", url, {"version": 1, "regions": [quad()]}, "status", "submitted annotation cannot be changed")
    refused(rev_api, "post", "/api/v1/reviews/", {**review, "decision": "reject"}, "reasons", "at least one reason")
    assert rev_api.post("/api/v1/reviews/", {**review, "decision": "reject", "reasons": ["latex_error"]},
                        format="json").status_code == 201
    refused(rev_api, "post", "/api/v1/reviews/", review, "annotation", "awaits your review")  # re-review
    # Rework: a rejected annotation is edited and handed in again, then accepted once.
    assert api.put(url, {"version": 1, "regions": [quad(latex="y")], "submit": True}, format="json").status_code == 200
    assert rev_api.post("/api/v1/reviews/", review, format="json").status_code == 201
    refused(rev_api, "post", "/api/v1/reviews/", {**review, "decision": "reject", "reasons": ["other"],
                                                  "comment": "late"}, "annotation", "awaits your review")
    refused(api, "post", f"{url}submit/", {"version": 2}, "status", "accepted annotation cannot be submitted")
    refused(api, "put", url, {"version": 2, "regions": [quad()]}, "status", "accepted annotation cannot be changed")
    assert Task.objects.get(pk=task.pk).status == "accepted"


@pytest.mark.django_db
def test_nobody_reviews_their_own_annotation_even_holding_both_roles():
    vendor = factories.make_vendor()
    factories.make_batch(factories.make_spec(), vendor, images=1)
    both = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    both.groups.add(Group.objects.get(name=roles.REVIEWER))
    task = services.task_claim_next(annotator=both).task
    ann = services.annotation_create(task=task, annotator=both, regions=[quad()], submit=True)
    r = client_for(both).post("/api/v1/reviews/", {"annotation": ann.id, "decision": "accept"}, format="json")
    assert r.status_code == 400 and Review.objects.count() == 0
    with pytest.raises(ValidationError):
        services.review_create(annotation=ann, reviewer=both, decision="accept")
    assert Annotation.objects.get(pk=ann.pk).status == "submitted"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_postgres
def test_a_double_clicked_next_gives_one_annotator_one_lease():
    vendor = factories.make_vendor()
    factories.make_batch(factories.make_spec(), vendor, images=4)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    results = run_threads(4, lambda i: services.task_claim_next(annotator=annotator))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.task.id for r in results}) == 1
    assert sorted(r.reason for r in results) == ["claimed", "leased", "leased", "leased"]
    assert Claim.objects.filter(annotator=annotator, state="live").count() == 1
