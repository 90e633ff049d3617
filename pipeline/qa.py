"""Label-quality statistics over plain rows: agreement, pre-label changes, reviews, cost.

Everything here is pure computation on small dataclasses, so the Celery task that stores
QA statistics per spec only has to read rows (with ``values()``) and call these functions,
and every number can be checked by hand on a tiny fixture.

Region matching
---------------
Two labelings of one image are compared region by region: the IoU of every pair is computed
(mask IoU with ``pycocotools`` when both regions have masks, otherwise quad IoU with
``shapely``) and the pairing that maximises the summed IoU is found with the Hungarian
algorithm (``scipy.optimize.linear_sum_assignment``). Pairs below ``min_iou`` are not
matches: those regions count as unmatched on both sides.

LaTeX is compared with ``common.latex``: exact match after normalisation, and the normalised
token edit distance (0 identical, 1 nothing in common).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from itertools import combinations

import numpy as np
import shapely
from pycocotools import mask as mask_utils
from rapidfuzz.distance import Levenshtein
from scipy.optimize import linear_sum_assignment
from shapely import make_valid
from shapely.geometry import Polygon

from common.latex import normalize_tokens

from .ml.calibration import confidence_metrics

DEFAULT_MATCH_IOU = 0.5
# Pre-label changes: a prediction matched at >= KEEP_IOU was kept, at >= MATCH_IOU moved.
DEFAULT_KEEP_IOU = 0.9
DEFAULT_PRELABEL_MATCH_IOU = 0.1


@dataclass(frozen=True)
class Region:
    """A labelled region: a 4x2 quad, a COCO RLE mask, or both, and its LaTeX.

    ``tokens`` may carry the LaTeX's normalised tokens when they are already known (stored
    regions keep them), which saves normalising again.
    """

    points: Sequence[Sequence[float]] | np.ndarray | None = None
    mask_rle: Mapping | None = None
    latex: str = ""
    tokens: tuple[str, ...] | None = None
    # a prediction's: the model's chance that the region is found and read exactly right
    confidence: float | None = None


@lru_cache(maxsize=100_000)
def _normalized(src: str) -> tuple[str, ...]:
    return tuple(normalize_tokens(src))


def _tokens(r: Region) -> tuple[str, ...]:
    return r.tokens if r.tokens is not None else _normalized(r.latex)


def latex_exact(a: Region, b: Region) -> bool:
    """:func:`common.latex.exact_match` of two regions' LaTeX (normalised once per string)."""
    return _tokens(a) == _tokens(b)


def latex_distance(a: Region, b: Region) -> float:
    """:func:`common.latex.token_edit_distance` of two regions' LaTeX."""
    ta, tb = _tokens(a), _tokens(b)
    longest = max(len(ta), len(tb))
    return Levenshtein.distance(ta, tb) / longest if longest else 0.0


# --- geometry -----------------------------------------------------------------------------

def _polygon(points) -> Polygon:
    poly = Polygon(np.asarray(points, dtype=np.float64))
    # An annotator's self-crossing ("bow-tie") quad is repaired instead of raising.
    return poly if poly.is_valid else make_valid(poly)


def quad_iou(a, b) -> float:
    """Intersection over union of two quads (any simple or self-crossing 4-point polygons)."""
    pa, pb = _polygon(a), _polygon(b)
    union = pa.union(pb).area
    return float(pa.intersection(pb).area / union) if union > 0 else 0.0


