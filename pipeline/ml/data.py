"""Training/evaluation corpora for the recognizer, built once and cached under ``var/ml-cache``.

Splits are fixed, never random per run:
  * CROHME: the 2016 *training* tarball trains, the 2016 *test* tarball evaluates;
  * im2markup pages: a page is held out for evaluation when md5(file name) % 5 == 0 (a fixed
    fifth, independent of file order); the rest train. Of those training pages, the ones with
    (md5 // 5) % 8 == 0 (about an eighth) form a *validation* slice that a training run may keep
    out of its data to choose checkpoints on printed formulas (:func:`im2markup_validation`).
    Pages whose truth has no tokens (the TSV lost the newline that ended a ``%`` comment) are
    skipped, and counted.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

from common.latex import DELIMITER_PREFIXES, normalize_tokens

from . import ink as inkml
from . import synth

CACHE = Path(__file__).resolve().parents[2] / "var" / "ml-cache"
MAX_TOKENS = 96


def im2markup_heldout(name: str) -> bool:
    """True for the fixed fifth of im2markup pages kept out of training."""
    return _md5(name) % 5 == 0


def im2markup_validation(name: str) -> bool:
    """True for the fixed eighth of the im2markup *training* pages a run may validate on.

    Never a held-out page: the test fifth stays untouched by checkpoint selection.
    """
    digest = _md5(name)
    return digest % 5 != 0 and (digest // 5) % 8 == 0


# every run up to the twenty-second session's read at most 150 tokens and dropped longer truths, so the
# im2markup training pages longer than this were never trained on whole: they are the validation
# of reading long formulas (``bench/finetune_validation.py --long``), and training keeps them out
LONG_TOKENS = 150


def im2markup_long(toks: list[str]) -> bool:
    """True for an im2markup *training* truth too long for any run to have trained on whole:
    kept out of training as the long-formula validation (:data:`LONG_TOKENS`)."""
    return len(toks) > LONG_TOKENS


def _md5(name: str) -> int:
    return int(hashlib.md5(name.encode()).hexdigest(), 16)


def im2markup_rows(shared: Path, *, heldout: bool) -> list[tuple[str, str]]:
    """(file name, raw LaTeX) of the im2markup split (train or held-out)."""
    rows = []
    with open(shared / "im2markup" / "train.tsv", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            name, src = line.rstrip("\n").split("\t", 1)
            if im2markup_heldout(name) == heldout:
                rows.append((name, src))
    return rows


def _cached(name: str, build):
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    data = build()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.replace(path)
    return data


def crohme_samples(shared: Path, split: str, *, seed: int = 0, height: int = 64) -> list[tuple[np.ndarray, list[str]]]:
    """CROHME 2016 inks ('train' or 'test') rendered offline: (grayscale crop, normalised tokens).

    Test inks use a fixed pen (2 px at 64 px height, no slant or jitter); training inks vary pen
    width, slant and jitter with the given seed.
    """
    tar = shared / "crohme" / ("train-2016.tar.xz" if split == "train" else "test-2016.tar.xz")

    def build():
        rng = np.random.default_rng(seed)
        out = []
        for _name, ink in inkml.iter_inks(tar):
            toks = normalize_tokens(ink.truth)
            if not toks:
                continue
            if split == "train":
                img = inkml.render_ink(ink, height=height, pen=float(rng.uniform(1.2, 3.2)),
                                       slant=float(rng.normal(0, 0.12)), jitter=float(rng.uniform(0, 0.3)), rng=rng)
            else:
                img = inkml.render_ink(ink, height=height)
            out.append((img, toks))
        return out

    samples = _cached(f"crohme-v2-{split}-{seed}-{height}", build)
    if split == "train":
        samples = [(img, handwriting_labels(toks)) for img, toks in samples]
    return samples


def handwriting_labels(toks: list[str]) -> list[str]:
    """The CROHME training truths' label fixes (:func:`unwrap_mathrm`, :func:`plain_delimiters`,
    :func:`crohme_spelling`).

    Each undoes a sub-collection's spelling of something a pen cannot show, or that the test
    truths spell another way: the recognizer cannot learn from the picture which spelling a
    formula got.
    """
    return crohme_spelling(plain_delimiters(unwrap_mathrm(toks)))


# Training spelling -> the test truths' spelling of the same handwritten mark.
_CROHME_SPELLING = {r"\cdot": ".", r"\cdots": r"\ldots", "'": r"\prime"}


def crohme_spelling(toks: list[str]) -> list[str]:
    """A handwritten mark spelt as the CROHME test truths spell it.

    * A multiplication dot: MfrDB writes ``\\cdot`` (108 training formulas), the 2013 and 2016
      test truths write ``.`` (``z . u ( z )``, ``c . \\Delta t``) and never ``\\cdot``; the
      recognizer read ``\\cdot`` into 11 validation formulas that were otherwise right or close.
    * Ellipses: MathBrush and expressmatch write ``\\cdots`` (146 formulas), the test truths
      only ``\\ldots`` (48 formulas), which HAMEX also writes; handwritten dots have no height
      convention the model could see.
    * Primes: MfrDB writes ``f ^ { ' }`` (14 formulas), expressmatch and the test truths
      ``f ^ { \\prime }`` (33 of the 668 validation formulas).
    """
    return [_CROHME_SPELLING.get(t, t) for t in toks]


def plain_delimiters(toks: list[str]) -> list[str]:
    """``\\left ( x \\right )`` → ``( x )``, and an invisible ``\\left .`` or ``\\right .`` goes.

    In the CROHME 2016 training truths MathBrush writes ``\\left (`` in 548 of its 561 formulas
    with parentheses and KAIST in 117 of 177, while HAMEX, MfrDB and expressmatch write plain
    ``(`` (1,963 formulas); the 2013 and 2016 test truths write plain ones in 188 of 208 and 307 of
    340. Sizing is all ``\\left`` adds, and a handwritten parenthesis is as tall as the writer drew
    it: the recognizer read ``\\left`` into 45 validation formulas where the truths have 20.
    Fixed sizes go too (any of ``DELIMITER_PREFIXES``): expressmatch writes ``\\Bigg (`` in 67
    formulas, the test truths never use one.
    """
    out, i = [], 0
    while i < len(toks):
        if toks[i] in DELIMITER_PREFIXES:
            i += 2 if i + 1 < len(toks) and toks[i + 1] == "." else 1
            continue
        out.append(toks[i])
        i += 1
    return out


def unwrap_mathrm(toks: list[str]) -> list[str]:
    """``\\mathrm { e }`` → ``e``: a training-label fix for CROHME handwriting.

    15% of the 2016 training truths (whole sub-collections) write plain letters as
    ``\\mbox{e}`` (normalised to ``\\mathrm``), the test truths almost never do (15 of 1,147),
    and a pen stroke has no font: keeping the wrapper teaches the recognizer to guess it at random.
    """
    out, depth_stack, i = [], [], 0
    while i < len(toks):
        if toks[i] == "\\mathrm" and i + 1 < len(toks) and toks[i + 1] == "{":
            depth_stack.append(0)
            i += 2
            continue
        if depth_stack:
            if toks[i] == "{":
                depth_stack[-1] += 1
            elif toks[i] == "}":
                if depth_stack[-1] == 0:
                    depth_stack.pop()
                    i += 1
                    continue
                depth_stack[-1] -= 1
        out.append(toks[i])
        i += 1
    return out


def im2markup_samples(shared: Path, *, heldout: bool) -> list[tuple[np.ndarray, list[str], str]]:
    """im2markup pages cropped to the ink: (grayscale crop, normalised tokens, file name)."""

    def build():
        out = []
        for name, src in im2markup_rows(shared, heldout=heldout):
            toks = normalize_tokens(src)
            if not toks:
                continue
            out.append((synth.im2markup_crop(shared / "im2markup" / "pages" / name), toks, name))
        return out

    return _cached(f"im2markup-{'heldout' if heldout else 'train'}", build)


def mathtext_samples(n: int, *, seed: int = 0) -> list[tuple[np.ndarray, list[str]]]:
    """``n`` random printed formulas rendered with mathtext in rotating fonts."""

    def build():
        rng = np.random.default_rng(seed)
        out = []
        while len(out) < n:
            src = synth.random_formula(rng)
            try:
                img = synth.render_mathtext(src, size=float(rng.uniform(14, 26)), font=synth.MATH_FONTS[len(out) % 5])
            except Exception:  # noqa: BLE001 - a formula mathtext cannot parse is just skipped
                continue
            toks = normalize_tokens(src)
            if 0 < len(toks) <= MAX_TOKENS:
                out.append((img, toks))
        return out

    return _cached(f"mathtext-{n}-{seed}", build)
