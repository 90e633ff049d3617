"""Train the recognizer: ``python -m pipeline.ml.train_recognizer [--steps N] [--minutes M]``.

Seeded and resumable: the run folder (default ``var/ml-runs/recognizer``) holds ``last.pt``
(model, optimiser, step, RNG states); running the same command again continues from it.
``--export`` writes the weights (float16) and ``config.json`` to ``pipeline/weights/recognizer``.

Training data (all *training* splits): CROHME 2016 training inks rendered offline with varied
pen/slant/jitter, im2markup pages outside the held-out fifth (cropped to the ink), and random
mathtext formulas. Never the CROHME test inks or the held-out im2markup pages.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import data, synth
from .recognizer import SPECIALS, Recognizer, RecognizerConfig, batch_crops, prepare_crop

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "pipeline" / "weights" / "recognizer"


def shared_dir() -> Path:
    return Path(os.environ.get("MATHSET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def load_training_set(n_mathtext: int, seed: int) -> list[tuple[np.ndarray, list[str]]]:
    shared = shared_dir()
    samples = [(img, toks) for img, toks in data.crohme_samples(shared, "train", seed=seed)]
    samples += [(img, toks) for img, toks, _ in data.im2markup_samples(shared, heldout=False)]
    samples += data.mathtext_samples(n_mathtext, seed=seed)
    return [(img, toks) for img, toks in samples if len(toks) <= data.MAX_TOKENS]


def build_vocab(samples) -> list[str]:
    counts = Counter(t for _, toks in samples for t in toks)
    return SPECIALS + sorted(t for t, c in counts.items() if c >= 2)


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.4:
        img = synth.rotate_perspective(img, rng, max_angle=3, max_persp=0.03)
    if rng.random() < 0.3:
        k = np.ones((2, 2), np.uint8)
        import cv2

        img = cv2.erode(img, k) if rng.random() < 0.5 else cv2.dilate(img, k)
    if rng.random() < 0.3:
        img = synth.blur(img, rng)
    return img


def make_batches(samples, batch_size: int, rng: random.Random):
    """Width-bucketed batches: sort by aspect inside shuffled pools of 50 batches."""
    idx = list(range(len(samples)))
    rng.shuffle(idx)
    pool = batch_size * 50
    batches = []
    for i in range(0, len(idx), pool):
        chunk = sorted(idx[i:i + pool], key=lambda j: samples[j][0].shape[1] / samples[j][0].shape[0])
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default=str(ROOT / "var" / "ml-runs" / "recognizer"))
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--minutes", type=float, default=0, help="stop (after a checkpoint) after this wall time")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mathtext", type=int, default=600)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--positions", default="sine", choices=["sine", "learned"], help="for a new run only")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--channels", default="16,32,64", help="encoder widths, for a new run only")
    p.add_argument("--dropout", type=float, default=0.1, help="for a new run only")
    p.add_argument("--export", action="store_true", help="only export the last checkpoint to pipeline/weights")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    last = run / "last.pt"
    if args.export:
        export(last)
        return
    torch.manual_seed(args.seed)
    samples = load_training_set(args.mathtext, args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    state = torch.load(last, map_location="cpu", weights_only=False) if last.exists() else None
    cfg = (RecognizerConfig(**state["config"]) if state
           else RecognizerConfig(vocab=build_vocab(samples), positions=args.positions, dropout=args.dropout,
                            channels=tuple(int(c) for c in args.channels.split(","))))
    model = Recognizer(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    step, epoch, spent = 0, 0, 0.0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, epoch, spent = state["step"], state["epoch"], state.get("seconds", 0.0)
        torch.set_rng_state(state["torch_rng"])
    print(f"{len(samples)} samples, vocab {len(cfg.vocab)}, params {sum(p.numel() for p in model.parameters())/1e6:.2f}M,"
          f" resume at step {step}", flush=True)
    pad_id = cfg.vocab.index("<pad>")
    loss_fn = nn.CrossEntropyLoss(ignore_index=pad_id, label_smoothing=0.1)
    t0 = time.time() - spent
    warmup = args.warmup
    ema = None
    while step < args.steps:
        # the batch order of an epoch depends only on (seed, epoch): a resumed run replays it
        batches = make_batches(samples, args.batch, random.Random(args.seed * 1000 + epoch))
        skip = state["batch_in_epoch"] if state and state["epoch"] == epoch else 0
        for bi, batch in enumerate(batches):
            if bi < skip:
                continue
            arng = np.random.default_rng([args.seed, epoch, bi])
            imgs = [prepare_crop(augment(samples[j][0], arng), cfg.height, cfg.max_width) for j in batch]
            ids = [model.encode_tokens(samples[j][1]) for j in batch]
            t = max(map(len, ids))
            tok = torch.full((len(ids), t), pad_id, dtype=torch.long)
            for i, seq in enumerate(ids):
                tok[i, : len(seq)] = torch.tensor(seq)
            x, tok = batch_crops(imgs).to(device), tok.to(device)
            # cosine over whichever budget runs out first, steps or (total, resumed) minutes, so a
            # run cut by the clock still ends on a small learning rate
            progress = step / args.steps
            if args.minutes:
                progress = max(progress, (time.time() - t0) / (args.minutes * 60))
            lr = args.lr * min(1.0, (step + 1) / warmup) * (0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
            for g in opt.param_groups:
                g["lr"] = max(lr, args.lr * 0.02)
            model.train()
            logits = model(x, tok[:, :-1])
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            out_of_time = args.minutes and (time.time() - t0) > args.minutes * 60
            if step % args.ckpt_every == 0 or step >= args.steps or out_of_time:
                save(last, model, opt, cfg, step, epoch, bi + 1, time.time() - t0)
                print(f"step {step} epoch {epoch} loss {ema:.3f} lr {lr:.2e} {time.time()-t0:.0f}s", flush=True)
            if step >= args.steps or out_of_time:
                export(last)
                return
        epoch += 1
        state = None
    export(last)


def save(path: Path, model, opt, cfg, step, epoch, batch_in_epoch, seconds=0.0):
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "config": cfg.to_dict(), "step": step,
                "epoch": epoch, "batch_in_epoch": batch_in_epoch, "seconds": seconds, "torch_rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)  # atomic: a kill mid-save never corrupts the last checkpoint


def export(last: Path):
    state = torch.load(last, map_location="cpu", weights_only=False)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}, WEIGHTS / "weights.pt")
    (WEIGHTS / "config.json").write_text(json.dumps({**state["config"], "trained_steps": state["step"]}, indent=1))
    print(f"exported step {state['step']} to {WEIGHTS}", flush=True)


if __name__ == "__main__":
    main()
