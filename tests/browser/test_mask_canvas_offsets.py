"""Mask canvases that cover only the mask's bounding box (placed at an offset in the photo):
strokes at and past each edge of the photo, growing left/up and undo/redo, the eraser, a rotated
and zoomed view, saved masks loaded back (labeling and review pages), hit tests. Every mask the
page makes is checked pixel for pixel against the same strokes painted on a photo-sized canvas
(the design before the bounding-box canvases)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from common import rle, roles
from labeling import services
from tests import factories
from tests.browser.test_labeling_ui import press, save_draft, saved_annotation, to_screen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

W, H = 480, 360

# Records every brush/eraser segment the page paints (image pixels, brush radius), to paint the
# same strokes on a photo-sized canvas and encode it with rle.js's whole-image encoder.
RECORD = """() => {
  const L = window.labeler, c = L.viewer.canvas;
  window.strokes = [];
  let last = null;
  const at = (e) => L.screenToImage(...L.viewer.eventPoint(e));
  c.addEventListener("pointerdown", (e) => {
    const s = L.state;
    if (e.button !== 0 || (s.tool !== "brush" && s.tool !== "erase")) return;
    last = at(e);
    window.strokes.push({ from: last, to: last, rad: s.brush / 2 / L.viewer.view.scale, erase: s.tool === "erase", region: s.selected });
  }, true);
  c.addEventListener("pointermove", (e) => {
    if (!last || !L.state.drag) return;
    const p = at(e), s = L.state;
    window.strokes.push({ from: last, to: p, rad: s.brush / 2 / L.viewer.view.scale, erase: s.tool === "erase", region: s.selected });
    last = p;
  }, true);
  c.addEventListener("pointerup", () => { last = null; }, true);
}"""

# The recorded strokes painted on one photo-sized canvas (one mask), encoded whole.
REFERENCE = """async ([w, h]) => {
  const src = document.querySelector("script[type=module]").src.replace(/[^/]*$/, "rle.js");
  const { encodeImageData } = await import(src);
  const c = document.createElement("canvas"); c.width = w; c.height = h;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  for (const s of window.strokes) {
    ctx.save();
    ctx.globalCompositeOperation = s.erase ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = "rgb(230,25,75)";
    ctx.lineWidth = s.rad * 2; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(s.from[0], s.from[1]); ctx.lineTo(s.to[0], s.to[1]); ctx.stroke();
    ctx.beginPath(); ctx.arc(s.to[0], s.to[1], s.rad, 0, Math.PI * 2); ctx.fill();
    ctx.restore();
  }
  return encodeImageData(ctx.getImageData(0, 0, w, h).data, w, h);
}"""


def photo(w: int, h: int) -> bytes:
    img = PILImage.new("RGB", (w, h), (236, 232, 222))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def setup():
    vendor, spec = factories.make_vendor(), factories.make_spec()
    factories.make_image(spec=spec, data=photo(W, H), filename="page.png")
    factories.make_batch(spec, vendor, images=0, quantity=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = services.task_claim_next(annotator=annotator).task
    return {"vendor": vendor, "annotator": annotator, "task": task}


def open_task(browser_page, setup):
    page = browser_page(setup["annotator"])
    page.goto(f"/label/{setup['task'].id}/")
    page.wait_for_selector("#label-app[data-ready='1']")
    page.evaluate(RECORD)
    return page


def stroke(page, points, steps=3):
    page.mouse.move(*to_screen(page, *points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*to_screen(page, *p), steps=steps)
    page.mouse.up()


def payload_masks(page) -> list[np.ndarray]:
    return [rle.decode(r["mask"]) for r in page.evaluate("window.labeler.payload()") if r["kind"] == "mask"]


def reference(page) -> np.ndarray:
    return rle.decode(page.evaluate(REFERENCE, [W, H]))


def canvases(page) -> list[dict]:
    return page.evaluate("""() => window.labeler.state.regions.filter((r) => r.kind === "mask").map((r) => (
        { origin: r.maskOrigin, w: r.maskCanvas.width, h: r.maskCanvas.height, bbox: r.bbox }))""")


def assert_canvases_in_photo(page):
    for c in canvases(page):
        ox, oy = c["origin"]
        assert ox >= 0 and oy >= 0 and ox + c["w"] <= W and oy + c["h"] <= H, c


def reencoded(page) -> list[np.ndarray]:
    """Each mask encoded again from its canvas (as on a save after an edit)."""
    page.evaluate("() => window.labeler.state.regions.forEach((r) => { if (r.kind === 'mask') r.maskDirty = true; })")
    return payload_masks(page)


BACKGROUND = [236, 232, 222, 255]
SCREEN_PIXELS = """([who, pts]) => { const v = window[who].viewer, d = window.devicePixelRatio || 1;
    v.draw(); const ctx = v.canvas.getContext("2d");
    return pts.map(([x, y]) => { const [sx, sy] = v.view.toScreen(x, y);
        return [...ctx.getImageData(Math.round(sx * d), Math.round(sy * d), 1, 1).data]; }); }"""


def test_strokes_past_each_edge_are_clipped_to_the_photo(browser_page, setup):
    page = open_task(browser_page, setup)
    press(page, "b")
    for end in [(-30, 150), (200, -30), (W + 30, 150), (200, H + 30)]:  # left, top, right, bottom
        stroke(page, [(200, 150), end])
        mask, = payload_masks(page)
        assert mask.shape == (H, W)
        assert (mask == reference(page)).all()
        assert_canvases_in_photo(page)
    assert mask[:, 0].any() and mask[0].any() and mask[:, -1].any() and mask[-1].any()
    assert (reencoded(page)[0] == mask).all()  # what the canvas holds, read again
    save_draft(page)
    saved = rle.decode(saved_annotation(setup["annotator"], setup["task"].id)["regions"][0]["mask"])
    assert (saved == mask).all()
    assert not page.errors, page.errors


def test_growing_left_and_up_then_undo_and_redo_restore_each_mask_exactly(browser_page, setup):
    page = open_task(browser_page, setup)
    press(page, "b")
    stroke(page, [(400, 300), (420, 310)])  # near the bottom-right corner
    before, = payload_masks(page)
    origin = canvases(page)[0]["origin"]
    stroke(page, [(400, 300), (60, 40)])  # the canvas grows left and up: its origin moves
    after, = payload_masks(page)
    assert canvases(page)[0]["origin"][0] < origin[0] and canvases(page)[0]["origin"][1] < origin[1]
    assert (after == reference(page)).all()
    press(page, "Control+z")
    assert (payload_masks(page)[0] == before).all() and (reencoded(page)[0] == before).all()
    press(page, "Control+Shift+z")
    assert (payload_masks(page)[0] == after).all() and (reencoded(page)[0] == after).all()
    press(page, "e")  # the eraser across the grown part, then undo/redo of it
    stroke(page, [(60, 40), (400, 300)])
    erased, = payload_masks(page)
    assert erased.sum() < after.sum() and not (erased & ~after).any()
    press(page, "Control+z")
    assert (reencoded(page)[0] == after).all()
    press(page, "Control+y")
    assert (reencoded(page)[0] == erased).all()
    save_draft(page)
    saved = rle.decode(saved_annotation(setup["annotator"], setup["task"].id)["regions"][0]["mask"])
    assert (saved == erased).all()
    page.reload()
    page.wait_for_selector("#label-app[data-ready='1']")
    assert (reencoded(page)[0] == erased).all()
    assert not page.errors, page.errors


def test_a_rotated_and_zoomed_view_paints_under_the_pointer(browser_page, setup):
    page = open_task(browser_page, setup)
    for _ in range(3):
        page.click("#rotate")
    press(page, "0")
    press(page, "b")
    stroke(page, [(100, 300), (10, 340), (-20, 370)])  # off the bottom-left corner
    mask, = payload_masks(page)
    assert mask[300, 100] and mask[340, 10] and mask[H - 1, 0]
    assert (mask == reference(page)).all()
    # zoomed with the wheel in the middle of a stroke that grows the canvas up and left
    page.mouse.move(*to_screen(page, 150, 200))
    page.mouse.down()
    page.mouse.move(*to_screen(page, 120, 170), steps=3)
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(100)
    page.mouse.move(*to_screen(page, 60, 60), steps=4)
    page.mouse.up()
    assert page.evaluate("window.labeler.viewer.view.scale") > 1.5
    mask, = payload_masks(page)
    assert mask[200, 150] and mask[170, 120] and mask[60, 60]
    assert (mask == reference(page)).all()
    assert_canvases_in_photo(page)
    assert not page.errors, page.errors


def loaded_masks() -> list[np.ndarray]:
    a = np.zeros((H, W), np.uint8)  # from x=0, y=0
    a[0:20, 0:30] = 1
    a[25, 5] = 1
    b = np.zeros((H, W), np.uint8)  # to the last row and column
    b[H - 15:H, W - 40:W] = 1
    b[H - 1, W - 60] = 1
    c = np.zeros((H, W), np.uint8)  # a hole at its top-left corner (inside its box, outside the mask)
    c[100:140, 200:260] = 1
    c[100:110, 200:210] = 0
    d = np.zeros((H, W), np.uint8)  # a run from the bottom of one column on at the top of the next
    d[H - 3:H, 300] = 1
    d[0:3, 301] = 1
    return [a, b, c, d]


def test_saved_masks_load_back_in_place_hit_test_and_show_on_the_review_page(browser_page, setup):
    masks = loaded_masks()
    ann = services.annotation_create(task=setup["task"], annotator=setup["annotator"],
                                     regions=[{"kind": "mask", "mask": rle.encode(m), "latex": "x"} for m in masks])
    page = open_task(browser_page, setup)
    got = canvases(page)
    assert got[0]["origin"] == [0, 0] and (got[0]["w"], got[0]["h"]) == (30, 26)
    assert got[1]["origin"] == [W - 60, H - 15] and (got[1]["w"], got[1]["h"]) == (60, 15)
    assert got[2]["origin"] == [200, 100] and (got[2]["w"], got[2]["h"]) == (60, 40)
    assert_canvases_in_photo(page)
    assert all((x == m).all() for x, m in zip(reencoded(page), masks, strict=True))

    press(page, "v")
    for x, y, want in [(10, 10, 0), (W - 5, H - 5, 1), (230, 120, 2), (300, H - 1, 3), (301, 0, 3),
                       (204, 104, -1), (100, 200, -1), (W - 50, H - 20, -1)]:
        page.evaluate("() => { window.labeler.state.selected = -1; }")
        page.mouse.click(*to_screen(page, x + 0.5, y + 0.5))
        assert page.evaluate("window.labeler.state.selected") == want, (x, y)

    inside, outside = [[10.5, 10.5], [W - 5.5, H - 5.5], [230.5, 120.5]], [[204.5, 104.5], [100.5, 200.5], [W - 5.5, H - 30.5]]  # not under a region's number
    shown = page.evaluate(SCREEN_PIXELS, ["labeler", inside + outside])
    assert all(p != BACKGROUND for p in shown[:3]) and all(p == BACKGROUND for p in shown[3:]), shown

    services.annotation_submit(annotation=ann, by=setup["annotator"], version=ann.version)
    rpage = browser_page(factories.make_user(roles.REVIEWER, vendor=setup["vendor"]))
    rpage.goto(f"/review/{ann.id}/")
    rpage.wait_for_selector("#review-app[data-ready='1']")
    assert rpage.evaluate(SCREEN_PIXELS, ["reviewer", inside + outside]) == shown
    assert not page.errors and not rpage.errors, (page.errors, rpage.errors)


def test_a_mask_erased_to_nothing_is_refused_on_save_with_a_message(browser_page, setup):
    # As before the bounding-box canvases: the server refuses an empty mask, the page shows why
    # beside the region and keeps the work in the browser.
    page = open_task(browser_page, setup)
    press(page, "b")
    stroke(page, [(200, 150), (220, 150)])
    page.fill("#latex-input", "x")
    press(page, "e")
    page.evaluate("() => { window.labeler.state.brush = 120; }")
    stroke(page, [(150, 150), (270, 150)])
    assert payload_masks(page)[0].sum() == 0
    page.click("#btn-save")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.includes('browser')")
    assert "The mask is empty." in page.inner_text("#label-app")
    assert not page.errors, page.errors
