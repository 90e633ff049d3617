"""Export writers: a snapshot's images and labels streamed into a zip, licence-clean.

Usage::

    from curation.exporters import export, ExportImage, ExportRegion, LicenceInfo, SourceInfo

    result = export(images_iterator, "out.zip", format="coco", intended_use="commercial")
    result.excluded          # [{"licence": "cc-by-nc-sa-3.0", "reason": "...", "images": 12}]

``images`` is any iterable of :class:`ExportImage` (a generator over a database cursor is
the intended use): each image is written and forgotten before the next is read, so memory
stays flat however large the export. ``dest`` is a path or a writable binary file object.

Formats (``FORMATS``): ``coco``, ``yolo-obb``, ``im2latex``, ``jsonl``, ``label-studio``,
``icdar2015``, ``cvat`` (CVAT for images 1.1 XML). Every zip also holds ``LICENSES.json`` (per licence: flags and image count,
plus what was left out and why), ``ATTRIBUTION.md`` (each source's attribution text,
copyright holder, URL and licence terms) and ``PROVENANCE.jsonl`` (one line per image: its
source, copyright holder, licence and the files written from it, crops included), so every
file can be traced to the attribution it needs even in formats whose labels carry none.

Licence policy: with ``intended_use="commercial"`` images whose licence (as recorded, or as
it is now: ``ExportImage.current_licence``) forbids commercial use are left out; formats that
write crops (im2latex) also leave out images whose licence forbids derivatives. What was left out is counted per licence and reason, in the manifest and
in the returned :class:`ExportResult`.

Takedowns: an image marked ``taken_down`` (a copyright takedown or a personal-data erasure
after the snapshot was frozen) is left out without reading its pixels, counted under the
reason "taken down ...", and listed in ``TAKEDOWNS.json`` (image id, file name, kind, date;
written only when the export left something out for that reason, so exports of untouched
snapshots stay byte-for-byte what they were).
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import zipfile
from collections.abc import Iterable
from typing import IO, Any

from .base import (
    COMMERCIAL,
    PROVENANCE,
    REASON_NO_DERIVATIVES,
    REASON_NON_COMMERCIAL,
    REASON_NOW_NO_DERIVATIVES,
    REASON_NOW_NON_COMMERCIAL,
    REASON_TAKEN_DOWN,
    RESEARCH,
    TAKEDOWNS,
    ExportResult,
    ExportWriter,
    LicenceManifest,
    ZipSink,
    dumps,
)
from .coco import CocoWriter
from .cvat import CvatWriter
from .icdar import IcdarWriter
from .im2latex import Im2LatexWriter
from .jsonl import JsonlWriter
from .labelstudio import LabelStudioWriter
from .records import (
    CategoryInfo,
    ExportImage,
    ExportRegion,
    LicenceInfo,
    SourceInfo,
    mask_to_rle,
    rle_to_mask,
)
from .yolo import YoloObbWriter

FORMATS: dict[str, type[ExportWriter]] = {
    w.format: w for w in (CocoWriter, YoloObbWriter, Im2LatexWriter, JsonlWriter, LabelStudioWriter, IcdarWriter,
                          CvatWriter)
}

__all__ = [
    "COMMERCIAL", "FORMATS", "RESEARCH", "CategoryInfo", "ExportImage", "ExportRegion", "ExportResult",
    "LicenceInfo", "SourceInfo", "exclusion_reason", "export", "mask_to_rle", "rle_to_mask",
]


_SPLIT_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def check_names(image: ExportImage) -> None:
    """Refuse names that would escape the archive's folders when unpacked (zip slip)."""
    name = image.file_name
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or ".." in parts or "" in parts
            or posixpath.normpath(name) != name):
        raise ValueError(f"image {image.image_id}: file_name {name!r} must be a plain relative path")
    if not _SPLIT_RE.match(image.split or ""):
        raise ValueError(f"image {image.image_id}: split {image.split!r} may only hold letters, digits, '_' and '-'")


def exclusion_reason(image: ExportImage, *, intended_use: str, makes_derivatives: bool) -> str | None:
    """Why `image` may not go into this export, or None when it may.

    Both the licence recorded with the image and, where known, the one its source has now
    must allow the use: a licence found to be narrower after a snapshot was frozen wins.
    """
    now = image.current_licence
    if intended_use == COMMERCIAL:
        if not image.licence.allows_commercial:
            return REASON_NON_COMMERCIAL
        if now is not None and not now.allows_commercial:
            return REASON_NOW_NON_COMMERCIAL
    if makes_derivatives:
        if not image.licence.allows_derivatives:
            return REASON_NO_DERIVATIVES
        if now is not None and not now.allows_derivatives:
            return REASON_NOW_NO_DERIVATIVES
    return None


