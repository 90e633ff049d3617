"""common.rle: COCO RLE round trips and every way a mask can be wrong."""
from __future__ import annotations

import numpy as np
import pytest

from common import rle


def blob(h=40, w=60):
    m = np.zeros((h, w), bool)
    m[5:20, 7:30] = True
    m[30, 59] = True
    return m


def test_encode_decode_round_trip():
    m = blob()
    enc = rle.encode(m)
    assert enc["size"] == [40, 60] and isinstance(enc["counts"], str)
    assert np.array_equal(rle.decode(enc), m)
    assert rle.area(enc) == int(m.sum())


def test_uncompressed_counts_are_accepted_and_compressed():
    m = blob()
    flat = m.flatten(order="F").astype(int)
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    out = rle.validate({"size": [40, 60], "counts": counts}, width=60, height=40)
    assert out == rle.encode(m)


@pytest.mark.parametrize(("mask", "message"), [
    ("not a dict", "COCO RLE"),
    ({"size": [40, 60]}, "COCO RLE"),
    ({"size": [40, 60], "counts": "x", "extra": 1}, "COCO RLE"),
    ({"size": [40], "counts": "x"}, "[height, width]"),
    ({"size": [0, 60], "counts": "x"}, "[height, width]"),
    ({"size": [40, 60], "counts": ""}, "not valid"),
    ({"size": [40, 60], "counts": "!!!!"}, "does not decode"),
    ({"size": [40, 60], "counts": "zzzzzz"}, "not valid RLE"),
    ({"size": [40, 60], "counts": [10, 5]}, "cover 15 pixels"),
    ({"size": [40, 60], "counts": [-1, 2401]}, "non-negative"),
    ({"size": [40, 60], "counts": 12}, "string"),
])
def test_bad_masks_are_refused(mask, message):
    with pytest.raises(rle.MaskError) as exc:
        rle.validate(mask, width=60, height=40)
    assert message in str(exc.value)


def test_mask_of_another_size_is_refused():
    with pytest.raises(rle.MaskError, match="but the image is"):
        rle.validate(rle.encode(blob(40, 61)), width=60, height=40)


def test_empty_mask_is_refused():
    with pytest.raises(rle.MaskError, match="empty"):
        rle.validate(rle.encode(np.zeros((40, 60), bool)), width=60, height=40)


def test_mask_iou():
    a = np.zeros((10, 10), bool)
    a[0:4, 0:4] = True
    b = np.zeros((10, 10), bool)
    b[0:4, 2:6] = True
    assert rle.mask_iou(rle.encode(a), rle.encode(b)) == pytest.approx(8 / 24)
