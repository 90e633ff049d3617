"""What the refiner and the orienter share: settings round trip, learning-rate schedule, export."""
from __future__ import annotations

import json

import pytest
import torch

from pipeline.ml.orienter import OrienterConfig
from pipeline.ml.refiner import RefinerConfig
from pipeline.ml.side_models import export_beside_detector, fit, learning_rate


@pytest.mark.parametrize("cfg", [RefinerConfig(channels=(8, 16), margin_y=0.3), OrienterConfig(height=32)])
def test_settings_survive_a_round_trip_through_json(cfg):
    raw = json.loads(json.dumps(cfg.to_dict()))
    assert raw["channels"] == list(cfg.channels)
    assert type(cfg).from_dict({**raw, "trained_steps": 5}) == cfg  # keys of the export are ignored


def test_learning_rate_warms_up_then_decays_over_the_step_or_time_budget():
    lr = [learning_rate(1.0, s, 1000, elapsed=0, minutes=0, warmup=100) for s in (0, 49, 99, 500, 999)]
    assert lr[0] == pytest.approx(0.01, abs=1e-3) and lr[1] == pytest.approx(0.5, abs=0.01)
    assert lr[2] == max(lr) > 0.95  # the peak, already 10% into the cosine
    assert lr[3] == pytest.approx(0.5, abs=0.01) and lr[4] == pytest.approx(0.02)
    # half the minutes spent at step 10 of 1,000: the time budget leads
    assert learning_rate(1.0, 200, 1000, elapsed=30 * 60, minutes=60, warmup=100) == pytest.approx(0.5)


def test_export_writes_float16_weights_and_keeps_the_detectors_settings(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"threshold": 0.6}))
    state = {"model": {"w": torch.ones(2), "n": torch.tensor(3)}, "config": {"height": 48}}
    export_beside_detector(state, tmp_path, file="side.pt", key="side", extra={"trained_steps": 7})
    weights = torch.load(tmp_path / "side.pt", weights_only=True)
    assert weights["w"].dtype == torch.float16 and weights["n"].dtype == torch.int64
    assert json.loads((tmp_path / "config.json").read_text()) == {"threshold": 0.6,
                                                                   "side": {"height": 48, "trained_steps": 7}}


def _fit(run, steps, validate=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    views = torch.arange(20 * 12, dtype=torch.uint8).reshape(20, 3, 4)
    targets = torch.arange(20) % 3
    fit(model, opt, views=views, targets=targets, augment=lambda x, g: x + 0.01 * torch.randn(x.shape, generator=g),
        loss=torch.nn.functional.cross_entropy, run=run, config={"k": 1}, steps=steps, minutes=0, batch=4,
        peak_lr=0.01, warmup=2, seed=3, every=2, validate=validate, extra={"tag": "x"})
    return model


def test_a_resumed_fit_ends_where_an_uninterrupted_one_does(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _fit(tmp_path / "a", 6, validate=lambda m: 0.5)
    calls = []

    def killed_at_step_6(model):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies after the step-4 checkpoint
        return 0.5

    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b", 6, validate=killed_at_step_6)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["step"] == 4
    resumed = _fit(tmp_path / "b", 6, validate=lambda m: 0.5)  # a new process builds the model afresh
    for p, q in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    last = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert last["step"] == 6 and last["config"] == {"k": 1} and last["tag"] == "x" and last["views"] == 20


def test_fit_keeps_the_best_validated_checkpoint(tmp_path):
    scores = iter([0.2, 0.7, 0.4])
    _fit(tmp_path, 6, validate=lambda m: next(scores))
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    assert best["step"] == 4 and best["val_accuracy"] == 0.7
    assert last["step"] == 6 and last["val_accuracy"] == 0.4 and last["best_acc"] == 0.7
