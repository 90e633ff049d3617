"""Reading a Label Studio JSON export: which file each task shows, and its regions in our format.

Pure functions (no database, no storage): the write is ``curation.services.labelstudio_import``,
the command ``manage.py import_labelstudio``. The module lives beside ``curation/importers.py``
(a module, not a package, so not ``curation/importers/labelstudio.py``).

**The tasks.** Label Studio's JSON export is a list of tasks ``{"id", "data": {...},
"annotations": [...], "predictions": [...]}``. The image is the ``data`` value the labeling
config's ``<Image value="$key">`` names (``--config label_config.xml``; with several ``<Image>``
tags, the one the results' ``to_name`` refers to), else the one ``data`` value that looks like an
image (a URL or path ending in an image suffix, or a Label Studio upload/local-files URL).

**The file.** Found in the images folder (searched recursively) by the base name of that URL:
``/data/local-files/?d=dir/x.png`` → ``x.png``, ``https://host/p/x.png?sig=..`` → ``x.png``,
``s3://bucket/p/x.png`` → ``x.png``. Label Studio renames an uploaded file ``<8 hex>-<name>``
(``/data/upload/1/0a1b2c3d-x.png``): for an upload URL both ``0a1b2c3d-x.png`` and ``x.png`` are
looked for. No file, or more than one (two folders holding ``x.png``, or both names present), is
an error for that task.

**The results used.** ``results="auto"``: the task's latest annotation that was not cancelled
(``was_cancelled``), latest by ``updated_at`` then ``created_at`` then ``id``; a task without one
uses its latest prediction (``created_at``, ``id``). ``"annotations"`` / ``"predictions"`` use only
that kind. A task with nothing to use imports its image without regions (an annotation or prediction
with an empty result: an empty prediction, "no formula here"). Label Studio's own JSON export lists
predictions by id only: they are looked up in the project's predictions (``GET
/api/predictions/?project=ID`` saved as a file, ``--predictions``), each checked to belong to its
task; without that file such a task is an error when its predictions would be used.

**Results → regions** (pixels of the image as Label Studio showed it: the orientation-corrected
image, as we store it; the results' ``original_width``/``original_height`` must be its size):

* ``polygonlabels`` / ``polygon``: ``points`` in percent of the image size. 4 points → a quad
  (kept in their order, the first as the formula's top-left; made clockwise). Our region is a quad
  *or* a mask, never both, and a quad has exactly 4 points, so a polygon of 3 or of 5 and more
  points becomes a **mask**: the pixels whose centre lies inside the polygon
  (:func:`polygon_mask`); its minimum-area rectangle is not stored (it would be a second region).
* ``rectanglelabels`` / ``rectangle``: ``x, y`` (top-left corner), ``width, height`` in percent,
  ``rotation`` in degrees, clockwise on screen about the top-left corner, applied in pixels (as
  ``label_studio_sdk.converter.utils.convert_annotation_to_yolo_obb`` does) → the quad top-left,
  top-right, bottom-right, bottom-left of the rectangle as drawn.
* ``brushlabels`` / ``brush`` with ``format: "rle"``: Label Studio's RLE of the RGBA pixels
  (:func:`curation.exporters.lsbrush.decode`) → a mask of the pixels whose alpha is not 0.
* ``textarea`` with the same ``id`` as a shape: that region's LaTeX (``text[0]``).
* ``score`` (0 to 1) on a shape or its text area: the region's confidence, the lowest of them; a
  prediction's own ``score`` is the image's confidence, else the lowest of its regions'. A score
  outside 0 to 1 is an error naming it.
* Anything else (``keypointlabels``, ``ellipselabels``, ``choices``, a text area belonging to no
  shape, ...) is an error naming the result, or is left out (and counted) with
  ``skip_unknown``.

The label (``polygonlabels[0]`` etc.; every label of the list) becomes a category slug by
``category_map`` (``label -> slug``; an empty slug: no category) or, unmapped, the slug equal to
the label; any other label is an error naming it.

**Our own export's pairs.** ``curation/exporters/labelstudio.py`` writes a formula that has a mask
as a polygon ``<k>`` (its quad, or the outline of the mask's largest part) *and* a brush
``<k>-mask``. The rule: a brush result whose id is ``<k>-mask`` where ``<k>`` is the id of a polygon
or rectangle of the same result list is the same formula; the two make one region, a mask (the
brush: every part of the formula, pixel for pixel), in the polygon's place in the order; the
polygon's shape is dropped. Their LaTeX and labels must agree (an error otherwise: one of them was
edited in Label Studio and we cannot tell which one is right).
"""
from __future__ import annotations

