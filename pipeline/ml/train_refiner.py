"""Train the corner refiner: ``python -m pipeline.ml.train_refiner [--photos N] [--steps N] [--minutes M]``.

Samples come from generated *training* photos (:func:`pipeline.ml.train_detector.make_photo`,
training crops only) with seeds from ``REFINER_SEED_BASE``, a training-range block the
detector's own training never reached, so the detector's errors on them are the errors it
makes on unseen photos. For every true formula two views are cut:

* the committed detector's own quad for it (matched at IoU >= 0.3), which teaches the errors
  the detector really makes, corner order and upside-down quads included;
* the true ink box moved by a random rotation, scaling, shift and corner jitter (and a random
  corner order), which covers errors the detector makes rarely and, scaled down, the small
  errors left for the second look.

The views (uint8) and their targets are built once by ``--workers`` processes into
``<run>/samples.npz``, then training (seeded, AdamW, smooth L1 on the normalised corners,
resumable from ``<run>/last.pt``) reads them. ``--export`` writes ``refiner.pt`` into the
detector's folder and its settings under ``"refiner"`` in that folder's ``config.json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .evaluate import match_quads
from .refiner import QuadRefiner, RefinerConfig, align_to, corners_to_view, to_gray, view
from .side_models import export_beside_detector, fit, map_chunks
from .train_detector import ROOT, WEIGHTS, CropPool, make_photo

REFINER_SEED_BASE = 5_000_000  # training range (below train_detector.EVAL_SEED_BASE), unseen by the detector
OUT_OF_VIEW = 0.8  # a target corner further than this from the view's centre (in view units) is left out


def perturb(truth: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """The true quad as a detector might have drawn it: turned, scaled, shifted, corners jittered."""
    t = np.asarray(truth, np.float64)
    w = (np.linalg.norm(t[1] - t[0]) + np.linalg.norm(t[2] - t[3])) / 2
    h = (np.linalg.norm(t[3] - t[0]) + np.linalg.norm(t[2] - t[1])) / 2
    c = t.mean(0)
    ux = t[1] - t[0] + t[2] - t[3]
    ux /= max(np.linalg.norm(ux), 1e-6)
    uy = np.array([-ux[1], ux[0]])  # an orthonormal frame: projecting on it and back is the identity
    local = np.stack([(t - c) @ ux, (t - c) @ uy], 1)
    local[:, 0] *= np.exp(rng.normal(0, 0.05 * strength))
    local[:, 1] *= np.exp(rng.normal(0, 0.12 * strength))
    local += rng.normal(0, 0.05 * strength, (4, 2)) * h
    local += [rng.normal(0, 0.03 * strength) * w, rng.normal(0, 0.08 * strength) * h]
    a = np.deg2rad(rng.normal(0, 1.5 * strength))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    local = local @ rot.T
    quad = c + local[:, :1] * ux + local[:, 1:] * uy
    # the detector's corner order: upside down half the time, any side first on squat formulas
    rolls = [0, 1, 2, 3] if w < 1.5 * h else [0, 2]
    return np.roll(quad, -int(rng.choice(rolls)), axis=0).astype(np.float32)


def _build_chunk(job: tuple[int, int, dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views, targets and kinds (0 detector quad, 1 perturbed truth) from photos [start, stop)."""
    from .inference import FormulaReader

    start, stop, cfg_dict = job
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = RefinerConfig.from_dict(cfg_dict)
    pool = CropPool(seed=0)
    reader = FormulaReader(device="cpu", refine_corners=False)
    views, targets, kinds = [], [], []
    for first in range(start, stop, 16):
        seeds = range(first, min(first + 16, stop))
        photos = [make_photo(pool, REFINER_SEED_BASE + s) for s in seeds]
        dets = reader.detect([ph.image for ph in photos], with_masks=False)
        for s, ph, regions in zip(seeds, photos, dets, strict=True):
            rng = np.random.default_rng(REFINER_SEED_BASE + s + 7)
            gray = to_gray(ph.image)
            pairs = [(regions[p].quad, ph.quads[t], 0)
                     for p, t, _ in match_quads([r.quad for r in regions], ph.quads, 0.3)]
            pairs += [(perturb(t, rng, float(rng.uniform(0.2, 1.3))), t, 1) for t in ph.quads]
            for quad, truth, kind in pairs:
                v, m = view(gray, quad, cfg)
                target = corners_to_view(align_to(truth, quad), m, cfg).reshape(-1)
                # a formula mostly outside the view (two formulas merged into one detection, a
                # quad turned by 90 degrees) is not a corner error a look at the view can mend
                if np.abs(target - 0.5).max() > OUT_OF_VIEW:
                    continue
                views.append(v)
                targets.append(target)
                kinds.append(kind)
    return (np.stack(views), np.stack(targets).astype(np.float32), np.array(kinds, np.uint8))


