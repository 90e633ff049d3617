"""ICDAR-2015 style: ``<split>/images/img_<N>.<ext>`` and ``<split>/gt/gt_img_<N>.txt``.

``N`` is the image id, so the names match the benchmark's own (``img_1.jpg`` /
``gt_img_1.txt``): its evaluation script and the usual dataset converters pair files by the
patterns ``gt_img_([0-9]+).txt`` and ``res_img_([0-9]+).txt`` and silently skip anything else.

One line per region, ``x1,y1,x2,y2,x3,y3,x4,y4,transcription``, integer pixel coordinates
clockwise from the top-left of the text. Regions flagged ``illegible`` are written with the
transcription ``###`` (the benchmark's "do not care" marker). Everything after the eighth
comma is the transcription, so commas inside LaTeX need no escaping; line breaks become
spaces.
"""
from __future__ import annotations

import posixpath

import numpy as np

from .base import ExportWriter, split_name
from .records import ExportImage, region_quad

ILLEGIBLE = "illegible"


def icdar_stem(image: ExportImage) -> str:
    """``img_<image id>``: the benchmark's file naming, whatever the image was called."""
    return f"img_{image.image_id}"


class IcdarWriter(ExportWriter):
    format = "icdar2015"

    def image_member(self, image: ExportImage) -> str:
        ext = posixpath.splitext(image.file_name)[1].lower()
        return f"{split_name(image.split)}/images/{icdar_stem(image)}{ext}"

    def add(self, image: ExportImage, data: bytes | None) -> None:
        self.write_image(image, data)
        lines = []
        for region in image.regions:
            quad = region_quad(region)
            if quad is None:
                continue
            coords = ",".join(str(int(v)) for v in np.rint(quad).astype(np.int64).reshape(-1))
            text = "###" if ILLEGIBLE in region.flags else " ".join(region.latex.split())
            lines.append(f"{coords},{text}")
            self.regions += 1
        self.sink.write(f"{split_name(image.split)}/gt/gt_{icdar_stem(image)}.txt",
                        "\n".join(lines) + ("\n" if lines else ""))
