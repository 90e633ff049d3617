"""Decoding and checking uploaded image bytes, before anything is stored.

Everything that can go wrong with an upload (not an image, truncated, a
decompression bomb, too large) is found here, so the write path only starts once
the bytes are known to be good.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass

import imagehash
import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


@dataclass(frozen=True)
class DecodedImage:
    """An upload that passed every check, with what will be stored."""

    filename: str
    sha256: str
    content: bytes  # orientation applied; the original bytes when no change was needed
    extension: str
    width: int
    height: int
    format: str
    phash: str
    thumbnail: bytes


def flatten_to_rgb(img: PILImage.Image) -> PILImage.Image:
    """RGB on a white background: transparent pages (im2markup) have ink only on alpha."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def phash_hex(img: PILImage.Image) -> str:
    """imagehash's 64-bit perceptual hash as 16 hex digits, the same string as
    `str(imagehash.phash(img))`, without its per-bit Python string building."""
    bits = imagehash.phash(img).hash.reshape(-1)
    return np.packbits(bits).tobytes().hex()


def preview(img: PILImage.Image, size: tuple[int, int]) -> PILImage.Image:
    """An RGB copy on white, at most `size`. Shrunk before it is flattened, so a full
    transparent page is never composited at full size (RGBA resizes premultiplied,
    so thin ink on a transparent page survives)."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        work = img.convert("RGBA")
    elif img.mode in ("RGB", "L"):
        work = img.copy()
    else:
        work = img.convert("RGB")
    work.thumbnail(size)
    return flatten_to_rgb(work)


def decode_image(data: bytes, filename: str, *, field: str = "file") -> DecodedImage:
    """Check and decode `data`; raise ValidationError({field: why}) if it is unusable."""
    name = os.path.basename(filename or "upload")
    limit = settings.MATHSET_MAX_UPLOAD_BYTES
    if not data:
        raise ValidationError({field: f"{name}: the file is empty."})
    if len(data) > limit:
        raise ValidationError({field: f"{name}: the file is {len(data)} bytes; the limit is {limit} bytes."})
    try:
        img = PILImage.open(io.BytesIO(data))
    except PILImage.DecompressionBombError as exc:
        raise ValidationError({field: f"{name}: refused as a decompression bomb ({exc})."}) from None
    except UnidentifiedImageError:
        raise ValidationError({field: f"{name}: not an image (no known image format recognised)."}) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValidationError({field: f"{name}: unreadable image header ({exc})."}) from None
    if img.format not in ALLOWED_FORMATS:
        raise ValidationError({field: f"{name}: format {img.format} is not accepted; use PNG, JPEG, WebP, TIFF, BMP or GIF."})
    width, height = img.size
    max_pixels = settings.MATHSET_MAX_IMAGE_PIXELS
    if width * height > max_pixels:
        raise ValidationError(
            {field: f"{name}: the image claims {width}x{height} = {width * height} pixels, more than the "
             f"limit of {max_pixels} (a decompression bomb is refused before decoding)."}
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            img.load()
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombWarning) as exc:
        raise ValidationError({field: f"{name}: the image is truncated or corrupt ({exc})."}) from None

    fmt = img.format
    sha256 = hashlib.sha256(data).hexdigest()
    # Only an EXIF orientation other than "upright" (2..8) needs a transpose and a
    # re-encode; checking first avoids the full copy exif_transpose makes otherwise.
    if img.getexif().get(0x0112, 1) in range(2, 9):
        upright = ImageOps.exif_transpose(img)
        buf = io.BytesIO()
        if fmt == "JPEG":
            upright.convert("RGB").save(buf, "JPEG", quality=95)
        else:
            fmt = "PNG"
            upright.save(buf, "PNG")
        content = buf.getvalue()
    else:
        content = data
        upright = img
    width, height = upright.size
    thumb = preview(upright, settings.MATHSET_THUMBNAIL_SIZE)
    # The perceptual hash is taken from the thumbnail: it shrinks to 32x32 anyway, and
    # hashing a full page at full size costs more than all the rest of the decode.
    phash = phash_hex(thumb)
    tbuf = io.BytesIO()
    thumb.save(tbuf, "JPEG", quality=80)
    return DecodedImage(
        filename=name,
        sha256=sha256,
        content=content,
        extension=ALLOWED_FORMATS[fmt],
        width=width,
        height=height,
        format=fmt,
        phash=phash,
        thumbnail=tbuf.getvalue(),
    )


def hamming(a: str, b: str) -> int:
    """Bits that differ between two 64-bit hex perceptual hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def ink_bbox(img: PILImage.Image, *, threshold: int = 250) -> list[int] | None:
    """[x0, y0, x1, y1] of the ink: pixels darker than `threshold` once transparency
    is flattened onto white (so both white paper and transparent pages count as
    background). x1 and y1 are exclusive, as in PIL. None for a blank image."""
    gray = flatten_to_rgb(img).convert("L")
    box = gray.point([255 if v < threshold else 0 for v in range(256)]).getbbox()
    return list(box) if box else None
