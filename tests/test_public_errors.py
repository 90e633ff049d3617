"""What a worker records as a job's error is meant for the people who read it (common/errors.py).

The error of a snapshot build, an export, an evaluation run or a pre-labeled image is shown through
the API to curators and model teams and sent to model teams' webhooks. An exception of a kept type
keeps its wording, with absolute paths made relative (a file in storage named as it is stored, one of
the project relative to it, one of Python's as "<python>/..."): a refusal (ValidationError,
ValueError), an I/O failure (OSError: a missing file, a permission, a full disk) everywhere, and
where a model runs (an evaluation run, a pre-labeling model's read) the model's own error
(RuntimeError, as torch raises; ExternalModelError). Anything else (a database, Redis or broker
error, a programming error) records only a generic message with a reference, and the worker log
holds the full exception under that same reference (ERROR).
"""
from __future__ import annotations

import logging
import re
import site
import sys
from pathlib import Path

import kombu.exceptions
import pytest
import redis.exceptions
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import OperationalError

from common.errors import KEPT, KEPT_MODEL, public_error, storage_relative
from curation import snapshots
from pipeline import evaluation, runtime, services, webhooks
from pipeline.models import PrelabelItem, PrelabelJob, WebhookDelivery
from tests import factories
from tests.curation.test_snapshots import accepted_spec
from tests.labeling.conftest import client_for
from tests.pipeline.evaluation_helpers import StubReader as EvaluationStubReader

pytestmark = pytest.mark.django_db

INTERNAL_HOST = "db-internal.corp.example (10.0.3.4)"
CONNECT = f'could not connect to server at "{INTERNAL_HOST}", port 5432: Connection refused'
GENERIC = re.compile(r"^The (?P<what>[a-z -]+) failed unexpectedly \(reference (?P<ref>[0-9a-f]{12})\); an operator "
                     r"can find the details in the worker log under that reference\.$")


def _database_error() -> OperationalError:
    return OperationalError(CONNECT)


def _programming_error() -> KeyError:
    return KeyError(f"detector config from {INTERNAL_HOST}")


# What is hidden wherever it happens: the database's, Redis's and the broker's errors, and the
# programming errors; each names the internal host.
HIDDEN = [
    pytest.param(_database_error, id="OperationalError"),
    pytest.param(_programming_error, id="KeyError"),
    pytest.param(lambda: TypeError(f"unsupported operand from {INTERNAL_HOST}"), id="TypeError"),
    pytest.param(lambda: AttributeError(f"'NoneType' object at {INTERNAL_HOST} has no attribute 'x'"),
                 id="AttributeError"),
    pytest.param(lambda: AssertionError(f"expected {INTERNAL_HOST}"), id="AssertionError"),
    pytest.param(lambda: redis.exceptions.ConnectionError(f"Error 111 connecting to {INTERNAL_HOST}:6379."),
                 id="redis.ConnectionError"),
    pytest.param(lambda: kombu.exceptions.OperationalError(f"[Errno 111] Connection refused: {INTERNAL_HOST}"),
                 id="kombu.OperationalError"),
]


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.MATHSET_WEBHOOK_HOSTS = "*"
    settings.MATHSET_BASE_URL = "https://mathset.example"


