"""The admin deletes nothing behind the services' backs: a raw delete cascades (a batch takes its
paid work with it, a spec its images' rows but not their files), so only rows whose deletion is
harmless keep the delete button, and images are deleted by an action that calls image_delete."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import RequestFactory

from curation.models import Image
from labeling.models import Batch, Task
from tests import factories

pytestmark = pytest.mark.django_db

# Deleting these loses nothing another row or a file depends on (PROTECT stops a used licence or
# source; a login failure's deletion unlocks a username; auth's are Django's own, superusers only).
DELETABLE = {"auth.Group", "auth.User", "common.LoginFailure", "curation.Licence", "curation.Source",
             "guides.Notification"}
DELETABLE_INLINES = {"RequirementInline"}


def test_only_harmless_rows_can_be_deleted_raw_in_the_admin():
    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    deletable, inlines = set(), set()
    for model, model_admin in admin.site._registry.items():
        if model_admin.has_delete_permission(request):
            deletable.add(model._meta.label)
        inlines |= {type(i).__name__ for i in model_admin.get_inline_instances(request) if i.can_delete}
    assert deletable == DELETABLE
    assert inlines == DELETABLE_INLINES


def test_a_curator_cannot_delete_a_batch_with_its_paid_work(client, curator):
    batch = factories.make_batch(images=2)
    client.force_login(curator)
    assert client.get(f"/admin/labeling/batch/{batch.pk}/delete/").status_code == 403
    r = client.post("/admin/labeling/batch/", {"action": "delete_selected", "_selected_action": [batch.pk],
                                               "post": "yes"})
    assert r.status_code in (200, 302)
    assert Batch.objects.filter(pk=batch.pk).exists() and Task.objects.filter(batch=batch).count() == 2


def test_images_are_deleted_with_their_files_through_the_service_action(client, curator,
                                                                        django_capture_on_commit_callbacks):
    from django.core.files.storage import default_storage

    image = factories.make_image()
    files = [image.file, image.thumbnail]
    assert all(default_storage.exists(f) for f in files)
    client.force_login(curator)
    assert client.get(f"/admin/curation/image/{image.pk}/delete/").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post("/admin/curation/image/", {"action": "delete_with_files", "_selected_action": [image.pk]},
                        follow=True)
    assert "1 image(s) deleted with their files." in r.content.decode()
    assert not Image.objects.filter(pk=image.pk).exists()
    assert not any(default_storage.exists(f) for f in files)


def test_an_image_frozen_in_a_snapshot_is_kept_and_the_admin_says_why(client, curator):
    from curation.models import SnapshotItem
    from tests.curation.test_snapshots import accept_all

    spec = factories.make_spec()
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    accept_all(vendor)
    snapshot = factories.make_snapshot(spec=spec, name="frozen", created_by=curator)
    image_id = SnapshotItem.objects.get(snapshot=snapshot).image_id
    client.force_login(curator)
    r = client.post("/admin/curation/image/", {"action": "delete_with_files", "_selected_action": [image_id]},
                    follow=True)
    assert r.status_code == 200 and "it cannot be deleted" in r.content.decode()
    assert Image.objects.filter(pk=image_id).exists()
