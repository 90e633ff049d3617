"""Train the recognizer: ``python -m pipeline.ml.train_recognizer [--steps N] [--minutes M]``.

Seeded and resumable: the run folder (default ``var/ml-runs/recognizer``) holds ``last.pt``
(model, optimiser, step, position in the sample stream); running the same command again
continues from it. ``--export`` writes the weights (float16) and ``config.json`` to
``pipeline/weights/recognizer``; with ``--val`` the checkpoint with the best validation exact
match (``best.pt``) is the one exported, and its confidence is calibrated on the same inks
(``config.json``'s ``"calibration"``: :mod:`calibration`).

Training data (all *training* splits), drawn afresh every epoch:
  * CROHME 2016 training inks, rendered *on the fly* in the data-loader workers with a random
    pen width, slant and point jitter (a new drawing of every ink in every epoch);
  * im2markup pages outside the held-out fifth, cropped to the ink;
  * printed formulas rendered with matplotlib mathtext in five fonts: random formulas from the
    grammar in :mod:`synth` and the *training* truths of both corpora typeset in print (a pool
    rendered once per run by a process pool, ``--printed`` formulas);
  * with ``--recombined N``, N new arXiv-style formulas: pieces of the im2markup *training*
    truths cut at top-level relations and commas, joined anew and typeset in Computer Modern.
Every crop is augmented (small rotation/keystone, thinner/bolder strokes, blur, noise, JPEG).
Never the CROHME 2016 test inks or the held-out im2markup pages. ``--val`` measures greedy
exact match on the CROHME *2013* test inks (a different year's test set, not the 2016 set the
results table reports), used only to pick the checkpoint to export. With ``--im2markup-val`` the
validation eighth of the im2markup *training* pages (:func:`data.im2markup_validation`) is kept
out of the run's data (crops, typeset truths, recombined pieces) and the checkpoint is chosen on
the mean of that CROHME exact match and the slice's BLEU-4, so printed formulas count too. Only
weights that never trained on the slice can be chosen that way: the exported ``config.json``
says whether they did (``im2markup_validation_held_out``), and ``--init`` weights that did are
refused with ``--im2markup-val`` (the committed weights read the slice at BLEU-4 0.974 from
memory, against 0.53 on the held-out fifth).

On CUDA the step runs in bfloat16 autocast; on the CPU too where it has AMX (``--precision``,
default ``auto``), else in float32. Same command on both. ``--init FOLDER`` starts a new run from
exported weights (the committed ones, or a model team's) with a fresh optimiser and schedule:
fine-tuning rather than training from scratch.
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import os
import pickle
import random
import shutil
import time
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from common.inkml import ink_bbox
from common.latex import normalize_tokens

from . import calibration, data, synth, typeset
from . import ink as inkml
from .evaluate import recognizer_metrics
from .inference import calibrate, encoder_uses_bf16, load_recognizer, read_crops
from .recognizer import SPECIALS, Recognizer, RecognizerConfig, batch_crops, prepare_crop

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "pipeline" / "weights" / "recognizer"


def shared_dir() -> Path:
    return Path(os.environ.get("MATHSET_SHARED_DATA", ROOT.parent / "shared" / "data"))


# ------------------------------------------------------------------------------------ corpora

def crohme_train_inks(shared: Path) -> list[tuple[inkml.Ink, list[str]]]:
    """(ink, normalised tokens) of every CROHME 2016 training ink with a usable truth."""
    out = []
    for _name, ink in inkml.iter_inks(shared / "crohme" / "train-2016.tar.xz"):
        toks = data.handwriting_labels(normalize_tokens(ink.truth))
        if toks:
            out.append((ink, toks))
    return out


def _render_printed(job: tuple[str, int, str | None]) -> tuple[np.ndarray, list[str]] | None:
    src, seed, font = job
    rng = np.random.default_rng(seed)
    try:
        img = synth.render_mathtext(src, size=float(rng.uniform(14, 30)),
                                    font=font or synth.MATH_FONTS[int(rng.integers(len(synth.MATH_FONTS)))])
    except Exception:  # noqa: BLE001 - a formula mathtext cannot typeset is just left out
        return None
    toks = normalize_tokens(src)
    return (img, toks) if toks else None


def _draws_truth(i: int, texts: list[list[str]]) -> bool:
    """Whether :func:`printed_jobs`' ``i``-th printed crop (``i < n``) is a training truth, not a
    random grammar formula: the odd ones, when there are truths to draw."""
    return i % 2 == 1 and bool(texts)


def printed_texts(inks: list[tuple[object, list[str]]],
                  crops: list[tuple[np.ndarray, list[str]]]) -> tuple[list[list[str]], list[list[str]]]:
    """What a run's printed pool is made of: the training truths it typesets (the inks' and the
    im2markup crops') and the pieces of the im2markup truths it recombines."""
    return ([toks for _, toks in inks] + [toks for _, toks in crops],
            [p for _, toks in crops for p in synth.formula_pieces(toks)])


