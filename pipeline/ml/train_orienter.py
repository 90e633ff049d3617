"""Train the orienter: ``python -m pipeline.ml.train_orienter [--photos N] [--steps N] [--minutes M]``.

Samples are the crops the pipeline itself cuts: generated *training* photos
(:func:`pipeline.ml.train_detector.make_photo`, training crops only) with seeds from
``ORIENTER_SEED_BASE``, a training-range block neither the detector nor the refiner was trained
on, read by the committed detector and corner refiner; every region matched to a true formula
(IoU >= 0.5) is rectified with the pipeline's margin. Its label is the roll of the region's
corners that lies nearest the true corners (0: its first corner is the formula's top-left).
Each crop gives up to four samples, cut from its quad rolled by 0-3 corners (a quarter turn
each) and kept where the cut lies on its long side (:func:`pipeline.ml.orienter.landscape`, as
at inference), so both ways up are equally common whatever the detector's habits.

Validation crops come the same way from photos of held-out crops (CROHME test inks, the
im2markup held-out fifth) with seeds from ``ORIENTER_VAL_SEED_BASE``, which neither the
benchmarks (``train_detector.EVAL_SEED_BASE`` + up to 60,000) nor training reach; only the
detector's own quads (no extra rolls) count, as in the pipeline. The exported checkpoint is the
one with the best validation accuracy.

The views (uint8) are built once by ``--workers`` processes into ``<run>/samples.npz``; training
is seeded (AdamW, cross-entropy, batches a fixed function of seed and step) and resumable from
``<run>/last.pt``. ``--export`` writes ``orienter.pt`` into the detector's folder and its
settings under ``"orienter"`` in that folder's ``config.json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .evaluate import match_quads
from .orienter import Orienter, OrienterConfig, landscape, letterbox, roll_view
from .side_models import export_beside_detector, fit, map_chunks
from .train_detector import ROOT, WEIGHTS, CropPool, make_photo

ORIENTER_SEED_BASE = 6_000_000  # training range (below train_detector.EVAL_SEED_BASE), unseen by detector and refiner
ORIENTER_VAL_SEED_BASE = 20_000_000  # held-out crops, beyond the benchmarks' seeds


def true_roll(quad: np.ndarray, truth: np.ndarray) -> int:
    """The roll k (0-3) for which ``np.roll(quad, k, axis=0)`` lies nearest ``truth``, corner by corner."""
    q, t = np.asarray(quad, np.float32).reshape(4, 2), np.asarray(truth, np.float32).reshape(4, 2)
    return int(np.argmin([np.linalg.norm(np.roll(q, k, axis=0) - t, axis=1).sum() for k in range(4)]))


def _build_chunk(job: tuple[int, int, int, bool, dict]) -> tuple[np.ndarray, np.ndarray]:
    """Views and labels from photos [start, stop) of the seed block ``base``."""
    from .inference import FormulaReader, rectify, widen_quad

    base, start, stop, all_rolls, cfg_dict = job
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = OrienterConfig.from_dict(cfg_dict)
    # rendering the training pool's inks takes ~40 s: one chunk per process builds it once
    pool = CropPool(heldout=base >= ORIENTER_VAL_SEED_BASE, seed=0)
    reader = FormulaReader(device="cpu", orient=False)
    views, labels = [], []
    for first in range(start, stop, 16):
        photos = [make_photo(pool, base + s) for s in range(first, min(first + 16, stop))]
        dets = reader.detect([ph.image for ph in photos], with_masks=False)
        for ph, regions in zip(photos, dets, strict=True):
            for p, t, _ in match_quads([r.quad for r in regions], ph.quads, 0.5):
                k = true_roll(regions[p].quad, ph.quads[t])
                crop = rectify(ph.image, widen_quad(regions[p].quad, reader.crop_margin))
                for j in range(4 if all_rolls else 1):
                    cut, extra = landscape(roll_view(crop, j))
                    if all_rolls and extra:
                        continue  # the same cut as the next roll's
                    views.append(letterbox(cut, cfg))
                    labels.append((k - j - extra) % 4)
    return np.stack(views), np.array(labels, np.uint8)


def build_samples(path: Path, base: int, photos: int, workers: int, cfg: OrienterConfig, *, all_rolls: bool) -> None:
    """Generate the views of ``photos`` photos from seed block ``base`` in ``workers`` processes into ``path``."""
    bounds = np.linspace(0, photos, workers + 1).astype(int)
    jobs = [(base, int(a), int(b), all_rolls, cfg.to_dict()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            if b > a]
    t0 = time.time()
    parts = map_chunks(_build_chunk, jobs, workers)
    views = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, views=views, labels=labels, photos=photos)
    tmp.replace(path)
    print(f"{path.name}: {len(views)} views from {photos} photos, labels {np.bincount(labels, minlength=4).tolist()}"
          f" in {time.time() - t0:.0f}s", flush=True)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Photometric jitter of a batch of views: ink strength, background and noise."""
    b = x.shape[0]
    gain = 0.6 + 0.6 * torch.rand(b, 1, 1, 1, generator=g)
    bias = 0.15 * torch.rand(b, 1, 1, 1, generator=g)
    noise = 0.04 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return (x * gain + bias * (x == 0) + noise).clamp(0, 1)


