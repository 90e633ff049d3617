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


def _runs_of(counts: bytes) -> np.ndarray:
    """The run lengths a compressed counts string writes (int64), without drawing the mask.

    COCO writes each run in 5-bit characters ('0' + value, bit 0x20 = another follows, the last
    one's 0x10 = negative), runs after the second as the difference to the run two before. A
    string any COCO encoder would not write (a character outside its alphabet, a run left
    unfinished or written longer than needed) raises MaskError.
    """
    c = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if (c < 0).any():
        raise MaskError("The mask does not decode: a character outside COCO's RLE alphabet.")
    if (c > 63).any():
        raise MaskError("The mask counts are not valid RLE for its size.")
    last = (c & 0x20) == 0                     # the last character of each run
    if not last[-1]:
        raise MaskError("The mask counts are not valid RLE for its size.")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 7:                       # 35 bits: more than any run of an image needs
        raise MaskError("The mask counts are not valid RLE for its size.")
    group = np.repeat(np.arange(len(ends)), lengths)
    k = np.arange(len(c)) - starts[group]       # the character's place in its run
    x = np.bincount(group, weights=((c & 0x1F) << (5 * k)).astype(np.float64), minlength=len(ends))
    x = x.astype(np.int64)                      # < 2**35: exact in a float64
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.int64(1) << (5 * lengths[negative])
    # Written in as few characters as the value needs, as every encoder does.
    shorter = 5 * (lengths - 1) - 1
    fits_shorter = (lengths > 1) & (x >= -(np.int64(1) << shorter)) & (x < (np.int64(1) << shorter))
    if fits_shorter.any():
        raise MaskError("The mask counts are not valid RLE for its size.")
    runs = x.copy()
    if len(runs) > 3:                           # deltas: run i is run i-2 plus x[i], from i = 3
        runs[3::2] = runs[1] + np.cumsum(x[3::2])
        runs[4::2] = runs[2] + np.cumsum(x[4::2])
    return runs


def _compressed(runs: np.ndarray) -> bytes:
    """The counts string COCO writes for `runs` (canonical: no zero-length run but the first)."""
    h = int(runs.sum())
    coco = mask_utils.frPyObjects({"size": [h, 1], "counts": [int(v) for v in runs]}, h, 1)
    return coco["counts"]


def _canonical_runs(runs: np.ndarray) -> np.ndarray:
    """`runs` (alternating out/in, starting out) with zero-length runs merged away."""
    values = np.arange(len(runs)) % 2
    keep = runs > 0
    runs, values = runs[keep], values[keep]
    if not len(runs):
        return np.zeros(1, np.int64)
    change = np.concatenate(([True], values[1:] != values[:-1]))
    merged = np.add.reduceat(runs, np.flatnonzero(change))
    if values[0] == 1:                          # starts with mask pixels: an empty first run
        merged = np.concatenate(([0], merged))
    return merged


def validate(rle: object, *, width: int, height: int) -> dict:
    """Check a mask against its image and return it as compressed RLE.

    Raises MaskError if it is not RLE, does not decode, has another size than the
    image, or covers no pixel.

    Works on the runs, never on the pixels: a 48 MP photo's mask would be a 48 MB array to
    decode (and as much again to encode back), for each of the 20-60 masks of a page.
    """
    coco = _to_coco(rle)
    h, w = coco["size"]
    if (h, w) != (height, width):
        raise MaskError(f"The mask is {w}x{h} but the image is {width}x{height}.")
    if isinstance(coco["counts"], bytes) and isinstance(rle["counts"], str):
        runs = _runs_of(coco["counts"])
        # What a COCO encoder writes: a first run of 0 or more pixels out, then runs of at
        # least one pixel, alternating, covering the image exactly.
        if runs[0] < 0 or (runs[1:] <= 0).any():
            raise MaskError("The mask counts are not valid RLE for its size.")
        if int(runs.sum()) != h * w:
            raise MaskError("The mask counts are not valid RLE for its size.")
        counts = coco["counts"]
    else:                                       # uncompressed: any zero-length runs merged
        runs = _canonical_runs(np.asarray(rle["counts"], dtype=np.int64))
        counts = _compressed(runs)
    if not runs[1::2].any():
        raise MaskError("The mask is empty.")
    return {"size": [h, w], "counts": counts.decode("ascii")}


