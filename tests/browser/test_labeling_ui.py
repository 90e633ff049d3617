"""The annotator's labeling page and the reviewer's page in a real browser:
draw, paint, type LaTeX, submit, read the result back through the API in image
pixels, reject it as a reviewer and see the reason as the annotator."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageDraw
from rest_framework.test import APIClient

from common import rle, roles
from tests import factories
from tests.browser_fixtures import save_screenshot as screenshot

# Transactional: the live server runs in another thread and must see the rows.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

W, H = 900, 600
MARK = (612, 148)  # a 4x4 pure-red marker's top-left corner, in image pixels


def photo() -> bytes:
    """A light page with dark 'formulas' and one red marker to locate on screen."""
    img = PILImage.new("RGB", (W, H), (236, 232, 222))
    d = ImageDraw.Draw(img)
    for i, y in enumerate((80, 240, 400)):
        d.text((90, y), f"x^{i + 2} + {i} = y_{i}", fill=(20, 20, 20))
        d.rectangle((80, y - 12, 330, y + 30), outline=(120, 120, 120))
    d.rectangle((MARK[0], MARK[1], MARK[0] + 3, MARK[1] + 3), fill=(255, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def labeling_setup():
    vendor = factories.make_vendor()
    spec = factories.make_spec()
    factories.make_image(spec=spec, data=photo(), filename="page.png")
    batch = factories.make_batch(spec, vendor, images=0, quantity=1, name="Photos of homework")
    return {
        "batch": batch,
        "annotator": factories.make_user(roles.ANNOTATOR, vendor=vendor),
        "reviewer": factories.make_user(roles.REVIEWER, vendor=vendor),
    }


def canvas_origin(page) -> tuple[float, float]:
    box = page.locator("#canvas").bounding_box()
    return box["x"], box["y"]


def to_screen(page, x: float, y: float) -> tuple[float, float]:
    ox, oy = canvas_origin(page)
    sx, sy = page.evaluate("([x, y]) => window.labeler.imageToScreen(x, y)", [x, y])
    return ox + sx, oy + sy


def red_marker_on_screen(page) -> tuple[float, float]:
    """Centre of the red marker as actually rendered (found in a screenshot)."""
    page.wait_for_timeout(120)  # let requestAnimationFrame paint
    shot = np.asarray(PILImage.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
    red = (shot[..., 0] > 200) & (shot[..., 1] < 60) & (shot[..., 2] < 60)
    ys, xs = np.nonzero(red)
    assert len(xs), "the red marker is not visible"
    return xs.mean() + 0.5, ys.mean() + 0.5


def assert_view_matches_rendering(page):
    """The page's image->screen transform puts the marker where the browser drew it."""
    want = to_screen(page, MARK[0] + 2, MARK[1] + 2)
    got = red_marker_on_screen(page)
    assert abs(want[0] - got[0]) <= 1.5 and abs(want[1] - got[1]) <= 1.5, (want, got)


def press(page, key: str):
    page.locator("#canvas").focus()
    page.keyboard.press(key)
    page.wait_for_timeout(60)


def drag(page, a, b):
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=2)
    page.mouse.move(*b, steps=2)
    page.mouse.up()


def type_latex(page, text: str):
    page.fill("#latex-input", text)


def save_draft(page) -> None:
    """Save the draft and wait until the server has it."""
    page.click("#btn-save")
    # Predicates are functions: Playwright polls a bare expression with eval, which the CSP refuses.
    page.wait_for_function("() => document.querySelector('#save-state').textContent.includes('Saved on the server')")


def start_labeling(browser_page, setup) -> tuple:
    """The annotator's labeling page on their next task: (page, task id)."""
    page = browser_page(setup["annotator"])
    return page, open_next_task(page)


def open_next_task(page) -> int:
    page.goto("/work/")
    screenshot(page, "01-my-work")
    page.click("#start-labeling")
    page.wait_for_url(re.compile(r"/label/\d+/"))
    page.wait_for_selector("#label-app[data-ready='1']")
    return int(re.search(r"/label/(\d+)/", page.url).group(1))


