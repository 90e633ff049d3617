"""The recognizer's confidence as P(exact): the fit, its storage, its use and its measures."""
from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

from pipeline.ml import calibration, synth
from pipeline.ml.calibration import Platt
from pipeline.ml.inference import WEIGHTS_DIR, calibrate, load_recognizer, read_crops


def test_the_fit_recovers_the_logistic_law_the_outcomes_were_drawn_from():
    rng = np.random.default_rng(0)
    log_probs = -rng.exponential(2.0, 20000)
    exact = rng.random(20000) < 1 / (1 + np.exp(-(1.5 * log_probs + 2.0)))
    fit = calibration.fit_platt(log_probs, exact)
    assert fit.a == pytest.approx(1.5, abs=0.08) and fit.b == pytest.approx(2.0, abs=0.08)


@pytest.mark.parametrize("outcome", [True, False])
def test_outcomes_all_alike_cannot_be_fitted(outcome):
    with pytest.raises(ValueError, match="all " + ("exact" if outcome else "wrong")):
        calibration.fit_platt([-1.0, -2.0, -3.0], [outcome] * 3)


def test_a_reading_gets_its_modes_fit_else_its_sequence_probability():
    confs = [0.9, 0.5, 0.8]
    log_prob = math.log(0.9 * 0.5 * 0.8)
    fits = {"greedy": Platt(a=2.0, b=1.0)}
    assert calibration.confidence(confs, fits, "greedy") == pytest.approx(1 / (1 + math.exp(-(2 * log_prob + 1))))
    assert calibration.confidence(confs, fits, "beam:4") == pytest.approx(0.36)
    assert calibration.confidence(confs, None, "greedy") == pytest.approx(0.36)
    assert calibration.confidence([], fits, "greedy") == 0.0  # nothing read is not a right reading


def test_one_unsure_token_lowers_the_confidence_more_than_the_geometric_mean_did():
    sure, one_unsure = [0.99] * 12, [0.99] * 11 + [0.2]
    geometric = math.exp(sum(math.log(c) for c in one_unsure) / 12)
    assert geometric > 0.85  # the old sequence confidence barely moved
    assert calibration.confidence(one_unsure, None, "greedy") < 0.2 < calibration.confidence(sure, None, "greedy")


