"""manage.py import_labelstudio: a Label Studio JSON export (ours or hand-written) into a spec.

The round trip exports accepted annotations as label-studio and imports them back as
predictions: quads to 1e-6 px, masks pixel for pixel, LaTeX and categories equal. The hand-written
tasks check each result type against corners worked out here by hand, and every refusal names
the task and the field and leaves no image row, no file and no prediction.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from io import StringIO

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from common import rle, roles
from curation import snapshots
from curation.exporters.lsbrush import mask_to_ls_rle
from curation.labelstudio_import import brush_mask, decode_brush_rle
from curation.models import Image
from labeling.models import Prediction
from labeling.services import annotation_create, review_create, task_claim_next
from tests import factories
from tests.conftest import stored_files

pytestmark = pytest.mark.django_db

W, H = 200, 100


# --- the round trip -------------------------------------------------------------------------

def _two_part_mask() -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[10:30, 20:70] = 1          # numerator, the larger part
    m[45:55, 30:60] = 1          # denominator, apart
    return m


ROUND_TRIP_REGIONS = [
    [   # image 1: axis-aligned, rotated and perspective quads
        {"kind": "quad", "points": [[10, 10], [90, 10], [90, 40], [10, 40]], "latex": r"x^{2}+1",
         "categories": ["printed"]},
        {"kind": "quad", "points": [[120, 20], [180, 35], [172.5, 66.25], [112.5, 51.25]],
         "latex": r"\alpha + \text{größe}", "categories": ["handwritten"]},
        {"kind": "quad", "points": [[20, 55], [95, 60], [90, 92], [15, 85]], "latex": r"\sqrt{π}",
         "categories": ["printed"]},
    ],
    [   # image 2: a mask of two parts (no quad), and an upside-down quad
        {"kind": "mask", "mask": rle.encode(_two_part_mask()), "latex": r"\frac{a}{b} = ä",
         "categories": ["handwritten"]},
        {"kind": "quad", "points": [[150.25, 80.5], [110, 80.5], [110, 60.75], [150.25, 60.75]], "latex": "y",
         "categories": ["printed"]},
    ],
]


def _accepted_export(curator) -> tuple[bytes, list]:
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
    snap = factories.make_snapshot(spec=spec, name="to-ls", created_by=curator)
    buf = io.BytesIO()
    snapshots.export_build(snapshot=snap, format="label-studio", dest=buf)
    return buf.getvalue(), accepted


def test_an_export_to_label_studio_comes_back_as_the_same_predictions(curator, source, tmp_path):
    data, accepted = _accepted_export(curator)
    root = tmp_path / "unpacked"
    zipfile.ZipFile(io.BytesIO(data)).extractall(root)
    target = factories.make_spec(answer_formats=["quad", "mask", "latex"])
    out = StringIO()
    call_command("import_labelstudio", str(root / "tasks.json"), "--images", str(root / "images"),
                 "--spec", str(target.pk), "--source", str(source.pk), "--as", "predictions",
                 "--model-name", "label-studio", "--model-version", "ls-project-1", stdout=out)
    assert "2 new image(s)" in out.getvalue()
    assert "polygon + brush (one mask) 1" in out.getvalue()

    preds = Prediction.objects.filter(image__spec=target)
    assert preds.count() == 2
    for pred in preds:
        assert (pred.model_name, pred.model_version) == ("label-studio", "ls-project-1")
        original_id = int(pred.image.meta["label_studio"]["file"].split(".")[0])
        originals = accepted[original_id]
        assert len(pred.regions) == len(originals)
        for got, want in zip(pred.regions, originals, strict=True):
            assert got["kind"] == want.kind
            assert got["latex"] == want.latex and got["categories"] == want.categories
            if want.kind == "quad":
                assert np.allclose(got["points"], want.points, rtol=0, atol=1e-6)
            else:
                assert np.array_equal(rle.decode(got["mask"]), rle.decode(want.mask_rle))
    # Imported again (the same version): duplicates by sha256, the predictions replaced, not doubled.
    call_command("import_labelstudio", str(root / "tasks.json"), "--images", str(root / "images"),
                 "--spec", target.slug, "--source", source.name, "--model-version", "ls-project-1", stdout=StringIO())
    assert Image.objects.filter(spec=target).count() == 2 and preds.count() == 2


# --- hand-written Label Studio tasks ---------------------------------------------------------

def _pct(points_px) -> list[list[float]]:
    return [[x / W * 100, y / H * 100] for x, y in points_px]


def _shape(rid: str, rtype: str, value: dict, latex: str | None = "x", label: str = "printed") -> list[dict]:
    common = {"id": rid, "from_name": "label", "to_name": "image", "original_width": W, "original_height": H,
              "image_rotation": 0}
    out = [{**common, "type": rtype, "value": {**value, rtype: [label]}}]
    if latex is not None:
        out.append({**common, "from_name": "latex", "type": "textarea", "value": {"text": [latex]}})
    return out


def polygon(rid: str, points_px, **kw) -> list[dict]:
    return _shape(rid, "polygonlabels", {"points": _pct(points_px), "closed": True}, **kw)


def rectangle(rid: str, x, y, w, h, rotation=0.0, **kw) -> list[dict]:
    return _shape(rid, "rectanglelabels", {"x": x, "y": y, "width": w, "height": h, "rotation": rotation}, **kw)


def brush(rid: str, mask: np.ndarray, **kw) -> list[dict]:
    return _shape(rid, "brushlabels", {"format": "rle", "rle": mask_to_ls_rle(rle.encode(mask), W, H)}, **kw)


def ls_task(url: str, result: list | None = None, *, key: str = "annotations", **extra) -> dict:
    task = {"id": extra.pop("id", 1), "data": {"image": url, **extra.pop("data", {})}}
    if result is not None:
        task[key] = [{"id": 10, "result": result, "was_cancelled": False, "created_at": "2026-01-01T00:00:00Z"}]
    return {**task, **extra}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for seed, name in enumerate(["a.png", "b.png", "c.png", "photo.png"]):
        (folder / name).write_bytes(factories.png_bytes(W, H, seed=900 + seed))
    return folder


def run(tmp_path, images, spec, source, tasks, *args, out: StringIO | None = None) -> str:
    path = tmp_path / "project-7-at-2026.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    out = out if out is not None else StringIO()
    call_command("import_labelstudio", str(path), "--images", str(images), "--spec", spec.slug,
                 "--source", str(source.pk), *args, stdout=out)
    return out.getvalue()


def regions_of(spec) -> dict[str, list[dict]]:
    return {p.image.original_filename: p.regions for p in Prediction.objects.filter(image__spec=spec)}


def test_rotated_rectangles_become_the_quads_label_studio_draws(tmp_path, images, spec, source):
    # 90 degrees clockwise about the top-left corner (100, 20): the top edge now points down.
    # 30 degrees: a 40 x 20 px box at (50, 30); cos 30 = 0.8660254, sin 30 = 0.5.
    run(tmp_path, images, spec, source, [
        ls_task("/data/local-files/?d=imgs/a.png", rectangle("r90", 50, 20, 10, 20, rotation=90)),
        ls_task("/data/local-files/?d=imgs/b.png", rectangle("r30", 25, 30, 20, 20, rotation=30)
                + rectangle("r0", 1, 2, 3, 4)),
    ])
    got = regions_of(spec)
    assert np.allclose(got["a.png"][0]["points"], [[100, 20], [100, 40], [80, 40], [80, 20]], atol=1e-9)
    c, s = math.sqrt(3) / 2, 0.5
    want = [[50, 30], [50 + 40 * c, 30 + 40 * s], [50 + 40 * c - 20 * s, 30 + 40 * s + 20 * c], [50 - 20 * s, 30 + 20 * c]]
    assert np.allclose(got["b.png"][0]["points"], [[50, 30], [84.6410162, 50], [74.6410162, 67.3205081],
                                                   [40, 47.3205081]], atol=1e-6)
    assert np.allclose(got["b.png"][0]["points"], want, atol=1e-9)
    assert np.allclose(got["b.png"][1]["points"], [[2, 2], [8, 2], [8, 6], [2, 6]], atol=1e-9)


def test_a_polygon_of_4_points_is_a_quad_and_of_7_a_mask(tmp_path, images, spec, source):
    l_shape = [(20, 10), (60, 10), (60, 30), (40, 30), (40, 50), (20, 50), (20, 30)]   # (20, 30) on an edge
    run(tmp_path, images, spec, source, [
        ls_task("a.png", polygon("q", [(10, 10), (90, 12), (88, 40), (12, 38)], latex=r"\frac{1}{2}")
                + polygon("l", l_shape, latex="L", label="handwritten")),
    ])
    quad, mask = regions_of(spec)["a.png"]
    assert quad["kind"] == "quad" and quad["latex"] == r"\frac{1}{2}"
    assert np.allclose(quad["points"], [[10, 10], [90, 12], [88, 40], [12, 38]], atol=1e-9)
    want = np.zeros((H, W), dtype=bool)
    want[10:30, 20:60] = True
    want[30:50, 20:40] = True
    assert mask["kind"] == "mask" and mask["categories"] == ["handwritten"] and mask["latex"] == "L"
    assert np.array_equal(rle.decode(mask["mask"]), want)


def test_a_brush_is_a_mask_and_a_lone_brush_has_its_own_latex(tmp_path, images, spec, source):
    m = np.zeros((H, W), dtype=np.uint8)
    m[5:9, 100:180] = 1
    m[99, 0] = 1                 # a pixel in the corner
    run(tmp_path, images, spec, source, [ls_task("a.png", brush("b1", m, latex="z"))])
    (region,) = regions_of(spec)["a.png"]
    assert region["kind"] == "mask" and region["latex"] == "z"
    assert np.array_equal(rle.decode(region["mask"]), m.astype(bool))


def test_the_upload_prefix_is_matched_with_and_without_it(tmp_path, images, spec, source):
    (images / "0a1b2c3d-b.png").write_bytes((images / "b.png").read_bytes() + b"")
    (images / "b.png").unlink()
    run(tmp_path, images, spec, source, [
        ls_task("/data/upload/3/0a1b2c3d-b.png", rectangle("r", 1, 2, 3, 4)),        # stored with the prefix
        ls_task("/data/upload/3/9f8e7d6c-photo.png", rectangle("r", 1, 2, 3, 4)),    # stored without it
    ])
    assert sorted(regions_of(spec)) == ["0a1b2c3d-b.png", "photo.png"]


def test_the_latest_annotation_that_was_not_cancelled_is_used_else_a_prediction(tmp_path, images, spec, source):
    def ann(id_, latex, when, cancelled=False):
        return {"id": id_, "result": rectangle("r", 1, 2, 3, 4, latex=latex), "was_cancelled": cancelled,
                "created_at": when, "updated_at": when}

    pred = {"id": 5, "result": rectangle("r", 1, 2, 3, 4, latex="p"), "score": 0.25,
            "created_at": "2026-01-01T00:00:00Z"}
    tasks = [
        {"id": 1, "data": {"image": "a.png"}, "predictions": [pred],
         "annotations": [ann(1, "old", "2026-01-01T00:00:00Z"), ann(2, "new", "2026-02-01T00:00:00Z"),
                         ann(3, "cancelled", "2026-03-01T00:00:00Z", cancelled=True)]},
        {"id": 2, "data": {"image": "b.png"}, "predictions": [pred],
         "annotations": [ann(4, "cancelled", "2026-03-01T00:00:00Z", cancelled=True)]},
        {"id": 3, "data": {"image": "c.png"}},                                   # nothing: the image only
    ]
    out = run(tmp_path, images, spec, source, tasks, "--dry-run")
    assert "annotation 2" in out and "prediction 5" in out and "no annotation or prediction" in out
    assert not Image.objects.filter(spec=spec).exists()
    run(tmp_path, images, spec, source, tasks)
    got = {p.image.original_filename: (p.regions[0]["latex"], p.confidence)
           for p in Prediction.objects.filter(image__spec=spec)}
    assert got == {"a.png": ("new", None), "b.png": ("p", 0.25)}
    assert Image.objects.filter(spec=spec).count() == 3
    run(tmp_path, images, spec, source, tasks, "--results", "predictions", "--model-version", "v2")
    got = {p.image.original_filename: p.regions[0]["latex"]
           for p in Prediction.objects.filter(image__spec=spec, model_version="v2")}
    assert got == {"a.png": "p", "b.png": "p"}


def test_the_image_key_comes_from_the_config_or_is_the_one_image_value(tmp_path, images, spec, source):
    tasks = [{"id": 1, "data": {"photo": "b.png", "thumb": "c.png", "caption": "hi"}}]
    with pytest.raises(CommandError, match=r"tasks\[0\]\.data: several values look like images \(photo, thumb\)"):
        run(tmp_path, images, spec, source, tasks)
    config = tmp_path / "label_config.xml"
    config.write_text('<View><Image name="img" value="$photo"/><TextArea name="t" toName="img"/></View>')
    run(tmp_path, images, spec, source, tasks, "--config", str(config))
    assert list(Image.objects.filter(spec=spec).values_list("original_filename", flat=True)) == ["b.png"]


def test_labels_map_to_categories(tmp_path, images, spec, source):
    run(tmp_path, images, spec, source, [
        ls_task("a.png", rectangle("r", 1, 2, 3, 4, label="Formula") + rectangle("s", 10, 2, 3, 4, label="Other")),
    ], "--category-map", "Formula=handwritten", "Other=")
    assert [r["categories"] for r in regions_of(spec)["a.png"]] == [["handwritten"], []]


def test_truth_takes_one_formula_per_image(tmp_path, images, spec, source):
    out = run(tmp_path, images, spec, source, [
        ls_task("a.png", rectangle("r", 5, 10, 50, 40, latex=r"e^{i\pi}")),
        ls_task("b.png", rectangle("r", 5, 10, 50, 40, rotation=10, latex="y")),
    ], "--as", "truth")
    a, b = Image.objects.filter(spec=spec).order_by("original_filename")
    assert (a.truth_latex, a.meta["ink_bbox"]) == (r"e^{i\pi}", [10.0, 10.0, 110.0, 50.0])
    assert b.truth_latex == "y" and "ink_bbox" not in b.meta
    assert "its quad is not kept" in out
    assert not Prediction.objects.exists()
    with pytest.raises(CommandError, match=r"tasks\[0\]\.annotations\[0\]\.result: 2 regions; a truth is one"):
        run(tmp_path, images, spec, source, [ls_task("c.png", rectangle("r", 1, 2, 3, 4) + rectangle("s", 9, 2, 3, 4))],
            "--as", "truth")


def test_unknown_results_are_refused_or_skipped(tmp_path, images, spec, source):
    point = {"id": "k", "type": "keypointlabels", "from_name": "kp", "to_name": "image",
             "value": {"x": 5, "y": 5, "keypointlabels": ["printed"]}}
    tasks = [ls_task("a.png", rectangle("r", 1, 2, 3, 4) + [point])]
    with pytest.raises(CommandError, match=r"tasks\[0\]\.annotations\[0\]\.result\[2\]\.type: 'keypointlabels'"):
        run(tmp_path, images, spec, source, tasks)
    out = run(tmp_path, images, spec, source, tasks, "--skip-unknown", "-v", "2")
    assert "skipped: keypointlabels 1" in out
    assert len(regions_of(spec)["a.png"]) == 1
    # The model version defaults to the tasks file's name.
    assert Prediction.objects.get().model_version == "project-7-at-2026"


# --- refusals: the task and the field named, nothing stored ---------------------------------

def _bad_rle() -> list[int]:
    good = mask_to_ls_rle(rle.encode(np.ones((H, W), dtype=np.uint8)), W, H)
    return good[:3]        # cut inside the 32-bit count


BAD = {
    "unknown label": (lambda: rectangle("r", 1, 2, 3, 4, label="Matrix"),
                      r"tasks\[1\]\.annotations\[0\]\.result\[0\]\.value\.rectanglelabels: unknown label 'Matrix'"),
    "result type": (lambda: [{"id": "e", "type": "ellipselabels", "value": {"x": 1, "y": 1, "radiusX": 2,
                                                                              "radiusY": 2, "ellipselabels": ["x"]}}],
                    r"tasks\[1\]\.annotations\[0\]\.result\[0\]\.type: 'ellipselabels' results are not supported"),
    "malformed rle": (lambda: _shape("b", "brushlabels", {"format": "rle", "rle": _bad_rle()}),
                      r"tasks\[1\]\.annotations\[0\]\.result\[0\]\.value\.rle: malformed brush RLE"),
    "percent out of range": (lambda: polygon("p", [(10, 10), (250, 10), (90, 40), (10, 40)]),
                             r"tasks\[1\]\.annotations\[0\]\.result\[0\]\.value\.points\[1\]\[0\]: 125\.0 is out "
                             r"of range"),
    "rectangle out of range": (lambda: rectangle("r", 95, 2, 30, 4),
                               r"tasks\[1\]\.annotations\[0\]\.result\[0\]\.points: "),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_results_refuse_the_whole_import(tmp_path, images, spec, source, case):
    make, message = BAD[case]
    before = stored_files()
    tasks = [ls_task("a.png", rectangle("ok", 1, 2, 3, 4)), ls_task("b.png", make())]
    with pytest.raises(CommandError, match=message):
        run(tmp_path, images, spec, source, tasks)
    assert not Image.objects.exists() and not Prediction.objects.exists() and stored_files() == before


@pytest.mark.parametrize(("url", "setup", "message"), [
    ("/data/local-files/?d=x/missing.png", None, r"tasks\[1\]\.data\.image: no file named missing\.png"),
    ("/data/upload/1/0a1b2c3d-photo.png", "prefixed", r"tasks\[1\]\.data\.image: ambiguous: 2 files match "
                                                      r"0a1b2c3d-photo\.png or photo\.png"),
    ("https://host/bucket/photo.png?sig=1", "subfolder", r"tasks\[1\]\.data\.image: ambiguous: 2 files match photo\.png"),
])
def test_a_file_missing_or_ambiguous_refuses_the_whole_import(tmp_path, images, spec, source, url, setup, message):
    if setup == "prefixed":
        (images / "0a1b2c3d-photo.png").write_bytes(factories.png_bytes(W, H, seed=1))
    if setup == "subfolder":
        (images / "sub").mkdir()
        (images / "sub" / "photo.png").write_bytes(factories.png_bytes(W, H, seed=2))
    before = stored_files()
    with pytest.raises(CommandError, match=message):
        run(tmp_path, images, spec, source, [ls_task("a.png", rectangle("ok", 1, 2, 3, 4)), ls_task(url, [])])
    assert not Image.objects.exists() and not Prediction.objects.exists() and stored_files() == before


def test_a_non_commercial_source_is_refused_for_a_commercial_spec(tmp_path, images, spec, nc_source):
    before = stored_files()
    with pytest.raises(CommandError, match=r"source: Source .* forbids commercial use"):
        run(tmp_path, images, spec, nc_source, [ls_task("a.png", rectangle("ok", 1, 2, 3, 4))])
    assert not Image.objects.exists() and stored_files() == before


def test_a_failure_after_the_images_went_in_leaves_no_file_and_no_row(tmp_path, images, spec, source, monkeypatch):
    import labeling.services

    def boom(**kwargs):
        raise ValidationError({"items": "the database said no"})

    before = stored_files()
    monkeypatch.setattr(labeling.services, "predictions_import", boom)
    with pytest.raises(CommandError, match="the database said no"):
        run(tmp_path, images, spec, source, [ls_task("a.png", rectangle("ok", 1, 2, 3, 4))])
    assert not Image.objects.exists() and stored_files() == before


def test_the_dry_run_says_what_would_be_imported_and_writes_nothing(tmp_path, images, spec, source):
    factories.make_image(spec=spec, source=source, data=(images / "a.png").read_bytes(), filename="a.png")
    before = stored_files()
    out = run(tmp_path, images, spec, source, [
        ls_task("a.png", rectangle("r", 1, 2, 3, 4)),
        ls_task("b.png", polygon("p", [(1, 1), (9, 1), (9, 9), (1, 9)]) + brush("p-mask", np.ones((H, W), np.uint8))),
    ], "--dry-run")
    assert "duplicate of image" in out and ": new;" in out
    assert "Would import 2 task(s)" in out and "1 new image(s), 1 already in the spec" in out
    assert "polygon + brush (one mask) 1" in out and "rectangle 1" in out
    assert stored_files() == before and Image.objects.count() == 1 and not Prediction.objects.exists()


def test_the_brush_decoder_is_the_sdks():
    # Bytes made by label_studio_sdk 2.1.2's encode_rle (tests/curation/test_labelstudio_multipart_mask.py).
    fraction_sdk = [0, 0, 0, 216, 57, 27, 252, 224, 23, 255, 240, 152, 5, 255, 252, 86, 1, 63, 254, 35, 0, 194,
                    255, 246, 192, 48, 191, 252, 224, 0]
    mask = brush_mask(fraction_sdk, width=9, height=6)
    assert mask.sum() == 8 + 2 + 12 and mask[2, 8] and mask[3, 0]
    with pytest.raises(ValueError, match="holds 216 values"):
        decode_brush_rle(fraction_sdk, expect=215)


def test_a_dry_run_lists_the_problems_per_task(tmp_path, images, spec, source):
    out = StringIO()
    with pytest.raises(CommandError, match=r"Dry run: 2 problem\(s\)"):
        run(tmp_path, images, spec, source, [
            ls_task("a.png", rectangle("r", 1, 2, 3, 4, label="Matrix")),
            ls_task("missing.png", []),
            ls_task("c.png", rectangle("r", 1, 2, 3, 4)),
        ], "--dry-run", out=out)
    text = out.getvalue()
    assert "tasks[0].annotations[0].result[0].value.rectanglelabels: unknown label 'Matrix'" in text
    assert "tasks[1].data.image: no file named missing.png" in text
    assert "tasks[2] (id 1) c.png: new; annotation 10; regions: rectangle 1" in text
    assert not Image.objects.exists()


def test_predictions_listed_by_id_only_are_refused_unless_annotations_are_asked_for(tmp_path, images, spec, source):
    tasks = [{"id": 1, "data": {"image": "a.png"}, "annotations": [], "predictions": [41]}]
    with pytest.raises(CommandError, match=r"tasks\[0\]\.predictions: predictions given by id only"):
        run(tmp_path, images, spec, source, tasks)
    run(tmp_path, images, spec, source, tasks, "--results", "annotations")
    assert Image.objects.filter(spec=spec).count() == 1 and not Prediction.objects.exists()


def test_images_are_read_a_chunk_at_a_time_and_a_late_chunk_failing_leaves_nothing(tmp_path, images, spec, source,
                                                                                    monkeypatch):
    """A project of thousands of photos does not fit in memory: the files are read again at the write,
    a chunk at a time; a chunk failing after earlier ones went in still leaves no file and no row."""
    from curation import services

    monkeypatch.setattr(services, "LABELSTUDIO_INGEST_CHUNK", 2)
    real, sizes = services.images_ingest, []

    def counting(**kwargs):
        sizes.append(len(kwargs["files"]))
        return real(**kwargs)

    monkeypatch.setattr(services, "images_ingest", counting)
    names = ["a.png", "b.png", "c.png", "photo.png"]
    run(tmp_path, images, spec, source, [ls_task(n, rectangle("r", 1, 2, 3, 4)) for n in names])
    assert sizes == [2, 2] and Image.objects.filter(spec=spec).count() == 4

    other = factories.make_spec(answer_formats=["quad", "mask", "latex"])
    sizes.clear()
    before = stored_files()

    def failing_second(**kwargs):
        if sizes:
            raise ValidationError({"files": "the disk is full"})
        return counting(**kwargs)

    monkeypatch.setattr(services, "images_ingest", failing_second)
    with pytest.raises(CommandError, match="the disk is full"):
        run(tmp_path, images, other, source, [ls_task(n, rectangle("r", 1, 2, 3, 4)) for n in names])
    assert sizes == [2] and not Image.objects.filter(spec=other).exists() and stored_files() == before


def test_a_name_that_differs_only_in_case_is_not_taken_but_named(tmp_path, images, spec, source):
    with pytest.raises(CommandError) as caught:
        run(tmp_path, images, spec, source, [ls_task("A.PNG", rectangle("r", 1, 2, 3, 4))])
    assert "no file named A.PNG" in str(caught.value) and "the folder has a.png (names must match in case)" in str(
        caught.value)
    assert not Image.objects.exists()