def saved_annotation(user, task_id: int) -> dict:
    api = APIClient()
    api.force_authenticate(user)
    body = api.get(f"/api/v1/annotations/?task={task_id}").json()
    assert body["count"] == 1, body
    return body["results"][0]


def assert_quad_close(stored, expected, tol=1.0):
    """The stored corners are the expected ones in the same order (the first is the formula's top-left as read)."""
    for (sx, sy), (wx, wy) in zip(stored, expected, strict=True):
        assert abs(sx - wx) <= tol and abs(sy - wy) <= tol, (stored, expected)


def test_annotator_draws_types_submits_and_reviewer_rejects(browser_page, labeling_setup):
    s = labeling_setup
    page = browser_page(s["annotator"])
    task_id = open_next_task(page)
    assert page.locator("#tool-hint").inner_text().startswith("Rectangle")
    screenshot(page, "02-label-empty")
    assert_view_matches_rendering(page)

    # 1. A quad by four clicks at the "fit" zoom level.
    quad1 = [(80, 68), (330, 70), (331, 110), (79, 111)]
    press(page, "q")
    for x, y in quad1:
        page.mouse.click(*to_screen(page, x, y))
    assert page.locator("#region-list li").count() == 1
    type_latex(page, r"\frac{a}{b")
    page.wait_for_selector("#latex-error:not([hidden])")
    assert "KaTeX" in page.locator("#latex-error").inner_text()
    type_latex(page, r"x^{2}+0=y_{0}")
    page.wait_for_selector("#latex-preview .katex")
    assert page.locator("#latex-error").is_hidden()

    # 2. Zoom in around the second formula and drag a rectangle.
    quad2 = [(80, 228), (330, 228), (330, 270), (80, 270)]
    press(page, "0")
    for _ in range(2):
        page.mouse.move(*to_screen(page, 200, 250))
        page.mouse.wheel(0, -120)
        page.wait_for_timeout(60)
    scale = page.evaluate("window.labeler.viewer.view.scale")
    assert scale > 1.2
    press(page, "r")
    a, b = to_screen(page, *quad2[0]), to_screen(page, *quad2[2])
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=3)
    page.mouse.move(*b, steps=3)
    page.mouse.up()
    assert page.locator("#region-list li").count() == 2
    type_latex(page, r"x^{3}+1=y_{1}")

    # 3. Rotate the view, zoom out a step, check the transform, click a third quad.
    press(page, "Shift+R")
    press(page, "0")
    press(page, "-")
    assert page.evaluate("window.labeler.viewer.view.rot") == 1
    assert_view_matches_rendering(page)
    quad3 = [(79, 388), (331, 389), (330, 431), (80, 430)]
    press(page, "q")
    for x, y in quad3:
        page.mouse.click(*to_screen(page, x, y))
    assert page.locator("#region-list li").count() == 3
    type_latex(page, r"x^{4}+2=y_{2}")
    page.wait_for_selector("#latex-preview .katex")
    screenshot(page, "03-label-rotated")

    # 4. Back upright: paint a mask over the red marker's neighbourhood with the brush.
    press(page, "Shift+R")
    press(page, "Shift+R")
    press(page, "Shift+R")
    press(page, "0")
    press(page, "b")
    page.evaluate("window.labeler.state.selected = -1")  # paint a new mask, not into a quad
    stroke = [(560, 300), (620, 300), (680, 300)]
    page.mouse.move(*to_screen(page, *stroke[0]))
    page.mouse.down()
    for p in stroke[1:]:
        page.mouse.move(*to_screen(page, *p), steps=4)
    page.mouse.up()
    assert page.locator("#region-list li").count() == 4
    brush_px = 24 / page.evaluate("window.labeler.viewer.view.scale")  # the brush is 24 screen pixels wide
    type_latex(page, "z")
    page.locator("#region-list li").nth(0).click()
    screenshot(page, "04-label-filled")

    # 5. Save a draft, then read it back through the API in image pixels.
    save_draft(page)
    ann = saved_annotation(s["annotator"], task_id)
    assert ann["status"] == "draft" and len(ann["regions"]) == 4
    assert_quad_close(ann["regions"][0]["points"], quad1)
    assert_quad_close(ann["regions"][1]["points"], quad2)
    assert_quad_close(ann["regions"][2]["points"], quad3)
    assert [r["latex"] for r in ann["regions"]] == [r"x^{2}+0=y_{0}", r"x^{3}+1=y_{1}", r"x^{4}+2=y_{2}", "z"]
    mask = rle.decode(ann["regions"][3]["mask"])
    assert mask.shape == (H, W)
    for x, y in stroke:
        assert mask[y, x], (x, y)  # painted along the stroke
    assert not mask[300, 540 - int(brush_px)] and not mask[int(300 + brush_px) + 2, 620] and not mask[:200].any()
    painted_height = mask[:, 620].sum()
    assert abs(painted_height - brush_px) <= 2, (painted_height, brush_px)

    # 6. Submit with Ctrl+Enter; no more work waits, so My work says so.
    page.locator("#canvas").focus()
    page.keyboard.press("Control+Enter")
    page.wait_for_url(re.compile(r"/work/\?done=1"))
    assert saved_annotation(s["annotator"], task_id)["status"] == "submitted"
    assert not page.errors, page.errors

    # 7. The reviewer rejects it with reasons and a comment.
    rpage = browser_page(s["reviewer"])
    rpage.goto("/review/")
    rpage.click("#review-next")
    rpage.wait_for_selector("#review-app[data-ready='1']")
    assert rpage.locator("#review-regions li").count() == 4
    assert rpage.locator("#review-regions .katex").count() == 4
    screenshot(rpage, "05-review")
    rpage.check("#decision-reject")
    rpage.check("#reason-latex_error")
    rpage.check("#reason-wrong_region")
    rpage.fill("#review-comment", "Region 2: the exponent is 3 on the photo, check it.")
    rpage.click("#btn-send")
    rpage.wait_for_selector("text=Nothing is waiting for your review")
    assert not rpage.errors, rpage.errors
    review = saved_annotation(s["annotator"], task_id)["reviews"][0]
    assert review["decision"] == "reject" and sorted(review["reasons"]) == ["latex_error", "wrong_region"]

    # 8. The annotator sees why, and the labeling page shows it again on rework.
    page.goto("/work/")
    row = page.locator(".rejected-row")
    assert "LaTeX error" in row.inner_text() and "exponent is 3" in row.inner_text()
    screenshot(page, "06-my-work-rejected")
    row.locator("text=Fix it").click()
    page.wait_for_selector("#label-app[data-ready='1']")
    assert "exponent is 3" in page.locator("#rejection").inner_text()
    assert page.locator("#region-list li").count() == 4
    screenshot(page, "09-label-rework")


