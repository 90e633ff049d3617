"""QA statistics, each checked against answers worked out by hand."""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from curation.exporters import mask_to_rle
from pipeline.qa import (
    GoldCase,
    Labeling,
    OverlapTask,
    PrelabelCase,
    Region,
    ReviewRow,
    TaskRow,
    agreement,
    gold_accuracy,
    mask_iou,
    match_regions,
    prelabel_changes,
    quad_iou,
    review_stats,
    throughput_cost,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def rows_mask(first: int, last: int) -> dict:
    m = np.zeros((10, 10), dtype=np.uint8)
    m[first:last + 1] = 1
    return mask_to_rle(m)


def test_quad_iou_of_half_overlapping_squares_is_one_third():
    # Two 2x2 squares sharing a 1x2 strip: 2 / (4 + 4 - 2).
    assert quad_iou(box(0, 0, 2, 2), box(1, 0, 3, 2)) == pytest.approx(1 / 3)
    assert quad_iou(box(0, 0, 2, 2), box(5, 5, 6, 6)) == 0
    # A self-crossing (bow-tie) quad is repaired instead of raising.
    assert 0 <= quad_iou([[0, 0], [2, 2], [2, 0], [0, 2]], box(0, 0, 2, 2)) <= 1


def test_mask_iou_counts_pixels():
    # Rows 0-4 (50 px) and rows 3-9 (70 px) share rows 3-4 (20 px): 20 / 100.
    assert mask_iou(rows_mask(0, 4), rows_mask(3, 9)) == pytest.approx(0.2)


def test_hungarian_matching_beats_greedy():
    # Height-1 strips, so IoU is interval IoU. Greedy would pair a1-b1 (0.9) and leave a2
    # with b2 at 4/11 < 0.5; the optimal assignment pairs a1-b2 (0.6) and a2-b1 (0.8).
    a = [Region(points=box(0, 0, 10, 1)), Region(points=box(2, 0, 11, 1))]
    b = [Region(points=box(1, 0, 10, 1)), Region(points=box(0, 0, 6, 1))]
    matches = match_regions(a, b, min_iou=0.5)
    assert [(m.a, m.b) for m in matches] == [(0, 1), (1, 0)]
    assert [m.iou for m in matches] == pytest.approx([0.6, 0.8])
    assert match_regions(a, [], min_iou=0.5) == []


def _overlap_tasks():
    # Task 1 (printed): ann1/V1 vs ann2/V2.
    #   square vs square shifted by 2: IoU 80/120 = 2/3; "x^2" vs "x^{2}": exact, distance 0.
    #   identical far squares: IoU 1; \frac12 vs \frac{1}{3}: 1 of 7 tokens differs.
    #   ann2 has one more region, unmatched.
    ann1 = Labeling("ann1", "V1", [Region(points=box(0, 0, 10, 10), latex="x^2"),
                                   Region(points=box(100, 0, 110, 10), latex=r"\frac12")])
    ann2 = Labeling("ann2", "V2", [Region(points=box(2, 0, 12, 10), latex="x^{2}"),
                                   Region(points=box(100, 0, 110, 10), latex=r"\frac{1}{3}"),
                                   Region(points=box(200, 0, 210, 10), latex="z")])
    # Task 2 (handwritten): ann1 vs ann3, both V1: masks rows 0-5 vs 0-9, IoU 60/100; "y" = "y".
    ann1b = Labeling("ann1", "V1", [Region(mask_rle=rows_mask(0, 5), latex="y")])
    ann3 = Labeling("ann3", "V1", [Region(mask_rle=rows_mask(0, 9), latex="y")])
    return [OverlapTask(1, [ann1, ann2], ("printed",)), OverlapTask(2, [ann1b, ann3], ("handwritten",))]


def test_agreement_on_overlapped_tasks_matches_hand_computation():
    stats = agreement(_overlap_tasks())
    overall = stats["overall"]
    assert overall["pairs"] == 2
    assert overall["matched_regions"] == 3
    assert overall["region_f1"] == pytest.approx(6 / 7)          # 2 * 3 matched / 7 regions
    assert overall["mean_quad_iou"] == pytest.approx((2 / 3 + 1) / 2)
    assert overall["mean_mask_iou"] == pytest.approx(0.6)
    assert overall["latex_exact_match"] == pytest.approx(2 / 3)
    assert overall["latex_edit_distance"] == pytest.approx((0 + 1 / 7 + 0) / 3)

    printed = stats["by_category"]["printed"]
    assert printed["region_f1"] == pytest.approx(4 / 5)
    assert printed["mean_mask_iou"] is None
    assert printed["latex_exact_match"] == pytest.approx(0.5)
    assert printed["latex_edit_distance"] == pytest.approx(1 / 14)
    assert stats["by_category"]["handwritten"]["mean_mask_iou"] == pytest.approx(0.6)

    assert stats["by_annotator"]["ann1"] == overall                 # in both pairs
    assert stats["by_annotator"]["ann2"] == printed
    assert stats["by_annotator"]["ann3"] == stats["by_category"]["handwritten"]
    assert stats["by_vendor"]["V1"] == overall
    assert stats["by_vendor"]["V2"] == printed


def test_three_annotators_on_one_task_give_three_pairs():
    regions = [Region(points=box(0, 0, 10, 10), latex="a")]
    task = OverlapTask(1, [Labeling(f"a{i}", "V", regions) for i in range(3)])
    overall = agreement([task])["overall"]
    assert overall["pairs"] == 3
    assert overall["region_f1"] == 1 and overall["latex_exact_match"] == 1


def test_prelabel_changes_count_kept_moved_deleted_added():
    predicted = [Region(points=box(0, 0, 10, 10), latex="a+b"),      # accepted as is: kept
                 Region(points=box(50, 0, 60, 10), latex="c"),       # shifted 2 px (IoU 2/3): moved
                 Region(points=box(200, 0, 210, 10), latex="q")]     # no counterpart: deleted
    accepted = [Region(points=box(0, 0, 10, 10), latex="a + b"),
                Region(points=box(52, 0, 62, 10), latex="d"),
                Region(points=box(300, 0, 310, 10), latex="new")]    # no prediction: added
    cases = [PrelabelCase("m1", predicted, accepted, ("printed",)),
             PrelabelCase("m2", [], [Region(points=box(0, 0, 1, 1))], ("printed",))]
    stats = prelabel_changes(cases)
    m1 = stats["by_model"]["m1"]
    assert (m1["kept"], m1["moved"], m1["deleted"], m1["added"]) == (1, 1, 1, 1)
    assert m1["kept_rate"] == pytest.approx(1 / 3)
    assert m1["latex_unchanged_rate"] == pytest.approx(0.5)
    assert m1["latex_edit_distance"] == pytest.approx((0 + 1) / 2)
    m2 = stats["by_model"]["m2"]
    assert (m2["added"], m2["predicted"], m2["kept_rate"], m2["latex_edit_distance"]) == (1, 0, None, None)
    assert stats["overall"]["added"] == 2 and stats["overall"]["images"] == 2
    assert stats["by_model_category"][("m1", "printed")] == m1
    # With the "kept" threshold below 2/3 the shifted region counts as kept too.
    assert prelabel_changes(cases, keep_iou=0.6)["by_model"]["m1"]["kept"] == 2
    with pytest.raises(ValueError):
        prelabel_changes(cases, keep_iou=0.05, match_iou=0.1)


def test_gold_accuracy_per_annotator_and_vendor():
    truth = [Region(points=box(0, 0, 10, 10), latex="x"), Region(points=box(50, 0, 60, 10), latex="y")]
    good = GoldCase("ann1", "V1", [Region(points=box(0, 0, 10, 10), latex="x"),
                                   Region(points=box(300, 0, 310, 10), latex="w")], truth)
    poor = GoldCase("ann2", "V1", [Region(points=box(50, 0, 60, 10), latex="z")], truth)
    stats = gold_accuracy([good, poor])
    a1 = stats["by_annotator"]["ann1"]
    assert (a1["region_recall"], a1["region_precision"], a1["mean_iou"]) == (0.5, 0.5, 1.0)
    assert (a1["latex_exact_match"], a1["latex_edit_distance"]) == (1.0, 0.0)
    a2 = stats["by_annotator"]["ann2"]
    assert (a2["region_recall"], a2["region_precision"], a2["latex_exact_match"]) == (0.5, 1.0, 0.0)
    v1 = stats["by_vendor"]["V1"]
    assert (v1["tasks"], v1["region_recall"], v1["region_precision"]) == (2, 0.5, pytest.approx(2 / 3))
    assert v1["latex_exact_match"] == 0.5



def test_gold_known_only_by_latex_is_scored_on_the_closest_region_latex():
    truth = Region(latex="a+b")
    one = GoldCase("ann1", "V1", [Region(points=box(0, 0, 10, 10), latex="a + b")], [], truth)
    several = GoldCase("ann2", "V1", [Region(points=box(0, 0, 10, 10), latex="c"),
                                      Region(points=box(20, 0, 30, 10), latex="a+c")], [], truth)
    missed = GoldCase("ann3", "V2", [], [], truth)
    stats = gold_accuracy([one, several, missed])
    a1, a2, a3 = (stats["by_annotator"][k] for k in ("ann1", "ann2", "ann3"))
    assert (a1["latex_exact_match"], a1["latex_edit_distance"], a1["latex_only_tasks"]) == (1.0, 0.0, 1)
    # "a+c" is the closest of the two: 1 of 3 tokens off; the extra "c" is not held against it
    assert (a2["latex_exact_match"], a2["latex_edit_distance"]) == (0.0, pytest.approx(1 / 3))
    # no region at all reads as an empty formula
    assert (a3["latex_exact_match"], a3["latex_edit_distance"]) == (0.0, 1.0)
    for group in (a1, a2, a3, stats["overall"]):
        assert (group["region_recall"], group["region_precision"], group["mean_iou"]) == (None, None, None)
    assert (stats["overall"]["tasks"], stats["overall"]["latex_only_tasks"]) == (3, 3)


def test_latex_only_gold_leaves_the_geometry_of_gold_with_regions_alone():
    boxed = GoldCase("ann1", "V1", [Region(points=box(0, 0, 10, 10), latex="x")],
                     [Region(points=box(0, 0, 10, 10), latex="x")])
    latex_only = GoldCase("ann1", "V1", [Region(points=box(0, 0, 10, 10), latex="y"),
                                         Region(points=box(50, 0, 60, 10), latex="z")], [], Region(latex="y"))
    a1 = gold_accuracy([boxed, latex_only])["by_annotator"]["ann1"]
    assert (a1["tasks"], a1["latex_only_tasks"]) == (2, 1)
    assert (a1["region_recall"], a1["region_precision"], a1["mean_iou"]) == (1.0, 1.0, 1.0)
    assert (a1["latex_exact_match"], a1["latex_edit_distance"]) == (1.0, 0.0)
    # a gold answer with regions keeps its rules even when it also carries the latex
    both = GoldCase("ann2", "V1", [], [Region(points=box(0, 0, 10, 10), latex="x")], Region(latex="x"))
    a2 = gold_accuracy([both])["by_annotator"]["ann2"]
    assert (a2["region_recall"], a2["latex_only_tasks"], a2["latex_exact_match"]) == (0.0, 0, None)

def test_review_rates_and_reason_distribution():
    rows = [ReviewRow("accept", "V1", "ann1")] * 3 + [
        ReviewRow("reject", "V1", "ann1", ("wrong latex",)),
        ReviewRow("reject", "V2", "ann2", ("wrong latex", "loose quad")),
        ReviewRow("reject", "V2", "ann2"),
    ]
    stats = review_stats(rows)
    overall = stats["overall"]
    assert (overall["reviews"], overall["accepted"], overall["rejected"]) == (6, 3, 3)
    assert overall["accept_rate"] == 0.5 and overall["reject_rate"] == 0.5
    assert overall["reasons"] == {"wrong latex": {"count": 2, "share": 0.5},
                                  "loose quad": {"count": 1, "share": 0.25},
                                  "unspecified": {"count": 1, "share": 0.25}}
    assert stats["by_vendor"]["V1"]["accept_rate"] == 0.75
    assert stats["by_vendor"]["V2"]["accept_rate"] == 0.0
    assert stats["by_annotator"]["ann2"]["reject_rate"] == 1.0
    with pytest.raises(ValueError, match="unknown review decisions"):
        review_stats([ReviewRow("maybe")])
    assert review_stats([])["overall"]["accept_rate"] is None


def test_throughput_and_cost_per_vendor():
    rows = [TaskRow("V1", "a", 10, True, 2), TaskRow("V1", "a", 20, True, 3), TaskRow("V1", "b", 60, False, 5),
            TaskRow("V2", "c", 30, True, 1), TaskRow("V2", "c", 40, True, 1),
            TaskRow("V3", "d", 5, True, 4)]
    stats = throughput_cost(rows, {"V1": "1.50", "V2": 2})
    v1 = stats["by_vendor"]["V1"]
    assert (v1["tasks"], v1["accepted_tasks"], v1["accepted_formulas"]) == (3, 2, 5)
    assert v1["median_seconds_per_task"] == 20
    assert v1["cost"] == Decimal("3.00") and v1["cost_per_formula"] == Decimal("0.60")
    v2 = stats["by_vendor"]["V2"]
    assert v2["median_seconds_per_task"] == 35 and v2["cost"] == 4 and v2["cost_per_formula"] == 2
    assert stats["by_vendor"]["V3"]["cost"] is None  # no price agreed: not guessed
    overall = stats["overall"]
    assert overall["median_seconds_per_task"] == 25  # median of 5 10 20 30 40 60
    assert overall["cost"] == Decimal("7.00")
    assert overall["cost_per_formula"] == Decimal("1")  # 7.00 over the 7 formulas of priced vendors
    assert overall["accepted_formulas"] == 11
    assert stats["by_annotator"]["a"]["median_seconds_per_task"] == 15


def test_vectorised_quad_ious_equal_shapely_for_any_orientation():
    from pipeline.qa import quad_ious

    rng = np.random.default_rng(7)

    def quads(n):
        centre = rng.uniform(0, 100, (n, 1, 2))
        radius = rng.uniform(5, 40, (n, 1, 1))
        angles = np.sort(rng.uniform(0, 2 * np.pi, (n, 4)), axis=1)
        return centre + radius * np.stack([np.cos(angles), np.sin(angles)], -1)

    a, b = quads(2000), quads(2000)
    a[0] = b[0]  # identical
    a[1], b[1] = [[0, 0], [2, 2], [2, 0], [0, 2]], box(0, 0, 2, 2)  # a bow-tie goes through shapely
    a[2], b[2] = box(0, 0, 2, 2), box(2, 0, 4, 2)  # touching only
    expected = np.array([quad_iou(x, y) for x, y in zip(a, b, strict=True)])
    assert (expected > 0).sum() > 100
    for x, y in ((a, b), (a[:, ::-1], b), (a, b[:, ::-1])):
        assert np.abs(quad_ious(np.ascontiguousarray(x), np.ascontiguousarray(y)) - expected).max() < 1e-9
    assert quad_ious(a[:1], b[:1])[0] == pytest.approx(1.0)


def test_prelabel_quad_with_only_its_start_corner_rolled_counts_as_kept():
    # The annotator turned the pre-label to the formula's reading direction (another first
    # corner) without moving a corner: kept, since kept/moved measure placement (IoU).
    pred = box(0, 0, 10, 10)
    rolled = np.roll(pred, -2, axis=0)
    o = prelabel_changes([PrelabelCase("m", [Region(points=pred, latex="a")],
                                       [Region(points=rolled, latex="a")])])["overall"]
    assert (o["kept"], o["moved"], o["deleted"], o["added"]) == (1, 0, 0, 0)


def test_prelabel_confidence_counts_only_rated_regions_and_a_deleted_one_as_wrong():
    predicted = [Region(points=box(0, 0, 10, 10), latex="a", confidence=0.8),      # kept, unchanged: right
                 Region(points=box(50, 0, 60, 10), latex="c", confidence=0.7),     # kept, LaTeX fixed: wrong
                 Region(points=box(200, 0, 210, 10), latex="q", confidence=0.9),   # deleted: wrong
                 Region(points=box(300, 0, 310, 10), latex="r")]                   # no confidence: not rated
    accepted = [Region(points=box(0, 0, 10, 10), latex="a"), Region(points=box(50, 0, 60, 10), latex="d"),
                Region(points=box(300, 0, 310, 10), latex="r")]
    o = prelabel_changes([PrelabelCase("m", predicted, accepted)])["overall"]
    assert o["with_confidence"] == 3 and o["confidence_right_rate"] == pytest.approx(1 / 3)
    assert o["confidence_mean"] == pytest.approx(0.8)
    assert o["confidence_auroc"] == pytest.approx(0.5)  # the right 0.8 sits between the wrong 0.7 and 0.9
    none = prelabel_changes([PrelabelCase("m", [Region(points=box(0, 0, 1, 1))], [])])["overall"]
    assert (none["with_confidence"], none["confidence_mean"], none["confidence_auroc"]) == (0, None, None)
    everyone_right = prelabel_changes([PrelabelCase("m", predicted[:1], accepted[:1])])["overall"]
    assert everyone_right["confidence_auroc"] is None and everyone_right["confidence_right_rate"] == 1.0

