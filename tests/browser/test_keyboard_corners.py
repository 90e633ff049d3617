"""Moving a quad's corners from the keyboard, on the labeling and the review page: 1-4 pick the
active corner (drawn highlighted), the arrow keys move it by one image pixel (Shift: 10) in the
direction it appears to move on screen, whatever the view's zoom and rotation, clamped to the
photo like a drag; undo takes the moves back one key press at a time, the review page marks the
region corrected as a drag does, and a live status line says where the corner now is."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from rest_framework.test import APIClient

from labeling.models import Region, Review
from tests.browser.test_labeling_ui import H, W, labeling_setup, saved_annotation  # noqa: F401 (a fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                       reason="/usr/bin/chromium is absent: install Debian's chromium to run browser tests"),
]

FIRST = [[80.0, 68.0], [330.0, 68.0], [330.0, 110.0], [80.0, 110.0]]
SECOND = [[80.0, 228.0], [330.0, 228.0], [330.0, 270.0], [80.0, 270.0]]
EDGE = [[850.0, 500.0], [float(W), 500.0], [float(W), float(H)], [850.0, float(H)]]  # corner 3 on the photo's corner


def draft_with(setup, quads) -> int:
    """The annotator's next task, with a draft holding `quads` (exact image pixels): its id."""
    api = APIClient()
    api.force_authenticate(setup["annotator"])
    task = api.post("/api/v1/tasks/next/").json()["task"]
    r = api.post("/api/v1/annotations/", {"task": task["id"], "regions": [
        {"kind": "quad", "points": q, "latex": f"x_{{{i}}}"} for i, q in enumerate(quads)]}, format="json")
    assert r.status_code == 201, r.content
    return task["id"]


def open_label(browser_page, setup, quads):
    task_id = draft_with(setup, quads)
    page = browser_page(setup["annotator"])
    page.goto(f"/label/{task_id}/")
    page.wait_for_selector("#label-app[data-ready='1']")
    return page, task_id


def points(page, i: int) -> list:
    return page.evaluate("(i) => window.labeler.state.regions[i].points", i)


def screen_of(page, x: float, y: float) -> list:
    return page.evaluate("([x, y]) => window.labeler.imageToScreen(x, y)", [x, y])


def to_region_2_by_keyboard(page):
    """Keyboard only: from the photo Tab selects the next region (and opens its LaTeX field), Escape
    comes back to the photo."""
    page.locator("#canvas").focus()
    assert page.evaluate("() => window.labeler.state.selected") == 0
    page.keyboard.press("Tab")
    page.wait_for_function("() => window.labeler.state.selected === 1")
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.activeElement.id === 'canvas'")


def save(page):
    page.click("#btn-save")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.includes('Saved on the server')")