def printed_jobs(n: int, texts: list[list[str]], seed: int, *, pieces: list[list[str]] | None = None,
                 recombined: int = 0, recombined_max_tokens: int = 150,
                 substitute: float = 0.0) -> list[tuple[str, int, str | None]]:
    """(mathtext source, render seed, font) of :func:`printed_pool`'s ``n + recombined`` crops.

    Of the first ``n``, even ones are random grammar formulas, odd ones training truths (token
    lists, typeset with their scripts by :func:`synth.render_mathtext`); each in a random one of
    five fonts. The ``recombined`` after them are new
    formulas made of ``pieces`` of the im2markup training truths (:func:`synth.recombined_formula`)
    in Computer Modern, pdflatex's font, each at most ``recombined_max_tokens`` long. Adding recombined
    crops leaves the first ``n`` as they were. ``substitute``: the share of recombined formulas whose
    symbols are renamed (:func:`synth.substitute_symbols`), drawn from a stream of their own, so
    the formulas are otherwise the same.
    """
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n):
        if _draws_truth(i, texts):
            src = " ".join(texts[int(rng.integers(len(texts)))])
        else:
            src = synth.random_formula(rng)
        jobs.append((src, seed * 10_000_000 + i, None))
    if recombined and pieces:
        rng, renames = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
        for i in range(recombined):
            formula = synth.recombined_formula(pieces, rng, max_tokens=recombined_max_tokens)
            if substitute and renames.random() < substitute:
                formula = synth.substitute_symbols(formula, renames)
            jobs.append((" ".join(formula), seed * 10_000_000 + 5_000_000 + i, "cm"))
    return jobs


# pdflatex crops are rasterised at a resolution drawn from this range (the im2markup pages: 200 dpi),
# so that stroke width and anti-aliasing vary around the test pages' once scaled to the model's height
TYPESET_DPI = (150.0, 250.0)
RENDERERS = ("mathtext", "pdflatex")


def _typeset_printed(jobs: list[tuple[str, int, str | None]]) -> list[tuple[np.ndarray, list[str]] | None]:
    dpis = [float(np.random.default_rng(seed).uniform(*TYPESET_DPI)) for _, seed, _ in jobs]
    crops = typeset.render_many([src for src, _, _ in jobs], dpis=dpis)
    out = []
    for (src, _, _), crop in zip(jobs, crops, strict=True):
        toks = normalize_tokens(src) if crop is not None else []
        out.append((crop, toks) if toks else None)
    return out


def printed_pool(n: int, texts: list[list[str]], seed: int, processes: int, *,
                 pieces: list[list[str]] | None = None, recombined: int = 0,
                 renderer: str = "mathtext", recombined_max_tokens: int = 150,
                 truths_renderer: str = "mathtext", substitute: float = 0.0) -> list[tuple[np.ndarray, list[str]]]:
    """``n`` printed crops (half random grammar formulas, half training truths typeset in print),
    then ``recombined`` im2markup-style formulas made of ``pieces`` (:func:`printed_jobs`), typeset
    by ``renderer``: mathtext in Computer Modern, or pdflatex as the im2markup pages were
    (:mod:`typeset`; a formula it cannot typeset is left out, as mathtext's are).

    ``truths_renderer`` pdflatex typesets the training truths among the first ``n`` with pdflatex
    as well (at :data:`TYPESET_DPI`); the random grammar formulas stay mathtext, in five fonts.
    The crops come mathtext first, then pdflatex; training draws them shuffled.
    """
    mathtext_jobs, typeset_jobs = printed_pool_jobs(n, texts, seed, pieces=pieces, recombined=recombined,
                                                    renderer=renderer, recombined_max_tokens=recombined_max_tokens,
                                                    truths_renderer=truths_renderer, substitute=substitute)
    return render_printed_jobs(mathtext_jobs, processes) + render_printed_jobs(typeset_jobs, processes, typeset=True)