def test_server_errors_show_beside_the_region_and_work_survives_reload(browser_page, labeling_setup):
    s = labeling_setup
    page = browser_page(s["annotator"])
    task_id = open_next_task(page)
    quad = [(80, 68), (330, 68), (330, 110), (80, 110)]
    press(page, "r")
    a, b = to_screen(page, *quad[0]), to_screen(page, *quad[2])
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=5)
    page.mouse.up()
    type_latex(page, r"\frac{a}{b")  # unbalanced: the server refuses it
    page.click("#btn-save")
    page.wait_for_selector("#region-errors:not([hidden])")
    assert "regions[0]" not in page.locator("#region-errors").inner_text()  # shown at the region, in words
    assert page.locator("#region-list .has-error").count() == 1
    assert page.locator("#latex-input").get_attribute("aria-invalid") == "true"
    screenshot(page, "07-label-server-error")

    page.reload()
    page.wait_for_selector("#label-app[data-ready='1']")
    assert page.locator("#region-list li").count() == 1
    assert page.input_value("#latex-input") == r"\frac{a}{b"
    assert "Restored your unsaved work" in page.locator("#messages").inner_text()
    type_latex(page, r"\frac{a}{b}")

    # Move a corner, then the whole region, with the select tool.
    press(page, "v")
    drag(page, to_screen(page, 330, 110), to_screen(page, 340, 120))
    drag(page, to_screen(page, 200, 90), to_screen(page, 205, 95))
    moved = [(85, 73), (335, 73), (345, 125), (85, 115)]

    # A second region: Tab from the LaTeX field walks the regions; Delete removes one.
    press(page, "r")
    drag(page, to_screen(page, 80, 228), to_screen(page, 330, 270))
    assert page.evaluate("window.labeler.state.selected") == 1
    page.locator("#latex-input").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("window.labeler.state.selected") == 0
    assert page.evaluate("document.activeElement.id") == "latex-input"
    page.locator("#region-list li").nth(1).click()
    press(page, "Delete")
    assert page.locator("#region-list li").count() == 1

    save_draft(page)
    ann = saved_annotation(s["annotator"], task_id)
    assert ann["regions"][0]["latex"] == r"\frac{a}{b}"
    assert_quad_close(ann["regions"][0]["points"], moved)
    assert not page.errors, page.errors


