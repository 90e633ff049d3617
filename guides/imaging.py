"""Pictures for guides and questions: regions drawn on an example, a region's crop.

Both are computed from the stored image on request rather than stored, so a
guide or question never leaves a derived file behind when it changes.
"""
from __future__ import annotations

import io

import cv2
import numpy as np
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from PIL import Image as PILImage
from PIL import ImageDraw

from common import geometry
from curation.imaging import flatten_to_rgb

COLOURS = {"good": (29, 122, 70), "bad": (179, 38, 30), "question": (36, 86, 201)}
OVERLAY_MAX_SIDE = 900
CROP_MAX_SIDE = 1200


def validate_quad(points, *, width: int, height: int, field: str = "region") -> list[list[float]]:
    """Four [x, y] points inside a width x height image, forming a simple polygon of non-zero area,
    returned in the order given (a question's crop is straightened from its first corner).

    The checks are common.geometry's (numbers only: no strings, no booleans; finite; simple;
    with area); unlike a labeled region's, a corner must lie inside the image, not near it.
    A bad region is a ValidationError naming `field`.
    """
    if not isinstance(points, list | tuple) or len(points) != 4:
        raise ValidationError({field: "A region is exactly four [x, y] points."})
    try:
        quad = geometry.quad_points(points)
        geometry.check_inside(quad, width=width, height=height)
    except geometry.GeometryError as exc:
        raise ValidationError({field: str(exc)}) from None
    return [[x, y] for x, y in quad]


def validate_quads(regions, *, width: int, height: int, field: str = "regions") -> list[list[list[float]]]:
    """A list of quads (see validate_quad); an error names `field` and says which region."""
    if not isinstance(regions, list):
        raise ValidationError({field: "Regions are a list of quads (four [x, y] points each)."})
    quads = []
    for i, quad in enumerate(regions):
        try:
            quads.append(validate_quad(quad, width=width, height=height, field=field))
        except ValidationError as exc:
            raise ValidationError({field: [f"Region {i + 1}: {m}" for m in exc.messages]}) from None
    return quads


def _load_rgb(image) -> PILImage.Image:
    with default_storage.open(image.file, "rb") as fh:
        img = PILImage.open(io.BytesIO(fh.read()))
        img.load()
    return flatten_to_rgb(img)


def _jpeg(img: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def draw_regions(image, regions, *, kind: str = "good") -> bytes:
    """A JPEG of `image`, at most OVERLAY_MAX_SIDE pixels wide, with `regions` outlined."""
    img = _load_rgb(image)
    scale = min(1.0, OVERLAY_MAX_SIDE / max(img.size))
    if scale < 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), PILImage.LANCZOS)
    draw = ImageDraw.Draw(img)
    colour = COLOURS.get(kind, COLOURS["question"])
    line = max(2, round(max(img.size) / 300))
    for n, quad in enumerate(regions or [], start=1):
        pts = [(x * scale, y * scale) for x, y in quad]
        draw.line(pts + [pts[0]], fill=colour, width=line, joint="curve")
        draw.text((pts[0][0] + 2, max(0, pts[0][1] - 12)), str(n), fill=colour)
    return _jpeg(img)


def crop_region(image, quad) -> bytes:
    """The region `quad` of `image`, straightened by a perspective warp (OpenCV), as JPEG."""
    rgb = np.asarray(_load_rgb(image))
    src = np.asarray(quad, dtype=np.float32)
    width = max(np.linalg.norm(src[0] - src[1]), np.linalg.norm(src[3] - src[2]))
    height = max(np.linalg.norm(src[0] - src[3]), np.linalg.norm(src[1] - src[2]))
    scale = min(1.0, CROP_MAX_SIDE / max(width, height, 1))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    dst = np.asarray([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
    return _jpeg(PILImage.fromarray(warped))
