"""python manage.py import_cvat ANNOTATIONS_XML --images DIR --spec SPEC --source SOURCE
[--as predictions|truth] [--model-name NAME] [--model-version VERSION] [--category-map LABEL=SLUG ...]
[--latex-attribute latex] [--skip-unknown] [--dry-run]:
a CVAT for images 1.1 XML file and its image files into a spec, all or nothing.

How the XML, the files and the shapes are read: curation/cvat_import.py. The write:
curation.services.cvat_import."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from curation import services
from curation.cvat_import import DEFAULT_LATEX_ATTRIBUTE
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


class Command(BaseCommand):
    help = ("Import a CVAT for images 1.1 XML file (annotations.xml: polygons, rotated boxes, masks, with the LaTeX "
            "in a text attribute and the illegible / cut_off flags) and its image files into a spec, all or "
            "nothing: every image is checked first, then the images are ingested and the regions stored as one "
            "model version's predictions (default) or as the images' truth (--as truth, one formula per image).")

    def add_arguments(self, parser):
        parser.add_argument("annotations_xml", type=Path, help="CVAT's annotations.xml (CVAT for images 1.1)")
        add_tool_import_arguments(
            parser, tool="CVAT", model_name="cvat",
            images_help="Folder holding the image files (each <image name> as a path inside it, else by its base "
                        "name, searched recursively)",
            model_version_help="Model version of the predictions (default: the task's name in the file's <meta>, "
                               "else the file's name without .xml)",
            skip_unknown_help="Leave out other shapes (polylines, points, cuboids, skeletons, ellipses, tags) "
                              "instead of refusing the import")
        parser.add_argument("--latex-attribute", default=DEFAULT_LATEX_ATTRIBUTE, help="Name of the shapes' text "
                            "attribute holding the LaTeX (default: %(default)s)")

    def handle(self, *args, annotations_xml: Path, images: Path, spec: str, source: str, as_: str, model_name: str,
               model_version: str | None, category_map: list[str], latex_attribute: str, skip_unknown: bool,
               category: list[str], user: str | None, dry_run: bool, **options):
        self.verbosity = options.get("verbosity", 1)
        the_spec = spec_by_id_or_slug(spec)
        the_source, _ = source_for(source, default=None)
        uploader = user_by_name(user)
        report = tool_import_run(lambda: services.cvat_import(
            spec=the_spec, source=the_source, annotations=annotations_xml, images_dir=images,
            as_truth=as_ == "truth", model_name=model_name, model_version=model_version,
            category_map=category_map_parsed(category_map), latex_attribute=latex_attribute,
            skip_unknown=skip_unknown, categories=category, uploaded_by=uploader, dry_run=dry_run))
        self._print(report, spec=the_spec, model_name=model_name)
        tool_import_dry_run_check(report)

    def _print(self, report: services.CvatImport, *, spec: DatasetSpec, model_name: str) -> None:
        out = self.stdout
        verbose = report.dry_run or self.verbosity >= 2
        for f, m in report.problems:
            out.write(self.style.ERROR(f"{f}: {m}"))
        # Without -v 2, a note many images share is one line with their count.
        shared: dict[str, list[int]] = {}
        if not verbose:
            for im in report.images:
                for n in im.notes:
                    shared.setdefault(n, []).append(im.index)
            shared = {n: idx for n, idx in shared.items() if len(idx) > 1}
        for im in report.images:
            notes = [n for n in im.notes if n not in shared]
            if verbose or im.problems or notes:
                kinds = ", ".join(f"{k} {n}" for k, n in sorted(im.kinds.items())) or "none"
                skipped = ", ".join(f"{k} {n}" for k, n in sorted(im.skipped.items()))
                out.write(f"image[{im.index}] (id {im.frame_id}) {im.file or im.name or '?'}: {im.image or '-'}; "
                          f"regions: {kinds}" + (f"; skipped: {skipped}" if skipped else ""))
            for f, m in im.problems:
                out.write(self.style.ERROR(f"  {f}: {m}"))
            for n in notes:
                out.write(self.style.WARNING(f"  note: {n}"))
        for n, idx in shared.items():
            shown = ", ".join(f"image[{i}]" for i in idx[:3]) + (", ..." if len(idx) > 3 else "")
            out.write(self.style.WARNING(f"note ({len(idx)} images: {shown}): {n}"))
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.region_kinds().items())) or "none"
        target = "as the images' truth" if report.as_truth else f"as predictions of {model_name}@{report.model_version}"
        verb = "Would import" if report.dry_run else "Imported"
        out.write(self.style.SUCCESS(
            f"{verb} {len(report.images)} image(s) into {spec.slug}: {report.images_new} new image(s), "
            f"{report.images_duplicate} already in the spec; regions {target}: {kinds}"
            + ("" if report.dry_run else
               f"; {report.truths} truth(s) stored" if report.as_truth else f"; {report.predictions} prediction(s) stored"
               + (f", {report.kept} kept" if report.kept else ""))
            + "."))
