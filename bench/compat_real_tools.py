"""Our COCO, YOLO-OBB and Label Studio exports loaded by the real tools, not by our restatement
of their rules (tests/curation/test_export_tool_compat.py restates them; this runs them).

The tools stay out of the project's .venv and requirements: they live in a SCRATCH virtualenv
(and, for the Label Studio server, a second one, since label-studio pins its own Django).
What worked here (Python 3.11, CPU only; torch first so ultralytics does not pull a CUDA torch)::

    python3.11 -m venv /tmp/compat-venv
    /tmp/compat-venv/bin/pip install --upgrade pip
    /tmp/compat-venv/bin/pip install "torch==2.13.0+cpu" "torchvision==0.28.0"
    /tmp/compat-venv/bin/pip install ultralytics pycocotools label-studio-sdk

    # optional: the Label Studio server itself (~75 s to install; its first start migrates ~1 min)
    python3.11 -m venv /tmp/compat-ls-venv
    /tmp/compat-ls-venv/bin/pip install label-studio "sentry-sdk<3"

(``torch==2.13.0+cpu`` comes from this machine's wheel folder, ``/opt/wheels``; elsewhere add
``--index-url https://download.pytorch.org/whl/cpu`` for that one command. ``torchvision``
0.29 would drag in a CUDA torch 2.14. ultralytics brings opencv-python beside the SDK's
opencv-python-headless; both provide cv2, harmlessly here. ``sentry-sdk`` 3 makes label-studio
1.23 fail at start with "Unknown option 'send_default_pii'". The server check logs in with a
session: 1.23 refuses legacy API tokens for a new organisation.)

Run from the repository root with the project's venv::

    .venv/bin/python bench/compat_real_tools.py /tmp/compat-venv --label-studio-venv /tmp/compat-ls-venv

It migrates a fresh SQLite database in a temporary folder, builds a spec whose images are
annotated (axis-aligned, rotated, upside-down and perspective quads, quads on the border, masks
of one and of two parts, LaTeX with non-ASCII text; PNG, grayscale and RGBA PNG, GIF, JPEG and a
sideways phone JPEG with EXIF orientation 6) and accepted through the real services,
freezes a snapshot, exports it as ``coco``, ``yolo-obb`` and ``label-studio`` (annotations, and
predictions with a model version), and then, with the scratch venv's python:

* COCO: ``pycocotools.coco.COCO`` loads every split; every category id resolves; ``annToMask``
  of every annotation has the image's size and the ``area``/``bbox`` we wrote (exactly for RLE
  masks, which must also equal the accepted mask pixel for pixel; within the rasterisation of
  the outline for quads); ``COCOeval`` of the annotations against themselves gives AP 1.
* YOLO-OBB: ``check_det_dataset`` accepts data.yaml; ``verify_image_label`` accepts every label
  file (nothing corrupt or missing) with as many instances as we exported and the same corners;
  ``YOLODataset(task="obb")`` yields the same instances, as the rotated boxes of our quads.
* Label Studio SDK: ``LabelInterface`` validates ``label_config.xml`` and every task's
  annotations/predictions (``validate_prediction``, what the server runs on import); each
  region's polygon is ours in percent, its label and LaTeX are ours, a mask's outline covers its
  largest part; every mask's brush result, decoded by the SDK's ``converter.brush.decode_rle``, is
  the accepted mask pixel for pixel (the mask of two parts included: a row of its own).
* Label Studio server (with ``--label-studio-venv``): started on 127.0.0.1 with local-files
  serving rooted at the unpacked export; a project with our config imports ``tasks.json``
  (both variants), counts what we exported, and serves every task's image URL; what its JSON
  export (and the predictions API) gives back holds every mask as its brush, pixel for pixel with
  ``decode_rle``, with its LaTeX, and its ``BRUSH_TO_NUMPY`` export gives one layer per mask, equal
  to the mask.
* Back into Mathset (with ``--label-studio-venv``): the server's JSON export of the annotations
  project goes through ``curation.services.labelstudio_import`` (``manage.py import_labelstudio``)
  into a fresh spec as predictions; every image and region comes back as accepted (quads within
  1e-6 px, masks pixel for pixel from the polygon + brush pair, LaTeX, category). The predictions
  project's JSON export lists predictions by id only: it comes back the same way with the server's
  ``GET /api/predictions/?project=ID`` answer given as ``--predictions``.

A table of pass/fail per tool with its version is printed; the exit status is 1 when any check
fails (2 when a tool could not be run at all).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPORTS = ("coco", "yolo-obb", "label-studio", "label-studio-predictions")
LS_SERVER_EXPORT = "ls-server-export.json"   # the server's JSON export, read back by check_mathset_reimport
LS_SERVER_PRED_EXPORT = "ls-server-export-predictions.json"   # the predictions project's (ids only)
LS_SERVER_PREDICTIONS = "ls-server-predictions.json"          # its GET /api/predictions/?project=ID


# =============================================================== build (project venv)

def _setup_django(work: Path) -> None:
    var = work / "var"
    var.mkdir(parents=True, exist_ok=True)
    os.environ.update(DJANGO_SETTINGS_MODULE="config.settings", MATHSET_VAR_DIR=str(var), DEBUG="1",
                      DATABASE_URL=f"sqlite:///{var / 'compat.sqlite3'}", MEDIA_ROOT=str(var / "media"),
                      MATHSET_CELERY_EAGER="1", LOG_LEVEL="WARNING")
    os.environ.pop("REDIS_URL", None)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", interactive=False, verbosity=0)


def _image_bytes(width: int, height: int, seed: int, fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    fmt, _, variant = fmt.partition("-")
    if variant == "EXIF6":  # a phone photo stored sideways: EXIF orientation 6 turns it upright (w x h)
        width, height = height, width
    img = Image.new("RGB", (width, height), (250, 250, 245))
    draw = ImageDraw.Draw(img)
    draw.text((6, 6), f"x^{seed}+{seed % 7}=y", fill=(0, 0, 0))
    draw.line((0, seed % height, width - 1, (seed * 7) % height), fill=((seed * 37) % 255, 40, 90), width=3)
    buf = io.BytesIO()
    if variant == "EXIF6":
        exif = Image.Exif()
        exif[0x0112] = 6
        img.save(buf, fmt, exif=exif)
    elif variant in ("L", "RGBA"):
        img.convert(variant).save(buf, fmt)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def _rotated(cx: float, cy: float, w: float, h: float, degrees: float) -> list[list[float]]:
    """A w x h rectangle centred at (cx, cy), turned by `degrees`, corners in reading order."""
    import math

    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return [[round(cx + x * c - y * s, 3), round(cy + x * s + y * c, 3)] for x, y in corners]


def _mask(width: int, height: int, boxes: list[tuple[int, int, int, int]], ellipse: bool = False) -> dict:
    import numpy as np

    from common import rle

    m = np.zeros((height, width), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for x0, y0, x1, y1 in boxes:
        if ellipse:
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            m[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = 1
        else:
            m[y0:y1, x0:x1] = 1
    return rle.encode(m)


def _q(points, latex: str, categories=()) -> dict:
    return {"kind": "quad", "points": points, "latex": latex, "categories": list(categories)}


def _m(mask: dict, latex: str, categories=()) -> dict:
    return {"kind": "mask", "mask": mask, "latex": latex, "categories": list(categories)}


def _scenes() -> list[tuple[str, int, int, str, list[dict]]]:
    """(file name, width, height, PIL format, regions): the labelled images of the spec."""
    w, h = 320, 180
    return [
        ("plain.png", 200, 100, "PNG", [
            _q([[10, 10], [90, 10], [90, 40], [10, 40]], r"x^{2}+1", ["printed"]),
            _q([[100, 50], [190, 50], [190, 90], [100, 90]], r"\frac{a}{b}", ["handwritten", "highlighter"])]),
        ("rotated.png", w, h, "PNG", [
            _q(_rotated(160, 90, 120, 30, 30), r"\sum_{i=1}^{n} i", ["printed"]),
            _q(_rotated(70, 140, 80, 24, 180), r"\int_0^1 f", ["handwritten"])]),  # upside down
        ("perspective.jpg", w, h, "JPEG", [
            _q([[20, 30], [150, 20], [160, 70], [15, 60]], r"\sqrt{b^{2}-4ac}", ["shadow"]),
            _q([[0, 120], [w, 120], [w, h], [0, h]], r"\text{Fläche} = a \cdot b", ["printed"])]),  # the border
        ("masks.png", w, h, "PNG", [
            _m(_mask(w, h, [(30, 20, 150, 60)], ellipse=True), r"\alpha+\beta", ["whiteout"]),
            _m(_mask(w, h, [(180, 100, 230, 130), (240, 100, 300, 140)]), r"\lim_{x\to 0}", ["handwritten"]),
            _q([[200, 20], [300, 20], [300, 60], [200, 60]], r"e^{i\pi}+1=0")]),  # no category
        ("portrait.png", 150, 300, "PNG", [
            _q(_rotated(75, 150, 200, 40, 90), r"\vec{v}\cdot\vec{w}", ["printed"]),
            _m(_mask(150, 300, [(0, 0, 40, 30)]), r"\pi", ["highlighter"])]),  # mask in the corner
        ("anim.gif", 160, 120, "GIF", [
            _q(_rotated(80, 60, 100, 30, -20), r"a_{n+1} = 2 a_n", ["handwritten"])]),
        ("phone.jpg", 160, 240, "JPEG-EXIF6", [  # ingest turns it upright: regions are upright pixels
            _q(_rotated(80, 60, 120, 30, 10), r"y = mx + c", ["handwritten"]),
            _m(_mask(160, 240, [(20, 150, 140, 200)], ellipse=True), r"\Delta", ["shadow"])]),
        ("scan.png", 200, 120, "PNG-L", [
            _q([[10, 10], [190, 10], [190, 50], [10, 50]], r"\binom{n}{k}", ["printed"])]),
        ("overlay.png", 200, 120, "PNG-RGBA", [
            _q([[20, 60], [180, 60], [180, 110], [20, 110]], r"\mathbb{R}^{n}", ["highlighter"])]),
        ("tiny.png", 64, 48, "PNG", [
            _q([[2, 2], [62, 2], [62, 46], [2, 46]], r"\infty", ["printed"])]),
        ("many.png", w, h, "PNG", [
            _q(_rotated(40 + 60 * (k % 5), 40 + 70 * (k // 5), 50, 18, 15 * k), rf"x_{{{k}}}", ["printed"])
            for k in range(10)]),
    ]


def accepted_snapshot(name: str, *, adjust: Callable[[int, int, dict], None] | None = None) -> tuple:
    """The scenes (`_scenes`) ingested into a new research spec, annotated, accepted and frozen
    through the services, as one vendor's annotator and reviewer would: (the snapshot, {image id:
    (scene name, regions)}). `adjust(seed, k, region)` may change a region before it is drawn.
    Django must be set up (`_setup_django`)."""
    from decimal import Decimal

    from common import roles
    from curation import services as curation_services
    from curation import snapshots
    from labeling.services import annotation_create, batch_create, review_create, task_claim_next
    from tests import factories

    spec = factories.make_spec(intended_use="research", answer_formats=["quad", "mask", "latex"])
    source = factories.make_source("cc-by-4.0")
    vendor = factories.make_vendor()
    scenes = {}
    for seed, (scene, width, height, fmt, regions) in enumerate(_scenes(), start=1):
        if adjust is not None:
            for k, region in enumerate(regions):
                adjust(seed, k, region)
        image, _ = curation_services.image_ingest(spec=spec, source=source, filename=scene,
                                                  data=_image_bytes(width, height, seed, fmt),
                                                  categories=["printed"])
        scenes[image.pk] = (scene, regions)
    batch_create(spec=spec, vendor=vendor, name=name, unit_price=Decimal("0.25"), quantity=len(scenes))
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    while (task := task_claim_next(annotator=annotator).task) is not None:
        annotation = annotation_create(task=task, annotator=annotator, submit=True,
                                       regions=scenes[task.image_id][1])
        review_create(annotation=annotation, reviewer=reviewer, decision="accept")
    snap = snapshots.snapshot_create(spec=spec, name=name, created_by=None, ratios=(0.6, 0.2, 0.2))
    snap.refresh_from_db()
    if snap.status != "ready":
        snap = snapshots.snapshot_build(snapshot=snap)
    return snap, scenes


def build_exports(work: Path) -> dict:
    """A spec annotated and accepted through the services, frozen and exported; returns what was
    exported (the records the exporters were given), written beside the zips as expected.json."""
    _setup_django(work)

    from curation import snapshots
    from curation.exporters import export
    from curation.models import Category

    snap, scenes = accepted_snapshot("compat")
    spec = snap.spec

    out = work / "exports"
    out.mkdir(exist_ok=True)
    counts = {}
    for fmt in ("coco", "yolo-obb", "label-studio"):
        result = snapshots.export_build(snapshot=snap, format=fmt, dest=str(out / f"{fmt}.zip"))
        counts[fmt] = {"images": result.images, "regions": result.regions}
    # The same snapshot as predictions of a model (what Label Studio validates on import).
    from curation.exporters import CategoryInfo

    categories = [CategoryInfo(slug=c["slug"], name=c.get("name", "")) for c in snap.categories] or [
        CategoryInfo(slug=c.slug, name=c.name) for c in Category.objects.filter(spec=spec).order_by("position", "id")]
    result = export(snapshots.snapshot_export_images(snap), str(out / "label-studio-predictions.zip"),
                    format="label-studio", intended_use=snapshots.snapshot_intended_use(snap),
                    categories=categories, as_predictions=True, model_version="compat-1")
    counts["label-studio-predictions"] = {"images": result.images, "regions": result.regions}

    images = []
    for rec in snapshots.snapshot_export_images(snap):
        images.append({
            "image_id": rec.image_id, "file_name": rec.file_name, "width": rec.width, "height": rec.height,
            "split": rec.split, "scene": scenes[rec.image_id][0],
            "regions": [{"points": None if r.points is None else r.points.tolist(),
                         "mask_rle": None if r.mask_rle is None else {"size": list(r.mask_rle["size"]),
                                                                      "counts": r.mask_rle["counts"]},
                         "latex": r.latex, "category": r.category_slug} for r in rec.regions]})
    # The writers' category order: the snapshot's, then any first met in the regions ("formula").
    order = [c.slug for c in categories]
    order += list(dict.fromkeys(r["category"] for im in images for r in im["regions"] if r["category"] not in order))
    expected = {"categories": order, "images": images, "counts": counts}
    (work / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False))
    return expected


# =============================================================== checks (scratch venv)

class Report:
    """Check results of one tool: (check, ok, detail) rows."""

    def __init__(self, tool: str, version: str) -> None:
        self.tool, self.version, self.rows = tool, version, []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.rows.append({"tool": self.tool, "version": self.version, "check": name, "ok": bool(ok),
                          "detail": detail})
        return bool(ok)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _unzip(work: Path, fmt: str) -> Path:
    dest = work / "unpacked" / fmt
    if dest.exists():
        shutil.rmtree(dest)
    with zipfile.ZipFile(work / "exports" / f"{fmt}.zip") as zf:
        zf.extractall(dest)
    return dest


def _clip_quad(points, width: int, height: int):
    import numpy as np

    return np.clip(np.asarray(points, dtype=np.float64), 0, [width, height])


def _decode(rle: dict):
    import numpy as np

    try:
        from pycocotools import mask as mask_utils
    except ImportError:  # the Label Studio server's venv has no pycocotools
        return _decode_coco_text(rle)
    counts = rle["counts"]
    return np.ascontiguousarray(mask_utils.decode({"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str)
                              else counts}))


def _decode_coco_text(rle: dict):
    """COCO's compressed RLE text (``rleFrString`` of pycocotools' maskApi.c) to an HxW uint8 mask."""
    import numpy as np

    s, counts, p = rle["counts"], [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    h, w = rle["size"]
    flat = np.repeat(np.arange(len(counts)) % 2, counts).astype(np.uint8)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def check_coco(work: Path, expected: dict) -> Report:
    import numpy as np
    from PIL import Image
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rep = Report("pycocotools", _version("pycocotools"))
    root = _unzip(work, "coco")
    by_id = {im["image_id"]: im for im in expected["images"]}
    files = sorted((root / "annotations").glob("*.json"))
    rep.check("one annotations file per split", {f.stem for f in files} == {im["split"] for im in by_id.values()},
              ", ".join(f.name for f in files))
    seen_images, n_anns = set(), 0
    for path in files:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
        names = [coco.cats[i]["name"] for i in sorted(coco.cats)]
        rep.check(f"{path.name}: categories are the export's, ids 1..n", names == expected["categories"]
                  and sorted(coco.cats) == list(range(1, len(names) + 1)), str(names))
        bad_cat = [a["id"] for a in coco.anns.values() if a["category_id"] not in coco.cats]
        rep.check(f"{path.name}: every category_id resolves (loadCats)", not bad_cat
                  and all(coco.loadCats(a["category_id"]) for a in coco.anns.values()), f"unresolved: {bad_cat}")
        problems = []
        for img_id, img in coco.imgs.items():
            seen_images.add(img_id)
            exp = by_id.get(img_id)
            if exp is None:
                problems.append(f"image {img_id} was not exported")
                continue
            with Image.open(root / "images" / img["file_name"]) as im:
                if im.size != (img["width"], img["height"]) or im.size != (exp["width"], exp["height"]):
                    problems.append(f"image {img_id}: file is {im.size}, json says {img['width']}x{img['height']}")
                if im.getexif().get(0x0112, 1) != 1:  # a viewer or loader would turn it: labels off
                    problems.append(f"image {img_id}: EXIF orientation {im.getexif().get(0x0112)}")
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
            n_anns += len(anns)
            if len(anns) != len(exp["regions"]):
                problems.append(f"image {img_id}: {len(anns)} annotations, {len(exp['regions'])} regions accepted")
                continue
            for ann, reg in zip(anns, exp["regions"], strict=True):
                m = coco.annToMask(ann)
                if m.shape != (img["height"], img["width"]):
                    problems.append(f"ann {ann['id']}: annToMask shape {m.shape}")
                    continue
                area = float(m.sum())
                mbox = [float(v) for v in mask_utils.toBbox(coco.annToRLE(ann))]
                if coco.cats.get(ann["category_id"], {}).get("name") != reg["category"] or ann["latex"] != reg["latex"]:
                    problems.append(f"ann {ann['id']}: category/latex differ from the accepted region")
                if reg["mask_rle"] is not None:  # RLE: exact
                    if area != ann["area"] or mbox != ann["bbox"]:
                        problems.append(f"ann {ann['id']}: RLE mask area/bbox {area}/{mbox} vs written "
                                        f"{ann['area']}/{ann['bbox']}")
                    if not np.array_equal(m, _decode(reg["mask_rle"])):
                        problems.append(f"ann {ann['id']}: decoded mask differs from the accepted mask")
                else:  # polygon: pycocotools rasterises it; the shoelace area is the exact one
                    quad = np.asarray(ann["segmentation"][0], dtype=np.float64).reshape(-1, 2)
                    perim = float(np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1).sum())
                    # pycocotools' rasteriser is within 0.09 px per px of outline of the exact area here
                    if abs(area - ann["area"]) > 0.15 * perim + 1:
                        problems.append(f"ann {ann['id']}: rasterised area {area} vs written {ann['area']} "
                                        f"(perimeter {perim:.0f})")
                    edges = lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3])  # noqa: E731
                    if max(abs(a - b) for a, b in zip(edges(mbox), edges(ann["bbox"]), strict=True)) > 1.0 + 1e-9:
                        problems.append(f"ann {ann['id']}: rasterised bbox {mbox} vs written {ann['bbox']}")
                    if not np.allclose(quad, reg["points"], atol=1e-6):
                        problems.append(f"ann {ann['id']}: polygon {quad.tolist()} vs accepted {reg['points']}")
        rep.check(f"{path.name}: annToMask matches area/bbox/mask/polygon of every annotation", not problems,
                  "; ".join(problems[:5]) or f"{len(coco.anns)} annotations")
        for iou_type in ("segm", "bbox"):
            gt_anns = list(coco.anns.values())
            dets = [{k: v for k, v in a.items() if k not in ("id", "area")} | {"score": 1.0} for a in gt_anns]
            with contextlib.redirect_stdout(io.StringIO()):
                dt = coco.loadRes(dets)
                ev = COCOeval(coco, dt, iou_type)
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            rep.check(f"{path.name}: COCOeval {iou_type} of the annotations against themselves: AP = 1",
                      abs(ev.stats[0] - 1.0) < 1e-9, f"AP={ev.stats[0]:.4f}")
    rep.check("every exported image and region is in the files", seen_images == set(by_id)
              and n_anns == expected["counts"]["coco"]["regions"], f"{len(seen_images)} images, {n_anns} annotations")
    return rep


def check_yolo(work: Path, expected: dict) -> Report:
    os.environ.setdefault("YOLO_CONFIG_DIR", str(work / "ultralytics-config"))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import cv2
    import numpy as np
    import ultralytics
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import IMG_FORMATS, check_det_dataset, img2label_paths, verify_image_label

    rep = Report("ultralytics", ultralytics.__version__)
    root = _unzip(work, "yolo-obb")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            data = check_det_dataset(str(root / "data.yaml"))
    except Exception as exc:  # noqa: BLE001 - what the tool says is the finding
        rep.check("check_det_dataset accepts data.yaml", False, f"{type(exc).__name__}: {exc}")
        return rep
    names = [data["names"][i] for i in sorted(data["names"])]
    rep.check("check_det_dataset accepts data.yaml; names are the export's categories",
              names == expected["categories"] and data["nc"] == len(names), str(names))
    by_stem = {Path(im["file_name"]).stem: im for im in expected["images"]}
    split_key = {"train": "train", "validation": "val", "test": "test"}
    splits = sorted({im["split"] for im in expected["images"]})
    seen, total = set(), 0
    for split in splits:
        key = split_key.get(split, split)
        folder = Path(data[key]) if key in data else None
        if folder is None or not folder.is_dir():
            rep.check(f"{split}: data.yaml {key!r} is the split's image folder", False, f"{data.get(key)}")
            continue
        ims = sorted(str(p) for p in folder.iterdir() if p.suffix[1:].lower() in IMG_FORMATS)
        want = [im for im in expected["images"] if im["split"] == split]
        rep.check(f"{split}: every image is in an ultralytics IMG_FORMAT", len(ims) == len(want),
                  f"{len(ims)} readable of {len(want)}")
        problems, n_split = [], 0
        for im_file, lb_file in zip(ims, img2label_paths(ims), strict=True):
            res = verify_image_label((im_file, lb_file, "", False, len(names), 0, 0, False))
            _, lb, shape, segments, _, nm, nf, ne, nc, msg = res
            exp = by_stem[Path(im_file).stem]
            seen.add(exp["image_id"])
            if nc or nm or msg:
                problems.append(f"{Path(lb_file).name}: missing={nm} corrupt={nc} {msg}")
                continue
            n_split += len(lb)
            if tuple(shape) != (exp["height"], exp["width"]):
                problems.append(f"{Path(im_file).name}: ultralytics reads it as {shape}")
            if len(lb) != len(exp["regions"]):
                problems.append(f"{Path(lb_file).name}: {len(lb)} instances, {len(exp['regions'])} exported")
                continue
            for k, (cls, seg, reg) in enumerate(zip(lb[:, 0], segments, exp["regions"], strict=True)):
                if names[int(cls)] != reg["category"]:
                    problems.append(f"{Path(lb_file).name}:{k}: class {names[int(cls)]} is not {reg['category']}")
                px = seg.astype(np.float64) * [exp["width"], exp["height"]]
                if reg["points"] is not None:
                    want_q = _clip_quad(reg["points"], exp["width"], exp["height"])
                    if not np.allclose(px, want_q, atol=1e-3):
                        problems.append(f"{Path(lb_file).name}:{k}: corners {px.round(3).tolist()} vs "
                                        f"{want_q.tolist()}")
                else:  # a mask: the rotated rectangle must hold the mask and be about its size
                    m = _decode(reg["mask_rle"])
                    poly = np.zeros(m.shape, dtype=np.uint8)
                    cv2.fillPoly(poly, [np.round(px).astype(np.int32)], 1)
                    inside = float((poly & m).sum()) / float(m.sum())
                    if inside < 0.97:
                        problems.append(f"{Path(lb_file).name}:{k}: the box holds {inside:.0%} of the mask")
        total += n_split
        rep.check(f"{split}: verify_image_label accepts every label file; instances and corners are ours",
                  not problems, "; ".join(problems[:5]) or f"{len(ims)} files, {n_split} instances")
        # The trainer's own dataset: labels through its cache, transforms and OBB formatting.
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                ds = YOLODataset(img_path=str(folder), data=data, task="obb", augment=False, imgsz=640,
                                 cache=False, rect=False, batch_size=1, pad=0.0)
                items = [ds[i] for i in range(len(ds))]
        except Exception as exc:  # noqa: BLE001
            rep.check(f"{split}: YOLODataset(task='obb') loads the split", False, f"{type(exc).__name__}: {exc}")
            continue
        problems = []
        for item in items:
            exp = by_stem[Path(item["im_file"]).stem]
            boxes = item["bboxes"].numpy().astype(np.float64)
            if len(boxes) != len(exp["regions"]):
                problems.append(f"{Path(item['im_file']).name}: {len(boxes)} boxes, {len(exp['regions'])} exported")
                continue
            hh, ww = item["img"].shape[1:]
            # ((height ratio, width ratio), (left, top) padding): load_image rounds the resized sides up
            # (ceil), so x and y can scale slightly differently
            (sy, sx), (padw, padh) = item["ratio_pad"]
            for k, (box, reg) in enumerate(zip(boxes, exp["regions"], strict=True)):
                cx, cy = (box[0] * ww - padw) / sx, (box[1] * hh - padh) / sy
                bw, bh = box[2] * ww / sx, box[3] * hh / sy  # exact for a box at 0/90 degrees
                aniso = abs(sx / sy - 1) * max(bw, bh)
                if reg["points"] is not None:
                    pts = _clip_quad(reg["points"], exp["width"], exp["height"]).astype(np.float32)
                else:
                    ys, xs = np.nonzero(_decode(reg["mask_rle"]))
                    pts = np.stack([xs, ys], 1).astype(np.float32)
                (ecx, ecy), (ew, eh), _ = cv2.minAreaRect(pts)
                tol = (1.5 if reg["points"] is None else 0.05) + aniso  # a mask: pixel centres vs squares
                if (abs(cx - ecx) > tol or abs(cy - ecy) > tol
                        or abs(sorted([bw, bh])[0] - sorted([ew, eh])[0]) > 2 * tol
                        or abs(sorted([bw, bh])[1] - sorted([ew, eh])[1]) > 2 * tol):
                    problems.append(f"{Path(item['im_file']).name}:{k}: xywhr centre ({cx:.2f},{cy:.2f}) size "
                                    f"{bw:.2f}x{bh:.2f} vs minAreaRect ({ecx:.2f},{ecy:.2f}) {ew:.2f}x{eh:.2f}")
        rep.check(f"{split}: YOLODataset(task='obb') yields every instance as our quad's rotated box",
                  not problems and len(items) == len(want),
                  "; ".join(problems[:5]) or f"{len(items)} images, {sum(len(i['bboxes']) for i in items)} boxes")
    rep.check("every exported image and instance was read", seen == set(by_stem[s]["image_id"] for s in by_stem)
              and total == expected["counts"]["yolo-obb"]["regions"], f"{len(seen)} images, {total} instances")
    return rep


def check_label_studio_sdk(work: Path, expected: dict) -> Report:
    import cv2
    import numpy as np
    from label_studio_sdk.label_interface import LabelInterface

    rep = Report("label-studio-sdk", _version("label-studio-sdk"))
    by_id = {im["image_id"]: im for im in expected["images"]}
    for fmt, key in (("label-studio", "annotations"), ("label-studio-predictions", "predictions")):
        root = _unzip(work, fmt)
        config = (root / "label_config.xml").read_text()
        try:
            li = LabelInterface(config)
            li.validate()
            ok, detail = True, f"controls {[c.name for c in li.controls]}"
        except Exception as exc:  # noqa: BLE001
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        rep.check(f"{fmt}: LabelInterface parses and validates label_config.xml", ok, detail)
        if not ok:
            continue
        labels = li.get_control("label").labels
        rep.check(f"{fmt}: the config's labels are the export's categories", list(labels) == expected["categories"],
                  str(labels))
        rep.check(f"{fmt}: the config's brush labels are the export's categories",
                  list(li.get_control("mask").labels) == expected["categories"], str(li.get_control("mask").labels))
        tasks = json.loads((root / "tasks.json").read_text())
        problems, n_regions, n_multipart = [], 0, {}
        for t_i, task in enumerate(tasks):
            exp = by_id.get(task["data"].get("image_id"))
            if exp is None:
                problems.append(f"task {t_i}: image_id {task['data'].get('image_id')} not exported")
                continue
            for obj in li.objects:  # every object's $variable must be in the task's data
                if obj.value_is_variable and task["data"].get(obj.value_name) in (None, ""):
                    problems.append(f"task {t_i}: data has no {obj.value_name!r}")
            url = task["data"]["image"]
            prefix = "/data/local-files/?d="
            if not url.startswith(prefix) or not (root / url[len(prefix):]).is_file():
                problems.append(f"task {t_i}: image URL {url!r} does not name a file of the export")
            bodies = task.get(key) or []
            if len(bodies) != 1 or set(task) - {"data", key}:
                problems.append(f"task {t_i}: keys {sorted(task)}")
                continue
            errors = li.validate_prediction(bodies[0], return_errors=True)
            if key == "annotations" and not li.validate_annotation(bodies[0]):
                errors = errors or ["validate_annotation: False"]
            if errors:
                problems.append(f"task {t_i}: " + "; ".join(errors[:3]))
            if key == "predictions" and bodies[0].get("model_version") != "compat-1":
                problems.append(f"task {t_i}: model_version {bodies[0].get('model_version')!r}")
            results = bodies[0]["result"]
            ids = list(dict.fromkeys(r["id"] for r in results if not r["id"].endswith("-mask")))
            brush_ids = list(dict.fromkeys(r["id"] for r in results if r["id"].endswith("-mask")))
            if len(ids) != len(exp["regions"]):
                problems.append(f"task {t_i}: {len(ids)} regions, {len(exp['regions'])} exported")
                continue
            want_brush = [rid + "-mask" for rid, reg in zip(ids, exp["regions"], strict=True) if reg["mask_rle"]]
            if brush_ids != want_brush:
                problems.append(f"task {t_i}: brush regions {brush_ids}, want {want_brush}")
            for rid, reg in zip(ids, exp["regions"], strict=True):
                n_regions += 1
                pair = {r["type"]: r for r in results if r["id"] == rid}
                poly, text = pair.get("polygonlabels"), pair.get("textarea")
                if poly is None or text is None:
                    problems.append(f"region {rid}: types {sorted(pair)}")
                    continue
                # What the SDK's value model makes of the region (pydantic parse of the control's value).
                control = li.get_control(poly["from_name"])
                if not control.validate_value(poly["value"]):
                    problems.append(f"region {rid}: PolygonLabels value does not parse")
                w, h = poly["original_width"], poly["original_height"]
                if (w, h) != (exp["width"], exp["height"]):
                    problems.append(f"region {rid}: original size {w}x{h}")
                px = np.asarray(poly["value"]["points"], dtype=np.float64) * [w / 100.0, h / 100.0]
                if poly["value"]["polygonlabels"] != [reg["category"]] or text["value"]["text"] != [reg["latex"]]:
                    problems.append(f"region {rid}: label/text {poly['value']['polygonlabels']} "
                                    f"{text['value']['text']}")
                if reg["points"] is not None:
                    if not np.allclose(px, _clip_quad(reg["points"], w, h), atol=1e-6):
                        problems.append(f"region {rid}: polygon {px.round(3).tolist()} vs {reg['points']}")
                elif reg["mask_rle"] is not None:  # the polygon outlines the mask's largest part (one ring)
                    m = _decode(reg["mask_rle"])
                    filled = np.zeros(m.shape, dtype=np.uint8)
                    cv2.fillPoly(filled, [np.round(px).astype(np.int32)], 1)
                    largest = _largest_component(m)
                    iou_largest = float((filled & largest).sum()) / float((filled | largest).sum())
                    if iou_largest < 0.85:
                        problems.append(f"region {rid}: outline/largest part IoU {iou_largest:.2f}")
                if reg["mask_rle"] is None:
                    continue
                # The mask itself: a brush region with its LaTeX, decoded by the SDK's own RLE decoder.
                bpair = {r["type"]: r for r in results if r["id"] == rid + "-mask"}
                brush, btext = bpair.get("brushlabels"), bpair.get("textarea")
                if brush is None or btext is None:
                    problems.append(f"region {rid}-mask: types {sorted(bpair)}")
                    continue
                if not li.get_control(brush["from_name"]).validate_value(brush["value"]):
                    problems.append(f"region {rid}-mask: BrushLabels value does not parse")
                if brush["value"]["brushlabels"] != [reg["category"]] or btext["value"]["text"] != [reg["latex"]]:
                    problems.append(f"region {rid}-mask: label/text {brush['value']['brushlabels']} "
                                    f"{btext['value']['text']}")
                diff = _brush_differs(brush, reg["mask_rle"])
                if diff:
                    problems.append(f"region {rid}-mask: {diff}")
                n_parts = _components(_decode(reg["mask_rle"]))
                if n_parts > 1:
                    n_multipart[fmt] = n_multipart.get(fmt, 0) + 1
                    rep.check(f"{fmt}: region {rid}, a mask of {n_parts} parts, comes back whole from its brush "
                              "(SDK decode_rle, pixel for pixel)", not diff,
                              diff or f"{int(_decode(reg['mask_rle']).sum())} pixels")
        rep.check(f"{fmt}: validate_{key[:-1]} accepts every task; regions parse and are ours", not problems,
                  "; ".join(problems[:5]) or f"{len(tasks)} tasks, {n_regions} regions")
        rep.check(f"{fmt}: every exported image and region is a task/region", len(tasks) == len(by_id)
                  and n_regions == expected["counts"][fmt]["regions"], f"{len(tasks)} tasks, {n_regions} regions")
        rep.check(f"{fmt}: the spec's mask of several parts was checked", n_multipart.get(fmt, 0) >= 1,
                  f"{n_multipart.get(fmt, 0)} such masks")
    return rep


def _components(m) -> int:
    import cv2
    import numpy as np

    return cv2.connectedComponents(m.astype(np.uint8), connectivity=8)[0] - 1


def _brush_differs(result: dict, mask_rle: dict) -> str:
    """'' when a brush result, decoded by label_studio_sdk's ``decode_rle``, is the mask pixel for pixel."""
    import numpy as np
    from label_studio_sdk.converter.brush import decode_rle

    w, h = result["original_width"], result["original_height"]
    value = result["value"]
    if value.get("format") != "rle":
        return f"format {value.get('format')!r}"
    flat = decode_rle(bytes(value["rle"]))
    if flat.size != w * h * 4:
        return f"{flat.size} values decoded, want {w}x{h}x4"
    rgba = flat.reshape(h, w, 4)
    m = _decode(mask_rle).astype(bool)
    if not np.array_equal(rgba[:, :, 3] > 0, m):
        bad = int(((rgba[:, :, 3] > 0) != m).sum())
        return f"{bad} pixels differ from the mask ({int(m.sum())} pixels)"
    if not (rgba == np.where(m, 255, 0)[:, :, None]).all():
        return "painted pixels are not (255, 255, 255, 255) or the rest not 0"
    return ""


