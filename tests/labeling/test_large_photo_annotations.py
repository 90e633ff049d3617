"""Annotations on real phone photos (12 MP, 48 MP): 40 brushed masks per page.

A save must be small enough for the request body limit, validated without decoding every mask
to a full-size array (a 48 MP mask is 48 MB as bytes), and an oversized body must be answered
as JSON naming the limit, which the labeling page can show."""
from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import pytest
from django.test import override_settings
from pycocotools import mask as mask_utils

from common import rle, roles
from labeling import services
from tests import factories

W48, H48 = 8000, 6000


def box_rle(part: np.ndarray, x0: int, y0: int, w: int, h: int) -> dict:
    """Compressed COCO RLE of an image-sized mask that is `part` at (x0, y0) and empty elsewhere,
    built from runs (as the labeling page does), never as a full-size array."""
    bh, bw = part.shape
    cols = np.zeros((bw, bh + 2), np.int8)
    cols[:, 1:-1] = part.T.astype(np.int8)
    counts: list[int] = []
    cur, run = 0, x0 * h + y0
    for c in range(bw):
        col = part[:, c].astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], col, [0]))))
        pos = 0
        for e in edges:
            run += e - pos
            counts.append(run)
            run, pos, cur = 0, e, 1 - cur
        run += bh - pos + (h - bh)  # the rest of this column and the top of the next
    run += (w - x0 - bw) * h - y0
    counts.append(run)
    assert sum(counts) == w * h
    coco = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": coco["counts"].decode("ascii")}


