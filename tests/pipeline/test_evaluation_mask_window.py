"""Evaluation works on a truth mask's bounding box, not the whole mask: the same figures bit for bit.

A mask-only truth region is scored (and its crop read) by the minimum-area rectangle of its mask
(:func:`pipeline.evaluation.truth_quad`). That rectangle is now traced in the mask's bounding box
grown by one pixel (:func:`common.rle.decode_window`), not in the whole decoded mask: a 48 MP
phone photo's mask is a 48 MB array. Checked here against a straightforward whole decode
(``geometry.mask_quad(rle.decode(...))``, what evaluation did before): random masks, empty ones,
masks on every edge of the image, 1-pixel masks, disjoint and nested boxes, masks that are not
valid RLE (the same error); then whole evaluation runs with a stub model (the same metrics and
samples); then the memory of the truth quads of a 48 MP photo's masks (tracemalloc, no timing).
"""
from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from common import geometry, rle
from pipeline import evaluation
from pipeline.models import EvaluationSample
from pipeline.services import model_version_builtin
from tests import factories
from tests.pipeline.evaluation_helpers import StubReader, box, make_eval_snapshot, region
from tests.test_audit_session30_rle_validate_fuzz import _c_runs


def full_quad(mask_rle):
    """The reference: the whole mask decoded, as evaluation did before."""
    return geometry.mask_quad(rle.decode(mask_rle))


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.asarray(a, np.float64).tobytes() == np.asarray(b, np.float64).tobytes()


def outcome(f, *args):
    try:
        return "ok", f(*args)
    except rle.MaskError as exc:
        return "refused", str(exc)


def random_masks(rng, h: int, w: int):
    """Masks of many shapes on an h x w image, each with what it is."""
    yield "empty", np.zeros((h, w), bool)
    yield "full", np.ones((h, w), bool)
    for y, x in [(0, 0), (h - 1, w - 1), (0, w - 1), (h - 1, 0), (int(rng.integers(h)), int(rng.integers(w)))]:
        m = np.zeros((h, w), bool)
        m[y, x] = True
        yield f"1 pixel at {x},{y}", m
    for edge in ("top", "bottom", "left", "right"):
        m = np.zeros((h, w), bool)
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        y1, x1 = max(y1, y0 + 1), max(x1, x0 + 1)
        if edge == "top":
            y0 = 0
        elif edge == "bottom":
            y1 = h
        elif edge == "left":
            x0 = 0
        else:
            x1 = w
        m[y0:y1, x0:x1] = rng.random((min(y1, h) - y0, min(x1, w) - x0)) < 0.8
        m[min(y0, h - 1) if edge != "bottom" else h - 1, min(x0, w - 1) if edge != "right" else w - 1] = True
        yield f"touching the {edge} edge", m
    m = np.zeros((h, w), bool)
    m[:, int(rng.integers(w))] = True  # a whole column: one run over every row
    yield "one column", m
    m = np.zeros((h, w), bool)
    m[int(rng.integers(h)), :] = True
    yield "one row", m
    for k in range(12):
        m = np.zeros((h, w), bool)
        y0, x0 = int(rng.integers(h)), int(rng.integers(w))
        y1, x1 = int(rng.integers(y0 + 1, h + 1)), int(rng.integers(x0 + 1, w + 1))
        m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.uniform(0.05, 1.0)
        yield f"random blob {k}", m
    # a bar turned by an angle, as a formula photographed askew
    import cv2

    for angle in (0, 17, 45, 90, 133):
        m = np.zeros((h, w), np.uint8)
        rect = ((w / 2, h / 2), (w * 0.6, max(2.0, h * 0.15)), angle)
        cv2.fillPoly(m, [cv2.boxPoints(rect).round().astype(np.int32)], 1)
        yield f"bar at {angle}°", m.astype(bool)


@pytest.mark.parametrize("seed", range(4))
def test_truth_quad_from_the_box_is_the_whole_mask_one(seed):
    rng = np.random.default_rng(seed)
    for h, w in [(1, 1), (1, 9), (9, 1), (17, 23), (40, 31)]:
        for what, m in random_masks(rng, h, w):
            encoded = rle.encode(m)
            got = evaluation.truth_quad({"mask_rle": encoded})
            assert same(got, full_quad(encoded)), (h, w, what)
            assert (got is None) == (not m.any()), what


