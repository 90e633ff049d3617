"""python manage.py import_inkml PATH --spec SLUG: render CROHME InkML inks to images
and import them as handwritten formulas with their truth LaTeX."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

from curation.importers import CROHME_SOURCE, InkRenderOptions, inkml_items

from ..cli import IngestCommand, source_for, spec_by_slug, user_by_name


class Command(IngestCommand):
    help = ("Import InkML inks (a folder, or a .zip/.tar.gz/.tgz/.tar.xz archive read in place): each is rendered "
            "at a fixed height, stored as a 'handwritten' image with its truth LaTeX (a later gold answer) and the "
            "ink's file name and UI in meta. Unreadable files are listed at the end with the reason.")
    noun = "inks"

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Folder or archive of .inkml files")
        self.add_common_arguments(parser)
        parser.add_argument("--height", type=int, default=InkRenderOptions.height, help="Image height in pixels")
        parser.add_argument("--pen-width", type=float, default=InkRenderOptions.pen_width, help="Stroke width, pixels")

    def handle(self, *args, path: Path, spec: str, source: str | None, limit: int | None, chunk_size: int,
               user: str | None, height: int, pen_width: float, **options):
        self.verbosity = options["verbosity"]
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        if height < 32:
            raise CommandError("--height: at least 32 pixels.")
        uploader = user_by_name(user)
        the_spec = spec_by_slug(spec)
        the_source, created = source_for(source, default=CROHME_SOURCE, user=uploader)
        if created:
            self.stdout.write(f"Created source {the_source.name!r} ({the_source.licence.code}).")
        self.stdout.write(f"Importing inks from {path} into {the_spec.slug} (source: {the_source.name}) ...")
        items = inkml_items(path, InkRenderOptions(height=height, pen_width=pen_width))
        self.run_batch(spec=the_spec, source=the_source, items=items, categories=["handwritten"], user=uploader,
                       limit=limit, chunk_size=chunk_size)
