"""The curator's new-batch and edit-batch pages in a real browser: choosing a spec shows its
categories (static/js/labeling/batch_form.js, no inline script), the live count follows the
filter, the contract price shows as a hint, and the created batch is listed on /batches/."""
from __future__ import annotations

from decimal import Decimal

import pytest

from common import roles
from labeling.models import Batch
from tests import factories
from tests.browser_fixtures import save_screenshot

# Transactional: the live server runs in another thread and must see the rows.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def world():
    curator = factories.make_user(roles.CURATOR)
    source = factories.make_source(name="School photos")
    homework = factories.make_spec(name="Homework formulas", status="active")
    exams = factories.make_spec(name="Exam sheets", status="active")
    # a custom kind only the exam spec has, to see the checkboxes switch with the spec
    from curation.services import category_create

    category_create(spec=exams, name="Margin notes", slug="margin-notes")
    for cats in (["printed"], ["printed"], ["handwritten"]):
        factories.make_image(spec=homework, source=source, categories=cats, data=factories.png_bytes(200, 100))
    factories.make_image(spec=exams, source=source, categories=["margin-notes"], data=factories.png_bytes(200, 100))
    vendor = factories.make_vendor("Acme Labeling")
    contracted = factories.make_vendor("Contract Co")
    factories.make_contract(vendor=contracted, spec=homework, price_regions=Decimal("0.12"), currency="EUR")
    return {"curator": curator, "homework": homework, "exams": exams, "vendor": vendor, "contracted": contracted,
            "source": source}


def test_curator_creates_a_batch_in_the_browser_and_sees_it_listed(browser_page, world):
    page = browser_page(world["curator"])
    page.goto("/batches/")
    page.get_by_role("link", name="New batch").click()
    page.wait_for_url("**/batches/new/")
    box = page.locator("#batch-categories")
    assert "Choose a spec first" in box.inner_text()

    page.get_by_label("Spec").select_option(str(world["exams"].pk))
    page.get_by_label("Margin notes").wait_for()
    assert page.get_by_label("Printed").count() == 1
    page.get_by_label("Spec").select_option(str(world["homework"].pk))
    page.get_by_label("Handwritten").wait_for()
    assert page.get_by_label("Margin notes").count() == 0  # the exam spec's own kind went with it

    page.get_by_label("Printed").check()
    count = page.locator("#batch-matches")
    page.wait_for_function("() => document.getElementById('batch-matches').textContent.includes('2 images match')")
    page.get_by_label("Printed").uncheck()
    page.wait_for_function("() => document.getElementById('batch-matches').textContent.includes('3 images match')")
    page.get_by_label("Printed").check()
    page.wait_for_function("() => document.getElementById('batch-matches').textContent.includes('2 images match')")

    # a vendor with a contract for the spec: its price for the kind is the hint, the price optional
    page.get_by_label("Vendor").select_option(str(world["contracted"].pk))
    page.get_by_label("Kind").select_option("regions")
    hint = page.locator("#price-hint")
    assert "0.1200 EUR" in hint.inner_text()
    page.get_by_label("Vendor").select_option(str(world["vendor"].pk))
    assert "No contract" in hint.inner_text()

    page.get_by_label("Name").fill("Printed homework, round 1")
    page.get_by_label("Quantity").fill("5")
    page.get_by_label("Unit price").fill("0.20")
    page.get_by_label("Deadline").fill("2026-12-31")
    save_screenshot(page, "batch-new")
    page.get_by_role("button", name="Create batch").click()
    page.wait_for_url("**/batches/")
    assert "Batch Printed homework, round 1 created with 2 tasks: only 2 images match" in page.locator(
        ".messages").inner_text()
    batch = Batch.objects.get()
    assert (batch.agreed_quantity, str(batch.deadline), batch.filters["categories"]) == (2, "2026-12-31", ["printed"])
    row = page.locator(f'tr[data-batch="{batch.pk}"]')
    assert "Printed homework, round 1" in row.inner_text() and "0 / 2 accepted" in row.inner_text()
    assert count.count() == 0  # back on the overview
    assert not page.errors, page.errors


def test_a_refused_form_comes_back_with_the_input_and_the_categories_of_the_spec(browser_page, world):
    page = browser_page(world["curator"])
    page.goto(f"/batches/new/?spec={world['homework'].pk}")
    page.get_by_label("Handwritten").wait_for()
    page.get_by_label("Vendor").select_option(str(world["vendor"].pk))
    page.get_by_label("Handwritten").check()
    page.get_by_label("Name").fill("No price")
    page.get_by_label("Quantity").fill("1")
    page.get_by_role("button", name="Create batch").click()
    page.wait_for_load_state()
    assert "has no contract for" in page.locator("#id_unit_price_errors").inner_text()
    assert page.get_by_label("Name").input_value() == "No price"
    assert page.get_by_label("Handwritten").is_checked() and not page.get_by_label("Printed").is_checked()
    assert not Batch.objects.exists()
    assert not page.errors, page.errors


def test_curator_pauses_a_batch_on_its_edit_page(browser_page, world):
    batch = factories.make_batch(world["homework"], world["vendor"], images=0, quantity=2, name="Round 0")
    page = browser_page(world["curator"])
    page.goto("/batches/")
    page.locator(f'tr[data-batch="{batch.pk}"]').get_by_role("link", name="Edit").click()
    page.wait_for_url(f"**/batches/{batch.pk}/edit/")
    page.get_by_label("Status").select_option("paused")
    page.get_by_label("Deadline").fill("2026-09-01")
    page.get_by_role("button", name="Save batch").click()
    page.wait_for_url("**/batches/")
    assert "Paused" in page.locator(f'tr[data-batch="{batch.pk}"]').inner_text()
    batch.refresh_from_db()
    assert (batch.status, str(batch.deadline)) == ("paused", "2026-09-01")
    assert not page.errors, page.errors


def test_the_batch_pages_pass_the_accessibility_structure_checks(browser_page, world):
    """Named controls, ordered headings, errors as lists in alert regions (tests/browser/test_accessibility_audit.py)."""
    from tests.browser.test_accessibility_audit import STRUCTURE_JS

    batch = factories.make_batch(world["homework"], world["vendor"], images=0, quantity=1, name="Round 0")
    page = browser_page(world["curator"])
    for path in (f"/batches/new/?spec={world['homework'].pk}", f"/batches/{batch.pk}/edit/"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate(STRUCTURE_JS) == [], path
    page.goto("/batches/new/")
    page.get_by_role("button", name="Create batch").click()  # nothing chosen: errors by every required field
    page.wait_for_load_state("networkidle")
    assert page.locator("#id_spec_errors").count() == 1
    assert page.evaluate(STRUCTURE_JS) == []
    assert not page.errors, page.errors
