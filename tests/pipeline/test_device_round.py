"""pipeline.ml.device_round: the bundle that travels to a lent GPU and the fine-tune it runs there,
exercised end to end on the CPU with a tiny model and a tiny shared-data folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.ml import data, device_round, train_recognizer, typeset
from pipeline.ml.inference import load_recognizer
from tests.pipeline.test_train_recognizer import _tiny_shared

TINY_POOL = {"printed": 4, "recombined": 2, "seed": 0, "renderer": "mathtext", "max_len": 100, "substitute": 0.5}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A bundle folder holding tiny shared data, a tiny 'committed' recognizer, a tiny pool recipe."""
    bundle = tmp_path / "bundle"
    _tiny_shared(bundle / "data")
    monkeypatch.setenv("MATHSET_SHARED_DATA", str(bundle / "data"))
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")
    base = tmp_path / "committed"
    train_recognizer.main(["--run", str(tmp_path / "base-run"), "--out", str(base), "--batch", "2", "--printed", "4",
                           "--ckpt-every", "1", "--warmup", "1", "--steps", "1", "--encoder", "res",
                           "--channels", "4,8,8,8", "--d-model", "16", "--heads", "2", "--layers", "1", "--ff", "32",
                           "--height", "32", "--max-width", "128"])
    monkeypatch.setattr(device_round, "COMMITTED", base)
    monkeypatch.setattr(device_round, "POOL", TINY_POOL)
    (tmp_path / "dev" / "whl").mkdir(parents=True)
    (tmp_path / "dev" / "whl" / "rapidfuzz-0-cp312-none-any.whl").write_bytes(b"x")  # no download in a test
    return bundle


def _bundle(tmp_path) -> None:
    device_round.main(["bundle", "--out", str(tmp_path / "dev"), "--workers", "1"])


def test_the_device_fine_tune_starts_from_the_committed_weights_and_brings_back_slim_checkpoints(tiny, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    _bundle(tmp_path)
    device_round.main(["train", "--bundle", str(tmp_path / "dev"), "--out", str(out), "--run", str(run), "--minutes", "5",
                       "--steps", "3", "--batch", "2", "--warmup", "1", "--ckpt-every", "1", "--keep", "2",
                       "--workers", "0", "--threads", "1"])
    assert sorted(p.name for p in out.iterdir()) == ["step-2.pt", "step-3.pt"]  # the latest two, by step
    stored = train_recognizer.cached_printed_pool(run / device_round.pool_name(), 4, [], 0, 1, recombined=2,
                                                  recombined_max_tokens=150, substitute=0.5)
    assert len(stored) == 6  # the pool the run trained on: 4 printed + 2 recombined, drawn by mathtext there
    full = torch.load(run / "step-3.pt", weights_only=False)
    slim = torch.load(out / "step-3.pt", weights_only=False)
    assert "opt" not in slim and slim["step"] == 3 and slim["config"] == full["config"]
    assert (out / "step-3.pt").stat().st_size < (run / "step-3.pt").stat().st_size / 2
    assert all(v.dtype == torch.float16 for v in slim["model"].values() if v.is_floating_point())
    # what bench/finetune_validation.py does with a checkpoint: export it, load it
    train_recognizer.export(out / "step-3.pt", tmp_path / "exported")
    model = load_recognizer(tmp_path / "exported", device="cpu", precision="float32")
    for key, value in model.state_dict().items():
        if key in full["model"] and value.is_floating_point():
            assert torch.equal(value, full["model"][key].half().float()), key
    assert json.loads((tmp_path / "exported" / "config.json").read_text())["trained_steps"] == 3


def test_the_bundle_holds_data_wheels_and_typeset_crops_and_prints_the_call(tiny, tmp_path, capsys):
    _bundle(tmp_path)
    out = tmp_path / "dev"
    for rel in device_round.SHARED_FILES:
        assert (out / "data" / rel).exists(), rel
    assert (out / device_round.carried_name()).exists()
    lines = capsys.readouterr().out
    call = json.loads(lines[lines.index("{\n"):])["run"]
    assert call["carry"] == [str(out)] and call["timeout_s"] == 600
    assert "device_round train --minutes 6.5" in call["command"] and len(call["command"]) <= 2000


@pytest.mark.skipif(not typeset.available(), reason="pdflatex is not installed (texlive-latex-base)")
def test_typeset_crops_travel_in_16_grey_levels_and_only_for_their_own_jobs(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(device_round, "POOL", {**TINY_POOL, "renderer": "pdflatex"})
    mathtext_jobs, typeset_jobs = device_round.pool_jobs(tiny / "data")
    assert len(mathtext_jobs) == 4 and len(typeset_jobs) == 2
    carried = tmp_path / "carried.pkl.xz"
    device_round.write_carried(carried, mathtext_jobs, typeset_jobs, 1)
    jobs, restored = device_round.read_carried(carried, typeset_jobs)
    assert jobs == mathtext_jobs  # the device draws these from the list, not from the seeds again
    drawn = train_recognizer.render_printed_jobs(typeset_jobs, 1, typeset=True)
    assert len(restored) == len(drawn) == 2
    for (got, toks), (want, want_toks) in zip(restored, drawn, strict=True):
        assert toks == want_toks and got.dtype == want.dtype and got.shape == want.shape
        assert len(np.unique(got)) <= 16 and np.abs(got.astype(int) - want.astype(int)).max() <= 9
    with pytest.raises(SystemExit, match="made for another pool"):
        device_round.read_carried(carried, typeset_jobs[:1])
    monkeypatch.setattr(device_round, "POOL", {**TINY_POOL, "seed": 1})
    with pytest.raises(SystemExit, match="made for another pool"):
        device_round.read_carried(carried)


def test_a_bundle_over_the_travel_limit_is_refused_with_its_size(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(device_round, "TRAVEL_LIMIT", 1024)
    with pytest.raises(SystemExit, match=r"MiB, over the device tool's"):
        _bundle(tmp_path)


def test_a_bundle_without_the_shared_data_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("MATHSET_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="crohme/train-2016.tar.xz"):
        device_round.main(["bundle", "--out", str(tmp_path / "dev")])
    assert not (tmp_path / "dev").exists()


def test_latest_checkpoints_go_by_step_number(tmp_path):
    for step in (100, 1000, 250, 50):
        (tmp_path / f"step-{step}.pt").write_bytes(b"")
    assert [p.name for p in device_round.latest_checkpoints(tmp_path, 2)] == ["step-250.pt", "step-1000.pt"]
    assert device_round.latest_checkpoints(tmp_path, 0) == []


def test_requirement_pins_come_from_requirements_and_a_missing_one_is_named(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("RapidFuzz==3.14.6  # edit distance\nshapely==2.2.0\n")
    assert device_round.requirement_pins(("rapidfuzz", "shapely"), req) == ["RapidFuzz==3.14.6", "shapely==2.2.0"]
    with pytest.raises(SystemExit, match="numpy"):
        device_round.requirement_pins(("numpy",), req)
