"""manage.py import_cvat: a CVAT for images 1.1 XML file (ours or hand-written) and its image files into
a spec, all or nothing.

The round trip exports accepted annotations as ``cvat`` and imports them back as predictions: quads
exactly, masks pixel for pixel, LaTeX, categories and flags equal. The hand-written files check each
shape against corners worked out here by hand, and every refusal names the element
(``image[1] polygon[0] points``) and leaves no image row, no file and no prediction.
"""
from __future__ import annotations

import io
import zipfile
from io import StringIO
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from common import rle, roles
from curation import services, snapshots
from curation.exporters import ExportImage, ExportRegion, export, mask_to_rle
from curation.models import Image
from labeling.models import Prediction
from labeling.services import annotation_create, review_create, task_claim_next
from tests import factories
from tests.conftest import stored_files
from tests.datasets.helpers import IM2MARKUP, MIT

pytestmark = pytest.mark.django_db

W, H = 200, 100


# --- the round trip -------------------------------------------------------------------------

def _two_part_mask() -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[10:30, 20:70] = 1
    m[45:55, 30:60] = 1
    return m


ROUND_TRIP_REGIONS = [
    [   # image 1: axis-aligned, rotated and perspective quads; flags
        {"kind": "quad", "points": [[10, 10], [90, 10], [90, 40], [10, 40]], "latex": r"x^{2}+1",
         "categories": ["printed"]},
        {"kind": "quad", "points": [[120, 20], [180, 35], [172.5, 66.25], [112.5, 51.25]],
         "latex": r"\alpha + \text{größe}", "categories": ["handwritten"], "cut_off": True},
        {"kind": "quad", "points": [[20.123456789, 55], [95, 60.000001], [90, 92], [15, 85]], "latex": "",
         "categories": ["printed"], "illegible": True},
    ],
    [   # image 2: a mask of two parts, and an upside-down quad
        {"kind": "mask", "mask": rle.encode(_two_part_mask()), "latex": r"\frac{a}{b} = ä",
         "categories": ["handwritten"], "cut_off": True},
        {"kind": "quad", "points": [[150.25, 80.5], [110, 80.5], [110, 60.75], [150.25, 60.75]], "latex": "y < z",
         "categories": ["printed"]},
    ],
]


def _accepted_export(curator) -> tuple[bytes, dict]:
    spec = factories.make_spec(answer_formats=["quad", "mask", "latex"])
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=2)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    accepted = {}
    for regions in ROUND_TRIP_REGIONS:
        task = task_claim_next(annotator=annotator).task
        annotation = annotation_create(task=task, annotator=annotator, submit=True, regions=regions)
        review_create(annotation=annotation, reviewer=reviewer, decision="accept")
        accepted[task.image_id] = list(annotation.versions.get().regions.order_by("index"))
    snap = factories.make_snapshot(spec=spec, name="to-cvat", created_by=curator)
    buf = io.BytesIO()
    snapshots.export_build(snapshot=snap, format="cvat", dest=buf)
    return buf.getvalue(), accepted


def test_an_export_to_cvat_comes_back_as_the_same_predictions(curator, source, tmp_path):
    data, accepted = _accepted_export(curator)
    root = tmp_path / "unpacked"
    zipfile.ZipFile(io.BytesIO(data)).extractall(root)
    target = factories.make_spec(answer_formats=["quad", "mask", "latex"])
    out = StringIO()
    call_command("import_cvat", str(root / "annotations.xml"), "--images", str(root / "images"),
                 "--spec", str(target.pk), "--source", str(source.pk), "--as", "predictions",
                 "--model-version", "cvat-task-1", stdout=out)
    assert "2 new image(s)" in out.getvalue()
    preds = Prediction.objects.filter(image__spec=target)
    assert preds.count() == 2
    seen = 0
    for pred in preds:
        assert (pred.model_name, pred.model_version) == ("cvat", "cvat-task-1")
        original_id = int(pred.image.meta["cvat"]["name"].split(".")[0])
        originals = accepted[original_id]
        assert len(pred.regions) == len(originals)
        for got, want in zip(pred.regions, originals, strict=True):
            assert got["kind"] == want.kind
            assert (got["latex"], got["categories"]) == (want.latex, want.categories)
            assert (got["illegible"], got["cut_off"]) == (want.illegible, want.cut_off)
            if want.kind == "quad":
                assert got["points"] == want.points          # exactly: every digit was written
            else:
                assert np.array_equal(rle.decode(got["mask"]), rle.decode(want.mask_rle))
            seen += 1
    assert seen == 5
    # Imported again (the same version): duplicates by sha256, the predictions replaced, not doubled.
    call_command("import_cvat", str(root / "annotations.xml"), "--images", str(root / "images"),
                 "--spec", target.slug, "--source", source.name, "--model-version", "cvat-task-1", stdout=StringIO())
    assert Image.objects.filter(spec=target).count() == 2 and preds.count() == 2


