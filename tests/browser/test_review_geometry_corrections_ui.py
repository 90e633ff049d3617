"""The review page's geometry corrections: the reviewer selects a quad on the photo, drags one
of its corners to where the formula really ends, and accepts with corrections in one step; the
moved corners are stored as the reviewer's version, and the annotator is told they moved."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.models import Annotation, Region, Review
from tests.browser.test_labeling_ui import labeling_setup  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

FIRST = [[80.0, 68.0], [330.0, 68.0], [330.0, 110.0], [80.0, 110.0]]
SECOND = [[80.0, 228.0], [300.0, 228.0], [300.0, 270.0], [80.0, 270.0]]  # its right end cut off


def _on_screen(page, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#canvas").bounding_box()
    sx, sy = page.evaluate("([x, y]) => window.reviewer.viewer.view.toScreen(x, y)", [x, y])
    return box["x"] + sx, box["y"] + sy


def test_reviewer_drags_a_corner_and_accepts_in_one_step(browser_page, labeling_setup):  # noqa: F811
    s = labeling_setup
    api = APIClient()
    api.force_authenticate(s["annotator"])
    task = api.post("/api/v1/tasks/next/").json()["task"]
    r = api.post("/api/v1/annotations/", {"task": task["id"], "submit": True, "regions": [
        {"kind": "quad", "points": FIRST, "latex": "a+b"},
        {"kind": "quad", "points": SECOND, "latex": "x^{2}+1"}]}, format="json")
    assert r.status_code == 201, r.content

    page = browser_page(s["reviewer"])
    page.goto("/review/")
    page.click("#review-next")
    page.wait_for_selector("#review-app[data-ready='1']")
    # Select region 2 by clicking inside it on the photo: its corner handles appear.
    page.mouse.click(*_on_screen(page, 150, 250))
    page.wait_for_function("() => window.reviewer.state.selected === 1")
    # Drag its bottom-right corner 30 px right and 10 px down (image pixels).
    start, end = _on_screen(page, 300, 270), _on_screen(page, 330, 280)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=2)
    page.mouse.move(*end, steps=2)
    page.mouse.up()
    page.wait_for_selector("#moved-1:not([hidden])")
    scale = page.evaluate("() => window.reviewer.viewer.view.scale")  # read before Send opens the next page
    assert page.is_checked("#decision-correct")  # moving a corner chose "Accept with corrections"
    assert page.inner_text("#corrections-count") == "1 region(s) corrected"
    here = page.url
    page.click("#btn-send")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.startsWith('Sent')")
    # The page then takes the next one by a POST: wait for it, so no request of this page still
    # writes while the test reads (SQLite's in-memory test database locks the table).
    page.wait_for_url(lambda url: url != here)
    page.wait_for_load_state()

    review = Review.objects.get(annotation_id=r.json()["id"])
    assert review.decision == "accept" and review.latex_corrections == {}
    moved = review.geometry_corrections
    assert list(moved) == ["1"]  # region 2 only
    old, new = moved["1"]
    assert old == SECOND
    # The dragged corner landed near where it was dropped (a screen pixel is about 1/scale image
    # pixels); the other three stayed put.
    assert abs(new[2][0] - 330) <= 2 / scale + 0.5 and abs(new[2][1] - 280) <= 2 / scale + 0.5, new
    assert [new[0], new[1], new[3]] == [SECOND[0], SECOND[1], SECOND[3]]
    annotation = Annotation.objects.get(pk=review.annotation_id)
    assert annotation.version == 2 and annotation.current.author_id == s["reviewer"].pk
    stored = list(Region.objects.filter(version=annotation.current).order_by("index").values_list("points", "latex"))
    assert stored == [(FIRST, "a+b"), (new, "x^{2}+1")]
    assert not page.errors, page.errors

    mine = browser_page(s["annotator"])  # the annotator's labeling page says the corners moved
    mine.goto(f"/label/{task['id']}/")
    mine.wait_for_selector("#label-app[data-ready='1']")
    assert mine.inner_text("#geometry-corrections li").strip() == "region 2: corners moved by the reviewer"
    assert mine.is_hidden("#corrections")  # no LaTeX was corrected
    assert not mine.errors, mine.errors
