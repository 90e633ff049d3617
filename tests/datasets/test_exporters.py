"""Export writers: every format's shape, licence cleanliness, reproducibility."""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools.coco import COCO

from curation.exporters import (
    FORMATS,
    CategoryInfo,
    ExportImage,
    ExportRegion,
    export,
    mask_to_rle,
    rle_to_mask,
)
from tests.datasets.helpers import CC_BY_NC_SA, CC_BY_ND, CROHME, IM2MARKUP, MIT, make_image, png_bytes

# pycocotools' C decoder trips a numpy 2 copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _export(images, fmt, **kwargs):
    buf = io.BytesIO()
    result = export(iter(images), buf, format=fmt, **kwargs)
    buf.seek(0)
    return zipfile.ZipFile(buf), result


def test_coco_export_loads_with_pycocotools_and_masks_decode_to_the_input(tmp_path):
    rng = np.random.default_rng(0)
    images = [make_image(i, rng=rng, split="train" if i < 4 else "test", n_quads=2, n_masks=2) for i in range(1, 7)]
    zf, result = _export(images, "coco", categories=[CategoryInfo("formula", "Formula")])
    zf.extractall(tmp_path)
    assert result.images == 6 and result.regions == 24
    seen = 0
    for split, ids in (("train", [1, 2, 3]), ("test", [4, 5, 6])):
        coco = COCO(str(tmp_path / "annotations" / f"{split}.json"))
        assert sorted(coco.getImgIds()) == ids
        for image in images:
            if image.image_id not in ids:
                continue
            anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[image.image_id])), key=lambda a: a["id"])
            assert len(anns) == len(image.regions)
            for region, ann in zip(image.regions, anns, strict=True):
                assert ann["latex"] == region.latex
                assert coco.loadCats(ann["category_id"])[0]["name"] == "formula"
                if region.mask_rle is not None:
                    expected = rle_to_mask(region.mask_rle)
                    np.testing.assert_array_equal(coco.annToMask(ann), expected)
                    assert ann["area"] == expected.sum()
                    ys, xs = np.nonzero(expected)
                    assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                else:
                    np.testing.assert_allclose(np.reshape(ann["segmentation"][0], (4, 2)), region.points)
                    assert "quad" not in ann  # the polygon is the quad, in reading order
                    x0, y0 = region.points.min(axis=0)
                    x1, y1 = region.points.max(axis=0)
                    np.testing.assert_allclose(ann["bbox"], [x0, y0, x1 - x0, y1 - y0])
                    # An axis-aligned box's area would be larger: the area is the quad's own.
                    w = np.linalg.norm(region.points[1] - region.points[0])
                    h = np.linalg.norm(region.points[3] - region.points[0])
                    assert ann["area"] == pytest.approx(w * h)
                seen += 1
    assert seen == 24
    assert (tmp_path / "images" / "img_1.png").read_bytes() == images[0].open_bytes()


def test_coco_images_carry_a_licence_id_from_the_licences_list(tmp_path):
    rng = np.random.default_rng(1)
    images = [make_image(1, rng=rng, licence=MIT), make_image(2, rng=rng, licence=CC_BY_NC_SA, source=CROHME)]
    zf, _ = _export(images, "coco", include_images=False)
    doc = json.loads(zf.read("annotations/train.json"))
    licences = {lic["id"]: lic for lic in doc["licenses"]}
    by_image = {img["id"]: licences[img["license"]]["code"] for img in doc["images"]}
    assert by_image == {1: "mit", 2: "cc-by-nc-sa-3.0"}
    assert licences[doc["images"][0]["license"]]["url"] == MIT.url
    assert not any(n.startswith("images/") for n in zf.namelist())


def test_yolo_obb_coordinates_round_trip_within_1e_6():
    rng = np.random.default_rng(2)
    images = [make_image(i, rng=rng, width=int(rng.integers(50, 4000)), height=int(rng.integers(50, 3000)),
                         n_quads=3, n_masks=0, with_bytes=False, split=["train", "validation", "test"][i % 3])
              for i in range(1, 31)]
    zf, _ = _export(images, "yolo-obb", include_images=False)
    for image in images:
        split = {"train": "train", "validation": "validation", "test": "test"}[image.split]
        lines = zf.read(f"labels/{split}/img_{image.image_id}.txt").decode().splitlines()
        assert len(lines) == 3
        for region, line in zip(image.regions, lines, strict=True):
            parts = line.split()
            assert parts[0] == "0"
            norm = np.array(parts[1:], dtype=float).reshape(4, 2)
            assert ((0 <= norm) & (norm <= 1)).all()
            expected = region.points / [image.width, image.height]
            assert np.abs(norm - expected).max() < 1e-6
            assert np.abs(norm * [image.width, image.height] - region.points).max() < 1e-6
    data = yaml.safe_load(zf.read("data.yaml"))
    assert data["names"] == {0: "formula"}
    assert (data["train"], data["val"], data["test"]) == ("images/train", "images/validation", "images/test")


