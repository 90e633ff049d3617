"""Builders of synthetic export records for the dataset tests (no database needed)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from curation.exporters import ExportImage, ExportRegion, LicenceInfo, SourceInfo, mask_to_rle

MIT = LicenceInfo("mit", "MIT License", "https://opensource.org/licenses/MIT", allows_commercial=True,
                  allows_derivatives=True, share_alike=False, requires_attribution=True)
CC_BY_NC_SA = LicenceInfo("cc-by-nc-sa-3.0", "CC BY-NC-SA 3.0", "https://creativecommons.org/licenses/by-nc-sa/3.0/",
                          allows_commercial=False, allows_derivatives=True, share_alike=True)
CC_BY_ND = LicenceInfo("cc-by-nd-4.0", "CC BY-ND 4.0", "https://creativecommons.org/licenses/by-nd/4.0/",
                       allows_commercial=True, allows_derivatives=False)
IM2MARKUP = SourceInfo("im2markup", "Harvard NLP", "im2markup pages, MIT licence, (c) Harvard NLP",
                       "https://github.com/harvardnlp/im2markup")
CROHME = SourceInfo("CROHME 2019", "TC-11", "CROHME competition data, CC BY-NC-SA 3.0", "https://www.isical.ac.in/~crohme/")


def png_bytes(width: int, height: int, color=(255, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def random_quad(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A rotated rectangle inside the image, in reading order."""
    w, h = rng.uniform(10, width / 3), rng.uniform(5, height / 4)
    angle = rng.uniform(-0.6, 0.6)
    c = np.array([rng.uniform(width / 3, 2 * width / 3), rng.uniform(height / 3, 2 * height / 3)])
    base = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return base @ rot.T + c


def random_mask(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A blob with a hole: an ellipse minus a rectangle, so RLE round trips are non-trivial."""
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    rx, ry = rng.uniform(0.1, 0.25) * width, rng.uniform(0.1, 0.25) * height
    m = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)
    m[int(cy) - 1:int(cy) + 2, int(cx) - 2:int(cx) + 3] = 0
    return m


def make_image(image_id: int, *, rng: np.random.Generator, licence: LicenceInfo = MIT, source: SourceInfo = IM2MARKUP,
               split: str = "train", n_quads: int = 2, n_masks: int = 1, width: int = 64, height: int = 48,
               with_bytes: bool = True, categories: tuple[str, ...] = ("printed",)) -> ExportImage:
    regions = [ExportRegion(points=random_quad(rng, width, height), latex=f"x_{{{image_id}}}^{{{k}}}",
                            category="formula") for k in range(n_quads)]
    regions += [ExportRegion(mask_rle=mask_to_rle(random_mask(rng, width, height)), latex=r"\frac{a}{b}",
                             category="formula") for _ in range(n_masks)]
    data = png_bytes(width, height) if with_bytes else None
    return ExportImage(image_id=image_id, file_name=f"img_{image_id}.png", width=width, height=height, split=split,
                       licence=licence, source=source, open_bytes=(lambda: data) if with_bytes else None,
                       categories=categories, regions=regions)
