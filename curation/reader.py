"""Read a Mathset export zip in PyTorch.

Fetch the zip first (the page ``/snapshots/<id>/`` has a download link; the API streams it)::

    curl -H "Authorization: Token $TOKEN" -o export.zip https://mathset.example/api/v1/exports/<id>/download/

then::

    from curation.reader import ExportDataset
    from torch.utils.data import DataLoader

    ds = ExportDataset("export.zip", split="train")            # COCO or JSONL export
    image, target = ds[0]
    image            # uint8 tensor, 3 x H x W (RGB)
    target["quads"]  # float32 N x 4 x 2, pixels, reading order (NaN rows where a region has no quad)
    target["masks"]  # uint8 N x H x W: each region's mask, or its quad rasterised
    target["latex"]  # list of N strings
    target["categories"], target["image_id"], target["file_name"]

    loader = DataLoader(ds, batch_size=8, collate_fn=ExportDataset.collate)

    crops = ExportDataset("im2latex.zip", mode="crops", split="train")
    crop, latex = crops[0]          # uint8 3 x h x w tensor of the rectified region, its formula

The format is detected from the zip's members (``annotations/<split>.json`` for COCO,
``annotations.jsonl`` for JSONL, ``formulas.lst`` for im2latex). Labels are read into memory
once (they are small next to the pixels); images are decoded on access. The zip is opened
lazily in each DataLoader worker process, since a file handle must not be shared across a
fork. ``transform(image, target)`` (or ``transform(crop, latex)``) runs last.
"""
from __future__ import annotations

import io
import json
import os
import posixpath
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from common import rle

_LIST_FOR_SPLIT = {"train": "train.lst", "validation": "validate.lst", "test": "test.lst"}


def _rgb_tensor(data: bytes) -> torch.Tensor:
    with PILImage.open(io.BytesIO(data)) as img:
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = PILImage.alpha_composite(white, rgba).convert("RGB")
        else:
            rgb = img.convert("RGB")
        return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()


def _segmentation_mask(seg: Any, height: int, width: int) -> np.ndarray:
    if isinstance(seg, list):  # polygons
        rles = mask_utils.frPyObjects(seg, height, width)
        return mask_utils.decode(mask_utils.merge(rles))
    counts = seg["counts"]
    if isinstance(counts, list):
        return mask_utils.decode(mask_utils.frPyObjects(seg, height, width))
    return mask_utils.decode({"size": seg["size"], "counts": counts.encode("ascii") if isinstance(counts, str)
                              else counts})


def _draw_segmentation(out: np.ndarray, seg: Any, height: int, width: int) -> None:
    """Draw `seg` into the zeroed HxW `out`, decoding only the mask's bounding box: a 48 MP photo's
    full decode is a second 48 MB array beside the target's own, for a formula of a few hundred
    thousand pixels. A segmentation that is not canonical COCO RLE is decoded whole, as before."""
    if isinstance(seg, list):  # polygons
        coco = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        seg = {"size": [int(v) for v in coco["size"]], "counts": coco["counts"].decode("ascii")}
    try:
        window = rle.decode_window(seg)
    except rle.MaskError:
        window = None
        out[:] = _segmentation_mask(seg, height, width)
    if window is not None:
        x0, y0, m = window
        out[y0:y0 + m.shape[0], x0:x0 + m.shape[1]] = m