def _largest_component(m):
    import cv2
    import numpy as np

    n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    if n <= 1:
        return m
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (lab == k).astype(m.dtype)


def check_label_studio_server(work: Path, expected: dict, *, port: int = 18089, start_timeout: float = 420) -> Report:
    """Label Studio itself: start it, make a project with our config, import tasks.json, read back."""
    import socket

    import label_studio
    import requests

    rep = Report("label-studio (server)", getattr(label_studio, "__version__", None) or _version("label-studio"))
    root = _unzip(work, "label-studio")
    pred_root = _unzip(work, "label-studio-predictions")
    data_dir = work / "label-studio-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            rep.check(f"port {port} is free", False, "something listens there already; pass --ls-port")
            return rep
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    env.update(LABEL_STUDIO_BASE_DATA_DIR=str(data_dir), LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
               LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(root), SENTRY_DSN="", FRONTEND_SENTRY_DSN="",
               COLLECT_ANALYTICS="false")
    email, password, base = "compat@example.com", "compat-pass-123", f"http://127.0.0.1:{port}"
    label_studio_bin = Path(sys.executable).parent / "label-studio"
    log = open(work / "label-studio-server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([str(label_studio_bin), "start", "--no-browser", "--host", "127.0.0.1", "--port",
                               str(port), "--username", email, "--password", password], env=env, cwd=work,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, up = time.monotonic() + start_timeout, False
        while time.monotonic() < deadline and server.poll() is None:
            try:
                up = requests.get(f"{base}/health", timeout=2).status_code == 200
            except requests.RequestException:
                up = False
            if up:
                break
            time.sleep(2)
        if not rep.check("the server starts (migrations included)", up,
                         f"see {work / 'label-studio-server.log'}" if not up else ""):
            return rep
        s = requests.Session()
        s.get(f"{base}/user/login/", timeout=30)
        r = s.post(f"{base}/user/login/", data={"email": email, "password": password,
                                               "csrfmiddlewaretoken": s.cookies["csrftoken"]},
                   headers={"Referer": f"{base}/user/login/"}, allow_redirects=False, timeout=30)
        s.headers.update({"X-CSRFToken": s.cookies["csrftoken"], "Referer": f"{base}/"})
        if not rep.check("log in", r.status_code == 302, f"HTTP {r.status_code}"):
            return rep
        for unpacked, key, fmt in ((root, "annotations", "label-studio"),
                                   (pred_root, "predictions", "label-studio-predictions")):
            _ls_server_project(rep, s, base, unpacked, root, key, fmt, expected)
    finally:
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    return rep


