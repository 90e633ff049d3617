"""Pre-labels from the pipeline's models become the starting point of tasks.

The pipeline stores a `pipeline.Prediction` per image and model versions; this
hook (registered in LabelingConfig.ready) hands it to `predictions_import`, the
one write path for predictions on the labeling side, which moves the image's open
tasks to pre-labeled and gives them the confidence used for queue order.
"""
from __future__ import annotations

import hashlib
import logging

from django.core.exceptions import ValidationError

from common import geometry

log = logging.getLogger(__name__)


def _clip(points: list[list[float]], width: int, height: int) -> list[list[float]]:
    # Detector corners may fall a few pixels outside the image; the annotation format does not allow that.
    return [[min(max(float(x), 0.0), width - 1.0), min(max(float(y), 0.0), height - 1.0)] for x, y in points]


def _number(value, default: float) -> float:
    # The external model contract makes "score" and "latex_confidence" optional, null included.
    return default if value is None else float(value)


def regions_from_prediction(prediction, *, width: int, height: int) -> list[dict]:
    """The pipeline's regions in the annotation format; LaTeX that does not pass the
    checks is dropped (the region stays, for the annotator to type, with confidence 0: its
    reading is gone, however sure the model was of it), and so is a region whose quad the
    annotation format refuses (self-intersecting, or nothing left of it inside the image):
    one such region must not cost the image its whole pre-label."""
    return _regions_kept(prediction, width=width, height=height)[0]


def _regions_kept(prediction, *, width: int, height: int) -> tuple[list[dict], int]:
    """`regions_from_prediction`, and how many of the prediction's regions were left out."""
    from .services import _latex_checked  # the check predictions_import applies, so both agree

    out = []
    for r in prediction.regions:
        points = r.get("points")
        if not points or len(points) != 4:
            continue
        points = _clip(points, width, height)
        try:
            geometry.validate_quad(points, width=width, height=height)
        except geometry.GeometryError as exc:
            log.info("pre-label region dropped (%s): %s", prediction, exc)
            continue
        text = (r.get("latex") or "").strip()
        conf = min(_number(r.get("score"), 0.0), _number(r.get("latex_confidence"), 1.0))
        if text and _latex_checked(text)[0]:
            text, conf = "", 0.0
        out.append({"kind": "quad", "points": points, "latex": text, "confidence": max(0.0, min(1.0, conf))})
    return out, len(prediction.regions) - len(out)


def task_confidence(prediction, regions: list[dict], dropped: int) -> float:
    """The queue confidence of the pre-label the annotator will see: the least sure of the
    regions it keeps. A region left out counts as 0, not as the score the model gave it: the
    annotator has to draw that formula from nothing, which is the work the "least sure first"
    order puts first. With no region kept or dropped, the detector's own figure stands (it
    found nothing; how sure it was of that is its call)."""
    if dropped:
        return 0.0
    if regions:
        return min(r["confidence"] for r in regions)
    return max(0.0, min(1.0, float(prediction.min_confidence)))


def _fit(value: str, field: str) -> str:
    """`value` within the labeling prediction's column. The registry allows longer names and
    versions than "detector+recognizer" fits; a longer one keeps its start and ends in a
    digest of the whole, so two model pairs never share one labeling prediction."""
    from .models import Prediction

    limit = Prediction._meta.get_field(field).max_length
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    return f"{value[:limit - len(digest) - 1]}~{digest}"


def task_prelabel_from_prediction(image_id: int, prediction) -> None:
    """PRELABELED_HOOKS entry: store the prediction for the image's tasks."""
    from curation.models import Image

    from .services import predictions_import

    image = Image.objects.filter(pk=image_id).only("id", "width", "height", "spec_id").first()
    if image is None:
        return
    det, rec = prediction.detector_version, prediction.recognizer_version
    name = _fit(det.name + (f"+{rec.name}" if rec else ""), "model_name")
    version = _fit(det.version + (f"+{rec.version}" if rec else ""), "model_version")
    regions, dropped = _regions_kept(prediction, width=image.width, height=image.height)
    item = {"image": image_id, "regions": regions, "confidence": task_confidence(prediction, regions, dropped)}
    try:
        predictions_import(model_name=name, model_version=version, items=[item])
    except ValidationError as exc:
        log.warning("pre-label of image %s not stored for labeling: %s", image_id, exc.messages)