import math
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from common import rle as rle_module

from .exporters import lsbrush
from .imaging import IMAGE_SUFFIXES

BRUSH_ID_SUFFIX = "-mask"           # curation/exporters/labelstudio.py's pairing
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")
LOCAL_FILES = "/data/local-files/"
UPLOAD = "/data/upload/"
RESULT_CHOICES = ("auto", "annotations", "predictions")

POLYGON_TYPES = {"polygonlabels", "polygon"}
RECTANGLE_TYPES = {"rectanglelabels", "rectangle"}
BRUSH_TYPES = {"brushlabels", "brush"}
SHAPE_TYPES = POLYGON_TYPES | RECTANGLE_TYPES | BRUSH_TYPES
TEXT_TYPE = "textarea"


class LabelStudioError(ValueError):
    """Unusable input; ``field`` says where (``tasks[3].annotations[0].result[2].value.points``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- Label Studio's brush RLE ---------------------------------------------------------------

def decode_brush_rle(rle: object, *, expect: int, field: str = "rle") -> np.ndarray:
    """The ``expect`` values of a Label Studio brush RLE (:func:`curation.exporters.lsbrush.decode`),
    a malformed one an error naming `field`."""
    try:
        return lsbrush.decode(rle, expect=expect)
    except ValueError as exc:
        raise LabelStudioError(field, str(exc)) from None


def brush_mask(rle: object, *, width: int, height: int, field: str = "rle") -> np.ndarray:
    """The mask (bool, height x width) of a brush: where the alpha channel is not 0, as the editor
    shows it (``RLE2Region``)."""
    values = decode_brush_rle(rle, expect=width * height * 4, field=field)
    return values.reshape(height, width, 4)[:, :, 3] != 0


# --- the labeling config, the image of a task and its file ---------------------------------

def config_image_keys(xml_text: str) -> dict[str, str]:
    """``{Image tag name: data key}`` of a labeling config (``<Image name="img" value="$photo"/>``)."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise LabelStudioError("config", f"not a labeling config: {exc}.") from None
    keys = {}
    for el in root.iter():
        value = el.get("value") or ""
        if el.tag.lower() == "image" and value.startswith("$"):
            keys[el.get("name") or ""] = value[1:]
    if not keys:
        raise LabelStudioError("config", 'no <Image value="$..."> in the labeling config.')
    return keys


def _url_names(url: str) -> tuple[str, ...]:
    """The file names a task's image URL may have in the images folder (an upload: with and
    without Label Studio's ``<8 hex>-`` prefix)."""
    parsed = urlparse(url)
    path = parsed.path
    if path.startswith(LOCAL_FILES) or "/data/local-files" in path:
        d = parse_qs(parsed.query).get("d")
        path = d[0] if d else path
    else:
        path = unquote(path)
    name = unicodedata.normalize("NFC", os.path.basename(path.replace("\\", "/")))
    if not name:
        return ()
    if UPLOAD in parsed.path:
        m = UPLOAD_PREFIX.match(name)
        if m:
            return (name, m.group(1))
    return (name,)


def _looks_like_image(value: object) -> bool:
    if not isinstance(value, str) or not value or len(value) > 4096:
        return False
    if value.startswith(("data:image/", LOCAL_FILES, UPLOAD)):
        return True
    names = _url_names(value)
    return bool(names) and os.path.splitext(names[0])[1].lower() in IMAGE_SUFFIXES