def _rle(rle: Mapping) -> dict:
    counts = rle["counts"]
    h, w = rle["size"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def mask_iou(a: Mapping, b: Mapping) -> float:
    """Intersection over union of two COCO RLE masks (computed on the RLE, no decoding)."""
    return float(mask_utils.iou([_rle(a)], [_rle(b)], [0])[0, 0])


def region_iou(a: Region, b: Region) -> float:
    """Mask IoU when both have masks, else quad IoU when both have quads, else 0."""
    if a.mask_rle is not None and b.mask_rle is not None:
        return mask_iou(a.mask_rle, b.mask_rle)
    if a.points is not None and b.points is not None:
        return quad_iou(a.points, b.points)
    return 0.0


def _valid_polygons(points: np.ndarray) -> np.ndarray:
    polys = shapely.polygons(points)
    bad = ~shapely.is_valid(polys)
    if bad.any():  # bow-tie quads are repaired, as in quad_iou
        polys[bad] = shapely.make_valid(polys[bad])
    return polys


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z of (a - o) x (b - o), elementwise over leading axes."""
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])


def _strictly_convex(q: np.ndarray) -> np.ndarray:
    """Per quad of (K, 4, 2): all four turns the same way (no bow-tie, no straight angle)."""
    turns = _cross(q, np.roll(q, -1, axis=1), np.roll(q, -2, axis=1))
    return np.all(turns > 0, axis=1) | np.all(turns < 0, axis=1)


def _shoelace(poly: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Areas of polygons stored as (K, M, 2) with the first count[k] vertices in use."""
    k, m = poly.shape[:2]
    idx = np.arange(m)
    nxt = np.where(idx[None, :] + 1 < count[:, None], idx[None, :] + 1, 0)
    following = np.take_along_axis(poly, nxt[..., None], axis=1)
    terms = poly[..., 0] * following[..., 1] - following[..., 0] * poly[..., 1]
    return np.abs(np.where(idx[None, :] < count[:, None], terms, 0.0).sum(axis=1)) / 2


def _convex_intersection_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of strictly convex quads a[k] and b[k]: Sutherland-Hodgman clipping of
    a by b's four edges, all pairs at once (at most 8 vertices survive)."""
    k = len(a)
    clip = np.where((_cross(b[:, 0], b[:, 1], b[:, 2]) < 0)[:, None, None], b[:, ::-1], b)  # counter-clockwise
    poly = np.zeros((k, 8, 2))
    poly[:, :4] = a
    count = np.full(k, 4)
    rows = np.arange(k)[:, None]
    for e in range(4):
        start, end = clip[:, e], clip[:, (e + 1) % 4]
        idx = np.arange(8)[None, :]
        prev_idx = np.where(idx == 0, count[:, None] - 1, idx - 1)
        prev_idx = np.clip(prev_idx, 0, 7)
        cur, prev = poly, poly[rows, prev_idx]
        used = idx < count[:, None]
        side_cur = _cross(start[:, None], end[:, None], cur)
        side_prev = _cross(start[:, None], end[:, None], prev)
        in_cur, in_prev = side_cur >= 0, side_prev >= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(side_prev != side_cur, side_prev / (side_prev - side_cur), 0.0)
        crossing = prev + t[..., None] * (cur - prev)
        # Each vertex emits (crossing point if the edge crosses the line, then itself if inside).
        out = np.stack([crossing, cur], axis=2).reshape(k, 16, 2)
        keep = np.stack([used & (in_cur != in_prev), used & in_cur], axis=2).reshape(k, 16)
        order = np.argsort(~keep, axis=1, kind="stable")
        poly = np.take_along_axis(out, order[..., None], axis=1)[:, :8]
        count = np.minimum(keep.sum(axis=1), 8)
    return _shoelace(poly, count)


def quad_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of quads ``a[k]`` and ``b[k]`` for arrays of shape (K, 4, 2), vectorised; same values
    as :func:`quad_iou`.

    Pairs whose bounding boxes do not overlap are 0 at once; pairs of strictly convex quads (what
    annotators and detectors draw) are clipped in numpy; anything else (bow-ties, degenerate
    quads) goes through shapely's vectorised intersection.
    """
    out = np.zeros(len(a))
    if not len(a):
        return out
    overlap = np.all((a.min(axis=1) < b.max(axis=1)) & (b.min(axis=1) < a.max(axis=1)), axis=1)
    convex = overlap & _strictly_convex(a) & _strictly_convex(b)
    idx = np.nonzero(convex)[0]
    if idx.size:
        ones = np.full(idx.size, 4)
        inter = _convex_intersection_areas(a[idx], b[idx])
        union = _shoelace(a[idx], ones) + _shoelace(b[idx], ones) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            out[idx] = np.where(union > 0, inter / union, 0.0)
    idx = np.nonzero(overlap & ~convex)[0]
    if idx.size:
        pa, pb = _valid_polygons(a[idx]), _valid_polygons(b[idx])
        inter = shapely.area(shapely.intersection(pa, pb))
        union = shapely.area(pa) + shapely.area(pb) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            out[idx] = np.where(union > 0, inter / union, 0.0)
    return out


@dataclass(frozen=True)
class PairIoU:
    """IoU matrices of two region lists: ``region`` (what matching uses: mask IoU where both
    have masks, else quad IoU, else 0) and ``quad`` / ``mask`` separately (NaN where not both)."""

    region: np.ndarray
    quad: np.ndarray
    mask: np.ndarray


def _quad_array(r: Region) -> np.ndarray | None:
    if r.points is None:
        return None
    arr = np.asarray(r.points, dtype=np.float64)
    return arr if arr.shape == (4, 2) else None


def _quad_block(regions: Sequence[Region]) -> np.ndarray | None:
    """(n, 4, 2) quads of `regions` when every one is a plain quad (no mask), else None."""
    if any(r.points is None or r.mask_rle is not None for r in regions):
        return None
    arr = np.asarray([r.points for r in regions], dtype=np.float64)
    return arr if arr.shape == (len(regions), 4, 2) else None


def _plain_quads(regions: Sequence[Region]) -> bool:
    return all(r.mask_rle is None and r.points is not None and len(r.points) == 4 for r in regions)


def _pair_ious_plain(pairs: Sequence[tuple[Sequence[Region], Sequence[Region]]]) -> list[PairIoU] | None:
    """:func:`pair_ious` when every region is a plain 4-point quad without a mask (what the
    annotation tool and detectors produce): one array of all quads per side and the (i, j)
    index pairs built with numpy, no per-pair array work. None when the quads are not all
    well-formed (the general path handles them)."""
    left_points: list = []
    right_points: list = []
    na, nb = [], []
    for a, b in pairs:
        left_points += [r.points for r in a]
        right_points += [r.points for r in b]
        na.append(len(a))
        nb.append(len(b))
    try:
        left = np.asarray(left_points, dtype=np.float64) if left_points else np.zeros((0, 4, 2))
        right = np.asarray(right_points, dtype=np.float64) if right_points else np.zeros((0, 4, 2))
    except ValueError:  # ragged points
        return None
    if left.shape != (len(left_points), 4, 2) or right.shape != (len(right_points), 4, 2):
        return None
    na_, nb_ = np.asarray(na, dtype=np.int64), np.asarray(nb, dtype=np.int64)
    sizes = na_ * nb_
    total = int(sizes.sum())
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])) if len(sizes) else sizes
    k = np.arange(total) - np.repeat(starts, sizes)
    cols = np.repeat(nb_, sizes)
    off_a = np.concatenate(([0], np.cumsum(na_)[:-1])) if len(na_) else na_
    off_b = np.concatenate(([0], np.cumsum(nb_)[:-1])) if len(nb_) else nb_
    values = quad_ious(left[np.repeat(off_a, sizes) + k // cols], right[np.repeat(off_b, sizes) + k % cols]) \
        if total else np.zeros(0)
    out = []
    for p in range(len(pairs)):
        quad = values[starts[p]:starts[p] + sizes[p]].reshape(na[p], nb[p])
        out.append(PairIoU(quad, quad, np.full(quad.shape, np.nan)))
    return out


def pair_ious(pairs: Sequence[tuple[Sequence[Region], Sequence[Region]]]) -> list[PairIoU]:
    """:class:`PairIoU` of many pairs of region lists, the quad IoUs of all of them computed in
    one vectorised call (:func:`quad_ious`): per-pair polygon objects dominated the cost."""
    if all(_plain_quads(a) and _plain_quads(b) for a, b in pairs):
        plain = _pair_ious_plain(pairs)
        if plain is not None:
            return plain
    quads, masks, slots, left, right = [], [], [], [], []
    for p, (a, b) in enumerate(pairs):
        quad = np.full((len(a), len(b)), np.nan)
        mask = np.full((len(a), len(b)), np.nan)
        quads.append(quad)
        masks.append(mask)
        if not a or not b:
            continue
        block_a, block_b = _quad_block(a), _quad_block(b)
        if block_a is not None and block_b is not None:  # the common case: all pairs at once
            slots.append((p, None, None))
            left.append(np.repeat(block_a, len(b), axis=0))
            right.append(np.tile(block_b, (len(a), 1, 1)))
            continue
        qa_, qb_ = [_quad_array(r) for r in a], [_quad_array(r) for r in b]
        for i, ra in enumerate(a):
            for j, rb in enumerate(b):
                if ra.mask_rle is not None and rb.mask_rle is not None:
                    mask[i, j] = mask_iou(ra.mask_rle, rb.mask_rle)
                if ra.points is not None and rb.points is not None:
                    if qa_[i] is None or qb_[j] is None:
                        quad[i, j] = quad_iou(ra.points, rb.points)
                    else:
                        slots.append((p, i, j))
                        left.append(qa_[i][None])
                        right.append(qb_[j][None])
    if slots:
        values = quad_ious(np.concatenate(left), np.concatenate(right))
        at = 0
        for (p, i, j), block in zip(slots, left, strict=True):
            n = len(block)
            if i is None:
                quads[p][:, :] = values[at:at + n].reshape(quads[p].shape)
            else:
                quads[p][i, j] = values[at]
            at += n
    return [PairIoU(np.where(~np.isnan(m), m, np.where(~np.isnan(q), q, 0.0)), q, m)
            for q, m in zip(quads, masks, strict=True)]


def iou_matrix(a: Sequence[Region], b: Sequence[Region]) -> np.ndarray:
    return pair_ious([(a, b)])[0].region


@dataclass(frozen=True)
class Match:
    a: int
    b: int
    iou: float


def match_regions(a: Sequence[Region], b: Sequence[Region], *, min_iou: float = DEFAULT_MATCH_IOU,
                  ious: np.ndarray | None = None) -> list[Match]:
    """One-to-one matches maximising total IoU (Hungarian), keeping pairs with IoU >= `min_iou`.

    ``ious`` is the region IoU matrix when already computed (see :func:`pair_ious`)."""
    if not a or not b:
        return []
    if ious is None:
        ious = iou_matrix(a, b)
    rows, cols = linear_sum_assignment(ious, maximize=True)
    return [Match(int(i), int(j), float(ious[i, j])) for i, j in zip(rows, cols, strict=True)
            if ious[i, j] >= min_iou and ious[i, j] > 0]


# --- agreement between annotators -----------------------------------------------------------

@dataclass(frozen=True)
class Labeling:
    """One annotator's answer to an overlapped task."""

    annotator: Hashable
    vendor: Hashable
    regions: Sequence[Region]


@dataclass(frozen=True)
class OverlapTask:
    """A task labelled independently by two or more annotators."""

    task_id: Hashable
    labelings: Sequence[Labeling]
    categories: tuple[str, ...] = ()


@dataclass
class PairComparison:
    """Two labelings compared: matches and what each side has that the other lacks."""

    regions_a: int
    regions_b: int
    matches: list[Match]
    quad_ious: list[float]
    mask_ious: list[float]
    latex_exact: list[bool]
    latex_distance: list[float]


def compare_labelings(a: Sequence[Region], b: Sequence[Region], *, min_iou: float = DEFAULT_MATCH_IOU,
                      ious: PairIoU | None = None) -> PairComparison:
    """Match `a` against `b`; per matched pair: quad IoU, mask IoU and LaTeX agreement.

    Quad and mask IoU are reported separately (a pair with both quads and masks counts in
    both); LaTeX is compared when at least one side wrote some.
    """
    ious = ious if ious is not None else pair_ious([(a, b)])[0]
    matches = match_regions(a, b, min_iou=min_iou, ious=ious.region)
    quad, mask, exact, dist = [], [], [], []
    for m in matches:
        ra, rb = a[m.a], b[m.b]
        if not np.isnan(ious.quad[m.a, m.b]):
            quad.append(float(ious.quad[m.a, m.b]))
        if not np.isnan(ious.mask[m.a, m.b]):
            mask.append(float(ious.mask[m.a, m.b]))
        if ra.latex.strip() or rb.latex.strip():
            exact.append(latex_exact(ra, rb))
            dist.append(latex_distance(ra, rb))
    return PairComparison(len(a), len(b), matches, quad, mask, exact, dist)


@dataclass
class AgreementStats:
    """Agreement accumulated over labeling pairs.

    ``region_f1`` is 2 * matched / (regions of both sides): 1 when both annotators found the
    same regions. Means are None where nothing was measured.
    """

    pairs: int = 0
    regions: int = 0
    matched: int = 0
    quad_ious: list[float] = field(default_factory=list)
    mask_ious: list[float] = field(default_factory=list)
    latex_exact: list[bool] = field(default_factory=list)
    latex_distance: list[float] = field(default_factory=list)

    def add(self, c: PairComparison) -> None:
        self.pairs += 1
        self.regions += c.regions_a + c.regions_b
        self.matched += len(c.matches)
        self.quad_ious += c.quad_ious
        self.mask_ious += c.mask_ious
        self.latex_exact += c.latex_exact
        self.latex_distance += c.latex_distance

    def summary(self) -> dict:
        return {
            "pairs": self.pairs,
            "matched_regions": self.matched,
            "region_f1": 2 * self.matched / self.regions if self.regions else None,
            "mean_quad_iou": _mean(self.quad_ious),
            "mean_mask_iou": _mean(self.mask_ious),
            "latex_exact_match": _mean(self.latex_exact),
            "latex_edit_distance": _mean(self.latex_distance),
            "latex_pairs": len(self.latex_exact),
        }


def _mean(values: Sequence[float | bool]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def agreement(tasks: Iterable[OverlapTask], *, min_iou: float = DEFAULT_MATCH_IOU) -> dict:
    """Inter-annotator agreement over overlapped tasks, overall and per vendor, annotator, category.

    Every pair of labelings of a task is compared once. A pair counts for each of its two
    annotators, for each distinct vendor among them, and for each category of the task.
    Returns ``{"overall": summary, "by_vendor": {v: summary}, "by_annotator": {...},
    "by_category": {...}}`` (see :meth:`AgreementStats.summary`).
    """
    overall = AgreementStats()
    by_vendor: dict = defaultdict(AgreementStats)
    by_annotator: dict = defaultdict(AgreementStats)
    by_category: dict = defaultdict(AgreementStats)
    pairs = [(task, la, lb) for task in tasks for la, lb in combinations(task.labelings, 2)]
    ious = pair_ious([(la.regions, lb.regions) for _, la, lb in pairs])
    for (task, la, lb), iou in zip(pairs, ious, strict=True):
        c = compare_labelings(la.regions, lb.regions, min_iou=min_iou, ious=iou)
        overall.add(c)
        for annotator in {la.annotator, lb.annotator}:
            by_annotator[annotator].add(c)
        for vendor in {la.vendor, lb.vendor}:
            by_vendor[vendor].add(c)
        for category in set(task.categories):
            by_category[category].add(c)
    return {
        "overall": overall.summary(),
        "by_vendor": {k: v.summary() for k, v in by_vendor.items()},
        "by_annotator": {k: v.summary() for k, v in by_annotator.items()},
        "by_category": {k: v.summary() for k, v in by_category.items()},
    }


# --- gold accuracy ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GoldCase:
    """An annotator's answer to a gold task and the known truth.

    ``truth_latex`` is the gold answer's LaTeX when the answer has no regions (an imported truth
    whose image meta holds no ink box: CROHME inks, the demo's generated images). Such a case is
    scored on the LaTeX alone, see :func:`gold_accuracy`.
    """

    annotator: Hashable
    vendor: Hashable
    answer: Sequence[Region]
    truth: Sequence[Region]
    truth_latex: Region | None = None

    @property
    def latex_only(self) -> bool:
        """No truth region to match, but a known LaTeX: scored on the LaTeX, not on geometry."""
        return not self.truth and self.truth_latex is not None and bool(self.truth_latex.latex.strip())


def latex_only_score(answer: Sequence[Region], truth: Region) -> tuple[bool, float]:
    """``(exact, token edit distance)`` of an answer to a gold task known only by its LaTeX.

    The answer's region whose LaTeX is closest to the truth (smallest token edit distance, the
    first on a tie) is compared: such truths hold one formula per image, so an extra region
    drawn beside it is not held against the reading (nor counted as imprecise: with no truth
    geometry, region precision and recall do not apply). An answer with no region missed the
    formula: it reads as empty (not exact, distance 1).
    """
    if not answer:
        return latex_exact(Region(), truth), latex_distance(Region(), truth)
    distance, best = min((latex_distance(r, truth), k) for k, r in enumerate(answer))
    return latex_exact(answer[best], truth), distance


def gold_accuracy(cases: Iterable[GoldCase], *, min_iou: float = DEFAULT_MATCH_IOU) -> dict:
    """Accuracy on gold tasks per annotator and vendor.

    Per group: ``region_recall`` (truth regions found), ``region_precision`` (answer regions
    that are true), ``mean_iou`` of matches, ``latex_exact_match`` and ``latex_edit_distance``
    over matched truth regions, ``tasks``, and ``latex_only_tasks``: gold tasks whose answer
    has LaTeX but no region (:attr:`GoldCase.latex_only`). Those add one LaTeX comparison each
    (:func:`latex_only_score`) and nothing to the geometry: recall, precision and IoU are None
    for a group that has only such tasks.
    """
    acc: dict = {"by_annotator": defaultdict(_GoldAcc), "by_vendor": defaultdict(_GoldAcc), "overall": _GoldAcc()}
    cases = list(cases)
    ious = pair_ious([(c.answer, c.truth) for c in cases])
    for case, iou in zip(cases, ious, strict=True):
        if case.latex_only:
            score = latex_only_score(case.answer, case.truth_latex)
            for target in (acc["overall"], acc["by_annotator"][case.annotator], acc["by_vendor"][case.vendor]):
                target.add_latex_only(*score)
            continue
        matches = match_regions(case.answer, case.truth, min_iou=min_iou, ious=iou.region)
        for target in (acc["overall"], acc["by_annotator"][case.annotator], acc["by_vendor"][case.vendor]):
            target.add(case, matches)
    return {"overall": acc["overall"].summary(),
            "by_annotator": {k: v.summary() for k, v in acc["by_annotator"].items()},
            "by_vendor": {k: v.summary() for k, v in acc["by_vendor"].items()}}


@dataclass
class _GoldAcc:
    tasks: int = 0
    latex_only_tasks: int = 0
    truth: int = 0
    answered: int = 0
    matched: int = 0
    ious: list[float] = field(default_factory=list)
    exact: list[bool] = field(default_factory=list)
    distance: list[float] = field(default_factory=list)

    def add(self, case: GoldCase, matches: list[Match]) -> None:
        self.tasks += 1
        self.truth += len(case.truth)
        self.answered += len(case.answer)
        self.matched += len(matches)
        for m in matches:
            self.ious.append(m.iou)
            answer, truth = case.answer[m.a], case.truth[m.b]
            if truth.latex.strip():
                self.exact.append(latex_exact(answer, truth))
                self.distance.append(latex_distance(answer, truth))

    def add_latex_only(self, exact: bool, distance: float) -> None:
        self.tasks += 1
        self.latex_only_tasks += 1
        self.exact.append(exact)
        self.distance.append(distance)

    def summary(self) -> dict:
        return {
            "tasks": self.tasks,
            "latex_only_tasks": self.latex_only_tasks,
            "region_recall": self.matched / self.truth if self.truth else None,
            "region_precision": self.matched / self.answered if self.answered else None,
            "mean_iou": _mean(self.ious),
            "latex_exact_match": _mean(self.exact),
            "latex_edit_distance": _mean(self.distance),
        }


# --- pre-label changes ------------------------------------------------------------------------

@dataclass(frozen=True)
class PrelabelCase:
    """A model's pre-labels for an image and the answer finally accepted."""

    model_version: Hashable
    predicted: Sequence[Region]
    accepted: Sequence[Region]
    categories: tuple[str, ...] = ()


@dataclass
class PrelabelStats:
    """How much annotators changed pre-labels (the service's "online" accuracy).

    A prediction matched to an accepted region at IoU >= ``keep_iou`` was **kept**, matched
    at a lower IoU (>= ``match_iou``) **moved**; unmatched predictions were **deleted**,
    unmatched accepted regions **added**. Kept and moved measure placement only: a quad whose
    start corner the annotator rolled to the formula's reading direction, with the corners
    where they were, was kept (IoU does not depend on the order of the points). LaTeX: for every matched pair, whether the
    prediction was accepted unchanged (after normalisation) and the normalised token edit
    distance from prediction to accepted answer.

    Confidence: for every predicted region that carries one, what the model promised and what
    came of it. A region came out **right** when it was matched and its LaTeX accepted
    unchanged; ``confidence_mean`` against ``confidence_right_rate`` says whether the model's
    confidence holds on this data (the built-in recognizer's is calibrated on clean validation
    inks, :mod:`pipeline.ml.calibration`), and ``confidence_auroc`` how well it told right
    regions from the rest.
    """

    images: int = 0
    kept: int = 0
    moved: int = 0
    deleted: int = 0
    added: int = 0
    latex_unchanged: list[bool] = field(default_factory=list)
    latex_distance: list[float] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    came_right: list[bool] = field(default_factory=list)

    def summary(self) -> dict:
        predicted = self.kept + self.moved + self.deleted
        quality = confidence_metrics(self.confidences, self.came_right) if self.confidences else {}
        return {
            "images": self.images, "kept": self.kept, "moved": self.moved, "deleted": self.deleted,
            "added": self.added, "predicted": predicted, "accepted": self.kept + self.moved + self.added,
            "kept_rate": self.kept / predicted if predicted else None,
            "latex_unchanged_rate": _mean(self.latex_unchanged),
            "latex_edit_distance": _mean(self.latex_distance),
            "with_confidence": len(self.confidences),
            "confidence_mean": _mean(self.confidences),
            "confidence_right_rate": _mean(self.came_right),
            "confidence_ece": quality.get("ece"),
            "confidence_auroc": quality.get("auroc"),
        }


def prelabel_changes(cases: Iterable[PrelabelCase], *, keep_iou: float = DEFAULT_KEEP_IOU,
                     match_iou: float = DEFAULT_PRELABEL_MATCH_IOU) -> dict:
    """Pre-label change statistics overall, per model version and per (model version, category)."""
    if not 0 < match_iou <= keep_iou <= 1:
        raise ValueError("need 0 < match_iou <= keep_iou <= 1")
    overall = PrelabelStats()
    by_model: dict = defaultdict(PrelabelStats)
    by_model_category: dict = defaultdict(PrelabelStats)
    cases = list(cases)
    ious = pair_ious([(c.predicted, c.accepted) for c in cases])
    for case, iou in zip(cases, ious, strict=True):
        matches = match_regions(case.predicted, case.accepted, min_iou=match_iou, ious=iou.region)
        targets = [overall, by_model[case.model_version]]
        targets += [by_model_category[(case.model_version, c)] for c in set(case.categories)]
        kept = sum(1 for m in matches if m.iou >= keep_iou)
        moved = len(matches) - kept
        unchanged = [latex_exact(case.predicted[m.a], case.accepted[m.b]) for m in matches]
        distance = [latex_distance(case.predicted[m.a], case.accepted[m.b]) for m in matches]
        right = {m.a: same for m, same in zip(matches, unchanged, strict=True)}
        rated = [k for k, r in enumerate(case.predicted) if r.confidence is not None]
        confidences = [case.predicted[k].confidence for k in rated]
        came_right = [right.get(k, False) for k in rated]
        for t in targets:
            t.images += 1
            t.kept += kept
            t.moved += moved
            t.deleted += len(case.predicted) - len(matches)
            t.added += len(case.accepted) - len(matches)
            t.latex_unchanged += unchanged
            t.latex_distance += distance
            t.confidences += confidences
            t.came_right += came_right
    return {"overall": overall.summary(),
            "by_model": {k: v.summary() for k, v in by_model.items()},
            "by_model_category": {k: v.summary() for k, v in by_model_category.items()}}


# --- reviews ------------------------------------------------------------------------------

ACCEPT, REJECT = "accept", "reject"


@dataclass(frozen=True)
class ReviewRow:
    """One review decision; a rejection names zero or more reasons, an acceptance may have
    `corrected` some regions (accepted with corrections: their LaTeX, their corners, or both;
    any non-empty `Review.corrections` counts)."""

    decision: str
    vendor: Hashable = None
    annotator: Hashable = None
    reasons: tuple[str, ...] = ()
    corrected: bool = False


def _review_summary(rows: list[tuple[ReviewRow, int]]) -> dict:
    accepted = sum(n for r, n in rows if r.decision == ACCEPT)
    rejected = sum(n for r, n in rows if r.decision == REJECT)
    decided = accepted + rejected
    reasons: dict[str, int] = defaultdict(int)
    for r, n in rows:
        if r.decision == REJECT:
            for reason in r.reasons or ("unspecified",):
                reasons[reason] += n
    total_reasons = sum(reasons.values())
    corrected = sum(n for r, n in rows if r.decision == ACCEPT and r.corrected)
    return {
        "reviews": decided, "accepted": accepted, "rejected": rejected,
        "accept_rate": accepted / decided if decided else None,
        "reject_rate": rejected / decided if decided else None,
        # Acceptances the reviewer had to fix (LaTeX or corners): still accepted (and paid), but
        # not right as handed in, so an accept rate alone would flatter the work.
        "corrected_on_acceptance": corrected,
        "corrected_rate": corrected / accepted if accepted else None,
        # Share of all reasons given (a rejection may give several).
        "reasons": {k: {"count": n, "share": n / total_reasons}
                    for k, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))},
    }


