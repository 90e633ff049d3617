"""Which way up: ``python bench/orientation.py [--photos N] [--seed-base S]``.

Generated photos from held-out seeds (formulas at any rotation). For every true formula
matched by a detected region (IoU ≥ 0.5), is the region's first corner the formula's top-left?
Measured with the detector's own corner order and with the recognizer choosing between the
crop and its 180° turn (``FormulaReader(orient=True)``, the default for pre-labeling).
"""
from __future__ import annotations

import argparse
import json

import _machine  # noqa: F401
import numpy as np
import torch

from pipeline.ml.evaluate import quad_iou
from pipeline.ml.inference import FormulaReader
from pipeline.ml.train_detector import EVAL_SEED_BASE, CropPool, make_photo


def top_left_first(results, photos) -> list[bool]:
    hits = []
    for result, photo in zip(results, photos, strict=True):
        quads = [np.asarray(r["points"], np.float32) for r in result["regions"]]
        for truth in photo.quads:
            best = max(quads, key=lambda q, t=truth: quad_iou(q, t), default=None)
            if best is not None and quad_iou(best, truth) >= 0.5:
                hits.append(bool(np.linalg.norm(best[0] - truth[0]) < np.linalg.norm(best[0] - truth[2])))
    return hits


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
    for orient in (False, True):
        reader = FormulaReader(device="cpu", orient=orient)
        hits = top_left_first(reader.read([ph.image for ph in photos]), photos)
        out["recognizer_turns" if orient else "detector_order"] = {"matched": len(hits),
                                                                    "top_left_first": sum(hits) / max(len(hits), 1)}
    print(json.dumps(out, indent=1))
    print(_machine.facts())


if __name__ == "__main__":
    main()