def printed_pool_jobs(n: int, texts: list[list[str]], seed: int, *, pieces: list[list[str]] | None = None,
                      recombined: int = 0, renderer: str = "mathtext", recombined_max_tokens: int = 150,
                      truths_renderer: str = "mathtext", substitute: float = 0.0) -> tuple[list, list]:
    """:func:`printed_pool`'s jobs (:func:`printed_jobs`) split by who draws them: (mathtext's,
    pdflatex's), each in pool order."""
    for name, value in (("renderer", renderer), ("truths_renderer", truths_renderer)):
        if value not in RENDERERS:
            raise ValueError(f"{name} must be one of {RENDERERS}, not {value!r}")
    if not 0.0 <= substitute <= 1.0:
        raise ValueError(f"substitute is a share of the recombined formulas, from 0 to 1, not {substitute}")
    jobs = printed_jobs(n, texts, seed, pieces=pieces, recombined=recombined, recombined_max_tokens=recombined_max_tokens,
                        substitute=substitute)
    typeset_job = [renderer == "pdflatex" if i >= n else truths_renderer == "pdflatex" and _draws_truth(i, texts)
                   for i in range(len(jobs))]
    return ([j for j, t in zip(jobs, typeset_job, strict=True) if not t],
            [j for j, t in zip(jobs, typeset_job, strict=True) if t])


def render_printed_jobs(jobs: list, processes: int, *, typeset: bool = False) -> list[tuple[np.ndarray, list[str]]]:
    """Crops of :func:`printed_pool_jobs`' jobs, in order, drawn by mathtext (or with ``typeset``
    by pdflatex); a formula the renderer cannot draw is left out."""
    if not jobs:
        return []
    with Pool(max(1, processes)) as pool:
        if typeset:  # a chunk per pdflatex run: one TeX start for many formulas
            rendered = [r for part in pool.map(_typeset_printed, [jobs[i:i + 256] for i in range(0, len(jobs), 256)])
                        for r in part]
        else:
            rendered = pool.map(_render_printed, jobs, chunksize=64)
    return [r for r in rendered if r is not None]


# 2: training truths typeset with their scripts (:func:`synth.render_mathtext`); the crops of
# format 1 drew ``x _ { 2 }`` as an inline ``x 2`` under a label with a subscript
PRINTED_POOL_FORMAT = 2


def cached_printed_pool(path: Path | None, n: int, texts: list[list[str]], seed: int, processes: int, *,
                        pieces: list[list[str]] | None = None, recombined: int = 0,
                        im2markup_val: bool = False, renderer: str = "mathtext",
                        recombined_max_tokens: int = 150,
                        truths_renderer: str = "mathtext", substitute: float = 0.0) -> list[tuple[np.ndarray, list[str]]]:
    """:func:`printed_pool`, kept in ``path`` (gzip pickle) so that parallel runs render it once.

    The file records ``n``, ``recombined``, ``seed``, the recombined crops' ``renderer`` and longest
    formula (``recombined_max_tokens``), the typeset training truths' ``truths_renderer``, whether
    the im2markup validation pages were left out of ``texts`` and ``pieces`` (``im2markup_val``)
    and the pool's format; one made for
    other values, or by an earlier format, is an error, not reused: a pool typeset from the
    validation pages' truths would leak them into a run that validates on those pages.
    """
    if path is None:
        return printed_pool(n, texts, seed, processes, pieces=pieces, recombined=recombined, renderer=renderer,
                            recombined_max_tokens=recombined_max_tokens, truths_renderer=truths_renderer,
                            substitute=substitute)
    if path.exists():
        with gzip.open(path, "rb") as f:
            stored = pickle.load(f)
        held = (stored["n"], stored.get("recombined", 0), stored["seed"])
        if held != (n, recombined, seed):
            raise SystemExit(f"{path} holds {held[0]} printed crops and {held[1]} recombined of seed {held[2]}, "
                             f"not {n} and {recombined} of seed {seed}")
        if stored.get("renderer", "mathtext") != renderer:
            raise SystemExit(f"{path} holds recombined crops typeset by {stored.get('renderer', 'mathtext')}, "
                             f"not {renderer}: delete it or name another file")
        if stored.get("truths_renderer", "mathtext") != truths_renderer:
            raise SystemExit(f"{path} holds training truths typeset by {stored.get('truths_renderer', 'mathtext')}, "
                             f"not {truths_renderer}: delete it or name another file")
        if recombined and stored.get("recombined_max_tokens", 150) != recombined_max_tokens:
            raise SystemExit(f"{path} holds recombined formulas of at most {stored.get('recombined_max_tokens', 150)} "
                             f"tokens, not {recombined_max_tokens}: delete it or name another file")
        if stored.get("substitute", 0.0) != substitute:
            raise SystemExit(f"{path} holds recombined formulas with {stored.get('substitute', 0.0)} of them renamed "
                             f"(--substitute), not {substitute}: delete it or name another file")
        if stored.get("im2markup_val", False) != im2markup_val:
            made = "without" if stored.get("im2markup_val", False) else "with"
            wants = "keeps them out (--im2markup-val)" if im2markup_val else "trains on them"
            raise SystemExit(f"{path} was typeset {made} the im2markup validation pages' truths and this run "
                             f"{wants}: delete it or name another file")
        if stored.get("format", 1) != PRINTED_POOL_FORMAT:
            raise SystemExit(f"{path} was rendered by printed-pool format {stored.get('format', 1)}, not "
                             f"{PRINTED_POOL_FORMAT} (its typeset truths lost their scripts): delete it")
        return stored["crops"]
    crops = printed_pool(n, texts, seed, processes, pieces=pieces, recombined=recombined, renderer=renderer,
                         recombined_max_tokens=recombined_max_tokens, truths_renderer=truths_renderer,
                         substitute=substitute)
    store_printed_pool(path, crops, n=n, recombined=recombined, seed=seed, im2markup_val=im2markup_val,
                       renderer=renderer, truths_renderer=truths_renderer, recombined_max_tokens=recombined_max_tokens,
                       substitute=substitute)
    return crops


