"""Bad input to the model registry's upload path (POST /api/v1/model-versions/, .../http/,
.../{id}/activate/) as model teams send it: every kind is a 400 naming the field, never a 500, and
nothing is half-stored (no ModelVersion row, no file under MEDIA_ROOT, the active version unchanged).

The schema-driven sweep (tests/test_api_bad_input_sweep.py) never gets past the serializer to the
part that loads and stores the file; tests/pipeline/test_pipeline_api.py and
tests/test_audit_models_registry.py cover garbage weights, a wrong batch, bad settings, side models
and duplicates. This file covers the rest: files that are not models (or are hostile pickles),
modules of the wrong shape, sizes, names that become storage paths, URLs, roles, and races."""
from __future__ import annotations

import io
import json
import pickle
import threading
import time
import zipfile

import pytest
import torch
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from common import roles
from pipeline import services
from pipeline.ml.detector import DetectorConfig, TinyUNet
from pipeline.ml.refiner import QuadRefiner, RefinerConfig
from pipeline.models import ModelVersion
from tests import factories
from tests.conftest import stored_files
from tests.pg_threads import backend_pid, start_thread, waiting_on_a_lock

URL = "/api/v1/model-versions/"


# ---------------------------------------------------------------- files to upload

def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _detector_state(cfg: DetectorConfig | None = None) -> bytes:
    return _saved(TinyUNet(cfg or DetectorConfig()).state_dict())


def _scripted(module: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buf)
    return buf.getvalue()


def _zip_not_torch() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.txt", "a zip, but not a torch archive")
    return buf.getvalue()


