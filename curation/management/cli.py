"""What the import commands share: finding the spec and source, running a batch
through `services.ingest_batch`, and printing the report (failures listed with
their reason at the end, counts and the rate)."""
from __future__ import annotations

import time
from collections.abc import Iterable

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from common.archives import ArchiveError
from common.fields import parse_row_id

from .. import services
from ..models import DatasetSpec, Source


def spec_by_slug(slug: str) -> DatasetSpec:
    spec = DatasetSpec.objects.filter(slug=slug).first()
    if spec is None:
        known = ", ".join(DatasetSpec.objects.order_by("slug").values_list("slug", flat=True)[:20]) or "none yet"
        raise CommandError(f"--spec: no dataset spec with slug {slug!r} (known: {known}).")
    return spec


def source_for(value: str | None, *, default: dict | None, user: User | None = None) -> tuple[Source, bool]:
    """The source named by id or exact name, or the importer's default source
    (created on first use); (source, created)."""
    if value:
        pk = parse_row_id(value)
        source = (Source.objects.filter(pk=pk) if pk is not None else Source.objects.filter(name=value)).first()
        if source is None:
            raise CommandError(f"--source: no source with id or name {value!r}.")
        return source, False
    if default is None:
        raise CommandError("--source is required: the id or name of the source these images come from.")
    try:
        return services.source_ensure(created_by=user, **default)
    except ValidationError as exc:
        raise CommandError(f"could not create the default source {default['name']!r}: {'; '.join(exc.messages)}")


def user_by_name(username: str | None) -> User | None:
    if not username:
        return None
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"--user: no user {username!r}.")
    return user


class IngestCommand(BaseCommand):
    """Base for import commands: common options and the reporting."""

    noun = "files"

    def add_common_arguments(self, parser) -> None:
        parser.add_argument("--spec", required=True, help="Slug of the dataset spec")
        parser.add_argument("--source", help="Id or exact name of the source (default: the data set's own)")
        parser.add_argument("--limit", type=int, help="Stop after this many files")
        parser.add_argument("--chunk-size", type=int, default=50, help="Files per transaction (default 50)")
        parser.add_argument("--user", help="Username recorded as uploader")

    def run_batch(self, *, spec: DatasetSpec, source: Source, items: Iterable[services.IngestItem],
                  categories: Iterable[str], user: User | None, limit: int | None, chunk_size: int):
        started = time.perf_counter()
        verbosity = getattr(self, "verbosity", 1)

        def progress(report: services.BatchIngestReport) -> None:
            if verbosity >= 2:
                self.stdout.write(f"  ... {report.imported} imported, {report.duplicates} duplicates, "
                                  f"{len(report.failures)} failed")

        try:
            report = services.ingest_batch(spec=spec, source=source, items=items, categories=categories,
                                           uploaded_by=user, chunk_size=max(1, chunk_size), limit=limit,
                                           on_progress=progress)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except ArchiveError as exc:
            raise CommandError(str(exc)) from None
        elapsed = time.perf_counter() - started
        self.print_report(report, elapsed)
        return report, elapsed

    def print_report(self, report: services.BatchIngestReport, elapsed: float) -> None:
        out = self.stdout
        if report.warnings:
            out.write(self.style.WARNING(f"Warnings ({len(report.warnings)}):"))
            for w in report.warnings:
                out.write(f"  {w.file}: {w.error}")
        if report.failures:
            out.write(self.style.ERROR(f"Files that could not be imported ({len(report.failures)}):"))
            for f in report.failures:
                out.write(f"  {f.file}: {f.error}")
        taken = report.imported + report.duplicates
        rate = taken / elapsed if elapsed > 0 else 0.0
        out.write(self.style.SUCCESS(
            f"{report.imported} imported, {report.duplicates} duplicates skipped, {len(report.failures)} failed, "
            f"{len(report.warnings)} warnings in {elapsed:.1f} s ({rate:.1f} {self.noun}/s)"
        ))
