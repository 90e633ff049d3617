"""Which way up: ``python bench/orientation.py [--photos N] [--seed-base S]``.

Generated photos from held-out seeds (formulas at any rotation). For every true formula
matched by a detected region (IoU ≥ 0.5), is the region's first corner the formula's top-left?
Measured with the detector's own corner order, with the recognizer choosing between the crop
and its 180° turn (the reader's choice where a detector folder has no orienter), and with the
orienter rolling the quad by 0-3 corners (``FormulaReader(orient=True)`` with the committed
weights, the default for pre-labeling). Each mode's seconds for reading all photos come with it.
"""
from __future__ import annotations

import argparse
import json
import time

import _machine  # noqa: F401
import numpy as np
import torch

from pipeline.ml.evaluate import quad_iou
from pipeline.ml.inference import FormulaReader
from pipeline.ml.train_detector import EVAL_SEED_BASE, CropPool, make_photo
from pipeline.ml.train_orienter import true_roll


def top_left_first(results, photos) -> tuple[list[bool], list[bool]]:
    """Per matched formula: is the region's first corner nearer the true top-left than the true
    bottom-right, and are all four corners in the true order (no roll brings them nearer)?"""
    hits, in_order = [], []
    for result, photo in zip(results, photos, strict=True):
        quads = [np.asarray(r["points"], np.float32) for r in result["regions"]]
        for truth in photo.quads:
            best = max(quads, key=lambda q, t=truth: quad_iou(q, t), default=None)
            if best is not None and quad_iou(best, truth) >= 0.5:
                hits.append(bool(np.linalg.norm(best[0] - truth[0]) < np.linalg.norm(best[0] - truth[2])))
                in_order.append(true_roll(best, truth) == 0)
    return hits, in_order


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--photos", type=int, default=200)
    p.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pool = CropPool(heldout=True)
    photos = [make_photo(pool, args.seed_base + i) for i in range(args.photos)]
    out = {}
    for mode in ("detector_order", "recognizer_turns", "orienter"):
        reader = FormulaReader(device="cpu", orient=mode != "detector_order")
        if mode == "recognizer_turns":
            reader.orienter = None
        elif mode == "orienter" and reader.orienter is None:
            continue  # a detector folder without one
        reader.read([ph.image for ph in photos[:4]])  # warm-up
        t0 = time.perf_counter()
        results = reader.read([ph.image for ph in photos])
        seconds = time.perf_counter() - t0
        hits, in_order = top_left_first(results, photos)
        out[mode] = {"matched": len(hits), "top_left_first": sum(hits) / max(len(hits), 1),
                     "corners_in_order": sum(in_order) / max(len(hits), 1), "seconds": round(seconds, 2)}
    print(json.dumps(out, indent=1))
    print(_machine.facts())


if __name__ == "__main__":
    main()
