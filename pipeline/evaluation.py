"""Offline evaluation: score a detector and/or recognizer version, or an external full-pipeline
(HTTP) model, on a snapshot's test split.

What is measured, per test image of the snapshot (in image order, so a run is deterministic
given the weights):

* **Detection** — the detector's quads are matched one-to-one to the frozen truth regions
  (Hungarian assignment on quad IoU, :func:`pipeline.qa.match_regions`) at IoU >= 0.5:
  precision, recall and F1 over all regions, and the mean IoU of the matched pairs.
* **Recognition** — the recognizer reads each *truth* region's rectified crop, so its score
  does not depend on what the detector found: exact match and normalised token edit distance
  (:mod:`common.latex`), corpus BLEU-4 (sacrebleu on the normalised token strings), all by
  :func:`pipeline.ml.evaluate.recognizer_metrics`. Regions with no truth LaTeX are not read.
* **Speed** — images go through the models ``batch_size`` at a time (detection batched over
  the images, recognition over all their crops). An image's time is its batch's wall time
  (detect, rectify, recognise; decoding the file excluded) divided by the images in the batch,
  so with ``batch_size`` 1 it is the single-image latency. p50/p95 are over images; QPS is
  images over the summed inference time of the run.

**Full-pipeline (HTTP) models.** An external model (``ModelVersion`` of kind ``pipeline``,
source ``http``, :class:`~pipeline.runtime.HttpPredictor`) is evaluated when given as the
run's ``detector_version`` (its ``recognizer_version`` stays empty). It is sent, per batch,
absolute signed URLs of the items' frozen files (:mod:`curation.signed_urls`: it fetches them
itself, without a login) and answers regions with LaTeX per image. It is scored end to end:

* detection exactly as above, from the quads of its regions;
* recognition: for each truth region with LaTeX, the LaTeX of the predicted region matched to
  it (IoU >= 0.5, the same one-to-one matching) is its reading; a truth region with no match
  (missed, or without geometry) counts as a wrong reading, an empty prediction (edit distance
  1.0, exact match false); predicted regions matched to nothing count only as false positives.
  So its exact match is "found and read right", not comparable with a recognizer-only run's;
* speed: an image's time is the HTTP round trip of its batch (the model's fetching of the
  images included) divided by the images in the batch.

An HTTP error status or a response that breaks the contract fails the run with the reason
(:class:`~pipeline.runtime.ExternalModelError`), like any other error.

**Licences.** An external model is sent only the test images an export of the snapshot would let
out (:func:`licence_gate`, the exporters' own rule): the licence frozen with the item and the
one its source has now must both allow the stricter of the snapshot's frozen and its spec's
current intended use. The rest is not sent, not scored, and counted per licence and reason in
``metrics["licence_excluded"]`` (rows as an export's ``excluded``). Local models run in-process
and send nothing out, as pre-labeling and labeling use every image of a spec: they are scored
on the whole test split (their ``licence_excluded`` is empty).

Everything is also broken down by the image's categories. Verdicts compare the overall
figures with the spec's :class:`~curation.models.ModelRequirement` rows, its ``target_qps``
(QPS) and ``max_ms_per_image`` (p95 time per image).

The arithmetic is pure (:func:`summarize`, :func:`verdicts_for`, :func:`latency_percentiles`)
and the runner takes any object with ``detect(images, with_masks=False)`` (items with a
``quad``) and ``recognize(crops)`` (items with a ``latex``, or strings) (the
runtime's :class:`~pipeline.ml.inference.FormulaReader` by default), or for a pipeline run
one with ``read_urls(urls)`` (the contract's results), so tests can inject a stub with known
answers.
"""
from __future__ import annotations

import difflib
import html
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from common.errors import KEPT_MODEL, public_error
from common.latex import normalize_tokens
from curation.models import DatasetSpec, ModelRequirement, Snapshot, SnapshotItem

from .ml.calibration import confidence_metrics
from .models import EvaluationRun, EvaluationSample, ModelVersion
from .qa import Region, match_regions
from .webhooks import webhook_event_evaluation_finished

MATCH_IOU = 0.5
TEST_SPLIT = "test"
MAX_BATCH_SIZE = 64
UNCATEGORISED = "uncategorised"
# Columns of the comparison table; the value of each is read from ``metrics["overall"]``.
HIGHER_IS_BETTER = ("exact_match", "bleu4", "detection_precision", "detection_recall", "detection_f1", "mean_iou",
                    "qps")
