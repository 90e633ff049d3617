"""YOLO-OBB (Ultralytics oriented boxes): ``labels/<split>/<stem>.txt`` and ``data.yaml``.

One line per region: ``class x1 y1 x2 y2 x3 y3 x4 y4`` with coordinates divided by the
image width/height (so in [0, 1]) and written with 10 decimals, which round-trips to well
under 1e-6 of a pixel on any realistic image. A region with only a mask gets the minimum-area
rectangle around the mask. Points outside the image are clipped to its border, as the
trainer requires. Class indices are 0-based in the order of ``names`` in ``data.yaml``.

Ultralytics reads no GIF (not among its ``IMG_FORMATS``): it would skip such an image and leave its
label file orphaned, so a GIF is written as a PNG of its first frame (same pixels, ``.png`` name).

``data.yaml`` has no ``path``: Ultralytics then takes the dataset root to be the folder of the
YAML file, wherever the zip is unpacked. (A relative ``path`` such as ``.`` is resolved against
the current directory or Ultralytics' ``datasets_dir``, not the YAML's folder, so training
from anywhere else fails with "images not found".) ``train``/``val``/``test`` are relative to
that root: ``images/<split>``, whose labels Ultralytics finds in ``labels/<split>``. A snapshot
without a validation split gets ``val: images/train`` and a comment saying so, since Ultralytics
refuses a data.yaml without ``val``. A snapshot without a training split (a held-out set, ratios
such as 0/0/1) gets ``train: images/train``, a folder the zip does not have, since Ultralytics also
refuses a data.yaml without ``train`` even to evaluate: ``yolo obb val ... split=test`` works and
training stops with "images not found" rather than train on held-out images (``val`` is then the
test images when there is no validation split either).
"""
from __future__ import annotations

import io
import posixpath

import numpy as np
import yaml
from PIL import Image

from .base import ExportWriter, split_name
from .records import ExportImage, region_quad


def yolo_line(class_index: int, quad: np.ndarray, width: int, height: int) -> str:
    norm = np.clip(quad / np.array([width, height], dtype=np.float64), 0.0, 1.0)
    return f"{class_index} " + " ".join(f"{v:.10f}" for v in norm.reshape(-1))


def _is_gif(image: ExportImage) -> bool:
    return posixpath.splitext(image.file_name)[1].lower() == ".gif"


def _png_of(data: bytes) -> bytes:
    """A GIF's first frame as PNG, pixels and transparency kept."""
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        im.save(out, "PNG")
        return out.getvalue()


class YoloObbWriter(ExportWriter):
    format = "yolo-obb"

    def __init__(self, sink, **kwargs) -> None:
        super().__init__(sink, **kwargs)
        self._splits: set[str] = set()

    def image_member(self, image: ExportImage) -> str:
        name = image.file_name
        if _is_gif(image):
            name = posixpath.splitext(name)[0] + ".png"
        return f"images/{split_name(image.split)}/{name}"

    def add(self, image: ExportImage, data: bytes | None) -> None:
        split = split_name(image.split)
        self._splits.add(split)
        self.write_image(image, _png_of(data) if data is not None and _is_gif(image) else data)
        lines = []
        for region in image.regions:
            quad = region_quad(region)
            if quad is None:  # an empty mask has no box
                continue
            lines.append(yolo_line(self.category_id(region.category_slug) - 1, quad, image.width, image.height))
            self.regions += 1
        stem = posixpath.splitext(image.file_name)[0]
        self.sink.write(f"labels/{split}/{stem}.txt", "\n".join(lines) + ("\n" if lines else ""))

    def finish(self) -> None:
        doc: dict = {"names": {i: slug for i, slug in enumerate(self.categories)}}
        keys = {"train": "train", "validation": "val", "test": "test"}
        for split in sorted(self._splits):
            doc[keys.get(split, split)] = f"images/{split}"
        note = ""
        if self._splits and "train" not in doc:
            # Ultralytics refuses a data.yaml without `train` even to evaluate (check_det_dataset), and
            # a held-out snapshot (ratios such as 0/0/1) has none. The key names the folder a training
            # split would have, absent from the zip: `yolo val` works, `yolo train` stops with "images
            # not found" instead of training on held-out images.
            doc["train"] = "images/train"
            note += ("# This snapshot has no training split: images/train does not exist, so it can be "
                     "evaluated (yolo obb val ... split=test) but not trained on.\n")
            if "val" not in doc:  # `val` must exist: the held-out images are what there is to evaluate
                doc["val"] = doc.get("test") or f"images/{min(self._splits)}"
                note += f"# It has no validation split either: val is {doc['val']}.\n"
        elif "train" in doc and "val" not in doc:
            # Ultralytics refuses a data.yaml without `val`. With no validation split, train stands in:
            # its validation figures then say nothing, but the test split stays unseen until the end.
            doc["val"] = doc["train"]
            note = ("# This snapshot has no validation split: val is the training images (Ultralytics needs a "
                    "val entry).\n# Its validation figures measure nothing; give the snapshot a validation "
                    "ratio for real ones.\n")
        self.sink.write("data.yaml", note + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
