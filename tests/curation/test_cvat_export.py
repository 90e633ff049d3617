"""The CVAT for images 1.1 XML export (format ``cvat``): ``annotations.xml`` beside ``images/``.

The XML is read back here with the standard library and the CVAT rules restated by hand: a quad
is a 4-point ``<polygon>``, a mask a ``<mask>`` whose ``rle`` counts alternate 0s and 1s row by
row over its box (``left``, ``top``, ``width``, ``height``), starting with 0s; the LaTeX is a text
attribute and the flags are checkbox attributes declared on every label. Licence rules hold as
for every format: a commercial export leaves out what it may not give out, and every file is
credited. (``bench/compat_cvat.py`` loads the same files with datumaro, CVAT's own dataset library.)
"""
from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
from django.test import Client

from curation import snapshots
from curation.exporters import FORMATS, CategoryInfo, ExportImage, ExportRegion, export, mask_to_rle, rle_to_mask
from curation.models import DatasetSpec, Export, Image
from tests import factories
from tests.datasets.helpers import CC_BY_NC_SA, CROHME, IM2MARKUP, MIT, make_image, png_bytes
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _export(images, **kwargs) -> tuple[zipfile.ZipFile, object]:
    buf = io.BytesIO()
    result = export(iter(images), buf, format="cvat", **kwargs)
    buf.seek(0)
    return zipfile.ZipFile(buf), result


def _xml(zf: zipfile.ZipFile) -> ET.Element:
    return ET.fromstring(zf.read("annotations.xml"))


def _cvat_mask(el: ET.Element, width: int, height: int) -> np.ndarray:
    """A CVAT ``<mask>`` drawn on a width x height image, by the rules stated in the docstring."""
    counts = [int(v) for v in el.get("rle").split(",")]
    left, top, w, h = (int(el.get(k)) for k in ("left", "top", "width", "height"))
    assert sum(counts) == w * h
    values = np.concatenate([np.full(n, k % 2, dtype=np.uint8) for k, n in enumerate(counts)])
    out = np.zeros((height, width), dtype=np.uint8)
    out[top:top + h, left:left + w] = values.reshape(h, w)
    return out


def _points(el: ET.Element) -> list[list[float]]:
    return [[float(v) for v in pair.split(",")] for pair in el.get("points").split(";")]


def _attributes(el: ET.Element) -> dict[str, str]:
    return {a.get("name"): a.text or "" for a in el.findall("attribute")}


# ------------------------------------------------------------------- the document


def test_cvat_is_a_registered_export_format_and_a_choice_of_the_export_model():
    assert "cvat" in FORMATS
    assert "cvat" in Export.Format.values
    assert set(Export.Format.values) == set(FORMATS)


def test_the_document_is_cvat_for_images_1_1_with_every_category_as_a_label():
    rng = np.random.default_rng(1)
    images = [make_image(i, rng=rng) for i in (1, 2, 3)]
    zf, result = _export(images, categories=[CategoryInfo("printed", "Printed"), CategoryInfo("formula", "Formula")])
    root = _xml(zf)
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task.findtext("size") == "3" and task.findtext("mode") == "annotation"
    assert (task.findtext("start_frame"), task.findtext("stop_frame")) == ("0", "2")
    labels = task.findall("labels/label")
    assert [lb.findtext("name") for lb in labels] == ["printed", "formula"]
    for label in labels:
        attrs = {a.findtext("name"): a for a in label.findall("attributes/attribute")}
        assert set(attrs) == {"latex", "illegible", "cut_off"}
        assert attrs["latex"].findtext("input_type") == "text"
        for flag in ("illegible", "cut_off"):
            assert attrs[flag].findtext("input_type") == "checkbox"
            assert attrs[flag].findtext("default_value") == "false"
    frames = root.findall("image")
    assert [(f.get("id"), f.get("name"), f.get("width"), f.get("height")) for f in frames] == [
        ("0", "img_1.png", "64", "48"), ("1", "img_2.png", "64", "48"), ("2", "img_3.png", "64", "48")]
    assert result.images == 3 and result.regions == 9


def test_an_export_without_categories_still_declares_a_label():
    image = ExportImage(1, "a.png", 20, 10, "train", MIT, IM2MARKUP,
                        regions=[ExportRegion(points=[[1, 1], [9, 1], [9, 5], [1, 5]], latex="x")])
    zf, _ = _export([image], include_images=False)
    root = _xml(zf)
    assert [lb.findtext("name") for lb in root.findall("meta/task/labels/label")] == ["formula"]
    assert root.find("image/polygon").get("label") == "formula"


