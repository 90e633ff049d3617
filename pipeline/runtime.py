"""Model loading for workers and commands: each model version is loaded once per process.

``reader_for(detector_version, recognizer_version)`` returns a ready predictor and caches it by
version (id, weights digest and settings), so a Celery worker process pays the load cost once, not
per task; only the ``MATHSET_MODEL_CACHE`` (default 3) most recently used are kept. Uploaded
versions are copied from storage to a per-process temporary folder first; HTTP versions
become an :class:`HttpPredictor` that talks to the external endpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from django.conf import settings
from django.core.files.storage import default_storage

from . import endpoints
from .ml.imageio import decode_rgb
from .ml.inference import WEIGHTS_DIR, FormulaReader

_cache: OrderedDict[tuple, object] = OrderedDict()  # least recently used first
_lock = threading.Lock()


class ExternalModelError(RuntimeError):
    """An external model answered with an HTTP error or with something that breaks the contract."""


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ExternalModelError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _checked_region(region, where: str, max_latex: int) -> dict:
    """A region of the contract with its numbers as floats; ExternalModelError says what is wrong."""
    if not isinstance(region, dict):
        raise ExternalModelError(f"{where} must be an object")
    points = region.get("points")
    if not isinstance(points, list) or len(points) != 4 or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
        raise ExternalModelError(f"{where}.points must be 4 [x, y] pairs")
    out = dict(region)
    out["points"] = [[_number(x, f"{where}.points"), _number(y, f"{where}.points")] for x, y in points]
    for key in ("score", "latex_confidence"):
        if region.get(key) is not None:
            out[key] = _number(region[key], f"{where}.{key}")
            # probabilities: the queue orders by them, evaluation scores them as such
            if not 0.0 <= out[key] <= 1.0:
                raise ExternalModelError(f"{where}.{key} must be a probability between 0 and 1, got {region[key]!r}")
    latex = region.get("latex", "")
    if latex is None:
        latex = ""
    if not isinstance(latex, str):
        raise ExternalModelError(f"{where}.latex must be a string")
    if len(latex) > max_latex:
        raise ExternalModelError(f"{where}.latex is {len(latex)} characters long; at most {max_latex} are allowed")
    out["latex"] = latex
    return out


class HttpPredictor:
    """An external full-pipeline model reached over HTTP, like a Label Studio ML backend.

    Request: ``POST endpoint_url`` with ``{"images": [url, ...]}``; the URLs are absolute and
    signed (:mod:`curation.signed_urls`), so the model fetches them without a login. Response:
    ``{"results": [{"regions": [{"points": [[x, y] x 4], "score": s, "latex": "...",
    "latex_confidence": c}]}]}`` with one result per image, in order (``score``, ``latex`` and
    ``latex_confidence`` optional). An HTTP error status or a response that breaks this
    contract raises :class:`ExternalModelError` naming what is wrong; a connection failure or
    timeout raises the ``requests`` exception (an ``OSError``, retried by the Celery task).

    `timeout` (seconds; by default the setting `MATHSET_MODEL_TIMEOUT_S`, read at each call) is
    the deadline of one call in all (:class:`pipeline.endpoints.Deadline`): resolving, connecting,
    sending, and the whole answer, status, headers and body (which is read and parsed). A model
    that drips its answer, each byte within a socket timeout, is cut off there with a
    ``requests.Timeout`` naming the deadline (and the setting), instead of holding a pre-labeling
    worker until Celery's time limit (or an evaluation's worker for hours).

    `max_bytes` (by default `MATHSET_MODEL_MAX_RESPONSE_BYTES`) caps the answer's body, as its
    Content-Length declares or as read (decoded): a model answering more (broken, or hostile) would
    fill the worker's memory. Past it the call stops reading and raises :class:`ExternalModelError`
    naming the cap and the setting: an answer too large is a broken answer, like one that is not
    JSON, not a network error. The same request would be answered the same, so it is not retried:
    pre-labeling fails the request's items with the reason (the job's "retry failed" sends them
    again, after the model or the setting is mended), an evaluation fails the run.
    """

    TIMEOUT_SETTING = "MATHSET_MODEL_TIMEOUT_S"
    MAX_BYTES_SETTING = "MATHSET_MODEL_MAX_RESPONSE_BYTES"

    def __init__(self, endpoint_url: str, timeout: float | None = None, max_bytes: int | None = None):
        self.endpoint_url = endpoint_url
        self.timeout, self.max_bytes = timeout, max_bytes

    def _deadline(self) -> endpoints.Deadline:
        """The bounds of one call: given, or the settings' as they are now (named in the errors)."""
        seconds, setting = ((self.timeout, "") if self.timeout is not None
                            else (settings.MATHSET_MODEL_TIMEOUT_S, self.TIMEOUT_SETTING))
        cap = self.max_bytes if self.max_bytes is not None else settings.MATHSET_MODEL_MAX_RESPONSE_BYTES
        return endpoints.Deadline(seconds, setting=setting, max_bytes=cap, max_bytes_setting=self.MAX_BYTES_SETTING)

    @property
    def reading(self) -> dict:
        """How it reads, as ``FormulaReader.reading``: nothing known, the model's settings are its own."""
        return {}

    def read_urls(self, urls: list[str]) -> list[dict]:
        """One checked result (``{"regions": [...]}``) per URL, in order."""
        # Redirects are not followed: requests would turn the POST into a GET of wherever the
        # endpoint points (e.g. a cloud metadata address inside our network) and the answer's text
        # would come back to the model team in the error below. A model is reached at its own address.
        # Checked before every call, not only at registration: the name may point elsewhere now;
        # and the call connects to the address checked, not to a second answer for the name.
        try:
            resp = endpoints.post(self.endpoint_url, json={"images": urls}, timeout=self._deadline())
        except endpoints.EndpointRefused as exc:
            raise ExternalModelError(f"external model {endpoints.redacted(self.endpoint_url)} is not called: {exc}") from None
        except endpoints.ResponseTooLarge as exc:  # deterministic: the items fail, no retry (see above)
            raise ExternalModelError(f"external model {endpoints.redacted(self.endpoint_url)} answered too much, "
                                     f"nothing of it was used: {exc}") from None
        if 300 <= resp.status_code < 400:
            raise ExternalModelError(f"external model {endpoints.redacted(self.endpoint_url)} answered HTTP {resp.status_code} (a redirect, "
                                     "not followed): register the model's own address")
        if resp.status_code >= 400:
            raise ExternalModelError(f"external model {endpoints.redacted(self.endpoint_url)} answered HTTP {resp.status_code}: "
                                     f"{resp.text[:300]}")
        try:
            body = resp.json()
        except ValueError:
            raise ExternalModelError(f"external model {endpoints.redacted(self.endpoint_url)} answered with something that is not "
                                     f"JSON: {resp.text[:200]!r}") from None
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(urls):
            got = len(results) if isinstance(results, list) else type(results).__name__
            raise ExternalModelError(f"external model returned a malformed response: need \"results\" with one "
                                     f"result per image ({len(urls)}), got {got}")
        # the limits an annotation has: a model's answer is stored and becomes a pre-label
        from labeling.services import MAX_LATEX_LENGTH, MAX_REGIONS

        out = []
        for n, result in enumerate(results):
            regions = result.get("regions") if isinstance(result, dict) else None
            if not isinstance(regions, list) or len(regions) > MAX_REGIONS:
                raise ExternalModelError(f"external model returned a malformed response: results[{n}].regions "
                                         f"must be a list of at most {MAX_REGIONS} regions")
            try:
                checked = [_checked_region(r, f"results[{n}].regions[{k}]", MAX_LATEX_LENGTH)
                           for k, r in enumerate(regions)]
            except ExternalModelError as exc:
                raise ExternalModelError(f"external model returned a malformed response: {exc}") from None
            out.append({**result, "regions": checked})
        return out


