"""Exports checked against what the consuming tools accept, as a model team uses them.

* Label Studio: tasks are checked the way Label Studio checks an import. Its server validates
  every imported prediction with ``label_studio_sdk.label_interface.LabelInterface.
  validate_prediction`` (HumanSignal/label-studio, data_import tests "prediction validation ...
  during data import"): each result's ``from_name`` must be a control of the labeling config,
  its ``type`` that control's tag, its ``to_name`` one of the control's ``toName``, its labels
  among the control's ``<Label>`` values, and its value must parse (``PolygonValue.points``:
  pairs of ``confloat(le=100)``; the JSON schema: 0 <= x, y <= 100). The SDK is not installed
  here, so :func:`_ls_region_errors` restates those rules.
* Ultralytics YOLO-OBB: ``ultralytics.data.utils.check_det_dataset`` refuses a data.yaml without
  ``train`` and ``val`` keys ("'train' and 'val' are required in all data YAMLs") and one whose
  ``val`` folder does not exist; ``verify_image_label`` drops a label file with a coordinate
  above 1.01 or below -0.01.
* COCO: pycocotools itself (``COCO``, ``loadRes``, ``COCOeval``).
"""
from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from curation.exporters import CategoryInfo, ExportImage, ExportRegion, export, mask_to_rle
from tests.datasets.helpers import CC_BY_NC_SA, CROHME, IM2MARKUP, MIT, make_image

# pycocotools' C decoder trips a numpy 2 copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _export(images, fmt, **kwargs):
    buf = io.BytesIO()
    result = export(iter(images), buf, format=fmt, **kwargs)
    buf.seek(0)
    return zipfile.ZipFile(buf), result


def _overhanging_image(image_id: int = 1) -> ExportImage:
    """A 200 x 100 image whose first formula runs past the left, top and right edges (a crop of a
    page cut through a formula), plus a mask-only formula and one inside the frame."""
    mask = np.zeros((100, 200), dtype=np.uint8)
    mask[60:80, 20:120] = 1
    return ExportImage(image_id, f"img_{image_id}.png", 200, 100, "train", MIT, IM2MARKUP, regions=[
        ExportRegion(points=[[-12.0, -3.0], [215.0, -3.0], [215.0, 30.0], [-12.0, 30.0]], latex=r"a+b",
                     category="formula"),
        ExportRegion(mask_rle=mask_to_rle(mask), latex=r"\frac{1}{2}", category="formula"),
        ExportRegion(points=[[130.0, 40.0], [190.0, 40.0], [190.0, 55.0], [130.0, 55.0]], latex="x",
                     category="handwritten"),
    ])


# --- Label Studio ---------------------------------------------------------------------------