def _raise(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc
    return fail


def _hook(owner, events):
    return webhooks.webhook_create(owner=owner, url="http://127.0.0.1:9/hook", events=list(events)).webhook


def _sent(webhook) -> list[dict]:
    return [d.payload["data"] for d in WebhookDelivery.objects.filter(webhook=webhook).order_by("id")]


def _generic(error: str, what: str) -> str:
    """`error` is the generic message about `what`; returns its reference."""
    found = GENERIC.match(error)
    assert found, error
    assert found["what"] == what, error
    return found["ref"]


def _logged(caplog, reference: str, exc_type: type[BaseException], *needles: str, raised: bool = True) -> None:
    """One ERROR record names `reference` and carries the full exception: its type, its text (which
    holds `needles`) and, for an exception that was `raised`, its traceback."""
    records = [r for r in caplog.records if r.levelno == logging.ERROR and reference in r.getMessage()]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    (record,) = records
    assert record.exc_info is not None and isinstance(record.exc_info[1], exc_type)
    full = logging.Formatter().format(record)
    assert reference in full and exc_type.__name__ in full, full
    assert ("Traceback" in full) is raised, full
    for needle in needles:
        assert needle in full, full


def _no_internals(text: str) -> None:
    assert "10.0.3.4" not in text and "db-internal" not in text, text
    assert str(settings.MEDIA_ROOT) not in text and str(settings.BASE_DIR) not in text, text
    assert sys.prefix not in text, text
    assert "Traceback" not in text and "Error" not in text, text  # no exception's type or repr either


def _no_errors_logged(caplog) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


# ------------------------------------------------------------------------------ the policy


def test_the_kept_types_are_refusals_and_io_failures_and_where_a_model_runs_its_errors():
    import requests

    for exc in (ValidationError("no"), ValueError("no"), OSError("disk full"), FileNotFoundError(2, "gone"),
                PermissionError(13, "denied"), requests.ConnectionError("refused"), requests.Timeout("slow"),
                snapshots.ImageFileMissing("gone"), runtime.ExternalModelError("bad answer")):
        assert isinstance(exc, KEPT_MODEL), exc
    assert isinstance(runtime.ExternalModelError("bad answer"), RuntimeError)
    assert isinstance(RuntimeError("CUDA out of memory"), KEPT_MODEL)
    assert not isinstance(RuntimeError("CUDA out of memory"), KEPT)  # only where a model runs
    for make in HIDDEN:
        assert not isinstance(make.values[0](), KEPT_MODEL), make.id


def test_the_helper_keeps_a_kept_type_with_paths_made_relative(caplog):
    caplog.set_level(logging.ERROR)
    assert public_error(ValueError("the licence forbids it"), what="export") == "the licence forbids it"
    assert public_error(ValueError("the licence forbids it"), what="export", named=True) == \
        "ValueError: the licence forbids it"
    assert public_error(ValidationError({"spec": ["No accepted work.", "Nothing to do."]}), what="build",
                        named=True) == "No accepted work.; Nothing to do."
    stored = Path(settings.MEDIA_ROOT) / "images" / "ab" / "cd.png"
    assert public_error(FileNotFoundError(2, "No such file or directory", str(stored)), what="export") == \
        "[Errno 2] No such file or directory: 'images/ab/cd.png'"
    code = Path(settings.BASE_DIR) / "pipeline" / "weights" / "detector.onnx"
    assert public_error(PermissionError(13, "Permission denied", str(code)), what="build", named=True) == \
        "PermissionError: [Errno 13] Permission denied: 'pipeline/weights/detector.onnx'"
    assert public_error(RuntimeError("CUDA out of memory"), what="evaluation", expected=KEPT_MODEL, named=True) == \
        "RuntimeError: CUDA out of memory"
    assert public_error(runtime.ExternalModelError("status 502 from https://model.example/read"),
                        what="evaluation", expected=KEPT_MODEL) == "status 502 from https://model.example/read"
    _no_errors_logged(caplog)  # a kept failure is its reader's to act on, not the operator's


def test_absolute_paths_under_storage_the_project_and_python_are_made_relative():
    media, base = Path(settings.MEDIA_ROOT), Path(settings.BASE_DIR)
    packages = Path(site.getsitepackages()[0])
    assert storage_relative(f"cannot write '{media / 'exports-partial' / 'export-1.zip'}'") == \
        "cannot write 'exports-partial/export-1.zip'"
    assert storage_relative(f"cannot list '{media}'") == "cannot list '<storage>'"
    assert storage_relative(f"File \"{base / 'pipeline' / 'runtime.py'}\", line 3") == \
        "File \"pipeline/runtime.py\", line 3"
    assert storage_relative(f"denied: {base}") == "denied: ."
    assert storage_relative(f"in {packages / 'torch' / 'nn' / 'functional.py'}") == \
        "in <python>/torch/nn/functional.py"
    assert storage_relative(f"{Path(sys.prefix) / 'bin' / 'python'} exited") == "<python>/bin/python exited"
    # only whole folders: a longer name, or a path that merely ends the same way, is not under them
    assert storage_relative(f"{base}-old/x and /elsewhere{base}/x") == f"{base}-old/x and /elsewhere{base}/x"
    assert storage_relative("a relative path/x.png and https://h.example/a") == \
        "a relative path/x.png and https://h.example/a"


@pytest.mark.parametrize("make", HIDDEN)
def test_the_helper_hides_anything_else_and_logs_it_under_a_reference(make, caplog):
    caplog.set_level(logging.ERROR)
    exc = make()
    message = public_error(exc, what="evaluation", expected=KEPT_MODEL, named=True, subject="evaluation run 7")
    reference = _generic(message, "evaluation")
    _no_internals(message)
    _logged(caplog, reference, type(exc), INTERNAL_HOST, "evaluation run 7", raised=False)
    # every unexpected failure gets its own reference
    assert _generic(public_error(make(), what="evaluation"), "evaluation") != reference


def test_a_runtime_error_is_hidden_where_no_model_runs(caplog):
    caplog.set_level(logging.ERROR)
    message = public_error(RuntimeError(f"cursor on {INTERNAL_HOST} closed"), what="export")
    _no_internals(message)
    _logged(caplog, _generic(message, "export"), RuntimeError, INTERNAL_HOST, raised=False)


# ------------------------------------------------------------------------------ snapshots


@pytest.mark.parametrize("make", [HIDDEN[0], HIDDEN[1], pytest.param(lambda: RuntimeError(CONNECT), id="RuntimeError")])
def test_an_unexpected_error_in_a_snapshot_build_records_a_generic_message_and_logs_it(make, model_team, curator,
                                                                                        monkeypatch, caplog):
    caplog.set_level(logging.ERROR)
    hook = _hook(model_team, ["snapshot.failed"])
    spec = accepted_spec(images=1)
    exc = make()
    # deep inside the freeze, after the accepted work was found
    monkeypatch.setattr(snapshots, "assign_splits", _raise(exc))
    snapshot = factories.make_snapshot(spec=spec, created_by=curator)
    assert snapshot.status == "failed"
    reference = _generic(snapshot.error, "build")
    _no_internals(snapshot.error)
    _logged(caplog, reference, type(exc), INTERNAL_HOST, f"snapshot {snapshot.pk}")
    (sent,) = _sent(hook)
    assert sent["snapshot"]["error"] == snapshot.error
    shown = client_for(model_team).get(f"/api/v1/snapshots/{snapshot.pk}/").json()
    assert (shown["status"], shown["error"]) == ("failed", snapshot.error)


def test_an_expected_snapshot_build_failure_keeps_its_wording(curator, monkeypatch, caplog):
    caplog.set_level(logging.ERROR)
    spec = accepted_spec(images=1)
    refusal = ValidationError({"spec": "This spec has no accepted annotations yet; nothing to snapshot."})
    monkeypatch.setattr(snapshots, "assign_splits", _raise(refusal))
    snapshot = factories.make_snapshot(spec=spec, created_by=curator)
    assert (snapshot.status, snapshot.error) == ("failed",
                                                 "This spec has no accepted annotations yet; nothing to snapshot.")
    _no_errors_logged(caplog)


def test_an_io_failure_in_a_snapshot_build_keeps_its_wording_with_the_project_path_relative(curator, monkeypatch,
                                                                                            caplog):
    caplog.set_level(logging.ERROR)
    locked = Path(settings.BASE_DIR) / "var" / "locks" / "snapshots.lock"
    monkeypatch.setattr(snapshots, "assign_splits", _raise(PermissionError(13, "Permission denied", str(locked))))
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator)
    assert (snapshot.status, snapshot.error) == ("failed",
                                                 "PermissionError: [Errno 13] Permission denied: 'var/locks/snapshots.lock'")
    _no_errors_logged(caplog)