LOWER_IS_BETTER = ("token_edit_distance", "confidence_ece", "latency_p50_ms", "latency_p95_ms")


# ------------------------------------------------------------------ pure arithmetic

@dataclass
class RegionResult:
    """One truth region: its normalised truth tokens, the recognizer's tokens (None when not
    read), the IoU of the detection matched to it (None when missed or not detected) and the
    model's confidence in its reading (P(exact); None when it gave none)."""

    index: int
    points: list | None
    truth: list[str]
    prediction: list[str] | None
    iou: float | None = None
    confidence: float | None = None

    @property
    def edits(self) -> int | None:
        if self.prediction is None:
            return None
        from rapidfuzz.distance import Levenshtein

        return Levenshtein.distance(self.prediction, self.truth)

    @property
    def edit_distance(self) -> float | None:
        edits = self.edits
        return None if edits is None else edits / (max(len(self.prediction), len(self.truth)) or 1)


@dataclass
class ImageResult:
    """One test image: its categories, truth regions, how many regions the detector found
    (None without a detector) and its time in milliseconds."""

    item_id: int
    categories: tuple[str, ...]
    regions: list[RegionResult]
    predicted: int | None
    ms: float = 0.0

    @property
    def matched(self) -> int:
        return sum(1 for r in self.regions if r.iou is not None)


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def summarize(images: Sequence[ImageResult]) -> dict:
    """Recognition and detection figures over `images` (None where nothing was measured)."""
    from .ml.evaluate import recognizer_metrics

    read = [r for im in images for r in im.regions if r.prediction is not None]
    out: dict = {"images": len(images), "regions": sum(len(im.regions) for im in images), "recognized": len(read)}
    if read:
        rec, _ = recognizer_metrics([(r.prediction, r.truth) for r in read])
        out.update(exact_match=rec["exact_match"], token_edit_distance=rec["token_edit_distance"],
                   within_1=rec["within_1"], bleu4=rec["bleu4"])
    else:
        out.update(exact_match=None, token_edit_distance=None, within_1=None, bleu4=None)
    # is the model's confidence a probability of exactness on this snapshot? (pre-label order rests on it)
    rated = [r for r in read if r.confidence is not None]
    quality = confidence_metrics([r.confidence for r in rated], [r.prediction == r.truth for r in rated]) if rated else {}
    out.update(confidence_rated=len(rated), confidence_mean=quality.get("mean_confidence"),
               confidence_ece=quality.get("ece"), confidence_auroc=quality.get("auroc"))
    detected = [im for im in images if im.predicted is not None]
    if detected:
        tp = sum(im.matched for im in detected)
        fp = sum(im.predicted - im.matched for im in detected)
        fn = sum(len(im.regions) - im.matched for im in detected)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.update(detection_precision=precision, detection_recall=recall, detection_f1=f1,
                   mean_iou=_mean([r.iou for im in detected for r in im.regions if r.iou is not None]),
                   true_positives=tp, false_positives=fp, false_negatives=fn)
    else:
        out.update(detection_precision=None, detection_recall=None, detection_f1=None, mean_iou=None,
                   true_positives=None, false_positives=None, false_negatives=None)
    return out


def summarize_by_category(images: Sequence[ImageResult]) -> dict[str, dict]:
    """:func:`summarize` per category; an image counts in each of its categories."""
    groups: dict[str, list[ImageResult]] = defaultdict(list)
    for im in images:
        for category in sorted(set(im.categories)) or [UNCATEGORISED]:
            groups[category].append(im)
    return {c: summarize(groups[c]) for c in sorted(groups)}


def latency_percentiles(ms: Sequence[float]) -> tuple[float | None, float | None]:
    """(p50, p95) with linear interpolation between samples (numpy's default)."""
    if not ms:
        return None, None
    p50, p95 = np.percentile(np.asarray(ms, dtype=np.float64), [50, 95])
    return float(p50), float(p95)


