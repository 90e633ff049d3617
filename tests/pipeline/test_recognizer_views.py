"""Test-time views: each crop read together with stretched/trimmed pictures of it, log-probabilities averaged."""
from __future__ import annotations

import io
import json
import math

import cv2
import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from pipeline.ml import inference, synth
from pipeline.ml.inference import TTA_VIEWS, VIEWS, FormulaReader, load_recognizer
from pipeline.ml.recognizer import batch_crops, prepare_crop

SOURCES = [r"x^{2}+3x-4=0", r"\frac{a+b}{2}", r"\sqrt{y}-1", r"a_{n+1}=2a_{n}", r"7-3=4", r"p+q"]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_recognizer(device="cpu", precision="float32")


@pytest.fixture(scope="module")
def crops():
    return [synth.render_mathtext(s, size=24, font="cm") for s in SOURCES]


def _prepared(model, crops):
    return [prepare_crop(c, model.cfg.height, model.cfg.max_width) for c in crops]


def test_one_view_reads_as_plain_greedy_decoding(model, crops):
    x = batch_crops(_prepared(model, crops))
    assert model.greedy_views(x, 1) == model.greedy(x)


def test_identical_views_read_and_score_as_the_crop_alone(model, crops):
    # formulas of different lengths finish at different steps: each view's rows must be dropped together
    prepared = _prepared(model, crops)
    plain = model.greedy(batch_crops(prepared))
    assert len({len(toks) for toks, _ in plain}) > 2
    twice = model.greedy_views(batch_crops(prepared + prepared), 2)
    assert [t for t, _ in twice] == [t for t, _ in plain]
    for (_, c2), (_, c1) in zip(twice, plain, strict=True):
        assert np.allclose(c2, c1, atol=1e-5)


def test_rows_that_are_not_whole_views_are_refused(model, crops):
    x = batch_crops(_prepared(model, crops[:3]))
    with pytest.raises(ValueError, match="not 2 views"):
        model.greedy_views(x, 2)


def test_each_step_takes_the_token_with_the_highest_mean_log_probability(model, monkeypatch):
    # two views are fairly sure of token A, the third all but rules it out: the views' mean
    # probability would pick A (0.634), their mean log-probability picks B; the confidence is
    # the views' mean probability of the token taken
    a, b, eos = model.stoi["a"], model.stoi["b"], model.stoi["<eos>"]
    steps = iter(range(10))

    def fake_next(state, tok):
        step = next(steps)
        logits = torch.full((tok.shape[0], len(model.cfg.vocab)), -1e4)
        if step == 0:
            for row, p_a in enumerate([0.95, 0.95, 0.001]):
                logits[row, a], logits[row, b] = math.log(p_a), math.log(1 - p_a)
        else:
            logits[:, eos] = 0.0
        state["n"] += 1
        return logits

    monkeypatch.setattr(model, "_decode_next", fake_next)
    x = batch_crops(_prepared(model, [synth.render_mathtext("a", size=24)] * 3))
    ((toks, confs),) = model.greedy_views(x, 3)
    assert toks == ["b"] and confs == pytest.approx([(0.05 + 0.05 + 0.999) / 3], abs=1e-4)


def test_views_keep_the_models_height_and_width_bound(model, crops):
    for crop in _prepared(model, crops):
        for name, view in VIEWS.items():
            out = view(crop, model.cfg.max_width)
            assert out.shape[0] == model.cfg.height and out.dtype == crop.dtype, name
            assert 8 <= out.shape[1] <= model.cfg.max_width, name
    wide = VIEWS["wide"](_prepared(model, crops)[0], model.cfg.max_width)
    assert wide.shape[1] == round(_prepared(model, crops)[0].shape[1] * 1.2)
    squeezed = np.zeros((model.cfg.height, model.cfg.max_width), np.float32)
    assert VIEWS["wide"](squeezed, model.cfg.max_width).shape[1] == model.cfg.max_width
    tiny = np.zeros((model.cfg.height, 8), np.float32)
    assert VIEWS["trim"](tiny, model.cfg.max_width) is tiny  # nothing left to trim


