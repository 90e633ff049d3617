"""A failed zip import records an error for the curator who reads it: a file or format problem
keeps its text (storage paths relative), anything unexpected (a database error naming an internal
host) records only a reference, and the worker log holds the details under it."""
from __future__ import annotations

import logging

import pytest
from django.db import OperationalError

from curation import services
from curation.models import ImportJob
from tests.factories import png_bytes
from tests.test_audit_ingest_jobs import _job

pytestmark = pytest.mark.django_db

INTERNAL = 'could not connect to server at "db-internal.corp.example" (10.0.3.4), port 5432'


def _failing_ingest(exc):
    def ingest(**kwargs):
        raise exc
    return ingest


def test_an_unexpected_import_failure_records_a_reference_not_the_internal_host(spec, source, monkeypatch, caplog):
    job = _job(spec, source, {"a.png": png_bytes()})
    monkeypatch.setattr(services, "ingest_batch", _failing_ingest(OperationalError(INTERNAL)))
    with caplog.at_level(logging.ERROR):
        services.import_job_run(job=job)
    job.refresh_from_db()
    error = job.errors[-1]["error"]
    assert job.status == ImportJob.Status.FAILED
    assert "db-internal" not in error and "10.0.3.4" not in error
    assert error.startswith("The import failed unexpectedly (reference ")
    reference = error.split("reference ", 1)[1].split(")", 1)[0]
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info and INTERNAL in str(logged[0].exc_info[1])


def test_an_expected_import_failure_keeps_its_text(spec, source, monkeypatch, caplog):
    job = _job(spec, source, {"a.png": png_bytes()})
    monkeypatch.setattr(services, "ingest_batch", _failing_ingest(OSError("No space left on device")))
    with caplog.at_level(logging.ERROR):
        services.import_job_run(job=job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert job.errors[-1]["error"] == "No space left on device"
    assert any("import job" in r.getMessage() and r.exc_info for r in caplog.records)  # still logged for operators
