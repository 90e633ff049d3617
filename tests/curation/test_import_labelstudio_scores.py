"""import_labelstudio: a model's scores in a Label Studio export become confidences.

Label Studio's ML backends put a ``score`` on a prediction and on each of its results. A region's
confidence is the lowest score of its shape and text area; the image's is the prediction's own score,
else the lowest of its regions' (what "lowest confidence first" orders batches by). A score that is
not a number from 0 to 1 is refused, naming it, with nothing stored.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from django.core.management import CommandError

from curation.models import Image
from labeling.models import Prediction
from labeling.services import batch_candidate_images
from tests.conftest import stored_files
from tests.curation import test_import_labelstudio as base
from tests.curation.test_import_labelstudio import H, W, brush, ls_task, rectangle, run

pytestmark = pytest.mark.django_db

images = base.images  # the image files fixture, a.png to c.png


def scored(results: list[dict], *scores: float | None) -> list[dict]:
    """`results` (a shape and its text area) with the given scores, in order (None: no score)."""
    return [{**r, "score": s} if s is not None else r for r, s in zip(results, scores, strict=True)]


def prediction_task(url: str, result: list[dict], *, score=None, id_=1) -> dict:
    task = ls_task(url, result, key="predictions", id=id_)
    if score is not None:
        task["predictions"][0]["score"] = score
    return task


def test_result_scores_become_region_confidences_and_the_lowest_is_the_images(tmp_path, images, spec, source):
    tasks = [
        prediction_task("a.png", scored(rectangle("r", 1, 2, 30, 20, latex="x"), 0.9, 0.6)
                        + scored(rectangle("s", 50, 2, 30, 20, latex="y"), 0.8, None), id_=1),
        prediction_task("b.png", scored(rectangle("r", 1, 2, 30, 20, latex="z"), 0.3, None), id_=2),
        prediction_task("c.png", rectangle("r", 1, 2, 30, 20, latex="w"), id_=3),     # no scores at all
    ]
    run(tmp_path, images, spec, source, tasks)
    preds = {p.image.original_filename: p for p in Prediction.objects.filter(image__spec=spec)}
    # The region is as sure as its least sure part: the shape said 0.9, its text 0.6.
    assert [r.get("confidence") for r in preds["a.png"].regions] == [0.6, 0.8]
    assert preds["a.png"].confidence == 0.6
    assert [r.get("confidence") for r in preds["b.png"].regions] == [0.3]
    assert preds["b.png"].confidence == 0.3
    assert "confidence" not in preds["c.png"].regions[0] and preds["c.png"].confidence is None
    # A batch picks the least sure first; an image no score was given for comes last.
    order = [im.original_filename for im in batch_candidate_images(spec=spec, quantity=3)]
    assert order == ["b.png", "a.png", "c.png"]


def test_a_predictions_own_score_is_the_images_confidence(tmp_path, images, spec, source):
    run(tmp_path, images, spec, source, [
        prediction_task("a.png", scored(rectangle("r", 1, 2, 30, 20, latex="x"), 0.2, None), score=0.75)])
    pred = Prediction.objects.get()
    assert pred.confidence == 0.75 and pred.regions[0]["confidence"] == 0.2


def test_our_exports_polygon_and_brush_pair_takes_the_lower_score(tmp_path, images, spec, source):
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[10:30, 20:70] = 1
    pair = (scored(rectangle("f", 10, 10, 25, 20, latex="a"), 0.7, None)
            + scored(brush("f-mask", mask, latex="a"), 0.4, None))
    run(tmp_path, images, spec, source, [prediction_task("a.png", pair)])
    (region,) = Prediction.objects.get().regions
    assert region["kind"] == "mask" and region["confidence"] == 0.4


def test_an_annotations_scores_are_kept_when_it_is_imported_as_a_prediction(tmp_path, images, spec, source):
    run(tmp_path, images, spec, source, [ls_task("a.png", scored(rectangle("r", 1, 2, 3, 4), 0.5, None))])
    assert Prediction.objects.get().regions[0]["confidence"] == 0.5


def test_a_truth_import_ignores_scores(tmp_path, images, spec, source):
    run(tmp_path, images, spec, source, [
        prediction_task("a.png", scored(rectangle("r", 5, 10, 50, 40, latex="e"), 0.5, 0.5), score=0.5)],
        "--as", "truth")
    image = Image.objects.get(spec=spec)
    assert image.truth_latex == "e" and not Prediction.objects.exists()


@pytest.mark.parametrize(("score", "shown"), [
    (95, "95 is not a confidence"),                 # meant as percent
    (-0.1, "-0.1 is not a confidence"),
    ("0.9", "'0.9' is not a confidence"),
    (True, "True is not a confidence"),
    pytest.param(10**400, "a huge number is not a confidence", id="400-digits"),
    (math.inf, "inf is not a confidence"),
    ([0.5], r"\[0.5\] is not a confidence"),
])
def test_a_result_score_that_is_not_a_confidence_is_refused_naming_it(tmp_path, images, spec, source, score, shown):
    before = stored_files()
    tasks = [prediction_task("b.png", rectangle("r", 1, 2, 3, 4)),
             prediction_task("a.png", scored(rectangle("r", 1, 2, 3, 4), None, score), id_=2)]
    with pytest.raises(CommandError, match=rf"tasks\[1\]\.predictions\[0\]\.result\[1\]\.score: {shown}"):
        run(tmp_path, images, spec, source, tasks)
    assert not Image.objects.exists() and not Prediction.objects.exists()
    assert stored_files() == before


@pytest.mark.parametrize("score", [95, -1, "high", math.nan])
def test_a_prediction_score_that_is_not_a_confidence_is_refused_naming_it(tmp_path, images, spec, source, score):
    # It was dropped without a word: the images then sorted as if no model had seen them.
    with pytest.raises(CommandError, match=r"tasks\[0\]\.predictions\[0\]\.score: .* give a number from 0 to 1"):
        run(tmp_path, images, spec, source, [prediction_task("a.png", rectangle("r", 1, 2, 3, 4), score=score)])
    assert not Image.objects.exists() and not Prediction.objects.exists()


def test_a_null_score_is_no_score(tmp_path, images, spec, source):
    task = prediction_task("a.png", scored(rectangle("r", 1, 2, 3, 4), None, None))
    task["predictions"][0]["score"] = None
    task["predictions"][0]["result"][0]["score"] = None
    run(tmp_path, images, spec, source, [task])
    pred = Prediction.objects.get()
    assert pred.confidence is None and "confidence" not in pred.regions[0]


# --- predictions listed by id only (Label Studio's JSON export) -----------------------------

def _ls_prediction(pid: int, task_id: int, latex: str, score: float | None = None) -> dict:
    """A prediction as Label Studio's GET /api/predictions/?project=ID gives it."""
    return {"id": pid, "task": task_id, "project": 3, "model_version": "det-1", "score": score,
            "result": rectangle("r", 1, 2, 30, 20, latex=latex), "created_at": "2026-05-01T00:00:00Z"}


