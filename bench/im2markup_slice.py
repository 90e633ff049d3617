"""Does the im2markup validation slice stand for the test fifth? ``python bench/im2markup_slice.py
[--threads T] WEIGHTS...``

For each recognizer (an exported weights folder, or a training checkpoint ``*.pt``), greedy
BLEU-4 on the validation eighth of the im2markup *training* pages (:func:`data.im2markup_validation`,
what ``train_recognizer --im2markup-val`` chooses checkpoints on) and on the held-out fifth (what
the results table reports), read as training validates; then their Pearson correlation over the
recognizers given that never trained on the slice (``config.json``: ``im2markup_validation_held_out``).
"""
from __future__ import annotations

import argparse
import json
import sys

import _machine  # first: puts the project on sys.path
import numpy as np
import torch

from pipeline.ml import data
from pipeline.ml.train_recognizer import val_bleu


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="weights folders or training checkpoints (.pt)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shared = _machine.shared_data()
    if not (shared / "im2markup" / "train.tsv").exists():
        sys.exit(f"skipped: the im2markup pages are not in {shared} (see the project README, 'Real data')")
    pages = data.im2markup_samples(shared, heldout=False)
    slice_ = [(img, toks) for img, toks, name in pages if data.im2markup_validation(name)]
    fifth = [(img, toks) for img, toks, _ in data.im2markup_samples(shared, heldout=True)]
    rows = []
    for given, cfg, model in _machine.candidate_recognizers(args.weights):
        row = {"weights": given, "trained_steps": cfg.get("trained_steps"),
               "held_out_slice": cfg.get("im2markup_validation_held_out", False),
               "slice_bleu4": round(val_bleu(model, slice_, "cpu"), 4),
               "heldout_fifth_bleu4": round(val_bleu(model, fifth, "cpu"), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    clean = [r for r in rows if r["held_out_slice"]]  # weights that read the slice in training say nothing here
    if len(clean) > 2:
        a = np.array([r["slice_bleu4"] for r in clean])
        b = np.array([r["heldout_fifth_bleu4"] for r in clean])
        print(json.dumps({"recognizers_that_held_out_the_slice": len(clean), "slice_pages": len(slice_),
                          "fifth_pages": len(fifth),
                          "pearson": round(float(np.corrcoef(a, b)[0, 1]), 4),
                          "mean_slice_minus_fifth": round(float((a - b).mean()), 4)}))
    print(_machine.facts())


if __name__ == "__main__":
    main()