def _ls_config(xml: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Controls (name -> tag, toName, labels) and objects (name -> value) of a labeling config."""
    root = ET.fromstring(xml)
    controls, objects = {}, {}
    for el in root.iter():
        if el.get("name") and el.get("toName"):
            controls[el.get("name")] = {"tag": el.tag.lower(), "to_name": el.get("toName").split(","),
                                        "labels": [lab.get("value") for lab in el.iter("Label")],
                                        "attrs": dict(el.attrib)}
        elif el.get("name") and el.get("value"):
            objects[el.get("name")] = el.get("value")
    return controls, objects


def _ls_region_errors(region: dict, controls: dict, objects: dict) -> list[str]:
    """LabelInterface._validate_region_logic and the control tags' value models, restated."""
    for key in ("from_name", "to_name", "type", "value"):
        if key not in region:
            return [f"missing {key}"]
    control = controls.get(region["from_name"])
    if control is None:
        return [f"from_name {region['from_name']!r} is not a control of the config"]
    errors = []
    if region["to_name"] not in objects or region["to_name"] not in control["to_name"]:
        errors.append(f"to_name {region['to_name']!r} is not an object of control {region['from_name']!r}")
    if region["type"].lower() != control["tag"]:
        errors.append(f"type {region['type']!r} is not the control's tag {control['tag']!r}")
    value = region["value"]
    if control["tag"] == "polygonlabels":
        labels = value.get("polygonlabels")
        if not labels or not set(labels) <= set(control["labels"]):
            errors.append(f"labels {labels} not among the config's {control['labels']}")
        points = value.get("points")
        if not isinstance(points, list) or len(points) < 3:
            errors.append(f"polygon needs at least 3 points, got {points!r}")
        elif not all(len(p) == 2 and all(0 <= c <= 100 for c in p) for p in points):
            errors.append(f"polygon points outside 0..100 percent: {points}")
    elif control["tag"] == "brushlabels":  # BrushLabelsValue: format "rle", rle a non-empty list of bytes
        labels = value.get("brushlabels")
        if not labels or not set(labels) <= set(control["labels"]):
            errors.append(f"labels {labels} not among the config's {control['labels']}")
        rle = value.get("rle")
        if value.get("format") != "rle" or not isinstance(rle, list) or not rle or not all(
                isinstance(b, int) and 0 <= b <= 255 for b in rle):
            errors.append(f"brush value must be format 'rle' with a list of bytes, got {value.get('format')!r}")
    elif control["tag"] == "textarea":
        text = value.get("text")
        if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
            errors.append(f"textarea text must be a list of strings, got {text!r}")
    else:
        errors.append(f"unexpected control {control['tag']}")
    return errors


def _check_label_studio_export(zf: zipfile.ZipFile, images: list[ExportImage], key: str) -> list[dict]:
    controls, objects = _ls_config(zf.read("label_config.xml").decode())
    tasks = json.loads(zf.read("tasks.json"))
    assert len(tasks) == len(images)
    for task, image in zip(tasks, images, strict=True):
        for var in objects.values():  # every $variable of an object tag has its data key
            assert var.startswith("$") and task["data"].get(var[1:]) is not None
        (body,) = task[key]
        errors = [e for r in body["result"] for e in _ls_region_errors(r, controls, objects)]
        assert errors == []
        by_id: dict[str, list[dict]] = {}
        for r in body["result"]:
            assert (r["original_width"], r["original_height"], r["image_rotation"]) == (image.width, image.height, 0)
            by_id.setdefault(r["id"], []).append(r)
        # one region per id: its polygon and its per-region LaTeX, drawn over the same points; a
        # mask's brush (id "<region id>-mask") likewise with its LaTeX, after all the polygons
        polygons = {i: p for i, p in by_id.items() if not i.endswith("-mask")}
        brushes = {i: p for i, p in by_id.items() if i.endswith("-mask")}
        assert len(polygons) == len(image.regions)
        assert len(brushes) == sum(r.mask_rle is not None for r in image.regions)
        assert set(brushes) <= {i + "-mask" for i in polygons}
        for pair in polygons.values():
            assert sorted(r["type"] for r in pair) == ["polygonlabels", "textarea"]
            assert pair[0]["value"]["points"] == pair[1]["value"]["points"]
        for pair in brushes.values():
            assert [r["type"] for r in pair] == ["brushlabels", "textarea"]
            assert pair[0]["value"]["rle"] == pair[1]["value"]["rle"]
        kinds = [r["id"].endswith("-mask") for r in body["result"]]
        assert kinds == sorted(kinds)
        for r in body["result"]:
            if r["type"] == "textarea":  # the LaTeX belongs to its region, not to the whole image
                assert controls[r["from_name"]]["attrs"].get("perRegion") == "true"
    return tasks


@pytest.mark.parametrize("as_predictions", [False, True])
def test_label_studio_import_accepts_a_formula_running_past_the_image_edge(as_predictions):
    image = _overhanging_image()
    zf, _ = _export([image], "label-studio", include_images=False, as_predictions=as_predictions,
                    model_version="det-v1")
    tasks = _check_label_studio_export(zf, [image], "predictions" if as_predictions else "annotations")
    result = tasks[0]["predictions" if as_predictions else "annotations"][0]["result"]
    # The overhanging quad is cut at the frame: what remains still covers the formula's visible part.
    first = np.array(result[0]["value"]["points"])
    np.testing.assert_allclose(first, [[0, 0], [100, 0], [100, 30], [0, 30]])
    inside = np.array(result[4]["value"]["points"]) / 100 * [200, 100]
    np.testing.assert_allclose(inside, image.regions[2].points)


def test_label_studio_config_offers_a_label_even_when_the_export_has_no_region():
    # A snapshot of pages without formulas yet (or a spec without categories): the shipped config
    # must still let annotators draw a labelled polygon, so it needs at least one <Label>.
    image = ExportImage(1, "blank.png", 64, 48, "train", MIT, IM2MARKUP)
    zf, _ = _export([image], "label-studio", include_images=False)
    controls, _ = _ls_config(zf.read("label_config.xml").decode())
    assert controls["label"]["labels"] == ["formula"]
    _check_label_studio_export(zf, [image], "annotations")


def test_label_studio_config_lists_every_category_of_the_spec_in_order():
    rng = np.random.default_rng(5)
    images = [make_image(1, rng=rng), _overhanging_image(2)]
    zf, _ = _export(images, "label-studio", include_images=False,
                    categories=[CategoryInfo("printed", "Printed"), CategoryInfo("formula", "Formula")])
    controls, _ = _ls_config(zf.read("label_config.xml").decode())
    assert controls["label"]["labels"] == ["printed", "formula", "handwritten"]
    _check_label_studio_export(zf, images, "annotations")


# --- YOLO-OBB (Ultralytics) -----------------------------------------------------------------

def _check_det_dataset(yaml_file: Path) -> dict:
    """The checks of ``ultralytics.data.utils.check_det_dataset`` that a data.yaml must pass."""
    data = yaml.safe_load(yaml_file.read_text())
    for k in ("train", "val"):
        if k not in data:
            if k != "val" or "validation" not in data:
                raise SyntaxError(f"'{k}:' key missing. 'train' and 'val' are required in all data YAMLs.")
            data["val"] = data.pop("validation")
    if "names" not in data and "nc" not in data:
        raise SyntaxError("either 'names' or 'nc' are required in all data YAMLs.")
    root = Path(data.get("path") or yaml_file.parent)
    for k in ("train", "val", "test"):
        if data.get(k):
            data[k] = (root / data[k]).resolve()
    if not data["val"].exists():
        raise FileNotFoundError(f"Dataset images not found, missing path {data['val']}")
    return data


def _check_labels(root: Path, data: dict) -> None:
    """``verify_image_label`` on every image of every split the YAML names."""
    names = data["names"]
    assert sorted(names) == list(range(len(names)))  # 0..nc-1
    for k in ("train", "val", "test"):
        folder = data.get(k)
        if not folder or not folder.exists():
            continue
        for img in folder.iterdir():
            label = Path(str(img).replace("/images/", "/labels/")).with_suffix(".txt")
            assert label.is_file(), f"{img} has no label file"
            for line in label.read_text().splitlines():
                parts = line.split()
                assert len(parts) == 9 and int(parts[0]) in names
                coords = np.array(parts[1:], dtype=float)
                assert coords.max() <= 1.01 and coords.min() >= -0.01


@pytest.mark.parametrize("splits", [("test",), ("validation", "test"), ("validation",)])
def test_yolo_obb_data_yaml_of_a_snapshot_without_a_training_split_passes_ultralytics_checks(tmp_path, splits):
    # Snapshot ratios such as (0, 0, 1) are allowed: a held-out evaluation set. Ultralytics needs
    # `train` and `val` keys even to evaluate (`yolo obb val data=data.yaml split=test`).
    rng = np.random.default_rng(6)
    images = [make_image(i, rng=rng, split=s) for i, s in enumerate(splits, start=1)]
    zf, _ = _export(images, "yolo-obb")
    zf.extractall(tmp_path)
    data = _check_det_dataset(tmp_path / "data.yaml")
    _check_labels(tmp_path, data)
    # ... but no held-out image may stand in as training data: training must fail, not leak.
    held_out = {(tmp_path / "images" / s).resolve() for s in splits}
    assert data["train"] not in held_out and not data["train"].exists()
    if "validation" in splits:
        assert data["val"] == (tmp_path / "images" / "validation").resolve()
    assert data.get("test") in (None, (tmp_path / "images" / "test").resolve())


def test_yolo_obb_clips_to_the_frame_and_writes_empty_label_files_for_blank_images(tmp_path):
    blank = ExportImage(9, "blank.png", 64, 48, "validation", MIT, IM2MARKUP,
                        open_bytes=lambda: make_image(9, rng=np.random.default_rng(0)).open_bytes())
    images = [_overhanging_image(1), blank]
    zf, _ = _export(images, "yolo-obb", include_images=True)
    zf.extractall(tmp_path)
    data = _check_det_dataset(tmp_path / "data.yaml")
    assert data["names"] == {0: "formula", 1: "handwritten"}
    assert (tmp_path / "labels" / "validation" / "blank.txt").read_text() == ""
    lines = (tmp_path / "labels" / "train" / "img_1.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["0", "0", "1"]
    first = np.array(lines[0].split()[1:], dtype=float).reshape(4, 2)
    np.testing.assert_allclose(first, [[0, 0], [1, 0], [1, 0.3], [0, 0.3]])
    _check_labels(tmp_path, data)


# --- COCO (pycocotools) ---------------------------------------------------------------------

def test_coco_export_loads_evaluates_and_carries_the_image_licences(tmp_path):
    rng = np.random.default_rng(7)
    images = [make_image(1, rng=rng, licence=MIT), make_image(2, rng=rng, licence=CC_BY_NC_SA, source=CROHME)]
    zf, _ = _export(images, "coco", include_images=False)
    zf.extractall(tmp_path)
    gt = COCO(str(tmp_path / "annotations" / "train.json"))
    doc = gt.dataset
    assert [c["id"] for c in doc["categories"]] == list(range(1, len(doc["categories"]) + 1))
    assert {lic["code"] for lic in doc["licenses"]} == {"mit", "cc-by-nc-sa-3.0"}
    assert all({"id", "name", "url"} <= set(lic) for lic in doc["licenses"])
    assert {img["license"] for img in doc["images"]} == {lic["id"] for lic in doc["licenses"]}
    for ann in doc["annotations"]:
        assert ann["iscrowd"] == 0 and ann["area"] > 0 and len(ann["bbox"]) == 4
        if isinstance(ann["segmentation"], list):  # a quad: one 8-number polygon
            assert len(ann["segmentation"]) == 1 and len(ann["segmentation"][0]) == 8
        else:  # a mask: compressed RLE of the image's size
            img = gt.imgs[ann["image_id"]]
            assert ann["segmentation"]["size"] == [img["height"], img["width"]]
        assert gt.annToMask(ann).sum() > 0
    # The annotations with a score read back as detections: the ground truth scores itself perfectly.
    dets = gt.loadRes([dict(a, score=1.0) for a in doc["annotations"]])
    for iou_type in ("bbox", "segm"):
        ev = COCOeval(gt, dets, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0)


def test_coco_leaves_out_an_empty_mask_instead_of_a_zero_area_object_no_detector_can_match(tmp_path):
    # COCOeval counts every iscrowd=0 annotation as an object to find; an empty mask (area 0,
    # bbox [0, 0, 0, 0]) can never be matched and would cost recall. YOLO-OBB and Label Studio
    # already leave such a region out; with a quad the quad stands in.
    empty = mask_to_rle(np.zeros((48, 64), dtype=np.uint8))
    quad = [[10.0, 10.0], [40.0, 10.0], [40.0, 20.0], [10.0, 20.0]]
    image = ExportImage(1, "e.png", 64, 48, "train", MIT, IM2MARKUP, regions=[
        ExportRegion(mask_rle=empty, latex="a"), ExportRegion(mask_rle=empty, points=quad, latex="b")])
    zf, result = _export([image], "coco", include_images=False)
    zf.extractall(tmp_path)
    gt = COCO(str(tmp_path / "annotations" / "train.json"))
    anns = gt.dataset["annotations"]
    assert [a["latex"] for a in anns] == ["b"] and result.regions == 1
    assert anns[0]["segmentation"] == [sum(quad, [])] and anns[0]["area"] == pytest.approx(300.0)
    dets = gt.loadRes([dict(a, score=1.0) for a in anns])
    ev = COCOeval(gt, dets, "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[8] == pytest.approx(1.0)  # recall at 100 detections
