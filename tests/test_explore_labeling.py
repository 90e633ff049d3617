"""Found by an exploratory pass over the pages: a quad collapsed onto one line is refused with a
reason an annotator can act on, and My work no longer loads the annotator's whole history."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common import roles
from common.geometry import GeometryError, validate_quad
from labeling import services
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("points", [
    [[0, 19.05], [0, 19.05], [0, 60], [0, 60]],  # a box dragged beside the photo, clamped onto its left edge
    [[10, 10], [20, 10], [30, 10], [40, 10]],
])
def test_a_quad_on_one_line_is_refused_as_having_no_area_not_with_geos_wording(points):
    with pytest.raises(GeometryError) as exc:
        validate_quad(points, width=100, height=100)
    message = str(exc.value)
    assert "no area" in message
    assert "geometry component" not in message and "Too few points" not in message


def test_a_bow_tie_is_still_refused_as_not_simple():
    with pytest.raises(GeometryError, match="not simple"):
        validate_quad([[10, 10], [90, 40], [90, 10], [10, 40]], width=100, height=100)


def test_the_api_says_why_a_collapsed_rectangle_is_refused(vendor, spec):
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_batch(spec, vendor, images=1)
    task = services.task_claim_next(annotator=annotator).task
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(annotator)
    r = api.post("/api/v1/annotations/", {"task": task.id, "regions": [
        {"kind": "quad", "points": [[0, 19.05], [0, 19.05], [0, 60], [0, 60]], "latex": "x"}]}, format="json")
    assert r.status_code == 400
    assert "no area" in str(r.json()), r.json()


def test_my_work_reads_only_the_recent_tasks_from_the_database(client, vendor, spec, monkeypatch):
    from labeling import views

    monkeypatch.setattr(views, "RECENT_TASKS", 2)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_batch(spec, vendor, images=4)
    made = []
    for _ in range(4):
        task = services.task_claim_next(annotator=annotator).task
        made.append(services.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()]))
    client.force_login(annotator)
    with CaptureQueriesContext(connection) as ctx:
        page = client.get("/work/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('href="/label/') == 2  # the two most recent tasks
    assert f'href="/label/{made[-1].task_id}/"' in html and f'href="/label/{made[0].task_id}/"' not in html
    # Every read of the annotations table is cut (LIMIT) or filtered to the rejected ones:
    # none fetches the annotator's whole history with its regions and reviews.
    reads = [q["sql"] for q in ctx.captured_queries
             if 'FROM "labeling_annotation"' in q["sql"] and q["sql"].lstrip().upper().startswith("SELECT")]
    assert reads
    unbounded = [sql for sql in reads if "LIMIT" not in sql.upper() and "= 'rejected'" not in sql]
    assert not unbounded, unbounded
