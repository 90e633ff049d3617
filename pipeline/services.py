"""Writes for the model registry, pre-labeling jobs and predictions."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

import numpy as np
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from common.errors import KEPT, KEPT_MODEL, public_error
from common.storage import guarded_files
from common.uploads import too_big
from curation import signed_urls
from curation.models import DatasetSpec, Image, Licence

from . import endpoints
from .models import ModelVersion, Prediction, PrelabelItem, PrelabelJob
from .webhooks import webhook_event_prelabel_job_finished

log = logging.getLogger(__name__)

# Callables (image_id, prediction) run after a prediction commits; the labeling app registers
# one to move the image's task to "pre-labeled" (see pipeline/models.py docstring).
PRELABELED_HOOKS: list[Callable[[int, Prediction], None]] = []

BUILTIN_LICENCE_CODES = {
    # what the committed weights were trained on (see the model cards)
    "detector": ["cc-by-nc-sa-3.0", "mit"],
    "recognizer": ["cc-by-nc-sa-3.0", "mit"],
}
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
# An uploaded version's name and version become part of its stored file's name
# (models/<kind>/<name>-<version>-<digest>.pt): a version "../x" made a folder "<name>-.." in storage,
# "../../x" was Django's SuspiciousFileOperation (an HTML 400 naming no field), and forty
# four-byte characters made a side model's file name too long for the file system (a 500).
UPLOAD_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")
UPLOAD_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,39}")


def check_upload_size(*, field: str, size: int) -> None:
    """Refuse a file of ``size`` bytes over the limit, saying both sizes. The API refuses a file
    over it while it streams in (common/uploads.py), calls this with the upload's size before
    reading the file into memory, and the upload service calls it again on the bytes."""
    if size > MAX_UPLOAD_BYTES:
        raise ValidationError({field: too_big(size=size, limit=MAX_UPLOAD_BYTES)})


# ---------------------------------------------------------------- registry

@transaction.atomic
def model_version_builtin(*, kind: str) -> ModelVersion:
    """The ModelVersion row of the committed weights of `kind` (created on first use)."""
    from .ml.inference import WEIGHTS_DIR

    folder = WEIGHTS_DIR / kind
    config = json.loads((folder / "config.json").read_text())
    # the detector's corner refiner (refiner.pt) and orienter (orienter.pt) are part of what the
    # version reads with: new ones make a new version
    digest_of = hashlib.sha256()
    for name in ("weights.pt", "refiner.pt", "orienter.pt"):
        if (folder / name).exists():
            digest_of.update((folder / name).read_bytes())
    digest = digest_of.hexdigest()
    # repository paths, not storage names: workers read the builtin folder itself
    side_files = {name: f"pipeline/weights/{kind}/{name}" for name in ("refiner.pt", "orienter.pt")
                  if (folder / name).exists()}
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    version, created = ModelVersion.objects.get_or_create(
        kind=kind, name="mathset-builtin", version=digest[:12],
        defaults={"source": ModelVersion.Source.BUILTIN, "format": ModelVersion.Format.STATE_DICT,
                  "weights_sha256": digest, "config": config,
                  "side_files": side_files,
                  "metrics": metrics,
                  "notes": f"Committed weights, see pipeline/weights/{kind}/MODEL_CARD.md"},
    )
    if created:
        version.training_licences.set(Licence.objects.filter(code__in=BUILTIN_LICENCE_CODES.get(kind, [])))
    elif (version.side_files, version.config, version.metrics) != (side_files, config, metrics):
        # a row made before side models were recorded, or before the recognizer's confidence was
        # calibrated or measured again (calibrate_recognizer rewrites config.json, not the weights)
        version.side_files, version.config, version.metrics = side_files, config, metrics
        version.save(update_fields=["side_files", "config", "metrics"])
    return version


@transaction.atomic
def model_version_active(*, kind: str) -> ModelVersion:
    """The active version of `kind`; the committed weights are activated when none is."""
    active = ModelVersion.objects.filter(kind=kind, is_active=True).first()
    if active is not None:
        return active
    version = model_version_builtin(kind=kind)
    return model_version_activate(version=version)


@transaction.atomic
def model_version_activate(*, version: ModelVersion) -> ModelVersion:
    """Make `version` the one active version of its kind (others of the kind are deactivated).

    An external full-pipeline endpoint replaces both detector and recognizer, so activating
    it deactivates the active detector too, and vice versa.
    """
    if version.source == ModelVersion.Source.UPLOAD:
        # workers copy these files from storage at their first job: a version whose file was lost
        # would fail every image of every job, so it is refused here and the active one stays
        stored = [version.weights, *(version.side_files or {}).values()]
        missing = [name for name in stored if not name or not default_storage.exists(name)]
        if missing:
            raise ValidationError({"version": f"{version} cannot be activated: its stored file(s) are missing "
                                              f"({', '.join(m or 'weights' for m in missing)}); upload it again"})
    kinds = {version.kind}
    if version.kind in (ModelVersion.Kind.PIPELINE, ModelVersion.Kind.DETECTOR):
        kinds |= {ModelVersion.Kind.PIPELINE, ModelVersion.Kind.DETECTOR}
    # Lock every version of these kinds first: the UPDATE below ignores select_for_update, and two
    # activations at once each deactivated what was active when they began, then both set their own:
    # the second broke the one-active-per-kind constraint (an IntegrityError, a 500) on PostgreSQL.
    # Locked, the second waits for the first to commit and then deactivates it.
    list(ModelVersion.objects.select_for_update().filter(kind__in=kinds).order_by("pk").values_list("pk", flat=True))
    ModelVersion.objects.filter(kind__in=kinds, is_active=True).exclude(pk=version.pk).update(is_active=False)
    version.is_active = True
    try:
        version.save(update_fields=["is_active"])
    except IntegrityError:  # a kind with no committed row to lock yet, activated twice at once
        raise ValidationError({"version": f"another {version.kind} was activated at the same moment; "
                                          "try again"}) from None
    return version


def _licences(codes: Iterable[str]) -> list[Licence]:
    codes = list(dict.fromkeys(codes))
    found = list(Licence.objects.filter(code__in=codes))
    missing = sorted(set(codes) - {lic.code for lic in found})
    if missing:
        raise ValidationError({"training_licences": f"unknown licence code(s): {', '.join(missing)}"})
    return found


# Settings that size what a network reads or writes rather than its weights: the upload's trial run
# (in the web process) and every worker allocate by them. Weights are bounded by the upload limit
# and checked against the config before a network is built (`build_fitting`); these are not, so
# they get ceilings, each many times what the committed models use (256; 64, 1024, 250; 48 x 384).
INPUT_LIMITS = {
    "detector": {"size": 2048},
    "recognizer": {"height": 256, "max_width": 8192, "max_len": 1000},
    "refiner": {"height": 512, "width": 4096},
    "orienter": {"height": 512, "width": 4096},
}


def _size_errors(config: dict, limits: dict[str, int]) -> list[str]:
    """The settings in ``config`` over their ceiling in ``limits`` (type errors are left to
    `_config_errors`)."""
    return [f"{name}: at most {limit:,} (it sizes every input the model reads), not {config[name]:,}"
            for name, limit in limits.items()
            if isinstance(config.get(name), int) and not isinstance(config[name], bool) and config[name] > limit]


def _config_errors(config: dict, settings) -> list[str]:
    """What is wrong with the values ``config`` gives for the fields of the dataclass ``settings``.

    Workers build their settings from the stored config without checking it: a threshold sent as
    the string "0.6" loaded fine here and then failed every image in detection. Sizes and counts
    are whole numbers of at least 1, the other numbers finite and not negative.
    """
    errors = []
    for name, field in settings.__dataclass_fields__.items():
        if name not in config:
            continue
        value, kind = config[name], field.type
        if kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            need = "a whole number of at least 1"
        elif kind == "float":
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
                  and value >= 0)
            need = "a finite number, not negative"
        elif kind == "str":
            ok, need = isinstance(value, str), "a string"
        elif kind == "tuple[int, ...]":
            ok = (isinstance(value, list) and bool(value)
                  and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))
            need = "a list of whole numbers of at least 1"
        elif kind == "list[str]":
            ok = isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
            need = "a non-empty list of strings"
        else:  # a field of a type not listed here: left to the loading below
            continue
        if not ok:
            errors.append(f"{name} must be {need}, got {json.dumps(value)[:80]}")
    return errors


def _validate_model_file(*, kind: str, fmt: str, content: bytes, config: dict) -> None:
    """Load the uploaded model on the CPU and run it once as a worker will (a batch of two blank
    images, or one blank crop); anything that cannot run is refused here, not in a worker."""
    import torch

    from .ml import calibration
    from .ml.detector import DetectorConfig, TinyUNet, detect_batch
    from .ml.inference import build_fitting, float_state, read_crops
    from .ml.recognizer import Recognizer, RecognizerConfig

    settings = DetectorConfig if kind == ModelVersion.Kind.DETECTOR else RecognizerConfig
    if kind == ModelVersion.Kind.RECOGNIZER and not config.get("vocab"):
        raise ValidationError({"config": "a recognizer config needs its 'vocab'"})
    errors = _config_errors(config, settings) + _size_errors(config, INPUT_LIMITS[kind])
    if errors:  # the settings' own problem, under their own field, before the weights are blamed
        raise ValidationError({"config": errors})
    if kind == ModelVersion.Kind.RECOGNIZER:
        try:
            calibration.parse(config.get("calibration"))
        except ValueError as exc:  # the fit is config, not weights: say so under its own field
            raise ValidationError({"config": str(exc)}) from None
    cfg = settings(**{k: (tuple(v) if k == "channels" else v) for k, v in config.items()
                      if k in settings.__dataclass_fields__})
    blank = [np.full((48, 96, 3), 255, np.uint8), np.full((96, 64, 3), 255, np.uint8)]
    try:
        with torch.no_grad():
            if fmt == ModelVersion.Format.TORCHSCRIPT:
                if kind != ModelVersion.Kind.DETECTOR:
                    raise ValueError("TorchScript uploads are supported for detectors; "
                                     "upload recognizers as weights + config")
                model = torch.jit.load(io.BytesIO(content), map_location="cpu")
                # two images, as workers send batches: a module traced with a fixed batch of one
                # passed a one-image check and then failed every chunk
                out = model(torch.zeros(2, 3, cfg.size, cfg.size))
                if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[:2] != (2, 2):
                    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise ValueError(f"the module must map (B, 3, S, S) to (B, 2, h, w) logits; for B=2 it gave {got}")
            else:
                state = float_state(io.BytesIO(content))
                model = build_fitting(lambda: TinyUNet(cfg) if kind == ModelVersion.Kind.DETECTOR else Recognizer(cfg),
                                      state)
            model.eval()
            if kind == ModelVersion.Kind.DETECTOR:
                detect_batch(model, cfg, blank, with_masks=False)
            else:
                read_crops(model, blank[:1])
    except Exception as exc:  # noqa: BLE001 - report any loading failure to the uploader
        raise ValidationError({"file": f"the model cannot be loaded: {_failure(exc)}"})


def _failure(exc: Exception) -> str:
    """The gist of a loading failure for the uploader: a TorchScript error carries the interpreter's
    traceback, this server's paths included; its last line says what went wrong."""
    text = str(exc).strip()
    if "Traceback of TorchScript" in text:
        text = text.splitlines()[-1]
    return text[:1000]


