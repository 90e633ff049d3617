"""Our CVAT for images 1.1 XML export read by datumaro (CVAT's own dataset library, which CVAT's
import and export run on), and datumaro's CVAT XML read back by ``manage.py import_cvat``.

datumaro stays out of the project's .venv and requirements: it lives in a SCRATCH virtualenv. What
worked here (Python 3.11, CPU only; about a minute)::

    python3.11 -m venv /tmp/dm-venv
    /tmp/dm-venv/bin/pip install datumaro==1.10.0

Run from the repository root with the project's venv::

    .venv/bin/python bench/compat_cvat.py /tmp/dm-venv

It migrates a fresh SQLite database in a temporary folder, builds the spec of
``bench/compat_real_tools.py`` (axis-aligned, rotated, upside-down and perspective quads, quads on
the border, masks of one and of two parts, a region without a category, LaTeX with non-ASCII text;
PNG, grayscale and RGBA PNG, GIF, JPEG and a sideways phone JPEG), with the illegible and cut-off flags
set on some regions, accepted through the real services; freezes a snapshot and exports it as
``cvat``. Then:

* datumaro (scratch venv): ``Dataset.import_from(unpacked, "cvat")`` loads it; every image is an
  item of its size whose file loads (but the GIF: datumaro reads pixels with OpenCV, which decodes no
  GIF); the labels are our categories, in order; every quad is a
  ``Polygon`` with our points (as datumaro keeps them: it rounds coordinates to 2 decimals on
  reading; the XML holds every digit), every mask a ``Mask`` equal to ours pixel for pixel, a
  region with both sharing one group; each shape's ``latex`` is ours and ``illegible``/``cut_off``
  are booleans equal to our flags. datumaro then writes the dataset back as CVAT XML
  (``Dataset.export(..., "cvat", save_media=True)``).
* Back into Mathset (project venv): datumaro's XML and images go through
  ``curation.services.cvat_import`` (``manage.py import_cvat``) into a fresh spec as predictions;
  every region comes back (datumaro writes coordinates with 2 decimals: quads within 0.0051 px;
  masks, which datumaro writes over the whole image, pixel for pixel), with its LaTeX, category and
  flags. Our own export goes the same way, exactly.

A table of pass/fail is printed; the exit status is 1 when any check fails (2 when datumaro could not
be run at all).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:           # run as a script, in either venv: bench.* must import
    sys.path.insert(0, str(ROOT))

from bench.compat_real_tools import (  # noqa: E402  (stdlib-only module: safe in the scratch venv)
    Report,
    _python_of,
    _setup_django,
    _table,
    _version,
    accepted_snapshot,
)

DM_EXPORT = "dm-export"        # datumaro's CVAT XML of our export, read back by check_mathset_reimport
# datumaro keeps a shape's coordinates rounded to 2 decimals, in float32
# (datumaro.components.annotation.COORDINATE_ROUNDING_DIGITS), and writes them with "{:.2f}".
QUAD_TOLERANCE_DM = 0.0051


# =============================================================== build (project venv)

def build_export(work: Path) -> dict:
    """The spec of compat_real_tools, with flags, accepted, frozen and exported as cvat; returns (and
    writes as expected.json) what the exporter was given."""
    _setup_django(work)

    from curation import snapshots
    from curation.exporters import CategoryInfo, export

    def flags(seed: int, k: int, region: dict) -> None:  # flags on some regions, both on one
        region["illegible"] = (seed + k) % 3 == 0
        region["cut_off"] = (seed + k) % 4 == 0

    snap, scenes = accepted_snapshot("compat-cvat", adjust=flags)
    out = work / "exports"
    out.mkdir(exist_ok=True)
    result = snapshots.export_build(snapshot=snap, format="cvat", dest=str(out / "cvat.zip"))
    with zipfile.ZipFile(out / "cvat.zip") as zf:
        meta = ET.fromstring(zf.read("annotations.xml")).findall("meta/task/labels/label")
    labels = [el.findtext("name") for el in meta]
    # The same records with every mask given its quad too (a region holding both, which the export
    # writes as a polygon and a mask sharing a group_id; stored regions are one or the other).
    categories = [CategoryInfo(slug=c) for c in labels]
    pairs = export((_with_quads(rec) for rec in snapshots.snapshot_export_images(snap)), str(out / "cvat-pairs.zip"),
                   format="cvat", intended_use=snapshots.snapshot_intended_use(snap), categories=categories)
    expected = {"categories": labels, "exports": {}}
    for name, records, counts in (("cvat", snapshots.snapshot_export_images(snap), result),
                                  ("cvat-pairs", map(_with_quads, snapshots.snapshot_export_images(snap)), pairs)):
        expected["exports"][name] = {"images": [_expected(rec, scenes) for rec in records],
                                     "counts": {"images": counts.images, "regions": counts.regions}}
    (work / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False))
    return expected


def _with_quads(rec):
    from curation.exporters.records import mask_quad

    for region in rec.regions:
        if region.points is None and region.mask_rle is not None:
            region.points = mask_quad(region.mask_rle)
    return rec


def _expected(rec, scenes: dict) -> dict:
    return {"image_id": rec.image_id, "file_name": rec.file_name, "width": rec.width, "height": rec.height,
            "scene": scenes[rec.image_id][0],
            "regions": [{"points": None if r.points is None else r.points.tolist(),
                         "mask_rle": None if r.mask_rle is None else {"size": list(r.mask_rle["size"]),
                                                                      "counts": r.mask_rle["counts"]},
                         "latex": r.latex, "category": r.category_slug,
                         "illegible": "illegible" in r.flags, "cut_off": "partial" in r.flags}
                        for r in rec.regions]}


# =============================================================== checks (scratch venv)

def _decode(rle: dict):
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def check_datumaro(work: Path, expected: dict) -> Report:
    rep = Report("datumaro", _version("datumaro"))
    for name, want in expected["exports"].items():
        _check_export(rep, work, name, want, expected["categories"])
    return rep


def _check_export(rep: Report, work: Path, name: str, want: dict, categories: list[str]) -> None:
    import numpy as np
    from datumaro.components.annotation import AnnotationType
    from datumaro.components.dataset import Dataset

    unpacked = work / "unpacked" / name
    if unpacked.exists():
        shutil.rmtree(unpacked)
    with zipfile.ZipFile(work / "exports" / f"{name}.zip") as zf:
        zf.extractall(unpacked)
    ds = Dataset.import_from(str(unpacked), "cvat")
    rep.check(f"{name}: Dataset.import_from(..., 'cvat') detects and loads the export", True,
              f"{len(ds)} items, subsets {sorted(ds.subsets())}")
    labels = [c.name for c in ds.categories()[AnnotationType.label].items]
    rep.check(f"{name}: labels are our categories, in order", labels == categories, f"{labels}")
    images = want["images"]
    items = {item.id: item for item in ds}
    rep.check(f"{name}: one item per exported image", len(items) == len(images) == want["counts"]["images"],
              f"{len(items)} items, {len(images)} exported")
    sizes = shapes = polygons = masks = attrs = groups = loads = 0
    problems: list[str] = []
    gifs: list[str] = []
    for frame, im in enumerate(images):
        item = items.get(Path(im["file_name"]).stem)
        if item is None:
            problems.append(f"{im['file_name']}: no item")
            continue
        if item.media.size == (im["height"], im["width"]) and item.attributes.get("frame") == frame:
            sizes += 1
        else:
            problems.append(f"{im['file_name']}: size {item.media.size}, frame {item.attributes.get('frame')}")
        if im["file_name"].lower().endswith(".gif"):
            gifs.append(im["file_name"])       # OpenCV, datumaro's image reader, decodes no GIF
        else:
            try:
                data = item.media.data
            except Exception as exc:  # noqa: BLE001 - a file it cannot read is a finding, not a crash
                data = None
                problems.append(f"{im['file_name']}: cannot load: {type(exc).__name__}: {exc}")
            if data is not None and tuple(data.shape[:2]) == (im["height"], im["width"]):
                loads += 1
        anns = list(item.annotations)
        want_shapes = sum((r["points"] is not None) + (r["mask_rle"] is not None) for r in im["regions"])
        if len(anns) != want_shapes:
            problems.append(f"{im['file_name']}: {len(anns)} shapes, {want_shapes} expected")
            continue
        k = 0
        for r in im["regions"]:
            mine = []
            if r["points"] is not None:
                ann = anns[k]
                k += 1
                mine.append(ann)
                pts = np.asarray(ann.points, dtype=np.float64).reshape(-1, 2)
                if ann.type == AnnotationType.polygon and np.abs(pts - r["points"]).max() <= QUAD_TOLERANCE_DM:
                    polygons += 1
                else:
                    problems.append(f"{im['file_name']}: polygon {pts.tolist()} != {r['points']}")
            if r["mask_rle"] is not None:
                ann = anns[k]
                k += 1
                mine.append(ann)
                if ann.type == AnnotationType.mask and np.array_equal(ann.image.astype(bool), _decode(r["mask_rle"])):
                    masks += 1
                else:
                    problems.append(f"{im['file_name']}: a mask differs from ours")
            for ann in mine:
                shapes += 1
                got = (labels[ann.label], ann.attributes.get("latex"), ann.attributes.get("illegible"),
                       ann.attributes.get("cut_off"))
                expect = (r["category"], r["latex"], r["illegible"], r["cut_off"])
                # datumaro reads a text attribute as it is, a checkbox's "true"/"false" as a bool.
                if got == expect and isinstance(got[2], bool) and isinstance(got[3], bool):
                    attrs += 1
                else:
                    problems.append(f"{im['file_name']}: {got} != {expect}")
            if len(mine) == 2 and mine[0].group and mine[0].group == mine[1].group:
                groups += 1
            elif len(mine) == 2:
                problems.append(f"{im['file_name']}: a quad and its mask are not one group")
    regions = [r for im in images for r in im["regions"]]
    n_polygons = sum(r["points"] is not None for r in regions)
    n_masks = sum(r["mask_rle"] is not None for r in regions)
    n_pairs = sum(r["points"] is not None and r["mask_rle"] is not None for r in regions)
    rep.check(f"{name}: every item has its image's size and frame number", sizes == len(images),
              f"{sizes} of {len(images)}")
    rep.check(f"{name}: every image file loads at its size (but GIF: datumaro reads images with OpenCV, which has "
              "no GIF decoder)", loads == len(images) - len(gifs),
              f"{loads} of {len(images) - len(gifs)}; not tried: {', '.join(gifs) or 'none'}")
    rep.check(f"{name}: every quad is a Polygon with our points (as datumaro keeps them: 2 decimals)",
              polygons == n_polygons, f"{polygons} of {n_polygons}")
    rep.check(f"{name}: every mask is a Mask equal to ours, pixel for pixel", masks == n_masks,
              f"{masks} of {n_masks}")
    rep.check(f"{name}: label, latex and the illegible / cut_off booleans of every shape are ours",
              attrs == shapes == n_polygons + n_masks, f"{attrs} of {n_polygons + n_masks}")
    rep.check(f"{name}: a region with a quad and a mask is one group (polygon and mask)", groups == n_pairs,
              f"{groups} of {n_pairs}")
    rep.check(f"{name}: nothing else differs", not problems, "; ".join(problems[:4]))
    # datumaro's own CVAT XML of the same data, for Mathset to read back.
    dest = work / f"{DM_EXPORT}-{name}"
    if dest.exists():
        shutil.rmtree(dest)
    ds.export(str(dest), "cvat", save_media=True)
    xml = sorted(dest.glob("*.xml"))
    rep.check(f"{name}: Dataset.export(..., 'cvat', save_media=True) writes CVAT XML and the images",
              len(xml) == 1 and len(list((dest / "images").iterdir())) == len(images), f"{[p.name for p in xml]}")


# =============================================================== back into Mathset (project venv)

def check_mathset_reimport(work: Path, expected: dict) -> Report:
    """datumaro's CVAT XML of each export, and our own exports, through ``curation.services.cvat_import``."""
    rep = Report("mathset import_cvat", "this tree")
    for name, want in expected["exports"].items():
        dm_xml = sorted((work / f"{DM_EXPORT}-{name}").glob("*.xml"))
        if dm_xml:
            _reimport(rep, f"datumaro's CVAT XML of {name}", dm_xml[0], work / f"{DM_EXPORT}-{name}" / "images",
                      QUAD_TOLERANCE_DM, want)
        else:
            rep.check(f"datumaro's CVAT XML of {name}: written", False, "datumaro wrote none")
        _reimport(rep, f"our {name} export", work / "unpacked" / name / "annotations.xml",
                  work / "unpacked" / name / "images", 0.0, want)
    return rep