def test_an_empty_mask_is_told_from_its_counts_without_a_decode(monkeypatch):
    encoded = rle.encode(np.zeros((6000, 8000), bool))
    monkeypatch.setattr(rle, "decode", _no_whole_decode)
    assert evaluation.truth_quad({"mask_rle": encoded}) is None


@pytest.mark.parametrize("counts", [
    "57", "0<", "<",                                # canonical: a mask, the full one, the empty one
    "30045", "0306", "<0", "230M43", "\\0",          # cover 3x4 but not as COCO writes it: zero or over-long runs
    [0, 12], [3, 0, 0, 4, 5], [12], [5, 7], [2, 3, 4],   # uncompressed: always the whole decode, as before
    b"0", 12, None,
])
def test_masks_that_are_not_valid_rle_fail_or_pass_as_before(counts):
    # (strings whose runs do not cover the mask are left out: pycocotools' decoder, the reference,
    # writes past its buffer on them)
    mask_rle = {"size": [3, 4], "counts": counts}
    new, old = outcome(evaluation.truth_quad, {"mask_rle": mask_rle}), outcome(full_quad, mask_rle)
    assert new[0] == old[0] and (new[1] == old[1] if new[0] == "refused" else same(new[1], old[1]))


@pytest.mark.parametrize("size", [[3], [0, 4], [3, "4"], "34", [True, 4], None, [70000, 70000]])
def test_bad_sizes_fail_as_before(size):
    mask_rle = {"size": size, "counts": "0"}
    new, old = outcome(evaluation.truth_quad, {"mask_rle": mask_rle}), outcome(full_quad, mask_rle)
    assert new == old


def test_mutated_strings_fail_or_pass_as_before():
    rng = np.random.default_rng(5)
    alphabet = [chr(c) for c in range(48, 48 + 64)]
    for _ in range(800):
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        s = list(rle.encode(rng.random((h, w)) < rng.random())["counts"])
        i = int(rng.integers(len(s)))
        s[i] = alphabet[int(rng.integers(len(alphabet)))]
        mask_rle = {"size": [h, w], "counts": "".join(s)}
        if not _sums_to(mask_rle["counts"], h * w):
            continue  # pycocotools' decoder writes past its buffer on these: not safe to run the reference
        new, old = outcome(evaluation.truth_quad, {"mask_rle": mask_rle}), outcome(full_quad, mask_rle)
        assert new[0] == old[0], mask_rle
        assert new[1] == old[1] if new[0] == "refused" else same(new[1], old[1])


def _sums_to(counts: str, total: int) -> bool:
    """pycocotools' own reading of a counts string (32-bit), summed."""
    return sum(_c_runs(counts)) == total


# ------------------------------------------------------------------ whole runs, same metrics

W, H = 200, 100


def _mask(*boxes_and_pixels) -> dict:
    m = np.zeros((H, W), bool)
    for x0, y0, x1, y1 in boxes_and_pixels:
        m[y0:y1, x0:x1] = True
    return rle.encode(m)


def _mask_region(mask_rle: dict, latex: str) -> dict:
    return {"kind": "mask", "mask": mask_rle, "latex": latex}


def _images():
    """Mask-only truth regions: disjoint, nested, on every edge, a pixel, a ragged blob."""
    rng = np.random.default_rng(11)
    blob = np.zeros((H, W), bool)
    blob[30:70, 60:150] = rng.random((40, 90)) < 0.7
    return [
        ([_mask_region(_mask((10, 10, 90, 40)), "x^{2}+1"), _mask_region(_mask((120, 50, 190, 90)), "a+b")],
         ("printed",)),                                                              # disjoint boxes
        ([_mask_region(_mask((10, 10, 190, 90)), r"\frac{1}{2}"), _mask_region(_mask((60, 40, 120, 60)), "y")],
         ("handwritten",)),                                                          # nested boxes
        ([_mask_region(_mask((0, 0, 50, 30)), "a"), _mask_region(_mask((150, 70, 200, 100)), "b"),
          _mask_region(_mask((0, 80, 40, 100)), "c"), _mask_region(_mask((170, 0, 200, 20)), "d")],
         ("printed",)),                                                              # the image's corners
        ([_mask_region(_mask((100, 50, 101, 51)), "e"), _mask_region(rle.encode(blob), "f"),
          region(box(5, 5, 40, 25), "g")], ()),                                      # a pixel, a blob, a quad
    ]


