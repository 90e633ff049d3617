"""Quadrilaterals in image pixels: reading order kept (made clockwise), validation, IoU (shapely).

A stored quad's first point is the formula's top-left as read (whatever the photo's rotation),
then clockwise on screen: top-right, bottom-right, bottom-left of the text. `validate_quad`
keeps the start it is given; `canonical_quad` (start at the image's top-left) is only for quads
whose reading orientation is unknown (an evaluation box, a quad fitted around a mask).

Domain-free: callers turn `GeometryError` into a 400 naming their own field.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from shapely.geometry import Polygon
from shapely.validation import explain_validity

# A corner may lie this many pixels (or this share of the longer side, whichever
# is larger) outside the image: hand-placed corners on the border often overshoot.
EDGE_TOLERANCE_PX = 2.0
EDGE_TOLERANCE_FRACTION = 0.01
MIN_AREA_PX = 1.0


class GeometryError(ValueError):
    """A region's points are unusable; the message says why, for a person."""


Point = tuple[float, float]


def _as_points(points: object) -> list[Point]:
    if not isinstance(points, Sequence) or isinstance(points, str | bytes):
        raise GeometryError("Points must be a list of [x, y] pairs.")
    out: list[Point] = []
    for i, p in enumerate(points):
        if not isinstance(p, Sequence) or isinstance(p, str | bytes) or len(p) != 2:
            raise GeometryError(f"Point {i + 1} must be an [x, y] pair.")
        # Strings ("NaN", "12") and booleans are not coordinates, even if float() takes them.
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p):
            raise GeometryError(f"Point {i + 1} must hold two numbers.")
        try:
            x, y = float(p[0]), float(p[1])
        except OverflowError:  # an int beyond float range
            x = y = math.inf
        if not (math.isfinite(x) and math.isfinite(y)):
            raise GeometryError(f"Point {i + 1} has a coordinate that is not a finite number.")
        out.append((x, y))
    return out


def clockwise_quad(points: Sequence[Point]) -> list[list[float]]:
    """The 4 corners clockwise on screen (image coordinates, y down), starting where they start.

    A counter-clockwise quad [p0, p1, p2, p3] becomes [p0, p3, p2, p1]: the direction is
    reversed but the first point, the formula's top-left as read, stays first.
    """
    pts = [(float(x), float(y)) for x, y in points]
    # Shoelace area; with y pointing down a positive value means clockwise on screen.
    area2 = sum(pts[i][0] * pts[(i + 1) % 4][1] - pts[(i + 1) % 4][0] * pts[i][1] for i in range(4))
    if area2 < 0:
        pts = [pts[0], pts[3], pts[2], pts[1]]
    return [list(p) for p in pts]


def canonical_quad(points: Sequence[Point]) -> list[list[float]]:
    """The 4 corners clockwise (in image coordinates, y down) starting at the image's top-left.

    For quads whose reading orientation is unknown: clockwise as :func:`clockwise_quad`, then
    the start is the corner with the smallest x + y (ties: smallest y), the "top-left" of
    YOLO-OBB. A labelled region keeps its own start (the formula's top-left), see `validate_quad`.
    """
    pts = [tuple(p) for p in clockwise_quad(points)]
    start = min(range(4), key=lambda i: (pts[i][0] + pts[i][1], pts[i][1], pts[i][0]))
    return [list(pts[(start + k) % 4]) for k in range(4)]


def quad_points(points: object) -> list[Point]:
    """The points of a quadrilateral, in the order given, once checked.

    Raises GeometryError unless there are exactly 4 finite [x, y] number pairs
    (no strings, no booleans) forming a simple (not self-intersecting) polygon of
    non-zero area.
    """
    pts = _as_points(points)
    if len(pts) != 4:
        raise GeometryError(f"A quadrilateral needs exactly 4 points, not {len(pts)}.")
    poly = Polygon(pts)
    if not poly.is_valid:
        raise GeometryError(f"The quadrilateral is not simple: {explain_validity(poly)}.")
    if poly.area < MIN_AREA_PX:
        raise GeometryError("The quadrilateral has (almost) no area.")
    return pts


def check_inside(points: Sequence[Point], *, width: int, height: int, tolerance: float = 0.0) -> None:
    """Raise GeometryError naming the first point more than `tolerance` pixels outside the image."""
    for i, (x, y) in enumerate(points):
        if not (-tolerance <= x <= width + tolerance and -tolerance <= y <= height + tolerance):
            raise GeometryError(f"Point {i + 1} ({x:g}, {y:g}) lies outside the {width}x{height} image.")


def validate_quad(points: object, *, width: int, height: int) -> list[list[float]]:
    """Check a quadrilateral and return it clockwise, from the point it starts at.

    The first point is the formula's top-left as read (the annotator's or the orienter's
    choice), so it is kept: a counter-clockwise quad is turned clockwise around it
    (:func:`clockwise_quad`), never rolled to the image's top-left. Raises GeometryError unless there are exactly 4 finite points forming a simple
    (not self-intersecting) polygon of non-zero area inside the image (with a small
    tolerance for corners placed on the border).
    """
    pts = quad_points(points)
    check_inside(pts, width=width, height=height,
                 tolerance=max(EDGE_TOLERANCE_PX, EDGE_TOLERANCE_FRACTION * max(width, height)))
    # Corners within the tolerance are pulled onto the border so exports stay in range.
    clamped = [(min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))) for x, y in pts]
    return clockwise_quad(clamped)


def polygon_iou(a: Sequence[Point], b: Sequence[Point]) -> float:
    """Intersection over union of two simple polygons (0.0 when either has no area)."""
    pa, pb = Polygon(a), Polygon(b)
    if not pa.is_valid or not pb.is_valid:
        pa, pb = pa.buffer(0), pb.buffer(0)
    union = pa.union(pb).area
    if union <= 0:
        return 0.0
    return float(pa.intersection(pb).area / union)