class _Opens:
    """A pickle whose loading would create the file at `path`: proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _TwoInputs(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class _Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class _OneChannel(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def _fields(**over) -> dict:
    data = {"kind": "detector", "name": "team-unet", "version": "1", "format": "state_dict",
            "file": SimpleUploadedFile("w.pt", _detector_state()),
            "config": json.dumps(DetectorConfig().to_dict()), "training_licences": ["mit"], "activate": "true"}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def team_api(api, model_team):
    api.force_authenticate(model_team)
    api.raise_request_exception = False  # a 500 is an answer to assert on, not an error of the test
    return api


@pytest.fixture
def active(db):
    """The active detector before the upload: a bad upload with activate=true must leave it so."""
    return ModelVersion.objects.create(kind="detector", name="mathset-builtin", version="0", source="builtin",
                                       is_active=True)


def _refused(resp, field: str, active: ModelVersion | None, says: str = "") -> None:
    assert resp.status_code == 400, (resp.status_code, resp.content[:500])
    body = resp.json()
    assert field in body, body
    assert says in str(body[field]), body
    assert not ModelVersion.objects.filter(source="upload").exists()
    assert stored_files() == []
    if active is not None:
        assert list(ModelVersion.objects.filter(is_active=True)) == [active]


# ---------------------------------------------------------------- files that are not (the right) models

FILES = {
    "empty file": ({"file": SimpleUploadedFile("w.pt", b"")}, "empty"),
    "random bytes as TorchScript": ({"format": "torchscript", "file": SimpleUploadedFile("m.ts", bytes(range(256)) * 4)},
                                    "cannot be loaded"),
    "a zip that is not torch (state dict)": ({"file": SimpleUploadedFile("w.pt", _zip_not_torch())}, "cannot be loaded"),
    "a zip that is not torch (TorchScript)": ({"format": "torchscript",
                                               "file": SimpleUploadedFile("m.ts", _zip_not_torch())}, "cannot be loaded"),
    "a state dict sent as TorchScript": ({"format": "torchscript"}, "cannot be loaded"),
    "a TorchScript module sent as a state dict": ({"file": SimpleUploadedFile("m.ts", _scripted(_OneChannel()))},
                                                  "cannot be loaded"),
    "a tensor, not a state dict": ({"file": SimpleUploadedFile("w.pt", _saved(torch.zeros(3)))}, "cannot be loaded"),
    "a list, not a state dict": ({"file": SimpleUploadedFile("w.pt", _saved([1, 2]))}, "cannot be loaded"),
    "weights of other shapes than the config": (
        {"file": SimpleUploadedFile("w.pt", _detector_state(DetectorConfig(channels=(8, 16, 32, 48))))},
        "size mismatch"),
    "a forward taking two inputs": ({"format": "torchscript", "file": SimpleUploadedFile("m.ts", _scripted(_TwoInputs()))},
                                    "cannot be loaded"),
    "a forward answering a tuple": ({"format": "torchscript", "file": SimpleUploadedFile("m.ts", _scripted(_Pair()))},
                                    "(B, 2, h, w)"),
    "a forward answering one channel": ({"format": "torchscript",
                                         "file": SimpleUploadedFile("m.ts", _scripted(_OneChannel()))}, "(2, 1, 256, 256)"),
    "a TorchScript recognizer": ({"kind": "recognizer", "format": "torchscript",
                                  "file": SimpleUploadedFile("m.ts", _scripted(_OneChannel())),
                                  "config": json.dumps({"vocab": ["x"]})}, "supported for detectors"),
}


@pytest.mark.parametrize("case", list(FILES))
def test_a_file_that_is_not_a_runnable_model_is_a_400_under_file_and_nothing_is_kept(team_api, active, case):
    over, says = FILES[case]
    _refused(team_api.post(URL, _fields(**over), format="multipart"), "file", active, says)


@pytest.mark.parametrize("wrap", ["raw pickle", "torch.save"])
@pytest.mark.parametrize("field", ["file", "refiner_file"])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(team_api, active, tmp_path, wrap, field):
    """Weights are read with torch.load(weights_only=True): a pickle naming any callable is refused,
    and the callable is never called (its file never appears)."""
    proof = tmp_path / "code-ran"
    payload = {"stem.0.weight": _Opens(str(proof))}
    content = pickle.dumps(payload) if wrap == "raw pickle" else _saved(payload)
    over = {field: SimpleUploadedFile("evil.pt", content)}
    if field == "refiner_file":
        over["config"] = json.dumps({**DetectorConfig().to_dict(), "refiner": RefinerConfig().to_dict()})
    _refused(team_api.post(URL, _fields(**over), format="multipart"), field, active, "cannot be loaded")
    assert not proof.exists()


# ---------------------------------------------------------------- config

@pytest.mark.parametrize(("config", "kind", "says"), [
    ("[1, 2]", "detector", "JSON object"),
    ('"a string"', "detector", "JSON object"),
    ("7", "detector", "JSON object"),
    ("null", "detector", "JSON object"),
    (json.dumps({"vocab": []}), "recognizer", "vocab"),
    (json.dumps({**DetectorConfig().to_dict(), "channels": [[12], 24]}), "detector", "channels"),
    (json.dumps({**DetectorConfig().to_dict(), "size": True}), "detector", "size"),
])
def test_a_config_that_is_not_an_object_of_the_right_types_is_a_400_under_config(team_api, active, config, kind, says):
    _refused(team_api.post(URL, _fields(kind=kind, config=config), format="multipart"), "config", active, says)


def test_unknown_config_keys_are_kept_as_notes_not_refused(team_api, active):
    """By design: the committed configs carry keys no setting reads (trained_steps, ...); a key that
    is not a setting is kept with the version and changes nothing the workers do."""
    config = {**DetectorConfig().to_dict(), "trained_steps": 30000}
    resp = team_api.post(URL, _fields(config=json.dumps(config), activate=None), format="multipart")
    assert resp.status_code == 201, resp.content
    assert resp.json()["config"]["trained_steps"] == 30000


# ---------------------------------------------------------------- sizes

@pytest.mark.parametrize("field", ["file", "refiner_file"])
def test_a_file_over_the_limit_is_a_400_that_says_both_sizes(team_api, active, monkeypatch, field):
    """Before: 'the file is larger than 0 MB' (the limit rounded down to whole MB, the file's size not
    said), and only after the view had read the whole file into memory."""
    monkeypatch.setattr(services, "MAX_UPLOAD_BYTES", 1000)
    over = {}
    if field == "refiner_file":
        over = {"config": json.dumps({**DetectorConfig().to_dict(), "refiner": RefinerConfig().to_dict()}),
                "refiner_file": SimpleUploadedFile("r.pt", _saved(QuadRefiner(RefinerConfig()).state_dict()))}
        monkeypatch.setattr(services, "MAX_UPLOAD_BYTES", len(_detector_state()) + 1)
    fields = _fields(**over)
    size = fields[field].size
    resp = team_api.post(URL, fields, format="multipart")
    _refused(resp, field, active, f"the file is {size:,} bytes; at most {services.MAX_UPLOAD_BYTES:,} bytes")


# ---------------------------------------------------------------- names that become storage paths

@pytest.mark.parametrize("version", [
    "a/b",              # before: stored as models/detector/team-unet-a/b-<digest>.pt, a folder per version
    "../x",             # before: stored in a folder "team-unet-.." (201)
    "../../../etc",     # before: Django's SuspiciousFileOperation, an HTML 400 naming no field
    "..\\..\\x",        # before: the same
    "..",
    ".hidden",
    "v 1",
    "\U0001F600" * 40,  # before, with a side model: a file name over 255 bytes, a 500
])
def test_a_version_that_is_not_a_safe_file_name_part_is_a_400_under_version(team_api, active, version):
    over = {"version": version,
            "config": json.dumps({**DetectorConfig().to_dict(), "refiner": RefinerConfig().to_dict()}),
            "refiner_file": SimpleUploadedFile("r.pt", _saved(QuadRefiner(RefinerConfig()).state_dict()))}
    _refused(team_api.post(URL, _fields(**over), format="multipart"), "version", active, "it names the stored file")


@pytest.mark.parametrize("version", ["1.2.0", "2024-05-01", "1.0+cu121", "v3_rc1", "a" * 40])
def test_ordinary_versions_are_accepted(team_api, version):
    resp = team_api.post(URL, _fields(version=version, activate=None), format="multipart")
    assert resp.status_code == 201, resp.content
    assert resp.json()["version"] == version and stored_files() == [ModelVersion.objects.get().weights]


@pytest.mark.parametrize(("name", "version", "field"), [("../x", "1", "name"), ("a/b", "1", "name"),
                                                        ("team", "../../x", "version"), ("team", "", "version")])
def test_the_service_itself_refuses_path_like_names_for_other_callers(db, name, version, field):
    with pytest.raises(ValidationError) as refused:
        services.model_version_upload(kind="detector", name=name, version=version, file_name="w.pt",
                                      content=_detector_state(), fmt="state_dict", config=DetectorConfig().to_dict())
    assert field in refused.value.message_dict
    assert stored_files() == [] and not ModelVersion.objects.exists()


# ---------------------------------------------------------------- kind, duplicates

def test_an_unknown_kind_is_a_400_under_kind(team_api, active):
    _refused(team_api.post(URL, _fields(kind="segmenter"), format="multipart"), "kind", active)


def test_a_duplicate_of_another_content_keeps_the_first_file_and_row(team_api):
    first = team_api.post(URL, _fields(activate=None), format="multipart")
    assert first.status_code == 201
    kept = stored_files()
    again = team_api.post(URL, _fields(file=SimpleUploadedFile("w.pt", _detector_state()), activate="true"),
                          format="multipart")
    assert again.status_code == 400 and "already exists" in str(again.json()["version"])
    assert stored_files() == kept and ModelVersion.objects.filter(source="upload").count() == 1
    assert not ModelVersion.objects.filter(is_active=True).exists()


# ---------------------------------------------------------------- external (HTTP) models

@pytest.mark.parametrize("url", ["file:///etc/passwd", "javascript:alert(1)", "gopher://ml.example/",
                                 "http:///predict", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:169.254.169.254]/", "http://0.0.0.0/predict", "http://[fe80::1]/"])
def test_an_http_model_at_a_url_no_worker_may_call_is_a_400_under_endpoint_url(team_api, url):
    resp = team_api.post(f"{URL}http/", {"name": "ext", "version": "1", "endpoint_url": url, "activate": True},
                         format="json")
    assert resp.status_code == 400 and "endpoint_url" in resp.json(), resp.content
    assert not ModelVersion.objects.exists()


def test_a_loopback_model_is_refused_once_the_hosts_are_listed(team_api, settings):
    """Unset, MATHSET_MODEL_HOSTS allows loopback by design (a model on a developer's machine)."""
    settings.MATHSET_MODEL_HOSTS = "ml.example"
    resp = team_api.post(f"{URL}http/", {"name": "ext", "version": "1", "endpoint_url": "http://127.0.0.1:9000/p"},
                         format="json")
    assert resp.status_code == 400 and "MATHSET_MODEL_HOSTS" in str(resp.json()["endpoint_url"])
    assert not ModelVersion.objects.exists()


# ---------------------------------------------------------------- who may

@pytest.mark.parametrize("role", [roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER, None])
def test_vendor_roles_cannot_upload_register_activate_or_see_models(api, active, role):
    user = factories.make_user(role) if role else User.objects.create_user("no-role", password="pass-word-123")
    api.force_authenticate(user)
    other = ModelVersion.objects.create(kind="detector", name="team", version="2", source="builtin")
    assert api.post(URL, _fields(), format="multipart").status_code == 403
    assert api.post(f"{URL}http/", {"name": "ext", "version": "1", "endpoint_url": "http://ml.example/p"},
                    format="json").status_code == 403
    assert api.post(f"{URL}{other.pk}/activate/").status_code == 403
    assert api.get(URL).json()["count"] == 0
    assert api.get(f"{URL}{active.pk}/").status_code == 404
    assert list(ModelVersion.objects.filter(is_active=True)) == [active]
    assert ModelVersion.objects.count() == 2 and stored_files() == []


def test_activating_an_unknown_version_is_a_404(team_api, active):
    assert team_api.post(f"{URL}999999/activate/").status_code == 404
    assert list(ModelVersion.objects.filter(is_active=True)) == [active]


# ---------------------------------------------------------------- races (PostgreSQL, one connection per thread)

def on_postgres(test):
    for mark in (pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True),
                 pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                                    reason="needs PostgreSQL (row locks, concurrent connections): set DATABASE_URL")):
        test = mark(test)
    return test