def _ls_server_project(rep: Report, s, base: str, unpacked: Path, doc_root: Path, key: str, fmt: str,
                       expected: dict) -> None:
    tasks = json.loads((unpacked / "tasks.json").read_text())
    config = (unpacked / "label_config.xml").read_text()
    r = s.post(f"{base}/api/projects", json={"title": f"compat {fmt}", "label_config": config}, timeout=60)
    if not rep.check(f"{fmt}: a project accepts label_config.xml", r.status_code == 201,
                     f"HTTP {r.status_code} {r.text[:300]}" if r.status_code != 201 else ""):
        return
    project = r.json()["id"]
    r = s.post(f"{base}/api/storages/localfiles", timeout=60, json={
        "project": project, "title": "export images", "path": str(doc_root / "images"), "use_blob_urls": False})
    rep.check(f"{fmt}: a local-files storage on the export's images/ is accepted", r.status_code == 201,
              f"HTTP {r.status_code} {r.text[:300]}" if r.status_code != 201 else "")
    r = s.post(f"{base}/api/projects/{project}/import", json=tasks, timeout=120)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    n_images = len(expected["images"])
    want = {"task_count": n_images, "annotation_count": n_images if key == "annotations" else 0,
            "prediction_count": n_images if key == "predictions" else 0}
    got = {k: body.get(k) for k in want}
    if not rep.check(f"{fmt}: the server imports tasks.json ({key})", r.status_code == 201 and got == want,
                     f"HTTP {r.status_code} {got if r.status_code == 201 else r.text[:400]}"):
        return
    r = s.get(f"{base}/api/projects/{project}/export", params={"exportType": "JSON", "download_all_tasks": "true"},
              timeout=120)
    exported = r.json() if r.status_code == 200 else []
    if key == "annotations" and r.status_code == 200:  # read back into Mathset by check_mathset_reimport
        (doc_root.parent.parent / LS_SERVER_EXPORT).write_text(json.dumps(exported, ensure_ascii=False))
    if key == "annotations":
        n_results = sum(len(b["result"]) for t in exported for b in t.get(key, []))
    else:  # the JSON export names predictions by id only: read them from the predictions API
        p = s.get(f"{base}/api/predictions/", params={"project": project}, timeout=120)
        preds = p.json() if p.status_code == 200 else []
        preds = preds.get("results", []) if isinstance(preds, dict) else preds
        if r.status_code == 200 and p.status_code == 200:  # read back by check_mathset_reimport (--predictions)
            (doc_root.parent.parent / LS_SERVER_PRED_EXPORT).write_text(json.dumps(exported, ensure_ascii=False))
            (doc_root.parent.parent / LS_SERVER_PREDICTIONS).write_text(json.dumps(p.json(), ensure_ascii=False))
        n_results = sum(len(b["result"]) for b in preds)
        if any(b.get("model_version") != "compat-1" for b in preds):
            rep.check(f"{fmt}: predictions keep their model_version", False,
                      str({b.get("model_version") for b in preds}))
    n_masks = sum(reg["mask_rle"] is not None for im in expected["images"] for reg in im["regions"])
    want_results = 2 * expected["counts"][fmt]["regions"] + 2 * n_masks
    rep.check(f"{fmt}: its JSON export gives back every region (polygon + LaTeX, brush + LaTeX)",
              r.status_code == 200 and len(exported) == n_images and n_results == want_results,
              f"HTTP {r.status_code}: {len(exported)} tasks, {n_results} results (want {want_results})")
    # Every mask comes back from the server as its brush, pixel for pixel (SDK decode_rle), every part.
    regions = {f"{im['image_id']}-{k}-mask": reg for im in expected["images"] for k, reg in enumerate(im["regions"])
               if reg["mask_rle"] is not None}
    bodies = [b for t in exported for b in t.get(key, [])] if key == "annotations" else preds
    brushes = [res for b in bodies for res in b["result"] if res["type"] == "brushlabels"]
    problems, multipart = [], 0
    for res in brushes:
        reg = regions.get(res["id"])
        if reg is None:
            problems.append(f"brush {res['id']} is no exported mask")
            continue
        diff = _brush_differs(res, reg["mask_rle"])
        if diff:
            problems.append(f"{res['id']}: {diff}")
        elif _components(_decode(reg["mask_rle"])) > 1:
            multipart += 1
        if res["value"].get("brushlabels") != [reg["category"]]:
            problems.append(f"{res['id']}: labels {res['value'].get('brushlabels')}")
    texts = {res["id"]: res["value"].get("text") for b in bodies for res in b["result"] if res["type"] == "textarea"}
    problems += [f"{i}: LaTeX {texts.get(i)!r}" for i, reg in regions.items() if texts.get(i) != [reg["latex"]]]
    rep.check(f"{fmt}: every mask comes back as its brush, pixel for pixel, with its LaTeX (SDK decode_rle)",
              not problems and len(brushes) == len(regions) and multipart >= 1,
              "; ".join(problems[:3]) or f"{len(brushes)} brushes of {len(regions)} masks, {multipart} of several parts")
    if key == "annotations":
        _ls_server_brush_numpy(rep, s, base, project, fmt, exported, regions)
    problems = []
    for task in tasks:
        url = task["data"]["image"]
        img = s.get(f"{base}{url}", timeout=60)
        member = url.split("?d=", 1)[1]
        if img.status_code != 200 or img.content != (doc_root / member).read_bytes():
            problems.append(f"{url}: HTTP {img.status_code}")
    rep.check(f"{fmt}: the server serves every task's image URL (local files)", not problems,
              "; ".join(problems[:3]) or f"{len(tasks)} images")


