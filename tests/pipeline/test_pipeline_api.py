"""Model registry and pre-labeling endpoints: uploads, bad input, isolation, progress."""
from __future__ import annotations

import io
import json

import pytest
import torch

from pipeline.ml.detector import DetectorConfig, TinyUNet
from pipeline.ml.orienter import Orienter, OrienterConfig
from pipeline.ml.refiner import QuadRefiner, RefinerConfig
from pipeline.models import ModelVersion, PrelabelJob
from tests import factories
from tests.conftest import stored_files


def _detector_state_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(TinyUNet(DetectorConfig()).state_dict(), buf)
    return buf.getvalue()


def _torchscript_bytes() -> bytes:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(TinyUNet(DetectorConfig()).eval(), torch.zeros(1, 3, 256, 256)), buf)
    return buf.getvalue()


def _state_bytes(model) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _side_upload(**over) -> dict:
    """Upload fields of a detector that brings a corner refiner and an orienter."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    small_orienter = OrienterConfig(channels=(4, 8, 8, 8), hidden=16)
    config = {**DetectorConfig().to_dict(), "refiner": RefinerConfig().to_dict(),
              "orienter": small_orienter.to_dict()}
    fields = {"config": json.dumps(config),
              "refiner_file": SimpleUploadedFile("refiner.pt", _state_bytes(QuadRefiner(RefinerConfig()))),
              "orienter_file": SimpleUploadedFile("orienter.pt", _state_bytes(Orienter(small_orienter)))}
    fields.update(over)
    return fields


def _upload(api, **over):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"kind": "detector", "name": "team-unet", "version": "1", "format": "state_dict",
            "file": SimpleUploadedFile("w.pt", _detector_state_bytes()),
            "config": json.dumps(DetectorConfig().to_dict()), "training_licences": ["mit"]}
    data.update(over)
    data = {k: v for k, v in data.items() if v is not None}
    return api.post("/api/v1/model-versions/", data, format="multipart")


@pytest.fixture
def team_api(api, model_team):
    api.force_authenticate(model_team)
    return api


def test_model_team_uploads_a_state_dict_and_activates_it(team_api):
    resp = _upload(team_api, activate="true")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["is_active"] and body["training_licences"] == ["mit"] and body["allows_commercial"]
    assert len(stored_files()) == 1


def test_torchscript_detector_upload_is_accepted(team_api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    resp = _upload(team_api, format="torchscript", file=SimpleUploadedFile("m.ts", _torchscript_bytes()))
    assert resp.status_code == 201, resp.content
    assert resp.json()["format"] == "torchscript"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"file": None}, "file"),
        ({"format": "onnx"}, "format"),
        ({"kind": "pipeline"}, "kind"),
        ({"config": "{not json"}, "config"),
        ({"training_licences": ["no-such-licence"]}, "training_licences"),
        ({"name": "bad name!"}, "name"),
    ],
)
def test_bad_upload_is_rejected_naming_the_field_and_stores_nothing(team_api, override, field):
    resp = _upload(team_api, **override)
    assert resp.status_code == 400
    assert field in resp.json()
    assert stored_files() == [] and ModelVersion.objects.count() == 0


def test_detector_upload_brings_its_refiner_and_orienter_to_the_workers(team_api):
    from pipeline import runtime
    from pipeline.ml.inference import load_orienter, load_refiner

    resp = _upload(team_api, **_side_upload())
    assert resp.status_code == 201, resp.content
    assert resp.json()["side_models"] == ["orienter.pt", "refiner.pt"]
    assert len(stored_files()) == 3
    mv = ModelVersion.objects.get(pk=resp.json()["id"])
    folder = runtime._folder_for(mv)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "orienter.pt", "refiner.pt", "weights.pt"]
    assert load_orienter(folder, device="cpu").cfg.channels == (4, 8, 8, 8)
    assert load_refiner(folder, device="cpu") is not None
    # a detector uploaded without them reads with neither
    plain = ModelVersion.objects.get(pk=_upload(team_api, version="2").json()["id"])
    assert load_orienter(runtime._folder_for(plain), device="cpu") is None


def test_builtin_detector_lists_its_committed_side_models(team_api):
    from pipeline import services

    row = services.model_version_builtin(kind="detector")  # made on first use, as a job's first run does
    ModelVersion.objects.filter(pk=row.pk).update(side_files={})  # as rows made before migration 0008 are
    services.model_version_builtin(kind="detector")
    resp = team_api.get("/api/v1/model-versions/", {"kind": "detector"})
    assert resp.status_code == 200
    builtin = [v for v in resp.json()["results"] if v["source"] == "builtin"]
    assert builtin and builtin[0]["side_models"] == ["orienter.pt", "refiner.pt"]


@pytest.mark.parametrize(
    ("override", "field", "says"),
    [
        ({"orienter_file": "garbage"}, "orienter_file", "cannot be loaded"),
        ({"refiner_file": b""}, "refiner_file", "empty"),
        ({"config": json.dumps(DetectorConfig().to_dict())}, "refiner_file", "config needs the refiner's settings"),
        ({"config": json.dumps({**DetectorConfig().to_dict(), "refiner": RefinerConfig().to_dict(),
                                "orienter": {**OrienterConfig().to_dict(), "hidden": 7}})},
         "orienter_file", "cannot be loaded with config['orienter']"),
        ({"kind": "recognizer"}, "orienter_file", "only a detector"),
    ],
)
def test_bad_side_model_is_rejected_naming_its_field_and_stores_nothing(team_api, override, field, says):
    from django.core.files.uploadedfile import SimpleUploadedFile

    fields = _side_upload()
    for key, value in override.items():
        fields[key] = SimpleUploadedFile(f"{key}.pt", value.encode() if isinstance(value, str) else value) \
            if key.endswith("_file") else value
    if override.get("kind") == "recognizer":
        fields.pop("refiner_file")
    resp = _upload(team_api, **fields)
    assert resp.status_code == 400, resp.content
    assert says in str(resp.json()[field])
    assert stored_files() == [] and ModelVersion.objects.filter(source="upload").count() == 0


def _recognizer_upload(calibration) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from pipeline.ml.recognizer import Recognizer, RecognizerConfig

    cfg = RecognizerConfig(vocab=["<pad>", "<bos>", "<eos>", "<unk>", "x", "+", "1"], d_model=32, heads=2, layers=1,
                           ff=64, channels=(8, 8, 8))
    config = {**cfg.to_dict(), **({"calibration": calibration} if calibration is not None else {})}
    return {"kind": "recognizer", "name": "team-rec", "config": json.dumps(config),
            "file": SimpleUploadedFile("w.pt", _state_bytes(Recognizer(cfg)))}


def test_a_recognizer_uploaded_with_its_calibration_reads_with_it(team_api):
    from pipeline import runtime
    from pipeline.ml.calibration import Platt
    from pipeline.ml.inference import load_recognizer

    resp = _upload(team_api, **_recognizer_upload({"greedy": {"a": 1.25, "b": 0.5, "samples": 668}}))
    assert resp.status_code == 201, resp.content
    version = ModelVersion.objects.get(pk=resp.json()["id"])
    assert version.config["calibration"]["greedy"]["a"] == 1.25
    model = load_recognizer(runtime._folder_for(version), device="cpu")
    assert model.calibration == {"greedy": Platt(a=1.25, b=0.5)}


@pytest.mark.parametrize(
    ("calibration", "says"),
    [
        ("not an object", "calibration must be an object"),
        ({"greedy": {"a": "steep", "b": 1}}, "calibration.greedy.a must be a finite number"),
        ({"greedy": {"a": -2, "b": 1}}, "calibration.greedy.a must not be negative"),
    ],
)
def test_a_recognizer_with_a_bad_calibration_is_refused_naming_it_and_stores_nothing(team_api, calibration, says):
    resp = _upload(team_api, **_recognizer_upload(calibration))
    assert resp.status_code == 400, resp.content
    assert says in str(resp.json()["config"])
    assert stored_files() == [] and ModelVersion.objects.count() == 0


def test_the_builtin_row_follows_a_recalibrated_config_and_new_metrics(db):
    from pipeline import services

    row = services.model_version_builtin(kind="recognizer")
    ModelVersion.objects.filter(pk=row.pk).update(config={k: v for k, v in row.config.items() if k != "calibration"},
                                                  metrics={})
    again = services.model_version_builtin(kind="recognizer")
    assert again.pk == row.pk and "greedy" in again.config["calibration"]
    assert again.metrics["confidence_calibration"]["crohme_2016_test_1147"]["ece"] < 0.05


def test_unloadable_weights_are_rejected_before_storing(team_api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    resp = _upload(team_api, file=SimpleUploadedFile("w.pt", b"garbage, not a checkpoint"))
    assert resp.status_code == 400 and "file" in resp.json()
    assert stored_files() == []


def test_duplicate_version_is_rejected(team_api):
    assert _upload(team_api).status_code == 201
    resp = _upload(team_api)
    assert resp.status_code == 400 and "version" in resp.json()
    assert len(stored_files()) == 1


def test_activating_a_version_deactivates_the_previous_one(team_api):
    first = _upload(team_api, version="1", activate="true").json()
    second = _upload(team_api, version="2").json()
    resp = team_api.post(f"/api/v1/model-versions/{second['id']}/activate/")
    assert resp.status_code == 200 and resp.json()["is_active"]
    assert not ModelVersion.objects.get(pk=first["id"]).is_active


def test_http_model_is_registered_and_validated(team_api):
    resp = team_api.post("/api/v1/model-versions/http/", {"name": "ls-backend", "version": "3",
                                                          "endpoint_url": "http://ml.example/predict",
                                                          "training_licences": ["cc-by-nc-sa-3.0"]}, format="json")
    assert resp.status_code == 201, resp.content
    assert resp.json()["kind"] == "pipeline" and resp.json()["allows_commercial"] is False
    bad = team_api.post("/api/v1/model-versions/http/", {"name": "x", "version": "1", "endpoint_url": "ftp://x"},
                        format="json")
    assert bad.status_code == 400 and "endpoint_url" in bad.json()


@pytest.mark.parametrize(("field", "value"), [("config", {"a": "x\x00"}), ("metrics", {"\x00": 1}),
                                              ("config", {"a": [{"b": "\x00"}]}), ("config", {"a": "\ud800"})])
def test_model_json_holding_a_nul_or_surrogate_character_is_a_400_naming_the_field(team_api, field, value):
    """PostgreSQL's jsonb cannot hold U+0000 or a lone surrogate: refused before it is stored, not a 500."""
    body = {"name": "ls-backend", "version": "3", "endpoint_url": "http://ml.example/predict", field: value}
    resp = team_api.generic("POST", "/api/v1/model-versions/http/", json.dumps(body),  # escapes as \\u0000, \\ud800
                            content_type="application/json")
    assert resp.status_code == 400 and field in resp.json(), resp.content
    resp = _upload(team_api, **{field: json.dumps(value)})
    assert resp.status_code == 400 and field in resp.json(), resp.content
    assert ModelVersion.objects.count() == 0 and stored_files() == []


