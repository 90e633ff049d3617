"""The upload page reports each file by its place in the request: two files of one name
(one new, one already in the spec), a file repeating another's bytes, and a name longer
than the server keeps each get their own, correct row."""
from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from common import roles
from curation.models import Image
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def png(name, data):
    return {"name": name, "mimeType": "image/png", "buffer": data}


def test_same_named_and_repeated_files_get_distinct_correct_rows(page, live_server, login, screenshot):
    factories.make_user(roles.CURATOR, username="cora")
    spec = factories.make_spec(name="Homework formulas", status="active")
    source = factories.make_source("cc-by-4.0", name="School photos")
    existing = factories.make_image(spec=spec, source=source, filename="IMG_0001.png",
                                    data=factories.png_bytes(300, 100, seed=5001))
    with default_storage.open(existing.file, "rb") as fh:
        existing_bytes = fh.read()
    new_bytes = factories.png_bytes(300, 100, seed=5002)
    long_name = "scan-" + "x" * 290 + ".png"

    login("cora")
    page.goto(f"{live_server.url}/upload/")
    page.get_by_label("Spec").select_option(str(spec.pk))
    page.get_by_label("Source").select_option(str(source.pk))
    # The duplicate comes first: matching by name handed it the new image's "created".
    page.locator("#up-files").set_input_files([
        png("IMG_0001.png", existing_bytes),  # folder a/: already in the spec
        png("IMG_0001.png", new_bytes),  # folder b/: new
        png("again.png", new_bytes),  # the same bytes as the file before
        png(long_name, factories.png_bytes(300, 100, seed=5003)),
    ])
    page.get_by_role("button", name="Upload 4 files").click()
    page.wait_for_selector("#up-progress-panel[data-done=true]")

    new = Image.objects.get(spec=spec, original_filename="IMG_0001.png", pk__gt=existing.pk)
    long = Image.objects.get(spec=spec, original_filename__startswith="scan-")
    assert Image.objects.filter(spec=spec).count() == 3
    rows = page.locator("#up-results tbody tr")
    assert rows.count() == 4
    seen = []
    for i in range(4):
        row = rows.nth(i)
        link = row.locator("td a")
        seen.append((row.locator("td").first.inner_text(), row.get_attribute("data-result"),
                     link.get_attribute("href") if link.count() else None))
    assert seen == [
        ("IMG_0001.png", "duplicate", f"/images/{existing.pk}/"),
        ("IMG_0001.png", "created", f"/images/{new.pk}/"),
        ("again.png", "repeated", f"/images/{new.pk}/"),
        (long_name, "created", f"/images/{long.pk}/"),
    ]
    assert rows.nth(0).locator("td").nth(1).inner_text() == f"duplicate of image {existing.pk}, not stored again"
    assert rows.nth(1).locator("td").nth(1).inner_text() == f"created (image {new.pk}, 300×100)"
    assert rows.nth(2).locator("td").nth(1).inner_text() == f"same bytes as IMG_0001.png, stored once (image {new.pk})"
    assert "4 of 4 files done · 2 created, 2 duplicates, 0 errors" in page.locator("#up-status").inner_text()
    screenshot("upload-outcomes")
