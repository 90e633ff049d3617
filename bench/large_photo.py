"""Annotations on real phone photos: payload size and server cost of 40 brushed masks.

    .venv/bin/python bench/large_photo.py [--regions 40] [--sizes 12mp,48mp,a4]

For each photo size (12 MP 4032x3024, 48 MP 8000x6000, an A4 scan at 300 dpi 2480x3508) it
makes `--regions` masks the way the labeling page makes them (round brush strokes zig-zagging
over a formula's box, some erased again: ragged edges) and, as the worst case, masks that follow
the ink itself (thin strokes, as a thresholding pre-labeler would give), then reports:

- the JSON body of a save (bytes), against DATA_UPLOAD_MAX_MEMORY_SIZE;
- the time and the peak memory (tracemalloc, numpy's arrays included) that `common.rle.validate`
  takes for all the masks, i.e. what one gunicorn worker pays per save, beside the same for a
  full decode and re-encode of each mask (what validate did before it worked on the runs);
- the same for the offline evaluation's truth quads of mask-only regions
  (`pipeline.evaluation.truth_quad`, traced in each mask's bounding box) beside the whole decode
  it did before, and whether the quads are the same bit for bit.

Figures depend on the machine: the header says which one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import numpy as np  # noqa: E402

SIZES = {"12mp": (4032, 3024), "48mp": (8000, 6000), "a4": (2480, 3508)}


def formula_boxes(w: int, h: int, n: int, rng) -> list[tuple[int, int, int, int]]:
    """`n` formula boxes in rows down the page (as on a worksheet), sized to the photo."""
    rows = max(1, (n + 1) // 2)
    boxes = []
    row_h = h * 0.9 / rows
    for k in range(n):
        r, c = divmod(k, 2)
        bw = int(w * rng.uniform(0.2, 0.42))
        bh = int(row_h * rng.uniform(0.45, 0.8))
        x0 = int(w * (0.04 + 0.5 * c) + rng.uniform(0, w * 0.04))
        y0 = int(h * 0.05 + r * row_h)
        boxes.append((x0, y0, min(w - 1, x0 + bw), min(h - 1, y0 + bh)))
    return boxes


def brushed(box, rng, radius: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A mask painted over `box` with a round brush of `radius`: zig-zag passes with a shaky
    hand, then a few eraser dabs (the ragged edges that make RLE long)."""
    import cv2

    x0, y0, x1, y1 = box
    pad = radius + 2
    m = np.zeros((y1 - y0 + 2 * pad, x1 - x0 + 2 * pad), np.uint8)
    passes = max(1, int((y1 - y0) / (1.6 * radius)))
    for p in range(passes):
        yy = pad + (p + 0.5) * (y1 - y0) / passes
        xs = np.arange(pad, pad + x1 - x0, max(2, radius // 2))
        ys = yy + np.cumsum(rng.normal(0, radius * 0.15, len(xs)))
        pts = np.stack([xs, np.clip(ys, pad, pad + y1 - y0)], 1).astype(np.int32)
        cv2.polylines(m, [pts], False, 1, thickness=2 * radius, lineType=cv2.LINE_8)
    for _ in range(int(rng.integers(5, 15))):  # eraser dabs along the edges
        cx = int(rng.uniform(pad, pad + x1 - x0))
        cy = int(pad + rng.choice([0, y1 - y0]) + rng.normal(0, radius))
        cv2.circle(m, (cx, cy), int(radius * rng.uniform(0.5, 1.2)), 0, -1)
    return m, (x0 - pad, y0 - pad)


def inked(box, rng) -> tuple[np.ndarray, tuple[int, int]]:
    """The worst case: a mask of the ink only (strokes 3-6 px), as a pre-labeler thresholds it."""
    import cv2

    x0, y0, x1, y1 = box
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    glyph = max(12, (y1 - y0) // 3)
    for gx in range(0, x1 - x0 - glyph, int(glyph * 0.7)):
        for _ in range(3):
            pts = np.stack([gx + rng.uniform(0, glyph, 4), rng.uniform(glyph * 0.5, (y1 - y0) - glyph * 0.5, 4)], 1)
            cv2.polylines(m, [pts.astype(np.int32)], False, 1, thickness=int(rng.integers(3, 7)))
    return m, (x0, y0)


def rle_of(part: np.ndarray, at: tuple[int, int], w: int, h: int) -> dict:
    from common import rle

    full = np.zeros((h, w), np.uint8)
    ox, oy = at
    sx0, sy0 = max(0, -ox), max(0, -oy)
    ex, ey = min(part.shape[1], w - ox), min(part.shape[0], h - oy)
    full[oy + sy0:oy + ey, ox + sx0:ox + ex] = part[sy0:ey, sx0:ex]
    return rle.encode(full)


def make_masks(w: int, h: int, n: int, kind: str, seed: int = 7) -> list[dict]:
    rng = np.random.default_rng(seed)
    radius = max(6, round(12 * w / 4032))  # a 24 px brush at 100 % zoom on a 12 MP photo
    out = []
    for box in formula_boxes(w, h, n, rng):
        part, at = brushed(box, rng, radius) if kind == "brush" else inked(box, rng)
        out.append(rle_of(part, at, w, h))
    return out


def timed(fn, masks) -> tuple[float, float]:
    """Seconds and peak MiB (tracemalloc: numpy's arrays included) of fn(mask) for every mask."""
    tracemalloc.start()
    t0 = time.perf_counter()
    for m in masks:
        fn(m)
    secs = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return secs, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regions", type=int, default=40)
    ap.add_argument("--sizes", default="12mp,48mp,a4")
    args = ap.parse_args()
    import django

    django.setup()
    from django.conf import settings

    from bench._machine import facts

    print(facts())
    print(f"DATA_UPLOAD_MAX_MEMORY_SIZE = {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes")
    from common import rle

    print(f"{'photo':>16} {'masks':>6} {'body':>12} {'largest':>9} {'validate':>9} {'peak MiB':>8}"
          f" {'decode+encode':>14} {'peak MiB':>8}")
    for name in args.sizes.split(","):
        w, h = SIZES[name]
        for kind in ("brush", "ink"):
            masks = make_masks(w, h, args.regions, kind)
            body = json.dumps({"regions": [{"kind": "mask", "mask": m, "latex": "x^{2}+1", "illegible": False,
                                            "cut_off": False, "categories": []} for m in masks],
                               "time_spent_seconds": 60, "submit": False})
            secs, peak = timed(lambda m, w=w, h=h: rle.validate(m, width=w, height=h), masks)
            full_secs, full_peak = timed(lambda m: rle.encode(rle.decode(m)), masks)
            largest = max(len(m["counts"]) for m in masks)
            print(f"{name + ' ' + f'{w}x{h}':>16} {kind:>6} {len(body):>12,} {largest:>9,} {secs:>8.2f}s {peak:>8.1f}"
                  f" {full_secs:>13.2f}s {full_peak:>8.0f}")

    # Offline evaluation: a mask-only truth region is scored by the rectangle around its mask
    # (pipeline.evaluation.truth_quad), traced in the mask's bounding box; before, in the whole
    # decoded mask (geometry.mask_quad(rle.decode(m))). Same quads, checked bit for bit.
    from common import geometry
    from pipeline.evaluation import truth_quad

    print()
    print("evaluation: truth quads of the masks (pipeline.evaluation.truth_quad), box window vs whole decode")
    print(f"{'photo':>16} {'masks':>6} {'window':>9} {'peak MiB':>8} {'whole decode':>13} {'peak MiB':>8} {'same':>5}")
    for name in args.sizes.split(","):
        w, h = SIZES[name]
        for kind in ("brush", "ink"):
            masks = make_masks(w, h, args.regions, kind)
            quads, before = [], []
            secs, peak = timed(lambda m, out=quads: out.append(truth_quad({"mask_rle": m})), masks)
            full_secs, full_peak = timed(lambda m, out=before: out.append(geometry.mask_quad(rle.decode(m))), masks)
            same = all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(quads, before, strict=True))
            print(f"{name + ' ' + f'{w}x{h}':>16} {kind:>6} {secs:>8.2f}s {peak:>8.1f} {full_secs:>12.2f}s"
                  f" {full_peak:>8.0f} {'yes' if same else 'NO':>5}")


if __name__ == "__main__":
    main()
