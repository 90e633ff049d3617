"""What the import commands share: finding the spec and source, running a batch
through `services.ingest_batch`, and printing the report (failures listed with
their reason at the end, counts and the rate)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

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


# --- The annotation-tool imports (import_labelstudio, import_cvat) -----------------------------

def spec_by_id_or_slug(value: str) -> DatasetSpec:
    """The spec named by id or slug (--spec of the annotation-tool imports)."""
    pk = parse_row_id(value)
    spec = (DatasetSpec.objects.filter(pk=pk) if pk is not None else DatasetSpec.objects.filter(slug=value)).first()
    if spec is None:
        raise CommandError(f"--spec: no dataset spec with id or slug {value!r}.")
    return spec


def category_map_parsed(pairs: list[str]) -> dict[str, str]:
    """--category-map LABEL=SLUG ... as {label: slug} (LABEL= for no category)."""
    out = {}
    for pair in pairs:
        label, sep, slug = pair.partition("=")
        if not sep or not label:
            raise CommandError(f"--category-map: {pair!r} is not LABEL=SLUG (LABEL= for no category).")
        out[label] = slug.strip()
    return out


def add_tool_import_arguments(parser, *, tool: str, model_name: str, images_help: str, model_version_help: str,
                              skip_unknown_help: str) -> None:
    """The options every annotation-tool import takes: where the images are, the spec and source,
    predictions or truth, the model's name and version, the label map, what to skip, the new
    images' categories, the uploader and a dry run. `tool` names the tool in the label map's help."""
    parser.add_argument("--images", type=Path, required=True, help=images_help)
    parser.add_argument("--spec", required=True, help="Id or slug of the dataset spec")
    parser.add_argument("--source", required=True, help="Id or exact name of the source of the images")
    parser.add_argument("--as", dest="as_", choices=("predictions", "truth"), default="predictions",
                        help="Store the regions as predictions (default) or the LaTeX as the images' truth")
    parser.add_argument("--model-name", default=model_name, help="Model name of the predictions (default: "
                        "%(default)s)")
    parser.add_argument("--model-version", help=model_version_help)
    parser.add_argument("--category-map", nargs="+", default=[], metavar="LABEL=SLUG",
                        help=f"{tool} label -> category slug (LABEL= for no category); unmapped labels must equal "
                        "a slug of the spec")
    parser.add_argument("--skip-unknown", action="store_true", help=skip_unknown_help)
    parser.add_argument("--category", action="append", default=[], help="Category slug of the new images "
                        "(repeatable)")
    parser.add_argument("--user", help="Username recorded as uploader")
    parser.add_argument("--dry-run", action="store_true", help="Check everything and print what would be "
                        "imported; write nothing")


def tool_import_run(call: Callable[[], object]) -> object:
    """Run an annotation-tool import service: its refusal (all or nothing) as one CommandError
    listing every problem with its field."""
    try:
        return call()
    except ValidationError as exc:
        lines = [f"{f}: {m}" for f, msgs in exc.message_dict.items() for m in msgs]
        raise CommandError(f"Nothing was imported; {len(lines)} problem(s):\n  " + "\n  ".join(lines)) from None


def tool_import_dry_run_check(report) -> None:
    """After a dry run's report is printed: exit non-zero when the import would be refused."""
    problems = report.all_problems()
    if problems:
        raise CommandError(f"Dry run: {len(problems)} problem(s); the import would be refused.")
