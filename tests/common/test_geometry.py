"""common.geometry: reading order kept (made clockwise), canonical order, validation, IoU."""
from __future__ import annotations

import itertools
import math

import pytest

from common.geometry import GeometryError, canonical_quad, clockwise_quad, polygon_iou, validate_quad

SQUARE = [[10.0, 10.0], [60.0, 10.0], [60.0, 40.0], [10.0, 40.0]]  # clockwise from top-left on screen


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_every_corner_cycle_keeps_its_start_runs_clockwise_and_bow_ties_fail(order):
    shuffled = [SQUARE[i] for i in order]
    # Opposite corners (0 and 2) next to each other in the cycle make a bow tie.
    bow_tie = (order.index(0) - order.index(2)) % 4 != 2
    if bow_tie:
        with pytest.raises(GeometryError, match="not simple"):
            validate_quad(shuffled, width=100, height=100)
    else:
        # The first point is the formula's top-left as read: it stays first, the rest follow
        # clockwise on screen (y down).
        start = order[0]
        assert validate_quad(shuffled, width=100, height=100) == [SQUARE[(start + k) % 4] for k in range(4)]
        assert canonical_quad(shuffled) == SQUARE


def test_counter_clockwise_is_reversed_around_the_first_point():
    p0, p1, p2, p3 = [[90.0, 40.0], [10.0, 40.0], [10.0, 10.0], [90.0, 10.0]]  # an upside-down formula
    assert clockwise_quad([p0, p3, p2, p1]) == [p0, p1, p2, p3]
    assert clockwise_quad([p0, p1, p2, p3]) == [p0, p1, p2, p3]
    assert validate_quad([p0, p3, p2, p1], width=100, height=100) == [p0, p1, p2, p3]


def test_rotated_quad_starts_at_the_corner_nearest_top_left_and_runs_clockwise():
    diamond = [[50, 10], [90, 50], [50, 90], [10, 50]]
    out = canonical_quad(list(reversed(diamond)))
    assert out[0] in ([50.0, 10.0], [10.0, 50.0])
    area2 = sum(out[i][0] * out[(i + 1) % 4][1] - out[(i + 1) % 4][0] * out[i][1] for i in range(4))
    assert area2 > 0  # clockwise with y down


@pytest.mark.parametrize(("points", "message"), [
    ([[0, 0], [1, 0], [1, 1]], "exactly 4"),
    ([[0, 0], [10, 0], [10, 10], [0, 10], [5, 5]], "exactly 4"),
    ([[0, 0], [math.nan, 0], [10, 10], [0, 10]], "finite"),
    ([[0, 0], [math.inf, 0], [10, 10], [0, 10]], "finite"),
    ([[0, 0], [10**400, 0], [10, 10], [0, 10]], "finite"),
    ([[0, 0], ["1", 0], [10, 10], [0, 10]], "two numbers"),
    ([[0, 0], [True, 0], [10, 10], [0, 10]], "two numbers"),
    ([[0, 0], [1, 0, 3], [10, 10], [0, 10]], "[x, y] pair"),
    ("abcd", "list"),
    ([[10, 10], [90, 40], [90, 10], [10, 40]], "not simple"),
    ([[10, 10], [20, 10], [30, 10], [40, 10]], ""),
    ([[10, 10], [10.1, 10], [10.1, 10.1], [10, 10.1]], "no area"),
    ([[10, 10], [500, 10], [500, 40], [10, 40]], "outside"),
    ([[-20, 10], [50, 10], [50, 40], [-20, 40]], "outside"),
])
def test_bad_quads_are_refused_with_a_reason(points, message):
    with pytest.raises(GeometryError) as exc:
        validate_quad(points, width=100, height=100)
    assert message in str(exc.value)


def test_corner_slightly_outside_is_tolerated_and_clamped():
    out = validate_quad([[-1, -1], [101, -1], [101, 50], [-1, 50]], width=100, height=100)
    assert out == [[0.0, 0.0], [100.0, 0.0], [100.0, 50.0], [0.0, 50.0]]


def test_polygon_iou():
    a = [[0, 0], [2, 0], [2, 2], [0, 2]]
    assert polygon_iou(a, a) == pytest.approx(1.0)
    assert polygon_iou(a, [[1, 0], [3, 0], [3, 2], [1, 2]]) == pytest.approx(1 / 3)
    assert polygon_iou(a, [[5, 5], [6, 5], [6, 6], [5, 6]]) == 0.0