# the small networks a detector may bring beside its weights: upload field -> (file, config key)
SIDE_MODELS = {"refiner_file": ("refiner.pt", "refiner"), "orienter_file": ("orienter.pt", "orienter")}


def _validate_side_model(*, field: str, content: bytes, config: dict) -> None:
    """Load an uploaded corner refiner or orienter with its settings from ``config``, or refuse it."""
    from .ml.inference import side_model

    _file, key = SIDE_MODELS[field]
    if not content:
        raise ValidationError({field: "the file is empty"})
    check_upload_size(field=field, size=len(content))
    raw = config.get(key)
    if not isinstance(raw, dict):
        raise ValidationError({field: f"config needs the {key}'s settings as an object under '{key}'"})
    too_big = _size_errors(raw, INPUT_LIMITS[key])
    if too_big:
        raise ValidationError({"config": [f"{key}.{e}" for e in too_big]})
    try:
        side_model(key, raw, io.BytesIO(content))  # as workers will load it
    except Exception as exc:  # noqa: BLE001 - report any loading failure to the uploader
        raise ValidationError({field: f"the {key} cannot be loaded with config['{key}']: {exc}"})


def model_version_upload(*, kind: str, name: str, version: str, file_name: str, content: bytes, fmt: str,
                         config: dict | None = None, metrics: dict | None = None,
                         training_licences: Iterable[str] = (), notes: str = "", activate: bool = False,
                         side_models: dict[str, bytes] | None = None,
                         created_by: User | None = None) -> ModelVersion:
    """Register an uploaded model (TorchScript, or a state dict + config) after loading it once.

    A detector may bring its corner refiner and orienter (``side_models``: ``refiner_file`` /
    ``orienter_file`` -> bytes, settings under ``config['refiner']`` / ``config['orienter']``);
    without them its pre-labels keep the detector's corners and let the recognizer choose which
    way up. The files are stored under ``models/``; if the row cannot be written they are removed.
    """
    config = config or {}
    side_models = {f: c for f, c in (side_models or {}).items() if c is not None}
    unknown = sorted(set(side_models) - set(SIDE_MODELS))
    if unknown:
        raise ValidationError({unknown[0]: f"not a side model; expected one of {', '.join(SIDE_MODELS)}"})
    if side_models and kind != ModelVersion.Kind.DETECTOR:
        field = sorted(side_models)[0]
        raise ValidationError({field: "only a detector carries a corner refiner or an orienter"})
    if kind not in (ModelVersion.Kind.DETECTOR, ModelVersion.Kind.RECOGNIZER):
        raise ValidationError({"kind": "uploads are detectors or recognizers; use an HTTP endpoint for a pipeline"})
    if fmt not in (ModelVersion.Format.STATE_DICT, ModelVersion.Format.TORCHSCRIPT):
        raise ValidationError({"format": "must be 'state_dict' or 'torchscript'"})
    if not UPLOAD_NAME_RE.fullmatch(name or ""):
        raise ValidationError({"name": "letters, digits, '_' and '-' only (at most 80): it names the stored file"})
    if not UPLOAD_VERSION_RE.fullmatch(version or ""):
        raise ValidationError({"version": "letters, digits and '.', '_', '+', '-' (at most 40, starting with a letter "
                                          "or digit; no '/', '\\' or spaces): it names the stored file"})
    if not content:
        raise ValidationError({"file": "the file is empty"})
    check_upload_size(field="file", size=len(content))
    licences = _licences(training_licences)
    if ModelVersion.objects.filter(kind=kind, name=name, version=version).exists():
        raise ValidationError({"version": f"{kind} {name}@{version} already exists"})
    _validate_model_file(kind=kind, fmt=fmt, content=content, config=config)
    errors = {}
    for field, side in sorted(side_models.items()):
        try:
            _validate_side_model(field=field, content=side, config=config)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:  # every side model's problem at once
        raise ValidationError(errors)
    # one digest over every file, so that a worker's cached copy changes with any of them
    whole = hashlib.sha256(content)
    for field, side in sorted(side_models.items()):
        whole.update(field.encode() + hashlib.sha256(side).digest())
    digest = whole.hexdigest()
    ext = "ts" if fmt == ModelVersion.Format.TORCHSCRIPT else "pt"
    with guarded_files() as files, transaction.atomic():
        stored = files.save(f"models/{kind}/{name}-{version}-{digest[:8]}.{ext}", content)
        side_files = {SIDE_MODELS[field][0]: files.save(f"models/{kind}/{name}-{version}-{digest[:8]}-"
                                                         f"{SIDE_MODELS[field][0]}", side)
                      for field, side in sorted(side_models.items())}
        try:
            mv = ModelVersion.objects.create(kind=kind, name=name, version=version, source=ModelVersion.Source.UPLOAD,
                                             format=fmt, weights=stored, weights_sha256=digest, config=config,
                                             side_files=side_files, metrics=metrics or {}, notes=notes,
                                             created_by=created_by)
        except IntegrityError:
            raise ValidationError({"version": f"{kind} {name}@{version} already exists"})
        mv.training_licences.set(licences)
        if activate:
            model_version_activate(version=mv)
    log.info("uploaded %s (%s)", mv, file_name)
    return mv


