"""Audit of the export download endpoint: what a model team's HTTP client meets."""
from __future__ import annotations

import io
import zipfile

import pytest

from curation import snapshots
from curation.models import Export
from tests import factories
from tests.curation.test_snapshots import accepted_spec
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db


def _done_export(curator, capture, fmt: str = "coco") -> Export:
    snap = factories.make_snapshot(spec=accepted_spec(images=2), name="s", created_by=curator)
    with capture(execute=True):
        job = snapshots.export_create(snapshot=snap, format=fmt, created_by=curator)
    job.refresh_from_db()
    assert job.status == Export.Status.DONE, job.error
    return job


@pytest.mark.parametrize("accept", ["application/zip", "application/octet-stream", "application/json", "*/*"])
def test_download_answers_the_zip_whatever_the_client_accepts(curator, model_team, accept,
                                                             django_capture_on_commit_callbacks):
    # The schema promises application/zip, so generated clients send `Accept: application/zip`:
    # that was refused with 406 Not Acceptable (no DRF renderer offers it).
    job = _done_export(curator, django_capture_on_commit_callbacks)
    r = client_for(model_team).get(f"/api/v1/exports/{job.pk}/download/", HTTP_ACCEPT=accept)
    assert r.status_code == 200, r.status_code
    assert r["Content-Type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    assert zf.testzip() is None and "annotations/train.json" in zf.namelist()


def test_download_of_an_unfinished_export_asking_for_a_zip_is_a_404_in_json(curator):
    snap = factories.make_snapshot(spec=accepted_spec(images=1), name="q", created_by=curator)
    job = snapshots.export_create(snapshot=snap, format="jsonl", created_by=curator)  # never run: queued
    r = client_for(curator).get(f"/api/v1/exports/{job.pk}/download/", HTTP_ACCEPT="application/zip")
    assert r.status_code == 404
    assert "not ready" in r.json()["detail"]


def test_other_export_endpoints_still_negotiate(curator, django_capture_on_commit_callbacks):
    job = _done_export(curator, django_capture_on_commit_callbacks, fmt="jsonl")
    api = client_for(curator)
    assert api.get(f"/api/v1/exports/{job.pk}/", HTTP_ACCEPT="application/zip").status_code == 406
    assert api.get(f"/api/v1/exports/{job.pk}/").json()["status"] == "done"
