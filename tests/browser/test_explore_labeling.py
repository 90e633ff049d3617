"""Found by an exploratory pass over the labeling page:

- Saving a draft right after typing showed "Saved on the server" for a moment, then the pending
  browser copy (written 0.7 s after the last keystroke) replaced it with "Kept in this browser"
  and stayed in localStorage, so reloading the page announced "Restored your unsaved work" for
  work that was saved.
- A box dragged beside the photo was clamped onto the photo's edge and kept as a region of no
  area; saving then failed with GEOS's "Too few points in geometry component[0 19.05]".
"""
from __future__ import annotations

import re

import pytest

from common import roles
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

W, H = 300, 600  # a narrow photo: wide margins beside it at the "fit" zoom


@pytest.fixture
def setup():
    vendor = factories.make_vendor()
    spec = factories.make_spec()
    factories.make_image(spec=spec, data=factories.png_bytes(W, H, seed=3), filename="page.png")
    factories.make_batch(spec, vendor, images=0, quantity=1, name="Narrow photos")
    return {"annotator": factories.make_user(roles.ANNOTATOR, vendor=vendor)}


def open_task(page) -> int:
    page.goto("/work/")
    page.click("#start-labeling")
    page.wait_for_url(re.compile(r"/label/\d+/"))
    page.wait_for_selector("#label-app[data-ready='1']")
    return int(re.search(r"/label/(\d+)/", page.url).group(1))


def to_screen(page, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#canvas").bounding_box()
    sx, sy = page.evaluate("([x, y]) => window.labeler.imageToScreen(x, y)", [x, y])
    return box["x"] + sx, box["y"] + sy


def drag(page, a, b):
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=3)
    page.mouse.move(*b, steps=3)
    page.mouse.up()


def test_saved_right_after_typing_stays_saved_and_is_not_restored_as_unsaved(browser_page, setup):
    page = browser_page(setup["annotator"])
    task = open_task(page)
    drag(page, to_screen(page, 40, 100), to_screen(page, 200, 160))
    assert page.locator("#region-list li").count() == 1
    page.fill("#latex-input", r"x^{2}")
    page.click("#btn-save")  # well within the 0.7 s after the keystroke
    page.wait_for_function("() => document.querySelector('#save-state').textContent.includes('Saved on the server')")
    page.wait_for_timeout(1200)  # past the browser copy's timer
    assert "Saved on the server" in page.locator("#save-state").inner_text()
    assert page.evaluate("k => localStorage.getItem(k)", f"mathset.labeling.task.{task}") is None

    page.reload()
    page.wait_for_selector("#label-app[data-ready='1']")
    assert "Restored your unsaved work" not in page.locator("#messages").inner_text()
    assert page.locator("#region-list li").count() == 1
    assert not page.errors, page.errors


def test_edits_made_while_a_save_is_on_its_way_stay_unsaved(browser_page, setup):
    page = browser_page(setup["annotator"])
    task = open_task(page)
    drag(page, to_screen(page, 40, 100), to_screen(page, 200, 160))
    page.fill("#latex-input", "x")
    # Hold the save's request until a further edit was made.
    held = []
    page.route("**/api/v1/annotations/", lambda route: held.append(route))
    page.click("#btn-save")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.includes('Saving')")
    page.fill("#latex-input", "x+1")
    page.wait_for_timeout(100)
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_function("() => document.querySelector('#save-state').textContent.includes('Saved on the server')")
    page.wait_for_timeout(1000)
    kept = page.evaluate("k => localStorage.getItem(k)", f"mathset.labeling.task.{task}")
    assert kept and '"x+1"' in kept  # the later edit is kept in the browser until the next save
    assert "later changes not yet" in page.locator("#save-state").inner_text() or \
        "Kept in this browser" in page.locator("#save-state").inner_text()


def test_a_box_dragged_beside_the_photo_is_not_kept(browser_page, setup):
    page = browser_page(setup["annotator"])
    open_task(page)
    assert page.locator("#tool-hint").inner_text().startswith("Rectangle")
    a, b = to_screen(page, -120, 40), to_screen(page, -20, 120)
    assert a[0] > page.locator("#canvas").bounding_box()["x"]  # still on the canvas, left of the photo
    drag(page, a, b)
    assert page.locator("#region-list li").count() == 0
    assert "outside the photo" in page.locator("#messages").inner_text()

    # Four quad clicks beside the photo: the same.
    page.locator("#canvas").focus()
    page.keyboard.press("q")
    for x, y in [(-120, 40), (-20, 40), (-20, 120), (-120, 120)]:
        page.mouse.click(*to_screen(page, x, y))
    assert page.locator("#region-list li").count() == 0

    # A box that reaches onto the photo is kept, clamped to its edge.
    page.keyboard.press("r")
    drag(page, to_screen(page, -40, 40), to_screen(page, 120, 120))
    assert page.locator("#region-list li").count() == 1
    assert not page.errors, page.errors
