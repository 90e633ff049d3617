"""Every role's main pages in a real browser under the Content-Security-Policy (config/settings.py):
no script, style, font, image or fetch is refused, no script fails, and the behaviours moved out of
inline handlers into static/js/common.js (data-autosubmit, data-confirm) still work."""
from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User

from common import roles
from curation.models import Image
from guides.services import guide_acknowledge, guide_example_add, guide_version_publish, question_ask
from labeling import services as ls
from pipeline.stats import spec_stats_compute
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

GUIDE_BODY = "Write fractions as $\\frac{a}{b}$, never as a/b.\n\n$$x^2 + y^2 = r^2$$"


@pytest.fixture
def watched(browser_page):
    """`watched(user)`: a logged-in page recording CSP violations and uncaught errors."""

    def open_as(user):
        page = browser_page(user) if user is not None else _anonymous(browser_page)
        page.csp = []
        page.on("console", lambda msg: page.csp.append(f"{page.url}: {msg.text}")
                if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text else None)
        return page

    return open_as


def _anonymous(browser_page):
    page = browser_page(factories.make_user(roles.CURATOR))
    page.context.clear_cookies()
    return page


def visit(page, path: str, ready: str | None = None) -> None:
    response = page.goto(path)
    assert response.status == 200, (path, response.status)
    assert "content-security-policy" in response.headers, path
    if ready:
        page.wait_for_selector(ready)
    page.wait_for_load_state("networkidle")


def assert_clean(page) -> None:
    assert not page.csp, page.csp
    assert not page.errors, page.errors


@pytest.fixture
def world(qa_world):
    w = qa_world
    spec_stats_compute(spec=w.spec)
    version = factories.make_guide(spec=w.spec, body=GUIDE_BODY, by=w.curator, publish=False)
    guide_example_add(version=version, image=Image.objects.filter(spec=w.spec).first(), kind="good",
                      caption="One quad per line", regions=[[[10, 10], [90, 10], [90, 40], [10, 40]]])
    version = guide_version_publish(version=version, by=w.curator)
    question = question_ask(asked_by=w.a1, spec=w.spec, title="Matrices?",
                            body="Is $\\begin{pmatrix}1\\end{pmatrix}$ one formula?", guide_version=version)
    snapshot = factories.make_snapshot(spec=w.spec, name="release-1", created_by=w.curator)
    # A fresh batch for V1, so the annotator has a task to open and the reviewer one to review.
    factories.make_batch(w.spec, w.v1, images=2, name="CSP batch")
    w.version, w.question, w.snapshot = version, question, snapshot
    return w


def test_curator_pages_run_under_the_policy_and_autosubmit_still_filters(watched, world):
    page = watched(world.curator)
    spec, image = world.spec, Image.objects.filter(spec=world.spec).first()
    for path, ready in [
        ("/specs/", None), (f"/specs/{spec.pk}/", None), (f"/specs/{spec.pk}/edit/", None),
        ("/images/", None), (f"/images/{image.pk}/", None), ("/upload/", None), ("/imports/", None),
        (f"/specs/{spec.pk}/qa/", "#qa-throughput svg.chart"),
        ("/snapshots/", None), (f"/snapshots/{world.snapshot.pk}/", None),
        ("/guides/", None), (f"/guides/{world.version.guide_id}/", "span.math .katex"),
        ("/questions/", None), (f"/questions/{world.question.pk}/", "span.math .katex"),
        ("/pipeline/jobs/", None), ("/evaluations/", None), ("/contracts/", None), ("/people/", None),
        ("/review/", None),
    ]:
        visit(page, path, ready)
    # KaTeX laid out the guide's math with its own fonts (font-src) and inline styles (style-src).
    visit(page, f"/guides/{world.version.guide_id}/", "span.math .katex")
    assert page.locator("span.math .katex").count() == 2
    assert page.evaluate("document.fonts.check('16px KaTeX_Main')")
    assert_clean(page)

    # data-autosubmit: choosing a status reloads the list filtered, with no button pressed.
    visit(page, "/specs/")
    with page.expect_navigation():
        page.select_option("#status-filter", "active")
    assert re.search(r"[?&]status=active\b", page.url), page.url
    visit(page, "/snapshots/")
    with page.expect_navigation():
        page.select_option("#snap-spec", str(spec.pk))
    assert f"spec={spec.pk}" in page.url
    assert page.locator("#snap-spec").input_value() == str(spec.pk)
    assert_clean(page)


def test_deactivate_asks_first_and_cancel_keeps_the_user(watched, world):
    page = watched(world.curator)
    visit(page, "/people/")
    form = page.locator(f"form[action='/people/{world.a2.pk}/deactivate/']")
    assert form.get_attribute("data-confirm") == "Deactivate a2 and revoke their token?"
    asked = []

    def answer(dialog, accept):
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    form.get_by_role("button").click()
    page.wait_for_timeout(300)
    assert asked == ["Deactivate a2 and revoke their token?"]
    assert User.objects.get(pk=world.a2.pk).is_active

    page.once("dialog", lambda d: answer(d, True))
    with page.expect_navigation():
        form.get_by_role("button").click()
    assert len(asked) == 2
    assert not User.objects.get(pk=world.a2.pk).is_active
    assert "deactivated" in page.locator(".messages").inner_text()
    assert_clean(page)


