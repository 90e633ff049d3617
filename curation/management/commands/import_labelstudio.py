"""python manage.py import_labelstudio TASKS_JSON --images DIR --spec SPEC --source SOURCE
[--as predictions|truth] [--model-name NAME] [--model-version VERSION] [--category-map LABEL=SLUG ...]
[--config label_config.xml] [--results auto|annotations|predictions] [--predictions PREDICTIONS_JSON]
[--skip-unknown] [--dry-run]:
a Label Studio project's JSON export and its image files into a spec, all or nothing.

How tasks, files and results are read: curation/labelstudio_import.py. The write:
curation.services.labelstudio_import."""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation import services
from curation.labelstudio_import import RESULT_CHOICES
from curation.models import DatasetSpec

from ..cli import (
    add_tool_import_arguments,
    category_map_parsed,
    source_for,
    spec_by_id_or_slug,
    tool_import_dry_run_check,
    tool_import_run,
    user_by_name,
)


def _read_json(path: Path, what: str, *, option: str = "") -> object:
    # The whole file as text, then its objects (Label Studio's own export is one JSON list; a
    # streaming parser would not lower the peak much, the parsed tasks being most of it).
    named = f"{option}: {path}" if option else f"{path}"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CommandError(f"{named}: cannot read {what}: {exc}") from None
    except RecursionError:      # "[[[[..." deeper than the parser's recursion limit (audit)
        raise CommandError(f"{named}: cannot read {what}: nested too deeply "
                           "(arrays or objects within thousands of others).") from None


class Command(BaseCommand):
    help = ("Import a Label Studio JSON export (tasks with annotations and/or predictions: polygons, rotated "
            "rectangles, brushes, per-region text areas with the LaTeX) and its image files into a spec, all or "
            "nothing: every task is checked first, then the images are ingested and the regions stored as one "
            "model version's predictions (default) or as the images' truth (--as truth, one formula per image).")

    def add_arguments(self, parser):
        parser.add_argument("tasks_json", type=Path, help="Label Studio's JSON export (a list of tasks)")
        add_tool_import_arguments(
            parser, tool="Label Studio", model_name="label-studio",
            images_help="Folder holding the tasks' image files (searched recursively, by the base name of each "
                        "task's image URL)",
            model_version_help="Model version of the predictions (default: the tasks file's name without .json)",
            skip_unknown_help="Leave out results of other types (keypoints, ellipses, choices, ...) instead of "
                              "refusing the import")
        parser.add_argument("--config", type=Path, help="The project's label_config.xml: its <Image value=\"$key\"> "
                            "names the task's image (default: the one data value that looks like an image)")
        parser.add_argument("--results", choices=RESULT_CHOICES, default="auto",
                            help="Which results to import: the latest non-cancelled annotation, else the latest "
                            "prediction (auto, default), or only annotations / only predictions")
        parser.add_argument("--predictions", type=Path, help="The project's predictions as Label Studio's API "
                            "gives them (GET /api/predictions/?project=ID saved as a file): its JSON export lists "
                            "a task's predictions by id only")

    def handle(self, *args, tasks_json: Path, images: Path, spec: str, source: str, as_: str, model_name: str,
               model_version: str | None, category_map: list[str], config: Path | None, results: str,
               predictions: Path | None, skip_unknown: bool, category: list[str], user: str | None, dry_run: bool,
               **options):
        self.verbosity = options.get("verbosity", 1)
        tasks = _read_json(tasks_json, "a Label Studio JSON export")
        prediction_list = None if predictions is None else _read_json(predictions, "Label Studio predictions",
                                                                      option="--predictions")
        label_config = None
        if config is not None:
            try:
                label_config = config.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"--config: cannot read {config}: {exc}") from None
        the_spec = spec_by_id_or_slug(spec)
        the_source, _ = source_for(source, default=None)
        uploader = user_by_name(user)
        version = model_version if model_version is not None else tasks_json.stem[:60]
        report = tool_import_run(lambda: services.labelstudio_import(
            spec=the_spec, source=the_source, tasks=tasks, images_dir=images, as_truth=as_ == "truth",
            model_name=model_name, model_version=version, category_map=category_map_parsed(category_map),
            label_config=label_config, results=results, predictions=prediction_list, skip_unknown=skip_unknown,
            categories=category, uploaded_by=uploader, dry_run=dry_run))
        self._print(report, spec=the_spec, version=version, model_name=model_name)
        tool_import_dry_run_check(report)

    def _print(self, report: services.LabelStudioImport, *, spec: DatasetSpec, version: str, model_name: str) -> None:
        out = self.stdout
        verbose = report.dry_run or self.verbosity >= 2
        for f, m in report.problems:
            out.write(self.style.ERROR(f"{f}: {m}"))
        # Without -v 2, a note many tasks share (a truth import of rotated shapes: every task) is one
        # line with their count: 10,000 tasks printed 20,000 lines of the same note (audit).
        shared: dict[str, list[int]] = {}
        if not verbose:
            for t in report.tasks:
                for n in t.notes:
                    shared.setdefault(n, []).append(t.index)
            shared = {n: idx for n, idx in shared.items() if len(idx) > 1}
        for t in report.tasks:
            notes = [n for n in t.notes if n not in shared]
            if verbose or t.problems or notes:
                kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.kinds.items())) or "none"
                skipped = ", ".join(f"{k} {n}" for k, n in sorted(t.skipped.items()))
                out.write(f"tasks[{t.index}] (id {t.task_id}) {t.file or '?'}: {t.image or '-'}; "
                          f"{t.used or 'no annotation or prediction'}; regions: {kinds}"
                          + (f"; skipped: {skipped}" if skipped else ""))
            for f, m in t.problems:
                out.write(self.style.ERROR(f"  {f}: {m}"))
            for n in notes:
                out.write(self.style.WARNING(f"  note: {n}"))
        for n, idx in shared.items():
            shown = ", ".join(f"tasks[{i}]" for i in idx[:3]) + (", ..." if len(idx) > 3 else "")
            out.write(self.style.WARNING(f"note ({len(idx)} tasks: {shown}): {n}"))
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.region_kinds().items())) or "none"
        target = "as the images' truth" if report.as_truth else f"as predictions of {model_name}@{version}"
        verb = "Would import" if report.dry_run else "Imported"
        out.write(self.style.SUCCESS(
            f"{verb} {len(report.tasks)} task(s) into {spec.slug}: {report.images_new} new image(s), "
            f"{report.images_duplicate} already in the spec; regions {target}: {kinds}"
            + ("" if report.dry_run else
               f"; {report.truths} truth(s) stored" if report.as_truth else f"; {report.predictions} prediction(s) stored"
               + (f", {report.kept} kept" if report.kept else ""))
            + "."))
