"""im2latex style: rectified crops of every region, a formula list and split lists.

* ``images/<image_id>_<k>.png``: region ``k`` of an image, warped by the perspective transform
  that maps its quad (reading order) onto an upright rectangle, so a rotated or tilted
  formula becomes a horizontal crop. Width is the longer of the top and bottom edges, height
  the longer of the left and right edges.
* ``formulas.lst``: one formula per line; the line number (from 0) is the formula's index.
  Formulas are normalised token sequences (``common.latex.normalize``) unless
  ``normalize_latex=False``; a formula never spans two lines (see :func:`formula_line`).
* ``train.lst``, ``validate.lst``, ``test.lst``: ``<crop file> <formula index>`` per line,
  the im2markup layout.

Regions without LaTeX (or whose LaTeX is only spacing), regions flagged ``illegible`` (their LaTeX is the annotator's guess, not a
reading to learn from) and regions whose quad is degenerate are skipped. Crops are adaptations of
the image, so a no-derivatives licence keeps its images out of this format.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image as PILImage

from common.latex import normalize_tokens

from .base import ExportWriter, split_name
from .records import ExportImage, region_quad

ILLEGIBLE = "illegible"
_LIST_NAMES = {"train": "train.lst", "validation": "validate.lst", "test": "test.lst"}


def formula_line(latex: str, *, normalize_latex: bool = True) -> str:
    """`latex` as one line of ``formulas.lst``: space-separated tokens, never a line break.

    The line number is the formula's index, so a line break inside a formula would pair every
    later crop with its neighbour's formula. The tokenizer reads a backslash followed by a line
    break or a tab as one token (TeX's control space, like ``\\ ``), and the normaliser keeps it;
    it is spacing, invisible in a photo, so it is dropped here as ``\\ `` is.
    """
    tokens = normalize_tokens(latex) if normalize_latex else latex.split()
    return " ".join(t for t in tokens if not (t[:1] == "\\" and t[1:].isspace()))


def decode_rgb(data: bytes) -> np.ndarray:
    """HxWx3 uint8 RGB; transparent images are flattened on white (ink may live in alpha)."""
    import io

    from curation.imaging import flatten_to_rgb

    with PILImage.open(io.BytesIO(data)) as img:
        return np.asarray(flatten_to_rgb(img))


def rectify(pixels: np.ndarray, quad: np.ndarray) -> np.ndarray | None:
    """The quad's content warped upright (OpenCV perspective transform); None if degenerate."""
    q = np.asarray(quad, dtype=np.float32)
    width = int(round(max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3]))))
    height = int(round(max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1]))))
    if width < 1 or height < 1:
        return None
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(q, target)
    return cv2.warpPerspective(pixels, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))


def _png(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV only fails on empty arrays, excluded above
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


class Im2LatexWriter(ExportWriter):
    format = "im2latex"
    makes_derivatives = True
    needs_pixels = True

    def __init__(self, sink, *, normalize_latex: bool = True, **kwargs) -> None:
        super().__init__(sink, **kwargs)
        self._normalize = normalize_latex
        self._formulas = sink.part("formulas.lst")
        self._next_formula = 0

    def add(self, image: ExportImage, data: bytes | None) -> bool:
        """Crops of the image's readable regions; False when it gave none (then it is not counted
        among the export's images, its licences or its attribution)."""
        work = [(k, r) for k, r in enumerate(image.regions) if r.latex.strip() and ILLEGIBLE not in r.flags]
        if not work or data is None:
            return False
        pixels = decode_rgb(data)
        written = 0
        split = split_name(image.split)
        listing = self.sink.part(_LIST_NAMES.get(split, f"{split}.lst"))
        for k, region in work:
            latex = formula_line(region.latex, normalize_latex=self._normalize)
            if not latex:  # only spacing: nothing to read in the crop
                continue
            quad = region_quad(region)
            crop = rectify(pixels, quad) if quad is not None else None
            if crop is None:
                continue
            name = f"{image.image_id}_{k}.png"
            self.sink.write(f"images/{name}", _png(crop))
            self._formulas.write((latex + "\n").encode("utf-8"))
            listing.write(f"{name} {self._next_formula}\n".encode())
            self._next_formula += 1
            self.regions += 1
            written += 1
        return written > 0