# ------------------------------------------------------------------------------ exports


def _export(snapshot, curator):
    return snapshots.export_run(job=snapshots.export_create(snapshot=snapshot, format="coco", created_by=curator))


@pytest.mark.parametrize("make", [HIDDEN[0], HIDDEN[1], pytest.param(lambda: RuntimeError(CONNECT), id="RuntimeError")])
def test_an_unexpected_error_in_an_export_records_a_generic_message_and_logs_it(make, model_team, curator,
                                                                                monkeypatch, caplog):
    caplog.set_level(logging.ERROR)
    hook = _hook(model_team, ["export.failed"])
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator)
    exc = make()
    monkeypatch.setattr(snapshots, "export", _raise(exc))
    job = _export(snapshot, curator)
    assert job.status == "failed" and not job.file
    reference = _generic(job.error, "export")
    _no_internals(job.error)
    _logged(caplog, reference, type(exc), INTERNAL_HOST, f"export {job.pk}")
    (sent,) = _sent(hook)
    assert sent["export"]["error"] == job.error
    shown = client_for(model_team).get(f"/api/v1/exports/{job.pk}/").json()
    assert (shown["status"], shown["error"]) == ("failed", job.error)


def test_an_export_refused_by_an_exporter_keeps_its_wording(curator, monkeypatch, caplog):
    caplog.set_level(logging.ERROR)
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator)
    why = "image 7 (00000007.png) region 0: the box (0, 0) 9x9 reaches past the 4x4 image"
    monkeypatch.setattr(snapshots, "export", _raise(ValueError(why)))
    job = _export(snapshot, curator)
    assert (job.status, job.error) == ("failed", why)
    _no_errors_logged(caplog)


