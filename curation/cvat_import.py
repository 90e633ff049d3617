"""Reading a CVAT for images 1.1 XML file: which file each ``<image>`` is, and its shapes in our format.

Pure functions (no database, no storage): the write is ``curation.services.cvat_import``, the command
``manage.py import_cvat``. The format written by ``curation/exporters/cvat.py`` (its docstring shows
the document) comes back as it went out.

**The file.** ``annotations.xml`` as CVAT's *Export task dataset / annotations* ("CVAT for images
1.1") writes it: ``<annotations>`` holding ``<version>``, ``<meta>`` and one ``<image id name width
height>`` per frame. It is parsed with defusedxml, streaming (each ``<image>`` is read, turned into a
small record and dropped): a document type declaration (``<!DOCTYPE``, so any entity declaration,
the "billion laughs" XML bomb, an external entity or DTD) is refused, as is a file over
:data:`MAX_XML_BYTES`, by its size before it is read, and one of more than :data:`MAX_XML_ELEMENTS`
elements or :data:`MAX_SHAPES` shapes, counted while it is read. An encoding expat cannot read
(multi-byte ones but UTF-8 and UTF-16) is refused: save the file as UTF-8. ``<track>`` elements (CVAT
for video) are refused: export the task as CVAT for images.

**The image file.** Found in the images folder by the ``name`` as a path inside it
(``task-3/a.png`` → ``DIR/task-3/a.png``), else by its base name anywhere under the folder (searched
recursively, as the Label Studio import does). No file, or more than one by base name, is an error
for that image; so are two ``<image>`` elements with the same name, and two whose files are the same
bytes. ``width``/``height``, when given, must be the file's size (after its EXIF orientation, as we
store and CVAT shows it).

**Shapes → regions** (image pixels; the order of the shapes in the file):

* ``<polygon points="x1,y1;x2,y2;...">`` with 4 points → a quad (kept in their order, the first as
  the formula's top-left; made clockwise). Any other number of points (3, 5 and more, at most
  :data:`MAX_POLYGON_POINTS`) → a **mask**: the pixels whose centre lies inside the polygon
  (``labelstudio_import.polygon_mask``).
* ``<box xtl ytl xbr ybr rotation>`` → the quad top-left, top-right, bottom-right, bottom-left of the
  box as drawn: ``rotation`` is in degrees, clockwise on screen, about the box's centre (CVAT's
  rule); absent, 0.
* ``<mask rle left top width height>`` → a mask: ``rle`` lists runs of 0s and 1s, starting with 0s,
  row by row over the ``width`` x ``height`` box at (``left``, ``top``)
  (``curation.exporters.cvat.cvat_mask``); no more runs than the box has pixels, plus one.
* ``<polyline>``, ``<points>``, ``<cuboid>``, ``<skeleton>``, ``<ellipse>``, ``<tag>`` and anything
  else: an error naming the element, or left out (and counted) with ``skip_unknown``.
* A polygon of 4 points (or a box) and a mask sharing a ``group_id``, and nothing else in that group,
  are one formula (as our export writes a region holding both): one mask region, in the polygon's
  place. Their LaTeX and labels must agree (an error otherwise: one was edited in CVAT and we cannot
  tell which is right); a flag set on either is set. Other groups are ignored (each shape is its own
  region).

**Attributes** (``<attribute name="...">value</attribute>`` inside a shape): the LaTeX comes from the
text attribute ``latex_attribute`` (default ``latex``; absent: no LaTeX); ``illegible`` and
``cut_off`` are the flags, ``true``/``false`` (any case; ``1``/``0``). An attribute given twice is an
error, and so is one of these holding an element (``<attribute name="latex">a<i>b</i></attribute>``:
its text would stop at the element); comments, processing instructions and CDATA sections are read
as text is. Others (CVAT projects often have their own) are not imported, counted per name.

**Labels.** A shape's ``label`` becomes a category slug by ``category_map`` (``label -> slug``; an
empty slug: no category) or, unmapped, the slug equal to the label; any other label is an error
naming it. ``occluded``, ``z_order``, ``source`` are not read.

Every error names the element: ``image[3] polygon[1] points`` is the second ``<polygon>`` of the
fourth ``<image>`` element of the file (both counted from 0, in file order).
"""
from __future__ import annotations

