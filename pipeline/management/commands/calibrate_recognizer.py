"""``python manage.py calibrate_recognizer [--recognizer FOLDER] [--beam K | --tta] [--dry-run]``.

Fits the recognizer's confidence to the probability that a reading is exactly right, for one
way of reading (greedy by default; ``--beam K`` or ``--tta`` for those), and writes the fit into
the folder's ``config.json`` under ``"calibration"`` (:mod:`pipeline.ml.calibration`). Prints how
well the confidences told exact readings from wrong ones before and after.

Fitted on the CROHME 2013 inks (the validation set) by default; ``--typeset`` adds the same truths
typeset in print (at one log-probability a printed reading is right more often than a handwritten
one, and one fit over both serves neither well: measured in ``pipeline/RESULTS.md``, "Confidence
round"); ``--crohme`` for another InkML tarball, or ``--export ZIP [--split train|validation]``: an im2latex export of a snapshot (the
rectified crops of its accepted regions with their LaTeX), so the confidence is fitted on the
platform's own photos, where the QA page's pre-label section shows whether it holds. A snapshot's
test split is refused: it is for measuring, not fitting.
"""
from __future__ import annotations

import zipfile
from datetime import date
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pipeline.ml import calibration

from ._common import add_model_options, crohme_samples, emit, make_reader


class Command(BaseCommand):
    help = "Fit the recognizer's confidence to P(exact) on the validation inks and store it in config.json."

    def add_arguments(self, parser):
        parser.add_argument("--crohme", help="InkML tarball to fit on (default: the CROHME 2013 inks in "
                                             "MATHSET_SHARED_DATA, the validation set)")
        parser.add_argument("--typeset", action="store_true",
                            help="fit on the inks and their truths typeset in print (mathtext)")
        parser.add_argument("--export", help="an im2latex export zip (a snapshot's crops and LaTeX) to fit on instead")
        parser.add_argument("--split", default="validation", choices=("train", "validation"),
                            help="the export's split to fit on (default validation; never test)")
        parser.add_argument("--limit", type=int, default=0, help="fit on the first N samples only (0: all)")
        parser.add_argument("--dry-run", action="store_true", help="print the fit, leave config.json as it is")
        parser.add_argument("--json", action="store_true", help="print JSON")
        add_model_options(parser)

    def handle(self, *args, **o):
        from pipeline.ml.inference import WEIGHTS_DIR, calibrate

        folder = Path(o["recognizer"] or WEIGHTS_DIR / "recognizer")
        if not (folder / "config.json").is_file():
            raise CommandError(f"--recognizer {folder}: no config.json there")
        if o["limit"] < 0:
            raise CommandError("--limit must be 0 (all) or more")
        if o["export"] and o["crohme"]:
            raise CommandError("give --crohme TARBALL or --export ZIP, not both")
        if o["split"] != "validation" and not o["export"]:
            raise CommandError("--split chooses a split of an --export ZIP; give the export too")
        samples, fitted_on = (_export_samples(Path(o["export"]), o["split"], o["limit"]) if o["export"]
                              else _tarball_samples(o["crohme"], o["limit"], typeset=o["typeset"]))
        o["recognizer"] = str(folder)
        reader = make_reader(o)
        mode = calibration.mode_key(reader.beam_width, reader.views)
        try:
            fit, readings = calibrate(reader.recognizer, samples, device=reader.device, batch_size=o["batch_size"],
                                      beam_width=reader.beam_width, views=reader.views)
        except ValueError as exc:
            raise CommandError(f"cannot calibrate on {fitted_on}: {exc}") from exc
        exact = [r.tokens == truth for r, (_, truth) in zip(readings, samples, strict=True)]
        log_probs = [calibration.sequence_log_prob(r.token_confidences) for r in readings]
        out = {
            "recognizer": str(folder), "mode": mode, "fitted_on": fitted_on, "samples": len(samples),
            "a": fit.a, "b": fit.b,
            # the confidences as the folder gave them before, and with the new fit (on the same inks)
            "before": calibration.confidence_metrics([r.confidence for r in readings], exact),
            "after": calibration.confidence_metrics([fit(lp) for lp in log_probs], exact),
            "written": not o["dry_run"],
        }
        if not o["dry_run"]:
            calibration.store(folder, mode, fit, fitted_on=fitted_on, samples=len(samples),
                              exact=round(float(np.mean(exact)), 4), fitted=date.today().isoformat())
        lines = [f"{mode}: P(exact) = sigmoid({fit.a:.4f} * log-probability + {fit.b:.4f}) on {len(samples)} "
                 f"samples of {fitted_on}\n"]
        for when in ("before", "after"):
            m = out[when]
            lines.append(f"  {when}: AUROC {m['auroc']:.3f}, ECE {m['ece']:.3f}, Brier {m['brier']:.3f}, "
                         f"mean confidence {m['mean_confidence']:.3f} (exact {m['exact']:.3f})\n")
        lines.append(f"written to {folder / 'config.json'}\n" if out["written"] else "dry run: nothing written\n")
        emit(self.stdout, out, o["json"], lines)


def _tarball_samples(path: str | None, limit: int, *, typeset: bool) -> tuple[list, str]:
    from pipeline.ml.synth import typeset_samples

    tar = Path(path or settings.MATHSET_SHARED_DATA / "crohme" / "test-2013.tar.xz")
    if not tar.is_file():
        raise CommandError(f"--crohme {tar}: no such file (the CROHME 2013 inks are in ../shared/data)")
    samples = [(rgb, truth) for _name, rgb, truth in crohme_samples(tar, limit)]
    if not samples:
        raise CommandError(f"--crohme {tar}: no ink with a truth in it")
    if not typeset:
        return samples, tar.name
    return samples + typeset_samples([truth for _, truth in samples]), f"{tar.name} + its truths typeset"


def _export_samples(path: Path, split: str, limit: int) -> tuple[list, str]:
    """(RGB crop, truth tokens) of an im2latex export's split."""
    from common.latex import normalize_tokens
    from curation.reader import ExportDataset

    if not path.is_file():
        raise CommandError(f"--export {path}: no such file")
    try:
        crops = ExportDataset(path, mode="crops", split=split)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:  # not a zip, or a COCO/JSONL export: say so
        raise CommandError(f"--export {path}: {exc}") from exc
    samples = []
    for k in range(len(crops)):
        crop, latex = crops[k]
        truth = normalize_tokens(latex)
        if truth:
            samples.append((crop.permute(1, 2, 0).numpy(), truth))
        if limit and len(samples) >= limit:
            break
    if not samples:
        raise CommandError(f"--export {path}: no crop with LaTeX in its {split} split")
    return samples, f"{path.name} ({split})"
