"""Benchmark: quota progress and QA statistics of one spec with ~1,000,000 regions, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mathset_bench_stats python bench/stats.py \
        [--images 330000] [--reuse] [--repeat 3]

It creates the database named in DATABASE_URL (dropped first; the name must start with
``mathset_bench``), migrates it and seeds one spec in SQL (``INSERT ... SELECT generate_series``,
no ORM per row): `--images` images in five categories, one task each for two vendors, a model's
pre-labels on half the images, one annotation per task (1% of tasks overlapped by a second
annotator, 1% gold), three quadrilateral regions with LaTeX per annotation (3 x 333,300 =
999,900 regions for the default), one review per accepted or rejected annotation. Then it times
``curation.services.spec_progress_refresh`` (quota progress per category, split and vendor,
computed and stored as the worker's debounced refresh does) and ``pipeline.stats.spec_stats_compute``
(every QA section, stored as a report), then the whole refresh job the worker runs
(``pipeline.stats.spec_reports_refresh``: both, side by side), `--repeat` times each, and prints
the figures with the machine's facts. ``--reuse`` skips the seeding (a database seeded by an
earlier run). ``QA_STATS_THREADS=1`` runs every section one after another.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._benchutil import (  # noqa: E402
    db_engine_description,
    fresh_database,
    machine_facts,
    postgres_backends_cpu_seconds,
    postgres_exited_backends_cpu_seconds,
)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/mathset_bench_stats"
ANNOTATORS_PER_VENDOR = 10

SEED_SQL = [
    # Images 1..n, category (i % 5), one task each, alternating between the two vendors' batches.
    """INSERT INTO curation_image (id, spec_id, source_id, file, thumbnail, original_filename, sha256, phash, width,
           height, format, file_size, capture_session, truth_latex, meta, uploaded_by_id, created_at)
       SELECT i, %(spec)s, %(source)s, 'bench/' || i || '.png', 'bench/' || i || '.jpg', '', lpad(to_hex(i), 64, '0'),
              lpad(to_hex(i), 16, '0'), 1200, 800, 'PNG', 1000, '', '', '{}'::jsonb, NULL, now()
       FROM generate_series(1, %(n)s) i""",
    """INSERT INTO curation_image_categories (image_id, category_id)
       SELECT i, (%(cats)s::int[])[1 + i %% 5] FROM generate_series(1, %(n)s) i""",
    # 75% accepted, 10% rejected, 15% submitted; every 100th task overlapped (2), every 100th+50 gold.
    """INSERT INTO labeling_task (id, batch_id, image_id, status, overlap, slots_taken, is_gold, gold_answer, priority,
           model_confidence, created_at, updated_at)
       SELECT i, (%(batches)s::int[])[1 + i %% 2], i,
              CASE WHEN i %% 20 < 15 THEN 'accepted' WHEN i %% 20 < 17 THEN 'rejected' ELSE 'submitted' END,
              CASE WHEN i %% 100 = 0 THEN 2 ELSE 1 END, CASE WHEN i %% 100 = 0 THEN 2 ELSE 1 END,
              i %% 100 = 50,
              CASE WHEN i %% 100 = 50 THEN jsonb_build_object('latex', 'x^{2}+1', 'regions', jsonb_build_array(
                  jsonb_build_object('kind', 'quad', 'latex', 'x^{2}+1', 'points',
                      '[[10,10],[60,10],[60,40],[10,40]]'::jsonb))) END,
              0, NULL, now(), now()
       FROM generate_series(1, %(n)s) i""",
    # Pre-labels of the even images: the three regions a little shifted; model version 1 or 2.
    """INSERT INTO labeling_prediction (id, image_id, model_name, model_version, regions, confidence, created_by_id,
           created_at)
       SELECT i / 2, i, 'det', (1 + i %% 4 / 2)::text, (
                SELECT jsonb_agg(jsonb_build_object('kind', 'quad', 'latex', CASE k WHEN 0 THEN 'x^{' || (i %% 1000) || '}+1'
                           WHEN 1 THEN '\\frac{a_{' || (i %% 997) || '}}{b}' ELSE 'y_{' || (i %% 10) || '}' END,
                       'points', jsonb_build_array(jsonb_build_array(10 + 300 * k + i %% 7, 10),
                           jsonb_build_array(60 + 300 * k + i %% 7, 10), jsonb_build_array(60 + 300 * k + i %% 7, 40),
                           jsonb_build_array(10 + 300 * k + i %% 7, 40))) ORDER BY k)
                FROM generate_series(0, 2) k), 0.5, NULL, now()
       FROM generate_series(2, %(n)s, 2) i""",
    # One annotation per task (its status), a second one on the overlapped tasks (ids n + i/100).
    """CREATE TEMP TABLE bench_ann AS
       SELECT i AS id, i AS task_id, (%(ann1)s::int[])[1 + (i / 2) %% %(per)s] AS a1,
              (%(ann2)s::int[])[1 + (i / 2) %% %(per)s] AS a2, i AS image FROM generate_series(1, %(n)s) i
       UNION ALL
       SELECT %(n)s + i / 100, i, (%(ann1)s::int[])[1 + (i / 2 + 1) %% %(per)s],
              (%(ann2)s::int[])[1 + (i / 2 + 1) %% %(per)s], i FROM generate_series(100, %(n)s, 100) i""",
    """INSERT INTO labeling_annotation (id, task_id, annotator_id, status, version, current_id, created_at,
           updated_at, submitted_at)
       SELECT a.id, a.task_id, CASE WHEN a.task_id %% 2 = 0 THEN a.a1 ELSE a.a2 END, t.status, 1, NULL, now(), now(),
              now()
       FROM bench_ann a JOIN labeling_task t ON t.id = a.task_id""",
    """INSERT INTO labeling_annotationversion (id, annotation_id, number, author_id, time_spent_seconds,
           started_from_id, created_at)
       SELECT a.id, a.id, 1, a.annotator_id, 20 + (a.id * 37) %% 100,
              CASE WHEN t.image_id %% 2 = 0 THEN t.image_id / 2 END, now()
       FROM labeling_annotation a JOIN labeling_task t ON t.id = a.task_id""",
    "UPDATE labeling_annotation SET current_id = id",
    # Three regions per version, shifted by (id % 5) px; LaTeX varies with the id (its normalised
    # form, as the submit path stores it, comes from bench_norm, filled in Python beforehand).
    """INSERT INTO labeling_region (version_id, index, kind, points, mask_rle, latex, latex_normalized, illegible,
           cut_off, categories)
       SELECT v.id, k, 'quad', jsonb_build_array(jsonb_build_array(10 + 300 * k + v.id %% 5, 10),
                  jsonb_build_array(60 + 300 * k + v.id %% 5, 10), jsonb_build_array(60 + 300 * k + v.id %% 5, 40),
                  jsonb_build_array(10 + 300 * k + v.id %% 5, 40)),
              NULL, l.latex, n.norm, false, false, '[]'::jsonb
       FROM labeling_annotationversion v CROSS JOIN generate_series(0, 2) k
       CROSS JOIN LATERAL (SELECT CASE k WHEN 0 THEN 'x^{' || (v.id %% 1000) || '}+1'
                                         WHEN 1 THEN '\\frac{a_{' || (v.id %% 997) || '}}{b}'
                                         ELSE 'y_{' || (v.id %% 9) || '}' END AS latex) l
       JOIN bench_norm n ON n.latex = l.latex""",
    """INSERT INTO labeling_review (annotation_id, version_id, reviewer_id, decision, reasons, comment, created_at)
       SELECT a.id, a.id, %(reviewer)s, CASE a.status WHEN 'accepted' THEN 'accept' ELSE 'reject' END,
              CASE WHEN a.status = 'accepted' THEN '[]'::jsonb WHEN a.id %% 2 = 0 THEN '["latex_error"]'::jsonb
                   ELSE '["wrong_region", "missing_formula"]'::jsonb END, '', now()
       FROM labeling_annotation a WHERE a.status IN ('accepted', 'rejected')""",
]
SEQUENCES = ["curation_image", "labeling_task", "labeling_prediction", "labeling_annotation",
             "labeling_annotationversion"]


def _latex_forms() -> list[str]:
    """Every LaTeX string the region INSERT writes."""
    return ([f"x^{{{k}}}+1" for k in range(1000)] + [rf"\frac{{a_{{{k}}}}}{{b}}" for k in range(997)]
            + [f"y_{{{k}}}" for k in range(9)])


def seed(n: int) -> int:
    """Seed one spec; return its id."""
    from decimal import Decimal

    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from common import latex, roles
    from common.services import user_create
    from curation.models import Category
    from labeling.models import Batch, VendorMembership
    from labeling.services import vendor_create
    from tests.factories import make_source, make_spec

    with transaction.atomic():
        spec = make_spec(name="Bench spec", default_quota=n // 4)
        source = make_source(name="Bench source")
        curator = user_create(username="bench-curator", password="bench-pass-1234", role=roles.CURATOR)
        vendors = [vendor_create(name=f"Bench vendor {k}") for k in (1, 2)]
        annotators = []
        for k, vendor in enumerate(vendors, 1):
            users = User.objects.bulk_create([User(username=f"bench-annotator-{k}-{j}")
                                              for j in range(ANNOTATORS_PER_VENDOR)])
            VendorMembership.objects.bulk_create([VendorMembership(vendor=vendor, user=u) for u in users])
            annotators.append([u.id for u in users])
        batches = [Batch.objects.create(name=f"Bench batch {v.name}", spec=spec, vendor=v, unit_price=Decimal(price),
                                        agreed_quantity=n, overlap=1)
                   for v, price in zip(vendors, ("0.10", "0.12"), strict=True)]
        params = {"n": n, "spec": spec.id, "source": source.id, "reviewer": curator.id,
                  "cats": list(Category.objects.filter(spec=spec).order_by("position").values_list("id", flat=True)),
                  "batches": [b.id for b in batches], "ann1": annotators[0], "ann2": annotators[1],
                  "per": ANNOTATORS_PER_VENDOR}
        with connection.cursor() as cur:
            cur.execute("CREATE TEMP TABLE bench_norm (latex text PRIMARY KEY, norm text NOT NULL)")
            cur.executemany("INSERT INTO bench_norm VALUES (%s, %s)", [(t, latex.normalize(t)) for t in _latex_forms()])
            for sql in SEED_SQL:
                t0 = time.perf_counter()
                cur.execute(sql, params)
                print(f"  {time.perf_counter() - t0:6.1f} s  {' '.join(sql.split()[:3])}", flush=True)
            for table in SEQUENCES:
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")  # fresh tables: real planner statistics, as autovacuum would give
    return spec.id


def _postgres_cpu(url: str) -> float:
    return (postgres_backends_cpu_seconds(url) or 0.0) + (postgres_exited_backends_cpu_seconds(url) or 0.0)


def timed(fn, repeat: int, url: str) -> tuple[list[float], list[float], object]:
    """Wall seconds and CPU seconds (this process, its threads, and the PostgreSQL backends, live
    or exited: the QA sections run on threads with their own connections) per run: on a shared
    machine the CPU figure is the one other people's load changes least."""
    times, cpu, result = [], [], None
    for _ in range(repeat):
        c0, p0, t0 = time.process_time(), _postgres_cpu(url), time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0 + _postgres_cpu(url) - p0)
    return times, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=330_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="time an already seeded database")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("bench/stats.py measures PostgreSQL: set DATABASE_URL=postgres://.../mathset_bench_stats")
    if not args.reuse:
        fresh_database(url, ROOT / "var")
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from curation.models import DatasetSpec
    from curation.services import spec_progress_refresh
    from labeling.models import Annotation, Region
    from pipeline.stats import spec_reports_refresh, spec_stats_compute

    if not args.reuse:
        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        print(f"migrated in {time.perf_counter() - t0:.1f} s; seeding {args.images:,} images ...", flush=True)
        t0 = time.perf_counter()
        seed(args.images)
        print(f"seeded in {time.perf_counter() - t0:.1f} s", flush=True)
    spec = DatasetSpec.objects.get(name="Bench spec")
    regions = Region.objects.filter(version__annotation__task__batch__spec=spec).count()
    annotations = Annotation.objects.filter(task__batch__spec=spec).count()
    print(f"spec {spec.id}: {args.images:,} images, {annotations:,} annotations, {regions:,} regions")

    from django.conf import settings

    from pipeline.stats import section_threads

    print(f"QA sections side by side: {section_threads()} thread(s) (QA_STATS_THREADS={settings.QA_STATS_THREADS})")
    load_before = os.getloadavg()[0]
    progress_times, progress_cpu, report_row = timed(lambda: spec_progress_refresh(spec=spec), args.repeat, url)
    progress = report_row.payload
    stats_times, stats_cpu, report = timed(lambda: spec_stats_compute(spec=spec), args.repeat, url)
    p = report.payload
    job_times, job_cpu, _ = timed(lambda: spec_reports_refresh(spec=spec), args.repeat, url)

    def fmt(values):
        return ", ".join(f"{v:.2f}" for v in values)

    print(f"load average before timing: {load_before:.2f}")
    print(f"quota progress: wall {fmt(progress_times)} s, CPU {fmt(progress_cpu)} s "
          f"({len(progress['by_category'])} categories, {len(progress['by_vendor'])} vendors)")
    print(f"QA statistics:  wall {fmt(stats_times)} s, CPU {fmt(stats_cpu)} s; sections (ms) {p['timings_ms']} "
          f"(agreement {p['agreement']['items']:,}/{p['agreement']['of']:,} overlapped tasks, "
          f"gold {p['gold']['items']:,}/{p['gold']['of']:,}, pre-label {p['prelabel']['items']:,}/"
          f"{p['prelabel']['of']:,} accepted answers, reviews {p['reviews']['overall']['reviews']:,}, "
          f"annotations timed {p['throughput']['overall']['annotations']:,})")
    best = min(progress_times) + min(stats_times)
    print(f"quota + QA one after the other, best runs: wall {best:.2f} s "
          f"(target <= 5 s: {'met' if best <= 5 else 'NOT met'}), CPU {min(progress_cpu) + min(stats_cpu):.2f} s")
    print(f"refresh job (quota + QA as the worker runs them, side by side): wall {fmt(job_times)} s, "
          f"CPU {fmt(job_cpu)} s; best {min(job_times):.2f} s "
          f"(target <= 5 s: {'met' if min(job_times) <= 5 else 'NOT met'})")
    print(machine_facts(db_engine_description()))
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