def _ls_server_brush_numpy(rep: Report, s, base: str, project: int, fmt: str, exported: list, regions: dict) -> None:
    """The server's own brush converter (export type BRUSH_TO_NUMPY): one .npy layer per brush."""
    import numpy as np

    r = s.get(f"{base}/api/projects/{project}/export", params={"exportType": "BRUSH_TO_NUMPY",
                                                             "download_all_tasks": "true"}, timeout=300)
    if not rep.check(f"{fmt}: the server's BRUSH_TO_NUMPY export runs", r.status_code == 200
                     and r.content[:2] == b"PK", f"HTTP {r.status_code} {r.headers.get('content-type')}"):
        return
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        layers = {n: np.load(io.BytesIO(zf.read(n))) for n in zf.namelist() if n.endswith(".npy")}
    # Layers are named task-<task>-annotation-<ann>-by-<who>-<from_name>-<labels>-<n-th of those labels>.
    problems, matched = [], 0
    for task in exported:
        for body in task.get("annotations", []):
            seen: dict[str, int] = {}
            for res in body["result"]:
                if res["type"] != "brushlabels" or res["id"] not in regions:
                    continue
                name = f"{res['from_name']}-{'-'.join(res['value']['brushlabels'])}"
                n = seen.get(name, 0)
                seen[name] = n + 1
                suffix = f"-{name}-{n}.npy"
                prefix = f"task-{task['id']}-annotation-{body['id']}-"
                found = [k for k in layers if k.rsplit("/", 1)[-1].startswith(prefix) and k.endswith(suffix)]
                if len(found) != 1:
                    problems.append(f"{res['id']}: layers {found}")
                    continue
                layer = layers[found[0]]
                m = _decode(regions[res["id"]]["mask_rle"]).astype(bool)
                if layer.shape != m.shape or not np.array_equal(layer > 0, m):
                    problems.append(f"{res['id']}: layer {layer.shape} differs from the mask")
                    continue
                matched += 1
    rep.check(f"{fmt}: BRUSH_TO_NUMPY gives every mask back pixel for pixel", not problems
              and matched == len(regions) == len(layers),
              "; ".join(problems[:3]) or f"{matched} layers of {len(layers)} for {len(regions)} masks")