def yellow_near(page, sx: float, sy: float, radius: int = 16) -> int:
    """How many highlight-yellow pixels the page shows within `radius` of canvas point (sx, sy)."""
    box = page.locator("#canvas").bounding_box()
    page.wait_for_function("() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))")
    shot = np.asarray(PILImage.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
    x, y = int(box["x"] + sx), int(box["y"] + sy)
    part = shot[max(0, y - radius):y + radius, max(0, x - radius):x + radius]
    return int(((part[..., 0] > 220) & (part[..., 1] > 180) & (part[..., 2] < 80)).sum())


def test_label_page_moves_a_corner_by_image_pixels_from_the_keyboard(browser_page, labeling_setup):  # noqa: F811
    s = labeling_setup
    page, task_id = open_label(browser_page, s, [FIRST, SECOND])
    # The shortcut list names the new keys; the status line is a live region.
    shortcuts = page.locator(".shortcuts").inner_text()
    assert "Pick corner" in shortcuts and "Move the corner" in shortcuts
    assert page.get_attribute("#corner-status", "aria-live") == "polite"

    to_region_2_by_keyboard(page)
    page.keyboard.press("2")
    page.wait_for_function("() => document.querySelector('#corner-status').textContent === 'Corner 2 of region 2: (330, 228)'")
    corner = screen_of(page, 330, 228)
    assert yellow_near(page, *corner) > 20  # the active corner is drawn highlighted
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowDown")
    page.wait_for_function("() => document.querySelector('#corner-status').textContent === 'Corner 2 of region 2: (333, 238)'")
    assert points(page, 1) == [[80, 228], [333, 238], [330, 270], [80, 270]]
    assert points(page, 0) == FIRST
    save(page)
    stored = saved_annotation(s["annotator"], task_id)["regions"]
    assert [r["points"] for r in stored] == [FIRST, [[80, 228], [333, 238], [330, 270], [80, 270]]]
    assert not page.errors, page.errors


def test_arrows_follow_the_screen_when_the_view_is_rotated_and_zoomed(browser_page, labeling_setup):  # noqa: F811
    s = labeling_setup
    page, task_id = open_label(browser_page, s, [FIRST, SECOND])
    to_region_2_by_keyboard(page)
    page.keyboard.press("Shift+R")  # the view turned by 90 degrees
    page.keyboard.press("+")
    page.keyboard.press("+")  # and zoomed in: a key still moves by image pixels
    assert page.evaluate("() => window.labeler.viewer.view.rot") == 1
    assert page.evaluate("() => window.labeler.viewer.view.scale") > 1.2
    page.keyboard.press("2")
    before = screen_of(page, 330, 228)
    page.keyboard.press("ArrowRight")
    x, y = points(page, 1)[1]
    after = screen_of(page, x, y)
    # It moved right on screen, not up or down.
    assert after[0] > before[0] + 1 and abs(after[1] - before[1]) < 1e-6, (before, after)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    before = after = screen_of(page, *points(page, 1)[1])
    page.keyboard.press("Shift+ArrowDown")
    after = screen_of(page, *points(page, 1)[1])
    assert after[1] > before[1] + 1 and abs(after[0] - before[0]) < 1e-6, (before, after)
    # Turned clockwise by 90 degrees, screen right is image up and screen down is image right.
    moved = [[80, 228], [340, 225], [330, 270], [80, 270]]
    assert points(page, 1) == moved
    page.wait_for_function("() => document.querySelector('#corner-status').textContent === 'Corner 2 of region 2: (340, 225)'")
    save(page)
    assert [r["points"] for r in saved_annotation(s["annotator"], task_id)["regions"]] == [FIRST, moved]
    assert not page.errors, page.errors


def test_undo_takes_the_key_moves_back_one_press_at_a_time(browser_page, labeling_setup):  # noqa: F811
    s = labeling_setup
    page, _ = open_label(browser_page, s, [FIRST, SECOND])
    to_region_2_by_keyboard(page)
    page.keyboard.press("2")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowDown")
    assert points(page, 1)[1] == [333, 238]
    assert page.is_enabled("#undo")
    page.keyboard.press("Control+z")
    assert points(page, 1)[1] == [333, 228]
    for _ in range(3):
        page.keyboard.press("Control+z")
    assert points(page, 1) == SECOND
    assert not page.evaluate("() => window.labeler.history.canUndo")  # the moves were the only steps
    page.keyboard.press("Control+y")
    assert points(page, 1)[1] == [331, 228]
    # The active corner is still corner 2 of region 2: the arrows go on moving it.
    page.keyboard.press("ArrowLeft")
    assert points(page, 1)[1] == [330, 228]
    assert not page.errors, page.errors


def test_a_corner_at_the_photo_edge_stays_on_the_photo(browser_page, labeling_setup):  # noqa: F811
    s = labeling_setup
    page, task_id = open_label(browser_page, s, [EDGE])
    page.locator("#canvas").focus()
    page.keyboard.press("3")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Shift+ArrowDown")
    assert points(page, 0) == EDGE  # clamped: nothing moved
    assert not page.evaluate("() => window.labeler.history.canUndo")  # and no empty undo step
    page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("ArrowUp")
    assert points(page, 0)[2] == [W, H - 1]
    page.wait_for_function(f"() => document.querySelector('#corner-status').textContent === 'Corner 3 of region 1: ({W}, {H - 1})'")
    save(page)
    assert saved_annotation(s["annotator"], task_id)["regions"][0]["points"] == [
        [850, 500], [W, 500], [W, H - 1], [850, H]]
    assert not page.errors, page.errors


def test_review_page_nudges_a_corner_and_accepts_with_corrections(browser_page, labeling_setup):  # noqa: F811
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
    shortcuts = page.locator(".shortcuts").inner_text()
    assert "Pick corner" in shortcuts and "Move the corner" in shortcuts
    assert page.get_attribute("#corner-status", "aria-live") == "polite"
    # Keyboard only: region 2's name in the list selects it, 3 picks its bottom-right corner.
    page.locator("#region-1 button").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.reviewer.state.selected === 1")
    page.keyboard.press("3")
    page.wait_for_function("() => document.querySelector('#corner-status').textContent === 'Corner 3 of region 2: (330, 270)'")
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("ArrowUp")
    page.wait_for_function("() => document.querySelector('#corner-status').textContent === 'Corner 3 of region 2: (334, 279)'")
    page.wait_for_selector("#moved-1:not([hidden])")
    assert page.is_checked("#decision-correct")  # as a drag does: moving a corner chose "Accept with corrections"
    assert page.inner_text("#corrections-count") == "1 region(s) corrected"
    here = page.url
    page.click("#btn-send")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.startsWith('Sent')")
    page.wait_for_url(lambda url: url != here)  # the next one opened: no request left running
    page.wait_for_load_state()

    review = Review.objects.get(annotation_id=r.json()["id"])
    assert review.decision == "accept" and review.latex_corrections == {}
    moved = [[80.0, 228.0], [330.0, 228.0], [334.0, 279.0], [80.0, 270.0]]
    assert review.geometry_corrections == {"1": [SECOND, moved]}
    stored = list(Region.objects.filter(version=review.annotation.current).order_by("index").values_list("points", flat=True))
    assert stored == [FIRST, moved]
    assert not page.errors, page.errors