def test_annotator_labeling_page_renders_latex_preview_under_the_policy(watched, world):
    annotator = factories.make_user(roles.ANNOTATOR, vendor=world.v1)
    page = watched(annotator)
    # The spec's guide must be acknowledged before its tasks can be taken: on the guide's page.
    visit(page, f"/guides/{world.version.guide_id}/", "span.math .katex")
    with page.expect_navigation():
        page.click("#acknowledge")
    visit(page, "/work/")
    page.click("#start-labeling")
    page.wait_for_url(re.compile(r"/label/\d+/"))
    page.wait_for_selector("#label-app[data-ready='1']")
    page.wait_for_load_state("networkidle")
    # A region by four clicks, then its LaTeX, previewed by KaTeX beside it.
    page.locator("#canvas").focus()
    page.keyboard.press("q")
    box = page.locator("#canvas").bounding_box()
    for fx, fy in [(0.3, 0.3), (0.6, 0.3), (0.6, 0.5), (0.3, 0.5)]:
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    assert page.locator("#region-list li").count() == 1
    page.fill("#latex-input", r"\frac{x^2}{2}")
    page.wait_for_selector("#latex-preview .katex")
    visit(page, "/questions/")
    # The question form's region picker (static/js/guides/question_form.js): four clicks fill the field.
    visit(page, f"/guides/{world.version.guide_id}/", "span.math .katex")
    with page.expect_navigation():
        page.click("a.ask-about-image")
    page.wait_for_function("() => document.getElementById('picker-image').complete")
    box = page.locator("#picker-image").bounding_box()
    for fx, fy in [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]:
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    assert page.locator("#region-count").inner_text() == "4 of 4 points"
    assert len(json.loads(page.locator("#id_region").input_value())) == 4
    assert_clean(page)


def test_reviewer_and_model_team_pages_run_under_the_policy(watched, world):
    reviewer = factories.make_user(roles.REVIEWER, vendor=world.v1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=world.v1)
    guide_acknowledge(version=world.version, user=annotator)
    claim = ls.task_claim_next(annotator=annotator)
    assert claim.task is not None and claim.task.batch.name == "CSP batch"
    ls.annotation_create(task=claim.task, annotator=annotator, regions=[factories.quad()], time_spent_seconds=5,
                         submit=True)
    page = watched(reviewer)
    visit(page, "/review/", "#review-next")
    with page.expect_navigation():
        page.click("#review-next")
    page.wait_for_selector("#review-app[data-ready='1']")
    page.wait_for_load_state("networkidle")
    page.wait_for_selector("#review-regions .katex")
    assert_clean(page)

    page = watched(factories.make_user(roles.MODEL_TEAM))
    for path in ["/model-team/", "/evaluations/", "/pipeline/jobs/", "/snapshots/"]:
        visit(page, path)
    assert_clean(page)


def test_api_docs_and_redoc_run_under_the_policy(watched, world):
    page = watched(world.curator)
    visit(page, "/api/docs/", ".swagger-ui .opblock")
    # Past ~150 operations Swagger UI renders only those in view (a virtual list): the first ones
    # now, the last (the webhooks') once scrolled to the end.
    assert page.locator(".swagger-ui .opblock").count() >= 10
    last = page.locator(".swagger-ui .opblock-summary-path", has_text="/api/v1/webhooks/").first
    for _ in range(200):
        if last.count():
            break
        page.mouse.wheel(0, 4000)
        page.wait_for_timeout(50)
    last.wait_for()
    assert_clean(page)
    visit(page, "/api/redoc/", ".api-content")
    page.wait_for_selector("h1:has-text('Mathset API')")
    # ReDoc's side menu always shows Redocly's logo from their CDN; the policy refuses it (nothing
    # leaves the site) and ReDoc hides the broken image itself. That is the one refusal allowed.
    page.csp = [m for m in page.csp if "https://cdn.redoc.ly/redoc/logo-mini.svg" not in m]
    assert_clean(page)


def test_admin_login_change_list_and_change_form_run_under_the_policy(watched, world):
    User.objects.create_superuser("root", "root@example.com", "pass-word-123")
    page = watched(None)
    visit(page, "/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pass-word-123")
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert page.url.endswith("/admin/"), page.url
    visit(page, "/admin/auth/user/")
    page.check("#action-toggle")  # the admin's actions.js: select all rows
    assert page.locator("input.action-select:checked").count() == User.objects.count()
    visit(page, f"/admin/auth/user/{world.a1.pk}/change/")
    visit(page, "/admin/auth/group/add/")  # the two-box permission selector (SelectFilter2.js)
    page.wait_for_selector("#id_permissions_add_all")
    assert_clean(page)
