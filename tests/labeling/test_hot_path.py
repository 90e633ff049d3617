"""The annotators' hot path (token auth, next task, submit) in few, hand-written
statements, with results identical to the ORM and the DRF serializers it replaces."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from common import roles
from common.models import ApiToken
from common.serializing import represent
from common.services import api_token_rotate
from labeling import selectors
from labeling.api import serializers as s
from labeling.models import Annotation, Task
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_rotate(user=user).key}")
    return client


def statements(ctx) -> list[str]:
    """The queries run, less transaction control (BEGIN, savepoints, COMMIT)."""
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK")
    return [q["sql"][:60] for q in ctx.captured_queries if not q["sql"].startswith(control)]


def test_next_and_submit_take_a_fixed_handful_of_queries_with_a_real_token(vendor, spec):
    factories.make_batch(spec, vendor, images=3)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    api = token_client(annotator)
    with CaptureQueriesContext(connection) as next_q:
        r = api.post("/api/v1/tasks/next/")
    assert r.status_code == 200 and r.json()["reason"] == "claimed"
    task_id = r.json()["task"]["id"]
    with CaptureQueriesContext(connection) as submit_q:
        r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad(), quad(100, 50, 150, 90)],
                                              "submit": True})
    assert r.status_code == 201, r.content
    assert Task.objects.get(pk=task_id).status == Task.Status.SUBMITTED
    # auth (user, roles and vendor at once), the annotator's claim lock (PostgreSQL), rework or
    # held lease, batches with guide gates, candidate, take and claim (one statement on
    # PostgreSQL, two on SQLite), predictions
    assert len(statements(next_q)) <= 7, statements(next_q)
    # auth, task, lease -> slot, annotation + version + regions + current (one statement on
    # PostgreSQL, four on SQLite), lock, status
    assert len(statements(submit_q)) <= (6 if connection.vendor == "postgresql" else 9), statements(submit_q)


def test_token_auth_reads_roles_and_vendor_fresh_on_every_request(vendor, spec):
    factories.make_batch(spec, vendor, images=2)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    api = token_client(annotator)
    assert api.post("/api/v1/tasks/next/").json()["reason"] == "claimed"
    annotator.groups.clear()  # no longer an annotator: the very next request knows
    r = api.post("/api/v1/tasks/next/")
    assert r.status_code == 400 and "annotator" in r.json()
    annotator.is_active = False
    annotator.save()
    assert api.post("/api/v1/tasks/next/").status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert bad.post("/api/v1/tasks/next/").status_code == 401


def test_token_user_is_a_full_user_with_its_roles_and_vendor(vendor):
    from common.authentication import token_user

    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    manager.groups.add(factories.make_user(roles.REVIEWER, vendor=vendor).groups.get())
    key = api_token_rotate(user=manager).key
    user, token = token_user(key)
    assert token.digest == ApiToken.digest_of(key) and token.user is user
    assert user._mathset_roles == {roles.VENDOR_MANAGER, roles.REVIEWER}
    assert user._mathset_vendor == vendor and user._mathset_vendor.name == vendor.name
    fresh = type(manager).objects.get(pk=manager.pk)
    assert all(getattr(user, f.attname) == getattr(fresh, f.attname) for f in fresh._meta.concrete_fields)
    curator = factories.make_user(roles.CURATOR)
    user, _ = token_user(api_token_rotate(user=curator).key)
    assert user._mathset_vendor is None and user._mathset_roles == {roles.CURATOR}


def test_task_visible_to_equals_the_orm_and_hides_foreign_tasks(vendor, spec):
    batch = factories.make_batch(spec, vendor, images=1)
    task = batch.tasks.get()
    task.gold_answer, task.model_confidence = {"latex": "x", "regions": []}, 0.25
    task.save()
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    got = selectors.task_visible_to(annotator, task.pk)
    orm = selectors.tasks_visible_to(annotator).get(pk=task.pk)
    for a, b in ((got, orm), (got.batch, orm.batch), (got.image, orm.image)):
        assert all(getattr(a, f.attname) == getattr(b, f.attname) for f in type(a)._meta.concrete_fields), a
    assert got.gold_answer == {"latex": "x", "regions": []} and got.created_at.tzinfo is not None
    stranger = factories.make_user(roles.ANNOTATOR, vendor=factories.make_vendor())
    assert selectors.task_visible_to(stranger, task.pk) is None
    assert selectors.task_visible_to(annotator, "1") is None


def test_represent_equals_the_serializer_and_keeps_contexts_apart(vendor, spec, rf):
    from labeling import services

    batch = factories.make_batch(spec, vendor, images=1)
    task = batch.tasks.get()
    services.task_set_gold(task=task, answer={"latex": "x"})
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    claimed = services.task_claim_next(annotator=annotator).task
    annotation = services.annotation_create(task=claimed, annotator=annotator, regions=[quad()], submit=True)
    as_annotator, as_curator = rf.get("/"), rf.get("/")
    as_annotator.user, as_curator.user = annotator, factories.make_user(roles.CURATOR)
    for request in (as_curator, as_annotator, as_curator):
        task = selectors.tasks_visible_to(request.user).get(pk=claimed.pk)
        assert represent(s.TaskDetailSerializer, task, {"request": request}) == \
            s.TaskDetailSerializer(task, context={"request": request}).data
    assert represent(s.TaskSerializer, task, {"request": as_annotator})["gold_answer"] is None
    assert represent(s.TaskSerializer, task, {"request": as_curator})["gold_answer"] == {"latex": "x"}
    stored = selectors.annotations_visible_to(annotator).get(pk=annotation.pk)
    assert represent(s.AnnotationSerializer, annotation, {"request": as_annotator}) == \
        s.AnnotationSerializer(stored, context={"request": as_annotator}).data
    assert Annotation.objects.get(pk=annotation.pk).current.regions.get().points == annotation.current.regions.all()[0].points


def test_one_query_finds_rework_before_a_held_lease_and_either_before_new_work(vendor, spec):
    from labeling import services

    factories.make_batch(spec, vendor, images=4)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    first = services.task_claim_next(annotator=annotator).task
    done = services.annotation_create(task=first, annotator=annotator, regions=[quad()], submit=True)
    held = services.task_claim_next(annotator=annotator)
    assert held.reason == "claimed"
    again = services.task_claim_next(annotator=annotator)
    assert (again.reason, again.task.pk, again.claim.pk) == ("leased", held.task.pk, held.claim.pk)
    services.review_create(annotation=done, reviewer=reviewer, decision="reject", reasons=["latex_error"])
    with CaptureQueriesContext(connection) as ctx:
        rework = services.task_claim_next(annotator=annotator)
    assert (rework.reason, rework.task.pk, rework.annotation_id) == ("rework", first.pk, done.pk)
    assert rework.task.batch.pk and rework.task.image.pk
    services.annotation_update(annotation=Annotation.objects.get(pk=done.pk), by=annotator, version=1,
                               regions=[quad(latex="y")], submit=True)
    assert services.task_claim_next(annotator=annotator).reason == "leased"  # the lease is still there
    # (the annotator's claim lock on PostgreSQL), rework-or-lease, then the annotation with task
    assert len(statements(ctx)) <= (4 if connection.vendor == "postgresql" else 3), statements(ctx)


def test_saved_annotation_versions_and_regions_are_what_the_orm_reads_back(vendor, spec):
    """The one-statement save (PostgreSQL) and the per-table one (SQLite) store the same rows:
    the new annotation points at its version, masks and quads keep their NULLs, ids match."""
    import numpy as np

    from common import rle
    from labeling import services
    from labeling.models import AnnotationVersion, Region

    factories.make_batch(spec, vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = services.task_claim_next(annotator=annotator).task
    mask = np.zeros((task.image.height, task.image.width), bool)
    mask[5:20, 10:40] = True
    regions = [quad(), {"kind": "mask", "mask": rle.encode(mask), "latex": r"\alpha", "illegible": True}]

    def assert_stored(annotation):
        stored = Annotation.objects.get(pk=annotation.pk)
        assert stored.current_id == annotation.current.pk and stored.version == annotation.version
        version = AnnotationVersion.objects.get(pk=annotation.current.pk)
        for f in version._meta.concrete_fields:
            assert getattr(version, f.attname) == getattr(annotation.current, f.attname), f.name
        got = annotation.current.regions.all()
        assert list(Region.objects.filter(version=version).order_by("index")) == list(got)
        for mine, theirs in zip(got, Region.objects.filter(version=version).order_by("index"), strict=True):
            assert all(getattr(mine, f.attname) == getattr(theirs, f.attname) for f in Region._meta.concrete_fields)
        return stored

    created = services.annotation_create(task=task, annotator=annotator, regions=regions, time_spent_seconds=3.5)
    stored = assert_stored(created)
    assert stored.status == Annotation.Status.DRAFT and stored.submitted_at is None
    assert [(r.kind, r.points is None, r.mask_rle is None) for r in created.current.regions.all()] == \
        [("quad", False, True), ("mask", True, False)]
    emptied = services.annotation_update(annotation=stored, by=annotator, version=1, regions=[])
    assert assert_stored(emptied).version == 2 and not emptied.current.regions.all()
    submitted = services.annotation_update(annotation=Annotation.objects.get(pk=stored.pk), by=annotator, version=2,
                                           regions=regions[:1], submit=True)
    stored = assert_stored(submitted)
    assert stored.status == Annotation.Status.SUBMITTED and stored.submitted_at is not None
    assert list(AnnotationVersion.objects.filter(annotation=stored).values_list("number", flat=True)) == [1, 2, 3]
