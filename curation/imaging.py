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

from pipeline.ml.imageio import to_8bit

ALLOWED_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


@dataclass(frozen=True)
class DecodedImage:
    """An upload that passed every check, with what will be stored."""

    filename: str
    sha256: str
    content: bytes  # orientation applied, metadata stripped; sha256 is of these bytes
    extension: str
    width: int
    height: int
    format: str
    phash: str
    thumbnail: bytes


def flatten_to_rgb(img: PILImage.Image) -> PILImage.Image:
    """RGB on a white background: transparent pages (im2markup) have ink only on alpha."""
    img = to_8bit(img)
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
    elif img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        work = to_8bit(img)
    else:
        work = img.convert("RGB")
    work.thumbnail(size)
    out = flatten_to_rgb(work)
    out.info = {}  # no comment, EXIF or XMP carried into the thumbnail
    return out


# ------------------------------------------------------------ metadata stripping
# Photos of children's homework come from phones: their EXIF carries a GPS position, the
# camera's serial number, the time, and XMP/comments may name the pupil. None of it is
# needed and none of it may reach a vendor, so every stored file is cleaned. JPEG, PNG,
# WebP and GIF lose their metadata blocks losslessly (the pixel data is copied byte for
# byte); other formats are re-encoded from their pixels.

_JPEG_KEEP_APP = {0xE0: b"JFIF\0", 0xE2: b"ICC_PROFILE\0", 0xEE: b"Adobe"}  # Adobe: CMYK/YCCK transform


