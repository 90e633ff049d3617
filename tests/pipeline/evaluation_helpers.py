"""Snapshots with known truth and stub models with known answers, for evaluation tests."""
from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from types import SimpleNamespace

import numpy as np

from common import roles
from labeling.services import annotation_create, batch_create, review_create, task_claim_next
from tests import factories


def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def make_eval_snapshot(images: Sequence[tuple[list[dict], tuple[str, ...]]], *, spec=None, data: Sequence[bytes] = (),
                       name: str = "eval", ratios=(0, 0, 1), **spec_kw):
    """A snapshot whose images carry exactly `images` = [(regions, categories), ...] as their
    accepted answers, every image in the test split by default. Images are created in order,
    so the evaluation (image order) sees them in that order."""
    spec = spec or factories.make_spec(**spec_kw)
    source = factories.make_source()
    answers = {}
    for n, (regions, categories) in enumerate(images):
        image = factories.make_image(spec=spec, source=source, categories=categories,
                                     data=data[n] if n < len(data) else factories.png_bytes(200, 100))
        answers[image.id] = regions
    vendor = factories.make_vendor()
    batch_create(spec=spec, vendor=vendor, name=f"Batch {name}", unit_price=Decimal("0.1"), quantity=len(images))
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    while (task := task_claim_next(annotator=annotator).task) is not None:
        annotation = annotation_create(task=task, annotator=annotator, submit=True, regions=answers[task.image_id])
        review_create(annotation=annotation, reviewer=reviewer, decision="accept")
    return factories.make_snapshot(spec=spec, name=name, created_by=None, ratios=ratios)


def region(points, latex: str) -> dict:
    return {"kind": "quad", "points": points, "latex": latex}


class StubReader:
    """A "model" with known answers: per image (in the order seen) the quads it detects, and
    per truth crop (in order) the LaTeX it reads. Records the batches it was given."""

    def __init__(self, detections: Sequence[Sequence] = (), readings: Sequence[str] = (), on_detect=None,
                 confidences: Sequence[float] = ()):
        self.detections = list(detections)
        self.readings = list(readings)
        self.confidences = list(confidences)  # per reading, in order; none: the model gives none
        self.on_detect = on_detect
        self.detect_batches: list[int] = []
        self.recognize_batches: list[int] = []

    def detect(self, images, *, with_masks: bool = False):
        self.detect_batches.append(len(images))
        if self.on_detect:
            self.on_detect()
        out = []
        for _ in images:
            quads = self.detections.pop(0) if self.detections else []
            out.append([SimpleNamespace(quad=np.asarray(q, np.float32)) for q in quads])
        return out

    def recognize(self, crops):
        self.recognize_batches.append(len(crops))
        return [SimpleNamespace(latex=self.readings.pop(0),
                                **({"confidence": self.confidences.pop(0)} if self.confidences else {}))
                for _ in crops]