def test_vendor_users_see_no_models_or_jobs(api, annotator, curator):
    ModelVersion.objects.create(kind="detector", name="n", version="1", source="builtin")
    api.force_authenticate(annotator)
    assert api.get("/api/v1/model-versions/").json()["count"] == 0
    assert api.get("/api/v1/prelabel-jobs/").json()["count"] == 0
    assert _upload(api).status_code == 403


def test_curator_starts_job_and_reads_progress(curator_api, spec, source, django_capture_on_commit_callbacks):
    imgs = [factories.make_image(spec=spec, source=source) for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        resp = curator_api.post("/api/v1/prelabel-jobs/", {"image_ids": [i.id for i in imgs]}, format="json")
    assert resp.status_code == 201, resp.content
    job = curator_api.get(f"/api/v1/prelabel-jobs/{resp.json()['id']}/").json()
    assert job["status"] == "done"
    assert job["progress"]["done"] == 3 and job["progress"]["total"] == 3
    preds = curator_api.get(f"/api/v1/model-predictions/?job={job['id']}").json()
    assert preds["count"] == 3
    assert all(p["reading"]["beam_width"] == 1 and p["reading"]["views"] == [] for p in preds["results"])


@pytest.mark.parametrize(
    ("payload", "field"),
    [({}, "spec"), ({"spec": 1, "image_ids": [1]}, "spec"), ({"image_ids": []}, "image_ids"),
     ({"image_ids": [999999]}, "image_ids"), ({"spec": 999999}, "spec"), ({"spec": 1, "chunk_size": 0}, "chunk_size"),
     ({"image_ids": [2**63]}, "image_ids"), ({"image_ids": [10**20]}, "image_ids")],  # beyond 64 bits: no db error
)
def test_bad_job_requests_are_rejected_naming_the_field(curator_api, payload, field):
    resp = curator_api.post("/api/v1/prelabel-jobs/", payload, format="json")
    assert resp.status_code == 400 and field in resp.json()
    assert PrelabelJob.objects.count() == 0


def test_model_team_cannot_start_jobs(api, model_team, spec):
    api.force_authenticate(model_team)
    assert api.post("/api/v1/prelabel-jobs/", {"spec": spec.id}, format="json").status_code == 403


def test_cancel_endpoint(curator_api, spec, source, django_capture_on_commit_callbacks):
    factories.make_image(spec=spec, source=source)
    with django_capture_on_commit_callbacks(execute=False):
        job = curator_api.post("/api/v1/prelabel-jobs/", {"spec": spec.id}, format="json").json()
    resp = curator_api.post(f"/api/v1/prelabel-jobs/{job['id']}/cancel/")
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert curator_api.post(f"/api/v1/prelabel-jobs/{job['id']}/cancel/").status_code == 400


def test_list_endpoints_use_constant_queries(curator_api, spec, source, django_assert_max_num_queries):
    for i in range(5):
        ModelVersion.objects.create(kind="recognizer", name=f"m{i}", version="1", source="builtin")
        PrelabelJob.objects.create(spec=spec, total=0)
    with django_assert_max_num_queries(8):
        assert curator_api.get("/api/v1/model-versions/").status_code == 200
    with django_assert_max_num_queries(8):
        assert curator_api.get("/api/v1/prelabel-jobs/").json()["count"] == 5
    with django_assert_max_num_queries(8):
        assert curator_api.get("/api/v1/model-predictions/").status_code == 200


def test_schema_types_every_pipeline_endpoint(curator_api):
    schema = curator_api.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/v1/model-versions/", "/api/v1/prelabel-jobs/{id}/cancel/", "/api/v1/model-predictions/",
                 "/api/v1/model-versions/http/", "/api/v1/prelabel-jobs/{id}/failures/"):
        assert path in text
