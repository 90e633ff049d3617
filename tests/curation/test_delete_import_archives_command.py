"""`manage.py delete_import_archives` clears the archives that zip imports finished before
archives were deleted on finishing still hold: a photo taken down since may sit in them."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from curation.models import ImportJob
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db(transaction=True)  # the files go once the deletion commits


def _job(spec, source, status: str) -> ImportJob:
    name = default_storage.save(f"imports/{spec.id}/old-{status}.zip", ContentFile(png_bytes(seed=3)))
    return ImportJob.objects.create(spec=spec, source=source, archive=name, status=status)


def test_finished_jobs_lose_their_archives_and_unfinished_ones_keep_them(spec, source):
    done, failed = _job(spec, source, ImportJob.Status.DONE), _job(spec, source, ImportJob.Status.FAILED)
    queued, running = _job(spec, source, ImportJob.Status.QUEUED), _job(spec, source, ImportJob.Status.RUNNING)
    gone = [done.archive, failed.archive]
    out = StringIO()
    call_command("delete_import_archives", stdout=out)
    assert "2 archive(s) of finished imports deleted." in out.getvalue()
    for name in gone:
        assert not default_storage.exists(name)
    for job in (done, failed):
        job.refresh_from_db()
        assert job.archive == "" and ImportJob.objects.filter(pk=job.pk).exists()  # the report stays
    for job in (queued, running):
        kept = job.archive
        job.refresh_from_db()
        assert job.archive == kept and default_storage.exists(kept)


def test_a_dry_run_lists_and_deletes_nothing(spec, source):
    done = _job(spec, source, ImportJob.Status.DONE)
    out = StringIO()
    call_command("delete_import_archives", "--dry-run", stdout=out)
    assert done.archive in out.getvalue() and "1 archive(s) would be deleted." in out.getvalue()
    assert default_storage.exists(done.archive)
    done.refresh_from_db()
    assert done.archive != ""