def test_images_go_in_under_images_and_a_labels_only_export_holds_none():
    rng = np.random.default_rng(2)
    images = [make_image(i, rng=rng) for i in (1, 2)]
    zf, _ = _export(images)
    assert zf.read("images/img_1.png") == png_bytes(64, 48)
    assert {"annotations.xml", "images/img_1.png", "images/img_2.png", "LICENSES.json", "ATTRIBUTION.md",
            "PROVENANCE.jsonl"} <= set(zf.namelist())
    provenance = [json.loads(line) for line in zf.read("PROVENANCE.jsonl").decode().splitlines()]
    assert provenance[0]["files"] == ["images/img_1.png"]
    zf, _ = _export([make_image(1, rng=rng)], include_images=False)
    assert not any(n.startswith("images/") for n in zf.namelist())


# ------------------------------------------------------------------- regions


def test_a_quad_is_a_four_point_polygon_with_its_latex_and_flags_as_attributes():
    quad = [[10.25, 5.5], [50.125, 7.0], [48.0, 30.75], [8.0, 28.0000001]]
    image = ExportImage(1, "q.png", 64, 48, "train", MIT, IM2MARKUP, regions=[
        ExportRegion(points=quad, latex=r"\frac{a}{b}", category="printed", flags=("illegible", "partial")),
        ExportRegion(points=[[1, 1], [9, 1], [9, 5], [1, 5]], latex="y", category="handwritten"),
    ])
    zf, _ = _export([image], include_images=False)
    first, second = _xml(zf).findall("image/polygon")
    assert _points(first) == quad          # every digit: the points round-trip exactly
    assert (first.get("label"), first.get("occluded"), first.get("source"), first.get("z_order")) == (
        "printed", "0", "manual", "0")
    assert first.get("group_id") is None
    assert _attributes(first) == {"latex": r"\frac{a}{b}", "illegible": "true", "cut_off": "true"}
    assert _attributes(second) == {"latex": "y", "illegible": "false", "cut_off": "false"}
    assert second.get("label") == "handwritten"


def test_a_mask_is_written_in_cvat_rle_over_its_bounding_box():
    w, h = 40, 30
    two_parts = np.zeros((h, w), dtype=np.uint8)
    two_parts[3:8, 5:20] = 1
    two_parts[15:18, 8:12] = 1
    corner = np.zeros((h, w), dtype=np.uint8)   # its box's top-left pixel is set: the counts start with 0
    corner[20:25, 30:40] = 1
    corner[22, 30] = 0
    image = ExportImage(1, "m.png", w, h, "train", MIT, IM2MARKUP, regions=[
        ExportRegion(mask_rle=mask_to_rle(two_parts), latex="a", category="printed"),
        ExportRegion(mask_rle=mask_to_rle(corner), latex="b", category="printed"),
    ])
    zf, result = _export([image], include_images=False)
    first, second = _xml(zf).findall("image/mask")
    assert (first.get("left"), first.get("top"), first.get("width"), first.get("height")) == ("5", "3", "15", "15")
    assert (second.get("left"), second.get("top"), second.get("width"), second.get("height")) == ("30", "20", "10",
                                                                                                  "5")
    assert second.get("rle").split(", ")[0] == "0"
    assert ", " in first.get("rle")          # CVAT's own separator
    np.testing.assert_array_equal(_cvat_mask(first, w, h), two_parts)
    np.testing.assert_array_equal(_cvat_mask(second, w, h), corner)
    assert _attributes(first)["latex"] == "a" and first.get("label") == "printed"
    assert first.get("group_id") is None and result.regions == 2