class ExportDataset(Dataset):
    """Images with their regions (``mode="images"``), or rectified formula crops (``mode="crops"``)."""

    def __init__(self, path: str | os.PathLike, *, split: str | None = None, mode: str = "images",
                 transform: Callable | None = None, load_masks: bool = True) -> None:
        if mode not in ("images", "crops"):
            raise ValueError("mode must be 'images' or 'crops'")
        if split is not None and split not in _LIST_FOR_SPLIT:
            # A misspelt split ("val", im2latex's own "validate") would read as an empty dataset.
            raise ValueError(f"split must be train, validation or test (or None for all), not {split!r}")
        self.path = os.fspath(path)
        self.split = split
        self.mode = mode
        self.transform = transform
        self.load_masks = load_masks
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None
        with zipfile.ZipFile(self.path) as zf:
            names = set(zf.namelist())
            if mode == "crops":
                if "formulas.lst" not in names:
                    raise ValueError(f"{self.path} is not an im2latex export (no formulas.lst)")
                self.format = "im2latex"
                self._samples = self._read_im2latex(zf, names)
            elif "annotations.jsonl" in names:
                self.format = "jsonl"
                self._samples = self._read_jsonl(zf)
            elif any(n.startswith("annotations/") and n.endswith(".json") for n in names):
                self.format = "coco"
                self._samples = self._read_coco(zf, names)
            else:
                raise ValueError(f"{self.path} is neither a COCO nor a JSONL export")

    # --- label loading ---------------------------------------------------------------------

    def _read_coco(self, zf: zipfile.ZipFile, names: set[str]) -> list[dict]:
        files = sorted(n for n in names if n.startswith("annotations/") and n.endswith(".json"))
        if self.split is not None:
            files = [f for f in files if posixpath.basename(f) == f"{self.split}.json"]
        samples = []
        for name in files:
            doc = json.loads(zf.read(name))
            cats = {c["id"]: c["name"] for c in doc.get("categories", [])}
            by_image: dict[int, list] = {}
            for ann in doc["annotations"]:
                by_image.setdefault(ann["image_id"], []).append(ann)
            for img in doc["images"]:
                regions = []
                for ann in sorted(by_image.get(img["id"], []), key=lambda a: a["id"]):
                    seg = ann.get("segmentation")
                    quad = ann.get("quad")
                    if quad is None and isinstance(seg, list) and len(seg) == 1 and len(seg[0]) == 8:
                        quad = seg[0]
                    regions.append({"points": np.asarray(quad, dtype=np.float32).reshape(4, 2) if quad else None,
                                    "segmentation": seg, "latex": ann.get("latex", ""),
                                    "category": cats.get(ann["category_id"], str(ann["category_id"]))})
                samples.append({"image_id": img["id"], "file_name": img["file_name"], "width": img["width"],
                                "height": img["height"], "member": f"images/{img['file_name']}", "regions": regions})
        return samples

    def _read_jsonl(self, zf: zipfile.ZipFile) -> list[dict]:
        samples = []
        with zf.open("annotations.jsonl") as fh:
            for line in io.TextIOWrapper(fh, encoding="utf-8"):
                rec = json.loads(line)
                if self.split is not None and rec["split"] != self.split:
                    continue
                regions = [{"points": np.asarray(r["points"], dtype=np.float32) if r["points"] else None,
                            "segmentation": r["mask"] if r["mask"] is not None else
                            ([np.asarray(r["points"]).reshape(-1).tolist()] if r["points"] else None),
                            "latex": r["latex"], "category": r["category"]} for r in rec["regions"]]
                samples.append({"image_id": rec["image_id"], "file_name": rec["file_name"], "width": rec["width"],
                                "height": rec["height"], "member": f"images/{rec['file_name']}",
                                "regions": regions})
        return samples

    def _read_im2latex(self, zf: zipfile.ZipFile, names: set[str]) -> list[dict]:
        formulas = zf.read("formulas.lst").decode("utf-8").split("\n")
        lists = [_LIST_FOR_SPLIT.get(self.split, f"{self.split}.lst")] if self.split else sorted(
            n for n in names if n.endswith(".lst") and n != "formulas.lst")
        samples = []
        for lst in lists:
            if lst not in names:
                continue
            for line in zf.read(lst).decode("utf-8").splitlines():
                crop, idx = line.rsplit(" ", 1)
                samples.append({"member": f"images/{crop}", "latex": formulas[int(idx)]})
        return samples

    # --- access ------------------------------------------------------------------------------

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._pid = os.getpid()
        return self._zip

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_zip"] = None  # reopened in the worker
        return state

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int):
        sample = self._samples[index]
        image = _rgb_tensor(self._archive().read(sample["member"]))
        if self.mode == "crops":
            out = (image, sample["latex"])
            return self.transform(*out) if self.transform else out
        h, w = sample["height"], sample["width"]
        regions = sample["regions"]
        quads = torch.full((len(regions), 4, 2), float("nan"))
        for k, r in enumerate(regions):
            if r["points"] is not None:
                quads[k] = torch.from_numpy(r["points"])
        target: dict[str, Any] = {
            "image_id": sample["image_id"], "file_name": sample["file_name"], "quads": quads,
            "latex": [r["latex"] for r in regions], "categories": [r["category"] for r in regions],
        }
        if self.load_masks:
            masks = np.zeros((len(regions), h, w), dtype=np.uint8)
            for k, r in enumerate(regions):
                if r["segmentation"] is not None:
                    _draw_segmentation(masks[k], r["segmentation"], h, w)
            target["masks"] = torch.from_numpy(masks)
        return self.transform(image, target) if self.transform else (image, target)

    @staticmethod
    def collate(batch: list) -> tuple[list, list]:
        """Keep images and targets as lists: sizes and region counts differ per image."""
        images, targets = zip(*batch, strict=True)
        return list(images), list(targets)
