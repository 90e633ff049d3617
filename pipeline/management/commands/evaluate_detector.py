"""``python manage.py evaluate_detector`` on generated photos or on im2markup pages.

* default: ``--photos N`` photos generated from held-out seeds (``EVAL_SEED_BASE`` + i, never
  used in training) with held-out crops (mathtext seed 99, CROHME *test* inks, held-out
  im2markup pages); true quads come from the generator;
* ``--tsv FILE --images DIR``: pages whose truth is the ink's bounding box (im2markup: the
  formula is the only ink); ``--heldout-only`` as for the recognizer.

Prints precision, recall, F1 at IoU 0.5 and the mean IoU of matches; writes per-image rows.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from pipeline.ml.data import im2markup_heldout
from pipeline.ml.imageio import ink_box

from ._common import add_model_options, check_tsv, emit, make_reader, tsv_images


class Command(BaseCommand):
    help = "Evaluate the detector: precision, recall, F1 at IoU 0.5 and mean IoU."

    def add_arguments(self, parser):
        parser.add_argument("--photos", type=int, default=200)
        parser.add_argument("--tsv")
        parser.add_argument("--images")
        parser.add_argument("--heldout-only", action="store_true")
        parser.add_argument("--limit", type=int, default=0)
        parser.add_argument("--iou", type=float, default=0.5)
        parser.add_argument("--results", default="detector-results.jsonl")
        parser.add_argument("--json", action="store_true")
        add_model_options(parser)

    def _samples(self, o):
        if o["tsv"] and o["images"]:
            n = 0
            # the truth is the ink's box: a line's LaTeX is not needed
            for name, _src, rgb in tsv_images(Path(o["tsv"]), Path(o["images"]), self.skipped, self.stderr,
                                              need_latex=False):
                if o["heldout_only"] and not im2markup_heldout(name):
                    continue
                box = ink_box(rgb)
                if box is None:
                    continue
                x0, y0, x1, y1 = box
                yield name, rgb, [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]]
                n += 1
                if n == o["limit"]:
                    return
        else:
            from pipeline.ml.train_detector import EVAL_SEED_BASE, CropPool, make_photo, shared_dir

            try:
                pool = CropPool(heldout=True)
            except FileNotFoundError as exc:  # the photos paste held-out crops of the real data
                raise CommandError(f"{exc.filename}: no such file (--photos needs the CROHME test inks and the "
                                   f"im2markup pages in {shared_dir()}, MATHSET_SHARED_DATA)") from None
            for i in range(o["photos"]):
                photo = make_photo(pool, EVAL_SEED_BASE + i)
                yield f"seed-{EVAL_SEED_BASE + i}", photo.image, [q.tolist() for q in photo.quads]

    def handle(self, *args, **o):
        from pipeline.ml.evaluate import detector_metrics

        self.skipped: list[str] = []
        if o["tsv"] and o["images"]:
            check_tsv(o["tsv"], o["images"])
        reader = make_reader(o)
        names, samples, seconds = [], [], 0.0
        batch = []

        def flush():
            nonlocal seconds
            t0 = time.perf_counter()
            detections = reader.detect([b[1] for b in batch], with_masks=False)
            seconds += time.perf_counter() - t0
            for (name, _, truth), regions in zip(batch, detections, strict=True):
                names.append(name)
                samples.append(([r.quad.tolist() for r in regions], truth))
            batch.clear()

        for s in self._samples(o):
            batch.append(s)
            if len(batch) >= 16:
                flush()
        if batch:
            flush()
        if not samples:  # figures of nothing would read as a detector that finds nothing
            raise CommandError(f"no samples to evaluate ({len(self.skipped)} line(s) skipped)")
        summary, rows = detector_metrics(samples, o["iou"])
        summary["seconds_per_image"] = seconds / max(len(rows), 1)
        summary["skipped"] = len(self.skipped)
        with open(o["results"], "w", encoding="utf-8") as fh:
            for name, row in zip(names, rows, strict=True):
                fh.write(json.dumps({"image": name, **row}) + "\n")
        summary["results_file"] = o["results"]
        lines = [f"{k}: {v:.4f}\n" if isinstance(v, float) else f"{k}: {v}\n" for k, v in summary.items()]
        emit(self.stdout, summary, o["json"], lines)