def brushed(rng, bw: int, bh: int, radius: int) -> np.ndarray:
    """A ragged brush-painted mask of a formula's box: zig-zag round strokes, eraser dabs."""
    import cv2

    m = np.zeros((bh, bw), np.uint8)
    passes = max(1, int(bh / (1.6 * radius)))
    for p in range(passes):
        xs = np.arange(radius, bw - radius, max(2, radius // 2))
        ys = (p + 0.5) * bh / passes + np.cumsum(rng.normal(0, radius * 0.15, len(xs)))
        pts = np.stack([xs, np.clip(ys, radius, bh - radius)], 1).astype(np.int32)
        cv2.polylines(m, [pts], False, 1, thickness=2 * radius)
    for _ in range(10):
        cv2.circle(m, (int(rng.uniform(0, bw)), int(rng.choice([0, bh]))), radius, 0, -1)
    return m


def forty_masks(w: int = W48, h: int = H48, n: int = 40) -> list[dict]:
    rng = np.random.default_rng(3)
    out = []
    for k in range(n):
        r, c = divmod(k, 2)
        bw, bh = int(w * 0.35), int(h * 0.9 / (n // 2) * 0.7)
        x0, y0 = int(w * (0.05 + 0.5 * c)), int(h * 0.05 + r * h * 0.9 / (n // 2))
        out.append(box_rle(brushed(rng, bw, bh, radius=24), x0, y0, w, h))
    return out


@pytest.fixture(scope="module")
def masks48():
    return forty_masks()


def test_box_rle_is_what_pycocotools_writes():
    part = np.zeros((30, 20), np.uint8)
    part[3:25, 2:18] = 1
    part[10, 0] = 1
    full = np.zeros((100, 120), np.uint8)
    full[40:70, 50:70] = part
    assert box_rle(part, 50, 40, 120, 100) == rle.encode(full)


def test_a_48mp_save_of_40_brushed_masks_fits_the_body_limit(masks48, settings):
    body = json.dumps({"regions": [{"kind": "mask", "mask": m, "latex": r"\frac{a}{b}", "illegible": False,
                                    "cut_off": False, "categories": []} for m in masks48], "time_spent_seconds": 60})
    assert len(body) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 10, len(body)
    assert max(len(m["counts"]) for m in masks48) < rle.MAX_COUNTS_LENGTH / 50


def test_validating_40_masks_at_48mp_takes_little_memory(masks48):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = [rle.validate(m, width=W48, height=H48) for m in masks48]
    secs = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"40 masks at 48 MP: {secs:.2f} s, peak {peak / 2**20:.1f} MiB")
    assert out == masks48  # already canonical: stored as sent
    # Decoding one 48 MP mask to a full-size array alone takes 48 MB (and about 0.15 s).
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    # time is printed, not asserted: bench/large_photo.py measures it (no timed tests)


def test_the_fast_check_agrees_with_a_full_decode_on_odd_masks():
    rng = np.random.default_rng(5)
    for h, w in [(1, 1), (1, 7), (7, 1), (13, 17), (64, 48)]:
        for density in (0.0, 0.05, 0.5, 0.95, 1.0):
            m = rng.random((h, w)) < density
            enc = rle.encode(m)
            if m.any():
                assert rle.validate(enc, width=w, height=h) == enc
            else:
                with pytest.raises(rle.MaskError, match="empty"):
                    rle.validate(enc, width=w, height=h)
            assert rle.area(enc) == int(m.sum())


@pytest.mark.parametrize("counts", [
    "0",            # a run of 0 pixels: covers nothing of 6x5
    "PO",           # non-minimal (a run written in two characters where one does)
    "1O1",          # runs past the end
    "4",            # 4 of 30 pixels
    "<1`0",         # a zero-length run in the middle
    "0;1\x7f",      # beyond the alphabet
])
def test_non_canonical_or_garbage_counts_are_refused(counts):
    with pytest.raises(rle.MaskError):
        rle.validate({"size": [5, 6], "counts": counts}, width=6, height=5)


def test_uncompressed_counts_with_zero_runs_are_merged():
    m = np.zeros((5, 6), bool)
    m[3:5, 2] = True  # column-major: 13 pixels out, 2 in, 15 out
    # [11, 0, 2, 2, 0, 0, 15] is [13, 2, 15] written with zero-length runs: the same mask
    assert rle.validate({"size": [5, 6], "counts": [11, 0, 2, 2, 0, 0, 15]}, width=6, height=5) == rle.encode(m)
    assert rle.validate({"size": [5, 6], "counts": [0, 0, 13, 2, 15]}, width=6, height=5) == rle.encode(m)


@pytest.mark.django_db
def test_saving_40_masks_on_a_48mp_photo_through_the_api(client, masks48):
    from curation.models import Image

    vendor, spec = factories.make_vendor(), factories.make_spec()
    factories.make_batch(spec, vendor, images=1)
    Image.objects.update(width=W48, height=H48)  # the stored file's size is not read on a save
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = services.task_claim_next(annotator=annotator).task
    client.force_login(annotator)
    regions = [{"kind": "mask", "mask": m, "latex": "x^{2}"} for m in masks48]
    t0 = time.perf_counter()
    res = client.post("/api/v1/annotations/", {"task": task.id, "regions": regions, "time_spent_seconds": 5},
                      content_type="application/json")
    print(f"save of 40 masks at 48 MP: {time.perf_counter() - t0:.2f} s")
    assert res.status_code == 201, res.content[:500]
    assert [r["mask"] for r in res.json()["regions"]] == masks48


@pytest.mark.django_db
def test_an_oversized_body_is_a_413_json_naming_the_limit(client):
    vendor, spec = factories.make_vendor(), factories.make_spec()
    factories.make_batch(spec, vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = services.task_claim_next(annotator=annotator).task
    client.force_login(annotator)
    body = json.dumps({"task": task.id, "regions": [factories.quad(latex="x" * 100)] * 200, "time_spent_seconds": 1})
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000):
        res = client.post("/api/v1/annotations/", body, content_type="application/json")
    assert res.status_code == 413, (res.status_code, res.content[:200])
    assert res["Content-Type"].startswith("application/json")
    detail = res.json()["detail"]
    assert f"{len(body):,}" in detail and "10,000" in detail, detail
