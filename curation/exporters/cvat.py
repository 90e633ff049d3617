"""CVAT for images 1.1 XML: ``annotations.xml`` and ``images/``, the layout of CVAT's own "CVAT for
images 1.1" dataset export (a task's *Export dataset* with images), which CVAT's *Import dataset* /
*Upload annotations* and datumaro (``Dataset.import_from(path, "cvat")``) read.

The document::

    <annotations>
      <version>1.1</version>
      <meta><task><name>Mathset export</name><size>N</size><mode>annotation</mode>...
        <labels><label><name>printed</name><color>#..</color><type>any</type><attributes>
          <attribute><name>latex</name><mutable>False</mutable><input_type>text</input_type>...
          <attribute><name>illegible</name>...<input_type>checkbox</input_type><default_value>false</default_value>...
          <attribute><name>cut_off</name>...checkbox...
        </attributes></label>...</labels></task></meta>
      <image id="0" name="00000012.png" width="W" height="H">
        <polygon label="printed" source="manual" occluded="0" points="x1,y1;x2,y2;x3,y3;x4,y4" z_order="0">
          <attribute name="latex">\\frac{a}{b}</attribute>
          <attribute name="illegible">false</attribute>
          <attribute name="cut_off">false</attribute>
        </polygon>
        <mask label="printed" source="manual" occluded="0" rle="3, 5, 2, ..." left="L" top="T" width="w"
              height="h" z_order="0">...the same attributes...</mask>
      </image>
    </annotations>

* Every category of the export is a ``<label>`` (named by its slug; ``formula`` when there is none),
  each declaring the three attributes: ``latex`` (text), ``illegible`` and ``cut_off`` (checkboxes:
  ``true``/``false``; the region flags ``illegible`` and ``partial``, i.e. cut off at the photo's edge).
* ``<image id>`` is the frame number, 0, 1, 2 ... in export order, as CVAT numbers a task's frames;
  ``name`` is the file under ``images/``.
* A quad is a 4-point ``<polygon>`` in reading order (the first point is the formula's top-left as
  read), each coordinate written with every digit it has (the shortest decimal that reads back as the
  same float), so a round trip gives the same points.
* A mask is a ``<mask>`` in CVAT's own RLE (CVAT 2.x): ``left``, ``top``, ``width``, ``height`` are
  the mask's bounding box and ``rle`` the lengths of alternating runs of 0s and 1s over that box,
  row by row (row-major), starting with 0s (a first count of 0 when the box's top-left pixel is set),
  separated by ``", "`` as CVAT writes them. :func:`cvat_mask_counts` and :func:`cvat_mask` are the
  format in one place (the import, ``curation/cvat_import.py``, decodes with the latter).
* A region with both a quad and a mask gives a polygon and a mask sharing a ``group_id`` (a number
  used once in the export); ``manage.py import_cvat`` takes such a pair back as one mask region.
* A region whose mask is empty is written as its quad, or left out without one (CVAT has no empty
  mask).

The split is not written: CVAT's task format has no per-image subset (an ``<image subset>`` makes
datumaro file the image under that subset, and leave it out of the task's). A region's first
category is its label (one label per shape in CVAT).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from common import rle as rle_module

from .base import ExportWriter
from .records import DEFAULT_CATEGORY, ExportImage, ExportRegion, rle_to_mask

ANNOTATIONS = "annotations.xml"
TASK_NAME = "Mathset export"
LATEX_ATTRIBUTE = "latex"
FLAG_ATTRIBUTES = (("illegible", ("illegible",)), ("cut_off", ("partial", "cut_off")))
# Distinct label colours, used in turn (CVAT draws a label's shapes in its colour).
_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
            "#fabebe", "#008080", "#e6beff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075")
# Characters XML 1.0 cannot hold at all, not even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _checked(text: str) -> str:
    bad = _NOT_XML.search(text)
    if bad:
        raise ValueError(f"U+{ord(bad.group()):04X} cannot be written in XML: {text[:40]!r}")
    return text


def xml_text(text: str) -> str:
    """Element text, with a carriage return as a character reference (a parser turns a raw one into a
    line feed)."""
    return escape(_checked(text), {"\r": "&#13;"})


def xml_attr(text: str) -> str:
    """A quoted attribute value (line breaks and tabs as character references, as attributes need)."""
    return quoteattr(_checked(text))


def number(value: float) -> str:
    """The shortest positional decimal that reads back as the same float (``10``, ``20.125``)."""
    return np.format_float_positional(float(value), trim="-")


# --- CVAT's mask RLE -------------------------------------------------------------------------

def cvat_mask_counts(rle: Mapping, width: int, height: int) -> tuple[list[int], int, int, int, int] | None:
    """``(counts, left, top, box width, box height)`` of a COCO RLE mask of a width x height image in
    CVAT's mask RLE (see the module docstring), or None for an empty mask. Only the mask's box is
    drawn."""
    if [int(v) for v in rle["size"]] != [height, width]:
        raise ValueError(f"a mask of size {list(rle['size'])} on a {width}x{height} image")
    counts = rle["counts"]
    text = {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
    try:
        window = rle_module.decode_window(text)
    except rle_module.MaskError:           # not canonical COCO (never stored here): the whole mask
        full = rle_to_mask(rle)
        if not full.any():
            return None
        ys, xs = np.nonzero(full)
        window = (int(xs.min()), int(ys.min()), full[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    if window is None:
        return None
    left, top, box = window
    flat = box.ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return runs, int(left), int(top), int(box.shape[1]), int(box.shape[0])


def cvat_mask(counts: Sequence[int], *, left: int, top: int, width: int, height: int, image_width: int,
              image_height: int) -> np.ndarray:
    """The bool image_height x image_width mask of a CVAT ``<mask>``: `counts` alternate runs of 0s
    and 1s, starting with 0s, row by row over the width x height box at (left, top)."""
    if width < 1 or height < 1 or left < 0 or top < 0 or left + width > image_width or top + height > image_height:
        raise ValueError(f"the box ({left}, {top}) {width}x{height} reaches past the {image_width}x{image_height} "
                         "image.")
    runs = np.asarray(counts, dtype=np.int64)
    if (runs < 0).any() or int(runs.sum()) != width * height:
        raise ValueError(f"the runs cover {int(runs.sum())} pixels; the {width}x{height} box has {width * height}.")
    values = np.repeat((np.arange(runs.size) % 2).astype(bool), runs)
    out = np.zeros((image_height, image_width), dtype=bool)
    out[top:top + height, left:left + width] = values.reshape(height, width)
    return out


# --- the writer ------------------------------------------------------------------------------

class CvatWriter(ExportWriter):
    format = "cvat"

    def __init__(self, sink, **kwargs) -> None:
        super().__init__(sink, **kwargs)
        self._body = sink.part(f"{ANNOTATIONS}#1images")
        self._frames = 0
        self._groups = 0

    def add(self, image: ExportImage, data: bytes | None) -> None:
        self.write_image(image, data)
        out = [f'  <image id="{self._frames}" name={xml_attr(image.file_name)} width="{image.width}" '
               f'height="{image.height}">']
        for k, region in enumerate(image.regions):
            try:
                out += self._region(region, image)
            except ValueError as exc:      # the export fails: say which region to correct
                raise ValueError(f"image {image.image_id} ({image.file_name}) region {k}: {exc}") from None
        out.append("  </image>\n")
        self._body.write("\n".join(out).encode("utf-8"))
        self._frames += 1

    def _region(self, region: ExportRegion, image: ExportImage) -> list[str]:
        box = None if region.mask_rle is None else cvat_mask_counts(region.mask_rle, image.width, image.height)
        if region.points is None and box is None:
            return []          # an empty mask without a quad: nothing to draw
        label = region.category_slug
        self.category_id(label)
        group = ""
        if region.points is not None and box is not None:
            self._groups += 1
            group = f' group_id="{self._groups}"'
        common = f'label={xml_attr(label)} source="manual" occluded="0"'
        attributes = [f'      <attribute name="{LATEX_ATTRIBUTE}">{xml_text(region.latex)}</attribute>']
        for name, flags in FLAG_ATTRIBUTES:
            on = any(f in region.flags for f in flags)
            attributes.append(f'      <attribute name="{name}">{"true" if on else "false"}</attribute>')
        out = []
        if region.points is not None:
            points = ";".join(f"{number(x)},{number(y)}" for x, y in np.asarray(region.points, dtype=np.float64))
            out += [f'    <polygon {common} points="{points}" z_order="0"{group}>', *attributes, "    </polygon>"]
        if box is not None:
            counts, left, top, w, h = box
            rle_text = ", ".join(map(str, counts))
            out += [f'    <mask {common} rle="{rle_text}" left="{left}" top="{top}" width="{w}" height="{h}" '
                    f'z_order="0"{group}>', *attributes, "    </mask>"]
        self.regions += 1
        return out

    def finish(self) -> None:
        if not self.categories:  # a task without labels lets nothing be drawn
            self.category_id(DEFAULT_CATEGORY)
        head = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>", "  <meta>",
                "    <task>", f"      <name>{xml_text(TASK_NAME)}</name>", f"      <size>{self._frames}</size>",
                "      <mode>annotation</mode>", "      <overlap>0</overlap>", "      <bugtracker></bugtracker>",
                "      <start_frame>0</start_frame>", f"      <stop_frame>{max(self._frames - 1, 0)}</stop_frame>",
                "      <frame_filter></frame_filter>", "      <labels>"]
        for k, slug in enumerate(self.categories):
            head += ["        <label>", f"          <name>{xml_text(slug)}</name>",
                     f"          <color>{_COLOURS[k % len(_COLOURS)]}</color>", "          <type>any</type>",
                     "          <attributes>",
                     _attribute_meta(LATEX_ATTRIBUTE, "text", ""),
                     *(_attribute_meta(name, "checkbox", "false") for name, _ in FLAG_ATTRIBUTES),
                     "          </attributes>", "        </label>"]
        head += ["      </labels>", "    </task>", "  </meta>", ""]
        self.sink.part(f"{ANNOTATIONS}#0head").write("\n".join(head).encode("utf-8"))
        self.sink.part(f"{ANNOTATIONS}#2tail").write(b"</annotations>\n")


def _attribute_meta(name: str, input_type: str, default: str) -> str:
    return (f"            <attribute><name>{name}</name><mutable>False</mutable><input_type>{input_type}</input_type>"
            f"<default_value>{default}</default_value><values>{default}</values></attribute>")