@transaction.atomic
def model_version_register_http(*, name: str, version: str, endpoint_url: str, config: dict | None = None,
                                metrics: dict | None = None, training_licences: Iterable[str] = (),
                                notes: str = "", activate: bool = False,
                                created_by: User | None = None) -> ModelVersion:
    """Register an external full-pipeline model reached over HTTP (see runtime.HttpPredictor)."""
    try:
        endpoints.check(endpoint_url, must_resolve=False)
    except endpoints.EndpointRefused as exc:
        raise ValidationError({"endpoint_url": str(exc)}) from None
    licences = _licences(training_licences)
    if ModelVersion.objects.filter(kind=ModelVersion.Kind.PIPELINE, name=name, version=version).exists():
        raise ValidationError({"version": f"pipeline {name}@{version} already exists"})
    mv = ModelVersion.objects.create(kind=ModelVersion.Kind.PIPELINE, name=name, version=version,
                                     source=ModelVersion.Source.HTTP, endpoint_url=endpoint_url, config=config or {},
                                     metrics=metrics or {}, notes=notes, created_by=created_by)
    mv.training_licences.set(licences)
    if activate:
        model_version_activate(version=mv)
    return mv


# ---------------------------------------------------------------- pre-labeling jobs

def _enqueue_chunks(job: PrelabelJob, image_ids: list[int]) -> None:
    from .tasks import prelabel_chunk

    ids = sorted(image_ids)
    chunks = [ids[i:i + job.chunk_size] for i in range(0, len(ids), job.chunk_size)]
    transaction.on_commit(lambda: [prelabel_chunk.delay(job.id, chunk) for chunk in chunks])


