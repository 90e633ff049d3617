"""How well the recognizer's confidence tells exact readings from wrong ones:
``python bench/confidence.py [--photos N] [--threads T] [--weights FOLDER] [--tta]``.

For each set, three confidences of the same readings: the geometric mean of the token
probabilities (the platform's confidence until the calibration round), the sequence probability
(their product: what a recognizer without a fit gets) and the calibrated P(exact) the platform
now gives (``config.json``'s fit, :mod:`pipeline.ml.calibration`). Each is scored by AUROC,
expected calibration error (10 bins), Brier score and the share of the wrong readings among the
least confident 30% (what a reviewer checking the queue's first 30% would catch).

Sets: the CROHME 2013 inks (the fit's own set: in-sample), the CROHME 2016 test inks and the
held-out im2markup fifth (never used for the fit), and ``--photos`` generated photos from held-out
seeds as ``bench/prelabel.py`` makes them, read as the pre-labeling worker reads them: each found
formula's reading, and each photo's queue confidence (its least confident region, detector score
included) against whether the whole photo was pre-labeled right (every formula found and read
exactly, nothing extra found).
"""
from __future__ import annotations

import argparse
import json

import _machine  # noqa: F401 - puts the project on sys.path
import numpy as np
import torch
from prelabel import RecordingPool

from common.latex import normalize_tokens
from pipeline.ml import calibration, data
from pipeline.ml.evaluate import match_quads
from pipeline.ml.inference import TTA_VIEWS, FormulaReader
from pipeline.ml.ink import iter_inks, render_ink
from pipeline.ml.recognizer import sequence_confidence
from pipeline.ml.train_detector import EVAL_SEED_BASE, make_photo


def rounded(metrics: dict) -> dict:
    return {k: None if v is None else round(v, 4) for k, v in metrics.items()}


def scored(token_confs, given, exact) -> dict:
    """The three confidences' metrics for one set's readings."""
    rules = {"geometric_mean": [sequence_confidence(c) for c in token_confs],
             # what a way of reading without a fit gets
             "sequence_probability": [calibration.confidence(c, None, calibration.mode_key()) for c in token_confs],
             "calibrated": given}
    return {name: rounded(calibration.confidence_metrics(conf, exact)) for name, conf in rules.items()}


def crops(reader, samples) -> dict:
    readings = reader.recognize([np.asarray(img) for img, _ in samples])
    exact = [r.tokens == truth for r, (_, truth) in zip(readings, samples, strict=True)]
    return scored([r.token_confidences for r in readings], [r.confidence for r in readings], exact)


def photos(reader, n: int) -> dict:
    pool = RecordingPool()
    pictures, truths = [], []
    for i in range(n):
        pool.drawn = []
        photo = make_photo(pool, EVAL_SEED_BASE + i)
        pictures.append(photo)
        truths.append([pool.tokens[pool.drawn[j][0]][pool.drawn[j][1]] for j in photo.placed])
    results = reader.read([ph.image for ph in pictures])
    region_confs, region_given, region_exact = [], [], []
    photo_given, photo_before, photo_right = [], [], []
    for result, photo, truth in zip(results, pictures, truths, strict=True):
        regions = result["regions"]
        quads = [np.asarray(r["points"], np.float32) for r in regions]
        matched = {r: t for r, t, _ in match_quads(quads, photo.quads)}
        right = len(matched) == len(truth) == len(regions)
        for k, region in enumerate(regions):
            exact = k in matched and region["latex"].split() == truth[matched[k]]
            right = right and exact
            if k in matched:
                region_confs.append(region["token_confidences"])
                region_given.append(region["latex_confidence"])
                region_exact.append(exact)
        photo_given.append(min((min(r["score"], r["latex_confidence"]) for r in regions), default=0.0))
        photo_before.append(min((min(r["score"], sequence_confidence(r["token_confidences"])) for r in regions),
                                default=0.0))
        photo_right.append(right)
    queue = {name: rounded(calibration.confidence_metrics(given, photo_right))
             for name, given in (("geometric_mean", photo_before), ("calibrated", photo_given))}
    return {"found_regions": scored(region_confs, region_given, region_exact), "photo_queue_order": queue}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--photos", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", help="recognizer folder (default: the committed one)")
    p.add_argument("--tta", action="store_true", help="read with the test-time views (their own fit)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    reader = FormulaReader(recognizer_dir=args.weights, device="cpu", batch_size=32,
                           views=TTA_VIEWS if args.tta else None)
    shared = _machine.shared_data()
    val = [(render_ink(ink), normalize_tokens(ink.truth)) for _, ink in iter_inks(shared / "crohme" / "test-2013.tar.xz")]
    mode = calibration.mode_key(reader.beam_width, reader.views)
    fit = reader.recognizer.calibration.get(mode)
    out = {
        "way_of_reading": mode,
        "fit": {"a": fit.a, "b": fit.b} if fit else None,
        "crohme_2013_validation_in_sample": crops(reader, [s for s in val if s[1]]),
        "crohme_2016_test": crops(reader, data.crohme_samples(shared, "test")),
        "im2markup_heldout": crops(reader, [(img, toks) for img, toks, _ in data.im2markup_samples(shared, heldout=True)]),
    }
    if args.photos:
        out["generated_photos"] = {"photos": args.photos, **photos(reader, args.photos)}
    print(json.dumps(out, indent=1))
    print(_machine.facts())


if __name__ == "__main__":
    main()