import io
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from xml.etree.ElementTree import Element, ParseError

import numpy as np
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml import ElementTree as SafeET

from common import geometry
from common import rle as rle_module

from .exporters.cvat import cvat_mask
from .labelstudio_import import MAX_POLYGON_CROSSINGS, _axis_aligned, near_names, polygon_crossings, polygon_mask

# The largest annotations file read (checked by its size before a byte is parsed). A CVAT task of
# thousands of photos with masks is far below it.
MAX_XML_BYTES = 100 * 1024 * 1024
# What is read is held: each <image>'s tree until it ends, then a record of every shape and, once
# converted, its region (~1.5 kB a shape, for ~250 bytes of XML as our export writes it). Counted while
# the file streams in and refused beyond these, which a file of real shapes reaches about when it
# reaches MAX_XML_BYTES: a file of bare "<x>" or "<box/>" elements (10 to 50 bytes each) built
# several GB; now at most about 1 GB.
MAX_XML_ELEMENTS = 2_000_000
MAX_SHAPES = 500_000
# A polygon's points and a mask's runs become numbers one by one: bounded before they are read.
MAX_POLYGON_POINTS = 100_000
READ_CHUNK = 1024 * 1024
MAX_NAME_LENGTH = 1024
SHOWN = 80                  # characters of a name (tag, attribute) echoed in a message or a count
SHAPE_TAGS = ("box", "polygon", "mask")
FLAG_ATTRIBUTES = ("illegible", "cut_off")
DEFAULT_LATEX_ATTRIBUTE = "latex"
_TRUE, _FALSE = {"true", "1"}, {"false", "0", ""}
_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
_WHOLE = re.compile(r"\s*\d{1,9}\s*")
_RUN = re.compile(r"\s*(\d{1,12})\s*(?:,|\Z)")