def store_printed_pool(path: Path, crops: list, *, n: int, recombined: int, seed: int, im2markup_val: bool,
                       renderer: str, truths_renderer: str, recombined_max_tokens: int,
                       substitute: float = 0.0) -> None:
    """Write a printed pool where :func:`cached_printed_pool` reads it, with the options it checks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        pickle.dump({"n": n, "recombined": recombined, "seed": seed, "format": PRINTED_POOL_FORMAT,
                     "im2markup_val": im2markup_val, "renderer": renderer, "truths_renderer": truths_renderer,
                     "recombined_max_tokens": recombined_max_tokens, "substitute": substitute, "crops": crops}, f,
                    protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def build_vocab(token_lists) -> list[str]:
    counts = Counter(t for toks in token_lists for t in toks)
    return SPECIALS + sorted(t for t, c in counts.items() if c >= 2)


# ------------------------------------------------------------------------------ augmentation

def augment(img: np.ndarray, rng: np.random.Generator, *, printed: bool) -> np.ndarray:
    """Geometric and photometric noise for one uint8 crop (255 = paper)."""
    if rng.random() < 0.5:
        img = synth.rotate_perspective(img, rng, max_angle=2.5, max_persp=0.025)
    if printed and rng.random() < 0.5:
        # resolution loss: what a small formula in a photo or a 100-dpi scan looks like
        f = rng.uniform(0.35, 0.9)
        h, w = img.shape
        small = cv2.resize(img, (max(4, int(w * f)), max(4, int(h * f))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.25:
        k = np.ones((2, 2), np.uint8)
        img = cv2.erode(img, k) if rng.random() < 0.5 else cv2.dilate(img, k)
    if rng.random() < 0.25:
        img = synth.blur(img, rng)
    if rng.random() < 0.3:
        # grey paper, weaker ink and sensor noise
        paper, ink = rng.uniform(170, 255), rng.uniform(0, 90)
        f = img.astype(np.float32) / 255.0
        f = ink + (paper - ink) * f + rng.normal(0, rng.uniform(1, 10), f.shape)
        img = f.clip(0, 255).astype(np.uint8)
    if rng.random() < 0.15:
        img = synth.jpeg(img, rng)
    return img


class FormulaCrops(Dataset):
    """Training samples addressed by ``(epoch, index)`` so that a sample depends only on the seed.

    An item is either an ink (drawn anew for every epoch) or a stored crop (augmented anew).
    """

    def __init__(self, items: list[tuple[str, object, list[str]]], cfg: RecognizerConfig, seed: int,
                 distort: float = 0.0):
        self.items, self.cfg, self.seed, self.distort = items, cfg, seed, distort
        self.stoi = {t: i for i, t in enumerate(cfg.vocab)}

    def __len__(self) -> int:
        return len(self.items)

    def aspect(self, j: int) -> float:
        kind, src, _ = self.items[j]
        if kind == "ink":
            x0, y0, x1, y1 = ink_bbox(src)
            return (x1 - x0 + 1e-6) / (y1 - y0 + 1e-6)
        return src.shape[1] / src.shape[0]

    def __getitem__(self, key: tuple[int, int]):
        epoch, j = key
        rng = np.random.default_rng([self.seed, epoch, j])
        kind, src, toks = self.items[j]
        if kind == "ink":
            if self.distort and rng.random() < self.distort:
                src = inkml.distort_symbols(src, rng)
            img = inkml.render_ink(src, height=self.cfg.height, pen=float(rng.uniform(1.2, 3.4)),
                                   slant=float(rng.normal(0, 0.12)), jitter=float(rng.uniform(0, 0.35)), rng=rng)
            img = augment(img, rng, printed=False)
        else:
            img = augment(src, rng, printed=True)
        ids = [self.stoi["<bos>"]] + [self.stoi.get(t, self.stoi["<unk>"]) for t in toks[: self.cfg.max_len]]
        return prepare_crop(img, self.cfg.height, self.cfg.max_width), ids + [self.stoi["<eos>"]]


def collate(batch, pad_id: int = 0):
    imgs = [b[0] for b in batch]
    t = max(len(b[1]) for b in batch)
    tok = torch.full((len(batch), t), pad_id, dtype=torch.long)
    for i, (_, ids) in enumerate(batch):
        tok[i, : len(ids)] = torch.tensor(ids)
    return batch_crops(imgs), tok


class BucketedBatches:
    """Endless width-bucketed batches of ``(epoch, index)`` keys, resumable at any batch.

    Each epoch shuffles with (seed, epoch), sorts pools of 50 batches by aspect ratio (little
    padding) and shuffles the batches.
    """

    def __init__(self, aspects: list[float], batch_size: int, seed: int, start: tuple[int, int]):
        self.aspects, self.batch_size, self.seed, self.start = aspects, batch_size, seed, start

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1000 + epoch)
        idx = list(range(len(self.aspects)))
        rng.shuffle(idx)
        pool = self.batch_size * 50
        batches = []
        for i in range(0, len(idx), pool):
            chunk = sorted(idx[i:i + pool], key=self.aspects.__getitem__)
            batches += [chunk[k:k + self.batch_size] for k in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        epoch, skip = self.start
        while True:
            for bi, batch in enumerate(self.epoch_batches(epoch)):
                if bi >= skip:
                    yield [(epoch, j) for j in batch]
            epoch, skip = epoch + 1, 0


# ---------------------------------------------------------------------------------- training

def _val_readings(model: Recognizer, val: list[tuple[np.ndarray, list[str]]], device: str, batch: int):
    """Greedy readings of ``val``'s crops, as the platform reads crops; the model is left training."""
    model.eval()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
        readings = read_crops(model, [img for img, _ in val], device=device, batch_size=batch)
    model.train()
    return readings