def verdicts_for(*, requirements: Iterable[ModelRequirement], overall: dict, qps: float | None,
                 latency_p95_ms: float | None, target_qps: float | None = None,
                 max_ms_per_image: int | None = None) -> list[dict]:
    """One row per requirement and speed target: threshold, measured value, met (None when the
    run could not measure it, e.g. detection F1 of a recognizer-only run)."""
    rows = []
    for req in requirements:
        value = overall.get(req.metric)
        rows.append({"metric": req.metric, "label": req.get_metric_display(), "threshold": req.threshold,
                     "lower_is_better": req.metric in ModelRequirement.LOWER_IS_BETTER, "value": value,
                     "met": None if value is None else bool(req.is_met_by(value))})
    if target_qps:
        rows.append({"metric": "qps", "label": "Throughput (images/s)", "threshold": float(target_qps),
                     "lower_is_better": False, "value": qps, "met": None if qps is None else qps >= target_qps})
    if max_ms_per_image:
        rows.append({"metric": "ms_per_image", "label": "Time per image, p95 (ms)",
                     "threshold": float(max_ms_per_image), "lower_is_better": True, "value": latency_p95_ms,
                     "met": None if latency_p95_ms is None else latency_p95_ms <= max_ms_per_image})
    return rows


def overall_passed(verdicts: Sequence[dict]) -> bool | None:
    """False when any verdict fails; None when there is none or one could not be measured."""
    if not verdicts:
        return None
    if any(v["met"] is False for v in verdicts):
        return False
    if any(v["met"] is None for v in verdicts):
        return None
    return True


def best_values(runs: Sequence[EvaluationRun]) -> dict[str, float]:
    """The best value of each comparison column among finished `runs` (for highlighting)."""
    best: dict[str, float] = {}
    for run in runs:
        if run.status != EvaluationRun.Status.DONE:
            continue
        for key, value in comparison_values(run).items():
            if value is None:
                continue
            if key not in best or (value > best[key] if key in HIGHER_IS_BETTER else value < best[key]):
                best[key] = value
    return best


def comparison_values(run: EvaluationRun) -> dict[str, float | None]:
    """The comparison-table columns of one run."""
    overall = (run.metrics or {}).get("overall", {})
    values = {k: overall.get(k) for k in HIGHER_IS_BETTER + LOWER_IS_BETTER}
    values.update(qps=run.qps, latency_p50_ms=run.latency_p50_ms, latency_p95_ms=run.latency_p95_ms)
    return values


def token_diff_html(truth: str, prediction: str) -> SafeString:
    """The token difference from `truth` to `prediction` as HTML: missing tokens in ``<del>``,
    extra ones in ``<ins>``, a substitution as both. Every token is HTML-escaped."""
    a, b = truth.split(), prediction.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f'<del class="tok-del">{html.escape(" ".join(a[i1:i2]))}</del>')
        if j2 > j1:
            out.append(f'<ins class="tok-ins">{html.escape(" ".join(b[j1:j2]))}</ins>')
    return mark_safe(" ".join(out))  # noqa: S308 - built only from escaped tokens and fixed tags


# ------------------------------------------------------------------ geometry of truth regions

def truth_quad(region: dict) -> list[list[float]] | None:
    """The region's 4 points, or for a mask-only region the minimum-area rectangle of its mask,
    in reading order (:func:`common.geometry.mask_quad`, as the exports): its crop is read by the
    recognizer, so a formula turned past 45° must not be cut sideways."""
    if region.get("points"):
        return [[float(x), float(y)] for x, y in region["points"]]
    if region.get("mask_rle"):
        return _mask_quad(region["mask_rle"])
    return None


def _mask_quad(mask_rle: object) -> list[list[float]] | None:
    """:func:`common.geometry.mask_quad` of a stored mask, drawing only its bounding box.

    A truth mask of a 48 MP phone photo is a 48 MB array to decode whole (and OpenCV's copy of
    it), for a formula that covers a small part of it; a snapshot's test image has dozens. The
    box is drawn with one pixel of zeros around it where the image leaves room
    (:func:`common.rle.decode_window`), so the outlines traced in it are the whole mask's, moved
    by the box's corner: the same points, the same rectangle, bit for bit.

    Only a mask that :func:`common.rle.decode` would accept takes this way (canonical compressed
    RLE of its size, checked on the runs by :func:`common.rle.validate`); an empty one is told
    from its counts string alone (None, as from the whole mask). Anything else (uncompressed
    counts, a string no COCO encoder writes: never stored, every saved mask was validated) is
    decoded whole as before, so it gives the same quad or raises the same MaskError.
    """
    from common import geometry, rle

    window = _mask_window(mask_rle)
    if isinstance(window, str):  # "empty"
        return None
    if window is None:
        return geometry.mask_quad(rle.decode(mask_rle))
    x0, y0, m = window
    return geometry.mask_quad(m, offset=(x0, y0))