def test_reading_with_views_in_a_batch_equals_reading_each_crop_alone(model, crops):
    together = inference.read_crops(model, crops, batch_size=8, views=TTA_VIEWS)
    alone = [inference.read_crops(model, [c], batch_size=1, views=TTA_VIEWS)[0] for c in crops]
    assert [r.tokens for r in together] == [r.tokens for r in alone]
    assert all(0 < r.confidence <= 1 and len(r.token_confidences) == len(r.tokens) for r in together)


def test_views_change_the_reading_of_some_crops(model, crops):
    # the views are pictures of their own: a reader that ignored them would read exactly as greedy
    degraded = [cv2.GaussianBlur(cv2.resize(c, None, fx=0.6, fy=0.6), (3, 3), 0) for c in crops]
    plain = inference.read_crops(model, degraded, batch_size=8)
    viewed = inference.read_crops(model, degraded, batch_size=8, views=TTA_VIEWS)
    assert any(p.token_confidences != v.token_confidences for p, v in zip(plain, viewed, strict=True))


def test_an_upside_down_crop_is_turned_before_its_views_are_read(model, crops):
    upright = crops[1]
    turned, straight = inference.read_crops(model, [cv2.rotate(upright, cv2.ROTATE_180), upright], orient=True,
                                            views=TTA_VIEWS)
    assert turned.turned and not straight.turned
    assert turned.tokens == straight.tokens


def test_an_unknown_view_or_views_with_beam_search_are_refused(model, crops):
    with pytest.raises(ValueError, match="'mirror'"):
        inference.read_crops(model, crops, views=("wide", "mirror"))
    with pytest.raises(ValueError, match="greedily"):
        inference.read_crops(model, crops, views=TTA_VIEWS, beam_width=3)
    with pytest.raises(ValueError, match="'mirror'"):
        FormulaReader(device="cpu", views=("mirror",))
    with pytest.raises(ValueError, match="--beam"):
        FormulaReader(device="cpu", views=TTA_VIEWS, beam_width=2)


def _recognize(*args) -> str:
    out = io.StringIO()
    call_command("recognize", *args, "--threads", "1", "--device", "cpu", stdout=out)
    return out.getvalue()


def test_recognize_command_reads_with_views_when_asked(tmp_path, monkeypatch):
    p = tmp_path / "crop.png"
    cv2.imwrite(str(p), synth.render_mathtext(r"\frac{a}{b}+c", size=24))
    seen = []
    real = inference.read_crops
    monkeypatch.setattr(inference, "read_crops", lambda *a, **k: seen.append(k["views"]) or real(*a, **k))
    (item,) = json.loads(_recognize("--json", "--tta", str(p)))
    assert seen == [TTA_VIEWS] and item["latex"] == " ".join(item["tokens"])
    with pytest.raises(CommandError, match="--beam"):
        _recognize("--json", "--tta", "--beam", "3", str(p))
    monkeypatch.setenv("MATHSET_RECOGNIZER_VIEWS", "wide,sideways")
    with pytest.raises(CommandError, match="'sideways'"):
        _recognize("--json", str(p))


def test_a_reader_built_without_views_takes_them_from_the_environment(monkeypatch):
    monkeypatch.setenv("MATHSET_RECOGNIZER_VIEWS", " wide, trim ")
    assert FormulaReader(device="cpu").views == ("wide", "trim")
    assert FormulaReader(device="cpu", views=()).views == ()  # an explicit choice wins
    monkeypatch.setenv("MATHSET_RECOGNIZER_VIEWS", "wide,blur")
    with pytest.raises(ValueError, match="'blur'.*MATHSET_RECOGNIZER_VIEWS"):
        FormulaReader(device="cpu")
    monkeypatch.delenv("MATHSET_RECOGNIZER_VIEWS")
    assert FormulaReader(device="cpu").views == ()
