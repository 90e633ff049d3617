"""CROHME inks for the recognizer: reading tarballs and rendering offline, on top of :mod:`common.inkml`.

The InkML parser and renderer are the shared ones (``common.inkml``, also used by the
importer); this module only adds what training and evaluation need on top: iterating a
tarball in archive order, and one rendering convention shared by both sides, so that the
training crops look like the evaluation crops (same height, margin, pen and antialiasing;
training only varies pen width, slant and jitter around the evaluation's fixed values).
"""
from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np

from common.inkml import Ink, InkMLError, parse_inkml
from common.inkml import render_ink as _render

__all__ = ["Ink", "iter_inks", "render_ink", "EVAL_HEIGHT", "EVAL_PEN", "MARGIN"]

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