def _mask_window(mask_rle: object) -> tuple[int, int, np.ndarray] | str | None:
    """``(x0, y0, uint8 window)`` of a valid non-empty mask's box grown by one pixel, ``"empty"``
    for the RLE of an empty mask, None where only a whole decode can tell."""
    from common import rle

    if not isinstance(mask_rle, dict) or not isinstance(mask_rle.get("counts"), str):
        return None
    size = mask_rle.get("size")
    if not isinstance(size, list | tuple) or len(size) != 2:
        return None
    try:
        rle.validate(mask_rle, width=size[1], height=size[0])
    except rle.MaskError:  # not a mask, or an empty one
        return "empty" if _empty_mask(mask_rle) else None
    return rle.decode_window(mask_rle, pad=1)


def _empty_mask(mask_rle: dict) -> bool:
    """Whether a mask's counts are the one string COCO writes for a mask of no pixels (a single
    run of every pixel out), which :func:`common.rle.decode` decodes to zeros."""
    from pycocotools import mask as mask_utils

    from common import rle

    try:
        if rle.bbox(mask_rle) is not None:
            return False
    except rle.MaskError:
        return False
    h, w = mask_rle["size"]  # checked by bbox: positive ints
    empty = mask_utils.frPyObjects({"size": [h, w], "counts": [h * w]}, h, w)["counts"]
    return mask_rle["counts"] == empty.decode("ascii")


# ------------------------------------------------------------------ services

def _test_items(snapshot: Snapshot) -> QuerySet[SnapshotItem]:
    # Items taken down since the freeze have no file any more (curation.services.image_takedown).
    return SnapshotItem.objects.filter(snapshot=snapshot, split=TEST_SPLIT, takedown__isnull=True).order_by("image_id")


def licence_gate(snapshot: Snapshot) -> tuple[set[int], list[dict]]:
    """The test images of `snapshot` that may not leave the platform (their image ids), and
    what they are, per licence and reason (rows as an export's ``excluded``).

    The exporters' rule, on the records an export is built from: the licence frozen with the
    item and its source's licence now must both allow the stricter of the snapshot's frozen and
    its spec's current intended use. Read when called, so a licence narrowed after the freeze
    (or after the run was queued) holds back its images.
    """
    from curation.exporters import exclusion_reason
    from curation.exporters.base import LicenceManifest
    from curation.snapshots import snapshot_export_images, snapshot_intended_use

    intended_use = snapshot_intended_use(snapshot)
    manifest = LicenceManifest()
    withheld: set[int] = set()
    for image in snapshot_export_images(snapshot):
        if image.split != TEST_SPLIT:
            continue
        # The model reads the image, it does not publish a crop of it: not a derivative, as for
        # an export of whole images.
        reason = exclusion_reason(image, intended_use=intended_use, makes_derivatives=False)
        if reason is not None:
            manifest.exclude(image, reason)
            withheld.add(image.image_id)
    return withheld, manifest.excluded_rows()


def _check_kind(version: ModelVersion | None, kind: str, field: str) -> None:
    if version is not None and version.kind != kind:
        raise ValidationError({field: f"{version} is a {version.kind}, not a {kind}."})