def test_a_region_with_a_quad_and_a_mask_comes_back_as_one_mask_region(tmp_path, spec, source):
    """Our writer gives such a region a polygon and a mask sharing a group_id: one formula, the mask."""
    m = np.zeros((H, W), dtype=np.uint8)
    m[20:40, 30:90] = 1
    m[50:60, 40:80] = 1
    image = ExportImage(7, "pair.png", W, H, "train", MIT, IM2MARKUP, open_bytes=lambda: factories.png_bytes(W, H),
                        regions=[ExportRegion(points=[[30, 20], [90, 20], [90, 60], [30, 60]], mask_rle=mask_to_rle(m),
                                              latex=r"\sum", category="printed", flags=("illegible",)),
                                 ExportRegion(points=[[1, 1], [9, 1], [9, 5], [1, 5]], latex="q", category="printed")])
    buf = io.BytesIO()
    export([image], buf, format="cvat")
    root = tmp_path / "unpacked"
    zipfile.ZipFile(buf).extractall(root)
    out = StringIO()
    call_command("import_cvat", str(root / "annotations.xml"), "--images", str(root / "images"), "--spec", spec.slug,
                 "--source", str(source.pk), "-v", "2", stdout=out)
    (pred,) = Prediction.objects.filter(image__spec=spec)
    mask, quad = pred.regions
    assert mask["kind"] == "mask" and np.array_equal(rle.decode(mask["mask"]), m.astype(bool))
    assert (mask["latex"], mask["categories"], mask["illegible"]) == (r"\sum", ["printed"], True)
    assert quad["kind"] == "quad" and quad["latex"] == "q"
    assert "polygon + mask (one mask) 1" in out.getvalue()


# --- hand-written CVAT XML -------------------------------------------------------------------

def attrs(**values) -> str:
    return "".join(f"<attribute name={quoteattr(k)}>{v}</attribute>" for k, v in values.items())


def polygon(points, label="printed", latex="x", extra="", **attributes) -> str:
    pts = ";".join(f"{x},{y}" for x, y in points)
    body = attrs(**({"latex": latex} if latex is not None else {}), **attributes)
    return f'<polygon label={quoteattr(label)} source="manual" occluded="0" points="{pts}" z_order="0"{extra}>' \
           f"{body}</polygon>"


def box(xtl, ytl, xbr, ybr, rotation=None, label="printed", latex="x", extra="") -> str:
    rot = "" if rotation is None else f' rotation="{rotation}"'
    return (f'<box label={quoteattr(label)} source="manual" occluded="0" xtl="{xtl}" ytl="{ytl}" xbr="{xbr}" '
            f'ybr="{ybr}"{rot} z_order="0"{extra}>{attrs(latex=latex)}</box>')


def mask(counts, left, top, width, height, label="printed", latex="x", extra="") -> str:
    rle_text = counts if isinstance(counts, str) else ", ".join(str(c) for c in counts)
    return (f'<mask label={quoteattr(label)} source="manual" occluded="0" rle="{rle_text}" left="{left}" top="{top}" '
            f'width="{width}" height="{height}" z_order="0"{extra}>{attrs(latex=latex)}</mask>')


def frame(name: str, *shapes: str, width=W, height=H, id_=0) -> str:
    return f'<image id="{id_}" name={quoteattr(name)} width="{width}" height="{height}">{"".join(shapes)}</image>'


def document(*frames: str, head: str = "") -> str:
    labels = "".join(f"<label><name>{n}</name><attributes><attribute><name>latex</name><input_type>text</input_type>"
                     "</attribute></attributes></label>" for n in ("printed", "handwritten"))
    return (f'<?xml version="1.0" encoding="utf-8"?>{head}<annotations><version>1.1</version>'
            f"<meta><task><name>cvat task 7</name><labels>{labels}</labels></task></meta>{''.join(frames)}"
            "</annotations>")


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for seed, name in enumerate(["a.png", "b.png", "c.png", "photo.png"]):
        (folder / name).write_bytes(factories.png_bytes(W, H, seed=900 + seed))
    return folder


