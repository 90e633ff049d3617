"""Turning real data sets into `IngestItem`s for `services.ingest_batch`.

- CROHME InkML (online handwriting): strokes rendered to a fixed-height PNG, the
  truth LaTeX kept (it becomes a gold answer), the capture session = sub-collection
  and writer, so one writer's formulas stay in one split.
- Image folders and archives (im2markup pages and anything else), optionally with a
  TSV of LaTeX (`name<TAB>latex`) and the ink bounding box when the formula is the
  only ink on the page.

Nothing here writes: the management commands hand these items to the services.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageOps

from common.archives import Member, iter_members
from common.inkml import InkMLError, parse_inkml, render_ink
from common.latex import character_problems

from .imaging import IMAGE_SUFFIXES, ink_bbox
from .services import IngestItem

INKML_SUFFIXES = {".inkml"}

# Default sources of the real data sets (see ../shared/data/README.md).
CROHME_SOURCE = dict(
    name="CROHME 2016",
    licence_code="cc-by-nc-sa-3.0",
    kind="public_dataset",
    copyright_holder="CROHME organisers (IRCCyN/IVC Université de Nantes, RIT, and the contributing groups)",
    attribution="CROHME 2016 Competition on Recognition of Online Handwritten Mathematical Expressions, "
    "data © the CROHME organisers and contributors, CC BY-NC-SA 3.0",
    url="https://www.isical.ac.in/~crohme/",
)
IM2MARKUP_SOURCE = dict(
    name="im2markup (Harvard NLP)",
    licence_code="mit",
    kind="public_dataset",
    copyright_holder="Harvard NLP (Yuntian Deng, Anssi Kanervisto, Jeffrey Ling, Alexander M. Rush)",
    attribution="im2markup / im2latex data, © Harvard NLP, MIT License",
    url="https://github.com/harvardnlp/im2markup",
)


@dataclass(frozen=True)
class InkRenderOptions:
    """How inks become images: a fixed height, the pen, the margin."""

    height: int = 128
    pen_width: float = 2.5
    margin: int = 8
    max_width: int | None = 2048


def png_bytes(img: PILImage.Image, *, compress_level: int = 3) -> bytes:
    """PNG bytes of `img`. Level 3 is about as small as the default for line art and
    several times faster to write."""
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=compress_level)
    return buf.getvalue()


def crohme_capture_session(member_name: str, writer: str | None) -> str:
    """`<sub-collection>/<writer>` (e.g. `HAMEX/depart001`, `TEST2016_INKML_GT/UN_131`),
    or "" when the file names no writer: an unknown session must not glue a whole
    sub-collection into one split."""
    if not writer:
        return ""
    parent = PurePosixPath(member_name).parent.name
    return f"{parent}/{writer}" if parent else writer


def inkml_item(member: Member, options: InkRenderOptions = InkRenderOptions()) -> IngestItem:
    """Parse and render one InkML member; an unusable file becomes an item with `error`."""
    png_name = str(PurePosixPath(member.name).with_suffix(".png"))
    if member.error or member.data is None:
        return IngestItem(name=member.name, data=None, error=member.error or "no data")
    try:
        ink = parse_inkml(member.data, name=os.path.basename(member.name))
        # The truth's characters, as images_ingest checks them: refused here before rendering.
        problems = character_problems(ink.truth or "")
        if problems:
            return IngestItem(name=member.name, data=None, error=f"truth_latex: {' '.join(problems)}")
        img = render_ink(ink, height=options.height, pen_width=options.pen_width, margin=options.margin,
                         max_width=options.max_width)
    except (InkMLError, ValueError) as exc:
        return IngestItem(name=member.name, data=None, error=str(exc))
    meta = {
        "inkml": member.name,
        "ui": ink.ui,
        "strokes": len(ink.traces),
        "render": {"height": options.height, "pen_width": options.pen_width, "margin": options.margin},
    }
    for key in ("writer", "copyright"):
        if ink.annotations.get(key):
            meta[key] = ink.annotations[key]
    return IngestItem(
        name=png_name, label=member.name, data=png_bytes(img), truth_latex=ink.truth or "", meta=meta,
        capture_session=crohme_capture_session(member.name, ink.writer),
        warning="" if ink.truth else "no truth annotation: imported without a LaTeX answer",
    )


def inkml_items(path: Path | str, options: InkRenderOptions = InkRenderOptions()) -> Iterator[IngestItem]:
    """An item per .inkml file of a folder or a .zip/.tar(.gz/.xz) archive, streaming."""
    for member in iter_members(path, INKML_SUFFIXES, max_bytes=settings.MATHSET_MAX_UPLOAD_BYTES):
        yield inkml_item(member, options)


class TsvError(ValueError):
    """A TSV line whose LaTeX cannot be a truth; the message names the line and the file."""


def read_tsv(path: Path | str, *, clashes: list[str] | None = None) -> dict[str, str]:
    """`name<TAB>latex` lines as {base name: latex}; blank and malformed lines are skipped.

    A line whose LaTeX holds what no LaTeX may hold (a C0 control, a Unicode non-character: the
    character check every stored LaTeX passes) raises `TsvError` naming it, before anything is
    imported: the TSV is one input, refused whole like one that cannot be read.

    Files are matched by base name, so `train/1.png` and `test/1.png` are one key: when their
    LaTeX differs, the later line wins and, given `clashes`, a sentence saying so is added to it
    (the import command prints them, instead of one file silently taking the other's LaTeX)."""
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    # utf-8-sig: a TSV saved by Excel or Notepad starts with a byte-order mark, which would
    # otherwise become part of the first file name and silently lose that line's LaTeX.
    with open(path, encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, start=1):
            name, sep, latex = line.rstrip("\n").rstrip("\r").partition("\t")
            if sep and name.strip():
                key, latex = os.path.basename(name.strip()), latex.strip()
                problems = character_problems(latex)
                if problems:
                    raise TsvError(f"line {number} ({key}): truth_latex: {' '.join(problems)}")
                if clashes is not None and key in out and out[key] != latex:
                    clashes.append(f"{key}: lines {first_line[key]} and {number} give different LaTeX "
                                   f"(files are matched by base name); line {number} is used")
                first_line.setdefault(key, number)
                out[key] = latex
    return out


def page_ink_bbox(data: bytes) -> list[int] | None:
    """The ink bounding box of an image file (orientation applied), or None if
    it cannot be decoded (the ingest then reports why) or is blank."""
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            return ink_bbox(ImageOps.exif_transpose(img))
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError):
        return None