def test_large_photo_stays_smooth(browser_page):
    """A 4000x3000 photo: decoded once, then each redraw under a new zoom/pan is cheap."""
    vendor = factories.make_vendor()
    spec = factories.make_spec()
    rng = np.random.default_rng(0)
    big = PILImage.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).convert("RGB")
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=80)
    factories.make_image(spec=spec, data=buf.getvalue(), filename="big.jpg")
    factories.make_batch(spec, vendor, images=0, quantity=1)
    page = browser_page(factories.make_user(roles.ANNOTATOR, vendor=vendor))
    open_next_task(page)
    frame_ms = page.evaluate("""async () => {
        const v = window.labeler.viewer, t0 = performance.now(), n = 30;
        for (let i = 0; i < n; i++) {
            v.view.zoomAt(i % 2 ? 0.8 : 1.25, 400, 300);
            v.draw();
        }
        await new Promise((r) => requestAnimationFrame(r));
        return (performance.now() - t0) / n;
    }""")
    print(f"4000x3000 redraw: {frame_ms:.1f} ms per frame (headless chromium, software rendering)")
    assert frame_ms < 100, frame_ms
    # Painting a mask on the full-resolution mask canvas and encoding it as RLE.
    encode_ms = page.evaluate("""() => {
        const s = window.labeler.state, v = window.labeler.viewer;
        const c = document.createElement('canvas'); c.width = v.width; c.height = v.height;
        const ctx = c.getContext('2d'); ctx.fillRect(1000, 1000, 500, 300);
        s.regions.push({kind: 'mask', maskCanvas: c, maskDirty: true, bbox: [990, 990, 1510, 1310], latex: '',
                        illegible: false, cut_off: false, categories: [], errors: {}});
        const t0 = performance.now(); const p = window.labeler.payload(); const ms = performance.now() - t0;
        s.regions.pop();
        return [ms, p[p.length - 1].mask];
    }""")
    print(f"4000x3000 mask -> COCO RLE: {encode_ms[0]:.0f} ms")
    decoded = rle.decode(encode_ms[1])  # pycocotools accepts it as its own canonical string
    assert decoded.shape == (3000, 4000) and decoded.sum() == 500 * 300 and decoded[1000:1300, 1000:1500].all()
    assert not page.errors, page.errors


