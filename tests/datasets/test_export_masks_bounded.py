"""Exports read only a mask's bounding box, never the whole photo's mask (48 MB at 48 MP).

The quad (YOLO-OBB, ICDAR, im2latex) and the outline (Label Studio) of a mask-only region come
from the pixels of its box, traced with the box's offset: the very same points, so the same
bytes, as from a full decode.
"""
from __future__ import annotations

import io
import tracemalloc
import zipfile

import cv2
import numpy as np
import pytest

from common import geometry, rle
from curation.exporters import ExportImage, ExportRegion, export, mask_to_rle, rle_to_mask
from curation.exporters.records import mask_polygon, mask_quad
from tests.datasets.helpers import IM2MARKUP, MIT

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

W48, H48 = 8000, 6000   # a 48 MP phone photo


def _full_quad(r):
    """What the exporters did before: decode the whole mask."""
    quad = geometry.mask_quad(rle_to_mask(r))
    return None if quad is None else np.asarray(quad, dtype=np.float64)


def _full_polygon(r, epsilon=1.0):
    contours, _ = cv2.findContours(rle_to_mask(r), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    poly = cv2.approxPolyDP(largest, epsilon, True).reshape(-1, 2).astype(np.float64)
    return poly if len(poly) >= 3 else None


def _masks(rng):
    """Blobs, strokes, several components, masks touching each border, full columns, a full mask."""
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(3, 60, 2))
        m = np.zeros((h, w), np.uint8)
        kind = int(rng.integers(0, 6))
        if kind == 0:
            m = (rng.random((h, w)) < 0.2).astype(np.uint8)
        elif kind == 1:                        # a rotated bar
            c = (float(rng.uniform(0, w)), float(rng.uniform(0, h)))
            box = cv2.boxPoints((c, (float(rng.uniform(2, w)), float(rng.uniform(1, h / 2))),
                                 float(rng.uniform(-80, 80))))
            cv2.fillPoly(m, [np.round(box).astype(np.int32)], 1)
        elif kind == 2:                        # a block touching a border, whole columns included
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            m[:y0 + 1 if rng.random() < 0.5 else h, x0:] = 1
        elif kind == 3:
            m[:] = 1
        elif kind == 4:                        # two separate strokes
            m[1:3, 1:w // 2] = 1
            m[h - 3:h - 1, w // 2 + 1:w - 1] = 1
        else:
            m[int(rng.integers(0, h)), int(rng.integers(0, w))] = 1
        yield m


def test_bbox_and_window_from_the_runs_match_the_decoded_mask():
    rng = np.random.default_rng(7)
    for m in _masks(rng):
        r = rle.encode(m)
        ys, xs = np.nonzero(m)
        assert rle.bbox(r) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        for pad in (0, 1, 3):
            x0, y0, win = rle.decode_window(r, pad=pad)
            full = np.zeros_like(m)
            full[y0:y0 + win.shape[0], x0:x0 + win.shape[1]] = win
            assert (full == m).all()
    empty = rle.encode(np.zeros((5, 4), np.uint8))
    assert rle.bbox(empty) is None and rle.decode_window(empty) is None


def test_quads_and_outlines_from_the_window_equal_those_of_the_full_mask():
    rng = np.random.default_rng(11)
    for m in _masks(rng):
        for r in (mask_to_rle(m), {"size": list(m.shape), "counts": mask_to_rle(m)["counts"].encode("ascii")}):
            a, b = mask_quad(r), _full_quad(r)
            assert (a is None and b is None) or a.tobytes() == b.tobytes()
            p, q = mask_polygon(r), _full_polygon(r)
            assert (p is None and q is None) or p.tobytes() == q.tobytes()


def _formula_mask_48mp() -> dict:
    """A brushed formula of 1800x300 pixels on a 48 MP photo, as COCO RLE (built without a 48 MB array)."""
    box = np.zeros((300, 1800), np.uint8)
    cv2.ellipse(box, (900, 150), (880, 140), 3, 0, 360, 1, -1)
    box[140:160, 400:1400] = 0
    x0, y0 = 3100, 2500
    runs, pos = [], 0
    for x in range(box.shape[1]):              # column-major runs of the box placed in the photo
        col = box[:, x]
        d = np.flatnonzero(np.diff(np.concatenate(([0], col, [0]))))
        for s, e in zip(d[0::2], d[1::2], strict=True):
            start = (x0 + x) * H48 + y0 + int(s)
            runs += [start - pos, int(e - s)]
            pos = start + int(e - s)
    runs.append(W48 * H48 - pos)
    return rle.validate({"size": [H48, W48], "counts": runs}, width=W48, height=H48)


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["yolo-obb", "icdar2015", "label-studio"])
def test_a_48mp_mask_only_region_exports_without_decoding_the_whole_mask(fmt):
    mask = _formula_mask_48mp()
    item = ExportImage(image_id=1, file_name="photo.jpg", width=W48, height=H48, split="train", licence=MIT,
                       source=IM2MARKUP, regions=[ExportRegion(mask_rle=mask, latex="x", category="formula")])
    peak = _peak(lambda: export(iter([item]), io.BytesIO(), format=fmt, include_images=False))
    # A full decode alone is 48 MB (and OpenCV's contiguous copy as much again).
    assert peak < 8 * 2**20, f"{fmt}: peak {peak / 2**20:.1f} MiB"


def test_a_48mp_mask_only_region_exports_the_same_quad_as_from_the_full_mask():
    mask = _formula_mask_48mp()
    assert mask_quad(mask).tobytes() == _full_quad(mask).tobytes()
    assert mask_polygon(mask).tobytes() == _full_polygon(mask).tobytes()


def test_the_reader_draws_a_48mp_mask_without_a_second_full_size_array(tmp_path):
    from curation.reader import ExportDataset

    mask = _formula_mask_48mp()
    item = ExportImage(image_id=1, file_name="photo.png", width=W48, height=H48, split="train", licence=MIT,
                       source=IM2MARKUP, regions=[ExportRegion(mask_rle=mask, latex="x", category="formula")])
    path = tmp_path / "e.zip"
    export(iter([item]), path, format="coco", include_images=False)
    with zipfile.ZipFile(path, "a") as zf:       # a tiny stand-in picture: only the masks are measured
        buf = io.BytesIO()
        from PIL import Image
        Image.new("RGB", (4, 4), "white").save(buf, "PNG")
        zf.writestr("images/photo.png", buf.getvalue())
    ds = ExportDataset(path)
    out = {}
    peak = _peak(lambda: out.update(t=ds[0][1]))
    masks = out["t"]["masks"].numpy()
    assert masks.shape == (1, H48, W48)
    assert (masks[0] == rle_to_mask(mask)).all()
    # The target's own N x H x W array is 48 MB; a full decode beside it would be 48 MB more.
    assert peak < 48 * 10**6 + 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