def build_samples(path: Path, photos: int, workers: int, cfg: RefinerConfig) -> None:
    """Generate the training views from ``photos`` photos in ``workers`` processes into ``path``."""
    bounds = np.linspace(0, photos, workers * 4 + 1).astype(int)
    jobs = [(int(a), int(b), cfg.to_dict()) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    t0 = time.time()
    parts = map_chunks(_build_chunk, jobs, workers)
    views = np.concatenate([p[0] for p in parts])
    targets = np.concatenate([p[1] for p in parts])
    kinds = np.concatenate([p[2] for p in parts])
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, views=views, targets=targets, kinds=kinds, photos=photos)
    tmp.replace(path)
    print(f"{len(views)} views ({int((kinds == 0).sum())} detector quads) from {photos} photos "
          f"in {time.time() - t0:.0f}s", flush=True)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Photometric jitter of a batch of views: contrast, brightness, inversion-free noise."""
    b = x.shape[0]
    gain = 0.7 + 0.6 * torch.rand(b, 1, 1, 1, generator=g)
    bias = 0.2 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5)
    noise = 0.03 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return ((x - 0.5) * gain + 0.5 + bias + noise).clamp(0, 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default=str(ROOT / "var" / "ml-runs" / "refiner"))
    p.add_argument("--photos", type=int, default=20000, help="training photos to cut views from")
    p.add_argument("--workers", type=int, default=2, help="processes that build the views")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--minutes", type=float, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--export", action="store_true", help="only export <run>/last.pt")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--out", type=Path, default=WEIGHTS, help="detector folder to export into")
    args = p.parse_args(argv)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    last = run / "last.pt"
    if args.export:
        export(last, args.out)
        return
    cfg = RefinerConfig()
    samples = run / "samples.npz"
    if not samples.exists():
        build_samples(samples, args.photos, args.workers, cfg)
    data = np.load(samples)
    views = torch.from_numpy(data["views"])
    targets = torch.from_numpy(data["targets"])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = QuadRefiner(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    print(f"params {sum(q.numel() for q in model.parameters()) / 1e6:.2f}M, {len(views)} views", flush=True)
    fit(model, opt, views=views, targets=targets, augment=augment, run=run, config=cfg.to_dict(), steps=args.steps,
        minutes=args.minutes, batch=args.batch, peak_lr=args.lr, warmup=200, seed=args.seed, every=args.ckpt_every,
        loss=lambda pred, y: torch.nn.functional.smooth_l1_loss(pred, y, beta=0.01))
    if not args.no_export:
        export(last, args.out)


def export(last: Path, folder: Path = WEIGHTS) -> None:
    """``refiner.pt`` (float16) into the detector folder and its settings into that ``config.json``."""
    state = torch.load(last, map_location="cpu", weights_only=False)
    export_beside_detector(state, folder, file="refiner.pt", key="refiner",
                           extra={"trained_steps": state["step"], "views": state.get("views")})
    print(f"exported refiner step {state['step']} to {folder}", flush=True)


if __name__ == "__main__":
    main()
