"""COCO run-length encoded masks (pycocotools): encode, decode, validate.

The stored form is COCO's compressed RLE: {"size": [height, width], "counts": str}.
Uncompressed RLE (counts as a list of ints) is accepted on input and compressed.
"""
from __future__ import annotations

import warnings

import numpy as np
from pycocotools import mask as mask_utils

# Uncompressed counts longer than this cannot describe a real image mask cheaply.
MAX_COUNTS_LENGTH = 5_000_000
MAX_MASK_PIXELS = 2**31 - 1


class MaskError(ValueError):
    """A mask is unusable; the message says why, for a person."""


def encode(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of a 2-D boolean/0-1 array."""
    if mask.ndim != 2:
        raise MaskError("A mask must be a 2-D array.")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _to_coco(rle: object) -> dict:
    if not isinstance(rle, dict) or set(rle) - {"size", "counts"} or not {"size", "counts"} <= set(rle):
        raise MaskError('A mask must be COCO RLE: {"size": [height, width], "counts": ...}.')
    size = rle["size"]
    if (not isinstance(size, list | tuple) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise MaskError("The mask size must be [height, width] with positive integers.")
    h, w = int(size[0]), int(size[1])
    if h * w > MAX_MASK_PIXELS:
        # pycocotools counts pixels in 32 bits: a larger size overflowed inside it (a 500), and no
        # image stored here comes near it (MATHSET_MAX_IMAGE_PIXELS).
        raise MaskError(f"The mask size {h}x{w} is larger than any image.")
    counts = rle["counts"]
    if isinstance(counts, str):
        if not counts or len(counts) > MAX_COUNTS_LENGTH or not counts.isascii():
            raise MaskError("The mask counts are not valid compressed RLE.")
        return {"size": [h, w], "counts": counts.encode("ascii")}
    if isinstance(counts, list | tuple):
        if len(counts) > MAX_COUNTS_LENGTH or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
        ):
            raise MaskError("Uncompressed mask counts must be non-negative integers.")
        if sum(counts) != h * w:
            raise MaskError(f"The mask counts cover {sum(counts)} pixels, not {h}x{w}.")
        return mask_utils.frPyObjects({"size": [h, w], "counts": list(counts)}, h, w)
    raise MaskError("The mask counts must be a string (compressed) or a list of integers.")


def decode(rle: object) -> np.ndarray:
    """The boolean mask of a COCO RLE (compressed or not)."""
    coco = _to_coco(rle)
    h, w = coco["size"]
    try:
        with warnings.catch_warnings():  # pycocotools' numpy-2 copy= deprecation, not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            arr = mask_utils.decode(coco)
    except Exception as exc:  # pycocotools raises bare Exceptions on garbage
        raise MaskError(f"The mask does not decode: {exc}") from None
    if arr.shape != (h, w):
        raise MaskError("The mask does not decode to its declared size.")
    # pycocotools decodes many garbage strings without complaint (runs past the end
    # are cut off silently). Every COCO encoder writes the one canonical string of a
    # mask, so a string that does not come back unchanged is not a mask of this size.
    if mask_utils.encode(np.asfortranarray(arr))["counts"] != coco["counts"]:
        raise MaskError("The mask counts are not valid RLE for its size.")
    return arr.astype(bool)


def validate(rle: object, *, width: int, height: int) -> dict:
    """Check a mask against its image and return it as compressed RLE.

    Raises MaskError if it is not RLE, does not decode, has another size than the
    image, or covers no pixel.
    """
    coco = _to_coco(rle)
    h, w = coco["size"]
    if (h, w) != (height, width):
        raise MaskError(f"The mask is {w}x{h} but the image is {width}x{height}.")
    arr = decode(rle)
    if not arr.any():
        raise MaskError("The mask is empty.")
    return encode(arr)


def area(rle: dict) -> int:
    """Pixels covered by a (valid) compressed RLE."""
    return int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))


def mask_iou(a: dict, b: dict) -> float:
    """Intersection over union of two masks of the same size."""
    ra = {"size": a["size"], "counts": a["counts"].encode("ascii")}
    rb = {"size": b["size"], "counts": b["counts"].encode("ascii")}
    return float(mask_utils.iou([ra], [rb], [0])[0][0])