def task_image_url(task: Mapping, *, where: str, config_keys: Mapping[str, str] | None,
                   results: Sequence[Mapping] = ()) -> tuple[str, str]:
    """``(data key, URL)`` of the task's image."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise LabelStudioError(f"{where}.data", "must be an object holding the image URL.")
    if config_keys:
        # Only string names: a list here was a TypeError (unhashable; audit); other values name no tag.
        wanted = {r.get("to_name") for r in results
                  if isinstance(r, Mapping) and isinstance(r.get("to_name"), str)} & set(config_keys)
        names = sorted(wanted) if wanted else sorted(config_keys)
        keys = sorted({config_keys[n] for n in names})
        if len(keys) != 1:
            raise LabelStudioError(f"{where}.data", f"the config shows several images ({', '.join(keys)}); "
                                                    "this importer takes one image per task.")
        key = keys[0]
        if not isinstance(data.get(key), str) or not data[key]:
            raise LabelStudioError(f"{where}.data.{key}", "missing: the labeling config takes the image from it.")
        return key, data[key]
    keys = sorted(k for k, v in data.items() if _looks_like_image(v))
    if not keys:
        raise LabelStudioError(f"{where}.data", "no value looks like an image URL; give the labeling config "
                                                "(--config) to name it.")
    if len(keys) > 1:
        raise LabelStudioError(f"{where}.data", f"several values look like images ({', '.join(keys)}); give the "
                                                "labeling config (--config) to say which one is labelled.")
    return keys[0], data[keys[0]]


class ImageIndex(dict[str, list[Path]]):
    """The files of an images folder by (NFC) base name, as `index_images` finds them once per import.

    A name not found is answered with its near misses (the names differing only in case), from the
    names by case fold, built on the first miss and kept: not a pass over every name of the folder
    for every missing file (10,000 missing of 10,000 files: 10^8 comparisons).
    """

    _folded: dict[str, list[str]] | None = None

    def near(self, names: Iterable[str], most: int = 3) -> list[str]:
        """The first `most` names of the folder (sorted) equal to one of `names` but for case."""
        if self._folded is None:
            self._folded = {}
            for name in self:
                self._folded.setdefault(name.casefold(), []).append(name)
        return sorted({n for name in names for n in self._folded.get(name.casefold(), ())})[:most]


def index_images(folder: Path) -> ImageIndex:
    """Every file under `folder` by its (NFC) base name."""
    index = ImageIndex()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            index.setdefault(unicodedata.normalize("NFC", path.name), []).append(path)
    return index


def near_names(index: Mapping[str, list[Path]], names: Iterable[str]) -> list[str]:
    """The names of `index` that differ from one of `names` only in case (at most 3): a missing
    file's near miss. An `ImageIndex` folds its names once; any other mapping is folded here."""
    return (index if isinstance(index, ImageIndex) else ImageIndex(index)).near(names)


def find_image_file(url: str, index: Mapping[str, list[Path]], *, field: str) -> Path:
    """The one file of `index` the URL names."""
    if url.startswith("data:"):
        raise LabelStudioError(field, "an image inlined as a data: URL is not supported; export the files.")
    names = _url_names(url)
    if not names:
        raise LabelStudioError(field, f"{url!r} names no file.")
    found = [p for name in names for p in index.get(name, [])]
    shown = " or ".join(names)
    if not found:
        # Label Studio keeps the case it was given; a folder copied through Windows or a zip tool may
        # not. Matched exactly (two files may differ only in case), but the near miss is named.
        near = near_names(index, names)
        hint = f"; the folder has {', '.join(near)} (names must match in case)" if near else ""
        raise LabelStudioError(field, f"no file named {shown} in the images folder (from {url!r}){hint}.")
    if len(found) > 1:
        # backslashreplace: a name that is not UTF-8 (surrogate escapes) cannot be printed (audit)
        paths = ", ".join(str(p).encode("utf-8", "backslashreplace").decode("utf-8") for p in found[:5])
        raise LabelStudioError(field, f"ambiguous: {len(found)} files match {shown} ({paths}).")
    return found[0]


# --- which results ------------------------------------------------------------------------

def _latest_key(item: Mapping) -> tuple:
    return (str(item.get("updated_at") or item.get("created_at") or ""), str(item.get("created_at") or ""),
            item.get("id") if isinstance(item.get("id"), int) else -1)