def run(tmp_path, images, spec, source, xml: str | bytes, *args, out: StringIO | None = None) -> str:
    path = tmp_path / "annotations.xml"
    path.write_bytes(xml.encode("utf-8") if isinstance(xml, str) else xml)
    out = out if out is not None else StringIO()
    call_command("import_cvat", str(path), "--images", str(images), "--spec", spec.slug,
                 "--source", str(source.pk), *args, stdout=out)
    return out.getvalue()


def regions_of(spec) -> dict[str, list[dict]]:
    return {p.image.original_filename: p.regions for p in Prediction.objects.filter(image__spec=spec)}


def nothing_stored(before: list[str]) -> bool:
    return not Image.objects.exists() and not Prediction.objects.exists() and stored_files() == before


def test_boxes_become_quads_rotated_clockwise_about_their_centre(tmp_path, images, spec, source):
    # 90 degrees about the centre (30, 30) of the 40 x 20 box (10, 20)-(50, 40): the top edge points down.
    # 30 degrees about the centre (70, 50) of (50, 40)-(90, 60): cos 30 = 0.8660254, sin 30 = 0.5.
    run(tmp_path, images, spec, source, document(
        frame("a.png", box(10, 20, 50, 40, rotation=90), box(1, 2, 9, 8)),
        frame("b.png", box(50, 40, 90, 60, rotation=30.0), id_=1),
    ))
    got = regions_of(spec)
    assert np.allclose(got["a.png"][0]["points"], [[40, 10], [40, 50], [20, 50], [20, 10]], atol=1e-9)
    assert np.allclose(got["a.png"][1]["points"], [[1, 2], [9, 2], [9, 8], [1, 8]], atol=1e-9)
    c, s = np.sqrt(3) / 2, 0.5
    corners = [(-20, -10), (20, -10), (20, 10), (-20, 10)]
    want = [[70 + x * c - y * s, 50 + x * s + y * c] for x, y in corners]
    assert np.allclose(got["b.png"][0]["points"], want, atol=1e-9)
    assert np.allclose(want[0], [57.6794919, 31.3397460], atol=1e-6)


def test_a_polygon_of_4_points_is_a_quad_and_of_7_a_mask(tmp_path, images, spec, source):
    l_shape = [(20, 10), (60, 10), (60, 30), (40, 30), (40, 50), (20, 50), (20, 30)]
    out = run(tmp_path, images, spec, source, document(
        frame("a.png", polygon([(10, 10), (90, 12), (88, 40), (12, 38)], latex=r"\frac{1}{2}"),
              polygon(l_shape, latex="L", label="handwritten")),
    ), "-v", "2")
    quad, shape = regions_of(spec)["a.png"]
    assert quad["kind"] == "quad" and quad["latex"] == r"\frac{1}{2}" and quad["categories"] == ["printed"]
    assert quad["points"] == [[10, 10], [90, 12], [88, 40], [12, 38]]
    want = np.zeros((H, W), dtype=bool)
    want[10:30, 20:60] = True
    want[30:50, 20:40] = True
    assert shape["kind"] == "mask" and shape["categories"] == ["handwritten"] and shape["latex"] == "L"
    assert np.array_equal(rle.decode(shape["mask"]), want)
    assert "polygon (4 points) 1" in out and "polygon (7 points, as a mask) 1" in out


def test_a_cvat_mask_is_drawn_from_its_runs_over_its_box(tmp_path, images, spec, source):
    # The 4 x 3 box at (3, 2): 1 zero, 3 ones, 1 zero, 2 ones, 5 zeros, row by row.
    run(tmp_path, images, spec, source, document(frame("a.png", mask([1, 3, 1, 2, 5], 3, 2, 4, 3, latex="m"),
                                                       mask("0, 2", 198, 99, 2, 1, latex="n"))))
    first, second = regions_of(spec)["a.png"]
    want = np.zeros((H, W), dtype=bool)
    want[2, 4:7] = True
    want[3, 4:6] = True
    assert first["kind"] == "mask" and np.array_equal(rle.decode(first["mask"]), want)
    corner = np.zeros((H, W), dtype=bool)
    corner[99, 198:200] = True                     # a box in the image's bottom-right corner
    assert np.array_equal(rle.decode(second["mask"]), corner)