def export(
    images: Iterable[ExportImage],
    dest: str | os.PathLike | IO[bytes],
    *,
    format: str,
    intended_use: str = RESEARCH,
    categories: Iterable[CategoryInfo] = (),
    include_images: bool = True,
    compresslevel: int | None = None,
    **options: Any,
) -> ExportResult:
    """Stream `images` into a zip at `dest` in `format`; return what went in and what did not.

    ``categories`` fixes the order (and so the ids) of region categories; categories first
    seen in the data are appended. ``include_images=False`` writes labels only (never calls
    ``open_bytes``), except for im2latex, whose crops need the pixels. Format options:
    ``label-studio`` takes ``image_url``, ``as_predictions``, ``model_version``;
    ``im2latex`` takes ``normalize_latex``.
    """
    writer_cls = FORMATS.get(format)
    if writer_cls is None:
        raise ValueError(f"unknown export format {format!r}; choose one of {sorted(FORMATS)}")
    if intended_use not in (COMMERCIAL, RESEARCH):
        raise ValueError(f"intended_use must be {COMMERCIAL!r} or {RESEARCH!r}, not {intended_use!r}")
    try:
        manifest, writer, members, images_in = _write(images, dest, writer_cls, intended_use=intended_use,
                                                      categories=categories, include_images=include_images,
                                                      compresslevel=compresslevel, options=options, fmt=format)
    except BaseException:
        # A half-written archive must not survive as if it were an export.
        if isinstance(dest, str | os.PathLike) and os.path.exists(dest):
            os.remove(dest)
        raise
    return ExportResult(
        format=format, intended_use=intended_use, images=images_in, regions=writer.regions,
        members=members, licences={code: c.images for code, c in sorted(manifest.licences.items())},
        excluded=manifest.excluded_rows(),
    )


def _write(images: Iterable[ExportImage], dest: str | os.PathLike | IO[bytes], writer_cls: type[ExportWriter], *,
           intended_use: str, categories: Iterable[CategoryInfo], include_images: bool, compresslevel: int | None,
           options: dict[str, Any], fmt: str) -> tuple[LicenceManifest, ExportWriter, int, int]:
    """The export loop: policy check, writer, then the manifest and attribution files."""
    manifest = LicenceManifest()
    images_in = 0
    taken_down: list[dict] = []
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel,
                         allowZip64=True) as zf:
        sink = ZipSink(zf)
        try:
            writer = writer_cls(sink, categories=categories, include_images=include_images, **options)
            provenance = sink.part(PROVENANCE)
            for image in images:
                check_names(image)
                if image.taken_down:
                    manifest.exclude(image, REASON_TAKEN_DOWN.format(kind=image.taken_down))
                    taken_down.append({"image_id": image.image_id, "file_name": image.file_name,
                                       "kind": image.taken_down, "taken_down_on": image.taken_down_on})
                    continue
                reason = exclusion_reason(image, intended_use=intended_use,
                                          makes_derivatives=writer_cls.makes_derivatives)
                if reason is not None:
                    manifest.exclude(image, reason)
                    continue
                wants_pixels = writer_cls.needs_pixels or include_images
                data = image.open_bytes() if wants_pixels and image.open_bytes is not None else None
                sink.recent.clear()
                if writer.add(image, data) is False:
                    continue  # nothing of it is in the zip: not counted, not credited
                manifest.include(image)
                provenance.write(dumps(_provenance_row(image, sink.recent)) + b"\n")
                images_in += 1
            writer.finish()
            sink.flush_parts()
        finally:
            sink.discard_parts()
        sink.write("LICENSES.json", manifest.licences_json(fmt=fmt, intended_use=intended_use,
                                                           images=images_in, regions=writer.regions))
        sink.write("ATTRIBUTION.md", manifest.attribution_md(derivatives=writer_cls.makes_derivatives))
        if taken_down:
            sink.write(TAKEDOWNS, _takedowns_json(taken_down))
    return manifest, writer, sink.members, images_in


def _takedowns_json(rows: list[dict]) -> str:
    """TAKEDOWNS.json: the snapshot's items this export leaves out because they were taken
    down after the freeze (no free-text reason nor requester: those may be personal data)."""
    doc = {"note": "These images of the snapshot were taken down after it was frozen (a copyright takedown "
                   "or a personal-data erasure). They are left out of this export; delete any copy of them "
                   "you hold from an earlier export of this snapshot.",
           "images": len(rows), "items": rows}
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _provenance_row(image: ExportImage, files: list[str]) -> dict:
    """One line of PROVENANCE.jsonl: what `image` and the `files` written from it are credited to.

    Formats such as YOLO-OBB, ICDAR or im2latex crops name no source in their own files, so
    without this line the attribution in ATTRIBUTION.md could not be matched to a file.
    """
    return {"image_id": image.image_id, "file_name": image.file_name, "files": list(files),
            "source": image.source.name, "copyright_holder": image.source.copyright_holder,
            "source_url": image.source.url, "licence": image.licence.code, "licence_name": image.licence.name,
            "licence_url": image.licence.url}