def val_exact(model: Recognizer, val: list[tuple[np.ndarray, list[str]]], device: str, batch: int = 0) -> float:
    """Greedy exact match (normalised tokens) over ``val``."""
    batch = batch or (256 if device == "cuda" else 64)  # a GPU decodes the whole set in three batches
    readings = _val_readings(model, val, device, batch)
    return sum(r.tokens == truth for r, (_, truth) in zip(readings, val, strict=True)) / max(1, len(val))


def val_bleu(model: Recognizer, val: list[tuple[np.ndarray, list[str]]], device: str, batch: int = 0) -> float:
    """Corpus BLEU-4 (normalised tokens, as ``evaluate_recognizer`` reports it) over ``val``."""
    readings = _val_readings(model, val, device, batch or (256 if device == "cuda" else 32))
    summary, _rows = recognizer_metrics([(r.tokens, truth) for r, (_, truth) in zip(readings, val, strict=True)])
    return summary["bleu4"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=str(ROOT / "var" / "ml-runs" / "recognizer"))
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--minutes", type=float, default=0, help="stop (after a checkpoint) after this wall time")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--printed", type=int, default=600, help="printed (mathtext) crops rendered for the run")
    p.add_argument("--recombined", type=int, default=0,
                   help="im2markup-style formulas made of pieces of its training truths, typeset in Computer Modern")
    p.add_argument("--recombined-renderer", default="mathtext", choices=list(RENDERERS),
                   help="typeset the recombined formulas with mathtext or with pdflatex, as the im2markup pages were "
                        "(needs pdflatex: Debian's texlive-latex-base and texlive-fonts-recommended)")
    p.add_argument("--truths-renderer", default="mathtext", choices=list(RENDERERS),
                   help="typeset the training truths among the --printed crops with mathtext (five fonts) or "
                        "pdflatex (the random grammar formulas stay mathtext)")
    p.add_argument("--substitute", type=float, default=0.0,
                   help="share of the recombined formulas whose letters, Greek letters and digits are renamed "
                        "(synth.substitute_symbols): new token sequences in arXiv's structures")
    p.add_argument("--printed-cache", help="gzip pickle keeping the printed crops between runs (made if missing)")
    p.add_argument("--im2markup-repeat", type=int, default=3, help="times each real printed crop appears per epoch")
    p.add_argument("--crohme-repeat", type=int, default=1, help="times each training ink appears per epoch")
    p.add_argument("--distort", type=float, default=0.0,
                   help="share of ink draws whose symbols are moved, resized and turned (ink.distort_symbols)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="data-loader processes drawing the samples")
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="also keep each checkpoint as RUN/step-N.pt (for bench/finetune_validation.py and --average)")
    p.add_argument("--val", type=int, default=0, help="validate on CROHME 2013 test inks every N steps (0: never)")
    p.add_argument("--im2markup-val", action="store_true",
                   help="keep the validation eighth of the im2markup training pages out of training and choose "
                        "checkpoints on the mean of CROHME 2013 exact match and its BLEU-4")
    p.add_argument("--warmup", type=int, default=300)
    # architecture, for a new run only
    p.add_argument("--positions", default="sine", choices=["sine", "learned"])
    p.add_argument("--encoder", default="plain", choices=["plain", "res"])
    p.add_argument("--channels", default="16,32,64", help="encoder widths (3 for plain, 4 for res)")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--ff", type=int, default=384)
    p.add_argument("--height", type=int, default=40)
    p.add_argument("--max-width", type=int, default=320)
    p.add_argument("--max-len", type=int, default=None,
                   help="longest token sequence read (default 100; with --init, the init's; a larger one than the "
                        "init's needs sine positions, whose table grows without new weights)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--val-limit", type=int, default=0, help="validate on the first N inks only (0: all 671)")
    p.add_argument("--out", default=str(WEIGHTS), help="where --export (and the end of training) writes")
    p.add_argument("--export", action="store_true", help="only export the run's checkpoint to --out")
    p.add_argument("--average", nargs="+", metavar="CKPT",
                   help="only export the uniform average of these checkpoints of one run to --out")
    p.add_argument("--init", help="weights folder (config.json + weights.pt) a new run starts from; "
                                  "its architecture options replace the ones given here")
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="on the CPU: auto = bfloat16 autocast where the CPU has AMX (CUDA always uses it)")
    args = p.parse_args(argv)
    if not 0.0 <= args.substitute <= 1.0:
        p.error(f"--substitute is a share of the recombined formulas, from 0 to 1, not {args.substitute}")
    torch.set_num_threads(args.threads)
    if args.average:
        export_state(average_checkpoints([Path(c) for c in args.average]), Path(args.out))
        return
    run = Path(args.run)
    last, best = run / "last.pt", run / "best.pt"
    if args.im2markup_val and not args.val and not args.export:
        raise SystemExit("--im2markup-val chooses checkpoints while validating: give --val N as well")
    if args.im2markup_val and args.init and not args.export and not last.exists():
        if not (Path(args.init) / "config.json").is_file():
            raise SystemExit(f"--init {args.init}: no config.json there (an exported weights folder holds one)")
        init_cfg = json.loads((Path(args.init) / "config.json").read_text())
        if not init_cfg.get("im2markup_validation_held_out", False):
            raise SystemExit(f"--im2markup-val: the --init weights in {args.init} trained on the im2markup validation "
                             "pages, so their BLEU-4 there is memorised (the committed weights read them at 0.974, "
                             "the held-out fifth at 0.53) and cannot choose a checkpoint; train from scratch with "
                             "--im2markup-val, or fine-tune without it")
    state = torch.load(last, map_location="cpu", weights_only=False) if last.exists() and not args.export else None
    if state and state.get("im2markup_val_held_out", False) != args.im2markup_val:
        raise SystemExit(f"{last} was {'' if state.get('im2markup_val_held_out') else 'not '}trained with "
                         "--im2markup-val: resume it with the same setting")
    run.mkdir(parents=True, exist_ok=True)
    if args.export:
        export(best if best.exists() else last, Path(args.out))
        return
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shared = shared_dir()
    t_load = time.time()
    inks = crohme_train_inks(shared)
    pages = data.im2markup_samples(shared, heldout=False)
    keep_out = data.im2markup_validation if args.im2markup_val else (lambda _name: False)
    crops = [(img, toks) for img, toks, name in pages if not keep_out(name)]
    val_pages = [(img, toks) for img, toks, name in pages if keep_out(name)]
    texts, pieces = printed_texts(inks, crops)
    init = None if state or not args.init else load_recognizer(args.init, device="cpu", precision="float32")
    max_len = (state["config"]["max_len"] if state else args.max_len or (init.cfg.max_len if init is not None else 100))
    if init is not None and max_len != init.cfg.max_len and init.cfg.positions != "sine":
        raise SystemExit(f"--max-len {max_len}: the --init weights learned positions for {init.cfg.max_len} tokens; "
                         "only sine positions can read further")
    printed = cached_printed_pool(Path(args.printed_cache) if args.printed_cache else None, args.printed, texts,
                                  args.seed, max(1, args.workers), pieces=pieces, recombined=args.recombined,
                                  im2markup_val=args.im2markup_val, renderer=args.recombined_renderer,
                                  recombined_max_tokens=max(150, max_len), truths_renderer=args.truths_renderer,
                                  substitute=args.substitute)
    cfg = (RecognizerConfig(**state["config"]) if state
           else dataclasses.replace(init.cfg, max_len=max_len) if init is not None
           else RecognizerConfig(vocab=build_vocab(texts + [t for _, t in printed]), positions=args.positions,
                                 dropout=args.dropout, channels=tuple(int(c) for c in args.channels.split(",")),
                                 encoder=args.encoder, d_model=args.d_model, heads=args.heads, layers=args.layers,
                                 ff=args.ff, height=args.height, max_width=args.max_width, max_len=max_len))
    # the real pages too long for every earlier run stay out: the long-formula validation (data.im2markup_long)
    items = ([("ink", ink, toks) for ink, toks in inks if len(toks) <= cfg.max_len] * args.crohme_repeat
             + [("img", img, toks) for img, toks in crops
                if len(toks) <= cfg.max_len and not data.im2markup_long(toks)] * args.im2markup_repeat
             + [("img", img, toks) for img, toks in printed if len(toks) <= cfg.max_len])
    dataset = FormulaCrops(items, cfg, args.seed, distort=args.distort)
    val = []
    if args.val:
        val = [(inkml.render_ink(ink), normalize_tokens(ink.truth))
               for _, ink in inkml.iter_inks(shared / "crohme" / "test-2013.tar.xz")]
        val = val[: args.val_limit] if args.val_limit else val
    model = Recognizer(cfg)
    if init is not None:
        model.load_state_dict(init.state_dict())
    model = model.to(device)
    # the step's matrix products in bfloat16: on CUDA, and on a CPU with AMX (~1.2x a float32 step there)
    amp = device == "cuda" or encoder_uses_bf16(args.precision, device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    step, epoch, bi, spent, best_val = 0, 0, 0, 0.0, -1.0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, epoch, bi, spent = state["step"], state["epoch"], state["batch_in_epoch"], state.get("seconds", 0.0)
        best_val = state.get("best_val", -1.0)
        torch.set_rng_state(state["torch_rng"])
    print(f"{len(inks)} inks, {len(crops)} im2markup crops ({len(val_pages)} kept for validation),"
          f" {len(printed)} printed, {len(items)} items/epoch,"
          f" vocab {len(cfg.vocab)}, params {sum(q.numel() for q in model.parameters()) / 1e6:.2f}M,"
          f" {device}{' bfloat16' if amp else ''}, data ready in {time.time() - t_load:.0f}s, resume at step {step}"
          f"{f', initialised from {args.init}' if init is not None else ''}", flush=True)
    sampler = BucketedBatches([dataset.aspect(j) for j in range(len(items))], args.batch, args.seed, (epoch, bi))
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=args.workers,
                        pin_memory=device == "cuda", prefetch_factor=4 if args.workers else None)
    pad_id = cfg.vocab.index("<pad>")
    loss_fn = nn.CrossEntropyLoss(ignore_index=pad_id, label_smoothing=0.1)
    t0 = time.time() - spent
    ema = None
    batches_per_epoch = math.ceil(len(items) / args.batch)
    for x, tok in loader:
        x, tok = x.to(device, non_blocking=True), tok.to(device, non_blocking=True)
        # cosine over whichever budget runs out first, steps or (total, resumed) minutes, so a
        # run cut by the clock still ends on a small learning rate
        progress = step / args.steps
        if args.minutes:
            progress = max(progress, (time.time() - t0) / (args.minutes * 60))
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        for g in opt.param_groups:
            g["lr"] = max(lr, args.lr * 0.02)
        model.train()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            logits = model(x, tok[:, :-1])
        loss = loss_fn(logits.float().reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bi += 1
        if bi >= batches_per_epoch:
            epoch, bi = epoch + 1, 0
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        out_of_time = args.minutes and (time.time() - t0) > args.minutes * 60
        finished = step >= args.steps or out_of_time
        if val and (step % args.val == 0 or finished):
            exact = val_exact(model, val, device)
            bleu = val_bleu(model, val_pages, device) if val_pages else None
            score = exact if bleu is None else (exact + bleu) / 2
            if score > best_val:
                best_val = score
                save(best, model, opt, cfg, step, epoch, bi, time.time() - t0, best_val, args.im2markup_val)
            print(f"step {step} val exact {exact:.3f}"
                  f"{f' im2markup bleu {bleu:.3f} score {score:.3f}' if bleu is not None else ''}"
                  f" (best {best_val:.3f})", flush=True)
        if step % args.ckpt_every == 0 or finished:
            save(last, model, opt, cfg, step, epoch, bi, time.time() - t0, best_val, args.im2markup_val)
            if args.keep_checkpoints:
                # a fine-tune without validation steps is chosen afterwards among all its checkpoints
                shutil.copyfile(last, run / f"step-{step}.pt")
            print(f"step {step} epoch {epoch} loss {ema:.3f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if finished:
            break
    export(best if best.exists() else last, Path(args.out))
    if val:
        calibrate_export(Path(args.out), [(img, toks) for img, toks in val if toks], device)


def calibrate_export(out: Path, val: list[tuple[np.ndarray, list[str]]], device: str) -> None:
    """Fit the exported recognizer's greedy confidence to P(exact) on the validation inks
    (:mod:`calibration`), as ``manage.py calibrate_recognizer`` does; weights that read every
    ink right or every ink wrong cannot be fitted and keep the sequence probability."""
    model = load_recognizer(out, device=device)
    try:
        fit, readings = calibrate(model, val, device=device, batch_size=256 if device == "cuda" else 64)
    except ValueError as exc:
        print(f"confidence not calibrated: {exc}", flush=True)
        return
    exact = sum(r.tokens == truth for r, (_, truth) in zip(readings, val, strict=True)) / len(val)
    calibration.store(out, calibration.mode_key(), fit, fitted_on="test-2013.tar.xz", samples=len(val),
                      exact=round(exact, 4), fitted=time.strftime("%Y-%m-%d"))
    print(f"confidence calibrated on {len(val)} validation inks: P(exact) = sigmoid({fit.a:.4f} * log-probability"
          f" + {fit.b:.4f})", flush=True)


def save(path: Path, model, opt, cfg, step, epoch, batch_in_epoch, seconds=0.0, best_val=-1.0, held_out=False):
    """A checkpoint; ``held_out``: the weights never trained on the im2markup validation pages
    (a run with ``--im2markup-val``, from scratch or from weights that held them out too)."""
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "config": cfg.to_dict(), "step": step,
                "epoch": epoch, "batch_in_epoch": batch_in_epoch, "seconds": seconds, "best_val": best_val,
                "im2markup_val_held_out": held_out, "torch_rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)  # atomic: a kill mid-save never corrupts the last checkpoint


def export(ckpt: Path, out: Path = WEIGHTS):
    """Write a checkpoint's weights (float16) and config as a weights folder ``load_recognizer`` reads."""
    export_state(torch.load(ckpt, map_location="cpu", weights_only=False), out, name=ckpt.name)


def export_state(state: dict, out: Path, name: str = "average") -> None:
    """:func:`export` of a loaded (or averaged) checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}, out / "weights.pt")
    extra = {"averaged_steps": state["averaged_steps"]} if "averaged_steps" in state else {}
    (out / "config.json").write_text(json.dumps({**state["config"], "trained_steps": state["step"], **extra,
                                                 "im2markup_validation_held_out": state.get("im2markup_val_held_out",
                                                                                            False)}, indent=1))
    # the validation score is CROHME 2013 exact match, or with --im2markup-val its mean with the slice's BLEU-4
    print(f"exported {name} (step {state['step']}, validation score {state.get('best_val', -1):.3f}) to {out}",
          flush=True)


def average_checkpoints(paths: list[Path]) -> dict:
    """The uniform average of checkpoints' weights, BatchNorm statistics included; the rest of the
    last one. Late checkpoints of one run sit around the same minimum, and their mean often reads
    better than any of them (Polyak averaging); checkpoints of different architectures, or one
    that held the im2markup validation pages out and one that did not, are refused."""
    if not paths:
        raise SystemExit("--average: give at least one checkpoint")
    states = []
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"--average: {path} is not a file")
        states.append(torch.load(path, map_location="cpu", weights_only=False))
    last = states[-1]
    for path, state in zip(paths, states, strict=True):
        if state["config"] != last["config"]:
            raise SystemExit(f"--average: {path} has another architecture or vocabulary than {paths[-1]}")
        if state.get("im2markup_val_held_out", False) != last.get("im2markup_val_held_out", False):
            raise SystemExit(f"--average: {path} and {paths[-1]} differ in --im2markup-val")
    model = {}
    for key, value in last["model"].items():
        # integer buffers (BatchNorm's batch counts) are counts, not weights: kept from the last
        model[key] = (torch.stack([s["model"][key].float() for s in states]).mean(0).to(value.dtype)
                      if value.is_floating_point() else value)
    return {**last, "model": model, "averaged_steps": [s["step"] for s in states]}


if __name__ == "__main__":
    main()
