"""``python manage.py detect [--json] IMAGE...``: formula regions (4 points in image pixels, score)."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from pipeline.ml.imageio import read_rgb

from ._common import add_model_options, emit, make_reader


class Command(BaseCommand):
    help = "Detect formulas in images: per image, regions with 4 corner points (TL, TR, BR, BL) and a score."

    def add_arguments(self, parser):
        parser.add_argument("images", nargs="+")
        parser.add_argument("--json", action="store_true", help="print JSON")
        add_model_options(parser)

    def handle(self, *args, **o):
        reader = make_reader(o)
        out, images, idx = [], [], []
        for path in o["images"]:
            try:
                images.append(read_rgb(path))
                idx.append(len(out))
                out.append({"image": path})
            except (OSError, ValueError) as exc:
                out.append({"image": path, "error": str(exc)})
        # the orienter (kept beside the detector's weights) puts each formula's top-left corner first
        detections = reader.orient_regions(images, reader.detect(images, with_masks=False))
        for k, regions in zip(idx, detections, strict=True):
            h, w = images[idx.index(k)].shape[:2]
            out[k].update(width=w, height=h, regions=[r.to_dict() for r in regions])
        lines = []
        for item in out:
            if "error" in item:
                lines.append(f"{item['image']}: ERROR {item['error']}")
            else:
                lines.append(f"{item['image']}: {len(item['regions'])} region(s)")
                lines += [f"  score {r['score']:.3f} points {r['points']}" for r in item["regions"]]
        emit(self.stdout, out, o["json"], lines)
