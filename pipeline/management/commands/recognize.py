"""``python manage.py recognize [--json] IMAGE...``: each image taken as one formula crop → LaTeX."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from pipeline.ml.imageio import read_rgb

from ._common import add_model_options, emit, make_reader


class Command(BaseCommand):
    help = "Recognise formula crops: per image, normalised LaTeX tokens and a confidence."

    def add_arguments(self, parser):
        parser.add_argument("images", nargs="+")
        parser.add_argument("--json", action="store_true", help="print JSON")
        add_model_options(parser)

    def handle(self, *args, **o):
        reader = make_reader(o)
        out, crops, idx = [], [], []
        for path in o["images"]:
            try:
                crops.append(read_rgb(path))
                idx.append(len(out))
                out.append({"image": path})
            except (OSError, ValueError) as exc:
                out.append({"image": path, "error": str(exc)})
        for k, reading in zip(idx, reader.recognize(crops), strict=True):
            out[k].update(latex=reading.latex, confidence=round(reading.confidence, 4), tokens=reading.tokens,
                          token_confidences=[round(c, 4) for c in reading.token_confidences])
        lines = [f"{i['image']}: ERROR {i['error']}" if "error" in i else f"{i['image']}: {i['latex']}  "
                 f"({i['confidence']:.3f})" for i in out]
        emit(self.stdout, out, o["json"], lines)