def test_labels_map_to_categories_and_the_latex_comes_from_the_named_attribute(tmp_path, images, spec, source):
    q = [(10, 10), (90, 10), (90, 40), (10, 40)]
    run(tmp_path, images, spec, source, document(frame(
        "a.png", polygon(q, label="Formula", latex=None, text=r"e^{x}"), polygon(q, label="Other", latex=None, text="y"),
    )), "--category-map", "Formula=handwritten", "Other=", "--latex-attribute", "text")
    got = regions_of(spec)["a.png"]
    assert [(r["latex"], r["categories"]) for r in got] == [(r"e^{x}", ["handwritten"]), ("y", [])]


def test_flags_come_from_checkbox_attributes_and_other_attributes_are_ignored(tmp_path, images, spec, source):
    q = [(10, 10), (90, 10), (90, 40), (10, 40)]
    out = run(tmp_path, images, spec, source, document(frame(
        "a.png",
        polygon(q, illegible="true", cut_off="false", colour="red"),
        polygon(q, illegible="False", cut_off="True"),           # datumaro writes Python's spelling
        polygon(q),
    )), "-v", "2")
    got = regions_of(spec)["a.png"]
    assert [(r["illegible"], r["cut_off"]) for r in got] == [(True, False), (False, True), (False, False)]
    assert "attribute 'colour' (not imported) 1" in out


def test_an_image_without_shapes_is_imported_without_a_prediction(tmp_path, images, spec, source):
    out = run(tmp_path, images, spec, source, document(frame("a.png"), frame("b.png", box(1, 2, 9, 8), id_=1)))
    assert Image.objects.filter(spec=spec).count() == 2
    assert list(regions_of(spec)) == ["b.png"]
    assert "2 new image(s)" in out


def test_the_image_is_found_by_its_path_then_by_its_base_name(tmp_path, images, spec, source):
    (images / "sub").mkdir()
    (images / "sub" / "a.png").write_bytes(factories.png_bytes(W, H, seed=1))       # a second a.png
    (images / "deep").mkdir()
    (images / "deep" / "only.png").write_bytes(factories.png_bytes(W, H, seed=2))
    run(tmp_path, images, spec, source, document(
        frame("sub/a.png", box(1, 2, 9, 8)),              # the path inside the folder wins over the other a.png
        frame("task-3/only.png", box(1, 2, 9, 8), id_=1),  # no such path: the one file of that name
    ))
    assert sorted(regions_of(spec)) == ["a.png", "only.png"]
    assert sorted(Image.objects.filter(spec=spec).values_list("meta__cvat__file", flat=True)) == [
        "deep/only.png", "sub/a.png"]


def test_truth_takes_one_formula_per_image(tmp_path, images, spec, source):
    out = run(tmp_path, images, spec, source, document(
        frame("a.png", box(10, 10, 110, 50, latex=r"e^{i\pi}")),
        frame("b.png", box(10, 10, 110, 50, rotation=10, latex="y"), id_=1),
    ), "--as", "truth")
    a, b = Image.objects.filter(spec=spec).order_by("original_filename")
    assert (a.truth_latex, a.meta["ink_bbox"]) == (r"e^{i\pi}", [10.0, 10.0, 110.0, 50.0])
    assert b.truth_latex == "y" and "ink_bbox" not in b.meta
    assert "its quad is not kept" in out
    assert not Prediction.objects.exists()
    with pytest.raises(CommandError, match=r"image\[0\]: 2 regions; a truth is one formula per image"):
        run(tmp_path, images, spec, source, document(frame("c.png", box(1, 2, 9, 8), box(11, 2, 19, 8))),
            "--as", "truth")


