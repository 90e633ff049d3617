"""Model loading for workers and commands: each model version is loaded once per process.

``reader_for(detector_version, recognizer_version)`` returns a ready predictor and caches it by
version ids, so a Celery worker process pays the load cost once, not per task. Uploaded
versions are copied from storage to a per-process temporary folder first; HTTP versions
become an :class:`HttpPredictor` that talks to the external endpoint.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import requests
import torch
from django.core.files.storage import default_storage

from .ml.imageio import decode_rgb
from .ml.inference import WEIGHTS_DIR, FormulaReader

_cache: dict[tuple, object] = {}
_lock = threading.Lock()


class HttpPredictor:
    """An external model reached over HTTP, like a Label Studio ML backend.

    Request: ``POST endpoint_url`` with ``{"images": [url, ...]}``. Response: ``{"results":
    [{"regions": [{"points": [[x, y] x 4], "score": s, "latex": "...", "latex_confidence": c}]}]}``
    with one result per image, in order.
    """

    def __init__(self, endpoint_url: str, timeout: float = 60):
        self.endpoint_url = endpoint_url
        self.timeout = timeout

    def read_urls(self, urls: list[str]) -> list[dict]:
        resp = requests.post(self.endpoint_url, json={"images": urls}, timeout=self.timeout)
        resp.raise_for_status()
        results = resp.json().get("results")
        if not isinstance(results, list) or len(results) != len(urls):
            raise ValueError("external model returned a malformed response (need one result per image)")
        return results


def _folder_for(version) -> Path:
    """A local folder holding ``config.json`` and ``weights.pt``/``model.ts`` for a version."""
    if version.source == "builtin":
        return WEIGHTS_DIR / version.kind
    folder = Path(tempfile.gettempdir()) / "mathset-models" / f"{version.kind}-{version.pk}-{version.weights_sha256[:12]}"
    if not (folder / "config.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        target = "model.ts" if version.format == "torchscript" else "weights.pt"
        with default_storage.open(version.weights, "rb") as src:
            (folder / target).write_bytes(src.read())
        (folder / "config.json").write_text(json.dumps(version.config or {}))
    return folder


def reader_for(detector_version, recognizer_version=None):
    """The (cached) predictor for these versions: a FormulaReader or an HttpPredictor."""
    key = (getattr(detector_version, "pk", None), getattr(recognizer_version, "pk", None))
    with _lock:
        if key not in _cache:
            if detector_version.source == "http":
                _cache[key] = HttpPredictor(detector_version.endpoint_url)
            else:
                # workers share the CPU with their siblings: one torch thread each unless told otherwise
                torch.set_num_threads(int(os.environ.get("MATHSET_TORCH_THREADS", "1")))
                _cache[key] = FormulaReader(_folder_for(detector_version), _folder_for(recognizer_version))
        return _cache[key]


def clear_cache() -> None:
    """Forget loaded models (tests; after a version's file changes)."""
    with _lock:
        _cache.clear()


def load_rgb(data: bytes) -> np.ndarray:
    """Decode image bytes to RGB uint8; raises ValueError for corrupt or unreadable files."""
    return decode_rgb(data)
