"""Quadrilaterals in image pixels: reading order kept (made clockwise), validation, IoU (shapely).

A stored quad's first point is the formula's top-left as read (whatever the photo's rotation),
then clockwise on screen: top-right, bottom-right, bottom-left of the text. `validate_quad`
keeps the start it is given; `canonical_quad` (start at the image's top-left) is only for quads
whose reading orientation is unknown (an evaluation box). A quad fitted around a mask comes from
`mask_quad`, which starts it on a long side read left to right (`reading_order_rect`).

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
# A rectangle whose side pairs differ by less than this ratio has no long side to tell a text
# line's length by: pixel noise alone makes one side of a square mask's box a pixel or two longer.
SQUARE_ASPECT = 1.15


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
    YOLO-OBB. A labelled region keeps its own start (the formula's top-left), see `validate_quad`;
    a rectangle fitted around a formula's mask is ordered by :func:`reading_order_rect`.
    """
    pts = [tuple(p) for p in clockwise_quad(points)]
    start = min(range(4), key=lambda i: (pts[i][0] + pts[i][1], pts[i][1], pts[i][0]))
    return [list(pts[(start + k) % 4]) for k in range(4)]


def reading_order_rect(points: Sequence[Point]) -> list[list[float]]:
    """The 4 corners of a rectangle fitted around a text line, in reading order: TL, TR, BR, BL.

    For a rectangle with no reading cue but its shape (fitted around a mask). A formula line is
    wider than tall, so the first edge (TL -> TR) is a long side; of the two long sides, the one
    whose direction is closest to the image's left-to-right is taken, i.e. whose angle,
    counter-clockwise on screen from +x, lies in (-90°, 90°]: a line photographed at up to ±90°
    reads the right way round, and a vertical line is read bottom to top. Shape alone cannot
    tell 180° apart (a formula upside down fills the same pixels), so a line turned more than
    90° comes out read upside down; only a reading cue (the annotator's corner, the detector's
    top map, the orienter) can fix that. A square-ish rectangle (sides within
    :data:`SQUARE_ASPECT`) has no long side: its edge closest to left-to-right starts, as an
    upright box's top does. Corners go clockwise on screen (y down).
    """
    pts = clockwise_quad(points)
    edges = [(pts[(k + 1) % 4][0] - pts[k][0], pts[(k + 1) % 4][1] - pts[k][1]) for k in range(4)]
    lengths = [math.hypot(dx, dy) for dx, dy in edges]
    along, across = lengths[0] + lengths[2], lengths[1] + lengths[3]
    if max(along, across) < SQUARE_ASPECT * min(along, across):
        starts: Sequence[int] = range(4)
    else:
        starts = (0, 2) if along >= across else (1, 3)

    def left_to_right(k: int) -> tuple[float, float]:
        dx, dy = edges[k]
        # Rounded so that float noise cannot outvote the tie-break: an edge exactly vertical
        # (or a square at exactly 45°) goes to the one pointing up the screen (+90° is in the
        # half-open range, -90° is not), whichever corner the points started at.
        return round(dx / (lengths[k] or 1.0), 9), -dy

    start = max(starts, key=left_to_right)
    return [list(pts[(start + k) % 4]) for k in range(4)]


def mask_quad(mask: object, *, offset: tuple[int, int] = (0, 0)) -> list[list[float]] | None:
    """The minimum-area rectangle around a mask's pixels, in reading order; None if it is empty.

    `mask` is a 2-D array (nonzero = inside); corners are in pixel-centre coordinates, like the
    pixels' own. `offset` (x, y) places a window cut out of a larger mask (with a border of at
    least one pixel of zeros wherever it does not reach the larger mask's edge): the same
    rectangle as from the whole mask, in its coordinates. Every quad derived from a mask alone (mask-only regions in exports, truth
    regions in evaluation) comes from here, so all of them read it the same way round: see
    :func:`reading_order_rect` for the order and what a mask cannot tell.
    """
    # Imported here: this module validates every saved quad and OpenCV is only needed for masks.
    import cv2
    import numpy as np

    m = np.ascontiguousarray(np.asarray(mask) != 0, dtype=np.uint8)
    if m.ndim != 2:
        raise GeometryError("A mask must be a 2-D array.")
    # The outer outlines hold every corner of the pixels' convex hull, which is all that
    # minAreaRect looks at: the same rectangle as from every pixel, at a fraction of the points.
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(int(offset[0]), int(offset[1])))
    if not contours:
        return None
    pts = np.concatenate(contours).reshape(-1, 2).astype(np.float32)
    box = cv2.boxPoints(cv2.minAreaRect(pts))
    return reading_order_rect([(float(x), float(y)) for x, y in box])


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
    if poly.convex_hull.area < MIN_AREA_PX:
        # Corners (nearly) on one line: say so, rather than GEOS's "Too few points in geometry
        # component[0 19.05]" that is_valid explains a collapsed polygon with.
        raise GeometryError("The quadrilateral has (almost) no area: its corners lie on one line.")
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
