"""What the small networks kept beside the detector's weights share (corner refiner, orienter):
their settings' round trip through ``config.json``, the parallel building of their training
views, their learning-rate schedule and their export into the detector's folder."""
from __future__ import annotations

import json
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