@transaction.atomic
def prelabel_job_create(*, created_by: User | None, spec: DatasetSpec | None = None,
                        images: Iterable[Image] | None = None, force: bool = False,
                        chunk_size: int = 16) -> PrelabelJob:
    """Queue pre-labeling of a spec's images or of the given images with the active models.

    One PrelabelItem per image; chunks of `chunk_size` images go to Celery after commit.
    Images already predicted by the same model versions are skipped (counted as such)
    unless `force`.
    """
    if spec is None and images is None:
        raise ValidationError({"spec": "give a spec or a list of images"})
    if not 1 <= chunk_size <= 256:
        raise ValidationError({"chunk_size": "must be between 1 and 256"})
    qs = Image.objects.filter(spec=spec) if images is None else Image.objects.filter(pk__in=[i.pk for i in images])
    qs = qs.filter(taken_down_at__isnull=True)  # a taken-down image's files are erased
    image_ids = list(qs.order_by("pk").values_list("pk", flat=True))
    if not image_ids:
        raise ValidationError({"images": "no images to pre-label"})
    pipeline = ModelVersion.objects.filter(kind=ModelVersion.Kind.PIPELINE, is_active=True).first()
    if pipeline is not None:
        detector, recognizer = pipeline, None
    else:
        detector = model_version_active(kind=ModelVersion.Kind.DETECTOR)
        recognizer = model_version_active(kind=ModelVersion.Kind.RECOGNIZER)
    job = PrelabelJob.objects.create(spec=spec, force=force, chunk_size=chunk_size, detector_version=detector,
                                     recognizer_version=recognizer, total=len(image_ids), created_by=created_by,
                                     status=PrelabelJob.Status.RUNNING, started_at=timezone.now())
    PrelabelItem.objects.bulk_create([PrelabelItem(job=job, image_id=i) for i in image_ids], batch_size=2000)
    _enqueue_chunks(job, image_ids)
    return job


