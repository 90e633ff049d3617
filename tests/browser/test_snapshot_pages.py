"""A curator freezes a snapshot, starts a JSONL export and downloads it, in a real browser."""
from __future__ import annotations

import json
import zipfile

import pytest

from common import roles
from curation import snapshots, tasks
from curation.models import Export, Snapshot
from tests import factories
from tests.browser_fixtures import save_screenshot
from tests.curation.test_snapshots import accept_all

# Live-server tests flush the database after each test; serialized_rollback asks Django to
# restore the data migrations' rows (roles, licence catalogue) for the next one.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_curator_creates_a_snapshot_exports_jsonl_and_downloads_it(browser_page, live_server, tmp_path,
                                                                   monkeypatch):
    # The worker is this test: tasks are held back so the pages' polling is what shows progress.
    monkeypatch.setattr(tasks.build_snapshot, "delay", lambda *a: None)
    monkeypatch.setattr(tasks.run_export, "delay", lambda *a: None)
    spec = factories.make_spec(name="Homework photos")
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=3)
    assert accept_all(vendor) == 3
    page = browser_page(factories.make_user(roles.CURATOR))

    page.goto(f"/specs/{spec.pk}/")
    page.get_by_role("link", name="Snapshots & exports").click()
    page.get_by_role("link", name="New snapshot").click()
    assert page.get_by_label("Spec").input_value() == str(spec.pk)
    page.get_by_label("Name").fill("release-1")
    page.get_by_label("Train share").fill("1")
    page.get_by_label("Validation share").fill("0")
    page.get_by_label("Test share").fill("0")
    page.get_by_role("button", name="Create snapshot").click()

    page.wait_for_selector("#snapshot-status[data-status=queued]")
    snapshot = Snapshot.objects.get(spec=spec, name="release-1")
    snapshots.snapshot_build(snapshot=snapshot)
    page.wait_for_selector("#snapshot-status[data-status=ready]")  # polled, then the page reloads
    page.wait_for_selector("#split-table tr[data-category]")  # rendered by the reloaded page
    assert page.locator("#split-table tfoot").inner_text().split() == ["All", "images", "3", "0", "0", "3"]

    page.get_by_label("Format").select_option("jsonl")
    page.get_by_role("button", name="Start export").click()
    page.wait_for_selector("#export-table tr[data-status=queued]")
    snapshots.export_run(job=Export.objects.get(snapshot=snapshot))
    page.wait_for_selector("#export-table tr[data-status=done]")  # polled from the API, updated in place
    with page.expect_download() as download:
        page.get_by_role("link", name="Download zip").click()
    path = tmp_path / "export.zip"
    download.value.save_as(path)
    with zipfile.ZipFile(path) as zf:
        lines = [json.loads(line) for line in zf.read("annotations.jsonl").decode().splitlines()]
    assert sorted(line["image_id"] for line in lines) == sorted(snapshot.items.values_list("image_id", flat=True))
    assert Export.objects.get(snapshot=snapshot).status == Export.Status.DONE
    assert page.errors == []
    save_screenshot(page, "snapshot-detail")
