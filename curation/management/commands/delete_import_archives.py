"""python manage.py delete_import_archives [--dry-run]: delete the uploaded archives that finished
zip imports still hold in storage.

Jobs finished since import archives are deleted on finishing lose theirs by themselves; this
clears the ones finished before (a takedown clears them only in the image's own spec). Queued
and running jobs keep theirs: they may still go on.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand

from curation.models import ImportJob
from curation.services import import_job_archives_delete


class Command(BaseCommand):
    help = ("Delete the archives that finished (done or failed) zip imports still hold in storage; their job "
            "rows and reports stay. Queued and running jobs keep theirs. --dry-run lists them only.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List the archives, delete nothing")

    def handle(self, *args, dry_run: bool, **options):
        finished = ImportJob.objects.filter(status__in=[ImportJob.Status.DONE, ImportJob.Status.FAILED]) \
            .exclude(archive="")
        if dry_run:
            names = list(finished.order_by("id").values_list("archive", flat=True))
            for name in names:
                self.stdout.write(name)
            self.stdout.write(f"{len(names)} archive(s) would be deleted.")
            return
        names = import_job_archives_delete(jobs=ImportJob.objects.all())
        self.stdout.write(f"{len(names)} archive(s) of finished imports deleted.")