def test_starts_from_prelabels_and_resolves_a_version_conflict(browser_page, labeling_setup):
    from labeling.services import predictions_import

    s = labeling_setup
    image = s["batch"].tasks.get().image
    prediction = predictions_import(model_name="formula-det", model_version="7", items=[
        {"image": image.id, "regions": [{"kind": "quad", "points": [[80, 228], [330, 228], [330, 270], [80, 270]],
                                         "latex": "x^{3}+1=y_{1}", "confidence": 0.4}]}])[0]
    page = browser_page(s["annotator"])
    task_id = open_next_task(page)
    assert page.locator("#region-list li").count() == 1
    assert "pre-labels" in page.locator("#messages").inner_text()
    assert page.input_value("#latex-input") == "x^{3}+1=y_{1}"
    save_draft(page)
    ann = saved_annotation(s["annotator"], task_id)
    assert ann["started_from"] == prediction.id and ann["version"] == 1

    # Another tab saves version 2 behind this page's back; this page then saves from version 1.
    other = APIClient()
    other.force_authenticate(s["annotator"])
    r = other.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "regions": []}, format="json")
    assert r.status_code == 200, r.content
    type_latex(page, "x^{3}+1=y_{1}+c")
    page.click("#btn-save")
    page.wait_for_selector("text=Keep mine (save over version 2)")
    screenshot(page, "08-label-conflict")
    page.click("text=Keep mine (save over version 2)")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.includes('version 3')")
    ann = saved_annotation(s["annotator"], task_id)
    assert ann["version"] == 3 and [r["latex"] for r in ann["regions"]] == ["x^{3}+1=y_{1}+c"]
    assert not page.errors, page.errors


def test_prelabels_show_the_model_confidence_and_open_the_least_sure_region_first(browser_page, labeling_setup):
    from labeling.services import predictions_import

    s = labeling_setup
    image = s["batch"].tasks.get().image
    predictions_import(model_name="formula-det", model_version="8", items=[
        {"image": image.id, "regions": [
            {"kind": "quad", "points": [[80, 60], [330, 60], [330, 100], [80, 100]], "latex": "a+b", "confidence": 0.95},
            {"kind": "quad", "points": [[80, 228], [330, 228], [330, 270], [80, 270]], "latex": "x^{3}", "confidence": 0.31},
        ]}])
    page = browser_page(s["annotator"])
    task_id = open_next_task(page)
    badges = page.locator("#region-list .model-conf")
    assert badges.all_inner_texts() == ["95%", "31%"]
    assert page.locator("#region-list .model-conf.low").all_inner_texts() == ["31%"]
    assert page.input_value("#latex-input") == "x^{3}"  # the unsure region is the one open
    assert "unsure of 1 of the 2 regions" in page.locator("#messages").inner_text()
    save_draft(page)  # the confidence is shown, never sent: the save is accepted as it is
    ann = saved_annotation(s["annotator"], task_id)
    assert [r["latex"] for r in ann["regions"]] == ["a+b", "x^{3}"]
    assert all("confidence" not in r for r in ann["regions"])


def crop_preview(page) -> np.ndarray:
    """The straightened-crop preview as an H x W x 3 array."""
    page.wait_for_timeout(120)  # drawn on the next animation frame
    w, h, data = page.evaluate("""() => { const c = document.querySelector('#crop');
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""")
    return np.asarray(data, dtype=np.uint8).reshape(h, w, 4)[..., :3].astype(int)


def red_x_share(crop: np.ndarray) -> float:
    """Where the red marker lies across the crop, 0 (left) to 1 (right)."""
    red = (crop[..., 0] > 180) & (crop[..., 1] < 90) & (crop[..., 2] < 90)
    xs = np.nonzero(red)[1]
    assert len(xs), "the red marker is not in the crop"
    return (xs.mean() + 0.5) / crop.shape[1]


def test_turn_start_rolls_the_first_corner_the_crop_follows_and_the_order_is_saved(browser_page, labeling_setup):
    from labeling.services import predictions_import

    s = labeling_setup
    image = s["batch"].tasks.get().image
    # A pre-label whose first corner is the image's bottom-right, as for an upside-down formula:
    # the red marker, at the box's left in the image, ends the straightened crop.
    upside_down = [[700, 170], [600, 170], [600, 140], [700, 140]]
    predictions_import(model_name="formula-det", model_version="9", items=[
        {"image": image.id, "regions": [{"kind": "quad", "points": upside_down, "latex": "x"}]}])
    page = browser_page(s["annotator"])
    task_id = open_next_task(page)
    assert page.evaluate("window.labeler.state.regions[0].points") == upside_down  # kept as stored
    assert "Turn start" in page.locator(".shortcuts").inner_text()
    before = crop_preview(page)
    assert before.shape[1] > before.shape[0] and red_x_share(before) > 0.8

    press(page, "t")  # one corner on: the crop stands up
    assert page.evaluate("window.labeler.state.regions[0].points") == [[600, 170], [600, 140], [700, 140], [700, 170]]
    turned = crop_preview(page)
    assert turned.shape[0] > turned.shape[1]
    page.click("#roll-start")  # and one more with the button: the formula's top-left first, upright
    upright = crop_preview(page)
    assert upright.shape == before.shape and red_x_share(upright) < 0.2
    assert np.abs(upright - before[::-1, ::-1]).mean() < 12  # the same crop, turned by 180 degrees
    screenshot(page, "10-label-turn-start")

    save_draft(page)
    ann = saved_annotation(s["annotator"], task_id)
    assert ann["regions"][0]["points"] == [[600, 140], [700, 140], [700, 170], [600, 170]]
    assert not page.errors, page.errors


