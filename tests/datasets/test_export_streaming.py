"""Exports stream: memory does not grow with the size of the labels written."""
from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np

from curation.exporters import ExportImage, ExportRegion, export
from tests.datasets.helpers import IM2MARKUP, MIT, png_bytes

TINY = png_bytes(4, 4)
QUAD = np.array([[1, 1], [30, 2], [30, 12], [1, 11]], dtype=float)


def _images(n: int):
    """A generator, as a database cursor would be: nothing exists before it is asked for."""
    for i in range(n):
        yield ExportImage(i, f"{i}.png", 32, 16, ("train", "validation", "test")[i % 3], MIT, IM2MARKUP,
                          open_bytes=lambda: TINY,
                          regions=[ExportRegion(points=QUAD, latex=(r"\frac{x_{" + str(i) + "}}{y} + ") * 60)
                                   for _ in range(2)])


def _peak_export(n: int, fmt: str, path) -> tuple[int, int]:
    out = path / f"{fmt}-{n}.zip"
    tracemalloc.start()
    try:
        export(_images(n), out, format=fmt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with zipfile.ZipFile(out) as zf:
        labels = sum(z.file_size for z in zf.infolist() if not z.filename.startswith("images/"))
    return peak, labels


def test_coco_export_of_5000_images_keeps_memory_flat(tmp_path):
    small_peak, _ = _peak_export(500, "coco", tmp_path)
    peak, labels = _peak_export(5000, "coco", tmp_path)
    assert labels > 15_000_000
    # The labels were never held: peak memory is a fraction of their size.
    assert peak < labels / 3, (peak, labels)
    # Ten times the images: the only growth allowed is zipfile's central directory (one
    # ZipInfo of ~0.6 KB per member, written at the end), not the labels.
    assert peak - small_peak < 4500 * 1024, (small_peak, peak)


def test_jsonl_export_memory_does_not_depend_on_label_size(tmp_path):
    def run(repeat: int) -> tuple[int, int]:
        def images():
            for i in range(1500):
                yield ExportImage(i, f"{i}.png", 32, 16, "train", MIT, IM2MARKUP,
                                  regions=[ExportRegion(points=QUAD, latex="x + " * repeat)])
        out = tmp_path / f"{repeat}.zip"
        tracemalloc.start()
        try:
            export(images(), out, format="jsonl", include_images=False, compresslevel=1)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return peak, zipfile.ZipFile(out).getinfo("annotations.jsonl").file_size

    short_peak, short_size = run(5)
    long_peak, long_size = run(2000)
    assert long_size > 10 * short_size
    assert long_peak < short_peak + 1_000_000, (short_peak, long_peak)
