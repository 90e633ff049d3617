"""An uploaded config sizes the network the web process builds for its trial run and every worker
builds again: settings that would allocate far beyond what the weights hold are refused before
anything is built (400 naming `config` or `file`, nothing stored, the active model unchanged).

- Weights-sized settings (`d_model`, `ff`, `channels`, ...) are checked against the uploaded weights
  on the meta device first (`pipeline.ml.inference.build_fitting`): a network is only ever built as
  big as the weights given for it, and those are bounded by the upload limit.
- Input-sized settings (a detector's `size`, a recognizer's `height`/`max_width`/`max_len`, a side
  model's `height`/`width`) have ceilings (`pipeline.services.INPUT_LIMITS`)."""
from __future__ import annotations

import io
import json

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile

from pipeline import services
from pipeline.ml import inference
from pipeline.ml.detector import DetectorConfig, TinyUNet
from pipeline.ml.recognizer import Recognizer, RecognizerConfig
from pipeline.ml.refiner import QuadRefiner, RefinerConfig
from pipeline.models import ModelVersion
from tests.conftest import stored_files

URL = "/api/v1/model-versions/"
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "x", "+", "1"]
SMALL = RecognizerConfig(vocab=VOCAB, d_model=32, heads=2, layers=1, ff=64, channels=(8, 8, 8))


def _state(module: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getvalue()


@pytest.fixture
def team_api(api, model_team):
    api.force_authenticate(model_team)
    api.raise_request_exception = False
    return api


def _refused(resp, field: str, says: str) -> None:
    assert resp.status_code == 400, (resp.status_code, resp.content[:500])
    assert says in str(resp.json()[field]), resp.json()
    assert not ModelVersion.objects.filter(source="upload").exists()
    assert stored_files() == []


def _recognizer(config: dict, weights: bytes) -> dict:
    return {"kind": "recognizer", "name": "team-rec", "version": "1", "format": "state_dict",
            "config": json.dumps(config), "file": SimpleUploadedFile("w.pt", weights), "training_licences": ["mit"]}


@pytest.mark.django_db
def test_a_config_far_bigger_than_its_weights_is_refused_before_the_network_is_built(team_api, monkeypatch):
    """d_model and ff of 100,000 make a network of 200 billion parameters (800 GB): built, it took the
    web process down. The small weights are checked against it without building it."""
    built = []
    real_init = Recognizer.__init__

    def init(self, cfg):
        real_init(self, cfg)
        built.append(next(self.parameters()).device.type)

    monkeypatch.setattr(Recognizer, "__init__", init)
    huge = {**SMALL.to_dict(), "d_model": 100_000, "ff": 100_000}
    _refused(team_api.post(URL, _recognizer(huge, _state(Recognizer(SMALL))), format="multipart"), "file",
             "size mismatch for")
    assert built[1:] == ["meta"]  # the test's own small one, then only the meta-device check


@pytest.mark.django_db
def test_weights_with_a_missing_or_extra_tensor_are_refused_with_the_keys(team_api):
    state = Recognizer(SMALL).state_dict()
    state["extra.weight"] = torch.zeros(2)
    buf = io.BytesIO()
    torch.save(state, buf)
    _refused(team_api.post(URL, _recognizer(SMALL.to_dict(), buf.getvalue()), format="multipart"), "file",
             "unexpected keys ['extra.weight']")


@pytest.mark.django_db
@pytest.mark.parametrize("kind, setting, value", [
    ("detector", "size", 100_000),
    ("recognizer", "height", 5_000),
    ("recognizer", "max_width", 1_000_000),
    ("recognizer", "max_len", 10**9),
])
def test_an_input_size_over_its_ceiling_is_a_400_naming_it(team_api, kind, setting, value):
    if kind == "detector":
        fields = {"kind": "detector", "name": "team-unet", "version": "1", "format": "state_dict",
                  "config": json.dumps({**DetectorConfig().to_dict(), setting: value}),
                  "file": SimpleUploadedFile("w.pt", _state(TinyUNet(DetectorConfig()))), "training_licences": ["mit"]}
    else:
        fields = _recognizer({**SMALL.to_dict(), setting: value}, _state(Recognizer(SMALL)))
    limit = services.INPUT_LIMITS[kind][setting]
    _refused(team_api.post(URL, fields, format="multipart"), "config", f"{setting}: at most {limit:,}")


@pytest.mark.django_db
def test_a_side_model_input_size_over_its_ceiling_is_a_400_naming_it(team_api):
    refiner_cfg = RefinerConfig()
    config = {**DetectorConfig().to_dict(), "refiner": {**refiner_cfg.to_dict(), "width": 100_000}}
    fields = {"kind": "detector", "name": "team-unet", "version": "1", "format": "state_dict",
              "config": json.dumps(config), "file": SimpleUploadedFile("w.pt", _state(TinyUNet(DetectorConfig()))),
              "refiner_file": SimpleUploadedFile("r.pt", _state(QuadRefiner(refiner_cfg))), "training_licences": ["mit"]}
    _refused(team_api.post(URL, fields, format="multipart"), "config", "refiner.width: at most 4,096")


@pytest.mark.django_db
def test_the_settings_at_their_ceilings_and_the_committed_ones_still_upload(team_api):
    at_ceiling = RecognizerConfig(vocab=VOCAB, d_model=32, heads=2, layers=1, ff=64, channels=(8, 8, 8), height=256,
                                  max_len=1000)
    resp = team_api.post(URL, _recognizer(at_ceiling.to_dict(), _state(Recognizer(at_ceiling))), format="multipart")
    assert resp.status_code == 201, resp.content[:500]
    for kind, limits in services.INPUT_LIMITS.items():
        committed = json.loads((inference.WEIGHTS_DIR / ("recognizer" if kind == "recognizer" else "detector")
                                / "config.json").read_text())
        settings = committed if kind in ("detector", "recognizer") else committed[kind]
        assert all(settings[name] <= limit for name, limit in limits.items() if name in settings), kind


def test_build_fitting_loads_weights_that_fit():
    model = Recognizer(SMALL)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    again = inference.build_fitting(lambda: Recognizer(SMALL), state)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), state.values(), strict=True))
    assert next(again.parameters()).device.type == "cpu"