UNKNOWN_SHAPES = {
    "polyline": '<polyline label="printed" source="manual" occluded="0" points="1,1;5,5" z_order="0"></polyline>',
    "points": '<points label="printed" source="manual" occluded="0" points="1,1" z_order="0"></points>',
    "cuboid": ('<cuboid label="printed" source="manual" occluded="0" xtl1="1" ytl1="1" xbl1="1" ybl1="5" xtr1="5" '
               'ytr1="1" xbr1="5" ybr1="5" xtl2="2" ytl2="2" xbl2="2" ybl2="6" xtr2="6" ytr2="2" xbr2="6" ybr2="6" '
               'z_order="0"></cuboid>'),
    "skeleton": ('<skeleton label="printed" source="manual" z_order="0"><points label="1" source="manual" '
                 'outside="0" occluded="0" points="1,1"></points></skeleton>'),
    "tag": '<tag label="printed" source="manual"></tag>',
    "ellipse": '<ellipse label="printed" source="manual" occluded="0" cx="5" cy="5" rx="2" ry="2" z_order="0"></ellipse>',
}


@pytest.mark.parametrize("tag", sorted(UNKNOWN_SHAPES))
def test_unsupported_shapes_are_refused_or_skipped(tmp_path, images, spec, source, tag):
    xml = document(frame("a.png", box(1, 2, 9, 8), UNKNOWN_SHAPES[tag]))
    before = stored_files()
    with pytest.raises(CommandError, match=rf"image\[0\] {tag}\[0\]: <{tag}> is not supported .*--skip-unknown"):
        run(tmp_path, images, spec, source, xml)
    assert nothing_stored(before)
    out = run(tmp_path, images, spec, source, xml, "--skip-unknown", "-v", "2")
    assert f"skipped: {tag} 1" in out
    assert len(regions_of(spec)["a.png"]) == 1


def test_a_polygon_and_a_mask_of_one_group_must_agree(tmp_path, images, spec, source):
    q = [(3, 2), (7, 2), (7, 5), (3, 5)]
    agree = document(frame("a.png", polygon(q, latex="a", extra=' group_id="4"'),
                           mask([1, 3, 1, 2, 5], 3, 2, 4, 3, latex="a", extra=' group_id="4"')))
    run(tmp_path, images, spec, source, agree)
    (region,) = regions_of(spec)["a.png"]
    assert region["kind"] == "mask" and region["latex"] == "a"
    Prediction.objects.all().delete()
    Image.objects.all().delete()
    differ = document(frame("a.png", polygon(q, latex="a", extra=' group_id="4"'),
                            mask([1, 3, 1, 2, 5], 3, 2, 4, 3, latex="b", extra=' group_id="4"')))
    with pytest.raises(CommandError, match=r"image\[0\] mask\[0\]: the mask and the polygon\[0\] of group 4 .*"
                                           r"different LaTeX"):
        run(tmp_path, images, spec, source, differ)
    # Other groups (three shapes, two polygons) are separate regions.
    run(tmp_path, images, spec, source, document(frame("b.png", *(polygon(q, latex=f"g{k}", extra=' group_id="2"')
                                                                for k in range(3)))))
    assert [r["latex"] for r in regions_of(spec)["b.png"]] == ["g0", "g1", "g2"]


def test_the_dry_run_says_what_would_be_imported_and_writes_nothing(tmp_path, images, spec, source):
    factories.make_image(spec=spec, source=source, data=(images / "a.png").read_bytes(), filename="a.png")
    before = stored_files()
    out = run(tmp_path, images, spec, source, document(
        frame("a.png", box(1, 2, 9, 8)),
        frame("b.png", polygon([(1, 1), (9, 1), (9, 9), (1, 9)]), id_=1),
    ), "--dry-run")
    assert "duplicate of image" in out and ": new;" in out
    assert "Would import 2 image(s)" in out and "1 new image(s), 1 already in the spec" in out
    assert "box 1" in out and "polygon (4 points) 1" in out
    assert stored_files() == before and Image.objects.count() == 1 and not Prediction.objects.exists()


def test_the_model_version_defaults_to_the_task_name(tmp_path, images, spec, source):
    run(tmp_path, images, spec, source, document(frame("a.png", box(1, 2, 9, 8))))
    assert Prediction.objects.get().model_version == "cvat task 7"


# --- refusals: the element named, nothing stored --------------------------------------------

Q = [(10, 10), (90, 10), (90, 40), (10, 40)]

