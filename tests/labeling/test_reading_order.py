"""A region's quad keeps its reading order when stored: the first point is the formula's
top-left as read (an upside-down formula's is at the bottom-right of the image), then
clockwise on screen. Counter-clockwise input is turned clockwise around that first point."""
from __future__ import annotations

import pytest

from labeling.models import Region, Task
from labeling.prelabel import regions_from_prediction
from labeling.services import regions_clean, task_set_gold
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db

# A formula photographed upside down in a 200x100 image: its top-left as read is the
# image's bottom-right corner of the box, and its reading direction runs right to left.
UPSIDE_DOWN = [[90.0, 40.0], [10.0, 40.0], [10.0, 10.0], [90.0, 10.0]]
# The same formula turned by 90 degrees clockwise: it reads downwards, its top-left is at the top-right.
TURNED_90 = [[90.0, 10.0], [90.0, 80.0], [60.0, 80.0], [60.0, 10.0]]


def region(points, **kw) -> dict:
    return {"kind": "quad", "points": points, "latex": "x^{2}", **kw}


def claim(api) -> int:
    r = api.post("/api/v1/tasks/next/")
    assert r.status_code == 200, r.content
    return r.json()["task"]["id"]


@pytest.mark.parametrize("points", [UPSIDE_DOWN, TURNED_90])
def test_an_annotation_keeps_the_start_corner_it_was_given(batch, annotator_api, points):
    task_id = claim(annotator_api)
    r = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [region(points)]})
    assert r.status_code == 201, r.content
    assert r.json()["regions"][0]["points"] == points
    r = annotator_api.post(f"/api/v1/annotations/{r.json()['id']}/submit/", {"version": 1})
    assert r.status_code == 200, r.content
    stored = Region.objects.get(version__annotation__task_id=task_id)
    assert stored.points == points  # the hot path (common.rawsql) stores what regions_clean returned


def test_a_counter_clockwise_quad_is_made_clockwise_around_its_first_point(batch, annotator_api):
    p0, p1, p2, p3 = UPSIDE_DOWN
    task_id = claim(annotator_api)
    r = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [region([p0, p3, p2, p1])]})
    assert r.status_code == 201, r.content
    assert r.json()["regions"][0]["points"] == UPSIDE_DOWN


@pytest.mark.parametrize("points", [
    [[10, 10], [90, 40], [90, 10], [10, 40]],      # a bow tie
    [[10, 10], [20, 10], [30, 10], [40, 10]],      # no area
    [[90, 40], [10, 40], [10, 10]],                # three corners
    [[900, 40], [10, 40], [10, 10], [90, 10]],     # outside the image
])
def test_bad_quads_are_still_refused(batch, annotator_api, points):
    task_id = claim(annotator_api)
    r = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [region(points)]})
    assert r.status_code == 400, r.content
    assert "regions[0].points" in r.json(), r.json()


def test_predictions_keep_the_orienters_start_corner(batch, model_team, annotator_api):
    task = batch.tasks.order_by("id").first()
    r = client_for(model_team).post("/api/v1/predictions/bulk/", {
        "model_name": "formula-det", "model_version": "1", "items": [
            {"image": task.image_id, "confidence": 0.1, "regions": [region(UPSIDE_DOWN, confidence=0.5)]}]})
    assert r.status_code == 201, r.content
    task.refresh_from_db()
    assert task.image.predictions.get().regions[0]["points"] == UPSIDE_DOWN


def test_the_pipeline_hook_passes_the_orienters_order_through(batch):
    class Prediction:  # what pipeline.Prediction carries: quads rolled by the orienter
        regions = [{"points": [[205.5, 40.0], [10.0, 40.0], [10.0, 10.0], [90.0, 10.0]], "score": 0.9}]

    image = batch.tasks.first().image
    out = regions_from_prediction(Prediction(), width=image.width, height=image.height)
    assert out[0]["points"][0] == [image.width - 1.0, 40.0]  # clipped, still first
    assert regions_clean(regions=out, image=image, with_confidence=True)[0]["points"] == out[0]["points"]


def test_a_gold_answer_keeps_its_start_corner(batch):
    task = batch.tasks.first()
    task_set_gold(task=task, answer={"latex": "x^{2}", "regions": [region(UPSIDE_DOWN)]})
    assert Task.objects.get(pk=task.pk).gold_answer["regions"][0]["points"] == UPSIDE_DOWN