def test_ways_of_reading_are_named_independently_of_the_views_order():
    assert calibration.mode_key() == "greedy" and calibration.mode_key(1) == "greedy"
    assert calibration.mode_key(4) == "beam:4"
    assert calibration.mode_key(1, ("wide", "trim")) == calibration.mode_key(1, ("trim", "wide")) == "views:trim,wide"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ([1, 2], "calibration must be an object"),
        ({"greedy": 3}, "calibration.greedy must be an object"),
        ({"greedy": {"b": 1}}, "calibration.greedy.a must be a finite number"),
        ({"greedy": {"a": 1, "b": "x"}}, "calibration.greedy.b must be a finite number"),
        ({"greedy": {"a": float("nan"), "b": 1}}, "calibration.greedy.a must be a finite number"),
        ({"greedy": {"a": True, "b": 1}}, "calibration.greedy.a must be a finite number"),
        ({"beam:4": {"a": -1, "b": 1}}, "calibration.beam:4.a must not be negative"),
    ],
)
def test_a_bad_calibration_is_refused_naming_the_field(raw, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        calibration.parse(raw)


def test_a_good_calibration_parses_and_extra_facts_are_kept_aside():
    fits = calibration.parse({"greedy": {"a": 1, "b": -0.5, "fitted_on": "x.tar.xz", "samples": 9}})
    assert fits == {"greedy": Platt(a=1.0, b=-0.5)}
    assert calibration.parse(None) == {}


def test_confidence_measures_on_a_hand_worked_example():
    confs = [0.1, 0.2, 0.3, 0.6, 0.8, 0.9, 0.95, 0.35, 0.7, 0.05]
    exact = [False, False, True, True, True, True, True, False, False, False]
    m = calibration.confidence_metrics(confs, exact)
    # exact/wrong pairs in order: of 5 x 5, the exact 0.3 is below the wrong 0.35 and 0.7, 0.6 below 0.7
    assert m["auroc"] == pytest.approx(22 / 25)
    assert m["brier"] == pytest.approx(np.mean((np.array(confs) - np.array(exact)) ** 2))
    # ten bins of one reading each but 0.3/0.35 share a bin: |0.325 - 0.5| * 2 + the others
    singles = [abs(c - e) for c, e in zip(confs, exact, strict=True) if c not in (0.3, 0.35)]
    assert m["ece"] == pytest.approx((sum(singles) + 2 * 0.175) / 10)
    assert m["wrong_in_lowest_30pct"] == pytest.approx(3 / 5)  # 0.05, 0.1, 0.2: all wrong
    assert m["exact_in_highest_30pct"] == pytest.approx(1.0)  # 0.95, 0.9, 0.8
    perfect = calibration.confidence_metrics([0.1, 0.2, 0.9, 0.8], [False, False, True, True])
    assert perfect["auroc"] == 1.0
    assert calibration.confidence_metrics([0.2, 0.8], [True, True])["auroc"] is None  # undefined, not NaN


def test_storing_a_fit_keeps_the_rest_of_the_config_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"vocab": ["a"], "calibration": {"greedy": {"a": 1, "b": 0}}}))
    calibration.store(tmp_path, "views:trim,wide", Platt(a=1.25, b=2.5), samples=3)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["vocab"] == ["a"] and config["calibration"]["greedy"] == {"a": 1, "b": 0}
    assert config["calibration"]["views:trim,wide"] == {"a": 1.25, "b": 2.5, "samples": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_the_committed_recognizer_says_p_exact_by_its_greedy_fit():
    model = load_recognizer(device="cpu")
    assert {"greedy", "views:trim,wide"} <= set(model.calibration)
    crops = [synth.render_mathtext(s, size=24, font="cm") for s in (r"x^{2}+1", r"\frac{a}{b}", r"\sqrt{y}")]
    fit = model.calibration["greedy"]
    for reading in read_crops(model, crops):
        assert reading.confidence == pytest.approx(fit(calibration.sequence_log_prob(reading.token_confidences)))


def test_a_recognizer_without_a_fit_gives_the_sequence_probability(tmp_path):
    folder = tmp_path / "recognizer"
    shutil.copytree(WEIGHTS_DIR / "recognizer", folder)
    config = json.loads((folder / "config.json").read_text())
    del config["calibration"]
    (folder / "config.json").write_text(json.dumps(config))
    model = load_recognizer(folder, device="cpu")
    (reading,) = read_crops(model, [synth.render_mathtext("a+b", size=24, font="cm")])
    assert reading.confidence == pytest.approx(math.prod(reading.token_confidences))


def test_the_fit_on_real_validation_inks_makes_the_confidence_a_frequency(shared_data):
    from common.latex import normalize_tokens
    from pipeline.ml.ink import iter_inks, render_ink

    model = load_recognizer(device="cpu")
    inks = [(render_ink(ink), normalize_tokens(ink.truth))
            for _, ink in iter_inks(shared_data / "crohme" / "test-2013.tar.xz")][:200]
    fit, readings = calibrate(model, inks)
    exact = [r.tokens == truth for r, (_, truth) in zip(readings, inks, strict=True)]
    fitted = [fit(calibration.sequence_log_prob(r.token_confidences)) for r in readings]
    # a logistic fit with an intercept matches the mean outcome on its own data
    assert np.mean(fitted) == pytest.approx(np.mean(exact), abs=0.01)
    old = [math.exp(np.mean(np.log(r.token_confidences))) if r.token_confidences else 0 for r in readings]
    assert calibration.confidence_metrics(fitted, exact)["ece"] < calibration.confidence_metrics(old, exact)["ece"] / 3
