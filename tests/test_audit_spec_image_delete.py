"""Deleting an image (API DELETE, the admin's action) through image_delete: an image a guide shows as
an example, or one with vendors' annotations, is refused with a 400 naming `image`; nothing is
deleted behind the curator's back and nothing answers 500."""
from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from curation.models import Image
from labeling.models import Annotation, Task
from labeling.services import annotation_create, task_claim_next
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


def test_an_image_shown_as_a_guide_example_is_refused_with_a_400(curator_api, spec, source):
    from guides.services import guide_example_add

    image = factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100))
    version = factories.make_guide(spec=spec, publish=False)
    guide_example_add(version=version, image=image, kind="good")
    r = curator_api.delete(f"/api/v1/images/{image.id}/")
    assert r.status_code == 400, r.content[:300]
    assert "guide" in " ".join(r.json()["image"]).lower()
    assert Image.objects.filter(pk=image.pk).exists()
    assert default_storage.exists(image.file)


def test_an_image_with_annotations_is_refused_and_the_paid_work_kept(curator_api, spec):
    from common import roles

    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = task_claim_next(annotator=annotator).task
    annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()])
    r = curator_api.delete(f"/api/v1/images/{task.image_id}/")
    assert r.status_code == 400, r.content[:300]
    assert "annotation" in " ".join(r.json()["image"]).lower()
    assert Task.objects.filter(pk=task.pk).exists()
    assert Annotation.objects.filter(task=task).count() == 1


def test_an_image_with_unstarted_tasks_only_is_still_deleted(curator_api, spec, django_capture_on_commit_callbacks):
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    image = Image.objects.get(spec=spec)
    with django_capture_on_commit_callbacks(execute=True):
        assert curator_api.delete(f"/api/v1/images/{image.id}/").status_code == 204
    assert not Image.objects.filter(pk=image.pk).exists()
