"""Defects found by exploring the labeling page as an annotator: the page's one-key shortcuts
must leave Space, Delete and Backspace to a focused control, panning with Space must keep the
corners of a quad being clicked, and a second tab saving a fresh task is offered the conflict
choice instead of a 400 it cannot get past. On the review page, reasons ticked before the
reviewer settles on Accept are not stored with the acceptance."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.models import Review
from tests.browser.test_labeling_ui import (  # noqa: F401 (labeling_setup is a fixture)
    drag,
    labeling_setup,
    open_next_task,
    press,
    saved_annotation,
    start_labeling,
    to_screen,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def draw_box(page, x0=80, y0=68, x1=330, y1=110):
    press(page, "r")
    drag(page, to_screen(page, x0, y0), to_screen(page, x1, y1))


def regions(page) -> int:
    return page.evaluate("() => window.labeler.state.regions.length")


def test_space_ticks_a_focused_checkbox_presses_a_button_and_opens_details(browser_page, labeling_setup):  # noqa: F811
    page, _ = start_labeling(browser_page, labeling_setup)
    draw_box(page)
    draw_box(page, y0=228, y1=270)
    assert regions(page) == 2

    page.locator("#flag-illegible").focus()
    page.keyboard.press(" ")
    assert page.is_checked("#flag-illegible")

    page.locator("#region-list button").nth(0).focus()
    page.keyboard.press(" ")
    assert page.evaluate("() => window.labeler.state.selected") == 0

    page.locator("#guide-panel summary").focus()
    page.keyboard.press(" ")
    assert page.evaluate("() => document.querySelector('#guide-panel').open")
    assert not page.errors, page.errors


def test_backspace_on_a_focused_checkbox_keeps_the_region(browser_page, labeling_setup):  # noqa: F811
    page, _ = start_labeling(browser_page, labeling_setup)
    draw_box(page)
    page.locator("#flag-cutoff").focus()
    page.keyboard.press("Backspace")
    page.keyboard.press("Delete")
    assert regions(page) == 1
    press(page, "Delete")  # from the image it still deletes the selected region
    assert regions(page) == 0
    assert not page.errors, page.errors


def test_panning_with_space_keeps_the_corners_of_a_quad_being_clicked(browser_page, labeling_setup):  # noqa: F811
    page, _ = start_labeling(browser_page, labeling_setup)
    press(page, "q")
    page.mouse.click(*to_screen(page, 80, 228))
    page.mouse.click(*to_screen(page, 330, 228))
    page.keyboard.down(" ")
    a = to_screen(page, 500, 400)
    drag(page, a, (a[0] - 40, a[1] - 30))
    page.keyboard.up(" ")
    assert page.evaluate("() => window.labeler.state.quadDraft.length") == 2
    page.mouse.click(*to_screen(page, 330, 270))
    page.mouse.click(*to_screen(page, 80, 270))
    assert regions(page) == 1
    points = page.evaluate("() => window.labeler.payload()[0].points")
    for (x, y), (wx, wy) in zip(points, [(80, 228), (330, 228), (330, 270), (80, 270)], strict=True):
        assert abs(x - wx) <= 1 and abs(y - wy) <= 1, points
    assert not page.errors, page.errors


def test_a_second_tab_saving_a_fresh_task_is_offered_the_conflict_choice(browser_page, labeling_setup):  # noqa: F811
    s = labeling_setup
    first = browser_page(s["annotator"])
    task_id = open_next_task(first)
    second = browser_page(s["annotator"])
    second.goto(f"/label/{task_id}/")
    second.wait_for_selector("#label-app[data-ready='1']")

    draw_box(first)
    first.fill("#latex-input", "x^{2}")
    first.click("#btn-save")
    first.wait_for_function("() => document.querySelector('#save-state').textContent.includes('version 1')")

    draw_box(second, y0=228, y1=270)
    second.fill("#latex-input", "y_{1}")
    second.click("#btn-save")
    second.wait_for_selector("text=Keep mine (save over version 1)")
    second.click("text=Keep mine (save over version 1)")
    second.wait_for_function("() => document.querySelector('#save-state').textContent.includes('version 2')")
    ann = saved_annotation(s["annotator"], task_id)
    assert ann["version"] == 2 and [r["latex"] for r in ann["regions"]] == ["y_{1}"]
    assert not first.errors and not second.errors, (first.errors, second.errors)


def test_reasons_ticked_before_choosing_accept_are_not_stored_with_the_acceptance(browser_page, labeling_setup):  # noqa: F811
    s = labeling_setup
    api = APIClient()
    api.force_authenticate(s["annotator"])
    task = api.post("/api/v1/tasks/next/").json()["task"]
    r = api.post("/api/v1/annotations/", {"task": task["id"], "submit": True, "regions": [
        {"kind": "quad", "points": [[80, 68], [330, 68], [330, 110], [80, 110]], "latex": "x^{2}+0=y_{0}"}]}, format="json")
    assert r.status_code == 201, r.content

    page = browser_page(s["reviewer"])
    page.goto("/review/")
    page.click("#review-next")
    page.wait_for_selector("#review-app[data-ready='1']")
    page.check("#reason-wrong_region")  # first thought: reject; then the reviewer looks again
    page.check("#decision-accept")
    page.click("#btn-send")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.startsWith('Sent')")
    review = Review.objects.get(annotation_id=r.json()["id"])
    assert review.decision == "accept" and review.reasons == []
    assert not page.errors, page.errors


def test_work_kept_in_the_browser_on_an_older_version_is_offered_not_dropped(browser_page, labeling_setup):  # noqa: F811
    """Unsaved work kept in this browser while the server moved on (another tab saved): on reload
    the page shows the server's version and offers the kept copy instead of dropping it silently."""
    s = labeling_setup
    page, task_id = start_labeling(browser_page, s)
    draw_box(page, y0=228, y1=270)
    page.fill("#latex-input", "y_{1}")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.startsWith('Kept in this browser')")
    api = APIClient()  # meanwhile another tab saves version 1 of this task
    api.force_authenticate(s["annotator"])
    r = api.post("/api/v1/annotations/", {"task": task_id, "regions": [
        {"kind": "quad", "points": [[80, 68], [330, 68], [330, 110], [80, 110]], "latex": "x^{2}"}]}, format="json")
    assert r.status_code == 201, r.content

    page.reload()
    page.wait_for_selector("#label-app[data-ready='1']")
    assert page.evaluate("() => window.labeler.state.regions.map((r) => r.latex)") == ["x^{2}"]  # the server's
    page.click("text=Restore my copy (save over version 1)")
    assert page.evaluate("() => window.labeler.state.regions.map((r) => r.latex)") == ["y_{1}"]
    page.click("#btn-save")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.includes('version 2')")
    ann = saved_annotation(s["annotator"], task_id)
    assert ann["version"] == 2 and [r["latex"] for r in ann["regions"]] == ["y_{1}"]
    page.keyboard.press("Control+z")  # the restore is one undo step: back to the server's version
    assert page.evaluate("() => window.labeler.state.regions.map((r) => r.latex)") == ["x^{2}"]
    assert not page.errors, page.errors
