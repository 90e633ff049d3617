"""What the small networks kept beside the detector's weights share (corner refiner, orienter):
their settings' round trip through ``config.json``, the parallel building of their training
views, their resumable training loop and learning-rate schedule, and their export into the
detector's folder."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch


class SideConfig:
    """Mixin for a dataclass of settings with a ``channels`` tuple, stored as JSON."""

    def to_dict(self) -> dict:
        d = asdict(self)  # type: ignore[call-overload]
        d["channels"] = list(d["channels"])
        return d

    @classmethod
    def from_dict(cls, raw: dict):
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        kw = {k: v for k, v in raw.items() if k in fields}
        if "channels" in kw:
            kw["channels"] = tuple(kw["channels"])
        return cls(**kw)


def map_chunks(build: Callable, jobs: list, workers: int) -> list:
    """``build`` over ``jobs`` in ``workers`` processes (in this one with a single worker), in order."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            return list(ex.map(build, jobs))
    return [build(j) for j in jobs]


def learning_rate(peak: float, step: int, steps: int, *, elapsed: float, minutes: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine decay to 2% of ``peak`` over whichever
    budget ends first: ``steps`` or ``minutes`` of training time."""
    progress = step / steps
    if minutes:
        progress = max(progress, elapsed / (minutes * 60))
    return peak * min(1.0, (step + 1) / warmup) * max(0.02, 0.5 * (1 + np.cos(np.pi * min(progress, 1.0))))


def fit(model: torch.nn.Module, opt: torch.optim.Optimizer, *, views: torch.Tensor, targets: torch.Tensor,
        augment: Callable, loss: Callable, run: Path, config: dict, steps: int, minutes: float, batch: int,
        peak_lr: float, warmup: int, seed: int, every: int, validate: Callable | None = None,
        extra: dict | None = None) -> None:
    """Train on in-memory uint8 ``views`` until ``steps`` or ``minutes`` of training time, resumably.

    Batch ``b`` is a fixed function of (``seed``, step), so a run resumed from ``run/last.pt``
    draws what it would have drawn. Every ``every`` steps (and at the end) ``last.pt`` is saved
    (model, optimiser, ``config``, step, training time, ``extra``); with ``validate`` (model ->
    score) the score is logged and the best-scoring checkpoint kept as ``best.pt``.
    """
    last, best = run / "last.pt", run / "best.pt"
    step, elapsed_before, best_score = 0, 0.0, -1.0
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed_before, best_score = state["step"], state.get("elapsed", 0.0), state.get("best_acc", -1.0)
        print(f"resume at step {step}", flush=True)
    n = len(views)
    t0, ema = time.time(), None
    while step < steps:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, n, (batch,), generator=g)
        x = augment(views[idx].float()[:, None] / 255, g)
        lr = learning_rate(peak_lr, step, steps, elapsed=elapsed_before + time.time() - t0, minutes=minutes,
                           warmup=warmup)
        for grp in opt.param_groups:
            grp["lr"] = lr
        model.train()
        value = loss(model(x), targets[idx])
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        step += 1
        ema = value.item() if ema is None else 0.98 * ema + 0.02 * value.item()
        elapsed = elapsed_before + time.time() - t0
        out_of_time = bool(minutes) and elapsed > minutes * 60
        if step % every == 0 or step >= steps or out_of_time:
            ckpt = {"model": model.state_dict(), "opt": opt.state_dict(), "config": config, "step": step,
                    "elapsed": elapsed, "views": n, **(extra or {})}
            line = f"step {step} loss {ema:.4f} lr {lr:.2e}"
            if validate is not None:
                score = validate(model)
                ckpt.update(val_accuracy=score, best_acc=max(best_score, score))
                if score > best_score:
                    best_score = score
                    save_atomic(ckpt, best)
                line += f" val {score:.4f} (best {best_score:.4f})"
            save_atomic(ckpt, last)
            print(f"{line} {elapsed:.0f}s", flush=True)
        if out_of_time:
            break


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file then renamed: a run killed mid-write keeps its last checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def export_beside_detector(state: dict, folder: Path, *, file: str, key: str, extra: dict) -> None:
    """The checkpoint's weights as float16 ``file`` in the detector folder, and its settings plus
    ``extra`` under ``key`` in that folder's ``config.json`` (the detector's own keys are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}, folder / file)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config[key] = {**state["config"], **extra}
    config_path.write_text(json.dumps(config, indent=1))