@transaction.atomic
def prelabel_job_cancel(*, job: PrelabelJob) -> PrelabelJob:
    """Stop a job: chunks not yet started return at once; a running chunk stops after its batch."""
    job = PrelabelJob.objects.select_for_update().get(pk=job.pk)
    if job.status in (PrelabelJob.Status.DONE, PrelabelJob.Status.CANCELLED):
        raise ValidationError({"status": f"the job is already {job.status}"})
    job.status = PrelabelJob.Status.CANCELLED
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "finished_at"])
    webhook_event_prelabel_job_finished(job_id=job.pk)
    return job


@transaction.atomic
def prelabel_job_retry_failed(*, job: PrelabelJob) -> PrelabelJob:
    """Put failed items back to pending and queue them again (the job runs again if it had finished).

    A cancelled job is refused: running it again would leave the items its cancel stopped pending
    and never queued (a job "running" for ever), until the sweep re-queued every one of them.
    """
    job = PrelabelJob.objects.select_for_update().get(pk=job.pk)
    if job.status == PrelabelJob.Status.CANCELLED:
        raise ValidationError({"status": "the job was cancelled; start a new job for its images"})
    ids = list(job.items.filter(status=PrelabelItem.Status.FAILED).values_list("image_id", flat=True))
    if not ids:
        raise ValidationError({"status": "no failed items to retry"})
    job.items.filter(image_id__in=ids).update(status=PrelabelItem.Status.PENDING, error="", finished_at=None)
    job.status = PrelabelJob.Status.RUNNING
    job.finished_at = None
    job.save(update_fields=["status", "finished_at"])
    _enqueue_chunks(job, ids)
    return job


