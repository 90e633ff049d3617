"""Offline evaluation speed and figures: the committed weights on a snapshot of generated photos.

    nice -n 10 python bench/evaluation.py                        # 40 photos, batches of 1 and 8
    nice -n 10 python bench/evaluation.py --photos 100 --batch-sizes 1 4 16 --threads 2

A fresh SQLite database and media folder under a temporary directory: N generated formula
photos (``curation.synthetic.formula_photo``: printed, shadow, highlighter, whiteout in turn)
each with its formula's box and LaTeX as the accepted answer, frozen into a snapshot whose
items are all in the test split. Then one evaluation per batch size, run in this process
exactly as the Celery worker runs it (``pipeline.evaluation.evaluation_run``), printing the
time per image (p50/p95), QPS and the accuracy figures. The photos are not the spec's real
data: the accuracy says how the committed weights do on generated photos, nothing more.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (MATHSET_TORCH_THREADS)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-evaluation-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ["MEDIA_ROOT"] = str(tmp / "media")
    os.environ["MATHSET_TORCH_THREADS"] = str(args.threads)
    os.environ["MATHSET_CELERY_EAGER"] = "1"  # no broker: other tasks run in-process
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    import numpy as np

    from bench._benchutil import db_engine_description, machine_facts
    from curation.synthetic import SCHOOL_FORMULAS, VARIANTS, formula_photo
    from pipeline import evaluation, tasks
    from pipeline.services import model_version_builtin
    from tests.pipeline.evaluation_helpers import box, make_eval_snapshot, region

    started = time.perf_counter()
    images, data = [], []
    for i in range(args.photos):
        latex, variant = SCHOOL_FORMULAS[i % len(SCHOOL_FORMULAS)], VARIANTS[i % len(VARIANTS)]
        img = formula_photo(latex, variant, np.random.default_rng(1000 + i))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        data.append(buf.getvalue())
        category = "printed" if variant == "printed" else variant
        images.append(([region(box(40, 40, img.width - 40, img.height - 40), latex)], (category,)))
    snap = make_eval_snapshot(images, data=data, name="bench", requirements=[
        {"metric": "exact_match", "threshold": 0.9}, {"metric": "detection_f1", "threshold": 0.95}],
        target_qps=10, max_ms_per_image=200)
    print(f"seeded {args.photos} photos in {time.perf_counter() - started:.1f} s", flush=True)

    tasks.run_evaluation.delay = lambda *a, **kw: None  # this script runs each evaluation itself, timed
    detector, recognizer = model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")
    evaluation._reader_for(evaluation.evaluation_create(  # load the weights once, outside the timings
        snapshot=snap, detector_version=detector, recognizer_version=recognizer, created_by=None))
    rows = []
    for batch_size in args.batch_sizes:
        run = evaluation.evaluation_create(snapshot=snap, detector_version=detector, recognizer_version=recognizer,
                                           created_by=None, batch_size=batch_size)
        wall = time.perf_counter()
        run = evaluation.evaluation_run(run=run)
        wall = time.perf_counter() - wall
        if run.status != "done":
            raise SystemExit(f"evaluation {run.status}: {run.error}")
        o = run.metrics["overall"]
        row = {"batch_size": batch_size, "images": o["images"], "p50_ms": round(run.latency_p50_ms, 1),
               "p95_ms": round(run.latency_p95_ms, 1), "qps": round(run.qps, 2), "wall_s": round(wall, 1),
               "exact_match": round(o["exact_match"], 3), "token_edit_distance": round(o["token_edit_distance"], 3),
               "bleu4": round(o["bleu4"], 3), "detection_f1": round(o["detection_f1"], 3),
               "mean_iou": round(o["mean_iou"] or 0, 3), "passed": run.passed, "device": run.device,
               "confidence_mean": _rounded(o["confidence_mean"]), "confidence_ece": _rounded(o["confidence_ece"]),
               "confidence_auroc": _rounded(o["confidence_auroc"])}
        rows.append(row)
        print(f"batch {batch_size:>2}: {row['images']} images, time per image p50 {row['p50_ms']} ms / p95 "
              f"{row['p95_ms']} ms, {row['qps']} images/s (run wall {row['wall_s']} s incl. decoding and storing); "
              f"exact {row['exact_match']}, edit distance {row['token_edit_distance']}, BLEU-4 {row['bleu4']}, "
              f"det F1 {row['detection_f1']}, mean IoU {row['mean_iou']}; confidence mean {row['confidence_mean']}, "
              f"ECE {row['confidence_ece']}, AUROC {row['confidence_auroc']}; verdict {row['passed']} ({row['device']})",
              flush=True)
    print(machine_facts(db_engine_description()))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
