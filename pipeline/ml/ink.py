"""Minimal CROHME InkML reading and offline rendering for training data.

A private stand-in until ``common/inkml.py`` (the importer's parser) lands on main; it reads
only what training needs: the truth LaTeX and the strokes. Coordinates are device units
(ints in some files, floats in others), so strokes are rescaled to a fixed target height.
"""
from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Ink:
    """One handwritten formula: its truth LaTeX and its strokes (each an (n, 2) float array)."""

    name: str
    truth: str
    strokes: list[np.ndarray]


def parse_inkml(data: bytes, name: str = "") -> Ink:
    """Parse InkML bytes; raises ValueError on malformed XML or when the truth is missing."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"{name}: not well-formed InkML ({exc})") from exc
    truth = None
    strokes = []
    for node in root:
        tag = node.tag.rsplit("}", 1)[-1]
        if tag == "annotation" and node.get("type") == "truth" and truth is None:
            truth = (node.text or "").strip()
        elif tag == "trace":
            pts = []
            for chunk in (node.text or "").split(","):
                vals = chunk.split()
                if len(vals) >= 2:
                    try:
                        pts.append((float(vals[0]), float(vals[1])))
                    except ValueError:
                        continue
            if pts:
                strokes.append(np.asarray(pts, dtype=np.float32))
    if truth is None:
        raise ValueError(f"{name}: no truth annotation")
    if not strokes:
        raise ValueError(f"{name}: no strokes")
    return Ink(name=name, truth=truth, strokes=strokes)


def iter_inks(tar_path, *, skip_errors: bool = True) -> Iterator[Ink]:
    """Every parsable ink in a CROHME tarball, in archive order (deterministic)."""
    with tarfile.open(tar_path) as tf:
        for member in tf:
            if not member.isfile() or not member.name.endswith(".inkml"):
                continue
            try:
                yield parse_inkml(tf.extractfile(member).read(), member.name)
            except ValueError:
                if not skip_errors:
                    raise


def render_ink(ink: Ink, *, height: int = 64, pen: float = 2.0, slant: float = 0.0, jitter: float = 0.0,
               margin: int = 4, rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw strokes as a uint8 grayscale image (255 paper, 0 ink) of the given height.

    ``slant`` shears x by ``slant * y`` (italic handwriting), ``jitter`` adds Gaussian noise to the
    points in units of the rendered height.
    """
    rng = rng or np.random.default_rng(0)
    pts = np.concatenate(ink.strokes)
    mn, mx = pts.min(0), pts.max(0)
    span_y = max(float(mx[1] - mn[1]), 1e-6)
    span_x = max(float(mx[0] - mn[0]), 1e-6)
    # very flat formulas (a single "-") would otherwise blow up; cap the scale by the width too
    inner = height - 2 * margin - pen
    scale = min(inner / span_y, 8 * inner / span_x) if span_y > 0 else 1.0
    out_strokes = []
    for s in ink.strokes:
        p = (s - mn) * scale
        p[:, 0] += slant * (inner - p[:, 1])
        if jitter:
            p += rng.normal(0, jitter * height, p.shape)
        out_strokes.append(p)
    allp = np.concatenate(out_strokes)
    off = allp.min(0) - margin - pen
    width = int(np.ceil(allp[:, 0].max() - off[0] + margin + pen)) + 1
    img = np.full((height, max(width, 8)), 255, np.uint8)
    thick = max(1, int(round(pen)))
    for p in out_strokes:
        q = np.round((p - off) * 4).astype(np.int32)  # 2 bits of sub-pixel precision
        if len(q) == 1:
            cv2.circle(img, tuple(int(v) for v in q[0]), max(1, thick * 2), 0, -1, cv2.LINE_AA, shift=2)
        else:
            cv2.polylines(img, [q.reshape(-1, 1, 2)], False, 0, thick, cv2.LINE_AA, shift=2)
    return img