class CvatError(ValueError):
    """Unusable input; ``field`` says where (``image[3] polygon[1] points``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- the document ----------------------------------------------------------------------------

@dataclass
class Shape:
    """One child element of an ``<image>``: its tag, its number among the image's children of that
    tag, its XML attributes and its ``<attribute name>`` children as (name, text) pairs."""

    tag: str
    index: int
    attrib: dict[str, str]
    attributes: list[tuple[str, str]]


@dataclass
class Frame:
    """One ``<image>`` element: its position in the file, its XML attributes and its shapes."""

    index: int
    attrib: dict[str, str]
    shapes: list[Shape]

    @property
    def where(self) -> str:
        return f"image[{self.index}]"

    @property
    def name(self) -> str:
        return self.attrib.get("name", "")


@dataclass
class Document:
    version: str
    task_name: str
    frames: list[Frame]


class _Held(str):
    """The value of an ``<attribute>`` that holds an element (the element's tag): refused, not read."""


class _Capped:
    """A binary file that refuses to give more than `limit` bytes (a file grown since its size was
    checked, or a pipe), read READ_CHUNK bytes at a time: ElementTree asks for 16 KiB, and expat (before
    2.6) parses a token spanning several of them again from its start on each: a 50 MB attribute took
    80 s, 1.4 s in 1 MiB chunks."""

    def __init__(self, fh: IO[bytes], limit: int) -> None:
        self._fh, self._left, self._limit = fh, limit, limit

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(self._left + 1 if n is None or n < 0 else min(max(n, READ_CHUNK), self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise CvatError("annotations", f"the file is over {self._limit} bytes; at most {self._limit} are read.")
        return data


def read_annotations(path: Path) -> Document:
    """The document of an annotations file, refused by its size before it is read."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CvatError("annotations", f"cannot read {path}: {exc.strerror or exc}.") from None
    if size > MAX_XML_BYTES:
        raise CvatError("annotations", f"the file is {size} bytes; at most {MAX_XML_BYTES} are read (a CVAT task "
                                       "of thousands of images is far below it): split the task.")
    try:
        with path.open("rb") as fh:
            return parse_annotations(_Capped(fh, MAX_XML_BYTES))
    except OSError as exc:
        raise CvatError("annotations", f"cannot read {path}: {exc.strerror or exc}.") from None


def parse_annotations(source: bytes | IO[bytes]) -> Document:
    """Parse a CVAT for images XML document (bytes or a binary file), streaming."""
    if isinstance(source, bytes | bytearray):
        if len(source) > MAX_XML_BYTES:
            raise CvatError("annotations", f"the file is {len(source)} bytes; at most {MAX_XML_BYTES} are read.")
        source = io.BytesIO(source)
    if not isinstance(source, _Capped):
        source = _Capped(source, MAX_XML_BYTES)
    version, task_name, frames, tracks = "", "", [], 0
    depth, root, top, elements, shapes = 0, None, None, 0, 0
    try:
        for event, el in SafeET.iterparse(source, events=("start", "end"), forbid_dtd=True):
            if event == "start":
                elements += 1
                if elements > MAX_XML_ELEMENTS:
                    raise CvatError("annotations", f"more than {MAX_XML_ELEMENTS} elements (at image[{len(frames)}]); "
                                                   "a CVAT task's file is far below it: split the task.")
                if depth == 0:
                    root = el
                    if el.tag != "annotations":
                        raise CvatError("annotations", f"the root element is <{str(el.tag)[:SHOWN]}>, not "
                                                       "<annotations>: not a CVAT for images XML file.")
                elif depth == 1:
                    top = el
                elif depth == 2 and top.tag == "image":
                    shapes += 1
                    if shapes > MAX_SHAPES:
                        raise CvatError(f"image[{len(frames)}]", f"more than {MAX_SHAPES} shapes in the file; at most "
                                                                 f"{MAX_SHAPES} are read: split the task.")
                depth += 1
                continue
            depth -= 1
            if depth != 1:
                continue
            if el.tag == "image":
                frames.append(_frame(el, len(frames)))
            elif el.tag == "track":
                raise CvatError(f"track[{tracks}]", "tracks are CVAT for video 1.1; export the task as CVAT for "
                                                    "images 1.1 (shapes per image).")
            elif el.tag == "version":
                version = (el.text or "").strip()
            elif el.tag == "meta":
                task_name = _meta_name(el)
            root.clear()      # what was read is dropped: memory holds one <image> at a time
    except ParseError as exc:
        raise CvatError("annotations", f"not well-formed XML ({exc}).") from None
    except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden) as exc:
        raise CvatError("annotations", "the XML has a document type declaration (<!DOCTYPE ...>), refused: it "
                                       "could declare entities (entity expansion, 'XML bombs') or external "
                                       f"references, and CVAT's XML has none ({type(exc).__name__}).") from None
    except DefusedXmlException as exc:
        raise CvatError("annotations", f"refused XML: {exc}.") from None
    except CvatError:
        raise
    except (LookupError, ValueError) as exc:    # expat: "unknown encoding", "multi-byte encodings are not supported"
        raise CvatError("annotations", f"the XML's declared encoding cannot be read ({exc}); save the file as UTF-8, "
                                       "as CVAT writes it.") from None
    if not frames:
        raise CvatError("annotations", "no <image> element: nothing to import (is this CVAT for images 1.1?).")
    return Document(version=version, task_name=task_name, frames=frames)


def _frame(el: Element, index: int) -> Frame:
    shapes, seen = [], Counter()
    for child in el:
        tag = child.tag[:SHOWN] if isinstance(child.tag, str) else "?"
        # An <attribute> holding an element: its text (ElementTree's .text) stops there; marked, refused.
        attributes = [(a.get("name") or "", _Held(str(a[0].tag)[:SHOWN]) if len(a) else a.text or "")
                      for a in child if a.tag == "attribute"]
        shapes.append(Shape(tag=tag, index=seen[tag], attrib=dict(child.attrib), attributes=attributes))
        seen[tag] += 1
    return Frame(index=index, attrib=dict(el.attrib), shapes=shapes)


def _meta_name(meta: Element) -> str:
    for path in ("task/name", "project/name", "job/name"):
        text = meta.findtext(path)
        if text and text.strip():
            return text.strip()
    return ""


# --- the image file --------------------------------------------------------------------------

def frame_size(frame: Frame) -> tuple[int | None, int | None]:
    """The ``width`` and ``height`` an ``<image>`` declares (None when absent)."""
    out = []
    for key in ("width", "height"):
        value = frame.attrib.get(key)
        if value is None:
            out.append(None)
            continue
        if not _WHOLE.fullmatch(value) or int(value) < 1:
            raise CvatError(f"{frame.where} {key}", f"{value[:20]!r} is not a size in pixels.")
        out.append(int(value))
    return out[0], out[1]


def find_frame_file(name: str, images_dir: Path, index: Mapping[str, list[Path]], *, field: str) -> Path:
    """The one file of the images folder an ``<image name>`` names: the path inside the folder, else
    the one file of that base name."""
    if not name.strip():
        raise CvatError(field, "missing: the <image> names no file.")
    if len(name) > MAX_NAME_LENGTH:
        raise CvatError(field, f"{len(name)} characters; at most {MAX_NAME_LENGTH}.")
    parts = [p for p in unicodedata.normalize("NFC", name.replace("\\", "/")).split("/") if p not in ("", ".")]
    if not parts:
        raise CvatError(field, f"{name!r} names no file.")
    if ".." not in parts and "\x00" not in name:
        candidate = images_dir.joinpath(*parts)
        if candidate.is_file():
            return candidate
    base = parts[-1]
    found = index.get(base, [])
    if not found:
        near = near_names(index, [base])
        hint = f"; the folder has {', '.join(near)} (names must match in case)" if near else ""
        raise CvatError(field, f"no file named {base} in the images folder (from {name!r}){hint}.")
    if len(found) > 1:
        shown = ", ".join(str(p.relative_to(images_dir)) for p in found[:3])
        raise CvatError(field, f"ambiguous: {len(found)} files named {base} in the images folder ({shown}); name "
                               "the file by its path inside the folder.")
    return found[0]


# --- shapes -> regions -----------------------------------------------------------------------

@dataclass
class FrameRegions:
    """What one image's shapes became: regions in the annotation format (``kind``, ``points`` or
    ``mask``, ``latex``, ``illegible``, ``cut_off``, ``categories``), the element each came from, and
    counts per kind."""

    regions: list[dict] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    axis_aligned: list[bool] = field(default_factory=list)


def _where(frame: Frame, shape: Shape) -> str:
    return f"{frame.where} {shape.tag}[{shape.index}]"


def _group(frame: Frame, shape: Shape) -> int:
    value = shape.attrib.get("group_id")
    if value is None:
        return 0
    if not _WHOLE.fullmatch(value):
        raise CvatError(f"{_where(frame, shape)} group_id", f"{value[:20]!r} is not a group number.")
    return int(value)


def _is_quad_shape(shape: Shape) -> bool:
    return shape.tag == "box" or (shape.tag == "polygon" and (shape.attrib.get("points") or "").count(";") == 3)


def frame_regions(frame: Frame, *, width: int, height: int, spec_slugs: set[str],
                  category_map: Mapping[str, str] | None = None, latex_attribute: str = DEFAULT_LATEX_ATTRIBUTE,
                  skip_unknown: bool = False, max_regions: int | None = None) -> FrameRegions:
    """The regions of one ``<image>`` of a width x height file. Raises :class:`CvatError` at the
    first unusable element. More than `max_regions` shapes are refused before any is converted."""
    category_map = category_map or {}
    out = FrameRegions()
    shapes = []
    for shape in frame.shapes:
        if shape.tag in SHAPE_TAGS:
            shapes.append(shape)
        elif not skip_unknown:
            raise CvatError(_where(frame, shape), f"<{shape.tag}> is not supported (boxes, polygons and masks are); "
                                                  "--skip-unknown leaves it out.")
        else:
            out.skipped[shape.tag] += 1
    # Our export's pairs: a quad-shaped polygon (or a box) and a mask alone in one group.
    groups: dict[int, list[Shape]] = {}
    for shape in shapes:
        g = _group(frame, shape)
        if g:
            groups.setdefault(g, []).append(shape)
    partner: dict[int, tuple[Shape, int]] = {}      # id(quad shape) -> (its mask, group)
    absorbed: set[int] = set()
    for g, members in groups.items():
        if len(members) == 2:
            quads = [s for s in members if _is_quad_shape(s)]
            masks = [s for s in members if s.tag == "mask"]
            if len(quads) == 1 and len(masks) == 1:
                partner[id(quads[0])] = (masks[0], g)
                absorbed.add(id(masks[0]))
    if max_regions is not None and len(shapes) - len(absorbed) > max_regions:
        raise CvatError(frame.where, f"{len(shapes) - len(absorbed)} regions; at most {max_regions} are allowed "
                                     "per image.")
    for shape in shapes:
        if id(shape) in absorbed:
            continue
        region, kind, aligned = _region(frame, shape, width=width, height=height, spec_slugs=spec_slugs,
                                        category_map=category_map, latex_attribute=latex_attribute,
                                        ignored=out.skipped)
        origin = _where(frame, shape)
        if id(shape) in partner:
            mshape, g = partner[id(shape)]
            mregion, _, _ = _region(frame, mshape, width=width, height=height, spec_slugs=spec_slugs,
                                    category_map=category_map, latex_attribute=latex_attribute, ignored=out.skipped)
            here = _where(frame, mshape)
            pair = f"the mask and the {shape.tag}[{shape.index}] of group {g}"
            if mregion["latex"] and region["latex"] and mregion["latex"] != region["latex"]:
                raise CvatError(here, f"{pair} have different LaTeX; make them agree.")
            if mregion["categories"] != region["categories"]:
                raise CvatError(here, f"{pair} have different labels; make them agree.")
            mregion["latex"] = mregion["latex"] or region["latex"]
            for flag in FLAG_ATTRIBUTES:
                mregion[flag] = mregion[flag] or region[flag]
            region, kind, aligned, origin = mregion, f"{shape.tag} + mask (one mask)", False, here
        out.regions.append(region)
        out.origins.append(origin)
        out.kinds[kind] += 1
        out.axis_aligned.append(aligned)
    return out


def _region(frame: Frame, shape: Shape, *, width: int, height: int, spec_slugs: set[str],
            category_map: Mapping[str, str], latex_attribute: str, ignored: Counter) -> tuple[dict, str, bool]:
    where = _where(frame, shape)
    region: dict = {"latex": "", "categories": _categories(shape, where, category_map, spec_slugs)}
    counts = Counter(name for name, _ in shape.attributes)
    for name, n in counts.items():
        if n > 1:
            raise CvatError(f"{where} attribute {name[:SHOWN]}", f"given {n} times; give it once.")
    values = dict(shape.attributes)
    for name in (latex_attribute, *FLAG_ATTRIBUTES):
        if isinstance(values.get(name), _Held):
            raise CvatError(f"{where} attribute {name}", f"holds the element <{values[name]}>; an attribute's value "
                                                         "is text (what follows the element was cut off).")
    region["latex"] = values.get(latex_attribute, "").strip()
    for flag in FLAG_ATTRIBUTES:
        value = values.get(flag, "").strip().lower()
        if value not in _TRUE | _FALSE:
            raise CvatError(f"{where} attribute {flag}", f"{values[flag][:40]!r} is not true or false.")
        region[flag] = value in _TRUE
    for name in counts:
        if name != latex_attribute and name not in FLAG_ATTRIBUTES:
            ignored[f"attribute {name[:SHOWN]!r} (not imported)"] += 1
    aligned = False
    if shape.tag == "polygon":
        pts = parse_points(shape.attrib.get("points"), f"{where} points")
        try:
            geometry.check_inside(pts.tolist(), width=width, height=height, tolerance=_tolerance(width, height))
        except geometry.GeometryError as exc:
            raise CvatError(f"{where} points", str(exc)) from None
        if len(pts) == 4:
            region.update(kind="quad", points=pts.tolist())
            return region, "polygon (4 points)", _axis_aligned(pts)
        crossings = polygon_crossings(pts, height=height)
        if crossings > MAX_POLYGON_CROSSINGS:
            raise CvatError(f"{where} points", f"the polygon's outline crosses the image's pixel rows {crossings} "
                                               f"times; at most {MAX_POLYGON_CROSSINGS} are taken (a drawn outline "
                                               "is far below it).")
        mask = polygon_mask(pts, width=width, height=height)
        if not mask.any():
            raise CvatError(f"{where} points", "the polygon covers no pixel.")
        region.update(kind="mask", mask=rle_module.encode(mask))
        return region, f"polygon ({len(pts)} points, as a mask)", aligned
    if shape.tag == "box":
        quad, aligned = box_quad(shape.attrib, where)
        region.update(kind="quad", points=quad.tolist())
        return region, "box", aligned
    mask = mask_of(shape.attrib, where, width=width, height=height)
    region.update(kind="mask", mask=rle_module.encode(mask))
    return region, "mask", aligned


def _tolerance(width: int, height: int) -> float:
    return max(geometry.EDGE_TOLERANCE_PX, geometry.EDGE_TOLERANCE_FRACTION * max(width, height))


def _categories(shape: Shape, where: str, category_map: Mapping[str, str], spec_slugs: set[str]) -> list[str]:
    label = shape.attrib.get("label")
    if label is None:
        raise CvatError(f"{where} label", "missing: a CVAT shape has a label.")
    slug = category_map[label] if label in category_map else label
    if slug and slug not in spec_slugs:
        known = ", ".join(sorted(spec_slugs))
        raise CvatError(f"{where} label", f"unknown label {label[:80]!r}: no category of the spec has that slug; map "
                                          f"it with --category-map {label[:80]}=SLUG (slugs: {known}).")
    return [slug] if slug else []


def _number(text: str, field: str, what: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise CvatError(field, f"{text[:20]!r} is not a number{what}.")
    value = float(text)
    if not math.isfinite(value):
        raise CvatError(field, f"{text[:20]!r} is not a finite number{what}.")
    return value


def parse_points(text: str | None, field: str) -> np.ndarray:
    """The points (n x 2, pixels) of CVAT's ``points="x1,y1;x2,y2;..."``."""
    if text is None:
        raise CvatError(field, "missing.")
    if text.count(";") >= MAX_POLYGON_POINTS:
        raise CvatError(field, f"{text.count(';') + 1} points; at most {MAX_POLYGON_POINTS} (a drawn outline is far "
                               "below it).")
    pairs = text.split(";")
    if not all(p.count(",") == 1 for p in pairs):
        raise CvatError(field, "must be x,y pairs separated by ';' (x1,y1;x2,y2;...).")
    if len(pairs) < 3:
        raise CvatError(field, f"a polygon needs at least 3 points, not {len(pairs)}.")
    out = []
    for i, pair in enumerate(pairs):
        x, y = pair.split(",")
        out.append([_number(x, field, f" (point {i + 1})"), _number(y, field, f" (point {i + 1})")])
    return np.asarray(out, dtype=np.float64)


def box_quad(attrib: Mapping[str, str], where: str) -> tuple[np.ndarray, bool]:
    """The 4 corners of a CVAT box (top-left, top-right, bottom-right, bottom-left as drawn), turned
    by its ``rotation`` (degrees, clockwise on screen) about its centre; and whether it is
    axis-aligned."""
    values = {}
    for key in ("xtl", "ytl", "xbr", "ybr"):
        if key not in attrib:
            raise CvatError(f"{where} {key}", "missing.")
        values[key] = _number(attrib[key], f"{where} {key}", "")
    xtl, ytl, xbr, ybr = (values[k] for k in ("xtl", "ytl", "xbr", "ybr"))
    if xbr <= xtl:
        raise CvatError(f"{where} xbr", "must be greater than xtl (the box's right edge is not right of its left).")
    if ybr <= ytl:
        raise CvatError(f"{where} ybr", "must be greater than ytl (the box's bottom edge is not below its top).")
    rot_text = attrib.get("rotation", "0")
    if not _NUMBER.fullmatch(rot_text) or not math.isfinite(float(rot_text)) or not -360 <= float(rot_text) <= 360:
        raise CvatError(f"{where} rotation", "must be a number of degrees (-360 to 360).")
    rot = float(rot_text)
    cx, cy, hw, hh = (xtl + xbr) / 2, (ytl + ybr) / 2, (xbr - xtl) / 2, (ybr - ytl) / 2
    corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
    if rot % 360 == 0:
        quad = np.array([[xtl, ytl], [xbr, ytl], [xbr, ybr], [xtl, ybr]], dtype=np.float64)
        return quad, True
    t = math.radians(rot)
    c, s = math.cos(t), math.sin(t)
    quad = np.array([[cx + x * c - y * s, cy + x * s + y * c] for x, y in corners], dtype=np.float64)
    return quad, _axis_aligned(quad)


def mask_of(attrib: Mapping[str, str], where: str, *, width: int, height: int) -> np.ndarray:
    """The bool height x width mask of a CVAT ``<mask>``, every attribute checked first."""
    box = {}
    for key in ("left", "top", "width", "height"):
        value = attrib.get(key)
        if value is None:
            raise CvatError(f"{where} {key}", "missing.")
        if not _WHOLE.fullmatch(value):
            raise CvatError(f"{where} {key}", f"{value[:20]!r} is not a whole number of pixels.")
        box[key] = int(value)
    for key in ("width", "height"):
        if box[key] < 1:
            raise CvatError(f"{where} {key}", "must be at least 1.")
    left, top, w, h = box["left"], box["top"], box["width"], box["height"]
    if left + w > width or top + h > height:
        key = "width" if left + w > width else "height"
        raise CvatError(f"{where} {key}", f"the box ({left}, {top}) {w}x{h} reaches past the {width}x{height} image.")
    text = attrib.get("rle")
    if text is None:
        raise CvatError(f"{where} rle", "missing.")
    # Bounded by the box before a number is read (a run a pixel, and the leading run of 0s, which may be
    # empty), and read into one int64 array, not a Python list of strings and ints (~90 bytes a run).
    runs = text.count(",") + 1
    if runs > w * h + 1:
        raise CvatError(f"{where} rle", f"{runs} runs; a {w}x{h} box has at most {w * h + 1}.")
    counts, end, n = np.empty(runs, dtype=np.int64), 0, 0
    for m in _RUN.finditer(text):
        if m.start() != end or n == runs:
            break
        counts[n], end, n = int(m.group(1)), m.end(), n + 1
    if n != runs or end != len(text):
        raise CvatError(f"{where} rle", "must be counts separated by commas (CVAT's mask RLE: runs of 0s and 1s, "
                                        "starting with 0s).")
    if counts.max() > w * h:
        raise CvatError(f"{where} rle", f"a run of {int(counts.max())} pixels; the {w}x{h} box has {w * h}.")
    covered = int(counts.sum())
    if covered != w * h:
        raise CvatError(f"{where} rle", f"the runs cover {covered} pixels; the {w}x{h} box has {w * h}.")
    mask = cvat_mask(counts, left=left, top=top, width=w, height=h, image_width=width, image_height=height)
    if not mask.any():
        raise CvatError(f"{where} rle", "the mask covers no pixel.")
    return mask