def test_yolo_obb_data_yaml_finds_its_images_wherever_the_zip_is_unpacked(tmp_path, monkeypatch):
    rng = np.random.default_rng(13)
    images = [make_image(i, rng=rng, split=s) for i, s in ((1, "train"), (2, "validation"), (3, "test"))]
    zf, _ = _export(images, "yolo-obb")
    root = tmp_path / "unpacked"
    zf.extractall(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a trainer is rarely started inside the dataset folder
    yaml_file = root / "data.yaml"
    doc = yaml.safe_load(yaml_file.read_text())
    # Ultralytics' rule (ultralytics.data.utils.check_det_dataset): the dataset root is `path`
    # when given, else the YAML's folder; a relative `path` that exists is taken from the current
    # directory, one that does not from its datasets_dir. `path: .` pointed at the cwd.
    dataset_root = Path(doc.get("path") or yaml_file.parent)
    for key, split in (("train", "train"), ("val", "validation"), ("test", "test")):
        folder = (dataset_root / doc[key]).resolve()
        assert folder == root / "images" / split
        image = next(folder.iterdir())
        label = Path(str(image).replace("/images/", "/labels/")).with_suffix(".txt")  # img2label_paths
        assert label.is_file()


def test_yolo_obb_gives_a_mask_only_region_its_minimum_area_rectangle():
    mask = np.zeros((40, 80), dtype=np.uint8)
    mask[10:20, 30:70] = 1  # 40 x 10 block: its tight rectangle is exact up to pixel edges
    image = ExportImage(1, "m.png", 80, 40, "train", MIT, IM2MARKUP, regions=[ExportRegion(mask_rle=mask_to_rle(mask))])
    zf, _ = _export([image], "yolo-obb", include_images=False)
    quad = np.array(zf.read("labels/train/m.txt").split()[1:], dtype=float).reshape(4, 2) * [80, 40]
    np.testing.assert_allclose(quad, [[30, 10], [69, 10], [69, 19], [30, 19]], atol=1.0)
    assert quad[0].sum() == quad.sum(axis=1).min()  # starts top-left


def test_label_studio_json_has_the_shape_label_studio_imports():
    rng = np.random.default_rng(3)
    image = make_image(7, rng=rng, width=200, height=100, n_quads=1, n_masks=1)
    zf, _ = _export([image], "label-studio", image_url=lambda im: f"/data/local-files/?d=mathset/{im.file_name}")
    tasks = json.loads(zf.read("tasks.json"))
    assert len(tasks) == 1
    task = tasks[0]
    assert task["data"]["image"] == "/data/local-files/?d=mathset/img_7.png"
    result = task["annotations"][0]["result"]
    assert [r["type"] for r in result] == ["polygonlabels", "textarea", "polygonlabels", "textarea",
                                           "brushlabels", "textarea"]
    for r in result:
        from_name = {"polygonlabels": "label", "brushlabels": "mask", "textarea": "latex"}[r["type"]]
        assert (r["from_name"], r["to_name"]) == (from_name, "image")
        assert (r["original_width"], r["original_height"]) == (200, 100)
        assert all(0 <= x <= 100 and 0 <= y <= 100 for x, y in r["value"].get("points", []))
    polygon, text = result[0], result[1]
    assert polygon["id"] == text["id"]  # the per-region textarea belongs to its polygon
    np.testing.assert_allclose(np.array(polygon["value"]["points"]) / 100 * [200, 100], image.regions[0].points)
    assert polygon["value"]["polygonlabels"] == ["formula"]
    assert text["value"]["text"] == [image.regions[0].latex]
    # The mask is outlined: its polygon covers the mask's bounding box.
    outline = np.array(result[2]["value"]["points"]) / 100 * [200, 100]
    ys, xs = np.nonzero(rle_to_mask(image.regions[1].mask_rle))
    assert abs(outline[:, 0].min() - xs.min()) <= 1 and abs(outline[:, 1].max() - ys.max()) <= 1
    # ... and the mask itself is the brush region after the polygons, with the same LaTeX.
    brush, brush_text = result[4], result[5]
    assert brush["id"] == brush_text["id"] == result[2]["id"] + "-mask"
    assert brush["value"]["brushlabels"] == ["formula"] and brush_text["value"]["text"] == [image.regions[1].latex]
    config = zf.read("label_config.xml").decode()
    for needle in ('<PolygonLabels name="label" toName="image">', '<Label value="formula"/>',
                   '<BrushLabels name="mask" toName="image">',
                   '<TextArea name="latex" toName="image" perRegion="true"', 'value="$image"'):
        assert needle in config


def test_label_studio_tasks_point_at_the_images_with_a_local_files_url_by_default():
    # Label Studio cannot load a bare relative path ("images/img_7.png"); through a local-files
    # storage whose document root is the unpacked export it serves /data/local-files/?d=<path>.
    rng = np.random.default_rng(14)
    zf, _ = _export([make_image(7, rng=rng)], "label-studio")
    url = json.loads(zf.read("tasks.json"))[0]["data"]["image"]
    assert url == "/data/local-files/?d=images/img_7.png"
    assert parse_qs(urlsplit(url).query)["d"][0] in zf.namelist()


def test_label_studio_export_can_write_predictions_with_a_model_version():
    rng = np.random.default_rng(4)
    zf, _ = _export([make_image(1, rng=rng)], "label-studio", as_predictions=True, model_version="det-v3",
                    include_images=False)
    task = json.loads(zf.read("tasks.json"))[0]
    assert "annotations" not in task
    assert task["predictions"][0]["model_version"] == "det-v3"
    assert len(task["predictions"][0]["result"]) == 8  # 3 polygons + LaTeX, 1 brush + LaTeX


def _rotated_formula_image():
    """A white page with a 200 x 60 'formula' rotated by 30 degrees: a black block marks its start."""
    page = np.full((400, 400, 3), 255, dtype=np.uint8)
    angle = np.deg2rad(30)
    u = np.array([np.cos(angle), np.sin(angle)])     # reading direction
    v = np.array([-np.sin(angle), np.cos(angle)])    # down the line
    origin = np.array([80.0, 60.0])
    quad = np.array([origin, origin + 200 * u, origin + 200 * u + 60 * v, origin + 60 * v])
    cv2.fillPoly(page, [np.rint(quad).astype(np.int32)], (200, 200, 200))
    start = np.array([origin, origin + 40 * u, origin + 40 * u + 60 * v, origin + 60 * v])
    cv2.fillPoly(page, [np.rint(start).astype(np.int32)], (0, 0, 0))
    ok, buf = cv2.imencode(".png", page)
    return buf.tobytes(), quad


def test_im2latex_crops_are_rectified_upright_with_the_quads_size():
    data, quad = _rotated_formula_image()
    image = ExportImage(3, "page.png", 400, 400, "validation", MIT, IM2MARKUP, open_bytes=lambda: data,
                        regions=[ExportRegion(points=quad, latex=r"\frac12"), ExportRegion(points=quad, latex="")])
    zf, result = _export([image], "im2latex")
    assert result.regions == 1  # the region without LaTeX is no im2latex sample
    crop = cv2.imdecode(np.frombuffer(zf.read("images/3_0.png"), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert crop.shape == (60, 200)
    # The start marker (first 40 of 200 px) is on the left: the formula reads left to right.
    assert crop[5:55, 5:35].mean() < 30
    assert crop[5:55, 50:195].mean() > 170
    assert zf.read("formulas.lst").decode() == "\\frac { 1 } { 2 }\n"
    assert zf.read("validate.lst").decode() == "3_0.png 0\n"


def test_im2latex_leaves_out_illegible_regions_whose_latex_is_a_guess():
    data, quad = _rotated_formula_image()
    image = ExportImage(3, "page.png", 400, 400, "train", MIT, IM2MARKUP, open_bytes=lambda: data,
                        regions=[ExportRegion(points=quad, latex="x ^ 2", flags=("illegible",)),
                                 ExportRegion(points=quad, latex="y", flags=("partial",))])
    zf, result = _export([image], "im2latex")
    assert result.regions == 1
    assert zf.read("formulas.lst").decode() == "y\n"
    assert zf.read("train.lst").decode() == "3_1.png 0\n"
    assert "images/3_0.png" not in zf.namelist()


def test_im2latex_leaves_out_images_whose_licence_forbids_derivatives():
    rng = np.random.default_rng(5)
    images = [make_image(1, rng=rng, licence=CC_BY_ND), make_image(2, rng=rng)]
    zf, result = _export(images, "im2latex")
    assert result.images == 1
    assert result.excluded == [{"licence": "cc-by-nd-4.0", "images": 1,
                                "reason": "licence forbids derivatives (this format writes crops of the image)"}]
    assert all(not n.startswith("images/1_") for n in zf.namelist())
    # Other formats copy the image unchanged, which ND allows.
    _, coco = _export(images, "coco")
    assert coco.images == 2 and coco.excluded == []


def test_icdar_lines_are_integer_quads_with_transcriptions():
    quad = np.array([[10.4, 20.6], [50, 20], [50.5, 40], [10, 40]])
    image = ExportImage(1, "a.jpg", 100, 80, "test", MIT, IM2MARKUP, regions=[
        ExportRegion(points=quad, latex="f(x, y)\n= 1"),
        ExportRegion(points=quad, latex="??", flags=("illegible",)),
    ])
    zf, _ = _export([image], "icdar2015", include_images=False)
    assert zf.read("test/gt/gt_img_1.txt").decode().splitlines() == [
        "10,21,50,20,50,40,10,40,f(x, y) = 1",
        "10,21,50,20,50,40,10,40,###",
    ]


def _icdar_clockwise(coords: list[int]) -> bool:
    """The ICDAR-2015 evaluation script's check (rrc_evaluation_funcs.validate_clockwise_points)."""
    p = coords
    edges = [(p[2] - p[0]) * (p[3] + p[1]), (p[4] - p[2]) * (p[5] + p[3]),
             (p[6] - p[4]) * (p[7] + p[5]), (p[0] - p[6]) * (p[1] + p[7])]
    return sum(edges) <= 0


def test_icdar_files_are_named_img_n_and_gt_img_n_as_the_benchmark_tools_pair_them():
    # The RRC evaluation script keys ground truth by `gt_img_([0-9]+).txt` (and results by
    # `res_img_([0-9]+).txt`) and silently skips any other name: `gt_00000007.txt` was never read.
    rng = np.random.default_rng(12)
    images = [ExportImage(7, "00000007.JPG", 64, 48, "test", MIT, IM2MARKUP, open_bytes=lambda: png_bytes(64, 48),
                          regions=[ExportRegion(points=[[5, 5], [40, 6], [39, 20], [4, 19]], latex="a")]),
              make_image(12, rng=rng, split="test", n_quads=2, n_masks=1)]
    zf, _ = _export(images, "icdar2015")
    names = set(zf.namelist())
    assert {"test/images/img_7.jpg", "test/gt/gt_img_7.txt", "test/images/img_12.png", "test/gt/gt_img_12.txt"} <= names
    gt_ids = {m.group(1) for n in names if (m := re.fullmatch(r"test/gt/gt_img_([0-9]+)\.txt", n))}
    image_ids = {m.group(1) for n in names if (m := re.fullmatch(r"test/images/img_([0-9]+)\.\w+", n))}
    assert gt_ids == image_ids == {"7", "12"}
    for n in ("test/gt/gt_img_7.txt", "test/gt/gt_img_12.txt"):
        for line in zf.read(n).decode().splitlines():
            coords = [int(v) for v in line.split(",", 8)[:8]]
            assert _icdar_clockwise(coords), line


def test_jsonl_writes_one_line_per_image_with_regions_licence_and_source():
    rng = np.random.default_rng(6)
    images = [make_image(i, rng=rng, n_quads=1, n_masks=1) for i in (1, 2)]
    zf, _ = _export(images, "jsonl", include_images=False)
    lines = [json.loads(x) for x in zf.read("annotations.jsonl").decode().splitlines()]
    assert [x["image_id"] for x in lines] == [1, 2]
    first = lines[0]
    assert first["licence"]["code"] == "mit" and first["licence"]["allows_commercial"] is True
    assert first["source"] == {"name": "im2markup", "copyright_holder": "Harvard NLP",
                               "attribution": IM2MARKUP.attribution, "url": IM2MARKUP.url}
    np.testing.assert_allclose(first["regions"][0]["points"], images[0].regions[0].points)
    assert first["regions"][1]["points"] is None
    np.testing.assert_array_equal(rle_to_mask(first["regions"][1]["mask"]), rle_to_mask(images[0].regions[1].mask_rle))
    assert [r["latex"] for r in first["regions"]] == [r.latex for r in images[0].regions]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_commercial_export_contains_no_nc_item_and_says_how_many_were_left_out(fmt):
    rng = np.random.default_rng(7)
    images = [make_image(i, rng=rng, licence=CC_BY_NC_SA if i % 3 == 0 else MIT,
                         source=CROHME if i % 3 == 0 else IM2MARKUP) for i in range(1, 10)]
    zf, result = _export(images, fmt, intended_use="commercial")
    nc_ids = {3, 6, 9}
    assert result.images == 6 and result.excluded_images == 3
    assert result.excluded == [{"licence": "cc-by-nc-sa-3.0", "reason": "licence forbids commercial use", "images": 3}]
    assert result.licences == {"mit": 6}
    manifest = json.loads(zf.read("LICENSES.json"))
    assert manifest["excluded"] == {"images": 3, "by_reason": result.excluded}
    assert [lic["code"] for lic in manifest["licences"]] == ["mit"]
    assert manifest["intended_use"] == "commercial"
    # No trace of an NC image anywhere in the archive.
    for name in zf.namelist():
        for i in nc_ids:
            assert f"img_{i}." not in name and not name.startswith(f"images/{i}_")
        if name.endswith((".json", ".jsonl", ".txt", ".lst")) and name != "LICENSES.json":
            text = zf.read(name).decode()
            assert "cc-by-nc" not in text and "CROHME" not in text
            for i in nc_ids:
                assert f"x_{{{i}}}" not in text.replace(" ", "")
    assert "CROHME" not in zf.read("ATTRIBUTION.md").decode()


def test_research_export_keeps_nc_items_and_credits_every_source():
    rng = np.random.default_rng(8)
    images = [make_image(1, rng=rng, licence=CC_BY_NC_SA, source=CROHME), make_image(2, rng=rng)]
    zf, result = _export(images, "jsonl", intended_use="research")
    assert result.images == 2 and result.excluded == []
    manifest = json.loads(zf.read("LICENSES.json"))
    assert {lic["code"]: lic["images"] for lic in manifest["licences"]} == {"cc-by-nc-sa-3.0": 1, "mit": 1}
    assert manifest["share_alike"] == ["cc-by-nc-sa-3.0"]
    attribution = zf.read("ATTRIBUTION.md").decode()
    for source in (CROHME, IM2MARKUP):
        assert f"## {source.name}" in attribution
        assert source.attribution in attribution and source.url in attribution
        assert source.copyright_holder in attribution


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_export_of_the_same_items_is_byte_for_byte_identical(fmt):
    def build():
        rng = np.random.default_rng(9)
        buf = io.BytesIO()
        export((make_image(i, rng=rng) for i in range(1, 5)), buf, format=fmt)
        return buf.getvalue()

    assert build() == build()


def test_export_refuses_unknown_format_and_intended_use():
    with pytest.raises(ValueError, match="unknown export format"):
        export([], io.BytesIO(), format="pascal-voc")
    with pytest.raises(ValueError, match="intended_use"):
        export([], io.BytesIO(), format="coco", intended_use="personal")
    with pytest.raises(TypeError, match="does not take options"):
        export([], io.BytesIO(), format="coco", as_predictions=True)


def test_region_needs_a_4x2_quad_or_a_mask():
    with pytest.raises(ValueError, match="4x2"):
        ExportRegion(points=[[0, 0], [1, 0], [1, 1]])
    with pytest.raises(ValueError, match="points, a mask"):
        ExportRegion(latex="x")


def test_labels_only_export_never_reads_image_bytes():
    def boom():
        raise AssertionError("open_bytes was called")

    image = ExportImage(1, "a.png", 10, 10, "train", MIT, IM2MARKUP, open_bytes=boom,
                        regions=[ExportRegion(points=[[0, 0], [5, 0], [5, 5], [0, 5]])])
    for fmt in ("coco", "jsonl", "yolo-obb", "label-studio", "icdar2015"):
        _, result = _export([image], fmt, include_images=False)
        assert result.images == 1


def test_export_writes_to_a_path(tmp_path):
    rng = np.random.default_rng(10)
    target = tmp_path / "out.zip"
    export([make_image(1, rng=rng)], target, format="coco")
    with zipfile.ZipFile(target) as zf:
        assert "annotations/train.json" in zf.namelist()
        assert zf.read("images/img_1.png") == png_bytes(64, 48)


@pytest.mark.parametrize("name", ["../evil.png", "/etc/passwd", "a/../../b.png", "a//b.png", "a\\b.png", ""])
def test_export_refuses_file_names_that_escape_the_archive(name):
    image = ExportImage(1, name, 10, 10, "train", MIT, IM2MARKUP, regions=[])
    with pytest.raises(ValueError, match="plain relative path"):
        export([image], io.BytesIO(), format="coco")


def test_export_refuses_a_split_name_with_path_characters():
    image = ExportImage(1, "a.png", 10, 10, "../train", MIT, IM2MARKUP, regions=[])
    with pytest.raises(ValueError, match="split"):
        export([image], io.BytesIO(), format="yolo-obb")


def test_coco_region_with_quad_and_mask_keeps_both(tmp_path):
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:10, 4:20] = 1
    quad = [[4, 5], [19, 5], [19, 9], [4, 9]]
    image = ExportImage(1, "b.png", 30, 20, "train", MIT, IM2MARKUP,
                        regions=[ExportRegion(points=quad, mask_rle=mask_to_rle(mask), latex="a", flags=("partial",))])
    zf, _ = _export([image], "coco", include_images=False)
    zf.extractall(tmp_path)
    coco = COCO(str(tmp_path / "annotations" / "train.json"))
    ann = coco.loadAnns(coco.getAnnIds())[0]
    np.testing.assert_array_equal(coco.annToMask(ann), mask)
    assert ann["quad"] == [4, 5, 19, 5, 19, 9, 4, 9]
    assert ann["area"] == 80 and ann["bbox"] == [4, 5, 16, 5]
    assert ann["flags"] == ["partial"]


def test_a_failed_export_leaves_no_half_written_file(tmp_path):
    def unreadable():
        raise OSError("storage went away")

    rng = np.random.default_rng(11)
    images = [make_image(1, rng=rng), ExportImage(2, "b.png", 10, 10, "train", MIT, IM2MARKUP, open_bytes=unreadable)]
    target = tmp_path / "out.zip"
    with pytest.raises(OSError, match="storage went away"):
        export(iter(images), target, format="coco")
    assert not target.exists()


def test_yolo_obb_writes_a_gif_as_png_which_ultralytics_reads():
    """Ultralytics' IMG_FORMATS has no gif: the image was skipped and its labels orphaned."""
    frame = Image.new("P", (64, 48), 0)
    frame.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    frame.paste(1, (10, 10, 40, 30))
    gif = io.BytesIO()
    frame.save(gif, "GIF")
    rng = np.random.default_rng(5)
    image = make_image(1, rng=rng, n_masks=0)
    image.file_name, image.open_bytes = "scan.gif", (lambda: gif.getvalue())
    zf, _ = _export([image], "yolo-obb")
    names = set(zf.namelist())
    assert "images/train/scan.png" in names and "images/train/scan.gif" not in names
    assert "labels/train/scan.txt" in names  # img2label_paths: same stem
    with Image.open(io.BytesIO(zf.read("images/train/scan.png"))) as png:
        assert png.format == "PNG" and png.size == (64, 48)
        assert png.convert("L").getpixel((20, 20)) == 0 and png.convert("L").getpixel((5, 5)) == 255


def test_yolo_obb_without_a_validation_split_still_loads_with_a_val_entry():
    """Ultralytics refuses a data.yaml without `val`; a snapshot with validation ratio 0 had none."""
    rng = np.random.default_rng(8)
    images = [make_image(i, rng=rng, split=s) for i, s in ((1, "train"), (2, "test"))]
    zf, _ = _export(images, "yolo-obb")
    text = zf.read("data.yaml").decode()
    doc = yaml.safe_load(text)
    assert (doc["train"], doc["val"], doc["test"]) == ("images/train", "images/train", "images/test")
    assert text.startswith("# This snapshot has no validation split")