@transaction.atomic
def prelabel_job_resume(*, job: PrelabelJob) -> int:
    """Queue every still-pending item of a running job again; returns how many.

    For a job whose worker died: Redis redelivers an unacknowledged chunk only after the
    visibility timeout, so a curator (or the periodic sweep) can resume at once. Safe while
    chunks are still running: an item is only ever finished once (status filter) and a
    prediction only stored once per image and model versions (unique constraint).
    """
    job = PrelabelJob.objects.select_for_update().get(pk=job.pk)
    if job.status != PrelabelJob.Status.RUNNING:
        raise ValidationError({"status": f"only a running job can be resumed (this one is {job.status})"})
    ids = list(job.items.filter(status=PrelabelItem.Status.PENDING).values_list("image_id", flat=True))
    if ids:
        _enqueue_chunks(job, ids)
    return len(ids)


def prelabel_jobs_sweep(*, stale_after_seconds: int = 900) -> list[int]:
    """Resume running jobs that finished no item for `stale_after_seconds` (run by Celery beat)."""
    from django.db.models import Max

    cutoff = timezone.now() - timedelta(seconds=stale_after_seconds)
    resumed = []
    for job in PrelabelJob.objects.filter(status=PrelabelJob.Status.RUNNING, started_at__lt=cutoff).annotate(
            last=Max("items__finished_at")):
        if job.last is None or job.last < cutoff:
            if prelabel_job_resume(job=job):
                resumed.append(job.pk)
    return resumed


def _finish_if_complete(job_id: int) -> None:
    with transaction.atomic():
        job = PrelabelJob.objects.select_for_update().get(pk=job_id)
        if job.status == PrelabelJob.Status.RUNNING and not job.items.filter(status=PrelabelItem.Status.PENDING).exists():
            job.status = PrelabelJob.Status.DONE
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "finished_at"])
            webhook_event_prelabel_job_finished(job_id=job.pk)  # again after a retry of its failures


def _mask_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _regions_json(regions: list[dict]) -> list[dict]:
    out = []
    for r in regions:
        r = dict(r)
        if isinstance(r.get("mask"), np.ndarray):
            r["mask_rle"] = _mask_rle(r.pop("mask"))
        out.append(r)
    return out


