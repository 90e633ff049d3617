"""The rule that adopts a fine-tuned recognizer from validation rows (bench/finetune_validation.py)."""
from pipeline.ml.evaluate import adoption_verdict


def row(weights, score, ink_exact):
    return {"weights": weights, "score": score, "inks": {"exact": ink_exact}}


def test_a_lead_under_the_margin_adopts_nothing():
    # the twentieth session's round: best of 18 led by 0.0044 and read both test sets worse
    committed = row("pipeline/weights/recognizer", 0.6354, 0.3728)
    verdict = adoption_verdict(committed, [row("E4/step-600.pt", 0.6398, 0.3772), row("E4/step-450.pt", 0.629, 0.3668)])
    assert verdict["adopt"] is None
    assert verdict["best"] == "E4/step-600.pt"
    assert verdict["lead"] == 0.0044
    assert "under 0.01" in verdict["reason"]


def test_the_best_candidate_is_adopted_when_it_leads_by_the_margin():
    # the sixteenth session's round: 0.631 against 0.608
    committed = row("committed", 0.608, 0.370)
    verdict = adoption_verdict(committed, [row("E2/step-900.pt", 0.629, 0.371), row("E2/step-1050.pt", 0.631, 0.374)])
    assert verdict["adopt"] == "E2/step-1050.pt"
    assert verdict["lead"] == 0.023


def test_a_candidate_that_loses_more_than_a_point_of_ink_exact_match_is_refused():
    committed = row("committed", 0.608, 0.370)
    verdict = adoption_verdict(committed, [row("printed-heavy.pt", 0.640, 0.355)])
    assert verdict["adopt"] is None
    assert "0.015 below the committed" in verdict["reason"]


def test_no_candidates_adopts_nothing():
    assert adoption_verdict(row("committed", 0.6, 0.3), [])["adopt"] is None