@transaction.atomic
def evaluation_create(*, snapshot: Snapshot, detector_version: ModelVersion | None,
                      recognizer_version: ModelVersion | None, created_by: User | None,
                      spec: DatasetSpec | None = None, batch_size: int = 8) -> EvaluationRun:
    """Queue an evaluation of the given model versions on `snapshot`'s test split; a Celery
    worker runs it after commit (:func:`evaluation_run`).

    `spec`, when given, must be the snapshot's spec (a guard for callers that pick both).
    """
    if spec is not None and snapshot.spec_id != spec.pk:
        raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} belongs to another spec, not {spec}."})
    if detector_version is None and recognizer_version is None:
        raise ValidationError({"detector_version": "Give a detector version, a recognizer version or both."})
    if recognizer_version is not None and recognizer_version.kind == ModelVersion.Kind.PIPELINE:
        raise ValidationError({"recognizer_version": f"{recognizer_version} is a full pipeline: give it as "
                                                     "detector_version (it is scored end to end)."})
    if detector_version is not None and detector_version.kind == ModelVersion.Kind.PIPELINE:
        if detector_version.source != ModelVersion.Source.HTTP:
            raise ValidationError({"detector_version": f"{detector_version} has no HTTP endpoint to evaluate."})
        if recognizer_version is not None:
            raise ValidationError({"recognizer_version": f"{detector_version} is a full pipeline that reads the "
                                                         "LaTeX itself: leave recognizer_version empty."})
    else:
        _check_kind(detector_version, ModelVersion.Kind.DETECTOR, "detector_version")
    _check_kind(recognizer_version, ModelVersion.Kind.RECOGNIZER, "recognizer_version")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValidationError({"batch_size": f"Must be between 1 and {MAX_BATCH_SIZE}."})
    if snapshot.status != Snapshot.Status.READY:
        raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} is {snapshot.status}, not ready; wait for it to be built."})
    total = _test_items(snapshot).count()
    if not total:
        raise ValidationError({"snapshot": "This snapshot has no items in its test split; nothing to evaluate."})
    run = EvaluationRun.objects.create(snapshot=snapshot, detector_version=detector_version,
                                       recognizer_version=recognizer_version, batch_size=batch_size, total=total,
                                       created_by=created_by)
    from .tasks import run_evaluation

    transaction.on_commit(lambda: run_evaluation.delay(run.pk))
    return run


@transaction.atomic
def evaluation_cancel(*, run: EvaluationRun) -> EvaluationRun:
    """Cancel a queued or running evaluation; a running one stops before its next batch."""
    run = EvaluationRun.objects.select_for_update().get(pk=run.pk)
    if run.status not in (EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING):
        raise ValidationError({"status": f"The evaluation is already {run.status}."})
    run.status = EvaluationRun.Status.CANCELLED
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])
    webhook_event_evaluation_finished(run_id=run.pk)
    return run


def is_pipeline_run(run: EvaluationRun) -> bool:
    """Whether the run evaluates a full-pipeline (HTTP) model end to end."""
    return run.detector_version is not None and run.detector_version.kind == ModelVersion.Kind.PIPELINE


def _reader_for(run: EvaluationRun):
    """The runtime's cached reader (an HttpPredictor for a pipeline run); a missing side is
    filled with the committed weights, which are loaded but never run."""
    from .runtime import reader_for
    from .services import model_version_builtin

    if is_pipeline_run(run):
        return reader_for(run.detector_version)

    detector = run.detector_version or model_version_builtin(kind=ModelVersion.Kind.DETECTOR)
    recognizer = run.recognizer_version or model_version_builtin(kind=ModelVersion.Kind.RECOGNIZER)
    return reader_for(detector, recognizer)


def _device(reader) -> str:
    endpoint = getattr(reader, "endpoint_url", None)
    if endpoint:
        from urllib.parse import urlsplit

        return f"HTTP {urlsplit(endpoint).netloc.rpartition('@')[2]}"  # never its user name and password
    device = getattr(reader, "device", None)
    if device is None:
        return type(reader).__name__
    import torch

    return f"{device}, {torch.get_num_threads()} torch thread(s)"


class ImageUnreadable(RuntimeError):
    """A test image is missing from storage or cannot be decoded: the run fails naming it."""


def _load(item: SnapshotItem) -> np.ndarray:
    from .runtime import load_rgb

    try:
        with default_storage.open(item.file, "rb") as fh:
            return load_rgb(fh.read())
    except (OSError, ValueError) as exc:  # missing, unreadable, or not an image (load_rgb's ValueError)
        raise ImageUnreadable(f"image {item.image_id} ({item.file}) cannot be read: {exc}") from exc
    except Exception as exc:
        # Anything else keeps its type (a database or storage backend's error is not for the run's
        # readers: common.errors hides it), the image named in the worker log's traceback.
        exc.add_note(f"while reading image {item.image_id} ({item.file})")
        raise


def _tokens(reading) -> list[str]:
    text = reading if isinstance(reading, str) else getattr(reading, "latex", "")
    return normalize_tokens(text)


def _has_latex(region: dict) -> bool:
    return bool((region.get("latex") or "").strip())


def _truths(items: list[SnapshotItem]) -> list[list[tuple[int, dict, list | None]]]:
    """Per item, its frozen regions as ``(index, region, quad or None)``."""
    return [[(i, r, truth_quad(r)) for i, r in enumerate(item.regions or [])] for item in items]