def _folder_for(version) -> Path:
    """A local folder holding ``config.json`` and ``weights.pt``/``model.ts`` (and a detector's
    ``refiner.pt`` / ``orienter.pt`` where it brought them) for a version."""
    if version.source == "builtin":
        return WEIGHTS_DIR / version.kind
    folder = Path(tempfile.gettempdir()) / "mathset-models" / f"{version.kind}-{version.pk}-{version.weights_sha256[:12]}"
    if (folder / "config.json").exists():
        return folder
    # Copied into a folder of its own and moved into place whole: worker processes starting on a
    # new version at once used to write the same files, one truncating weights.pt while another,
    # already seeing config.json, loaded it.
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        target = "model.ts" if version.format == "torchscript" else "weights.pt"
        with default_storage.open(version.weights, "rb") as src:
            (staging / target).write_bytes(src.read())
        for file, stored in (version.side_files or {}).items():  # refiner.pt, orienter.pt
            with default_storage.open(stored, "rb") as src:
                (staging / file).write_bytes(src.read())
        (staging / "config.json").write_text(json.dumps(version.config or {}))
        if folder.exists() and not (folder / "config.json").exists():
            # an incomplete copy left by a worker killed while copying in place (as they once did);
            # one moved in whole always holds config.json and may be in use: never removed
            shutil.rmtree(folder, ignore_errors=True)
        try:
            staging.rename(folder)
        except OSError:  # another process moved its copy in first: the same files, keep that one
            if not (folder / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _fingerprint(version) -> tuple:
    """What a loaded copy of ``version`` depends on. The builtin row keeps its id when
    ``calibrate_recognizer`` rewrites its config.json (``services.model_version_builtin`` follows),
    so the settings are part of it: a worker then reads with the new calibration, not the old one."""
    if version is None:
        return (None,)
    config = hashlib.sha256(json.dumps(version.config or {}, sort_keys=True).encode()).hexdigest()
    return (version.pk, version.weights_sha256, config)


def reader_for(detector_version, recognizer_version=None):
    """The (cached) predictor for these versions: a FormulaReader or an HttpPredictor (whose deadline
    and cap on an answer are the settings `MATHSET_MODEL_TIMEOUT_S` and
    `MATHSET_MODEL_MAX_RESPONSE_BYTES`, read at each call)."""
    key = _fingerprint(detector_version) + _fingerprint(recognizer_version)
    if detector_version.source == "http":
        key += (detector_version.endpoint_url,)  # a predictor is only its URL: never serve a stale one
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        if detector_version.source == "http":
            reader = HttpPredictor(detector_version.endpoint_url)
        else:
            # workers share the CPU with their siblings: one torch thread each unless told otherwise
            torch.set_num_threads(int(os.environ.get("MATHSET_TORCH_THREADS", "1")))
            reader = FormulaReader(_folder_for(detector_version), _folder_for(recognizer_version))
        _cache[key] = reader
        # a worker lives for weeks: every version it ever read with (each activation, each evaluated
        # candidate) stayed loaded, and its memory grew with each until it was killed. A job in
        # progress holds its own reference, so dropping one here never pulls a model from under it.
        while len(_cache) > max(int(os.environ.get("MATHSET_MODEL_CACHE", "3")), 1):
            _cache.popitem(last=False)
        return reader


def clear_cache() -> None:
    """Forget loaded models (tests; after a version's file changes)."""
    with _lock:
        _cache.clear()


def load_rgb(data: bytes) -> np.ndarray:
    """Decode image bytes to RGB uint8; raises ValueError for corrupt or unreadable files."""
    return decode_rgb(data)