def check_mathset_reimport(work: Path, expected: dict) -> Report:
    """The server's own JSON exports imported back into Mathset (``curation.services.labelstudio_import``,
    what ``manage.py import_labelstudio`` runs) as predictions of a fresh spec: every image once,
    every region as it was accepted (quads within 1e-6 px, masks pixel for pixel: a formula's polygon
    and brush merged back into one mask), its LaTeX and its category. First the annotations project;
    then the predictions project, whose JSON export lists predictions by id only, with the server's
    ``GET /api/predictions/?project=ID`` answer as ``--predictions``. Runs in the project's venv,
    after the server check wrote the exports."""
    rep = Report("mathset import_labelstudio", "this tree")
    _reimport(rep, work, expected, "annotations", json.loads((work / LS_SERVER_EXPORT).read_text()), None)
    if (work / LS_SERVER_PRED_EXPORT).exists():
        _reimport(rep, work, expected, "predictions by id + --predictions",
                  json.loads((work / LS_SERVER_PRED_EXPORT).read_text()),
                  json.loads((work / LS_SERVER_PREDICTIONS).read_text()))
    else:
        rep.check("the server's predictions export was written", False, "no predictions export from the server check")
    return rep


def _reimport(rep: Report, work: Path, expected: dict, what: str, tasks: list, predictions: object) -> None:
    import numpy as np
    from django.core.exceptions import ValidationError

    from curation import services
    from labeling.models import Prediction
    from tests import factories

    unpacked = work / "unpacked" / ("label-studio" if predictions is None else "label-studio-predictions")
    spec = factories.make_spec(intended_use="research", answer_formats=["quad", "mask", "latex"])
    source = factories.make_source("cc-by-4.0")
    version = "ls-server" if predictions is None else "ls-server-predictions"
    if predictions is not None:
        ids_only = sum(isinstance(x, int) for t in tasks for x in t.get("predictions", []))
        rep.check(f"{what}: the server's JSON export lists predictions by id only", ids_only == len(tasks),
                  f"{ids_only} ids in {len(tasks)} tasks")
    try:
        report = services.labelstudio_import(
            spec=spec, source=source, tasks=tasks, images_dir=unpacked / "images", model_version=version,
            category_map={"formula": ""}, label_config=(unpacked / "label_config.xml").read_text(),
            predictions=predictions, results="auto" if predictions is None else "predictions")
    except ValidationError as exc:
        rep.check(f"{what}: the server's JSON export imports", False, "; ".join(exc.messages)[:400])
        return
    by_file = {im["file_name"]: im for im in expected["images"]}
    rep.check(f"{what}: the server's JSON export imports: one new image per task",
              len(report.created) == len(tasks) == len(by_file),
              f"{len(report.created)} images from {len(tasks)} tasks ({len(by_file)} exported)")
    problems, regions = [], 0
    for pred in Prediction.objects.filter(image__spec=spec, model_version=version).select_related("image"):
        exp = by_file.get(pred.image.meta["label_studio"]["file"])
        if exp is None:
            problems.append(f"{pred.image.original_filename}: not exported")
            continue
        want = [r for r in exp["regions"]]
        if len(pred.regions) != len(want):
            problems.append(f"{exp['file_name']}: {len(pred.regions)} regions, {len(want)} exported")
            continue
        for k, (got, w) in enumerate(zip(pred.regions, want, strict=True)):
            cats = [] if w["category"] == "formula" else [w["category"]]
            if got["latex"] != w["latex"] or got["categories"] != cats:
                problems.append(f"{exp['file_name']}[{k}]: {got['latex']!r} {got['categories']}")
            elif w["mask_rle"] is not None:
                if got["kind"] != "mask" or not np.array_equal(_decode(got["mask"]), _decode(w["mask_rle"])):
                    problems.append(f"{exp['file_name']}[{k}]: the mask differs")
            elif got["kind"] != "quad" or not np.allclose(got["points"], _clip_quad(w["points"], exp["width"],
                                                                                    exp["height"]), atol=1e-6):
                problems.append(f"{exp['file_name']}[{k}]: {got.get('points')} != {w['points']}")
            regions += 1
    rep.check(f"{what}: every region comes back as accepted (quads to 1e-6 px, masks pixel for pixel, LaTeX, "
              "category)", not problems and regions == sum(len(im["regions"]) for im in expected["images"]),
              "; ".join(problems[:3]) or f"{regions} regions")