DETECTIONS = [
    [box(12, 11, 88, 39), box(125, 52, 185, 88), box(0, 0, 5, 5)],
    [box(10, 10, 189, 89), box(55, 38, 118, 62)],
    [box(0, 0, 49, 29), box(152, 72, 199, 99), box(1, 80, 40, 99)],
    [box(58, 28, 150, 72), box(5, 5, 40, 25)],
]


def _run(snap, versions, *, whole_decode: bool, monkeypatch):
    with monkeypatch.context() as m:
        if whole_decode:
            m.setattr(evaluation, "_mask_quad", full_quad)
        else:
            m.setattr(rle, "decode", _no_whole_decode)
        run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0],
                                           recognizer_version=versions[1], created_by=None, batch_size=2)
        reader = StubReader(detections=[list(d) for d in DETECTIONS], readings=["x^{2}+1"] * 40)
        run = evaluation.evaluation_run(run=run, reader=reader)
    assert run.status == "done", run.error
    samples = list(EvaluationSample.objects.filter(run=run).order_by("item_id", "region_index").values_list(
        "item_id", "region_index", "points", "iou", "image_predicted", "image_matched", "truth_latex",
        "predicted_latex", "exact"))
    return run, samples


def _no_whole_decode(mask_rle):
    raise AssertionError(f"a whole mask was decoded: {mask_rle['size']}")


@pytest.mark.django_db
def test_evaluation_metrics_are_the_whole_decode_ones(monkeypatch):
    versions = model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")
    snap = make_eval_snapshot(_images(), data=[factories.png_bytes(W, H) for _ in range(4)])
    new, new_samples = _run(snap, versions, whole_decode=False, monkeypatch=monkeypatch)
    old, old_samples = _run(snap, versions, whole_decode=True, monkeypatch=monkeypatch)
    assert new.metrics == old.metrics
    assert new.metrics["overall"]["true_positives"] >= 8  # the detections did match the mask quads
    assert new_samples == old_samples
    assert len(new_samples) == 11 and all(s[2] is not None for s in new_samples)
    for (_, _, new_points, new_iou, *_), (_, _, old_points, old_iou, *_) in zip(new_samples, old_samples,
                                                                                  strict=True):
        assert same(new_points, old_points) and new_iou == old_iou


# ------------------------------------------------------------------ memory on a 48 MP photo

def _photo_masks(w: int = 8000, h: int = 6000, n: int = 8) -> list[dict]:
    """`n` formula-sized ragged masks (4x4-pixel blocks in or out at random: thousands of runs
    each) on a w x h photo, one on its bottom-right corner."""
    rng = np.random.default_rng(3)
    full = np.zeros((h, w), np.uint8)
    out = []
    for k in range(n):
        bw, bh = 4 * int(rng.integers(75, 225)), 4 * int(rng.integers(15, 50))
        x0, y0 = (w - bw, h - bh) if k == 0 else (int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh)))
        full[:] = 0
        full[y0:y0 + bh, x0:x0 + bw] = np.kron(rng.random((bh // 4, bw // 4)) < 0.6, np.ones((4, 4), bool))
        out.append(rle.encode(full))
    return out


def test_truth_quads_of_a_48mp_photo_never_hold_a_whole_mask(monkeypatch):
    masks = _photo_masks()
    expected = [full_quad(m) for m in masks]
    items = [SimpleNamespace(regions=[{"kind": "mask", "mask_rle": m, "latex": "x"} for m in masks])]
    decoded = []
    monkeypatch.setattr(rle, "decode", lambda m: decoded.append(m) or _no_whole_decode(m))
    tracemalloc.start()
    try:
        truths = evaluation._truths(items)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded == []
    assert all(same(quad, want) for (_, _, quad), want in zip(truths[0], expected, strict=True))
    whole_mask = 8000 * 6000  # bytes as uint8
    # The largest box here is 900 x 200 pixels: its window and its runs are about a MB.
    assert peak < whole_mask / 10, f"peak {peak / 2**20:.1f} MiB"
