"""Pre-labeling end to end: ``python bench/prelabel.py [--photos N] [--seed-base S] [--threads T]``.

Generated photos from held-out seeds and held-out crops only (CROHME 2016 test inks, the
held-out im2markup fifth, mathtext formulas of an unseen seed), 1-3 formulas each at any
rotation and perspective, as `bench/detector.py` makes them. The committed models run as the
pre-labeling worker runs them (``FormulaReader.read``: detect, rectify, put each formula's
top-left corner first, recognise; ``--orient recognizer`` or ``none`` to compare how that is done). For every true formula: was it found (a region with IoU
≥ 0.5), and how close is that region's LaTeX to the truth (exact match, within 1 and 2 token
edits, token edit distance, BLEU-4, after normalisation; a formula not found counts as an empty
reading), and are the found region's corners in the formula's own order (no roll of them lies
nearer the truth). Figures overall and by kind of crop; seconds per photo.
"""
from __future__ import annotations

import argparse
import json
import time

import _machine  # noqa: F401
import numpy as np
import torch

from pipeline.ml.evaluate import match_quads, recognizer_metrics
from pipeline.ml.inference import FormulaReader
from pipeline.ml.train_detector import EVAL_SEED_BASE, CropPool, make_photo
from pipeline.ml.train_orienter import true_roll


class RecordingPool(CropPool):
    """The held-out crops, remembering which ones each photo drew."""

    def __init__(self):
        super().__init__(heldout=True)
        self.drawn: list[tuple[str, int]] = []

    def pick(self, rng, kind=None):
        choice = super().pick(rng, kind)
        self.drawn.append(choice)
        return choice


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--photos", type=int, default=200)
    p.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE)
    p.add_argument("--detector", help="detector weights folder (default: the committed ones)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--crop-margin", type=float, default=None,
                   help="paper added around each region before it is read, as a fraction of its height "
                        "(default: the detector's config.json)")
    p.add_argument("--no-refiner", action="store_true", help="the detector's quads without the corner refiner")
    p.add_argument("--orient", choices=("orienter", "recognizer", "none"), default="orienter",
                   help="which way up: the orienter beside the detector (default, as workers read), the "
                        "recognizer reading every crop both ways up, or the detector's corner order")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pool = RecordingPool()
    photos, truths = [], []
    for i in range(args.photos):
        pool.drawn = []
        photo = make_photo(pool, args.seed_base + i)
        photos.append(photo)
        truths.append([(pool.drawn[j][0], pool.tokens[pool.drawn[j][0]][pool.drawn[j][1]]) for j in photo.placed])
    reader = FormulaReader(detector_dir=args.detector, device="cpu", crop_margin=args.crop_margin,
                           refine_corners=not args.no_refiner, orient=args.orient != "none")
    if args.orient == "recognizer":
        reader.orienter = None
    t0 = time.perf_counter()
    results = reader.read([ph.image for ph in photos])
    seconds = time.perf_counter() - t0
    pairs: dict[str, list] = {"all": []}
    found = {"all": 0}
    in_order: dict[str, int] = {}
    for result, photo, truth in zip(results, photos, truths, strict=True):
        quads = [np.asarray(r["points"], np.float32) for r in result["regions"]]
        matched = {t: r for r, t, _ in match_quads(quads, photo.quads)}
        for t, (kind, tokens) in enumerate(truth):
            reading = result["regions"][matched[t]]["latex"] if t in matched else ""
            ordered = t in matched and true_roll(quads[matched[t]], photo.quads[t]) == 0
            for key in ("all", kind):
                pairs.setdefault(key, []).append((reading, tokens))
                found[key] = found.get(key, 0) + (t in matched)
                in_order[key] = in_order.get(key, 0) + ordered
    out = {"photos": len(photos), "seconds_per_photo": round(seconds / len(photos), 4),
           "crop_margin": reader.crop_margin, "corner_refiner": reader.refiner is not None, "orient": args.orient}
    for key, items in pairs.items():
        summary, _ = recognizer_metrics(items)
        out[key] = {"formulas": len(items), "found": round(found[key] / max(len(items), 1), 4),
                    "corners_in_order": round(in_order[key] / max(found[key], 1), 4),
                    **{k: round(v, 4) for k, v in summary.items() if k != "samples"}}
    print(json.dumps(out, indent=1))
    print(_machine.facts())


if __name__ == "__main__":
    main()
