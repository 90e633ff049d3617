"""Recognizer accuracy and speed: ``python bench/recognizer.py [--limit N] [--threads T] [--beam K | --tta]
[--weights FOLDER]``.

CROHME 2016 *test* inks rendered offline (64 px high, 2 px pen): exact match, within 1/2
edits; im2markup held-out fifth (cropped to the ink): BLEU-4. Prints figures + machine facts.
"""
from __future__ import annotations

import argparse
import json
import time

import _machine  # noqa: F401 - puts the project on sys.path
import numpy as np
import torch

from pipeline.ml import data
from pipeline.ml.evaluate import recognizer_metrics
from pipeline.ml.inference import TTA_VIEWS, FormulaReader


def run(reader, samples):
    t0 = time.perf_counter()
    readings = reader.recognize([np.asarray(s[0]) for s in samples])
    secs = time.perf_counter() - t0
    summary, _ = recognizer_metrics([(r.tokens, s[1]) for r, s in zip(readings, samples, strict=True)])
    summary["crops_per_second"] = len(samples) / secs if secs else 0.0
    return summary


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--beam", type=int, default=1, help="beam width (1: greedy)")
    p.add_argument("--tta", action="store_true", help="read each crop with its test-time views too (greedy)")
    p.add_argument("--weights", help="recognizer folder (config.json + weights.pt); default: the committed one")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    reader = FormulaReader(recognizer_dir=args.weights, device="cpu", batch_size=32, beam_width=args.beam, views=TTA_VIEWS if args.tta else None)
    shared = _machine.shared_data()
    crohme = data.crohme_samples(shared, "test")
    im2m = [(img, toks) for img, toks, _ in data.im2markup_samples(shared, heldout=True)]
    if args.limit:
        crohme, im2m = crohme[: args.limit], im2m[: args.limit]
    out = {"crohme_2016_test": run(reader, crohme), "im2markup_heldout": run(reader, im2m)}
    print(json.dumps(out, indent=1))
    print(_machine.facts())


if __name__ == "__main__":
    main()