def _strip_jpeg(data: bytes) -> bytes | None:
    """The JPEG without APPn segments other than JFIF, ICC and Adobe, without comments,
    and without anything after the end-of-image marker (MPF images, vendor trailers)."""
    n = len(data)
    if data[:2] != b"\xff\xd8":
        return None
    out = bytearray(b"\xff\xd8")
    i = 2
    while i < n:
        if data[i] != 0xFF:
            return None
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker == 0xD9:
            out += b"\xff\xd9"
            return bytes(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out += bytes((0xFF, marker))
            continue
        if i + 2 > n:
            return None
        length = int.from_bytes(data[i:i + 2], "big")
        if length < 2 or i + length > n:
            return None
        segment = data[i:i + length]
        i += length
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            prefix = _JPEG_KEEP_APP.get(marker)
            if prefix is None or not segment[2:].startswith(prefix):
                continue
        out += bytes((0xFF, marker)) + segment
        if marker == 0xDA:  # entropy-coded data runs to the next real marker
            j = i
            while True:
                k = data.find(b"\xff", j)
                if k < 0 or k + 1 >= n:
                    out += data[i:] + b"\xff\xd9"  # no end marker: the decoder accepted it without
                    return bytes(out)
                following = data[k + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    j = k + 2
                    continue
                break
            out += data[i:k]
            i = k
    return None


_PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
             b"pHYs", b"bKGD", b"acTL", b"fcTL", b"fdAT", b"cICP", b"mDCV", b"cLLI"}


def _strip_png(data: bytes) -> bytes | None:
    """The PNG with only its image chunks: no eXIf, text (tEXt/zTXt/iTXt, where XMP
    lives), tIME or private chunks."""
    sig = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(sig):
        return None
    out = bytearray(sig)
    i, n = len(sig), len(data)
    while i + 12 <= n:
        length = int.from_bytes(data[i:i + 4], "big")
        kind = data[i + 4:i + 8]
        end = i + 12 + length
        if end > n:
            return None
        if kind in _PNG_KEEP or not kind[:1].islower():  # an unknown critical chunk cannot go
            out += data[i:end]
        i = end
        if kind == b"IEND":
            return bytes(out)
    return None


def _strip_webp(data: bytes) -> bytes | None:
    """The WebP without its EXIF and XMP chunks (and their flags in VP8X)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    out = bytearray(data[:12])
    i, n = 12, min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    while i + 8 <= n:
        kind = data[i:i + 4]
        size = int.from_bytes(data[i + 4:i + 8], "little")
        end = i + 8 + size + (size & 1)
        if i + 8 + size > n:
            return None
        chunk = bytearray(data[i:min(end, n)])
        if kind == b"VP8X" and size >= 1:
            chunk[8] &= ~(0x08 | 0x04) & 0xFF
        if kind not in (b"EXIF", b"XMP "):
            out += chunk
        i = end
    out[4:8] = (len(out) - 8).to_bytes(4, "little")
    return bytes(out)


def _gif_sub_blocks(data: bytes, i: int) -> int:
    """The offset after the data sub-blocks starting at `i`."""
    n = len(data)
    while True:
        if i >= n:
            raise ValueError("truncated GIF")
        size = data[i]
        i += 1 + size
        if size == 0:
            return i


def _strip_gif(data: bytes) -> bytes | None:
    """The GIF without comment and application extensions (XMP lives there), but for
    the looping one of animations."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        return None
    packed = data[10]
    i = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    out = bytearray(data[:i])
    try:
        while i < len(data):
            block = data[i]
            if block == 0x3B:
                out.append(0x3B)
                return bytes(out)
            if block == 0x21:
                label = data[i + 1]
                end = _gif_sub_blocks(data, i + 2)
                keep = label not in (0xFE, 0xFF) or (
                    label == 0xFF and data[i + 3:i + 14] in (b"NETSCAPE2.0", b"ANIMEXTS1.0"))
                if keep:
                    out += data[i:end]
                i = end
            elif block == 0x2C:
                flags = data[i + 9]
                start = i + 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
                end = _gif_sub_blocks(data, start + 1)  # after the LZW minimum code size
                out += data[i:end]
                i = end
            else:
                return None
    except (ValueError, IndexError):
        return None
    return None


_STRIPPERS = {"JPEG": _strip_jpeg, "PNG": _strip_png, "WEBP": _strip_webp, "GIF": _strip_gif}


def _png_writable(img: PILImage.Image) -> PILImage.Image:
    """`img` in a mode PNG can hold, its own metadata left behind."""
    if img.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        out = img.copy()
    elif img.mode in ("I", "F", "I;16B", "I;16L", "I;16N"):
        out = to_8bit(img)
    elif img.mode in ("PA", "RGBa", "La", "RGBX"):
        out = img.convert("RGBA")
    else:  # CMYK, YCbCr, LAB, HSV
        out = img.convert("RGB")
    out.info = {}
    return out


def _encode_clean(img: PILImage.Image, fmt: str) -> tuple[bytes, str]:
    """`img` re-encoded with no metadata but its colour profile: JPEG stays JPEG,
    anything else becomes a lossless PNG. Returns (bytes, format)."""
    icc = img.info.get("icc_profile")
    buf = io.BytesIO()
    if fmt == "JPEG":
        rgb = img.convert("RGB") if img.mode not in ("RGB", "L") else img.copy()
        rgb.info = {}
        keep_icc = icc if rgb.mode == img.mode else None
        rgb.save(buf, "JPEG", quality=95, **({"icc_profile": icc} if keep_icc else {}))
        return buf.getvalue(), "JPEG"
    out = _png_writable(img)
    keep_icc = icc if out.mode == img.mode else None
    out.save(buf, "PNG", **({"icc_profile": icc} if keep_icc else {}))
    return buf.getvalue(), "PNG"


def strip_metadata(data: bytes, img: PILImage.Image) -> tuple[bytes, str]:
    """The bytes to store for the upright upload `data` (decoded as `img`) and their
    format: the same image without EXIF, XMP, comments or trailers. BMP has none."""
    fmt = img.format
    if fmt == "BMP":
        return data, fmt
    stripper = _STRIPPERS.get(fmt)
    cleaned = stripper(data) if stripper else None
    if cleaned is not None and _same_header(cleaned, img):
        return cleaned, fmt
    return _encode_clean(img, fmt)


def _same_header(cleaned: bytes, img: PILImage.Image) -> bool:
    """Whether the stripped bytes still open as the same kind of image (format, size, mode):
    a guard on the block-level strippers above; anything else is re-encoded from the pixels."""
    try:
        with PILImage.open(io.BytesIO(cleaned)) as again:
            return (again.format, again.size, again.mode) == (img.format, img.size, img.mode)
    except Exception:  # noqa: BLE001 - any failure to open means "do not store these bytes"
        return False


def too_big(*, filename: str, size: int) -> str:
    """Why a file of `size` bytes is refused (MATHSET_MAX_UPLOAD_BYTES), as `decode_image` says it."""
    name = os.path.basename(filename or "upload")
    return f"{name}: the file is {size} bytes; the limit is {settings.MATHSET_MAX_UPLOAD_BYTES} bytes."


def decode_image(data: bytes, filename: str, *, field: str = "file") -> DecodedImage:
    """Check and decode `data`; raise ValidationError({field: why}) if it is unusable."""
    name = os.path.basename(filename or "upload")
    limit = settings.MATHSET_MAX_UPLOAD_BYTES
    if not data:
        raise ValidationError({field: f"{name}: the file is empty."})
    if len(data) > limit:
        raise ValidationError({field: too_big(filename=filename, size=len(data))})
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
    # Only an EXIF orientation other than "upright" (2..8) needs a transpose and a
    # re-encode; checking first avoids the full copy exif_transpose makes otherwise.
    # Either way the stored bytes carry no metadata (GPS, serial numbers, comments).
    if img.getexif().get(0x0112, 1) in range(2, 9):
        upright = ImageOps.exif_transpose(img)
        content, fmt = _encode_clean(upright, fmt)
    else:
        upright = img
        content, fmt = strip_metadata(data, img)
    # The exact-duplicate key is the hash of the bytes stored, not of the upload: the same
    # photo sent from the phone and again after a tool rewrote its EXIF is one image.
    sha256 = hashlib.sha256(content).hexdigest()
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
