"""A formula photographed turned (90 degrees, upside down) exports upright: the stored quad
keeps the formula's top-left as read first (labeling.services.regions_clean), and the
im2latex crop and the ICDAR-2015 line follow that order."""
from __future__ import annotations

import io
import zipfile
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from curation.exporters import ExportImage, ExportRegion, export
from labeling.services import regions_clean
from tests.datasets.helpers import IM2MARKUP, MIT

SIDE = 400
UPRIGHT_QUAD = [[100.0, 100.0], [300.0, 100.0], [300.0, 160.0], [100.0, 160.0]]


def _upright_page() -> np.ndarray:
    """A white page with a 200 x 60 grey 'formula'; a black block marks where it starts (its left)."""
    page = np.full((SIDE, SIDE, 3), 255, dtype=np.uint8)
    cv2.rectangle(page, (100, 100), (299, 159), (200, 200, 200), -1)
    cv2.rectangle(page, (100, 100), (139, 159), (0, 0, 0), -1)
    return page


# How the page and the formula's corners move when the photo is turned.
TURNS = {
    "upside down": (cv2.ROTATE_180, lambda x, y: [SIDE - x, SIDE - y]),
    "turned 90 clockwise": (cv2.ROTATE_90_CLOCKWISE, lambda x, y: [SIDE - y, x]),
    "turned 90 counter-clockwise": (cv2.ROTATE_90_COUNTERCLOCKWISE, lambda x, y: [y, SIDE - x]),
}


def _export(image: ExportImage, fmt: str) -> zipfile.ZipFile:
    buf = io.BytesIO()
    export(iter([image]), buf, format=fmt)
    buf.seek(0)
    return zipfile.ZipFile(buf)


def _stored(points) -> list[list[float]]:
    """The points as labeling stores them (the same cleaning as an annotation's submit)."""
    image = SimpleNamespace(width=SIDE, height=SIDE, spec_id=None)
    return regions_clean(regions=[{"kind": "quad", "points": points, "latex": "x"}], image=image)[0]["points"]


def _crop(page: np.ndarray, points) -> np.ndarray:
    ok, buf = cv2.imencode(".png", page)
    data = buf.tobytes()
    image = ExportImage(1, "page.png", SIDE, SIDE, "train", MIT, IM2MARKUP, open_bytes=lambda: data,
                        regions=[ExportRegion(points=np.asarray(points), latex="x")])
    return cv2.imdecode(np.frombuffer(_export(image, "im2latex").read("images/1_0.png"), np.uint8),
                        cv2.IMREAD_GRAYSCALE)


@pytest.mark.parametrize("turn", list(TURNS))
def test_a_turned_formulas_im2latex_crop_is_upright(turn):
    rotate, move = TURNS[turn]
    page = cv2.rotate(_upright_page(), rotate)
    # The formula's top-left as read first: for an upside-down photo, the bottom-right of the image.
    quad = [move(x, y) for x, y in UPRIGHT_QUAD]
    stored = _stored(quad)
    assert stored == quad
    want = _crop(_upright_page(), UPRIGHT_QUAD)
    got = _crop(page, stored)
    assert got.shape == want.shape == (60, 200)
    # The start marker (the first 40 of 200 px) is on the left, as in the upright photo's crop.
    assert got[5:55, 5:35].mean() < 30 and got[5:55, 50:195].mean() > 170
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 8


def test_a_counter_clockwise_upside_down_quad_still_crops_upright():
    rotate, move = TURNS["upside down"]
    quad = [move(x, y) for x, y in UPRIGHT_QUAD]
    stored = _stored([quad[0], quad[3], quad[2], quad[1]])
    assert stored == quad
    got = _crop(cv2.rotate(_upright_page(), rotate), stored)
    assert got[5:55, 5:35].mean() < 30 and got[5:55, 50:195].mean() > 170


def test_an_upside_down_formulas_icdar_line_starts_at_its_top_left_as_read():
    _, move = TURNS["upside down"]
    stored = _stored([move(x, y) for x, y in UPRIGHT_QUAD])
    image = ExportImage(1, "a.png", SIDE, SIDE, "test", MIT, IM2MARKUP,
                        regions=[ExportRegion(points=np.asarray(stored), latex="x")])
    buf = io.BytesIO()
    export(iter([image]), buf, format="icdar2015", include_images=False)
    line = zipfile.ZipFile(buf).read("test/gt/gt_img_1.txt").decode().strip()
    assert line == "300,300,100,300,100,240,300,240,x"
