"""The models read 16-bit grey scans (kept as they are at ingest) with their ink: Pillow's own
conversion clipped every value above 255 to white, so pre-labels and the CLI saw a blank page."""
import io

import numpy as np
from PIL import Image

from pipeline.ml.imageio import decode_rgb, ink_box


def _png(arr: np.ndarray, mode: str) -> bytes:
    out = io.BytesIO()
    img = Image.fromarray(arr)
    assert img.mode == mode
    img.save(out, "PNG")
    return out.getvalue()


def test_a_16_bit_scan_keeps_its_ink():
    page = np.full((40, 80), 60000, dtype=np.uint16)
    page[10:30, 20:60] = 8000  # ink
    rgb = decode_rgb(_png(page, "I;16"))
    assert rgb.shape == (40, 80, 3) and rgb.dtype == np.uint8
    assert ink_box(rgb) == (20, 10, 60, 30)
    assert rgb[0, 0, 0] > 200 and rgb[20, 40, 0] < 50


def test_an_8_bit_page_is_unchanged():
    page = np.full((10, 10), 250, dtype=np.uint8)
    page[5, 5] = 3
    rgb = decode_rgb(_png(page, "L"))
    assert rgb[5, 5].tolist() == [3, 3, 3] and rgb[0, 0].tolist() == [250, 250, 250]
