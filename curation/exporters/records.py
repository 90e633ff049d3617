"""The neutral records every export writer reads, and the geometry they share.

The exporters never touch the ORM: the caller (a Celery task over a frozen snapshot)
turns each image with its accepted annotation into an :class:`ExportImage` and hands the
writers an *iterator* of them, so an export of any size runs in constant memory.

Coordinates are pixels of the stored (orientation-corrected) image, ``x`` to the right and
``y`` down. A quad's four points are in reading order of the formula: top-left, top-right,
bottom-right, bottom-left as the text is read (so a rotated or upside-down formula keeps its
reading direction, which the rectified crops rely on). Masks are COCO run-length encodings
(``{"size": [height, width], "counts": str}``, as ``pycocotools.mask.encode`` makes them).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from common import geometry
from common import rle as rle_module

DEFAULT_CATEGORY = "formula"


@dataclass(frozen=True)
class LicenceInfo:
    """A licence and the flags that decide what an export may do with its images."""

    code: str
    name: str = ""
    url: str = ""
    allows_commercial: bool = False
    allows_derivatives: bool = False
    share_alike: bool = False
    requires_attribution: bool = True


@dataclass(frozen=True)
class SourceInfo:
    """Where an image came from and the attribution that must travel with it."""

    name: str
    copyright_holder: str = ""
    attribution: str = ""
    url: str = ""


@dataclass(frozen=True)
class CategoryInfo:
    """A region category of the export (``slug`` is what regions refer to)."""

    slug: str
    name: str = ""


@dataclass
class ExportRegion:
    """One labelled formula region: a quad, a mask, or both, and its LaTeX.

    ``points`` is a 4x2 array (or nested sequence) of pixel coordinates in reading order;
    ``mask_rle`` a COCO RLE dict. ``flags`` are free-form markers such as ``"illegible"``
    (written as ``###`` in ICDAR files) or ``"partial"``. ``category`` is the one category a
    single-label format (COCO, YOLO) files the region under; ``categories`` all of the region's
    categories, for formats that can carry several (JSONL).
    """

    points: np.ndarray | Sequence[Sequence[float]] | None = None
    mask_rle: Mapping | None = None
    latex: str = ""
    category: str | None = None
    flags: tuple[str, ...] = ()
    score: float | None = None
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.points is not None:
            pts = np.asarray(self.points, dtype=np.float64)
            if pts.shape != (4, 2):
                raise ValueError(f"points must be 4x2, got shape {pts.shape}")
            self.points = pts
        if self.points is None and self.mask_rle is None:
            raise ValueError("a region needs points, a mask, or both")

    @property
    def category_slug(self) -> str:
        return self.category or DEFAULT_CATEGORY


@dataclass
class ExportImage:
    """One image of a snapshot with its accepted regions, provenance and split.

    ``open_bytes`` is called at most once per export and only when the format needs the
    pixels, so a labels-only export never reads storage.
    """

    image_id: int
    file_name: str
    width: int
    height: int
    split: str
    licence: LicenceInfo
    source: SourceInfo
    open_bytes: Callable[[], bytes] | None = None
    categories: tuple[str, ...] = ()
    regions: list[ExportRegion] = field(default_factory=list)
    capture_session: str = ""
    # The licence the image's source has now, when the caller knows it. ``licence`` is what a
    # snapshot froze; a catalogue correction or a changed source since then may forbid more,
    # and what the rights holder allows today is what may be given out: the stricter decides.
    current_licence: LicenceInfo | None = None
    # Set when the image was taken down after the freeze ("copyright", "personal_data", "other"):
    # the export leaves it out without reading its pixels, counts it under its reason and
    # lists it in TAKEDOWNS.json.
    taken_down: str = ""
    taken_down_on: str = ""


# --- geometry shared by the writers -------------------------------------------------------

def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a binary HxW mask, with ``counts`` as text so it is JSON-ready."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_to_mask(rle: Mapping) -> np.ndarray:
    """The HxW uint8 mask of a COCO RLE (compressed text/bytes or uncompressed counts)."""
    return mask_utils.decode(_pyco_rle(rle))


def _pyco_rle(rle: Mapping) -> dict:
    counts = rle["counts"]
    h, w = rle["size"]
    if isinstance(counts, list):  # uncompressed RLE, as in iscrowd COCO files
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def rle_area_bbox(rle: Mapping) -> tuple[float, list[float]]:
    """Pixel area and ``[x, y, w, h]`` box of a mask, computed on the RLE without decoding."""
    r = _pyco_rle(rle)
    return float(mask_utils.area(r)), [float(v) for v in mask_utils.toBbox(r)]


def quad_area(quad: Sequence[float]) -> float:
    """Area of a simple polygon given as flat ``[x1, y1, x2, y2, ...]`` (shoelace formula).

    Plain Python on eight floats: this runs once per region on the export hot path, where
    numpy's per-call overhead would cost more than the arithmetic.
    """
    if len(quad) == 8:
        x1, y1, x2, y2, x3, y3, x4, y4 = quad
        twice = (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y4 - x4 * y3) + (x4 * y1 - x1 * y4)
    else:
        xs, ys = quad[0::2], quad[1::2]
        n = len(xs)
        twice = sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))
    return abs(twice) / 2.0


def quad_bbox(quad: Sequence[float]) -> list[float]:
    """``[x, y, w, h]`` of a flat coordinate list."""
    xs, ys = quad[0::2], quad[1::2]
    x0, y0 = min(xs), min(ys)
    return [x0, y0, max(xs) - x0, max(ys) - y0]


def mask_quad(rle: Mapping) -> np.ndarray | None:
    """The minimum-area rotated rectangle around a mask, in reading order (None if empty).

    The order is :func:`common.geometry.mask_quad`'s (first edge a long side, read left to
    right), shared with evaluation, so a formula turned past 45° is not exported sideways.
    """
    window = _mask_window(rle)
    if window is None:
        return None
    x0, y0, m = window
    quad = geometry.mask_quad(m, offset=(x0, y0))
    return None if quad is None else np.asarray(quad, dtype=np.float64)


def _mask_window(rle: Mapping) -> tuple[int, int, np.ndarray] | None:
    """``(x0, y0, uint8 window)`` of a mask's bounding box with one pixel of zeros around it (where
    the image leaves room), so that outlines traced in it are the whole mask's, moved by (x0, y0);
    None for an empty mask. Only the box is drawn (:func:`common.rle.decode_window`); a mask whose
    runs are not canonical COCO (never stored here) falls back to a full decode."""
    try:
        return rle_module.decode_window(_text_rle(rle), pad=1)
    except rle_module.MaskError:
        m = rle_to_mask(rle)
        return (0, 0, m) if m.any() else None


def _text_rle(rle: Mapping) -> dict:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": list(rle["size"]), "counts": counts}


def mask_polygon(rle: Mapping, *, epsilon: float = 1.0) -> np.ndarray | None:
    """The outline of a mask's largest component, simplified to within ``epsilon`` pixels."""
    window = _mask_window(rle)
    if window is None:
        return None
    x0, y0, m = window
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    poly = cv2.approxPolyDP(largest, epsilon, True).reshape(-1, 2).astype(np.float64)
    return poly if len(poly) >= 3 else None


def region_quad(region: ExportRegion) -> np.ndarray | None:
    """The region's quad, or one fitted around its mask for quad-only formats."""
    if region.points is not None:
        return region.points
    return mask_quad(region.mask_rle)
