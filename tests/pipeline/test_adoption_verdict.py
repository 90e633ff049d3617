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


def long_row(weights, score, ink_exact, long_bleu):
    return {**row(weights, score, ink_exact), "long_pages": {"bleu4": long_bleu}}


def test_a_long_formula_round_adopts_the_best_score_among_candidates_that_read_long_pages_better():
    from pipeline.ml.evaluate import long_formula_verdict

    committed = long_row("committed", 0.6438, 0.3847, 0.336)
    verdict = long_formula_verdict(committed, [
        long_row("step-300.pt", 0.6450, 0.3800, 0.370),   # long pages gain 0.034: under 0.05
        long_row("step-600.pt", 0.6400, 0.3790, 0.420),   # qualifies: score 0.0038 lower, within 0.005
        long_row("step-900.pt", 0.6420, 0.3830, 0.400),   # qualifies, and scores best of those
        long_row("step-1050.pt", 0.6300, 0.3850, 0.480),  # best long pages, but the score falls 0.0138
    ])
    assert verdict["adopt"] == "step-900.pt"


def test_a_long_formula_round_that_loses_general_accuracy_adopts_nothing():
    from pipeline.ml.evaluate import long_formula_verdict

    committed = long_row("committed", 0.6438, 0.3847, 0.336)
    verdict = long_formula_verdict(committed, [long_row("step-150.pt", 0.6300, 0.3850, 0.480),
                                               long_row("step-300.pt", 0.6430, 0.3700, 0.450)])
    assert verdict["adopt"] is None and verdict["best"] == "step-150.pt"
    assert "more than 0.005 below the committed 0.6438" in verdict["reason"]
    ink = long_formula_verdict(committed, [long_row("step-300.pt", 0.6430, 0.3700, 0.450)])
    assert ink["adopt"] is None and "ink exact match 0.37" in ink["reason"]
    short = long_formula_verdict(committed, [long_row("step-450.pt", 0.6500, 0.3900, 0.380)])
    assert short["adopt"] is None and "gains 0.044, under 0.05" in short["reason"]


def test_a_round_that_reads_the_real_long_pages_worse_is_refused_when_they_are_judged():
    # the twenty-fourth session's rule: its CROHME truths typeset by pdflatex resemble the typeset
    # validation set, so the real long pages (not trained on) must hold within 0.01
    committed = long_row("committed", 0.6440, 0.3787, 0.426)
    worse = [long_row("E8/step-900.pt", 0.6560, 0.3800, 0.410)]
    assert adoption_verdict(committed, worse)["adopt"] == "E8/step-900.pt"  # not judged without long_slack
    verdict = adoption_verdict(committed, worse, long_slack=0.01)
    assert verdict["adopt"] is None and "0.016 below the committed, over 0.01" in verdict["reason"]
    held = adoption_verdict(committed, [long_row("E8/step-900.pt", 0.6560, 0.3800, 0.418)], long_slack=0.01)
    assert held["adopt"] == "E8/step-900.pt"
