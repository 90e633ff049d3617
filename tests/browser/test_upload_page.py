"""The curator's upload page in a real browser, plus a screenshot of every curator page."""
from __future__ import annotations

import io
import zipfile

import pytest

from common import roles
from curation.models import Image, ModelRequirement
from tests import factories

# Live-server tests flush the database after each test; serialized_rollback asks Django to
# restore the data migrations' rows (roles, licence catalogue) for the next one.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def world(live_server):
    """A curator, a spec with some images, a source per licence family, a vendor with people."""
    curator = factories.make_user(roles.CURATOR, username="cora")
    spec = factories.make_spec(name="Homework formulas", status="active", default_quota=6,
                               max_ms_per_image=200, target_qps=30, serving_target="gpu_server")
    ModelRequirement.objects.create(spec=spec, metric="exact_match", threshold=0.9)
    ModelRequirement.objects.create(spec=spec, metric="token_edit_distance", threshold=0.1)
    factories.make_spec(name="Handwriting research", intended_use="research")
    source = factories.make_source("cc-by-4.0", name="School photos")
    factories.make_source("cc-by-nc-sa-3.0", name="CROHME 2016")
    for i, cats in enumerate([["printed"], ["printed", "shadow"], ["handwritten"], ["highlighter"], ["printed"]]):
        factories.make_image(spec=spec, source=source, categories=cats, filename=f"page{i}.png",
                             data=factories.png_bytes(480, 160, seed=3000 + i))
    vendor = factories.make_vendor("Acme Labeling")
    factories.make_user(roles.ANNOTATOR, vendor=vendor, username="annie")
    factories.make_user(roles.MODEL_TEAM, username="mo")
    return {"curator": curator, "spec": spec, "source": source,
            "existing": Image.objects.filter(spec=spec).order_by("id").first()}


def choose_target(page, world):
    page.get_by_label("Spec").select_option(str(world["spec"].pk))
    page.get_by_label("Source").select_option(str(world["source"].pk))
    page.get_by_label("Printed").check()


def test_curator_uploads_files_and_sees_progress_and_results(page, live_server, login, screenshot, world,
                                                             django_db_blocker):
    spec, existing = world["spec"], world["existing"]
    duplicate = existing.original_filename  # same bytes as an image already in the spec
    login("cora")
    assert page.url.endswith("/specs/")

    page.goto(f"{live_server.url}/upload/")
    choose_target(page, world)
    from django.core.files.storage import default_storage

    with default_storage.open(existing.file, "rb") as fh:
        existing_bytes = fh.read()
    page.locator("#up-files").set_input_files([
        {"name": "new-a.png", "mimeType": "image/png", "buffer": factories.png_bytes(300, 100, seed=4001)},
        {"name": "new-b.png", "mimeType": "image/png", "buffer": factories.png_bytes(300, 100, seed=4002)},
        {"name": duplicate, "mimeType": "image/png", "buffer": existing_bytes},
    ])
    assert "3 files chosen" in page.locator("#selection").inner_text()
    page.get_by_role("button", name="Upload 3 files").click()
    page.wait_for_selector("#up-progress-panel[data-done=true]")

    bar = page.get_by_role("progressbar", name="Upload progress")
    assert bar.get_attribute("aria-valuenow") == "100"
    assert "100% · 3 of 3 files done · 2 created, 1 duplicate, 0 errors" in page.locator("#up-status").inner_text()
    rows = page.locator("#up-results tbody tr")
    assert rows.count() == 3
    results = {rows.nth(i).locator("td").first.inner_text(): rows.nth(i).get_attribute("data-result") for i in range(3)}
    assert results == {"new-a.png": "created", "new-b.png": "created", duplicate: "duplicate"}
    assert f"duplicate of image {existing.pk}" in page.locator("#up-results").inner_text()
    assert set(Image.objects.filter(spec=spec, original_filename__startswith="new-")
               .values_list("original_filename", flat=True)) == {"new-a.png", "new-b.png"}
    assert Image.objects.get(original_filename="new-a.png").categories.get().slug == "printed"
    screenshot("upload")

    # A broken file is reported by name; the good one in the same request still goes in.
    page.locator("#up-files").set_input_files([
        {"name": "good.png", "mimeType": "image/png", "buffer": factories.png_bytes(300, 100, seed=4003)},
        {"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n truncated"},
    ])
    page.get_by_role("button", name="Upload 2 files").click()
    page.wait_for_selector("#up-progress-panel[data-done=true]")
    assert page.get_by_role("progressbar", name="Upload progress").get_attribute("aria-valuenow") == "100"
    text = page.locator("#up-results").inner_text()
    assert "broken.png" in text and "broken.png: " in text
    assert page.locator("#up-results tr[data-result=created] td").first.inner_text() == "good.png"
    assert Image.objects.filter(original_filename="good.png").exists()
    assert not Image.objects.filter(original_filename="broken.png").exists()

    # A zip becomes an import job whose panel follows it to the end.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("zip-1.png", factories.png_bytes(seed=4101))
        zf.writestr("zip-2.png", factories.png_bytes(seed=4102))
        zf.writestr("notes.png", b"not an image")
    page.locator("#zip-file").set_input_files({"name": "batch.zip", "mimeType": "application/zip",
                                               "buffer": buf.getvalue()})
    page.get_by_role("button", name="Start import").click()
    page.wait_for_selector("#zip-status.status-done")
    assert "3 files in the zip · 2 imported · 0 duplicates · 1 error" in page.locator("#zip-counts").inner_text()
    assert page.locator("#zip-errors").inner_text() == "notes.png: not an image (no known image format recognised)."
    screenshot("upload-after-zip")


