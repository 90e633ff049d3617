"""Train the detector: ``python -m pipeline.ml.train_detector [--steps N] [--minutes M]``.

Photos are generated on the fly by :func:`pipeline.ml.synth.compose_photo` from *training*
crops only (mathtext formulas, CROHME 2016 training inks, im2markup pages outside the held-out
fifth). Photo ``k`` of the run is generated from seed ``k`` (``TRAIN_SEED_BASE + k``), so the
data is reproducible and a resumed run continues with the next unseen photos; evaluation uses
seeds from ``EVAL_SEED_BASE`` that training never reaches. Resumable from ``last.pt``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from . import data, synth
from .detector import DetectorConfig, TinyUNet, prepare_photo, top_half_mask
from .inference import float_state

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "pipeline" / "weights" / "detector"
TRAIN_SEED_BASE = 0
EVAL_SEED_BASE = 10_000_000


def shared_dir() -> Path:
    return Path(os.environ.get("MATHSET_SHARED_DATA", ROOT.parent / "shared" / "data"))


class CropPool:
    """Formula crops to paste into photos, by kind (printed / handwritten / page)."""

    def __init__(self, *, heldout: bool = False, n_mathtext: int = 600, seed: int = 0):
        shared = shared_dir()
        if heldout:
            samples = {
                "printed": data.mathtext_samples(300, seed=seed + 99),
                "handwritten": data.crohme_samples(shared, "test"),
                "page": [(img, toks) for img, toks, _ in data.im2markup_samples(shared, heldout=True)],
            }
        else:
            samples = {
                "printed": data.mathtext_samples(n_mathtext, seed=seed),
                "handwritten": data.crohme_samples(shared, "train", seed=seed),
                "page": [(img, toks) for img, toks, _ in data.im2markup_samples(shared, heldout=False)],
            }
        self.kinds = {kind: [img for img, _ in items] for kind, items in samples.items()}
        # each crop's normalised LaTeX tokens, for end-to-end reading figures
        self.tokens = {kind: [toks for _, toks in items] for kind, items in samples.items()}

    def pick(self, rng: np.random.Generator, kind: str | None = None) -> tuple[str, int]:
        """(kind, index) of a crop: printed 40%, handwritten 40%, page 20% unless ``kind`` is given."""
        kind = kind or ["printed", "handwritten", "page"][int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
        return kind, int(rng.integers(len(self.kinds[kind])))

    def sample(self, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
        kind, index = self.pick(rng, kind)
        return self.kinds[kind][index]


def make_photo(pool: CropPool, seed: int, size: int = 256) -> synth.Photo:
    """The photo of a given seed: 1-3 formulas at a random rotation/perspective."""
    rng = np.random.default_rng(seed)
    if rng.random() < 0.15:
        # a scanned page: upright, A4 proportions, one small printed formula (like im2markup)
        crops = [pool.sample(rng, kind="page")]
        return synth.compose_photo(rng, crops, size=(int(size * 1.41), size), max_angle=3, max_persp=0.01,
                                   height_frac=(0.015, 0.05))
    side = int(rng.choice([size, int(size * 1.25), int(size * 1.5)]))
    crops = [pool.sample(rng) for _ in range(int(rng.integers(1, 4)))]
    return synth.compose_photo(rng, crops, size=(side, int(side * rng.uniform(0.75, 1.33))))


def targets(photo: synth.Photo, out: int) -> np.ndarray:
    """(2, out, out) float32: formula mask and upper-half mask at the network's output size."""
    h, w = photo.mask.shape
    top = np.zeros((h, w), np.uint8)
    for q in photo.quads:
        top |= top_half_mask(q, (h, w))
    t = np.stack([cv2.resize(photo.mask * 255, (out, out), interpolation=cv2.INTER_AREA),
                  cv2.resize(top * 255, (out, out), interpolation=cv2.INTER_AREA)])
    return (t.astype(np.float32) / 255.0 > 0.5).astype(np.float32)