def run_checks(work: Path, which: str) -> list[dict]:
    expected = json.loads((work / "expected.json").read_text())
    checks = {"coco": check_coco, "yolo": check_yolo, "label-studio-sdk": check_label_studio_sdk,
              "label-studio-server": check_label_studio_server}
    rows = []
    for name in which.split(","):
        try:
            rep = checks[name](work, expected)
            rows.extend(rep.rows)
        except Exception as exc:  # noqa: BLE001 - a tool that cannot run is a row, not a crash
            import traceback

            rows.append({"tool": name, "version": "?", "check": "the tool runs", "ok": False,
                         "detail": f"{type(exc).__name__}: {exc} :: {traceback.format_exc(limit=3)[-600:]}"})
    return rows


# =============================================================== driver

def _python_of(venv: str) -> str:
    p = Path(venv)
    return str(p / "bin" / "python") if p.is_dir() else str(p)


def _run_in(python: str, work: Path, which: str, timeout: float) -> list[dict]:
    out = work / f"rows-{which.replace(',', '-')}.json"
    cmd = [python, str(Path(__file__).resolve()), "--check", str(work), "--which", which, "--rows", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        return [{"tool": which, "version": "?", "check": f"run with {python}", "ok": False,
                 "detail": (proc.stderr or proc.stdout)[-800:]}]
    return json.loads(out.read_text())


def _table(rows: list[dict]) -> str:
    lines = []
    tool_w = max(len(f"{r['tool']} {r['version']}") for r in rows)
    check_w = min(max(len(r["check"]) for r in rows), 100)
    for r in rows:
        lines.append(f"{'PASS' if r['ok'] else 'FAIL'}  {(r['tool'] + ' ' + r['version']).ljust(tool_w)}  "
                     f"{r['check'][:100].ljust(check_w)}  {r['detail'][:240]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scratch_venv", nargs="?", help="the scratch virtualenv (or its python) with ultralytics, "
                    "pycocotools and label-studio-sdk")
    ap.add_argument("--label-studio-venv", help="a virtualenv with label-studio, to check the server's import too")
    ap.add_argument("--ls-port", type=int, default=18089, help="loopback port for the Label Studio server")
    ap.add_argument("--workdir", help="keep the database, exports and unpacked files here (default: a temp dir, "
                    "removed afterwards)")
    ap.add_argument("--check", help=argparse.SUPPRESS)
    ap.add_argument("--which", help=argparse.SUPPRESS)
    ap.add_argument("--rows", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.check:  # inside a scratch venv: no Django, no project imports
        rows = run_checks(Path(args.check), args.which) if args.which != "label-studio-server" else \
            check_label_studio_server(Path(args.check), json.loads((Path(args.check) / "expected.json").read_text()),
                                      port=args.ls_port).rows
        Path(args.rows).write_text(json.dumps(rows))
        return 0
    if not args.scratch_venv:
        ap.error("give the scratch virtualenv (see the top of this file for how to make it)")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mathset-compat-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        expected = build_exports(work)
        print(f"built {len(expected['images'])} images, {expected['counts']['coco']['regions']} regions, "
              f"categories {expected['categories']} in {time.perf_counter() - started:.0f} s; exports in "
              f"{work / 'exports'}", flush=True)
        scratch = _python_of(args.scratch_venv)
        rows = _run_in(scratch, work, "coco,yolo,label-studio-sdk", timeout=900)
        if args.label_studio_venv:
            ls_python = _python_of(args.label_studio_venv)
            cmd_rows = work / "rows-ls-server.json"
            env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")}
            proc = subprocess.run([ls_python, str(Path(__file__).resolve()), "--check", str(work), "--which",
                                   "label-studio-server", "--rows", str(cmd_rows), "--ls-port", str(args.ls_port)],
                                  env=env, capture_output=True, text=True, timeout=900)
            rows += json.loads(cmd_rows.read_text()) if proc.returncode == 0 and cmd_rows.exists() else [
                {"tool": "label-studio (server)", "version": "?", "check": f"run with {ls_python}", "ok": False,
                 "detail": (proc.stderr or proc.stdout)[-800:]}]
            if (work / LS_SERVER_EXPORT).exists():
                try:
                    rows += check_mathset_reimport(work, expected).rows
                except Exception as exc:  # noqa: BLE001 - a row, not a crash
                    rows.append({"tool": "mathset import_labelstudio", "version": "this tree", "check": "runs",
                                 "ok": False, "detail": f"{type(exc).__name__}: {exc}"})
        else:
            rows.append({"tool": "label-studio (server)", "version": "-", "check": "skipped: no --label-studio-venv",
                         "ok": True, "detail": ""})
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(_table(rows))
    failed = [r for r in rows if not r["ok"]]
    tools = sorted({r["tool"] for r in rows})
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed ({', '.join(tools)})")
    if any(r["check"].startswith("run with") or r["check"] == "the tool runs" for r in failed):
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
