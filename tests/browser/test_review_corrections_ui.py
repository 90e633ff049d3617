"""The review page's "Accept with corrections": the reviewer fixes a region's LaTeX in place,
previewed live by KaTeX, and accepts in one step; the fix is stored as the reviewer's version,
and the annotator's labeling page says what was changed."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.models import Annotation, Region, Review
from tests.browser.test_labeling_ui import labeling_setup  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_reviewer_corrects_a_typo_and_accepts_in_one_step(browser_page, labeling_setup):  # noqa: F811
    s = labeling_setup
    api = APIClient()
    api.force_authenticate(s["annotator"])
    task = api.post("/api/v1/tasks/next/").json()["task"]
    r = api.post("/api/v1/annotations/", {"task": task["id"], "submit": True, "regions": [
        {"kind": "quad", "points": [[80, 68], [330, 68], [330, 110], [80, 110]], "latex": "a+b"},
        {"kind": "quad", "points": [[80, 228], [330, 228], [330, 270], [80, 270]], "latex": "x^{2}+l"}]}, format="json")
    assert r.status_code == 201, r.content

    page = browser_page(s["reviewer"])
    page.goto("/review/")
    page.click("#review-next")
    page.wait_for_selector("#review-app[data-ready='1']")
    field = page.get_by_label("LaTeX of region 2 (edit to correct it)")
    field.fill(r"\frac{")  # the live preview says what KaTeX cannot render
    page.wait_for_selector("#latex-error-1:not([hidden])")
    field.fill("x^{2}+1")
    page.wait_for_selector("#latex-preview-1 .katex")
    assert page.is_checked("#decision-correct")  # typing a fix chose "Accept with corrections"
    here = page.url
    page.click("#btn-send")
    page.wait_for_function("() => document.querySelector('#save-state').textContent.startsWith('Sent')")
    # The page then takes the next one by a POST: wait for it, so no request of this page still
    # writes while the test reads (SQLite's in-memory test database locks the table).
    page.wait_for_url(lambda url: url != here)
    page.wait_for_load_state()

    review = Review.objects.get(annotation_id=r.json()["id"])
    assert review.decision == "accept" and review.corrections == {"1": ["x^{2}+l", "x^{2}+1"]}
    annotation = Annotation.objects.get(pk=review.annotation_id)
    assert annotation.current.author_id == s["reviewer"].pk
    assert list(Region.objects.filter(version=annotation.current).values_list("latex", flat=True)) == ["a+b", "x^{2}+1"]
    assert not page.errors, page.errors

    mine = browser_page(s["annotator"])  # the annotator's labeling page says what was corrected
    mine.goto(f"/label/{task['id']}/")
    mine.wait_for_selector("#label-app[data-ready='1']")
    assert mine.is_visible("#corrections")
    assert mine.inner_text("#corrections-list").strip() == "Region 2: x^{2}+l → x^{2}+1"
    assert not mine.errors, mine.errors
