"""A formula mask in several parts reaches Label Studio whole: as a brush region in Label Studio's
own RLE, beside the polygon (the outline of its largest part, one ring).

Regression: the Label Studio export used to outline only the mask's largest connected part, so a
fraction whose bar was not brushed lost its numerator or denominator without a word.

Label Studio itself is not installed here. Its RLE is decoded by :func:`_ls_decode`, written from
the format Label Studio's editor decodes (thi.ng ``rle-pack``, quoted in the docstring of
``label_studio_sdk/converter/brush.py``), and the encoder is held to lists that the real SDK's
``encode_rle`` produced (label-studio-sdk 2.1.2, pasted below). ``bench/compat_real_tools.py``
runs the real SDK decoder and the real server on a full export.
"""
from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile
from itertools import pairwise

import cv2
import numpy as np
import pytest

from curation.exporters import ExportImage, ExportRegion, export, mask_to_rle
from curation.exporters.lsbrush import encode_runs, mask_runs, mask_to_ls_rle
from tests.datasets.helpers import IM2MARKUP, MIT

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# --- a reference decoder, from Label Studio's format ---------------------------------------

def _ls_decode(data: list[int]) -> np.ndarray:
    """thi.ng rle-pack ``decode``: 32-bit count, 5-bit word size - 1, four 4-bit run sizes - 1, then
    blocks ``flag, size class (2 bits), length - 1``: flag 1 = one word repeated, 0 = that many words."""
    bits = "".join(f"{b:08b}" for b in data)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        pos += n
        return int(bits[pos - n:pos], 2)

    num = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.int64)
    i = 0
    while i < num:
        run = read(1)
        j = i + 1 + read(sizes[read(2)])
        if run:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out


def _brush_mask(rle: list[int], width: int, height: int) -> np.ndarray:
    rgba = _ls_decode(rle).reshape(height, width, 4)
    assert ((rgba == 0) | (rgba == 255)).all() and (rgba == rgba[:, :, 3:]).all()  # (a, a, a, a) per pixel
    return (rgba[:, :, 3] > 0).astype(np.uint8)


# Made once by label_studio_sdk 2.1.2: encode_rle(np.repeat(mask.ravel() * 255, 4)).
FRACTION = np.array([[0, 0, 1, 1, 1, 1, 0, 0, 0],     # numerator
                     [0, 0, 1, 1, 1, 1, 0, 0, 0],
                     [0, 0, 0, 0, 0, 0, 0, 0, 1],     # a run crossing the row end: one run in LS's order
                     [1, 0, 0, 0, 0, 0, 0, 0, 0],
                     [0, 1, 1, 1, 1, 1, 1, 0, 0],     # denominator; the bar was not brushed
                     [0, 1, 1, 1, 1, 1, 1, 0, 0]], dtype=np.uint8)
FRACTION_SDK = [0, 0, 0, 216, 57, 27, 252, 224, 23, 255, 240, 152, 5, 255, 252, 86, 1, 63, 254, 35, 0, 194, 255,
                246, 192, 48, 191, 252, 224, 0]
DOT = np.zeros((1, 20000), dtype=np.uint8)            # 80000 values: runs longer than 65536
DOT[0, 17000] = 1
DOT_SDK = [0, 1, 56, 128, 57, 27, 255, 255, 255, 0, 225, 51, 224, 17, 255, 242, 237, 176, 0]


@pytest.mark.parametrize(("mask", "sdk"), [(FRACTION, FRACTION_SDK), (DOT, DOT_SDK)])
def test_the_brush_rle_is_byte_for_byte_the_sdks(mask, sdk):
    h, w = mask.shape
    assert mask_to_ls_rle(mask_to_rle(mask), w, h) == sdk
    assert (_brush_mask(sdk, w, h) == mask).all()       # the reference decoder agrees with the SDK's bytes


def test_the_encoder_round_trips_random_masks_and_literal_runs():
    rng = np.random.default_rng(8)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        rle = mask_to_ls_rle(mask_to_rle(m), w, h)
        if not m.any():
            assert rle is None
            continue
        assert (_brush_mask(rle, w, h) == m).all()
        runs = mask_runs(mask_to_rle(m), w, h)
        assert sum(n for n, _ in runs) == w * h and all(a[1] != b[1] for a, b in pairwise(runs))
    values = [3, 3, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1]      # runs of one value are literal blocks
    runs = [(2, 3), (1, 0), (9, 7), (1, 1)]
    assert _ls_decode(encode_runs(len(values), runs)).tolist() == values


# --- the export ----------------------------------------------------------------------------

W, H = 120, 60


def _fraction_mask() -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[8:24, 40:80] = 1     # numerator: the largest part
    m[36:48, 50:70] = 1    # denominator, apart
    return m