def test_a_rectangle_starts_at_its_top_left_on_screen_whichever_way_it_is_dragged(browser_page, labeling_setup):
    s = labeling_setup
    page, task_id = start_labeling(browser_page, s)
    press(page, "r")
    drag(page, to_screen(page, 330, 270), to_screen(page, 80, 228))  # from the bottom-right up
    press(page, "Shift+R")  # the view turned: a rectangle dragged now starts at the screen's top-left
    press(page, "0")
    drag(page, to_screen(page, 80, 68), to_screen(page, 330, 110))
    save_draft(page)
    ann = saved_annotation(s["annotator"], task_id)
    assert_quad_close(ann["regions"][0]["points"], [(80, 228), (330, 228), (330, 270), (80, 270)])
    # Turned 90 degrees clockwise, the screen's top-left is the image's bottom-left.
    assert_quad_close(ann["regions"][1]["points"], [(80, 110), (80, 68), (330, 68), (330, 110)])
    assert not page.errors, page.errors


def region_points(page) -> list:
    return page.evaluate("window.labeler.state.regions.map((r) => r.points)")


def test_undo_and_redo_walk_through_drawing_moving_and_deleting_and_the_draft_saves_the_restored_state(
        browser_page, labeling_setup):
    s = labeling_setup
    page, task_id = start_labeling(browser_page, s)
    assert page.locator("#undo").is_disabled() and page.locator("#redo").is_disabled()
    shortcuts = page.locator(".shortcuts").inner_text()
    assert "Undo" in shortcuts and "Redo" in shortcuts

    press(page, "r")
    drag(page, to_screen(page, 80, 68), to_screen(page, 330, 110))
    drawn = region_points(page)
    assert_quad_close(drawn[0], [(80, 68), (330, 68), (330, 110), (80, 110)])
    assert page.locator("#undo").is_enabled() and page.locator("#redo").is_disabled()
    press(page, "v")
    drag(page, to_screen(page, 330, 110), to_screen(page, 340, 120))  # one corner drag: one step
    moved = region_points(page)
    assert_quad_close(moved[0], [(80, 68), (330, 68), (340, 120), (80, 110)])
    type_latex(page, "x^{2}")
    press(page, "Delete")  # leaving the field records the LaTeX; Delete removes the region
    assert page.locator("#region-list li").count() == 0

    press(page, "Control+z")  # the delete undone: the region is back, selected, with its LaTeX
    assert page.locator("#region-list li").count() == 1
    assert region_points(page) == moved
    assert page.evaluate("window.labeler.state.selected") == 0
    assert page.input_value("#latex-input") == "x^{2}"
    page.wait_for_selector("#latex-preview .katex")
    press(page, "Control+z")  # the LaTeX
    assert page.input_value("#latex-input") == ""
    press(page, "Control+z")  # the corner drag
    assert region_points(page) == drawn
    press(page, "Control+z")  # the rectangle
    assert page.locator("#region-list li").count() == 0
    assert page.locator("#undo").is_disabled() and page.locator("#redo").is_enabled()
    screenshot(page, "11-label-undo")

    press(page, "Control+Shift+z")
    assert region_points(page) == drawn
    press(page, "Control+y")
    page.click("#redo")
    assert region_points(page) == moved and page.input_value("#latex-input") == "x^{2}"
    press(page, "Control+Shift+Z")
    assert page.locator("#region-list li").count() == 0 and page.locator("#redo").is_disabled()

    page.click("#undo")  # back to the moved region; a new action then drops what was undone
    assert region_points(page) == moved
    assert page.locator("#redo").is_enabled()
    press(page, "t")
    assert page.locator("#redo").is_disabled()
    rolled = region_points(page)[0]
    assert rolled == moved[0][1:] + moved[0][:1]
    assert "Unsaved changes" in page.locator("#save-state").inner_text() or \
        "Kept in this browser" in page.locator("#save-state").inner_text()

    save_draft(page)
    ann = saved_annotation(s["annotator"], task_id)
    assert len(ann["regions"]) == 1 and ann["regions"][0]["latex"] == "x^{2}"
    assert_quad_close(ann["regions"][0]["points"], rolled)

    # Submitted, the page is read-only: nothing to undo.
    page.locator("#canvas").focus()
    page.keyboard.press("Control+Enter")
    page.wait_for_url(re.compile(r"/work/\?done=1"))
    page.goto(f"/label/{task_id}/")
    page.wait_for_selector("#label-app[data-ready='1']")
    assert page.locator("#undo").is_disabled() and page.locator("#redo").is_disabled()
    press(page, "Control+z")
    assert page.locator("#region-list li").count() == 1
    assert not page.errors, page.errors