def _decodes(data: bytes) -> bool:
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError):
        return False


def image_items(
    path: Path | str,
    *,
    truths: dict[str, str] | None = None,
    with_ink_bbox: bool = False,
    seen_names: set[str] | None = None,
) -> Iterator[IngestItem]:
    """An item per image file of a folder or archive.

    With `truths` (from a TSV), the file's LaTeX becomes its truth, and a file the
    TSV does not mention is imported with a warning. With `with_ink_bbox`, the box of
    the page's only ink goes to `meta["ink_bbox"]` as [x0, y0, x1, y1] (x1, y1
    exclusive): for pages where the formula is the only ink, it is the gold region.
    The base name of every image file is added to `seen_names`, for reporting TSV lines no file used.
    """
    # An upload's size limit holds for each file of an archive too (checked before inflating it).
    for member in iter_members(path, IMAGE_SUFFIXES, max_bytes=settings.MATHSET_MAX_UPLOAD_BYTES):
        if seen_names is not None:
            seen_names.add(os.path.basename(member.name))
        if member.error or member.data is None:
            yield IngestItem(name=member.name, data=None, error=member.error or "no data")
            continue
        meta: dict = {"path": member.name}
        warnings = []
        if with_ink_bbox:
            box = page_ink_bbox(member.data)
            if box is not None:
                meta["ink_bbox"] = box
            elif box is None and _decodes(member.data):
                warnings.append("blank page: no ink found, so no ink box")
        truth = ""
        if truths is not None:
            truth = truths.get(os.path.basename(member.name), "")
            if not truth:
                warnings.append("no LaTeX for this file in the TSV")
        warning = "; ".join(warnings)
        yield IngestItem(name=member.name, data=member.data, truth_latex=truth, meta=meta, warning=warning)