def _reimport(rep: Report, what: str, xml: Path, images: Path, tolerance: float, expected: dict) -> None:
    import numpy as np

    from common import rle
    from curation import services
    from labeling.models import Prediction
    from tests import factories

    spec = factories.make_spec(intended_use="research", answer_formats=["quad", "mask", "latex"])
    source = factories.make_source("cc-by-4.0")
    report = services.cvat_import(spec=spec, source=source, annotations=xml, images_dir=images,
                                  model_version="compat", category_map={"formula": ""})
    n_regions = sum(len(im["regions"]) for im in expected["images"])
    rep.check(f"{what}: imported, all or nothing", len(report.created) == len(expected["images"]),
              f"{len(report.created)} images, {report.predictions} predictions, kinds {report.region_kinds()}")
    by_file = {Path(p.image.meta["cvat"]["name"]).stem: p.regions for p in Prediction.objects.filter(image__spec=spec)}
    same = 0
    problems = []
    for im in expected["images"]:
        got = by_file.get(Path(im["file_name"]).stem, [])
        if len(got) != len(im["regions"]):
            problems.append(f"{im['file_name']}: {len(got)} regions, {len(im['regions'])} expected")
            continue
        for g, r in zip(got, im["regions"], strict=True):
            category = [] if r["category"] == "formula" else [r["category"]]
            ok = (g["latex"], g["categories"], g["illegible"], g["cut_off"]) == (
                r["latex"], category, r["illegible"], r["cut_off"])
            if r["mask_rle"] is not None:       # a mask, or a quad and a mask: one mask region
                ok = ok and g["kind"] == "mask" and np.array_equal(rle.decode(g["mask"]), rle.decode(r["mask_rle"]))
            else:
                ok = ok and g["kind"] == "quad" and np.abs(np.asarray(g["points"]) - np.asarray(r["points"])).max() \
                    <= tolerance
            same += ok
            if not ok:
                problems.append(f"{im['file_name']}: {g.get('kind')} {g.get('latex')!r} differs")
    shown = "exactly" if tolerance == 0 else f"within {tolerance:g} px"
    rep.check(f"{what}: every region as accepted (quads {shown}, masks pixel for pixel, LaTeX, category, flags)",
              same == n_regions and not problems, f"{same} of {n_regions}" + (f"; {problems[:3]}" if problems else ""))


