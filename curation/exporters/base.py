"""What every export shares: the zip sink, the licence policy, the manifest, the result.

Streaming design
----------------
A zip member can only be written while no other member is open, yet most formats interleave
small files (image bytes, label files) with one big document (a COCO JSON, a JSONL file, a
formula list). Big documents are therefore written to *parts*: spooled temporary files (in
memory up to 256 KiB, on disk beyond) that are copied into the zip in 1 MiB chunks when the
export finishes. Nothing grows with the number of images except zipfile's own central
directory (one small ``ZipInfo`` per member) and per-licence/per-source counters.

Every member gets a fixed timestamp and mode, so exporting the same snapshot twice gives the
same bytes (a frozen snapshot can be rebuilt and checked against its hash).
"""
from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

import orjson

from .records import CategoryInfo, ExportImage, LicenceInfo, SourceInfo

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SPOOL_BYTES = 256 << 10
_COPY_CHUNK = 1 << 20
# Already-compressed image formats are stored, not deflated again.
_STORED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")

COMMERCIAL = "commercial"
RESEARCH = "research"

REASON_NON_COMMERCIAL = "licence forbids commercial use"
REASON_NO_DERIVATIVES = "licence forbids derivatives (this format writes crops of the image)"
REASON_NOW_NON_COMMERCIAL = "licence now forbids commercial use (changed since the snapshot was frozen)"
REASON_NOW_NO_DERIVATIVES = ("licence now forbids derivatives (changed since the snapshot was frozen; "
                             "this format writes crops of the image)")