def test_a_region_with_a_quad_and_a_mask_is_a_polygon_and_a_mask_sharing_a_group_id():
    rng = np.random.default_rng(3)
    images = [make_image(i, rng=rng, n_quads=0, n_masks=0) for i in (1, 2)]
    for image in images:
        for k in range(2):
            m = np.zeros((48, 64), dtype=np.uint8)
            m[5 + 20 * k:15 + 20 * k, 10:40] = 1
            quad = [[10, 5 + 20 * k], [40, 5 + 20 * k], [40, 15 + 20 * k], [10, 15 + 20 * k]]
            image.regions.append(ExportRegion(points=quad, mask_rle=mask_to_rle(m), latex=f"z_{k}", category="formula",
                                              flags=("illegible",)))
    zf, result = _export(images, include_images=False)
    groups = []
    for frame in _xml(zf).findall("image"):
        shapes = list(frame)
        assert [s.tag for s in shapes] == ["polygon", "mask", "polygon", "mask"]
        for polygon, mask in (shapes[0:2], shapes[2:4]):
            assert polygon.get("group_id") == mask.get("group_id") is not None
            assert _attributes(polygon) == _attributes(mask) == {"latex": _attributes(polygon)["latex"],
                                                                 "illegible": "true", "cut_off": "false"}
            groups.append(int(polygon.get("group_id")))
    assert len(set(groups)) == 4 and min(groups) >= 1          # one group per formula, never reused
    assert result.regions == 4


def test_an_empty_mask_is_written_as_its_quad_or_left_out_without_one():
    empty = mask_to_rle(np.zeros((10, 20), dtype=np.uint8))
    image = ExportImage(1, "e.png", 20, 10, "train", MIT, IM2MARKUP, regions=[
        ExportRegion(mask_rle=empty, latex="gone"),
        ExportRegion(points=[[1, 1], [9, 1], [9, 5], [1, 5]], mask_rle=empty, latex="quad only"),
    ])
    zf, result = _export([image], include_images=False)
    frame = _xml(zf).find("image")
    assert [s.tag for s in frame] == ["polygon"] and frame[0].get("group_id") is None
    assert _attributes(frame[0])["latex"] == "quad only" and result.regions == 1


def test_xml_special_characters_in_latex_labels_and_names_survive():
    latex = 'a<b & c>"d" \'e\' \\text{größe}\tπ'
    image = ExportImage(1, 'dir/we"ird & <name>.png', 20, 10, "train", MIT, IM2MARKUP, regions=[
        ExportRegion(points=[[1, 1], [9, 1], [9, 5], [1, 5]], latex=latex, category='a&b"<c>')])
    zf, _ = _export([image], include_images=False)
    root = _xml(zf)
    frame = root.find("image")
    assert frame.get("name") == 'dir/we"ird & <name>.png'
    assert _attributes(frame.find("polygon"))["latex"] == latex
    assert frame.find("polygon").get("label") == 'a&b"<c>'
    assert root.find("meta/task/labels/label").findtext("name") == 'a&b"<c>'


def test_a_carriage_return_in_latex_is_kept():
    """A parser turns a raw CR (or CR LF) into LF; written as a character reference it stays."""
    image = ExportImage(1, "r.png", 20, 10, "train", MIT, IM2MARKUP, regions=[
        ExportRegion(points=[[1, 1], [9, 1], [9, 5], [1, 5]], latex="a\r\nb")])
    zf, _ = _export([image], include_images=False)
    assert _attributes(_xml(zf).find("image/polygon"))["latex"] == "a\r\nb"


def test_the_cvat_export_of_the_same_items_is_byte_for_byte_identical():
    def build() -> bytes:
        rng = np.random.default_rng(9)
        buf = io.BytesIO()
        export((make_image(i, rng=rng) for i in range(1, 5)), buf, format="cvat")
        return buf.getvalue()

    assert build() == build()


def test_masks_of_the_synthetic_images_decode_to_the_input():
    rng = np.random.default_rng(4)
    images = [make_image(i, rng=rng, n_quads=1, n_masks=2) for i in (1, 2)]
    zf, _ = _export(images, include_images=False)
    for image, frame in zip(images, _xml(zf).findall("image"), strict=True):
        masks = frame.findall("mask")
        want = [r.mask_rle for r in image.regions if r.mask_rle is not None]
        assert len(masks) == len(want) == 2
        for el, rle in zip(masks, want, strict=True):
            np.testing.assert_array_equal(_cvat_mask(el, image.width, image.height), rle_to_mask(rle))


# ------------------------------------------------------------------- licences