def gap_weights(photo: synth.Photo, target: np.ndarray, alpha: float, radius: int = 3) -> np.ndarray:
    """(out, out) float32 loss weights: 1, and 1 + ``alpha`` on the background between two formulas.

    Neighbouring formulas are only 1-2 pixels apart at the network's output resolution, and
    those few pixels are what keeps them two components instead of one (the main failure on
    validation photos), so they weigh more, as in the U-Net paper's touching cells.
    """
    h, w = photo.mask.shape
    out = target.shape[-1]
    near = np.zeros((out, out), np.uint8)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    for q in photo.quads:
        one = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(one, np.round(q).astype(np.int32), 255)
        near += cv2.dilate((cv2.resize(one, (out, out), interpolation=cv2.INTER_AREA) > 127).astype(np.uint8), kernel)
    gap = (near >= 2) & (target[0] < 0.5)
    return (1 + alpha * gap).astype(np.float32)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default=str(ROOT / "var" / "ml-runs" / "detector"))
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--minutes", type=float, default=0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gap-weight", type=float, default=10.0,
                   help="extra mask-loss weight of the background pixels between two neighbouring formulas")
    p.add_argument("--warmup", type=int, default=100, help="steps of linear warm-up at the start of each run")
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--export", action="store_true")
    p.add_argument("--out", type=Path, default=WEIGHTS,
                   help="where --export (and the end of training) writes, as train_recognizer's --out "
                        "(default: the committed weights)")
    p.add_argument("--no-export", action="store_true",
                   help="leave the committed weights as they are at the end (compare first, then --export)")
    p.add_argument("--from-weights", action="store_true",
                   help="a new run starts from the committed weights (and their step count), not from scratch")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    last = run / "last.pt"
    if args.export:
        export(last, args.out)
        return
    torch.manual_seed(args.seed)
    cfg = DetectorConfig()
    model = TinyUNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step = 0
    # the LR schedule is the run's own: warm-up from its first step (a continuation starts with
    # fresh AdamW moments) and linear decay to 5% over its step budget or, with --minutes, its
    # time budget, whichever runs out first, so a run stopped by the clock ends annealed
    run_start, elapsed_before = 0, 0.0
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        run_start, elapsed_before = state.get("run_start", 0), state.get("elapsed", 0.0)
    elif args.from_weights:
        model.load_state_dict(float_state(WEIGHTS / "weights.pt"))
        step = run_start = int(json.loads((WEIGHTS / "config.json").read_text()).get("trained_steps", 0))
    pool = CropPool(seed=args.seed)
    print(f"params {sum(p.numel() for p in model.parameters())/1e6:.2f}M, resume at step {step}", flush=True)
    out = cfg.size // 2
    t0, ema = time.time(), None
    while step < args.steps:
        seeds = [TRAIN_SEED_BASE + args.seed * 1_000_000 + step * args.batch + i for i in range(args.batch)]
        photos = [make_photo(pool, s, cfg.size) for s in seeds]
        x = torch.from_numpy(np.stack([prepare_photo(ph.image, cfg.size) for ph in photos]))
        ys = [targets(ph, out) for ph in photos]
        y = torch.from_numpy(np.stack(ys))
        wt = torch.from_numpy(np.stack([gap_weights(ph, t, args.gap_weight) for ph, t in zip(photos, ys, strict=True)]))
        model.train()
        logits = model(x)
        prob = torch.sigmoid(logits[:, 0])
        dice = 1 - (2 * (prob * y[:, 0]).sum((1, 2)) + 1) / (prob.sum((1, 2)) + y[:, 0].sum((1, 2)) + 1)
        per_px = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        loss = (per_px[:, 0] * wt).mean() / 2 + per_px[:, 1].mean() / 2 + dice.mean()
        elapsed = elapsed_before + time.time() - t0
        progress = (step - run_start) / max(args.steps - run_start, 1)
        if args.minutes:
            progress = max(progress, elapsed / (args.minutes * 60))
        lr = args.lr * min(1.0, (step - run_start + 1) / max(args.warmup, 1)) * max(0.05, 1 - progress)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        elapsed = elapsed_before + time.time() - t0
        out_of_time = args.minutes and elapsed > args.minutes * 60
        if step % args.ckpt_every == 0 or step >= args.steps or out_of_time:
            tmp = last.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "config": cfg.to_dict(), "step": step,
                        "run_start": run_start, "elapsed": elapsed}, tmp)
            tmp.replace(last)
            print(f"step {step} loss {ema:.3f} lr {lr:.2e} {time.time()-t0:.0f}s", flush=True)
        if out_of_time:
            break
    if not args.no_export:
        export(last, args.out)


def export(last: Path, folder: Path = WEIGHTS):
    state = torch.load(last, map_location="cpu", weights_only=False)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}, folder / "weights.pt")
    # architecture from the checkpoint; post-processing settings (tuned on validation seeds, not
    # learned) from the code's defaults, so an export never falls back to stale ones
    arch = {k: state["config"][k] for k in ("size", "channels")}
    config = {**DetectorConfig().to_dict(), **arch, "trained_steps": state["step"]}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    print(f"exported step {state['step']} to {folder}", flush=True)


if __name__ == "__main__":
    main()