def predictions_by_id(predictions: object, *, field: str = "predictions") -> dict[int, dict]:
    """Label Studio's predictions API answer (``GET /api/predictions/?project=ID``: a list of
    prediction objects, or a page ``{"results": [...]}``) by prediction id, for the tasks of a JSON
    export that list their predictions by id only."""
    if isinstance(predictions, dict) and isinstance(predictions.get("results"), list):
        predictions = predictions["results"]
    if not isinstance(predictions, list):
        raise LabelStudioError(field, "must be a list of Label Studio predictions (GET /api/predictions/?project=ID).")
    out: dict[int, dict] = {}
    for i, p in enumerate(predictions):
        pid = p.get("id") if isinstance(p, dict) else None
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise LabelStudioError(f"{field}[{i}]", 'must be a prediction object with its numeric "id".')
        if pid in out:
            raise LabelStudioError(f"{field}[{i}].id", f"prediction {pid} is listed twice.")
        out[pid] = p
    return out


def _resolve_ids(items: list, task: Mapping, *, where: str, by_id: Mapping[int, dict]) -> list:
    """A task's ``predictions`` with each bare id replaced by the prediction it names."""
    out = []
    for j, item in enumerate(items):
        if isinstance(item, int) and not isinstance(item, bool):
            found = by_id.get(item)
            if found is None:
                raise LabelStudioError(f"{where}.predictions[{j}]", f"prediction {item} is not in the predictions "
                                                                   "file.")
            owner = found.get("task")
            # A file fetched for another project names other tasks: their ids would match by chance.
            if owner is not None and task.get("id") is not None and owner != task.get("id"):
                raise LabelStudioError(f"{where}.predictions[{j}]", f"prediction {item} belongs to task {owner!r}, "
                                                                   f"not this task ({task.get('id')!r}).")
            item = found
        out.append(item)
    return out


def choose_results(task: Mapping, *, where: str, results: str = "auto",
                   predictions: Mapping[int, dict] | None = None) -> tuple[str, str, dict] | None:
    """``(field, description, item)`` of the annotation or prediction to import (its ``result``
    checked to be a list), or None when the task has none. `predictions` (:func:`predictions_by_id`)
    fills in predictions the task lists by id only."""
    if results not in RESULT_CHOICES:
        raise ValueError(results)
    kinds = ("annotations", "predictions") if results == "auto" else (results,)
    for kind in kinds:
        items = task.get(kind) or []
        if not isinstance(items, list):
            raise LabelStudioError(f"{where}.{kind}", "must be a list.")
        if kind == "predictions" and predictions is not None:
            items = _resolve_ids(items, task, where=where, by_id=predictions)
        usable = [(i, a) for i, a in enumerate(items)
                  if isinstance(a, dict) and not a.get("was_cancelled")]
        if not usable:
            if kind == "predictions" and any(isinstance(a, int) and not isinstance(a, bool) for a in items):
                # Label Studio's JSON export lists a task's predictions by id only.
                raise LabelStudioError(f"{where}.{kind}", "predictions given by id only (as Label Studio's JSON "
                                                          "export lists them): give the project's predictions "
                                                          "(GET /api/predictions/?project=ID saved as a file) with "
                                                          "--predictions, or import only the annotations "
                                                          "(--results annotations).")
            continue
        i, chosen = max(usable, key=lambda ia: _latest_key(ia[1]))
        field = f"{where}.{kind}[{i}]"
        result = chosen.get("result")
        if not isinstance(result, list):
            raise LabelStudioError(f"{field}.result", "must be a list.")
        label = kind[:-1] + (f" {chosen['id']}" if "id" in chosen else f" [{i}]")
        return field, label, chosen
    return None


# --- results -> regions -------------------------------------------------------------------

@dataclass
class TaskRegions:
    """What one task's results became: regions in the annotation format (``kind``, ``points`` or
    ``mask``, ``latex``, ``categories``), the result each came from, and counts per kind."""

    regions: list[dict] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    axis_aligned: list[bool] = field(default_factory=list)


def _number(value: object, field: str, *, low: float = 0.0, high: float = 100.0) -> float:
    # NaN/Infinity (Python's json reads them) are not numbers; an int is compared before float():
    # JSON allows any number of digits and float(10**400) raises OverflowError (audit).
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or (isinstance(value, float) and not math.isfinite(value))):
        raise LabelStudioError(field, "must be a number.")
    if not low <= value <= high:
        shown = f"{value}" if isinstance(value, float) or abs(value) < 10**15 else f"a {len(str(abs(value)))}-digit number"
        raise LabelStudioError(field, f"{shown} is out of range ({low:g} to {high:g} percent).")
    return float(value)