@torch.no_grad()
def accuracy(model: Orienter, views: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    """Share of ``views`` whose predicted roll is their label."""
    model.eval()
    right = 0
    for i in range(0, len(views), batch):
        right += int((model(views[i:i + batch].float()[:, None] / 255).argmax(-1) == labels[i:i + batch]).sum())
    return right / max(len(views), 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default=str(ROOT / "var" / "ml-runs" / "orienter"))
    p.add_argument("--photos", type=int, default=4000, help="training photos to cut crops from")
    p.add_argument("--val-photos", type=int, default=400, help="validation photos (held-out crops)")
    p.add_argument("--workers", type=int, default=2, help="processes that build the views")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=0)
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--export", action="store_true", help="only export <run>/best.pt")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--out", type=Path, default=WEIGHTS, help="detector folder to export into")
    args = p.parse_args(argv)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    best = run / "best.pt"
    if args.export:
        export(best, args.out)
        return
    cfg = OrienterConfig()
    if not (run / "samples.npz").exists():
        build_samples(run / "samples.npz", ORIENTER_SEED_BASE, args.photos, args.workers, cfg, all_rolls=True)
    if not (run / "val.npz").exists():
        build_samples(run / "val.npz", ORIENTER_VAL_SEED_BASE, args.val_photos, args.workers, cfg, all_rolls=False)
    data, val = np.load(run / "samples.npz"), np.load(run / "val.npz")
    views, labels = torch.from_numpy(data["views"]), torch.from_numpy(data["labels"]).long()
    val_views, val_labels = torch.from_numpy(val["views"]), torch.from_numpy(val["labels"]).long()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = Orienter(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    print(f"params {sum(q.numel() for q in model.parameters()) / 1e6:.3f}M, {len(views)} views, "
          f"{len(val_views)} validation crops", flush=True)
    fit(model, opt, views=views, targets=labels, augment=augment, loss=torch.nn.functional.cross_entropy, run=run,
        config=cfg.to_dict(), steps=args.steps, minutes=args.minutes, batch=args.batch, peak_lr=args.lr,
        warmup=100, seed=args.seed, every=args.val_every,
        validate=lambda m: accuracy(m, val_views, val_labels), extra={"val_crops": len(val_views)})
    if not args.no_export:
        export(best, args.out)


def export(checkpoint: Path, folder: Path = WEIGHTS) -> None:
    """``orienter.pt`` (float16) into the detector folder and its settings into that ``config.json``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    export_beside_detector(state, folder, file="orienter.pt", key="orienter",
                           extra={"trained_steps": state["step"], "views": state.get("views"),
                                  "val_accuracy": round(state["val_accuracy"], 4), "val_crops": state.get("val_crops")})
    print(f"exported orienter step {state['step']} (validation accuracy {state['val_accuracy']:.4f}) to {folder}",
          flush=True)


if __name__ == "__main__":
    main()
