"""Takedowns racing the workers that read the images (threads on PostgreSQL, each with its own
connection): an export run committing its zip, and a snapshot build freezing the spec.

Either way round, a taken-down image must end up in no downloadable zip and in no snapshot item
that is not marked taken down: otherwise an export built later reads an erased file (or a zip
built from the pixels before the erasure stays downloadable)."""
from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings
from django.db import transaction

from common import roles
from curation import services, snapshots
from curation.models import DatasetSpec, Export, Image, SnapshotItem
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

BODY = {"kind": "copyright", "reason": "Letter from the publisher.", "requested_by": "Mirae Publishing Co."}


def _accepted_spec(images: int = 3):
    spec = factories.make_spec(intended_use=DatasetSpec.IntendedUse.RESEARCH)
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=images)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    while (task := task_claim_next(annotator=annotator).task) is not None:
        annotation = annotation_create(task=task, annotator=annotator, submit=True,
                                       regions=[quad(latex=rf"x^{{{task.image_id}}}")])
        review_create(annotation=annotation, reviewer=reviewer, decision="accept")
    return spec



def test_an_export_finishing_while_the_image_is_taken_down_is_withdrawn():
    """The export worker's last step (the zip saved, the row set done) is in flight when the
    takedown reads the snapshot's exports: the zip was built from the pixels before the erasure,
    so once both have committed the export must be withdrawn, not left done and downloadable."""
    spec = _accepted_spec()
    curator = factories.make_user(roles.CURATOR)
    snap = factories.make_snapshot(spec=spec, name="v1", created_by=curator)
    image = Image.objects.get(pk=snap.items.order_by("image_id").first().image_id)
    export = Export.objects.create(snapshot=snap, format="coco", created_by=curator, status=Export.Status.RUNNING,
                                   attempts=1)
    results: list = [None, None]
    finishing, takedown_pid = threading.Event(), []

    def worker_commit():  # what export_run does once the zip is written
        with transaction.atomic():
            Export.objects.filter(id=export.id, status=Export.Status.RUNNING, attempts=1).update(
                status=Export.Status.DONE, file=f"exports/{snap.id}/{export.id}-built-before.zip")
            finishing.set()
            # Hold the commit until the takedown is waiting on the row (or has gone past it).
            waiting_on_a_lock(takedown_pid, timeout=3)
            time.sleep(0.2)
        return "committed"

    def take_down():
        finishing.wait(10)
        takedown_pid.append(backend_pid())
        return services.image_takedown(image=image, actor=curator, **BODY)

    threads = [start_thread(worker_commit, results, 0), start_thread(take_down, results, 1)]
    for t in threads:
        t.join(60)
    assert results[0] == "committed", results
    assert not isinstance(results[1], Exception), results
    export.refresh_from_db()
    assert export.status == Export.Status.WITHDRAWN, (export.status, export.file)
    assert export.file == ""


def test_a_snapshot_build_racing_a_takedown_never_freezes_the_image_unmarked(monkeypatch):
    """The build has read the spec's accepted images when the takedown of one of them runs: the
    snapshot must come out either without it or with its item marked taken down."""
    spec = _accepted_spec()
    curator = factories.make_user(roles.CURATOR)
    image = Image.objects.filter(spec=spec).order_by("id").first()
    from curation.tasks import build_snapshot

    monkeypatch.setattr(build_snapshot, "delay", lambda snapshot_id: None)  # built below, in a thread
    snap = snapshots.snapshot_create(spec=spec, name="racing", created_by=curator)
    read, results = threading.Event(), [None, None]
    real_assign = snapshots.assign_splits

    def slow_assign(*args, **kwargs):  # the images are read; the items are not written yet
        read.set()
        time.sleep(1.5)  # the takedown commits meanwhile, unless it waits on the build
        return real_assign(*args, **kwargs)

    monkeypatch.setattr(snapshots, "assign_splits", slow_assign)

    def build():
        return snapshots.snapshot_build(snapshot=snap).status

    def take_down():
        read.wait(10)
        return services.image_takedown(image=image, actor=curator, **BODY)

    threads = [start_thread(build, results, 0), start_thread(take_down, results, 1)]
    for t in threads:
        t.join(60)
    assert results[0] == "ready", results
    assert not isinstance(results[1], Exception), results
    unmarked = SnapshotItem.objects.filter(snapshot=snap, image=image, takedown__isnull=True)
    assert not unmarked.exists(), "a taken-down image was frozen without its takedown mark"
    snap.refresh_from_db()
    assert snap.taken_down_items == SnapshotItem.objects.filter(snapshot=snap, takedown__isnull=False).count()


def test_a_submit_in_flight_and_a_takedown_of_its_image_do_not_deadlock(monkeypatch):
    """A task of overlap 2: one annotator holds a lease, the other hands their draft in while the
    image is taken down. The submit locks its annotation and then the task; the takedown gave the
    lease back (locking the task) before withdrawing the drafts (locking the annotation): the
    opposite order, a deadlock PostgreSQL breaks by failing one of them (a 500)."""
    from labeling import services as labeling_services
    from labeling.models import Annotation

    spec = factories.make_spec()
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1, overlap=2)
    first, second = (factories.make_user(roles.ANNOTATOR, vendor=vendor) for _ in range(2))
    curator = factories.make_user(roles.CURATOR)
    task = task_claim_next(annotator=first).task
    draft = annotation_create(task=task, annotator=first, regions=[quad(latex="x")])
    assert task_claim_next(annotator=second).task.pk == task.pk  # a live lease on the same task
    image = Image.objects.get(pk=task.image_id)

    handing_in, takedown_pid, results = threading.Event(), [], [None, None]
    real_check = labeling_services._check_complete

    def slow_check(task_, regions):  # between the annotation's UPDATE and the task's lock
        handing_in.set()
        waiting_on_a_lock(takedown_pid, timeout=3)
        time.sleep(0.2)
        return real_check(task_, regions)

    monkeypatch.setattr(labeling_services, "_check_complete", slow_check)

    def submit():
        annotation = Annotation.objects.get(pk=draft.pk)
        return labeling_services.annotation_submit(annotation=annotation, by=first, version=annotation.version).status

    def take_down():
        handing_in.wait(10)
        takedown_pid.append(backend_pid())
        return services.image_takedown(image=image, actor=curator, **BODY)

    threads = [start_thread(submit, results, 0), start_thread(take_down, results, 1)]
    for t in threads:
        t.join(60)
    assert not any(isinstance(r, Exception) for r in results), results
    assert results[0] == Annotation.Status.SUBMITTED
    draft.refresh_from_db()
    assert draft.status == Annotation.Status.SUBMITTED  # handed in before the takedown withdrew it