def test_a_commercial_cvat_export_leaves_out_non_commercial_images_and_says_how_many():
    rng = np.random.default_rng(7)
    images = [make_image(i, rng=rng, licence=CC_BY_NC_SA if i % 3 == 0 else MIT,
                         source=CROHME if i % 3 == 0 else IM2MARKUP) for i in range(1, 10)]
    zf, result = _export(images, intended_use="commercial")
    assert result.images == 6 and result.excluded_images == 3
    assert result.excluded == [{"licence": "cc-by-nc-sa-3.0", "reason": "licence forbids commercial use", "images": 3}]
    manifest = json.loads(zf.read("LICENSES.json"))
    assert manifest["format"] == "cvat" and manifest["excluded"]["images"] == 3
    root = _xml(zf)
    assert [f.get("name") for f in root.findall("image")] == [f"img_{i}.png" for i in (1, 2, 4, 5, 7, 8)]
    assert root.find("meta/task").findtext("size") == "6"
    text = zf.read("annotations.xml").decode()
    for i in (3, 6, 9):
        assert f"img_{i}." not in text and f"x_{{{i}}}" not in text
        assert f"images/img_{i}.png" not in zf.namelist()
    assert "CROHME" not in zf.read("ATTRIBUTION.md").decode()


def test_a_research_cvat_export_keeps_non_commercial_images_and_credits_their_source():
    rng = np.random.default_rng(8)
    zf, result = _export([make_image(1, rng=rng, licence=CC_BY_NC_SA, source=CROHME), make_image(2, rng=rng)],
                         intended_use="research")
    assert result.images == 2 and result.excluded == []
    attribution = zf.read("ATTRIBUTION.md").decode()
    assert f"## {CROHME.name}" in attribution and "NonCommercial" in attribution
    assert len(_xml(zf).findall("image")) == 2


@pytest.mark.django_db
def test_a_snapshot_exported_as_cvat_credits_every_image_and_leaves_out_what_became_non_commercial(curator, nc_source):
    by = factories.make_source("cc-by-4.0", url="https://example.org/by", attribution="Photos by Ann")
    spec = factories.make_spec(intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    for k in range(3):
        factories.make_image(spec=spec, source=by, data=factories.png_bytes(200, 100, seed=500 + k))
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=0, quantity=3)
    from tests.curation.test_snapshots import accept_all
    assert accept_all(vendor) == 3
    snap = factories.make_snapshot(spec=spec, name="cvat", created_by=curator)
    buf = io.BytesIO()
    result = snapshots.export_build(snapshot=snap, format="cvat", dest=buf)
    zf = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    assert result.images == 3
    provenance = {row["image_id"]: row for row in map(json.loads, zf.read("PROVENANCE.jsonl").decode().splitlines())}
    for frame in _xml(zf).findall("image"):
        member = f"images/{frame.get('name')}"
        assert member in zf.namelist()
        row = next(r for r in provenance.values() if member in r["files"])
        assert (row["source"], row["licence"]) == (by.name, "cc-by-4.0")
    assert "Photos by Ann" in zf.read("ATTRIBUTION.md").decode()
    # An image moved to a non-commercial source after the freeze leaves this commercial export.
    moved = Image.objects.filter(spec=spec).order_by("id").first()
    Image.objects.filter(pk=moved.pk).update(source=nc_source)
    buf = io.BytesIO()
    result = snapshots.export_build(snapshot=snap, format="cvat", dest=buf)
    zf = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    assert (result.images, result.excluded_images) == (2, 1)
    names = [f.get("name") for f in _xml(zf).findall("image")]
    assert len(names) == 2 and not any(n.startswith(f"{moved.pk:08d}") for n in names)
    assert nc_source.name not in zf.read("ATTRIBUTION.md").decode()


# ------------------------------------------------------------------- API and pages


@pytest.mark.django_db
def test_a_model_team_exports_cvat_through_the_api_and_the_snapshot_page_offers_it(
        curator, model_team, django_capture_on_commit_callbacks):
    from tests.curation.test_snapshots import accepted_spec

    spec = accepted_spec(images=2, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    snap = factories.make_snapshot(spec=spec, name="api", created_by=curator)
    page = Client()
    page.force_login(model_team)
    assert '<option value="cvat">CVAT for images 1.1 XML</option>' in page.get(f"/snapshots/{snap.pk}/").content.decode()
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(model_team)
    with django_capture_on_commit_callbacks(execute=True):
        r = api.post("/api/v1/exports/", {"snapshot": snap.pk, "format": "cvat"}, format="json")
    assert r.status_code == 201, r.content
    assert_response_matches_schema(r)
    job = Export.objects.get(pk=r.json()["id"])
    assert (job.status, job.format, job.images) == ("done", "cvat", 2)
    body = b"".join(api.get(f"/api/v1/exports/{job.pk}/download/").streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        root = _xml(zf)
        assert len(root.findall("image")) == 2 and len(root.findall("image/polygon")) == 2
        assert json.loads(zf.read("LICENSES.json"))["format"] == "cvat"
