"""python manage.py ingest_images PATH --spec SLUG --source ID [--category SLUG ...]:
any folder or archive of images (photos, scans) into a spec."""
from __future__ import annotations

from . import import_images


class Command(import_images.Command):
    help = ("Ingest every image of a folder, zip or tar archive into a spec, from a named source (required), "
            "with the given categories. Unreadable files are listed at the end with the reason.")
    default_source = None
    default_categories: list[str] = []
    ink_bbox_default = False
