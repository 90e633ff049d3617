"""What the refiner and the orienter share: settings round trip, learning-rate schedule, export."""
from __future__ import annotations

import json

import pytest
import torch

from pipeline.ml.orienter import OrienterConfig
from pipeline.ml.refiner import RefinerConfig
from pipeline.ml.side_models import export_beside_detector, learning_rate


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
