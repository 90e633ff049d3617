"""Detector accuracy and speed: ``python bench/detector.py [--photos N] [--pages N]``.

Generated photos from held-out seeds (F1 at IoU 0.5, mean IoU of the matched quads, mean IoU of
their pixel masks against each true formula's filled quad) and im2markup held-out pages (recall
of the ink box at IoU 0.5). Prints figures + machine facts.
"""
from __future__ import annotations

import argparse
import json
import time

import _machine  # noqa: F401
import numpy as np
import torch

from pipeline.ml.data import im2markup_rows
from pipeline.ml.detector import quad_mask
from pipeline.ml.evaluate import box_quad, detector_metrics, match_quads
from pipeline.ml.imageio import ink_box, read_rgb
from pipeline.ml.inference import FormulaReader
from pipeline.ml.train_detector import EVAL_SEED_BASE, CropPool, make_photo


def mean_mask_iou(reader, photos) -> float:
    """Mean IoU of each matched region's pixel mask with its true formula's filled quad."""
    ious = []
    for i in range(0, len(photos), 16):
        chunk = photos[i:i + 16]
        for regions, ph in zip(reader.detect([ph.image for ph in chunk], with_masks=True), chunk, strict=True):
            for pi, ti, _ in match_quads([r.quad for r in regions], ph.quads):
                pred, truth = regions[pi].mask, quad_mask(ph.quads[ti], ph.image.shape[:2])
                ious.append((pred & truth).sum() / max((pred | truth).sum(), 1))
    return float(np.mean(ious)) if ious else 0.0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--photos", type=int, default=200)
    p.add_argument("--pages", type=int, default=0, help="0: all held-out pages, -1: none")
    p.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE,
                   help="first photo seed; 20000000 is the validation range used to tune post-processing "
                        "(training uses seeds below 10000000, the reported test figures 10000000+)")
    p.add_argument("--detector", help="detector weights folder (default: the committed ones)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-refiner", action="store_true", help="the detector's quads without the corner refiner")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    reader = FormulaReader(detector_dir=args.detector, device="cpu", batch_size=16,
                           refine_corners=not args.no_refiner)
    pool = CropPool(heldout=True)
    photos = [make_photo(pool, args.seed_base + i) for i in range(args.photos)]
    t0 = time.perf_counter()
    dets = reader.detect([ph.image for ph in photos], with_masks=False)
    secs = time.perf_counter() - t0
    gen, _ = detector_metrics([([r.quad for r in d], ph.quads) for d, ph in zip(dets, photos, strict=True)])
    gen["images_per_second"] = len(photos) / secs
    gen["mean_mask_iou"] = mean_mask_iou(reader, photos)
    rows = im2markup_rows(_machine.shared_data(), heldout=True)
    if args.pages:
        rows = rows[: max(args.pages, 0)]
    samples = []
    for name, _ in rows:
        rgb = read_rgb(_machine.shared_data() / "im2markup" / "pages" / name)
        box = ink_box(rgb)
        if box is None:
            continue
        (regions,) = reader.detect([rgb], with_masks=False)
        samples.append(([r.quad for r in regions], [box_quad(*box)]))
    pages, _ = detector_metrics(samples)
    print(json.dumps({"seed_base": args.seed_base, "corner_refiner": reader.refiner is not None, "generated_photos_heldout_seeds": gen,
                      "im2markup_heldout_pages": pages}, indent=1))
    print(_machine.facts())


if __name__ == "__main__":
    main()
