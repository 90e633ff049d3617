"""The labeling page with real phone photos: a 48 MP photo with 40 brushed masks loads, paints
and saves in bounded memory, and an EXIF-rotated 12 MP photo shown scaled down is labeled in the
stored (upright) image's own pixels. Images are made at test time (nothing large is committed)."""
from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageDraw

from common import rle, roles
from labeling import services
from tests import factories
from tests.browser.test_labeling_ui import red_marker_on_screen, save_draft, saved_annotation, to_screen
from tests.labeling.test_large_photo_annotations import H48, W48, forty_masks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def page_photo(w: int, h: int, marker: tuple[int, int] | None = None) -> PILImage.Image:
    """A light worksheet: dark lines of 'formulas', and a red square marker to find on screen."""
    img = PILImage.new("RGB", (w, h), (236, 232, 222))
    d = ImageDraw.Draw(img)
    for y in range(h // 20, h - h // 20, h // 20):
        d.rectangle((w // 20, y, w // 2, y + h // 80), fill=(40, 40, 40))
    if marker:
        s = max(8, w // 200)
        d.rectangle((marker[0], marker[1], marker[0] + s - 1, marker[1] + s - 1), fill=(255, 0, 0))
    return img


def jpeg(img: PILImage.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85, **kw)
    return buf.getvalue()


def metrics(page) -> dict:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    out = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    cdp.detach()
    return out


def test_a_48mp_photo_with_40_masks_loads_paints_and_saves(browser_page):
    vendor, spec = factories.make_vendor(), factories.make_spec()
    factories.make_image(spec=spec, data=jpeg(page_photo(W48, H48)), filename="48mp.jpg")
    factories.make_batch(spec, vendor, images=0, quantity=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = services.task_claim_next(annotator=annotator).task
    masks = forty_masks()
    services.annotation_create(task=task, annotator=annotator,
                               regions=[{"kind": "mask", "mask": m, "latex": "x^{2}"} for m in masks])

    page = browser_page(annotator)
    t0 = time.perf_counter()
    page.goto(f"/label/{task.id}/")
    page.wait_for_selector("#label-app[data-ready='1']", timeout=45_000)
    ready_s = time.perf_counter() - t0
    held = page.evaluate("""() => window.labeler.state.regions.reduce(
        (n, r) => n + (r.maskCanvas ? r.maskCanvas.width * r.maskCanvas.height * 4 : 0), 0)""")
    heap = metrics(page)["JSHeapUsedSize"]
    frame_ms = page.evaluate("""async () => {
        const v = window.labeler.viewer, t0 = performance.now(), n = 10;
        for (let i = 0; i < n; i++) { v.view.zoomAt(i % 2 ? 0.8 : 1.25, 400, 300); v.draw(); }
        await new Promise((r) => requestAnimationFrame(r));
        return (performance.now() - t0) / n;
    }""")
    print(f"\n48 MP, 40 masks: ready in {ready_s:.1f} s, mask canvases {held / 2**20:.0f} MiB, "
          f"JS heap {heap / 2**20:.0f} MiB, redraw {frame_ms:.0f} ms")
    # An image-sized RGBA canvas per mask would be 40 x 183 MiB.
    assert held < 400 * 2**20, f"{held / 2**20:.0f} MiB of mask canvases"
    assert heap < 300 * 2**20
    assert page.locator("#region-list li").count() == 40

    # A new mask: brush strokes in free space on the right of the page.
    page.keyboard.press("Escape")
    page.evaluate("() => { const s = window.labeler.state; s.selected = -1; }")
    page.locator("#canvas").focus()
    page.keyboard.press("b")
    t0 = time.perf_counter()
    page.mouse.move(*to_screen(page, 6000, 3000))
    page.mouse.down()
    for x in range(6000, 7400, 70):
        page.mouse.move(*to_screen(page, x, 3000 + (x % 140)))
    page.mouse.up()
    page.evaluate("() => new Promise((r) => requestAnimationFrame(r))")
    stroke_ms = (time.perf_counter() - t0) * 1000 / 21
    print(f"brush: {stroke_ms:.0f} ms per pointer move")
    assert page.locator("#region-list li").count() == 41

    t0 = time.perf_counter()
    save_draft(page)
    print(f"save: {time.perf_counter() - t0:.1f} s")
    ann = saved_annotation(annotator, task.id)
    stored = [r["mask"] for r in ann["regions"]]
    assert stored[:40] == masks  # untouched masks go back exactly as they came
    new = rle.decode(stored[40])
    ys, xs = np.nonzero(new)
    assert 5700 < xs.min() < 6000 and 7300 <= xs.max() < 7700 and 2700 < ys.min() < 3000 and 3100 < ys.max() < 3500
    assert not page.errors, page.errors


def test_an_exif_rotated_photo_is_labeled_in_upright_pixels(browser_page):
    # As the phone wrote it: 4032x3024 sensor pixels, EXIF "rotate 90 CW to view" (6).
    upright_w, upright_h = 3024, 4032
    marker = (2100, 700)  # where the red marker is in the upright image
    upright = page_photo(upright_w, upright_h, marker)
    sensor = upright.transpose(PILImage.Transpose.ROTATE_90)  # what the camera stored
    exif = PILImage.Exif()
    exif[0x0112] = 6
    vendor, spec = factories.make_vendor(), factories.make_spec()
    image = factories.make_image(spec=spec, data=jpeg(sensor, exif=exif.tobytes()), filename="phone.jpg")
    assert (image.width, image.height) == (upright_w, upright_h)
    factories.make_batch(spec, vendor, images=0, quantity=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    page = browser_page(annotator)
    page.goto("/work/")
    page.click("#start-labeling")
    page.wait_for_url(re.compile(r"/label/\d+/"))
    page.wait_for_selector("#label-app[data-ready='1']")
    task_id = int(re.search(r"/label/(\d+)/", page.url).group(1))
    v = page.evaluate("() => [window.labeler.viewer.width, window.labeler.viewer.height, window.labeler.viewer.view.scale]")
    assert v[:2] == [upright_w, upright_h] and v[2] < 0.5  # shown scaled down

    s = max(8, upright_w // 200)
    want = to_screen(page, marker[0] + s / 2, marker[1] + s / 2)
    got = red_marker_on_screen(page)
    assert abs(want[0] - got[0]) <= 2 and abs(want[1] - got[1]) <= 2, (want, got)

    # A box dragged around the marker as seen is stored around it in the upright image.
    page.locator("#canvas").focus()
    page.keyboard.press("r")
    page.mouse.move(got[0] - 10, got[1] - 8)
    page.mouse.down()
    page.mouse.move(got[0] + 10, got[1] + 8, steps=4)
    page.mouse.up()
    page.locator("#latex-input").fill("x")
    save_draft(page)
    pts = np.array(saved_annotation(annotator, task_id)["regions"][0]["points"])
    assert pts[:, 0].min() < marker[0] < marker[0] + s < pts[:, 0].max(), pts
    assert pts[:, 1].min() < marker[1] < marker[1] + s < pts[:, 1].max(), pts
    assert not page.errors, page.errors