def review_stats(rows: Iterable[ReviewRow]) -> dict:
    """Accept/reject rates and the distribution of reject reasons, overall, per vendor and annotator."""
    return review_stats_counted((r, 1) for r in rows)


def review_stats_counted(rows: Iterable[tuple[ReviewRow, int]]) -> dict:
    """:func:`review_stats` over ``(row, how many such reviews)`` pairs, e.g. a SQL GROUP BY's
    output, so a million reviews cost as many rows as there are distinct (vendor, annotator,
    decision, reasons) combinations."""
    rows = list(rows)
    bad = sorted({r.decision for r, _ in rows} - {ACCEPT, REJECT})
    if bad:
        raise ValueError(f"unknown review decisions {bad}; expected {ACCEPT!r} or {REJECT!r}")
    by_vendor: dict = defaultdict(list)
    by_annotator: dict = defaultdict(list)
    for r, n in rows:
        by_vendor[r.vendor].append((r, n))
        by_annotator[r.annotator].append((r, n))
    return {"overall": _review_summary(rows),
            "by_vendor": {k: _review_summary(v) for k, v in by_vendor.items()},
            "by_annotator": {k: _review_summary(v) for k, v in by_annotator.items()}}


# --- throughput and cost ----------------------------------------------------------------------

@dataclass(frozen=True)
class TaskRow:
    """A finished task: who did it, how long it took, whether it was accepted, its formulas."""

    vendor: Hashable
    annotator: Hashable
    seconds: float
    accepted: bool
    formulas: int = 0