# =============================================================== driver

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scratch_venv", nargs="?", help="the scratch virtualenv (or its python) with datumaro")
    ap.add_argument("--workdir", help="keep the database, exports and unpacked files here (default: a temp dir, "
                    "removed afterwards)")
    ap.add_argument("--check", help=argparse.SUPPRESS)
    ap.add_argument("--rows", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.check:  # inside the scratch venv: no Django, no project imports
        work = Path(args.check)
        try:
            rows = check_datumaro(work, json.loads((work / "expected.json").read_text())).rows
        except Exception as exc:  # noqa: BLE001 - a tool that cannot run is a row, not a crash
            import traceback

            rows = [{"tool": "datumaro", "version": _version("datumaro"), "check": "the tool runs", "ok": False,
                     "detail": f"{type(exc).__name__}: {exc} :: {traceback.format_exc(limit=3)[-600:]}"}]
        Path(args.rows).write_text(json.dumps(rows))
        return 0
    if not args.scratch_venv:
        ap.error("give the scratch virtualenv (see the top of this file for how to make it)")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mathset-compat-cvat-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        expected = build_export(work)
        counts = expected["exports"]["cvat"]["counts"]
        print(f"built {counts['images']} images, {counts['regions']} regions, categories "
              f"{expected['categories']} in {time.perf_counter() - started:.0f} s", flush=True)
        python = _python_of(args.scratch_venv)
        out = work / "rows-datumaro.json"
        env = {k: v for k, v in os.environ.items()
               if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV")}
        proc = subprocess.run([python, str(Path(__file__).resolve()), "--check", str(work), "--rows", str(out)],
                              env=env, capture_output=True, text=True, timeout=900)
        rows = json.loads(out.read_text()) if proc.returncode == 0 and out.exists() else [
            {"tool": "datumaro", "version": "?", "check": f"run with {python}", "ok": False,
             "detail": (proc.stderr or proc.stdout)[-800:]}]
        try:
            rows += check_mathset_reimport(work, expected).rows
        except Exception as exc:  # noqa: BLE001 - a row, not a crash
            rows.append({"tool": "mathset import_cvat", "version": "this tree", "check": "runs", "ok": False,
                         "detail": f"{type(exc).__name__}: {exc}"})
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(_table(rows))
    failed = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed ({', '.join(sorted({r['tool'] for r in rows}))})")
    if any(r["check"].startswith("run with") or r["check"] == "the tool runs" for r in failed):
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
