"""``python manage.py evaluate_recognizer --tsv FILE --images DIR`` (or ``--crohme TARBALL``).

Prints exact match, match within 1 and 2 token edits, mean token edit distance and BLEU-4
after normalisation, how well the readings' confidences tell exact from wrong ones (AUROC,
expected calibration error, Brier score, the share of wrong readings among the least confident
30%: :func:`pipeline.ml.calibration.confidence_metrics`), and writes one JSON line per sample to
``--results``.

* ``--tsv/--images``: lines ``file<TAB>LaTeX``; each image is one formula crop. ``--crop-ink``
  first crops to the ink's bounding box (im2markup pages); ``--heldout-only`` keeps the fixed
  held-out fifth of im2markup (md5(name) % 5 == 0), the part training never saw.
* ``--crohme``: InkML tarball (e.g. ../shared/data/crohme/test-2016.tar.xz) rendered offline at
  a fixed size (64 px high, 2 px pen), truths from the files.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from common.latex import normalize_tokens
from pipeline.ml.data import im2markup_heldout
from pipeline.ml.imageio import ink_box

from ._common import add_model_options, check_tsv, crohme_samples, emit, make_reader, tsv_images


def _tsv_samples(tsv: Path, images: Path, crop_ink: bool, heldout_only: bool, limit: int, skipped: list[str],
                 stderr):
    for name, src, rgb in tsv_images(tsv, images, skipped, stderr):
        if heldout_only and not im2markup_heldout(name):
            continue
        truth = normalize_tokens(src)
        if not truth:  # truth lost (see common.latex tests): nothing to compare against
            continue
        if crop_ink:
            box = ink_box(rgb)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            rgb = rgb[max(y0 - 6, 0):y1 + 6, max(x0 - 6, 0):x1 + 6]
        yield name, rgb, truth
        limit -= 1
        if limit == 0:
            return


class Command(BaseCommand):
    help = "Evaluate the recognizer: exact match, within 1/2 edits, token edit distance, BLEU-4."

    def add_arguments(self, parser):
        parser.add_argument("--tsv")
        parser.add_argument("--images")
        parser.add_argument("--crohme", help="InkML tarball to render and evaluate")
        parser.add_argument("--crop-ink", action="store_true")
        parser.add_argument("--heldout-only", action="store_true")
        parser.add_argument("--limit", type=int, default=0)
        parser.add_argument("--results", default="recognizer-results.jsonl")
        parser.add_argument("--json", action="store_true")
        add_model_options(parser)

    def handle(self, *args, **o):
        from pipeline.ml.calibration import confidence_metrics
        from pipeline.ml.evaluate import recognizer_metrics

        skipped: list[str] = []
        if o["crohme"]:
            samples = crohme_samples(Path(o["crohme"]), o["limit"])
        elif o["tsv"] and o["images"]:
            check_tsv(o["tsv"], o["images"])
            samples = _tsv_samples(Path(o["tsv"]), Path(o["images"]), o["crop_ink"], o["heldout_only"], o["limit"],
                                   skipped, self.stderr)
        else:
            raise CommandError("give --tsv FILE --images DIR, or --crohme TARBALL")
        reader = make_reader(o)
        names, pairs, confs = [], [], []
        batch: list = []
        t0 = time.perf_counter()

        def flush():
            for (name, _, truth), reading in zip(batch, reader.recognize([b[1] for b in batch]), strict=True):
                names.append(name)
                pairs.append((reading.tokens, truth))
                confs.append(reading.confidence)
            batch.clear()

        for sample in samples:
            batch.append(sample)
            if len(batch) >= 64:
                flush()
        if batch:
            flush()
        elapsed = time.perf_counter() - t0
        if not pairs:  # figures of nothing would read as a model that gets everything wrong
            raise CommandError(f"no samples to evaluate ({len(skipped)} line(s) skipped)")
        summary, rows = recognizer_metrics(pairs)
        # how well the confidence (P(exact), pipeline.ml.calibration) tells right readings from wrong
        quality = confidence_metrics(confs, [row["exact"] for row in rows]) if rows else {}
        summary.update({f"confidence_{k}": v for k, v in quality.items() if k not in ("samples", "exact")})
        summary["seconds_per_sample"] = elapsed / max(len(rows), 1)
        summary["skipped"] = len(skipped)
        with open(o["results"], "w", encoding="utf-8") as fh:
            for name, row, conf in zip(names, rows, confs, strict=True):
                fh.write(json.dumps({"image": name, "confidence": round(conf, 4), **row}) + "\n")
        summary["results_file"] = o["results"]
        lines = [f"{k}: {v:.4f}\n" if isinstance(v, float) else f"{k}: {v}\n" for k, v in summary.items()]
        emit(self.stdout, summary, o["json"], lines)