BAD = {
    "unknown label": (polygon(Q, label="Matrix"),
                      r"image\[1\] polygon\[0\] label: unknown label 'Matrix': no category of the spec has that "
                      r"slug; map it with --category-map Matrix=SLUG"),
    "malformed points": (polygon(Q).replace("10,40", "10"),
                         r"image\[1\] polygon\[0\] points: .*pairs"),
    "NaN point": (polygon([(10, 10), ("nan", 10), (90, 40), (10, 40)]),
                  r"image\[1\] polygon\[0\] points: 'nan' is not a number"),
    "point outside": (polygon([(10, 10), (500, 10), (90, 40), (10, 40)]),
                      r"image\[1\] polygon\[0\] points: Point 2 \(500, 10\) lies outside the 200x100 image"),
    "two points": (polygon([(10, 10), (90, 10)]),
                   r"image\[1\] polygon\[0\] points: a polygon needs at least 3 points, not 2"),
    "self-intersecting quad": (polygon([(10, 10), (90, 40), (90, 10), (10, 40)]),
                               r"image\[1\] polygon\[0\] points: "),
    "box upside down": (box(50, 10, 20, 40),
                        r"image\[1\] box\[0\] xbr: must be greater than xtl"),
    "box coordinate missing": (box(10, 10, 20, 40).replace(' ytl="10"', ""),
                               r"image\[1\] box\[0\] ytl: missing"),
    "rotation": (box(10, 10, 20, 40, rotation="1e999"),
                 r"image\[1\] box\[0\] rotation: must be a number of degrees \(-360 to 360\)"),
    "box outside": (box(10, 10, 260, 40),
                    r"image\[1\] box\[0\] points: Point 2 \(260, 10\) lies outside"),
    "mask counts": (mask([1, 3, 1, 2, 4], 3, 2, 4, 3),
                    r"image\[1\] mask\[0\] rle: the runs cover 11 pixels; the 4x3 box has 12"),
    "mask not numbers": (mask("1, 3, x", 3, 2, 4, 3),
                         r"image\[1\] mask\[0\] rle: must be counts separated by commas"),
    "mask box outside": (mask([0, 12], 198, 2, 4, 3),
                         r"image\[1\] mask\[0\] width: the box \(198, 2\) 4x3 reaches past the 200x100 image"),
    "empty mask": (mask([12], 3, 2, 4, 3),
                   r"image\[1\] mask\[0\] rle: the mask covers no pixel"),
    "two latex attributes": (polygon(Q).replace("</polygon>", attrs(latex="y") + "</polygon>"),
                             r"image\[1\] polygon\[0\] attribute latex: given 2 times"),
    "bad latex": (polygon(Q, latex=r"\frac{1"),
                  r"image\[1\] polygon\[0\] latex: "),
    "bad flag": (polygon(Q, illegible="maybe"),
                 r"image\[1\] polygon\[0\] attribute illegible: 'maybe' is not true or false"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_shapes_refuse_the_whole_import(tmp_path, images, spec, source, case):
    shape, message = BAD[case]
    before = stored_files()
    with pytest.raises(CommandError, match=message):
        run(tmp_path, images, spec, source, document(frame("a.png", box(1, 2, 9, 8)), frame("b.png", shape, id_=1)))
    assert nothing_stored(before)


def test_a_size_that_is_not_the_files_is_refused(tmp_path, images, spec, source):
    before = stored_files()
    with pytest.raises(CommandError, match=r"image\[0\] width: 300, but the image file b\.png is 200x100"):
        run(tmp_path, images, spec, source, document(frame("b.png", box(1, 2, 9, 8), width=300)))
    assert nothing_stored(before)


@pytest.mark.parametrize(("name", "setup", "message"), [
    ("missing.png", None, r"image\[1\] name: no file named missing\.png in the images folder"),
    ("task-2/photo.png", "subfolder", r"image\[1\] name: ambiguous: 2 files named photo\.png"),
    ("A.PNG", None, r"image\[1\] name: no file named A\.PNG .*the folder has a\.png \(names must match in case\)"),
    ("", None, r"image\[1\] name: missing"),
])
def test_an_image_missing_or_ambiguous_refuses_the_whole_import(tmp_path, images, spec, source, name, setup, message):
    if setup == "subfolder":
        (images / "sub").mkdir()
        (images / "sub" / "photo.png").write_bytes(factories.png_bytes(W, H, seed=2))
    before = stored_files()
    with pytest.raises(CommandError, match=message):
        run(tmp_path, images, spec, source, document(frame("c.png", box(1, 2, 9, 8)), frame(name, id_=1)))
    assert nothing_stored(before)


def test_duplicate_image_names_and_the_same_file_twice_are_refused(tmp_path, images, spec, source):
    before = stored_files()
    with pytest.raises(CommandError, match=r"image\[2\] name: 'a\.png' is also the name of image\[0\]"):
        run(tmp_path, images, spec, source, document(frame("a.png"), frame("b.png", id_=1), frame("a.png", id_=2)))
    assert nothing_stored(before)
    (images / "copy.png").write_bytes((images / "b.png").read_bytes())
    with pytest.raises(CommandError, match=r"image\[1\] name: the same image as image\[0\] \(same bytes\)"):
        run(tmp_path, images, spec, source, document(frame("b.png"), frame("copy.png", id_=1)))
    assert nothing_stored(before)


BOMBS = {
    "billion laughs": ('<!DOCTYPE annotations [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                       '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
                       "&d;"),
    "external entity": ('<!DOCTYPE annotations [<!ENTITY secret SYSTEM "file:///etc/passwd">]>', "&secret;"),
    "external DTD": ('<!DOCTYPE annotations SYSTEM "http://example.invalid/cvat.dtd">', ""),
    "parameter entity": ('<!DOCTYPE annotations [<!ENTITY % p "x"> %p;]>', ""),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_entity_expansion_and_external_references_are_refused(tmp_path, images, spec, source, case):
    head, use = BOMBS[case]
    xml = document(frame("a.png", box(1, 2, 9, 8, latex=f"x{use}")), head=head)
    before = stored_files()
    with pytest.raises(CommandError, match=r"annotations: .*(entit|DTD|external)"):
        run(tmp_path, images, spec, source, xml)
    assert nothing_stored(before)


def test_malformed_xml_a_wrong_root_and_cvat_for_video_are_refused(tmp_path, images, spec, source):
    before = stored_files()
    with pytest.raises(CommandError, match=r"annotations: not well-formed XML .*line 1"):
        run(tmp_path, images, spec, source, document(frame("a.png")).replace("</image>", ""))
    with pytest.raises(CommandError, match=r"annotations: the root element is <dataset>, not <annotations>"):
        run(tmp_path, images, spec, source, "<dataset><image name='a.png'/></dataset>")
    with pytest.raises(CommandError, match=r"track\[0\]: tracks are CVAT for video.*CVAT for images 1\.1"):
        run(tmp_path, images, spec, source, document(
            '<track id="0" label="printed" source="manual"><box frame="0" outside="0" occluded="0" keyframe="1" '
            'xtl="1" ytl="2" xbr="9" ybr="8" z_order="0"></box></track>'))
    with pytest.raises(CommandError, match=r"annotations: no <image> element"):
        run(tmp_path, images, spec, source, document())
    assert nothing_stored(before)


def test_deep_nesting_is_a_clean_refusal(tmp_path, images, spec, source):
    deep = "<x>" * 200_000 + "</x>" * 200_000
    with pytest.raises(CommandError, match=r"image\[0\] x\[0\]: <x> is not supported"):
        run(tmp_path, images, spec, source, document(frame("a.png", deep)))
    assert not Image.objects.exists()


def test_an_annotations_file_over_the_limit_is_refused_before_it_is_parsed(tmp_path, images, spec, source,
                                                                           monkeypatch):
    from curation import cvat_import

    monkeypatch.setattr(cvat_import, "MAX_XML_BYTES", 2_000)
    parsed = []
    real = cvat_import.parse_annotations
    monkeypatch.setattr(cvat_import, "parse_annotations", lambda *a, **k: parsed.append(1) or real(*a, **k))
    xml = document(*(frame(n, box(1, 2, 9, 8), id_=i) for i, n in enumerate(["a.png", "b.png", "c.png"])))
    xml = xml.replace("</annotations>", "<!--" + "x" * 3_000 + "--></annotations>")
    before = stored_files()
    with pytest.raises(CommandError, match=r"annotations: the file is \d+ bytes; at most 2000 are read"):
        run(tmp_path, images, spec, source, xml)
    assert parsed == [] and nothing_stored(before)


def test_an_image_file_over_the_upload_limit_is_refused_before_it_is_read(tmp_path, images, spec, source, settings,
                                                                          monkeypatch):
    (images / "big.png").write_bytes(factories.png_bytes(W, H, seed=3) + b"\0" * 50_000)
    settings.MATHSET_MAX_UPLOAD_BYTES = 20_000
    read = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.name) or real(self))
    before = stored_files()
    with pytest.raises(CommandError, match=r"image\[0\] name: big\.png: the file is \d+ bytes; the limit is 20000"):
        run(tmp_path, images, spec, source, document(frame("big.png")))
    assert "big.png" not in read and nothing_stored(before)


def test_more_regions_than_an_image_may_hold_are_refused_before_they_are_converted(tmp_path, images, spec, source,
                                                                                   monkeypatch):
    from curation import cvat_import
    from labeling import services as labeling

    drawn = []
    monkeypatch.setattr(cvat_import, "polygon_mask", lambda *a, **k: drawn.append(1))
    shapes = [polygon([(1, 1), (9, 1), (9, 9), (5, 12), (1, 9)]) for _ in range(labeling.MAX_REGIONS + 1)]
    with pytest.raises(CommandError, match=rf"image\[0\]: {labeling.MAX_REGIONS + 1} regions; at most "
                                           rf"{labeling.MAX_REGIONS} are allowed per image"):
        run(tmp_path, images, spec, source, document(frame("a.png", *shapes)))
    assert drawn == [] and not Image.objects.exists()


def test_a_non_commercial_source_is_refused_for_a_commercial_spec(tmp_path, images, spec, nc_source):
    before = stored_files()
    with pytest.raises(CommandError, match=r"source: Source .* forbids commercial use"):
        run(tmp_path, images, spec, nc_source, document(frame("a.png", box(1, 2, 9, 8))))
    assert nothing_stored(before)


def test_an_unknown_category_in_the_map_is_refused(tmp_path, images, spec, source):
    with pytest.raises(CommandError, match=r"category_map: Formula=nope: the spec has no category 'nope'"):
        run(tmp_path, images, spec, source, document(frame("a.png", box(1, 2, 9, 8))), "--category-map",
            "Formula=nope")
    assert not Image.objects.exists()


def test_a_failure_after_the_images_went_in_leaves_no_file_and_no_row(tmp_path, images, spec, source, monkeypatch):
    import labeling.services

    def boom(**kwargs):
        raise ValidationError({"items": "the database said no"})

    before = stored_files()
    monkeypatch.setattr(labeling.services, "predictions_import", boom)
    with pytest.raises(CommandError, match="the database said no"):
        run(tmp_path, images, spec, source, document(frame("a.png", box(1, 2, 9, 8))))
    assert nothing_stored(before)


def test_a_dry_run_lists_the_problems_per_image(tmp_path, images, spec, source):
    out = StringIO()
    with pytest.raises(CommandError, match=r"Dry run: 2 problem\(s\)"):
        run(tmp_path, images, spec, source, document(
            frame("a.png", box(1, 2, 9, 8, label="Matrix")),
            frame("missing.png", id_=1),
            frame("c.png", box(1, 2, 9, 8), id_=2),
        ), "--dry-run", out=out)
    text = out.getvalue()
    assert "image[0] box[0] label: unknown label 'Matrix'" in text
    assert "image[1] name: no file named missing.png" in text
    assert "image[2] (id 2) c.png: new; regions: box 1" in text
    assert not Image.objects.exists()


def test_the_service_takes_the_file_and_reports_per_image(tmp_path, images, spec, source):
    path = tmp_path / "annotations.xml"
    path.write_text(document(frame("a.png", box(1, 2, 9, 8), polygon(Q)), frame("b.png", id_=1)), encoding="utf-8")
    report = services.cvat_import(spec=spec, source=source, annotations=path, images_dir=images,
                                  model_version="v1", dry_run=True)
    assert report.all_problems() == [] and report.images_new == 2
    assert [(p.name, p.kinds) for p in report.images] == [("a.png", {"box": 1, "polygon (4 points)": 1}), ("b.png", {})]
    report = services.cvat_import(spec=spec, source=source, annotations=path, images_dir=images, model_version="v1")
    assert (len(report.created), report.predictions) == (2, 1)
    with pytest.raises(ValidationError) as caught:
        services.cvat_import(spec=spec, source=source, annotations=Path(tmp_path / "nope.xml"), images_dir=images,
                             model_version="v1")
    assert "annotations" in caught.value.message_dict
