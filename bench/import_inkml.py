"""Benchmark: `manage.py import_inkml` on the 1,147 CROHME 2016 test inks into a fresh
database. Target on the 2-core machine: under 60 s.

    python bench/import_inkml.py                      # SQLite in a temporary folder
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mathset_bench_inkml python bench/import_inkml.py

Prints one result line and the machine facts. Run it with `nice` on a shared machine.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchutil import ROOT, db_engine_description, fresh_database, machine_facts, setup_path  # noqa: E402

TARGET_S = 60.0


def main() -> int:
    setup_path()
    var = Path(tempfile.mkdtemp(prefix="mathset-bench-inkml-"))
    os.environ["MATHSET_VAR_DIR"] = str(var)
    os.environ["MEDIA_ROOT"] = str(var / "media")
    os.environ["DATABASE_URL"] = fresh_database(os.environ.get("DATABASE_URL"), var)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.chdir(ROOT)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from curation.models import Image
    from curation.services import spec_create

    tarball = Path(settings.MATHSET_SHARED_DATA) / "crohme" / "test-2016.tar.xz"
    if not tarball.is_file():
        print(f"SKIP: {tarball} is absent (the real data lives beside the project)")
        return 0
    call_command("migrate", verbosity=0)
    spec = spec_create(name="CROHME bench", requirement="Benchmark", intended_use="research",
                       answer_formats=["latex"])
    out = StringIO()
    load_before = os.getloadavg()[0]
    cpu = time.process_time()
    started = time.perf_counter()
    call_command("import_inkml", str(tarball), "--spec", spec.slug, stdout=out)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    imported = Image.objects.filter(spec=spec).count()
    with_truth = Image.objects.filter(spec=spec).exclude(truth_latex="").count()
    summary = out.getvalue().strip().splitlines()[-1]
    verdict = "OK" if elapsed < TARGET_S else "SLOWER THAN TARGET"
    print(f"import_inkml: {imported} inks ({with_truth} with truth) in {elapsed:.1f} s = "
          f"{imported / elapsed:.1f} inks/s (target < {TARGET_S:.0f} s: {verdict})")
    print(f"command said: {summary}")
    print(f"CPU of the import process: {cpu:.1f} s = {1000 * cpu / max(imported, 1):.1f} ms/ink "
          f"(database server not counted); load average {load_before:.2f} at start")
    print(machine_facts(db_engine_description()))
    return 0 if imported == 1147 else 1


if __name__ == "__main__":
    sys.exit(main())
