"""Audit of the model registry as model teams meet it: uploads that would break the workers are
refused at the door (a 400 naming the field, nothing stored), and a version whose file is gone
cannot be activated."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from pipeline.ml.detector import DetectorConfig, TinyUNet
from pipeline.ml.recognizer import Recognizer, RecognizerConfig
from pipeline.models import ModelVersion
from tests.conftest import stored_files


def _detector_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(TinyUNet(DetectorConfig()).state_dict(), buf)
    return buf.getvalue()


def _upload(api, **over):
    data = {"kind": "detector", "name": "team-unet", "version": "1", "format": "state_dict",
            "file": SimpleUploadedFile("w.pt", _detector_bytes()),
            "config": json.dumps(DetectorConfig().to_dict()), "training_licences": ["mit"]}
    data.update(over)
    return api.post("/api/v1/model-versions/", data, format="multipart")


@pytest.fixture
def team_api(api, model_team):
    api.force_authenticate(model_team)
    return api


@pytest.mark.parametrize("override", [{"threshold": "0.6"}, {"min_area": None}, {"crop_margin": "wide"},
                                      {"refine_px": [12]}, {"split_min_frac": True}])
def test_a_detector_config_with_a_setting_of_the_wrong_type_is_a_400_not_a_broken_worker(team_api, override):
    """The settings the workers read (threshold, min_area...) used to be stored unchecked: the upload
    was accepted and activated, then every image of every job failed in detection."""
    config = {**DetectorConfig().to_dict(), **override}
    resp = _upload(team_api, config=json.dumps(config), activate="true")
    assert resp.status_code == 400, resp.content
    (key,) = override
    assert key in str(resp.json()["config"])
    assert stored_files() == [] and ModelVersion.objects.count() == 0


class _FixedBatch(torch.nn.Module):
    """A detector whose output was reshaped to the batch it was traced with: tracing keeps the 1."""

    def __init__(self):
        super().__init__()
        self.net = TinyUNet(DetectorConfig())

    def forward(self, x):
        out = self.net(x)
        return out.reshape(1, 2, out.shape[2], out.shape[3])


def test_a_torchscript_detector_traced_for_one_image_is_refused_not_activated(team_api):
    """It passed a one-image check, was activated, and then failed every chunk of every job
    (workers send batches of up to 16 images)."""
    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(_FixedBatch().eval(), torch.zeros(1, 3, 256, 256)), buf)
    resp = _upload(team_api, format="torchscript", file=SimpleUploadedFile("m.ts", buf.getvalue()), activate="true")
    assert resp.status_code == 400, resp.content
    (says,) = resp.json()["file"]
    assert "is invalid for input" in says and "Traceback" not in says and "/" not in says
    assert stored_files() == [] and ModelVersion.objects.count() == 0


def _recognizer_fields(**config_over) -> dict:
    cfg = RecognizerConfig(vocab=["<pad>", "<bos>", "<eos>", "<unk>", "x", "+", "1"], d_model=32, heads=2, layers=1,
                           ff=64, channels=(8, 8, 8))
    buf = io.BytesIO()
    torch.save(Recognizer(cfg).state_dict(), buf)
    return {"kind": "recognizer", "name": "team-rec", "config": json.dumps({**cfg.to_dict(), **config_over}),
            "file": SimpleUploadedFile("w.pt", buf.getvalue())}


@pytest.mark.parametrize("override", [{"height": "40"}, {"max_width": 10.5}, {"max_len": "100"}, {"vocab": "x+1"}])
def test_a_recognizer_config_with_a_setting_of_the_wrong_type_is_a_400_not_a_broken_worker(team_api, override):
    resp = _upload(team_api, **_recognizer_fields(**override), activate="true")
    assert resp.status_code == 400, resp.content
    (key,) = override
    assert key in str(resp.json()["config"])
    assert stored_files() == [] and ModelVersion.objects.count() == 0


def test_an_uploaded_recognizer_that_passes_reads_in_a_worker(team_api):
    from pipeline import runtime

    resp = _upload(team_api, **_recognizer_fields())
    assert resp.status_code == 201, resp.content
    version = ModelVersion.objects.get(pk=resp.json()["id"])
    from pipeline.ml.inference import load_recognizer, read_crops

    model = load_recognizer(runtime._folder_for(version), device="cpu", precision="float32")
    (reading,) = read_crops(model, [np.full((20, 40, 3), 255, np.uint8)])
    assert 0 <= reading.confidence <= 1


def test_activating_a_version_whose_file_is_gone_is_a_400_and_keeps_the_active_one(team_api):
    first = _upload(team_api, version="1", activate="true").json()
    second = _upload(team_api, version="2").json()
    default_storage.delete(ModelVersion.objects.get(pk=second["id"]).weights)
    resp = team_api.post(f"/api/v1/model-versions/{second['id']}/activate/")
    assert resp.status_code == 400, resp.content
    assert "missing" in json.dumps(resp.json())
    assert ModelVersion.objects.get(pk=first["id"]).is_active
    assert not ModelVersion.objects.get(pk=second["id"]).is_active