def throughput_cost(rows: Iterable[TaskRow], unit_price: Mapping[Hashable, Decimal | int | str]) -> dict:
    """Median seconds per task and cost per vendor (and per annotator, without cost).

    A vendor is paid ``unit_price[vendor]`` per **accepted** task; ``cost_per_formula`` is
    that cost over the formulas in accepted tasks. Money stays :class:`~decimal.Decimal`.
    The overall cost sums the vendors; a vendor without a price has cost None.
    """
    by_vendor: dict = defaultdict(list)
    by_annotator: dict = defaultdict(list)
    all_rows = []
    for r in rows:
        by_vendor[r.vendor].append(r)
        by_annotator[r.annotator].append(r)
        all_rows.append(r)

    def base(rs: list[TaskRow]) -> dict:
        accepted = [r for r in rs if r.accepted]
        return {"tasks": len(rs), "accepted_tasks": len(accepted),
                "accepted_formulas": sum(r.formulas for r in accepted),
                "median_seconds_per_task": statistics.median(r.seconds for r in rs) if rs else None}

    vendors = {}
    total_cost = Decimal(0)
    priced_formulas = 0
    for vendor, rs in by_vendor.items():
        row = base(rs)
        price = unit_price.get(vendor)
        if price is None:
            row["cost"] = row["cost_per_formula"] = None
        else:
            cost = Decimal(str(price)) * row["accepted_tasks"]
            row["cost"] = cost
            row["cost_per_formula"] = cost / row["accepted_formulas"] if row["accepted_formulas"] else None
            total_cost += cost
            priced_formulas += row["accepted_formulas"]
        vendors[vendor] = row
    overall = base(all_rows)
    overall["cost"] = total_cost
    overall["cost_per_formula"] = total_cost / priced_formulas if priced_formulas else None
    return {"overall": overall, "by_vendor": vendors,
            "by_annotator": {k: base(v) for k, v in by_annotator.items()}}
