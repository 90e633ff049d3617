"""CROHME inks for the recognizer: reading tarballs and rendering offline, on top of :mod:`common.inkml`.

The InkML parser and renderer are the shared ones (``common.inkml``, also used by the
importer); this module only adds what training and evaluation need on top: iterating a
tarball in archive order, and one rendering convention shared by both sides, so that the
training crops look like the evaluation crops (same height, margin, pen and antialiasing;
training only varies pen width, slant and jitter around the evaluation's fixed values).
"""
from __future__ import annotations

import dataclasses
import tarfile
from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np

from common.inkml import Ink, InkMLError, parse_inkml
from common.inkml import render_ink as _render

__all__ = ["Ink", "iter_inks", "render_ink", "distort_symbols", "EVAL_HEIGHT", "EVAL_PEN", "MARGIN"]

# The fixed evaluation rendering of the CROHME test inks (issue 5: "rendered offline at a fixed size").
EVAL_HEIGHT = 64
EVAL_PEN = 2.0
MARGIN = 4


def iter_inks(tar_path, *, skip_errors: bool = True) -> Iterator[tuple[str, Ink]]:
    """(member name, ink) for every parsable ink with a truth in a CROHME tarball, in archive order.

    A file without a truth annotation (one in the 2016 training set) or that is not usable
    InkML is skipped, unless ``skip_errors`` is false.
    """
    with tarfile.open(tar_path) as tf:
        for member in tf:
            if not member.isfile() or not member.name.endswith(".inkml"):
                continue
            try:
                ink = parse_inkml(tf.extractfile(member).read(), name=PurePosixPath(member.name).name)
            except InkMLError:
                if not skip_errors:
                    raise
                continue
            if ink.truth is None:
                if not skip_errors:
                    raise InkMLError(f"{member.name}: no truth annotation")
                continue
            yield member.name, ink


def render_ink(ink: Ink, *, height: int = EVAL_HEIGHT, pen: float = EVAL_PEN, slant: float = 0.0,
               jitter: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 grayscale (255 paper, 0 ink) of ``height`` pixels; ``jitter`` is in output pixels."""
    return np.asarray(_render(ink, height=height, pen_width=pen, slant=slant, jitter=jitter, margin=MARGIN,
                              rng=rng))


def distort_symbols(ink: Ink, rng: np.random.Generator, *, shift: float = 0.08, scale: float = 0.1,
                    rotate: float = 5.0, stretch: float = 0.15) -> Ink:
    """A new drawing of the same formula: every symbol moved, resized and turned a little.

    The writers of the 8,834 training inks wrote each formula once; the recognizer learns their
    layouts by heart. Each symbol of the file's segmentation (``ink.symbols``) is scaled by
    ``exp(N(0, scale))``, turned by ``N(0, rotate)`` degrees about its own centre and moved by
    ``N(0, shift)`` times the median symbol size (each clipped at two standard deviations, so a
    subscript stays a subscript); then the whole formula is stretched in width by
    ``exp(U(-stretch, stretch))``. Strokes outside any symbol stay where they are; an ink without
    a segmentation is only stretched. The truth does not change.
    """
    traces = [t[:, :2].astype(np.float64, copy=True) for t in ink.traces]
    groups = [idx for _, idx in ink.symbols if idx]
    if groups:
        sizes = []
        for idx in groups:
            pts = np.concatenate([traces[i] for i in idx])
            sizes.append(float(np.ptp(pts, axis=0).max()))
        unit = float(np.median(sizes)) or 1.0
        moved: set[int] = set()
        for idx in groups:
            idx = [i for i in idx if i not in moved]
            if not idx:
                continue
            moved.update(idx)
            pts = np.concatenate([traces[i] for i in idx])
            centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
            s = float(np.exp(np.clip(rng.normal(0, scale), -2 * scale, 2 * scale)))
            a = np.radians(float(np.clip(rng.normal(0, rotate), -2 * rotate, 2 * rotate)))
            d = np.clip(rng.normal(0, shift, 2), -2 * shift, 2 * shift) * unit
            m = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            for i in idx:
                traces[i] = (traces[i] - centre) @ m.T + centre + d
    fx = float(np.exp(rng.uniform(-stretch, stretch)))
    for t in traces:
        t[:, 0] *= fx
    return dataclasses.replace(ink, traces=traces)
