"""Pre-labels from the pipeline's models become the starting point of tasks.

The pipeline stores a `pipeline.Prediction` per image and model versions; this
hook (registered in LabelingConfig.ready) hands it to `predictions_import`, the
one write path for predictions on the labeling side, which moves the image's open
tasks to pre-labeled and gives them the confidence used for queue order.
"""
from __future__ import annotations

import logging

from django.core.exceptions import ValidationError

from common import latex

log = logging.getLogger(__name__)


def _clip(points: list[list[float]], width: int, height: int) -> list[list[float]]:
    # Detector corners may fall a few pixels outside the image; the annotation format does not allow that.
    return [[min(max(float(x), 0.0), width - 1.0), min(max(float(y), 0.0), height - 1.0)] for x, y in points]


def regions_from_prediction(prediction, *, width: int, height: int) -> list[dict]:
    """The pipeline's regions in the annotation format; LaTeX that does not pass the
    checks is dropped (the region stays, for the annotator to type)."""
    out = []
    for r in prediction.regions:
        points = r.get("points")
        if not points or len(points) != 4:
            continue
        text = r.get("latex") or ""
        if text and latex.check(text):
            text = ""
        conf = min(float(r.get("score", 0.0)), float(r.get("latex_confidence", 1.0)))
        out.append({"kind": "quad", "points": _clip(points, width, height), "latex": text,
                    "confidence": max(0.0, min(1.0, conf))})
    return out


def task_prelabel_from_prediction(image_id: int, prediction) -> None:
    """PRELABELED_HOOKS entry: store the prediction for the image's tasks."""
    from curation.models import Image

    from .services import predictions_import

    image = Image.objects.filter(pk=image_id).only("id", "width", "height", "spec_id").first()
    if image is None:
        return
    det, rec = prediction.detector_version, prediction.recognizer_version
    name = det.name + (f"+{rec.name}" if rec else "")
    version = det.version + (f"+{rec.version}" if rec else "")
    item = {"image": image_id, "regions": regions_from_prediction(prediction, width=image.width, height=image.height),
            "confidence": max(0.0, min(1.0, float(prediction.min_confidence)))}
    try:
        predictions_import(model_name=name, model_version=version, items=[item])
    except ValidationError as exc:
        log.warning("pre-label of image %s not stored for labeling: %s", image_id, exc.messages)
