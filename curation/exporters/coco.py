"""COCO instances JSON, one file per split: ``annotations/<split>.json`` and ``images/``.

Each annotation carries ``segmentation`` (the mask as RLE when there is one, otherwise the
quad as a one-polygon list), ``bbox``, ``area``, ``iscrowd: 0`` and extra fields that
COCO readers ignore: ``latex``, ``flags`` and, for a region with both a mask and a quad,
``quad`` (the 8 reading-order coordinates; a quad-only region's polygon is already in reading
order). Images carry ``license`` (an id into ``licenses``), ``split``, ``source`` and
``categories`` (the image's kinds). ``pycocotools.coco.COCO`` loads the files as they are, and
``COCO.loadRes`` / ``COCOeval`` take their annotations as detections (tests/curation/
test_export_tool_compat.py). Masks are RLE with ``iscrowd: 0`` (one formula each, not a crowd:
COCOeval would ignore a crowd region); detectron2 needs ``INPUT.MASK_FORMAT=bitmask`` for them.
A region whose mask is empty is written with its quad, or left out without one (as YOLO-OBB and
Label Studio do): COCOeval counts every ``iscrowd: 0`` annotation as an object to find, and one
of area 0 could never be matched.
"""
from __future__ import annotations

from .base import ExportWriter, JsonArrayPart, dumps, split_name
from .records import ExportImage, quad_area, quad_bbox, rle_area_bbox


class CocoWriter(ExportWriter):
    format = "coco"

    def __init__(self, sink, **kwargs) -> None:
        super().__init__(sink, **kwargs)
        self._images: dict[str, JsonArrayPart] = {}
        self._annotations: dict[str, JsonArrayPart] = {}
        self._licence_ids: dict[str, int] = {}
        self._licences: list[dict] = []
        self._next_ann = 1

    def _licence_id(self, image: ExportImage) -> int:
        lid = self._licence_ids.get(image.licence.code)
        if lid is None:
            lid = self._licence_ids[image.licence.code] = len(self._licence_ids) + 1
            self._licences.append({"id": lid, "name": image.licence.name or image.licence.code,
                                   "url": image.licence.url, "code": image.licence.code})
        return lid

    def _arrays(self, split: str) -> tuple[JsonArrayPart, JsonArrayPart]:
        if split not in self._images:
            self._images[split] = JsonArrayPart(self.sink.part(f"annotations/{split}.json#1images"))
            self._annotations[split] = JsonArrayPart(self.sink.part(f"annotations/{split}.json#2annotations"))
        return self._images[split], self._annotations[split]

    def add(self, image: ExportImage, data: bytes | None) -> None:
        self.write_image(image, data)
        images, annotations = self._arrays(split_name(image.split))
        images.append({
            "id": image.image_id, "file_name": image.file_name, "width": image.width, "height": image.height,
            "license": self._licence_id(image), "split": split_name(image.split), "source": image.source.name,
            "categories": list(image.categories),
        })
        anns = []
        for region in image.regions:
            quad = region.points.ravel().tolist() if region.points is not None else None
            mask = region.mask_rle
            if mask is not None:
                area, bbox = rle_area_bbox(mask)
                if area <= 0:  # an empty mask: no object to find (see the module docstring)
                    if quad is None:
                        continue
                    mask = None
            ann = {"id": self._next_ann, "image_id": image.image_id,
                   "category_id": self.category_id(region.category_slug), "iscrowd": 0}
            if mask is not None:
                counts = mask["counts"]
                ann["segmentation"] = {"size": list(mask["size"]),
                                       "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
                if quad is not None:
                    ann["quad"] = quad
            else:
                area, bbox = quad_area(quad), quad_bbox(quad)
                ann["segmentation"] = [quad]
            ann["bbox"] = bbox
            ann["area"] = area
            ann["latex"] = region.latex
            if region.flags:
                ann["flags"] = list(region.flags)
            if region.score is not None:
                ann["score"] = region.score
            anns.append(ann)
            self._next_ann += 1
        annotations.extend(anns)
        self.regions += len(anns)

    def finish(self) -> None:
        # Each split's document is three parts concatenated in name order: the head with the
        # images array, the annotations array, then the tail with categories and licences
        # (known only now; JSON key order does not matter to readers).
        categories = [{"id": i, "name": c.slug, "supercategory": "formula", "display_name": c.name}
                      for i, c in enumerate(self.categories.values(), start=1)]
        for split in list(self._images):
            self._images[split].close()
            self._annotations[split].close()
        for split in list(self._images):
            head = self.sink.part(f"annotations/{split}.json#0head")
            head.write(b'{"info":' + dumps({"description": "Mathset export", "split": split, "version": "1.0"})
                       + b',"images":')
            mid = self.sink.part(f"annotations/{split}.json#1images")
            mid.write(b',"annotations":')
            tail = self.sink.part(f"annotations/{split}.json#3tail")
            tail.write(b',"categories":' + dumps(categories) + b',"licenses":' + dumps(self._licences) + b"}")