def test_an_export_io_failure_keeps_its_wording_with_the_storage_path_relative(curator, monkeypatch, caplog):
    caplog.set_level(logging.ERROR)
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator)
    partial = Path(settings.MEDIA_ROOT) / "exports-partial" / "export-1-1-x.zip"
    monkeypatch.setattr(snapshots, "export", _raise(OSError(28, "No space left on device", str(partial))))
    job = _export(snapshot, curator)
    assert (job.status, job.error) == ("failed", "[Errno 28] No space left on device: 'exports-partial/export-1-1-x.zip'")
    _no_errors_logged(caplog)


def test_an_export_missing_an_image_file_names_it_relative_to_storage(curator, caplog):
    caplog.set_level(logging.ERROR)
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator)
    item = snapshot.items.get()
    default_storage.delete(item.file)
    job = _export(snapshot, curator)
    assert job.status == "failed"
    assert item.file in job.error and str(settings.MEDIA_ROOT) not in job.error, job.error
    assert "reference" not in job.error
    _no_errors_logged(caplog)


# ------------------------------------------------------------------------------ evaluation runs


def _evaluation(snapshot, owner, reader):
    detector = services.model_version_builtin(kind="detector")
    recognizer = services.model_version_builtin(kind="recognizer")
    run = evaluation.evaluation_create(snapshot=snapshot, detector_version=detector, recognizer_version=recognizer,
                                       created_by=owner)
    return evaluation.evaluation_run(run=run, reader=reader)


@pytest.mark.parametrize("make", HIDDEN[:2])
def test_an_unexpected_error_in_an_evaluation_records_a_generic_message_and_logs_it(make, model_team, curator,
                                                                                    caplog):
    caplog.set_level(logging.ERROR)
    hook = _hook(model_team, ["evaluation.finished"])
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator, ratios=(0, 0, 1))
    exc = make()
    run = _evaluation(snapshot, model_team, EvaluationStubReader(on_detect=_raise(exc)))
    assert run.status == "failed"
    reference = _generic(run.error, "evaluation")
    _no_internals(run.error)
    _logged(caplog, reference, type(exc), INTERNAL_HOST, f"evaluation run {run.pk}")
    (sent,) = _sent(hook)
    assert (sent["evaluation"]["status"], sent["evaluation"]["error"]) == ("failed", run.error)
    shown = client_for(model_team).get(f"/api/v1/evaluations/{run.pk}/").json()
    assert (shown["status"], shown["error"]) == ("failed", run.error)


