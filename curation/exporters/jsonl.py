"""JSON Lines: ``annotations.jsonl`` (one line per image) and ``images/``.

A line: ``{"image_id", "file_name", "width", "height", "split", "categories",
"licence": {code, name, url, allows_commercial, ...}, "source": {name, copyright_holder,
attribution, url}, "regions": [{"points": [[x, y] x4] | null, "mask": RLE | null, "latex",
"category", "categories", "flags"}]}``: ``category`` is the region's first category (the
one COCO and YOLO use, ``formula`` when it has none), ``categories`` all of them. The
simplest format to stream into a training loop.
"""
from __future__ import annotations

from dataclasses import asdict

from .base import ExportWriter, dumps, split_name
from .records import ExportImage


class JsonlWriter(ExportWriter):
    format = "jsonl"

    def __init__(self, sink, **kwargs) -> None:
        super().__init__(sink, **kwargs)
        self._out = sink.part("annotations.jsonl")
        self._licences: dict[str, dict] = {}
        self._sources: dict[str, dict] = {}

    def add(self, image: ExportImage, data: bytes | None) -> None:
        self.write_image(image, data)
        # Licence and source dicts are built once per distinct value, not once per line.
        lic = self._licences.get(image.licence.code)
        if lic is None:
            lic = self._licences[image.licence.code] = asdict(image.licence)
        src = self._sources.get(image.source.name)
        if src is None:
            src = self._sources[image.source.name] = asdict(image.source)
        regions = []
        for r in image.regions:
            mask = None
            if r.mask_rle is not None:
                counts = r.mask_rle["counts"]
                mask = {"size": list(r.mask_rle["size"]),
                        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
            regions.append({
                "points": r.points.tolist() if r.points is not None else None, "mask": mask,
                "latex": r.latex, "category": r.category_slug,
                # A region may have several categories (handwritten and highlighter): all of them.
                "categories": list(r.categories or ((r.category,) if r.category else ())),
                "flags": list(r.flags),
            })
        self.regions += len(regions)
        line = {"image_id": image.image_id, "file_name": image.file_name, "width": image.width,
                "height": image.height, "split": split_name(image.split), "categories": list(image.categories),
                "licence": lic, "source": src, "regions": regions}
        self._out.write(dumps(line) + b"\n")