def _match_detections(regions: list[tuple[int, dict, list | None]], region_results: list[RegionResult],
                      quads: list) -> list[tuple[int, RegionResult]]:
    """Match the detected `quads` one-to-one to the truth regions with geometry (IoU >= MATCH_IOU),
    set each matched truth's IoU, and return ``(detection index, truth result)`` per match."""
    found = [Region(points=np.asarray(q, np.float64).reshape(4, 2)) for q in quads]
    scored = [(n, Region(points=quad)) for n, (_, _, quad) in enumerate(regions) if quad is not None]
    pairs = []
    for m in match_regions(found, [r for _, r in scored], min_iou=MATCH_IOU):
        truth = region_results[scored[m.b][0]]
        truth.iou = m.iou
        pairs.append((m.a, truth))
    return pairs


def _evaluate_pipeline_batch(reader, items: list[SnapshotItem]) -> list[ImageResult]:
    """Send one batch of signed item URLs to a full-pipeline model and score its answers end
    to end (see the module docstring): a truth region's reading is the LaTeX of the predicted
    region matched to it, an empty one when none is."""
    from curation import signed_urls

    truths = _truths(items)
    urls = [signed_urls.snapshot_item_url(item.pk) for item in items]
    started = time.perf_counter()
    answers = reader.read_urls(urls)
    per_image_ms = (time.perf_counter() - started) * 1000 / len(items)
    results = []
    for item, regions, answer in zip(items, truths, answers, strict=True):
        found = answer["regions"]
        region_results = [RegionResult(index=i, points=quad, truth=normalize_tokens(region.get("latex") or ""),
                                       prediction=[] if _has_latex(region) else None) for i, region, quad in regions]
        for n, matched in _match_detections(regions, region_results, [d["points"] for d in found]):
            if matched.prediction is not None:
                matched.prediction = normalize_tokens(found[n].get("latex") or "")
                matched.confidence = found[n].get("latex_confidence")
        results.append(ImageResult(item_id=item.pk, categories=tuple(item.categories or ()), regions=region_results,
                                   predicted=len(found), ms=per_image_ms))
    return results


def _evaluate_batch(run: EvaluationRun, reader, items: list[SnapshotItem]) -> list[ImageResult]:
    """Run the models on one batch of test images and score each against its frozen regions."""
    from .ml.detector import rectify

    if is_pipeline_run(run):
        return _evaluate_pipeline_batch(reader, items)

    images = [_load(item) for item in items]
    truths = _truths(items)
    started = time.perf_counter()
    detections = reader.detect(images, with_masks=False) if run.detector_version_id else None
    crops, owners = [], []
    if run.recognizer_version_id:
        for k, (image, regions) in enumerate(zip(images, truths, strict=True)):
            for i, region, quad in regions:
                if quad is not None and _has_latex(region):
                    crops.append(rectify(image, np.asarray(quad, np.float32)))
                    owners.append((k, i))
    readings = reader.recognize(crops) if crops else []
    per_image_ms = (time.perf_counter() - started) * 1000 / len(items)
    # per crop: its tokens and the model's confidence in them (a reader may give none)
    read = {owner: (_tokens(reading), getattr(reading, "confidence", None))
            for owner, reading in zip(owners, readings, strict=True)}
    results = []
    for k, (item, regions) in enumerate(zip(items, truths, strict=True)):
        region_results = []
        for i, region, quad in regions:
            tokens, confidence = read.get((k, i), (None, None))
            region_results.append(RegionResult(index=i, points=quad, truth=normalize_tokens(region.get("latex") or ""),
                                               prediction=tokens, confidence=confidence))
        predicted = None
        if detections is not None:
            _match_detections(regions, region_results, [d.quad for d in detections[k]])
            predicted = len(detections[k])
        results.append(ImageResult(item_id=item.pk, categories=tuple(item.categories or ()), regions=region_results,
                                   predicted=predicted, ms=per_image_ms))
    return results