def test_a_models_own_error_in_an_evaluation_keeps_its_wording(model_team, curator, caplog):
    caplog.set_level(logging.ERROR)
    hook = _hook(model_team, ["evaluation.finished"])
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator, ratios=(0, 0, 1))
    torch_file = Path(site.getsitepackages()[0]) / "torch" / "nn" / "functional.py"
    torch_error = RuntimeError(f"Given groups=1, weight of size [64, 3, 7, 7], expected input[1, 4, 32, 32] to have "
                               f"3 channels, but got 4 channels instead ({torch_file})")
    run = _evaluation(snapshot, model_team, EvaluationStubReader(on_detect=_raise(torch_error)))
    assert (run.status, run.error) == (
        "failed", "RuntimeError: Given groups=1, weight of size [64, 3, 7, 7], expected input[1, 4, 32, 32] to have "
                  "3 channels, but got 4 channels instead (<python>/torch/nn/functional.py)")
    (sent,) = _sent(hook)
    assert sent["evaluation"]["error"] == run.error
    contract = runtime.ExternalModelError("the answer's regions[0].points must be 4 points, got 3")
    broken = _evaluation(snapshot, model_team, EvaluationStubReader(on_detect=_raise(contract)))
    assert (broken.status, broken.error) == (
        "failed", "ExternalModelError: the answer's regions[0].points must be 4 points, got 3")
    _no_errors_logged(caplog)


def test_an_evaluation_of_a_missing_image_names_it_relative_to_storage(model_team, curator, caplog):
    caplog.set_level(logging.ERROR)
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator, ratios=(0, 0, 1))
    item = snapshot.items.get()
    default_storage.delete(item.file)
    run = _evaluation(snapshot, model_team, EvaluationStubReader())
    assert run.status == "failed"
    assert f"image {item.image_id} ({item.file}) cannot be read" in run.error, run.error
    assert str(settings.MEDIA_ROOT) not in run.error and "reference" not in run.error, run.error
    _no_errors_logged(caplog)


def test_an_evaluation_whose_storage_fails_unexpectedly_hides_it_and_logs_the_image(model_team, curator,
                                                                                   monkeypatch, caplog):
    caplog.set_level(logging.ERROR)
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator, ratios=(0, 0, 1))
    item = snapshot.items.get()
    monkeypatch.setattr(runtime, "load_rgb", _raise(_database_error()))
    run = _evaluation(snapshot, model_team, EvaluationStubReader())
    assert run.status == "failed"
    reference = _generic(run.error, "evaluation")
    _no_internals(run.error)
    _logged(caplog, reference, OperationalError, INTERNAL_HOST, f"image {item.image_id} ({item.file})")


# ------------------------------------------------------------------------------ pre-labeling


class _PrelabelStub:
    reading = {"stub": True}

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail

    def read(self, images, *, with_masks=False):
        if self.fail is not None:
            raise self.fail
        return [{"regions": [{"points": [[1, 1], [9, 1], [9, 5], [1, 5]], "score": 0.9, "latex": "x",
                              "latex_confidence": 0.9}], "seconds": 0.01} for _ in images]


def _prelabel(capture, monkeypatch, *, curator, spec, reader) -> PrelabelJob:
    monkeypatch.setattr(runtime, "reader_for", lambda *versions: reader)
    with capture(execute=True):
        job = services.prelabel_job_create(created_by=curator, spec=spec)
    job.refresh_from_db()
    return job


