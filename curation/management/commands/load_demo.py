"""python manage.py load_demo: idempotent demo data (vendor, a user per role, specs,
a source per licence family, a few dozen images)."""
from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand

from curation.demo import demo_load


class Command(BaseCommand):
    help = ("Load demo data: vendor 'Acme Labeling', one user per role, a research and a commercial spec, a source "
            "per licence family, and images (real ones from the shared data folder when present, generated "
            "otherwise). Safe to run again: nothing is created twice.")

    def add_arguments(self, parser):
        parser.add_argument("--no-real-data", action="store_true",
                            help="Use generated images only, even when the shared data folder is there")

    def handle(self, *args, no_real_data: bool = False, **options):
        started = time.perf_counter()
        shared = None if no_real_data else settings.MATHSET_SHARED_DATA
        summary = demo_load(shared_data=shared if shared and shared.is_dir() else None)
        out = self.stdout
        out.write(self.style.SUCCESS(
            f"Demo data ready in {time.perf_counter() - started:.1f} s: {len(summary.specs)} specs, "
            f"{len(summary.sources)} sources, {summary.imported} images added "
            f"({summary.duplicates} already there), "
            f"{'real data from ' + str(shared) if summary.used_real_data else 'generated images only'}."))
        for f in summary.failures:
            out.write(self.style.WARNING(f"  not imported: {f}"))
        out.write("Demo logins (username / password, role):")
        for username, role, password in summary.users:
            out.write(f"  {username:<10} / {password:<15} {role}")
        for spec in summary.specs:
            out.write(f"Spec: {spec.name} ({spec.get_intended_use_display()}), slug {spec.slug}")