@transaction.atomic
def prediction_store(*, image: Image, job: PrelabelJob | None, detector_version: ModelVersion,
                     recognizer_version: ModelVersion | None, regions: list[dict], seconds: float = 0.0,
                     reading: dict | None = None) -> Prediction:
    """Store (or replace, for a forced re-run) the prediction of `image` by these model versions.

    ``reading`` records how a built-in reader read it (beam width, test-time views, ...).
    """
    regions = _regions_json(regions)
    # "score" and "latex_confidence" may be missing or null (optional in the external model
    # contract): an unknown detection counts as unsure, an unknown reading as sure, as before.
    confs = [min(float(0 if r.get("score") is None else r["score"]),
                 float(1 if r.get("latex_confidence") is None else r["latex_confidence"])) for r in regions]
    pred, _ = Prediction.objects.update_or_create(
        image=image, detector_version=detector_version, recognizer_version=recognizer_version,
        defaults={"job": job, "regions": regions, "min_confidence": min(confs) if confs else 0.0, "seconds": seconds,
                  "reading": reading or {}},
    )
    for hook in PRELABELED_HOOKS:
        transaction.on_commit(lambda h=hook: h(image.pk, pred))
    return pred


# The note on an item skipped because its image was taken down (not an error: nothing to do).
TAKEN_DOWN_NOTE = "image taken down (its files are erased); nothing to pre-label"


def _item_error(exc: BaseException, item: PrelabelItem, *, expected: tuple[type[BaseException], ...]) -> str:
    """The error recorded on `item` for `exc`: kept as it is (paths made relative) if one of
    `expected` (common.errors.KEPT reading its file, KEPT_MODEL where the model reads it), else a
    generic message and a reference to the worker log (common.errors.public_error)."""
    return public_error(exc, what="pre-labeling of this image", expected=expected, named=True,
                        subject=f"pre-labeling job {item.job_id}, image {item.image_id}")


def _mark(item_ids: list[int], status: str, error: str = "") -> None:
    PrelabelItem.objects.filter(pk__in=item_ids, status=PrelabelItem.Status.PENDING).update(
        status=status, error=error[:2000], finished_at=timezone.now())


def _read_isolating_failures(reader, loaded: list[tuple[PrelabelItem, np.ndarray]]) -> tuple[list, list, int]:
    """Read the decoded images as one batch; if the model raises on the batch, read them one by
    one so that an image it cannot read fails only its own item, with the error recorded (an
    exception escaping the chunk would leave every item of it pending, the job running for ever).
    Returns the items read with their results and how many failed."""
    try:
        return loaded, reader.read([img for _, img in loaded], with_masks=True), 0
    except Exception as exc:  # noqa: BLE001 - find the image(s) at fault below
        batch_error = exc
    if len(loaded) > 1:
        log.warning("a batch of %d images failed (%s); reading them one by one", len(loaded), batch_error)
    kept, results, failed = [], [], 0
    for item, image in loaded:
        try:
            if len(loaded) == 1:
                raise batch_error
            result = reader.read([image], with_masks=True)[0]
        except Exception as exc:  # noqa: BLE001 - a bad image fails only itself
            _mark([item.pk], PrelabelItem.Status.FAILED, _item_error(exc, item, expected=KEPT_MODEL))
            failed += 1
            continue
        kept.append((item, image))
        results.append(result)
    return kept, results, failed