def score_of(item: Mapping, field: str) -> float | None:
    """A result's or prediction's ``score`` as a confidence from 0 to 1 (None when absent or null).
    Anything else is refused rather than dropped: a score of 95 meant as percent, left out without a
    word, would leave the "lowest confidence first" queue ordered by nothing."""
    value = item.get("score")
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
            or (isinstance(value, float) and not math.isfinite(value))):
        shown = repr(value) if not isinstance(value, int) or abs(value) < 10**15 else "a huge number"
        raise LabelStudioError(f"{field}.score", f"{shown[:40]} is not a confidence: give a number from 0 to 1.")
    return float(value)


def _percent_points(points: object, field: str, width: int, height: int) -> np.ndarray:
    if not isinstance(points, list) or not all(isinstance(p, list | tuple) and len(p) == 2 for p in points):
        raise LabelStudioError(field, "must be a list of [x, y] pairs (percent).")
    if len(points) < 3:
        raise LabelStudioError(field, f"a polygon needs at least 3 points, not {len(points)}.")
    out = [[_number(x, f"{field}[{i}][0]") / 100.0 * width, _number(y, f"{field}[{i}][1]") / 100.0 * height]
           for i, (x, y) in enumerate(points)]
    return np.asarray(out, dtype=np.float64)


# A polygon's fill builds one (row, x) pair per pixel row each edge crosses: an outline zigzagging
# over the whole height makes points x height of them (GBs from a few hundred kB of JSON). Counted
# first and refused beyond this (~100 MB of working arrays); a drawn outline is far below it.
MAX_POLYGON_CROSSINGS = 4_000_000


