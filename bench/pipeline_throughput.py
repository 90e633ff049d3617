"""End-to-end photos/s: ``python bench/pipeline_throughput.py [--photos N] [--threads T]``.

Generated photos (held-out seeds, 1-3 formulas each) through detect → rectify → recognise.
Reports per-photo latency p50/p95 (one photo at a time) and batched throughput in photos/s.
"""
from __future__ import annotations

import argparse
import json
import time

import _machine  # noqa: F401
import numpy as np
import torch

from pipeline.ml.inference import FormulaReader
from pipeline.ml.train_detector import EVAL_SEED_BASE, CropPool, make_photo


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--photos", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--detector", help="detector weights folder (default: the committed ones)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    reader = FormulaReader(detector_dir=args.detector, device="cpu", batch_size=args.batch)
    pool = CropPool(heldout=True)
    photos = [make_photo(pool, EVAL_SEED_BASE + 50_000 + i).image for i in range(args.photos)]
    reader.read(photos[:2])  # warm-up
    lat = []
    for img in photos:
        t0 = time.perf_counter()
        reader.read([img])
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    results = []
    for i in range(0, len(photos), args.batch):
        results += reader.read(photos[i:i + args.batch])
    batched = time.perf_counter() - t0
    regions = sum(len(r["regions"]) for r in results)
    print(json.dumps({"photos": len(photos), "regions_found": regions,
                      "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95)),
                      "sequential_photos_per_second": len(photos) / sum(lat),
                      "batched_photos_per_second": len(photos) / batched}, indent=1))
    print(_machine.facts())


if __name__ == "__main__":
    main()