@pytest.mark.parametrize("make", HIDDEN[:2])
def test_an_unexpected_model_error_on_a_prelabeled_image_records_a_generic_message(
        make, curator, spec, source, monkeypatch, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.ERROR)
    image = factories.make_image(spec=spec, source=source, data=factories.png_bytes(40, 30))
    exc = make()
    job = _prelabel(django_capture_on_commit_callbacks, monkeypatch, curator=curator, spec=spec,
                    reader=_PrelabelStub(fail=exc))
    assert job.status == PrelabelJob.Status.DONE
    item = PrelabelItem.objects.get(job=job)
    assert (item.image_id, item.status) == (image.id, PrelabelItem.Status.FAILED)
    reference = _generic(item.error, "pre-labeling of this image")
    _no_internals(item.error)
    _logged(caplog, reference, type(exc), INTERNAL_HOST, f"pre-labeling job {job.pk}, image {image.id}")
    failures = client_for(curator).get(f"/api/v1/prelabel-jobs/{job.id}/failures/").json()["results"]
    assert [f["error"] for f in failures] == [item.error]


def test_a_models_own_error_on_a_prelabeled_image_keeps_its_wording(
        curator, spec, source, monkeypatch, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.ERROR)
    factories.make_image(spec=spec, source=source, data=factories.png_bytes(40, 30))
    reader = _PrelabelStub(fail=RuntimeError("CUDA error: device-side assert triggered"))
    job = _prelabel(django_capture_on_commit_callbacks, monkeypatch, curator=curator, spec=spec, reader=reader)
    item = PrelabelItem.objects.get(job=job)
    assert (item.status, item.error) == (PrelabelItem.Status.FAILED, "RuntimeError: CUDA error: device-side assert "
                                                                      "triggered")
    _no_errors_logged(caplog)


@pytest.mark.parametrize("make", [HIDDEN[0], HIDDEN[1], pytest.param(lambda: RuntimeError(CONNECT), id="RuntimeError")])
def test_an_unexpected_error_reading_a_prelabeled_image_records_a_generic_message(
        make, curator, spec, source, monkeypatch, caplog, django_capture_on_commit_callbacks):
    # reading the image file runs no model: a RuntimeError there is as unexpected as a database error
    caplog.set_level(logging.ERROR)
    factories.make_image(spec=spec, source=source, data=factories.png_bytes(40, 30))
    exc = make()
    monkeypatch.setattr(runtime, "load_rgb", _raise(exc))
    job = _prelabel(django_capture_on_commit_callbacks, monkeypatch, curator=curator, spec=spec,
                    reader=_PrelabelStub())
    item = PrelabelItem.objects.get(job=job)
    assert item.status == PrelabelItem.Status.FAILED
    reference = _generic(item.error, "pre-labeling of this image")
    _no_internals(item.error)
    _logged(caplog, reference, type(exc), INTERNAL_HOST)


def test_expected_prelabel_failures_keep_their_wording_with_files_relative_to_storage(
        curator, spec, source, monkeypatch, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.ERROR)
    corrupt, missing, locked = (factories.make_image(spec=spec, source=source, data=factories.png_bytes(40, 30))
                                for _ in range(3))
    (Path(settings.MEDIA_ROOT) / corrupt.file).write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    default_storage.delete(missing.file)
    plain_open = FileSystemStorage.open

    def open_(storage, name, mode="rb"):
        if name == locked.file:
            raise PermissionError(13, "Permission denied", storage.path(name))
        return plain_open(storage, name, mode)

    monkeypatch.setattr(FileSystemStorage, "open", open_)
    job = _prelabel(django_capture_on_commit_callbacks, monkeypatch, curator=curator, spec=spec,
                    reader=_PrelabelStub())
    errors = dict(PrelabelItem.objects.filter(job=job).values_list("image_id", "error"))
    assert errors[corrupt.id].startswith("ValueError: cannot decode image"), errors
    assert errors[missing.id].startswith("FileNotFoundError: ") and missing.file in errors[missing.id], errors
    assert errors[locked.id] == f"PermissionError: [Errno 13] Permission denied: '{locked.file}'", errors
    assert all(str(settings.MEDIA_ROOT) not in e and "reference" not in e for e in errors.values()), errors
    _no_errors_logged(caplog)