def _image() -> ExportImage:
    both = np.zeros((H, W), dtype=np.uint8)
    both[5:15, 90:115] = 1
    return ExportImage(1, "frac.png", W, H, "train", MIT, IM2MARKUP, regions=[
        ExportRegion(points=[[2, 2], [30, 2], [30, 20], [2, 20]], latex="x", category="printed"),
        ExportRegion(mask_rle=mask_to_rle(_fraction_mask()), latex=r"\frac{a}{b}", category="handwritten"),
        ExportRegion(points=[[90, 5], [115, 5], [115, 15], [90, 15]], mask_rle=mask_to_rle(both), latex="y",
                     category="printed"),
        ExportRegion(points=[[2, 40], [30, 40], [30, 55], [2, 55]], mask_rle=mask_to_rle(np.zeros((H, W), np.uint8)),
                     latex="z", category="printed"),      # an empty mask: no brush region
    ])


def _export(as_predictions: bool):
    buf = io.BytesIO()
    export(iter([_image()]), buf, format="label-studio", include_images=False, as_predictions=as_predictions,
           model_version="m-1")
    buf.seek(0)
    zf = zipfile.ZipFile(buf)
    key = "predictions" if as_predictions else "annotations"
    (task,) = json.loads(zf.read("tasks.json"))
    return ET.fromstring(zf.read("label_config.xml").decode()), task[key][0]["result"]


def _controls(root: ET.Element) -> dict[str, ET.Element]:
    return {el.get("name"): el for el in root.iter() if el.get("toName")}


@pytest.mark.parametrize("as_predictions", [False, True])
def test_a_mask_in_two_parts_comes_back_whole_from_its_brush(as_predictions):
    _, result = _export(as_predictions)
    by_id: dict[str, dict[str, dict]] = {}
    for r in result:
        by_id.setdefault(r["id"], {})[r["type"]] = r
    assert list(by_id) == ["1-0", "1-1", "1-2", "1-3", "1-1-mask", "1-2-mask"]

    brush, text = by_id["1-1-mask"]["brushlabels"], by_id["1-1-mask"]["textarea"]
    assert brush["value"]["format"] == "rle" and brush["value"]["brushlabels"] == ["handwritten"]
    assert (brush["original_width"], brush["original_height"]) == (W, H)
    assert text["value"]["text"] == [r"\frac{a}{b}"] and text["value"]["rle"] == brush["value"]["rle"]
    mask = _fraction_mask()
    assert (_brush_mask(brush["value"]["rle"], W, H) == mask).all()     # both parts, pixel for pixel

    # The polygon stays, the outline of the largest part (the numerator), as before.
    poly = np.array(by_id["1-1"]["polygonlabels"]["value"]["points"]) / 100 * [W, H]
    filled = np.zeros((H, W), np.uint8)
    cv2.fillPoly(filled, [np.round(poly).astype(np.int32)], 1)
    assert filled[36:48, 50:70].sum() == 0 and filled[8:24, 40:80].all()

    # A quad with a mask: the quad as the polygon, the mask as a brush.
    assert by_id["1-2"]["polygonlabels"]["value"]["points"][0] == pytest.approx([75.0, 5 / H * 100])
    assert _brush_mask(by_id["1-2-mask"]["brushlabels"]["value"]["rle"], W, H)[5:15, 90:115].all()


@pytest.mark.parametrize("as_predictions", [False, True])
def test_the_config_and_the_tasks_agree(as_predictions):
    root, result = _export(as_predictions)
    controls = _controls(root)
    assert {n: el.tag for n, el in controls.items()} == {"label": "PolygonLabels", "mask": "BrushLabels",
                                                        "latex": "TextArea"}
    objects = {el.get("name"): el for el in root.iter() if el.get("value", "").startswith("$")}
    labels = {n: [lab.get("value") for lab in el.iter("Label")] for n, el in controls.items()}
    assert labels["label"] == labels["mask"] == ["printed", "handwritten"]
    assert controls["latex"].get("perRegion") == "true"
    shapes = {}
    for r in result:   # what LabelInterface.validate_prediction checks, restated
        control = controls[r["from_name"]]
        assert r["to_name"] in objects and r["to_name"] in control.get("toName").split(",")
        assert r["type"] == control.tag.lower()
        if r["type"] != "textarea":
            assert set(r["value"][r["type"]]) <= set(labels[r["from_name"]])
            shapes[r["id"]] = r["type"]
        if r["type"] == "brushlabels":
            assert r["value"]["rle"] and all(isinstance(b, int) and 0 <= b <= 255 for b in r["value"]["rle"])
    # Every per-region LaTeX shares its id with exactly one shape, drawn before it (Label Studio makes
    # the region from the first result with an id and attaches the later ones to it).
    seen = set()
    for r in result:
        if r["type"] == "textarea":
            assert r["id"] in seen
        else:
            assert r["id"] not in seen
            seen.add(r["id"])
    assert sorted(r["id"] for r in result if r["type"] == "textarea") == sorted(shapes)