def _sample_rows(run: EvaluationRun, result: ImageResult) -> list[EvaluationSample]:
    common = {"run": run, "item_id": result.item_id, "categories": list(result.categories),
              "image_predicted": result.predicted or 0, "image_matched": result.matched, "latency_ms": result.ms}
    if not result.regions:
        return [EvaluationSample(region_index=None, **common)]
    rows = []
    for r in result.regions:
        rows.append(EvaluationSample(
            region_index=r.index, points=r.points, truth_latex=" ".join(r.truth),
            predicted_latex=" ".join(r.prediction) if r.prediction is not None else "",
            edits=r.edits, edit_distance=r.edit_distance, exact=None if r.prediction is None else r.edits == 0,
            iou=r.iou, confidence=r.confidence, **common))
    return rows


def _mine(run: EvaluationRun) -> QuerySet[EvaluationRun]:
    """The run while this worker's claim holds: still running, and not claimed again since
    (the sweep re-queues a run whose worker stopped beating; a late original must not write)."""
    return EvaluationRun.objects.filter(pk=run.pk, status=EvaluationRun.Status.RUNNING, attempts=run.attempts)


def _still_running(run: EvaluationRun) -> bool:
    return _mine(run).exists()


def evaluation_run(*, run: EvaluationRun, reader=None) -> EvaluationRun:
    """Run a queued evaluation to the end (see the module docstring for what is measured).

    Idempotent: only a queued run is claimed (a conditional UPDATE), so a redelivered task
    does nothing. Samples are stored batch by batch with the progress; a cancel is noticed
    before each batch. Any error fails the run: a refusal, an I/O failure (an unreadable image)
    or the model's own error (common.errors.KEPT_MODEL) with its message, any other with a
    generic one and a reference to the worker log, which holds the details.
    """
    now = timezone.now()
    claimed = EvaluationRun.objects.filter(pk=run.pk, status=EvaluationRun.Status.QUEUED).update(
        status=EvaluationRun.Status.RUNNING, started_at=now, heartbeat_at=now, processed=0, error="",
        attempts=F("attempts") + 1)
    run.refresh_from_db()
    if not claimed:
        return run
    try:
        reader = reader if reader is not None else _reader_for(run)
        EvaluationRun.objects.filter(pk=run.pk).update(device=_device(reader)[:60])
        items = list(_test_items(run.snapshot))
        licence_excluded: list[dict] = []
        if is_pipeline_run(run):
            # An external model is sent the images' URLs and fetches them: only what an export
            # would let out may go. Decided here, when they are about to be sent, not when queued.
            withheld, licence_excluded = licence_gate(run.snapshot)
            items = [item for item in items if item.image_id not in withheld]
            EvaluationRun.objects.filter(pk=run.pk, attempts=run.attempts).update(total=len(items))
        results: list[ImageResult] = []
        for start in range(0, len(items), run.batch_size):
            if not _still_running(run):
                run.refresh_from_db()
                return run
            batch = _evaluate_batch(run, reader, items[start:start + run.batch_size])
            with transaction.atomic():
                EvaluationSample.objects.bulk_create([row for im in batch for row in _sample_rows(run, im)])
                # attempt-scoped, not status-scoped: a batch stored while a cancel came in still counts
                EvaluationRun.objects.filter(pk=run.pk, attempts=run.attempts).update(
                    processed=F("processed") + len(batch), heartbeat_at=timezone.now())
            results += batch
        _finish(run, results, licence_excluded=licence_excluded)
    except Exception as exc:  # noqa: BLE001 - the run records why it failed
        # A model runs here: its own errors (RuntimeError, ExternalModelError) are kept besides the
        # refusals and I/O failures (an unreadable image, an endpoint's connection failure or deadline).
        message = public_error(exc, what="evaluation", expected=KEPT_MODEL, named=True,
                               subject=f"evaluation run {run.pk}")
        with transaction.atomic():
            if _mine(run).update(status=EvaluationRun.Status.FAILED, error=message[:2000], finished_at=timezone.now()):
                webhook_event_evaluation_finished(run_id=run.pk)
    run.refresh_from_db()
    return run