def prelabel_chunk_run(*, job_id: int, image_ids: list[int]) -> dict:
    """Run one chunk: skip done/already-predicted images, predict the rest in one batch, store.

    Each image is committed on its own, so a crash loses at most the batch in flight and a
    redelivered chunk continues where it stopped. A corrupt or missing image fails only its
    item, with the error recorded; an image taken down since the job was queued (its files
    erased on request) is skipped, with a note, not failed. An external (HTTP) model is sent
    signed image URLs; an answer it gets wrong (error status, broken contract) fails the items of that request with
    the reason, while a connection failure escapes to the task's retries. Returns counts.
    """
    from .runtime import ExternalModelError, HttpPredictor, load_rgb, reader_for

    job = PrelabelJob.objects.select_related("detector_version", "recognizer_version").filter(pk=job_id).first()
    if job is None or job.status != PrelabelJob.Status.RUNNING:
        return {"skipped_job": 1}
    items = list(PrelabelItem.objects.filter(job=job, image_id__in=image_ids, status=PrelabelItem.Status.PENDING)
                 .select_related("image").order_by("image_id"))
    if not items:
        _finish_if_complete(job.pk)
        return {"pending": 0}
    PrelabelItem.objects.filter(pk__in=[i.pk for i in items]).update(attempts=F("attempts") + 1)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    if not job.force:
        predicted = set(Prediction.objects.filter(
            image_id__in=[i.image_id for i in items], detector_version=job.detector_version,
            recognizer_version=job.recognizer_version).values_list("image_id", flat=True))
        already = [i for i in items if i.image_id in predicted]
        _mark([i.pk for i in already], PrelabelItem.Status.SKIPPED)
        counts["skipped"] = len(already)
        items = [i for i in items if i.image_id not in predicted]
    # Taken down since the job was queued: its files are erased, there is nothing to pre-label.
    gone = [i for i in items if i.image.taken_down_at is not None]
    if gone:
        _mark([i.pk for i in gone], PrelabelItem.Status.SKIPPED, TAKEN_DOWN_NOTE)
        counts["skipped"] += len(gone)
        items = [i for i in items if i.image.taken_down_at is None]
    reader = reader_for(job.detector_version, job.recognizer_version)
    loaded = []
    for item in items:
        try:
            if isinstance(reader, HttpPredictor):
                loaded.append((item, None))
                continue
            with default_storage.open(item.image.file, "rb") as fh:
                loaded.append((item, load_rgb(fh.read())))
        except Exception as exc:  # noqa: BLE001 - a bad image fails only itself
            if Image.objects.filter(pk=item.image_id, taken_down_at__isnull=False).exists():
                _mark([item.pk], PrelabelItem.Status.SKIPPED, TAKEN_DOWN_NOTE)  # taken down just now
                counts["skipped"] += 1
                continue
            _mark([item.pk], PrelabelItem.Status.FAILED, _item_error(exc, item, expected=KEPT))
            counts["failed"] += 1
    if loaded:
        if isinstance(reader, HttpPredictor):
            # The external model fetches each image itself, by an absolute signed URL (no login).
            started = time.perf_counter()
            try:
                results = reader.read_urls([signed_urls.image_url(it.image_id) for it, _ in loaded])
            except ExternalModelError as exc:  # its answer is unusable: fail these items, with why
                _mark([it.pk for it, _ in loaded], PrelabelItem.Status.FAILED,
                      public_error(exc, what="pre-labeling of this image", expected=KEPT_MODEL,
                                   subject=f"pre-labeling job {job.pk}"))
                counts["failed"] += len(loaded)
                _finish_if_complete(job.pk)
                return counts
            per_image = (time.perf_counter() - started) / len(loaded)
            results = [{**r, "seconds": per_image} for r in results]  # the round trip, whatever it claims
        else:
            loaded, results, failed = _read_isolating_failures(reader, loaded)
            counts["failed"] += failed
        reading = reader.reading
        for (item, _), result in zip(loaded, results, strict=True):
            if not PrelabelJob.objects.filter(pk=job.pk, status=PrelabelJob.Status.RUNNING).exists():
                break  # cancelled while the batch ran: store nothing more
            with transaction.atomic():
                prediction_store(image=item.image, job=job, detector_version=job.detector_version,
                                 recognizer_version=job.recognizer_version, regions=result.get("regions", []),
                                 seconds=float(result.get("seconds", 0.0)), reading=reading)
                _mark([item.pk], PrelabelItem.Status.DONE)
            counts["done"] += 1
    _finish_if_complete(job.pk)
    return counts

