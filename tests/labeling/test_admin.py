"""The labeling admin lists workflow rows read-only and changes batches through the service."""
from __future__ import annotations

import pytest

from labeling.models import Batch

pytestmark = pytest.mark.django_db


def test_admin_pages_render_and_batch_action_uses_service(client, curator, batch):
    client.force_login(curator)
    for name in ("batch", "task", "claim", "annotation", "annotationversion", "review", "prediction", "vendor"):
        r = client.get(f"/admin/labeling/{name}/")
        assert r.status_code == 200, name
    assert client.get("/admin/labeling/task/add/").status_code == 403
    r = client.post("/admin/labeling/batch/", {"action": "batch_paused", "_selected_action": [batch.pk]})
    assert r.status_code == 302
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.PAUSED
