"""Shared options of the model commands."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def add_model_options(parser) -> None:
    parser.add_argument("--detector", help="detector weights folder (default: pipeline/weights/detector)")
    parser.add_argument("--recognizer", help="recognizer weights folder (default: pipeline/weights/recognizer)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--beam", type=int, default=1, help="recognizer beam width (1: greedy)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"],
                        help="recognizer encoder precision (default: $MATHSET_ENCODER_PRECISION or auto: "
                             "bfloat16 on a CPU with AMX, float32 elsewhere)")
    parser.add_argument("--tta", action="store_true",
                        help="read each crop with its test-time views too (pipeline.ml.inference.TTA_VIEWS, greedy): "
                             "about 3x the recognizer's time (default: $MATHSET_RECOGNIZER_VIEWS)")


def make_reader(options):
    from django.core.management.base import CommandError

    from pipeline.ml.inference import TTA_VIEWS, FormulaReader

    if options.get("threads"):
        torch.set_num_threads(options["threads"])
    try:
        return FormulaReader(options.get("detector"), options.get("recognizer"), device=options.get("device"),
                             batch_size=options.get("batch_size", 16), beam_width=options.get("beam") or 1,
                             precision=options.get("precision"), views=TTA_VIEWS if options.get("tta") else None)
    except ValueError as exc:  # a bad --beam/--tta pair or MATHSET_* setting: say which, without a traceback
        raise CommandError(str(exc)) from exc


def emit(stdout, payload, as_json: bool, text_lines) -> None:
    if as_json:
        stdout.write(json.dumps(payload, indent=1))
    else:
        for line in text_lines:
            stdout.write(line)
    sys.stdout.flush()


def check_tsv(tsv: str, images: str) -> None:
    """Refuse a TSV or an image folder that is not there before the models load, naming it."""
    from django.core.management.base import CommandError

    if not Path(tsv).is_file():
        raise CommandError(f"--tsv {tsv}: no such file")
    if not Path(images).is_dir():
        raise CommandError(f"--images {images}: no such folder")


def tsv_images(tsv: Path, images: Path, skipped: list[str], stderr, *, need_latex: bool = True):
    """(name, LaTeX source, RGB image) of each line ``file<TAB>LaTeX`` of ``tsv``, image from ``images``.

    A line without its LaTeX (where ``need_latex``), or whose image is missing or cannot be decoded,
    is skipped: said on ``stderr`` and appended to ``skipped``, so that one bad line of a long file
    neither ends the run with a traceback nor passes unnoticed in its figures.
    """
    from django.core.management.base import CommandError

    from pipeline.ml.imageio import read_rgb

    try:
        with open(tsv, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                name, tab, src = line.rstrip("\r\n").partition("\t")
                if need_latex and not tab:
                    reason = "no tab between the file name and its LaTeX"
                else:
                    try:
                        yield name, src, read_rgb(images / name)
                        continue
                    except (OSError, ValueError) as exc:  # missing, unreadable or corrupt
                        reason = str(exc)
                skipped.append(f"{tsv}:{number}: {name[:80]}: {reason}")
                stderr.write(f"skipped {skipped[-1]}")
    except UnicodeDecodeError as exc:
        raise CommandError(f"--tsv {tsv} is not UTF-8 text: {exc}") from None


def crohme_samples(tar: Path, limit: int = 0):
    """(name, RGB crop, truth tokens) of an InkML tarball's inks with a truth, rendered as evaluation renders them."""
    from common.latex import normalize_tokens
    from pipeline.ml.ink import iter_inks, render_ink

    for name, ink in iter_inks(tar):
        truth = normalize_tokens(ink.truth)
        if not truth:
            continue
        gray = render_ink(ink)  # the fixed evaluation rendering: 64 px high, 2 px pen
        yield name, np.repeat(gray[..., None], 3, axis=2), truth
        limit -= 1
        if limit == 0:
            return