@on_postgres
def test_two_uploads_of_one_version_at_once_store_one_row_and_one_file(monkeypatch):
    """Both pass the 'already exists' check before either writes; the unique constraint decides,
    the loser's answer is a 400 under version and its file is removed."""
    both_checked = threading.Barrier(2, timeout=30)
    validate = services._validate_model_file

    def validate_then_meet(**kwargs):
        validate(**kwargs)
        both_checked.wait()

    monkeypatch.setattr(services, "_validate_model_file", validate_then_meet)
    contents = [_detector_state(), _detector_state()]

    def upload(i):
        return lambda: services.model_version_upload(kind="detector", name="team", version="1", file_name="w.pt",
                                                     content=contents[i], fmt="state_dict",
                                                     config=DetectorConfig().to_dict(), activate=True)

    results: list = [None, None]
    threads = [start_thread(upload(i), results, i) for i in range(2)]
    for t in threads:
        t.join(120)
    won = [r for r in results if isinstance(r, ModelVersion)]
    lost = [r for r in results if isinstance(r, ValidationError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert "already exists" in str(lost[0].message_dict["version"])
    row = ModelVersion.objects.get(source="upload")
    assert row.is_active and stored_files() == [row.weights]


@on_postgres
def test_two_activations_at_once_leave_the_later_one_active_not_a_500():
    """Before: the second activation's UPDATE waited on the row the first deactivated, skipped it once
    the first committed, and then set its own version active beside the first's: an IntegrityError
    (pipeline_one_active_per_kind), a 500."""
    ModelVersion.objects.create(kind="detector", name="mathset-builtin", version="0", source="builtin", is_active=True)
    first, second = (ModelVersion.objects.create(kind="detector", name="team", version=v, source="builtin")
                     for v in ("1", "2"))
    first_done, second_pid, results = threading.Event(), [], [None, None]

    def activate_first():
        with transaction.atomic():
            services.model_version_activate(version=ModelVersion.objects.get(pk=first.pk))
            first_done.set()
            waiting_on_a_lock(second_pid, timeout=5)  # hold the commit while the second waits
            time.sleep(0.2)
        return "committed"

    def activate_second():
        first_done.wait(30)
        second_pid.append(backend_pid())
        return services.model_version_activate(version=ModelVersion.objects.get(pk=second.pk))

    threads = [start_thread(activate_first, results, 0), start_thread(activate_second, results, 1)]
    for t in threads:
        t.join(60)
    assert results[0] == "committed", results
    assert isinstance(results[1], ModelVersion), results
    assert list(ModelVersion.objects.filter(is_active=True).values_list("pk", flat=True)) == [second.pk]


@on_postgres
def test_two_first_activations_of_an_empty_kind_at_once_refuse_the_second_with_a_400():
    """No committed row of the kind to lock: the unique constraint decides, and the loser's answer
    names the version (a 400 through the API) instead of an IntegrityError."""
    first_done, second_pid, results = threading.Event(), [], [None, None]

    def activate_first():
        with transaction.atomic():
            row = ModelVersion.objects.create(kind="recognizer", name="team", version="1", source="builtin")
            services.model_version_activate(version=row)
            first_done.set()
            waiting_on_a_lock(second_pid, timeout=5)
            time.sleep(0.2)
        return "committed"

    def activate_second():
        first_done.wait(30)
        second_pid.append(backend_pid())
        with transaction.atomic():
            row = ModelVersion.objects.create(kind="recognizer", name="team", version="2", source="builtin")
            return services.model_version_activate(version=row)

    threads = [start_thread(activate_first, results, 0), start_thread(activate_second, results, 1)]
    for t in threads:
        t.join(60)
    assert results[0] == "committed", results
    assert isinstance(results[1], ValidationError) and "version" in results[1].message_dict, results
    assert list(ModelVersion.objects.values_list("version", "is_active")) == [("1", True)]
