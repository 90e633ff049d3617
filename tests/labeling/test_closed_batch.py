"""A closed batch's work is over: nothing more is saved, handed in or reviewed in it (a 400
naming the field, nothing changed). A paused batch only stops handing out tasks: what an
annotator has open is still saved, handed in and reviewed."""
from __future__ import annotations

import pytest

from labeling import services
from labeling.models import Annotation, Batch, Review, Task
from tests.factories import quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db


def _set_status(batch, status):
    services.batch_update(batch=Batch.objects.get(pk=batch.pk), status=status)


def test_a_closed_batch_refuses_a_first_save_of_a_held_task(batch, annotator):
    api = client_for(annotator)
    task_id = api.post("/api/v1/tasks/next/").json()["task"]["id"]
    _set_status(batch, Batch.Status.CLOSED)
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}, format="json")
    assert r.status_code == 400 and "is closed" in r.json()["task"][0], r.content
    assert not Annotation.objects.exists()


def test_a_closed_batch_refuses_edits_and_hand_ins(batch, annotator):
    api = client_for(annotator)
    task_id = api.post("/api/v1/tasks/next/").json()["task"]["id"]
    draft = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()]}, format="json").json()
    _set_status(batch, Batch.Status.CLOSED)
    r = api.put(f"/api/v1/annotations/{draft['id']}/", {"version": 1, "regions": [quad(latex="y")]}, format="json")
    assert r.status_code == 400 and "is closed" in r.json()["annotation"][0], r.content
    r = api.post(f"/api/v1/annotations/{draft['id']}/submit/", {"version": 1}, format="json")
    assert r.status_code == 400 and "is closed" in r.json()["annotation"][0], r.content
    annotation = Annotation.objects.get()
    assert (annotation.version, annotation.status) == (1, Annotation.Status.DRAFT)


def test_a_closed_batch_refuses_reviews(batch, annotator, reviewer):
    api = client_for(annotator)
    task_id = api.post("/api/v1/tasks/next/").json()["task"]["id"]
    done = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True},
                    format="json").json()
    _set_status(batch, Batch.Status.CLOSED)
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": done["id"], "decision": "accept"}, format="json")
    assert r.status_code == 400 and "is closed" in r.json()["annotation"][0], r.content
    assert not Review.objects.exists() and Task.objects.get(pk=task_id).status == Task.Status.SUBMITTED


def test_a_paused_batch_hands_out_nothing_but_open_work_is_finished_and_reviewed(batch, annotator, reviewer):
    api = client_for(annotator)
    task_id = api.post("/api/v1/tasks/next/").json()["task"]["id"]
    _set_status(batch, Batch.Status.PAUSED)
    assert api.post("/api/v1/tasks/next/").json()["task"] is None
    done = api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()], "submit": True}, format="json")
    assert done.status_code == 201, done.content
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": done.json()["id"], "decision": "accept"},
                                  format="json")
    assert r.status_code == 201, r.content