def _by_id_tasks() -> list[dict]:
    return [{"id": 41, "data": {"image": "/data/upload/3/a.png"}, "annotations": [], "predictions": [7, 9]},
            {"id": 42, "data": {"image": "/data/upload/3/b.png"}, "annotations": [], "predictions": [8]}]


def test_predictions_listed_by_id_are_read_from_the_predictions_file(tmp_path, images, spec, source):
    listed = tmp_path / "predictions.json"
    listed.write_text(json.dumps({"results": [       # a page of the API's answer
        _ls_prediction(7, 41, "old", 0.9) | {"created_at": "2026-04-01T00:00:00Z"},
        _ls_prediction(9, 41, "new", 0.4), _ls_prediction(8, 42, "b", None),
        _ls_prediction(99, 77, "another task's")]}), encoding="utf-8")
    out = run(tmp_path, images, spec, source, _by_id_tasks(), "--predictions", str(listed), "-v", "2")
    assert "prediction 9" in out and "prediction 8" in out
    got = {p.image.original_filename: (p.regions[0]["latex"], p.confidence)
           for p in Prediction.objects.filter(image__spec=spec)}
    assert got == {"a.png": ("new", 0.4), "b.png": ("b", None)}   # the latest of task 41's two


def test_predictions_by_id_without_the_file_are_refused_saying_how_to_give_them(tmp_path, images, spec, source):
    with pytest.raises(CommandError, match=r"tasks\[0\]\.predictions: predictions given by id only .*--predictions"):
        run(tmp_path, images, spec, source, _by_id_tasks())
    assert not Image.objects.exists()


@pytest.mark.parametrize(("listed", "message"), [
    ([_ls_prediction(7, 41, "x"), _ls_prediction(8, 42, "b")], r"tasks\[0\]\.predictions\[1\]: prediction 9 is not in"),
    ([_ls_prediction(7, 41, "x"), _ls_prediction(9, 42, "x"), _ls_prediction(8, 42, "b")],
     r"tasks\[0\]\.predictions\[1\]: prediction 9 belongs to task 42, not this task \(41\)"),
    ([_ls_prediction(7, 41, "x"), _ls_prediction(7, 41, "y")], r"predictions\[1\]\.id: prediction 7 is listed twice"),
    ([{"task": 41, "result": []}], r"predictions\[0\]: must be a prediction object with its numeric \"id\""),
    ({"count": 3}, r"predictions: must be a list of Label Studio predictions"),
])
def test_a_predictions_file_that_does_not_fit_is_refused_naming_the_problem(tmp_path, images, spec, source,
                                                                            listed, message):
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(listed), encoding="utf-8")
    before = stored_files()
    with pytest.raises(CommandError, match=message):
        run(tmp_path, images, spec, source, _by_id_tasks(), "--predictions", str(path))
    assert not Image.objects.exists() and not Prediction.objects.exists()
    assert stored_files() == before


def test_an_unreadable_predictions_file_is_named(tmp_path, images, spec, source):
    path = tmp_path / "predictions.json"
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(CommandError, match=r"--predictions: .*predictions\.json: cannot read Label Studio predictions"):
        run(tmp_path, images, spec, source, _by_id_tasks(), "--predictions", str(path))