def _edge_rows(points: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per non-horizontal edge: its end points (x0, y0, x1, y1 rows of one array), the first pixel
    row whose centre line y = i + 0.5 it meets (lo <= i + 0.5 < hi) and how many rows it meets."""
    p0 = np.asarray(points, dtype=np.float64)
    p1 = np.roll(p0, -1, axis=0)
    keep = p0[:, 1] != p1[:, 1]
    p0, p1 = p0[keep], p1[keep]
    lo, hi = np.minimum(p0[:, 1], p1[:, 1]), np.maximum(p0[:, 1], p1[:, 1])
    first = np.maximum(0, np.ceil(lo - 0.5)).astype(np.int64)
    stop = np.minimum(height, np.ceil(hi - 0.5)).astype(np.int64)
    return p0, p1, first, np.maximum(stop - first, 0)


def polygon_crossings(points: np.ndarray, *, height: int) -> int:
    """How many (row, x) crossings :func:`polygon_mask` would build for `points`."""
    return int(_edge_rows(points, height)[3].sum())


def polygon_mask(points: np.ndarray, *, width: int, height: int) -> np.ndarray:
    """Pixels (bool, height x width) whose centre lies inside the polygon, by the even-odd rule
    (pixel corners at integer coordinates: pixel (i, j) has its centre at (j + 0.5, i + 0.5)); a
    centre exactly on the outline counts on a left or top edge, not on a right or bottom one (the
    usual fill rule, so two polygons sharing an edge never share a pixel). A scanline fill through
    the pixel centres, exact where OpenCV's ``fillPoly`` rounds its vertices to pixels first.
    Vectorised (no Python step per edge or per span: a polygon of many points took minutes);
    callers bound :func:`polygon_crossings` first."""
    mask = np.zeros((height, width), dtype=bool)
    p0, p1, first, counts = _edge_rows(points, height)
    total = int(counts.sum())
    if not total:
        return mask
    edge = np.repeat(np.arange(counts.size), counts)
    row = first[edge] + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    x0, y0, x1, y1 = p0[edge, 0], p0[edge, 1], p1[edge, 0], p1[edge, 1]
    x = x0 + (row + 0.5 - y0) * (x1 - x0) / (y1 - y0)
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    _, first_of_row = np.unique(row, return_index=True)
    rank = np.arange(row.size) - np.repeat(first_of_row, np.diff(np.append(first_of_row, row.size)))
    k = np.nonzero(rank % 2 == 0)[0]
    k = k[k + 1 < row.size]
    k = k[row[k + 1] == row[k]]
    # the pixels whose centre x = j + 0.5 has x[k] <= j + 0.5 < x[k + 1]
    j0 = np.maximum(0, np.ceil(x[k] - 0.5)).astype(np.int64)
    j1 = np.minimum(width, np.ceil(x[k + 1] - 0.5)).astype(np.int64)
    span = j1 > j0
    rows, j0, j1 = row[k][span], j0[span], j1[span]
    # Spans of one row do not overlap (sorted, taken in pairs): +1 at the start, -1 past the end.
    edges = np.zeros((height, width + 1), dtype=np.int8)
    np.add.at(edges, (rows, j0), 1)
    np.add.at(edges, (rows, j1), -1)
    mask[:] = np.cumsum(edges, axis=1, dtype=np.int8)[:, :width] > 0
    return mask


def rectangle_quad(value: Mapping, field: str, width: int, height: int) -> tuple[np.ndarray, bool]:
    """The 4 corners (pixels) of a Label Studio rectangle, and whether it is axis-aligned."""
    x = _number(value.get("x"), f"{field}.x") / 100.0 * width
    y = _number(value.get("y"), f"{field}.y") / 100.0 * height
    w = _number(value.get("width"), f"{field}.width") / 100.0 * width
    h = _number(value.get("height"), f"{field}.height") / 100.0 * height
    rot = value.get("rotation", 0) or 0
    # Bounded before math: math.isfinite / radians of an int beyond float range raise OverflowError
    # (audit); Label Studio writes 0 to 360.
    if (isinstance(rot, bool) or not isinstance(rot, int | float)
            or (isinstance(rot, float) and not math.isfinite(rot)) or not -360 <= rot <= 360):
        raise LabelStudioError(f"{field}.rotation", "must be a number of degrees (-360 to 360).")
    t = math.radians(rot)
    c, s = math.cos(t), math.sin(t)
    quad = np.array([[x, y], [x + w * c, y + w * s], [x + w * c - h * s, y + w * s + h * c], [x - h * s, y + h * c]])
    return quad, float(rot) % 360.0 == 0.0


def _labels(value: Mapping, rtype: str, field: str, category_map: Mapping[str, str],
            spec_slugs: set[str]) -> list[str]:
    key = rtype if rtype.endswith("labels") else None
    labels = value.get(key, []) if key else []
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise LabelStudioError(f"{field}.{key}", "must be a list of label names.")
    out = []
    for label in labels:
        slug = category_map[label] if label in category_map else label
        if slug and slug not in spec_slugs:
            known = ", ".join(sorted(spec_slugs))
            raise LabelStudioError(f"{field}.{key}", f"unknown label {label!r}: no category of the spec has that "
                                                     f"slug; map it with --category-map {label}=SLUG (slugs: {known}).")
        if slug and slug not in out:
            out.append(slug)
    return sorted(out)


def _text(results: list[tuple[int, Mapping]], where: str) -> str:
    texts = []
    for i, r in results:
        value = r.get("value", {})
        if not isinstance(value, dict):     # a string here was an AttributeError (audit)
            raise LabelStudioError(f"{where}[{i}].value", "must be an object.")
        text = value.get("text", [])
        if isinstance(text, str):
            text = [text]
        if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
            raise LabelStudioError(f"{where}[{i}].value.text", "must be a list of strings.")
        texts += [t for t in text if t.strip()]
    if len(texts) > 1:
        i = results[0][0]
        raise LabelStudioError(f"{where}[{i}].value.text", f"{len(texts)} texts for one region; give one LaTeX.")
    return texts[0] if texts else ""


def _check_size(r: Mapping, field: str, width: int, height: int) -> None:
    for key, size in (("original_width", width), ("original_height", height)):
        v = r.get(key)
        if v is not None and v != size:
            raise LabelStudioError(f"{field}.{key}", f"{v}, but the image file is {width}x{height}: "
                                                     "not the image this task was labelled on.")


def task_regions(result: object, *, where: str, width: int, height: int, spec_slugs: set[str],
                 category_map: Mapping[str, str] | None = None, skip_unknown: bool = False,
                 max_regions: int | None = None) -> TaskRegions:
    """The regions of one annotation's (or prediction's) ``result`` list; `where` is its field
    (``tasks[3].annotations[0]``). Raises :class:`LabelStudioError` at the first unusable result.
    More than `max_regions` shapes are refused before any is converted (each brush decodes
    width x height x 4 bytes)."""
    category_map = category_map or {}
    where = f"{where}.result"
    if not isinstance(result, list):
        raise LabelStudioError(where, "must be a list.")
    out = TaskRegions()
    by_id: dict[str, list[tuple[int, Mapping]]] = {}
    order: list[str] = []
    anonymous = 0
    for i, r in enumerate(result):
        if not isinstance(r, dict) or not isinstance(r.get("type"), str):
            raise LabelStudioError(f"{where}[{i}]", 'must be an object with a "type".')
        rid = r.get("id")
        if not isinstance(rid, str | int) or isinstance(rid, bool):
            rid = f"\0{anonymous}"      # a result without an id stands alone
            anonymous += 1
        rid = str(rid)
        if rid not in by_id:
            by_id[rid] = []
            order.append(rid)
        by_id[rid].append((i, r))

    def shape_of(rid: str) -> tuple[int, Mapping] | None:
        shapes = [(i, r) for i, r in by_id.get(rid, []) if r["type"].lower() in SHAPE_TYPES]
        if len(shapes) > 1:
            raise LabelStudioError(f"{where}[{shapes[1][0]}]", f"a second shape with the id {rid!r}.")
        return shapes[0] if shapes else None

    # Our export's pairs: a brush "<k>-mask" beside a polygon or rectangle "<k>" (see the docstring).
    partner_of: dict[str, str] = {}
    for rid in order:
        if rid.endswith(BRUSH_ID_SUFFIX):
            brush, base = shape_of(rid), shape_of(rid[:-len(BRUSH_ID_SUFFIX)])
            if (brush is not None and base is not None and brush[1]["type"].lower() in BRUSH_TYPES
                    and base[1]["type"].lower() in POLYGON_TYPES | RECTANGLE_TYPES):
                partner_of[rid[:-len(BRUSH_ID_SUFFIX)]] = rid
    partners = set(partner_of.values())
    if max_regions is not None:
        count = sum(1 for rid in order if rid not in partners and shape_of(rid) is not None)
        if count > max_regions:
            raise LabelStudioError(where, f"{count} regions; at most {max_regions} are allowed per image.")
    for rid in order:
        items = by_id[rid]
        others = [(i, r) for i, r in items if r["type"].lower() not in SHAPE_TYPES | {TEXT_TYPE}]
        for i, r in others:
            if not skip_unknown:
                raise LabelStudioError(f"{where}[{i}].type", f"{r['type']!r} results are not supported (polygons, "
                                                             "rectangles, brushes and their text areas are); "
                                                             "--skip-unknown leaves them out.")
            out.skipped[r["type"]] += 1
        shape = shape_of(rid)
        texts = [(i, r) for i, r in items if r["type"].lower() == TEXT_TYPE]
        if shape is None:
            if texts:
                i = texts[0][0]
                if not skip_unknown:
                    raise LabelStudioError(f"{where}[{i}]", f"a text area that belongs to no shape (id {rid!r}); "
                                                            "--skip-unknown leaves it out.")
                out.skipped["textarea without a shape"] += 1
            continue
        if rid in partners:
            continue                    # taken in with its polygon, in the polygon's place
        region, kind, aligned = _region(shape, texts, where=where, width=width, height=height,
                                        spec_slugs=spec_slugs, category_map=category_map)
        origin = f"{where}[{shape[0]}]"
        if rid in partner_of:
            bid = partner_of[rid]
            brush = shape_of(bid)
            btexts = [(i, r) for i, r in by_id[bid] if r["type"].lower() == TEXT_TYPE]
            bregion, _, _ = _region(brush, btexts, where=where, width=width, height=height,
                                    spec_slugs=spec_slugs, category_map=category_map)
            if bregion["latex"] and region["latex"] and bregion["latex"] != region["latex"]:
                raise LabelStudioError(f"{where}[{brush[0]}]", f"the brush {bid!r} and the shape {rid!r} of the "
                                                               "same formula have different LaTeX; make them agree.")
            if bregion["categories"] != region["categories"]:
                raise LabelStudioError(f"{where}[{brush[0]}]", f"the brush {bid!r} and the shape {rid!r} of the "
                                                               "same formula have different labels; make them agree.")
            bregion["latex"] = bregion["latex"] or region["latex"]
            scores = [x["confidence"] for x in (region, bregion) if "confidence" in x]
            if scores:
                bregion["confidence"] = min(scores)
            region, kind, aligned, origin = bregion, "polygon + brush (one mask)", False, f"{where}[{brush[0]}]"
        out.regions.append(region)
        out.origins.append(origin)
        out.kinds[kind] += 1
        out.axis_aligned.append(aligned)
    return out


def _region(shape: tuple[int, Mapping], texts: list[tuple[int, Mapping]], *, where: str, width: int, height: int,
            spec_slugs: set[str], category_map: Mapping[str, str]) -> tuple[dict, str, bool]:
    i, r = shape
    field = f"{where}[{i}]"
    rtype = r["type"].lower()
    value = r.get("value")
    if not isinstance(value, dict):
        raise LabelStudioError(f"{field}.value", "must be an object.")
    _check_size(r, field, width, height)
    region: dict = {"latex": _text(texts, where).strip(),
                    "categories": _labels(value, rtype, f"{field}.value", category_map, spec_slugs)}
    # A model's per-result scores (the shape's and its text area's): the region is as sure as its
    # least sure part.
    scores = [s for s in (score_of(r, field), *(score_of(t, f"{where}[{j}]") for j, t in texts)) if s is not None]
    if scores:
        region["confidence"] = min(scores)
    aligned = False
    if rtype in POLYGON_TYPES:
        pts = _percent_points(value.get("points"), f"{field}.value.points", width, height)
        if len(pts) == 4:
            region.update(kind="quad", points=pts.tolist())
            kind = "polygon (4 points)"
            aligned = _axis_aligned(pts)
        else:
            crossings = polygon_crossings(pts, height=height)
            if crossings > MAX_POLYGON_CROSSINGS:
                raise LabelStudioError(f"{field}.value.points", f"the polygon's outline crosses the image's pixel "
                                                                f"rows {crossings} times; at most "
                                                                f"{MAX_POLYGON_CROSSINGS} are taken (a drawn outline "
                                                                "is far below it).")
            mask = polygon_mask(pts, width=width, height=height)
            if not mask.any():
                raise LabelStudioError(f"{field}.value.points", "the polygon covers no pixel.")
            region.update(kind="mask", mask=rle_module.encode(mask))
            kind = f"polygon ({len(pts)} points, as a mask)"
    elif rtype in RECTANGLE_TYPES:
        quad, aligned = rectangle_quad(value, f"{field}.value", width, height)
        region.update(kind="quad", points=quad.tolist())
        kind = "rectangle"
    else:
        if value.get("format", "rle") != "rle":
            raise LabelStudioError(f"{field}.value.format", f"brush format {value.get('format')!r} is not supported "
                                                            '(only "rle").')
        mask = brush_mask(value.get("rle"), width=width, height=height, field=f"{field}.value.rle")
        if not mask.any():
            raise LabelStudioError(f"{field}.value.rle", "the brush covers no pixel.")
        region.update(kind="mask", mask=rle_module.encode(mask))
        kind = "brush"
    return region, kind, aligned


def _axis_aligned(pts: np.ndarray, tol: float = 1e-6) -> bool:
    """Whether a quad's edges run along the image axes (within `tol` pixels)."""
    edges = np.roll(pts, -1, axis=0) - pts
    return bool(np.all(np.minimum(np.abs(edges[:, 0]), np.abs(edges[:, 1])) <= tol))


def bounding_box(points: Iterable[Sequence[float]]) -> list[float]:
    pts = np.asarray(list(points), dtype=np.float64)
    return [float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())]