def _finish(run: EvaluationRun, results: list[ImageResult], *, licence_excluded: list[dict]) -> None:
    spec = run.snapshot.spec
    ms = [r.ms for r in results]
    seconds = sum(ms) / 1000
    qps = len(results) / seconds if seconds > 0 else None
    p50, p95 = latency_percentiles(ms)
    metrics = {"overall": summarize(results), "by_category": summarize_by_category(results),
               "licence_excluded": licence_excluded}
    verdicts = verdicts_for(requirements=spec.requirements.all(), overall=metrics["overall"], qps=qps,
                            latency_p95_ms=p95, target_qps=spec.target_qps, max_ms_per_image=spec.max_ms_per_image)
    # Conditional: a cancel that came during the last batch wins (and told the webhooks itself).
    with transaction.atomic():
        if _mine(run).update(
                status=EvaluationRun.Status.DONE, metrics=metrics, verdicts=verdicts, passed=overall_passed(verdicts),
                latency_p50_ms=p50, latency_p95_ms=p95, qps=qps, inference_seconds=seconds,
                finished_at=timezone.now()):
            webhook_event_evaluation_finished(run_id=run.pk)


CROP_MAX_SIDE = 800


def sample_crop_jpeg(*, sample: EvaluationSample) -> bytes:
    """The sample's truth region, rectified as the recognizer saw it, as a JPEG (at most
    CROP_MAX_SIDE pixels on its longer side). Raises FileNotFoundError if the image is gone."""
    import io

    import cv2
    from PIL import Image as PILImage

    from .ml.detector import rectify
    from .runtime import load_rgb

    with default_storage.open(sample.item.file, "rb") as fh:
        image = load_rgb(fh.read())
    crop = rectify(image, np.asarray(sample.points, np.float32))
    scale = min(1.0, CROP_MAX_SIDE / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()
    PILImage.fromarray(crop).save(buf, "JPEG", quality=88)
    return buf.getvalue()


# A batch takes seconds; a run whose worker stored nothing for this long has lost its worker.
EVALUATION_STALE_SECONDS = 30 * 60


def evaluations_sweep(*, stale_after_seconds: int = EVALUATION_STALE_SECONDS, max_attempts: int = 2) -> dict:
    """Rescue evaluation runs whose worker died (Celery beat): a run ``running`` with no batch
    stored for `stale_after_seconds` is queued again with its partial samples removed, and
    failed once it has used `max_attempts` claims. Each run is re-read under a row lock and
    changed only if it is still stale, so a sweep racing a finishing worker does nothing.

    A run ``queued`` for `stale_after_seconds` with no worker claiming it (its message lost
    with a broker restart, say) is sent again (``resent``): only a queued run is claimed, so a
    message that was merely slow and arrives as well does nothing.
    """
    from .tasks import run_evaluation

    cutoff = timezone.now() - timedelta(seconds=stale_after_seconds)
    stale = (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
             | Q(heartbeat_at__isnull=True, started_at__isnull=True, created_at__lt=cutoff))
    out: dict[str, list[int]] = {"requeued": [], "failed": [], "resent": []}
    running = EvaluationRun.Status.RUNNING
    for run_id in list(EvaluationRun.objects.filter(stale, status=running).values_list("id", flat=True)):
        with transaction.atomic():
            run = EvaluationRun.objects.select_for_update().filter(stale, pk=run_id, status=running).first()
            if run is None:
                continue
            if run.attempts < max_attempts:
                EvaluationSample.objects.filter(run=run).delete()
                # heartbeat_at: when it was queued again (the lost-message check below reads it)
                now = timezone.now()
                run.status, run.processed, run.started_at, run.heartbeat_at = EvaluationRun.Status.QUEUED, 0, None, now
                run.save(update_fields=["status", "processed", "started_at", "heartbeat_at"])
                transaction.on_commit(lambda i=run.pk: run_evaluation.delay(i))
                out["requeued"].append(run.pk)
            else:
                run.status, run.finished_at = EvaluationRun.Status.FAILED, timezone.now()
                run.error = f"The worker stopped without finishing ({run.attempts} attempts)."
                run.save(update_fields=["status", "finished_at", "error"])
                webhook_event_evaluation_finished(run_id=run.pk)
                out["failed"].append(run.pk)
    queued = EvaluationRun.Status.QUEUED
    waiting = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    for run_id in list(EvaluationRun.objects.filter(waiting, status=queued).values_list("id", flat=True)):
        with transaction.atomic():
            run = EvaluationRun.objects.select_for_update().filter(waiting, pk=run_id, status=queued).first()
            if run is None:
                continue
            run.heartbeat_at = timezone.now()  # sent again now: waits another period before the next try
            run.save(update_fields=["heartbeat_at"])
            transaction.on_commit(lambda i=run.pk: run_evaluation.delay(i))
            out["resent"].append(run.pk)
    return out