PROVENANCE = "PROVENANCE.jsonl"
TAKEDOWNS = "TAKEDOWNS.json"
REASON_TAKEN_DOWN = "taken down since the snapshot was frozen ({kind})"


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (orjson: the label documents are the export's hot path).

    numpy arrays and scalars are written as lists and numbers.
    """
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


class JsonArrayPart:
    """A JSON array streamed into a part, one element at a time."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._first = True
        fh.write(b"[")

    def append(self, obj: Any) -> None:
        self._fh.write(dumps(obj) if self._first else b"," + dumps(obj))
        self._first = False

    def extend(self, objs: list) -> None:
        """Append several elements with one encoder call (an image's annotations at once)."""
        if not objs:
            return
        body = dumps(objs)[1:-1]
        self._fh.write(body if self._first else b"," + body)
        self._first = False

    def close(self) -> None:
        self._fh.write(b"]")


class ZipSink:
    """Writes members into an open :class:`zipfile.ZipFile` with fixed timestamps."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self._parts: dict[str, IO[bytes]] = {}
        self.members = 0
        # Whole members written since the caller last cleared it: the export loop reads it after
        # each image to list the files made from that image (their provenance).
        self.recent: list[str] = []

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
        info.compress_type = zipfile.ZIP_STORED if name.lower().endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def write(self, name: str, data: bytes | str) -> None:
        """One whole member (a label file, an image): small enough to hold at once."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        with self.zf.open(self._info(name), "w", force_zip64=True) as out:
            out.write(data)
        self.members += 1
        self.recent.append(name)

    def part(self, name: str) -> IO[bytes]:
        """The spooled file that becomes (a piece of) member `name` at :meth:`flush_parts`."""
        fh = self._parts.get(name)
        if fh is None:
            fh = self._parts[name] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
        return fh

    def has_part(self, name: str) -> bool:
        return name in self._parts

    def flush_parts(self) -> None:
        """Copy every part into the zip and drop it.

        A part named ``member#key`` is one piece of ``member``; pieces are concatenated in
        ``key`` order, which lets a writer fill a document's head after its body.
        Members are written in name order, so the zip layout is deterministic.
        """
        members: dict[str, list[str]] = {}
        for name in sorted(self._parts):
            members.setdefault(name.split("#", 1)[0], []).append(name)
        for member in sorted(members):
            with self.zf.open(self._info(member), "w", force_zip64=True) as out:
                for name in members[member]:
                    fh = self._parts.pop(name)
                    fh.seek(0)
                    shutil.copyfileobj(fh, out, _COPY_CHUNK)
                    fh.close()
            self.members += 1

    def discard_parts(self) -> None:
        for fh in self._parts.values():
            fh.close()
        self._parts.clear()


@dataclass
class _LicenceCount:
    info: LicenceInfo
    images: int = 0


@dataclass
class _SourceCount:
    info: SourceInfo
    licences: set[str] = field(default_factory=set)
    images: int = 0


class LicenceManifest:
    """Counts per licence and per source of what went in, and per reason of what was left out."""

    def __init__(self) -> None:
        self.licences: dict[str, _LicenceCount] = {}
        self.sources: dict[str, _SourceCount] = {}
        self.excluded: dict[tuple[str, str], int] = {}

    def include(self, image: ExportImage) -> None:
        lic = self.licences.setdefault(image.licence.code, _LicenceCount(image.licence))
        lic.images += 1
        src = self.sources.setdefault(image.source.name, _SourceCount(image.source))
        src.licences.add(image.licence.code)
        src.images += 1

    def exclude(self, image: ExportImage, reason: str) -> None:
        key = (image.licence.code, reason)
        self.excluded[key] = self.excluded.get(key, 0) + 1

    def excluded_rows(self) -> list[dict]:
        return [{"licence": code, "reason": reason, "images": n}
                for (code, reason), n in sorted(self.excluded.items())]

    def licences_json(self, *, fmt: str, intended_use: str, images: int, regions: int) -> str:
        rows = []
        for code in sorted(self.licences):
            c = self.licences[code]
            rows.append({
                "code": code, "name": c.info.name, "url": c.info.url,
                "allows_commercial": c.info.allows_commercial, "allows_derivatives": c.info.allows_derivatives,
                "share_alike": c.info.share_alike, "requires_attribution": c.info.requires_attribution,
                "images": c.images,
            })
        excluded = self.excluded_rows()
        doc = {
            "format": fmt,
            "intended_use": intended_use,
            "images": images,
            "regions": regions,
            "licences": rows,
            "share_alike": sorted(code for code, c in self.licences.items() if c.info.share_alike),
            "excluded": {"images": sum(r["images"] for r in excluded), "by_reason": excluded},
        }
        return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"

    def attribution_md(self, *, derivatives: bool = False) -> str:
        """The attribution file. `derivatives`: the export's image files are crops made from the
        images, which licences such as CC BY 4.0 (section 3(a)(1)(B)) require to be said."""
        lines = ["# Attribution", "",
                 "Images in this export come from the sources below. Keep this file with the data "
                 "and reproduce each attribution wherever the images are shown or redistributed. "
                 f"`{PROVENANCE}` names the source, copyright holder and licence of every image and "
                 "of each file made from it.", ""]
        if derivatives:
            lines += ["The image files in this export are modified: each is a crop of an original image, cut "
                      "out along a formula's quadrilateral and perspective-rectified. "
                      f"`{PROVENANCE}` names the original image of each crop.", ""]
        for name in sorted(self.sources):
            s = self.sources[name]
            lics = ", ".join(f"{self.licences[c].info.name or c} ({c})" for c in sorted(s.licences))
            lines.append(f"## {name}")
            lines.append("")
            lines.append(f"- Copyright holder: {s.info.copyright_holder or 'not recorded'}")
            lines.append(f"- URL: {s.info.url or 'none'}")
            lines.append(f"- Licence: {lics}")
            for c in sorted(s.licences):
                if self.licences[c].info.url:
                    lines.append(f"- Licence text ({c}): {self.licences[c].info.url}")
            for c in sorted(s.licences):
                lines += _licence_terms(c, self.licences[c].info)
            lines.append(f"- Images: {s.images}")
            lines.append("")
            lines.append(s.info.attribution.strip() or "_No attribution text recorded._")
            lines.append("")
        if not self.sources:
            lines.append("_No images in this export._")
            lines.append("")
        return "\n".join(lines)


def _licence_terms(code: str, info: LicenceInfo) -> list[str]:
    """The conditions beyond attribution that travel with the images of a licence."""
    name = info.name or code
    terms = []
    if not info.allows_commercial:
        terms.append(f"- NonCommercial ({code}): these images may not be used for commercial purposes.")
    if not info.allows_derivatives:
        terms.append(f"- NoDerivatives ({code}): adapted versions of these images may not be shared.")
    if info.share_alike:
        terms.append(f"- ShareAlike ({code}): adaptations of these images must be shared under the same licence "
                     f"({name}) or a compatible one.")
    return terms


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and what it left out, for the job record and the API."""

    format: str
    intended_use: str
    images: int
    regions: int
    members: int
    licences: dict[str, int]
    excluded: list[dict]  # [{"licence": code, "reason": why, "images": n}]

    @property
    def excluded_images(self) -> int:
        return sum(row["images"] for row in self.excluded)


def split_name(split: str) -> str:
    """The canonical split names: train, validation, test (others are kept, lower-cased)."""
    s = (split or "").strip().lower()
    return {"val": "validation", "valid": "validation", "validate": "validation", "dev": "validation",
            "": "unassigned"}.get(s, s)


class ExportWriter:
    """One export format. Subclasses implement :meth:`add` and :meth:`finish`.

    ``makes_derivatives`` marks formats that write something made from the pixels (crops),
    which a no-derivatives licence does not allow.
    """

    format: ClassVar[str] = ""
    makes_derivatives: ClassVar[bool] = False
    needs_pixels: ClassVar[bool] = False

    def __init__(self, sink: ZipSink, *, categories: Iterable[CategoryInfo] = (), include_images: bool = True,
                 **options: Any) -> None:
        if options:
            raise TypeError(f"{self.format} export does not take options {sorted(options)}")
        self.sink = sink
        self.include_images = include_images
        self.categories: dict[str, CategoryInfo] = {}
        self._category_ids: dict[str, int] = {}
        for c in categories:
            self.category_id(c.slug, c.name)
        self.regions = 0

    def category_id(self, slug: str, name: str = "") -> int:
        """1-based id of a category, registering it the first time it is seen."""
        cid = self._category_ids.get(slug)
        if cid is None:
            cid = self._category_ids[slug] = len(self._category_ids) + 1
            self.categories[slug] = CategoryInfo(slug, name or slug)
        return cid

    def image_member(self, image: ExportImage) -> str:
        return f"images/{image.file_name}"

    def write_image(self, image: ExportImage, data: bytes | None) -> None:
        if self.include_images and data is not None:
            self.sink.write(self.image_member(image), data)

    def add(self, image: ExportImage, data: bytes | None) -> bool | None:  # pragma: no cover - abstract
        """Write what `image` contributes. False: nothing of it went in (im2latex: no crop), so it
        is not counted, credited or listed in PROVENANCE.jsonl; None or True: it went in."""
        raise NotImplementedError

    def finish(self) -> None:
        """Write whatever can only be written once every image was seen."""