def test_a_brush_stroke_is_one_undo_step(browser_page, labeling_setup):
    page, _ = start_labeling(browser_page, labeling_setup)
    press(page, "b")

    def stroke(y):
        page.mouse.move(*to_screen(page, 560, y))
        page.mouse.down()
        for x in (600, 640, 680):
            page.mouse.move(*to_screen(page, x, y), steps=3)
        page.mouse.up()

    def mask():
        payload = page.evaluate("window.labeler.payload()")
        assert len(payload) == 1 and payload[0]["kind"] == "mask", payload
        return rle.decode(payload[0]["mask"])

    stroke(300)  # a new mask and its first stroke: one step
    stroke(450)  # the selected mask grows
    both = mask()
    assert both[300, 620] and both[450, 620]
    press(page, "Control+z")
    first = mask()
    assert first[300, 620] and not first[450, 620]
    assert (first == both[:, :] * (np.arange(H)[:, None] < 400)).all()  # exactly the first stroke
    # the canvas drawn on screen follows: no pixel of the undone stroke is left in the mask layer
    alpha = page.evaluate("""() => { const c = window.labeler.state.regions[0].maskCanvas;
        return c.getContext('2d').getImageData(620, 450, 1, 1).data[3]; }""")
    assert alpha == 0
    press(page, "Control+z")
    assert page.locator("#region-list li").count() == 0
    press(page, "Control+y")
    press(page, "Control+y")
    assert (mask() == both).all()
    assert not page.errors, page.errors


def test_ctrl_z_in_the_latex_field_undoes_the_typing_not_a_region(browser_page, labeling_setup):
    page, _ = start_labeling(browser_page, labeling_setup)
    press(page, "r")
    drag(page, to_screen(page, 80, 68), to_screen(page, 330, 110))
    steps = page.evaluate("window.labeler.history.past.length")
    page.locator("#latex-input").focus()
    page.keyboard.type("ab")
    page.keyboard.press("Control+z")  # the browser's own undo of the text
    assert page.locator("#region-list li").count() == 1
    assert page.evaluate("window.labeler.history.past.length") == steps
    assert page.input_value("#latex-input") != "ab"
    page.fill("#latex-input", "x+1")
    page.keyboard.press("Escape")  # leaving the field: the edit is one page step
    press(page, "Control+z")
    assert page.locator("#region-list li").count() == 1
    assert page.input_value("#latex-input") == ""
    press(page, "Control+Shift+z")
    assert page.input_value("#latex-input") == "x+1"
    assert not page.errors, page.errors