def area(rle: dict) -> int:
    """Pixels covered by a (valid) compressed RLE."""
    return int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))


def mask_iou(a: dict, b: dict) -> float:
    """Intersection over union of two masks of the same size."""
    ra = {"size": a["size"], "counts": a["counts"].encode("ascii")}
    rb = {"size": b["size"], "counts": b["counts"].encode("ascii")}
    return float(mask_utils.iou([ra], [rb], [0])[0][0])


# --- bounding box and cropped decode, from the runs --------------------------------------------
# An export that needs only a mask's box, its quad or its outline reads the pixels of the mask's
# bounding box, not the whole photo: a 48 MP photo's mask is a 48 MB array to decode (and
# OpenCV's copies of it), for a formula that covers a few hundred thousand pixels of it.

def _in_intervals(rle: object) -> tuple[int, int, np.ndarray, np.ndarray]:
    """``(height, width, starts, ends)``: the mask's runs of pixels in, as column-major flat
    indices (``ends`` exclusive). Raises MaskError where :func:`decode` would find no mask."""
    coco = _to_coco(rle)
    h, w = coco["size"]
    if isinstance(rle["counts"], str):
        runs = _runs_of(coco["counts"])
    else:
        runs = np.asarray(rle["counts"], dtype=np.int64)
    if (runs < 0).any() or int(runs.sum()) != h * w:
        raise MaskError("The mask counts are not valid RLE for its size.")
    ends_all = np.cumsum(runs)
    starts_all = ends_all - runs
    starts, ends = starts_all[1::2], ends_all[1::2]
    keep = ends > starts
    return h, w, starts[keep], ends[keep]


def bbox(rle: object) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of the pixels a mask covers (x1, y1 exclusive), None when it covers
    none; computed from the runs, without drawing the mask."""
    h, _, starts, ends = _in_intervals(rle)
    return _box_of(h, starts, ends)


def _box_of(h: int, starts: np.ndarray, ends: np.ndarray) -> tuple[int, int, int, int] | None:
    if not len(starts):
        return None
    first_col, last_col = starts // h, (ends - 1) // h
    x0, x1 = int(first_col.min()), int(last_col.max()) + 1
    if (last_col > first_col).any():           # a run over a column's end: every row is covered
        return x0, 0, x1, h
    return x0, int((starts % h).min()), x1, int(((ends - 1) % h).max()) + 1


def decode_window(rle: object, *, pad: int = 0) -> tuple[int, int, np.ndarray] | None:
    """``(x0, y0, window)``: the uint8 mask (0/1) of the mask's bounding box grown by `pad` pixels
    (within the image), whose top-left pixel is (x0, y0) of the full mask; None for an empty mask.

    ``window`` equals ``decode(rle)[y0:y0 + h, x0:x0 + w]`` and everything outside it is 0, at the
    cost of the box only.
    """
    h, w, starts, ends = _in_intervals(rle)
    box = _box_of(h, starts, ends)
    if box is None:
        return None
    x0, y0 = max(box[0] - pad, 0), max(box[1] - pad, 0)
    x1, y1 = min(box[2] + pad, w), min(box[3] + pad, h)
    # Split every run at the columns' ends: one (column, first row, end row) per piece.
    first_col, last_col = starts // h, (ends - 1) // h
    pieces = last_col - first_col + 1
    run = np.repeat(np.arange(len(starts)), pieces)
    col = first_col[run] + (np.arange(len(run)) - np.repeat(np.cumsum(pieces) - pieces, pieces))
    top = np.maximum(starts[run], col * h) - col * h
    bottom = np.minimum(ends[run], (col + 1) * h) - col * h
    diff = np.zeros((y1 - y0 + 1, x1 - x0), dtype=np.int8)
    np.add.at(diff, (top - y0, col - x0), 1)
    np.add.at(diff, (bottom - y0, col - x0), -1)
    np.cumsum(diff, axis=0, dtype=np.int8, out=diff)     # runs never overlap: 0 or 1
    return x0, y0, diff[:-1].view(np.uint8)
