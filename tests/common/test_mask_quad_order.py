"""A quad derived from a mask alone starts on a long edge that reads left to right.

A formula line is wider than tall, so the first edge (TL -> TR) of a quad fitted around its mask
must be a long side of the rectangle; of the two long sides, the one whose direction lies in
(-90°, 90°] (counter-clockwise on screen from the image's left-to-right) is taken. Without that,
a mask at more than 45° got its first edge on the short side and every export read it sideways.
"""
from __future__ import annotations

import io
import math
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from common import geometry, rle
from curation.exporters import ExportImage, ExportRegion, export, mask_to_rle
from curation.exporters.records import mask_quad as export_mask_quad
from pipeline.evaluation import truth_quad
from tests.datasets.helpers import IM2MARKUP, MIT

SIZE = 400


def bar_corners(angle_deg: float, w: float = 200, h: float = 40, centre=(SIZE / 2, SIZE / 2)) -> np.ndarray:
    """TL, TR, BR, BL of a w x h text line turned `angle_deg` counter-clockwise on screen."""
    t = math.radians(angle_deg)
    u = np.array([math.cos(t), -math.sin(t)])  # reading direction, image coordinates (y down)
    v = np.array([math.sin(t), math.cos(t)])  # from the text's top towards its bottom
    c = np.asarray(centre, float)
    return np.array([c - w / 2 * u - h / 2 * v, c + w / 2 * u - h / 2 * v,
                     c + w / 2 * u + h / 2 * v, c - w / 2 * u + h / 2 * v])


def bar_mask(angle_deg: float, w: float = 200, h: float = 40) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(bar_corners(angle_deg, w, h)).astype(np.int32)], 1)
    return mask


def reading_direction(angle_deg: float) -> np.ndarray:
    """Unit reading direction of a line at `angle_deg`, folded into (-90°, 90°]."""
    while angle_deg > 90:
        angle_deg -= 180
    while angle_deg <= -90:
        angle_deg += 180
    t = math.radians(angle_deg)
    return np.array([math.cos(t), -math.sin(t)])


def assert_reads_along(quad, angle_deg: float, w: float = 200, h: float = 40) -> None:
    q = np.asarray(quad, float).reshape(4, 2)
    first, second = q[1] - q[0], q[2] - q[1]
    assert np.linalg.norm(first) == pytest.approx(w, abs=4), q.tolist()
    assert np.linalg.norm(second) == pytest.approx(h, abs=4), q.tolist()
    # within 2 degrees of the expected reading direction
    assert first @ reading_direction(angle_deg) / np.linalg.norm(first) > math.cos(math.radians(2)), q.tolist()
    # clockwise on screen (y down): positive shoelace sum
    area2 = sum(q[i, 0] * q[(i + 1) % 4, 1] - q[(i + 1) % 4, 0] * q[i, 1] for i in range(4))
    assert area2 > 0


ANGLES = [0, 30, 60, 90, 120, -60]

# Every place that turns a mask into a quad, fed the same boolean mask.
DERIVERS = {
    "geometry": lambda m: geometry.mask_quad(m),
    "exporters": lambda m: export_mask_quad(mask_to_rle(m)),
    "evaluation": lambda m: truth_quad({"mask_rle": rle.encode(m)}),
}


@pytest.mark.parametrize("where", sorted(DERIVERS))
@pytest.mark.parametrize("angle", ANGLES)
def test_a_bar_mask_gives_a_quad_reading_along_its_long_side(where, angle):
    assert_reads_along(DERIVERS[where](bar_mask(angle).astype(bool)), angle)


def test_an_upside_down_bar_gives_the_same_quad_as_the_upright_one():
    # A mask has no top: 180° apart is the same pixels, so the same quad (read upright).
    assert np.allclose(geometry.mask_quad(bar_mask(180)), geometry.mask_quad(bar_mask(0)))
    assert np.allclose(geometry.mask_quad(bar_mask(120)), geometry.mask_quad(bar_mask(-60)))


def test_an_empty_mask_has_no_quad():
    assert geometry.mask_quad(np.zeros((10, 10), bool)) is None


@pytest.mark.parametrize("angle", [0, 37, 60, 90, 120, -60, -89])
def test_ordering_the_exact_rectangle_reads_along_its_long_side(angle):
    box = bar_corners(angle)
    for start in range(4):
        for pts in (np.roll(box, -start, axis=0), np.roll(box, -start, axis=0)[::-1]):
            assert_reads_along(geometry.reading_order_rect(pts.tolist()), angle)


# ------------------------------------------------------------------ square-ish masks

@pytest.mark.parametrize("w,h", [(40, 40), (41, 40), (40, 41), (42, 40)])
def test_an_upright_square_ish_mask_starts_at_its_top_left_going_right(w, h):
    mask = np.zeros((100, 100), bool)
    mask[30:30 + h, 20:20 + w] = True
    q = np.asarray(geometry.mask_quad(mask))
    np.testing.assert_allclose(q, [[20, 30], [19 + w, 30], [19 + w, 29 + h], [20, 29 + h]], atol=1)


@pytest.mark.parametrize("angle", [3, -3, 60, -60, 30])
def test_a_turned_square_ish_mask_starts_on_the_edge_nearest_left_to_right(angle):
    # Its sides are too alike to say which is the line's length, so the side closest to the
    # image's left-to-right is the top, whatever the pixel noise makes slightly longer.
    for w, h in ((41, 40), (40, 41)):
        q = np.asarray(geometry.mask_quad(bar_mask(angle, w, h)))
        first = q[1] - q[0]
        assert first[0] / np.linalg.norm(first) >= math.cos(math.radians(45.5)), (w, h, q.tolist())


def test_a_derived_quad_is_a_fixed_point():
    for angle in ANGLES + [45, -45]:
        q = geometry.mask_quad(bar_mask(angle))
        assert geometry.reading_order_rect(q) == q


# ------------------------------------------------------------------ exports of a 60° mask-only region

def _bar_image(angle: float) -> ExportImage:
    mask = bar_mask(angle)
    pixels = np.full((SIZE, SIZE, 3), 255, np.uint8)
    pixels[mask.astype(bool)] = (20, 20, 20)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    data = buf.getvalue()
    return ExportImage(1, "bar.png", SIZE, SIZE, "train", MIT, IM2MARKUP, open_bytes=lambda: data,
                       regions=[ExportRegion(mask_rle=mask_to_rle(mask), latex="x + 1")])


def _export(image: ExportImage, fmt: str) -> zipfile.ZipFile:
    buf = io.BytesIO()
    export(iter([image]), buf, format=fmt)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("angle", [60, 90, -60])
def test_yolo_obb_of_a_turned_mask_only_region_reads_along_the_line(angle):
    zf = _export(_bar_image(angle), "yolo-obb")
    quad = np.array(zf.read("labels/train/bar.txt").split()[1:], dtype=float).reshape(4, 2) * SIZE
    assert_reads_along(quad, angle)


@pytest.mark.parametrize("angle", [60, 90, 120])
def test_im2latex_crop_of_a_turned_mask_only_region_is_upright(angle):
    zf = _export(_bar_image(angle), "im2latex")
    crop = np.asarray(Image.open(io.BytesIO(zf.read("images/1_0.png"))).convert("L"))
    h, w = crop.shape
    assert w == pytest.approx(200, abs=4) and h == pytest.approx(40, abs=4)
    assert (crop < 128).mean() > 0.9  # the bar fills the crop: it is the line itself, not a sideways slice
