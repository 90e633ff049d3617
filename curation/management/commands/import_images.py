"""python manage.py import_images PATH --spec SLUG [--tsv FILE]: import pages such as
im2markup's, with their LaTeX and the ink bounding box (the formula is the only ink)."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

from curation.importers import IM2MARKUP_SOURCE, TsvError, image_items, read_tsv

from ..cli import IngestCommand, source_for, spec_by_slug, user_by_name


class Command(IngestCommand):
    help = ("Import a folder or zip of formula pages (default source: im2markup, MIT; default category: printed). "
            "With --tsv (name<TAB>latex) the LaTeX is stored as the image's truth. The ink bounding box goes to "
            "meta['ink_bbox'] as [x0, y0, x1, y1]. Unreadable files are listed at the end with the reason.")
    noun = "images"
    default_source: dict | None = IM2MARKUP_SOURCE
    default_categories: list[str] = ["printed"]
    ink_bbox_default = True

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Folder, zip or tar archive of images")
        self.add_common_arguments(parser)
        parser.add_argument("--tsv", type=Path, help="name<TAB>latex lines; the LaTeX becomes the truth")
        parser.add_argument("--category", action="append", default=None, dest="category",
                            help=f"Category slug (repeatable; default: {', '.join(self.default_categories) or 'none'})")
        parser.add_argument("--ink-bbox", action="store_true", default=self.ink_bbox_default,
                            help="Store the ink bounding box in meta (default: %(default)s)")
        parser.add_argument("--no-ink-bbox", action="store_false", dest="ink_bbox")

    def handle(self, *args, path: Path, spec: str, source: str | None, limit: int | None, chunk_size: int,
               user: str | None, tsv: Path | None, category: list[str] | None, ink_bbox: bool, **options):
        self.verbosity = options["verbosity"]
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        truths = None
        clashes: list[str] = []
        if tsv is not None:
            try:
                truths = read_tsv(tsv, clashes=clashes)
            except TsvError as exc:  # a line's LaTeX holds a control or non-character: nothing imported
                raise CommandError(f"--tsv: {tsv}, {exc}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"--tsv: cannot read {tsv}: {exc}") from None
            self.stdout.write(f"{len(truths)} LaTeX lines read from {tsv}.")
            for clash in clashes:
                self.stderr.write(f"warning: {tsv}: {clash}")
        uploader = user_by_name(user)
        the_spec = spec_by_slug(spec)
        the_source, created = source_for(source, default=self.default_source, user=uploader)
        if created:
            self.stdout.write(f"Created source {the_source.name!r} ({the_source.licence.code}).")
        categories = category if category is not None else self.default_categories
        self.stdout.write(f"Importing images from {path} into {the_spec.slug} (source: {the_source.name}, "
                          f"categories: {', '.join(categories) or 'none'}) ...")
        seen: set[str] = set()
        items = image_items(path, truths=truths, with_ink_bbox=ink_bbox, seen_names=seen)
        self.run_batch(spec=the_spec, source=the_source, items=items, categories=categories, user=uploader,
                       limit=limit, chunk_size=chunk_size)
        if truths and limit is None:
            self._report_unmatched(tsv, truths, seen)

    def _report_unmatched(self, tsv: Path, truths: dict[str, str], seen: set[str]) -> None:
        """TSV lines no file used: a name spelled differently (case, extension) loses its LaTeX
        without a word otherwise."""
        unused = sorted(set(truths) - seen)
        if not unused:
            return
        by_lower = {name.lower(): name for name in seen}
        shown = []
        for name in unused[:20]:
            near = by_lower.get(name.lower())
            shown.append(f"{name} (a file is named {near})" if near else name)
        more = f" and {len(unused) - 20} more" if len(unused) > 20 else ""
        self.stderr.write(f"warning: {len(unused)} line(s) of {tsv} matched no file: {', '.join(shown)}{more}")