def test_screenshots_of_every_curator_page(page, live_server, login, screenshot, world):
    spec = world["spec"]
    image = world["existing"]
    login("cora")
    pages = {
        "spec-list": "/specs/",
        "spec-detail": f"/specs/{spec.pk}/",
        "spec-create": "/specs/new/",
        "spec-edit": f"/specs/{spec.pk}/edit/",
        "source-list": "/sources/",
        "source-create": "/sources/new/",
        "licence-list": "/licences/",
        "image-list": f"/images/?spec={spec.pk}",
        "image-detail": f"/images/{image.pk}/",
        "upload": "/upload/",
        "import-jobs": "/imports/",
        "users": "/people/",
        "vendors": "/people/vendors/",
    }
    for name, url in pages.items():
        response = page.goto(live_server.url + url)
        assert response.status == 200, url
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").first.is_visible()
        screenshot(name if name != "upload" else "upload-empty")
    # Quota progress on the spec page, as a curator sees it.
    page.goto(f"{live_server.url}/specs/{spec.pk}/")
    assert page.locator("[data-category=printed]").inner_text() == "3 / 6 collected · 0 labeled · 0 accepted"
    # Thumbnails load through the session-authenticated API.
    page.goto(f"{live_server.url}/images/?spec={spec.pk}")
    page.wait_for_load_state("networkidle")
    widths = page.locator(".grid img").evaluate_all("els => els.map(e => e.naturalWidth)")
    assert len(widths) == 5 and all(w > 0 for w in widths)
    # A form error shown beside its field.
    page.goto(f"{live_server.url}/specs/new/")
    page.get_by_label("Name").first.fill("No formats")
    page.get_by_label("Service requirement").fill("Something")
    for box in page.locator("input[name=answer_formats]").all():
        box.uncheck()
    page.get_by_role("button", name="Create spec").click()
    assert "Choose at least one answer format" in page.locator("#id_answer_formats_errors").inner_text()
    screenshot("spec-create-error")
    page.get_by_role("button", name="Log out").click()
    assert "/accounts/login/" in page.url
    screenshot("login")


def test_spec_quota_counts_stay_beside_their_percentage_inside_the_card(page, live_server, login, world):
    # The counts ("3 / 6 collected · 0 labeled · 0 accepted") had a 130px column and did not wrap:
    # at 1366px their text ran under the percentage and out of the card into the next column.
    login("cora")
    page.goto(f"{live_server.url}/specs/{world['spec'].pk}/")
    rows = page.evaluate("""() => {
        const card = document.querySelector('.quota').closest('.card').getBoundingClientRect();
        const text = el => { const r = document.createRange(); r.selectNodeContents(el); return r.getBoundingClientRect(); };
        const cells = [...document.querySelectorAll('.quota > .progress-label')];
        const rows = [];
        for (let i = 0; i < cells.length; i += 2) rows.push({counts: text(cells[i]).right, pct: text(cells[i + 1]).left,
                                                             pctRight: text(cells[i + 1]).right, card: card.right});
        return rows;
    }""")
    assert len(rows) == 5  # one per category of the spec
    for row in rows:
        assert row["counts"] <= row["pct"] and row["pctRight"] <= row["card"], row


def test_other_roles_land_on_their_pages(page, live_server, login, screenshot, world):
    login("annie")
    assert page.url.endswith("/work/")
    assert "Acme Labeling" in page.locator("#my-vendor").inner_text()
    screenshot("my-work")
    assert page.goto(f"{live_server.url}/specs/").status == 403
    page.goto(f"{live_server.url}/accounts/login/")
    page.context.clear_cookies()
    login("mo")
    assert page.url.endswith("/model-team/")
    assert "Homework formulas" in page.locator("main").inner_text()
    screenshot("model-team")
