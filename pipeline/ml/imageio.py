"""Decoding images for the models: any Pillow format to RGB uint8, transparency onto white."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def to_8bit(img: Image.Image) -> Image.Image:
    """`img` with 16-bit and 32-bit grey ("I;16", "I", "F") scaled to 8-bit "L".

    Pillow's own conversion clips them at 255, so a 16-bit scan (paper near 60000, ink
    near 8000) became a white page: the ink vanished from thumbnails, hashes and the models'
    input (ingest keeps such files as they are; curation.imaging uses this too)."""
    if img.mode.startswith("I;16"):
        arr = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
    elif img.mode == "I":
        arr = np.asarray(img)
        if arr.size and arr.max() > 255:
            arr = arr // 257
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    else:
        return img
    return Image.fromarray(arr, "L")


def decode_rgb(data: bytes) -> np.ndarray:
    """Image bytes → H x W x 3 uint8 (EXIF orientation applied; 16-bit and float grey scaled, not
    clipped, by `to_8bit`; transparent pixels become white paper).

    Raises ValueError for corrupt or unreadable data.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im = to_8bit(ImageOps.exif_transpose(im))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, rgba)
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - every decoder error means the same thing: corrupt image
        raise ValueError(f"cannot decode image: {exc}") from exc


def read_rgb(path: str | Path) -> np.ndarray:
    return decode_rgb(Path(path).read_bytes())


def ink_box(rgb: np.ndarray, threshold: int = 200) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of dark pixels, or None for a blank image."""
    gray = rgb.mean(-1) if rgb.ndim == 3 else rgb
    ink = gray < threshold
    # row and column projections: ~10x faster than np.nonzero on a mostly blank page
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(cols) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_to_ink(gray: np.ndarray, *, margin: int = 6) -> np.ndarray | None:
    """The ink's bounding box (:func:`ink_box`) plus ``margin`` paper pixels, or None when blank.

    A copy, not a view: a view would keep the whole page alive (a 200-dpi page is ~4 MB, its formula
    ~50 kB), and a caller keeping thousands of crops ran out of memory that way."""
    box = ink_box(gray)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return gray[max(y0 - margin, 0):y1 + margin, max(x0 - margin, 0):x1 + margin].copy()
