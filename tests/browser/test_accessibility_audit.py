"""Accessibility regressions found by an axe-core audit of every role's pages, checked here without
axe (the project does not depend on it): a page language, a name for every form control, alt text,
heading order, header cells with text, lists that stay lists (error lists and messages announce
through a wrapping role="alert"/"status" instead of losing their list semantics), aria-label only
where a role allows it, and WCAG AA contrast (4.5:1 text, 3:1 focus ring) of the colours that were
too faint: the amber "warn" badges, the labeling toolbar's dimmed brush controls, the shortcut hint
in the Submit button, and the focus ring on light backgrounds."""
from __future__ import annotations

import re

import pytest

from common import roles
from curation.models import Image
from guides.services import notifications_create
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# One script for the structural checks; it returns a list of "what: where" problems.
STRUCTURE_JS = r"""() => {
  const problems = [];
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const where = (el) => el.outerHTML.slice(0, 120);
  if (!(document.documentElement.getAttribute("lang") || "").trim()) problems.push("no lang on <html>");
  const named = (el) => {
    if ((el.getAttribute("aria-label") || "").trim()) return true;
    const by = el.getAttribute("aria-labelledby");
    if (by && by.split(/\s+/).some((id) => (document.getElementById(id)?.textContent || "").trim())) return true;
    if (el.labels && [...el.labels].some((l) => l.textContent.trim())) return true;
    if ((el.getAttribute("title") || "").trim()) return true;
    if (el.tagName === "INPUT" && ["submit", "button", "reset"].includes(el.type) && el.value.trim()) return true;
    if (el.tagName === "BUTTON" && el.textContent.trim()) return true;
    return false;
  };
  for (const el of document.querySelectorAll("input, select, textarea, button")) {
    if (el.type === "hidden" || !visible(el)) continue;
    if (!named(el)) problems.push("control without a name: " + where(el));
  }
  for (const img of document.querySelectorAll("img")) {
    if (!img.hasAttribute("alt")) problems.push("img without alt: " + where(img));
  }
  const headings = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")].filter(visible);
  if (headings.filter((h) => h.tagName === "H1").length < 1) problems.push("no h1");
  let level = 0;
  for (const h of headings) {
    const n = Number(h.tagName[1]);
    if (n > level + 1) problems.push(`heading jumps from h${level} to h${n}: ${h.textContent.trim().slice(0, 40)}`);
    level = n;
  }
  for (const th of document.querySelectorAll("th")) {
    if (!th.textContent.trim() && !th.getAttribute("aria-label") && !["none", "presentation"].includes(th.getAttribute("role")))
      problems.push("empty header cell: " + where(th));
  }
  for (const list of document.querySelectorAll("ul[role], ol[role]")) {
    if (!["list", "none", "presentation", "listbox", "menu", "tablist", "group", "radiogroup", "tree", "toolbar", "directory", "menubar"]
        .includes(list.getAttribute("role")))
      problems.push("list with a non-list role: " + where(list));
  }
  for (const el of document.querySelectorAll("div[aria-label], span[aria-label], p[aria-label]")) {
    if (!el.getAttribute("role")) problems.push("aria-label on an element without a role: " + where(el));
  }
  return problems;
}"""

# Colours of an element as drawn: its text colour, the first opaque background behind it and the
# opacity of it and its ancestors (which blends the text into that background).
COLOURS_JS = r"""(el) => {
  const cs = getComputedStyle(el);
  let opacity = 1, bg = null;
  for (let e = el; e; e = e.parentElement) {
    const s = getComputedStyle(e);
    opacity *= Number(s.opacity);
    if (bg === null && s.backgroundColor !== "rgba(0, 0, 0, 0)" && s.backgroundColor !== "transparent") bg = s.backgroundColor;
  }
  return {fg: cs.color, bg: bg || "rgb(255, 255, 255)", opacity};
}"""


def rgb(css: str) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in re.findall(r"[\d.]+", css)[:3])
    return r, g, b


def luminance(c: tuple[float, float, float]) -> float:
    def lin(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = c
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def drawn_contrast(locator) -> float:
    """The contrast of an element's text against what is behind it, opacity included."""
    c = locator.evaluate(COLOURS_JS)
    fg, bg, alpha = rgb(c["fg"]), rgb(c["bg"]), c["opacity"]
    blended = tuple(f * alpha + b * (1 - alpha) for f, b in zip(fg, bg, strict=True))
    return contrast(blended, bg)


def test_contrast_helper_matches_the_wcag_reference_values():
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21)
    assert contrast(rgb("rgb(181, 86, 11)"), rgb("rgb(255, 243, 214)")) == pytest.approx(4.43, abs=0.01)  # the old amber


@pytest.fixture
def world():
    vendor = factories.make_vendor()
    spec = factories.make_spec(name="Active spec")
    batch = factories.make_batch(spec, vendor, images=2, name="A11y batch")
    factories.make_spec(name="Draft spec")  # status "draft": an amber badge on the spec list
    curator = factories.make_user(roles.CURATOR)
    notifications_create(users=[curator], kind="question_asked", message="A question")  # the nav's unread badge
    return {
        "spec": spec, "batch": batch, "image": Image.objects.filter(spec=spec).first(),
        "curator": curator,
        "annotator": factories.make_user(roles.ANNOTATOR, vendor=vendor),
    }


def _open(page, path: str) -> None:
    response = page.goto(path)
    assert response.status == 200, (path, response.status)
    page.wait_for_load_state("networkidle")


def test_curator_pages_have_lang_named_controls_alt_text_and_ordered_headings(browser_page, world):
    page = browser_page(world["curator"])
    spec, image = world["spec"], world["image"]
    problems = {}
    for path in ["/specs/", f"/specs/{spec.pk}/", "/specs/new/", f"/specs/{spec.pk}/edit/", "/images/",
                 f"/images/{image.pk}/", "/upload/", "/imports/", "/sources/", "/sources/new/", "/licences/",
                 "/snapshots/", "/snapshots/new/", "/batches/", "/pipeline/jobs/", "/evaluations/", "/guides/",
                 "/questions/", "/contracts/", "/people/", "/people/vendors/"]:
        _open(page, path)
        found = page.evaluate(STRUCTURE_JS)
        if found:
            problems[path] = found
    assert not problems, problems
    # The unread count is read out as "1 unread" (an aria-label on a bare span is ignored).
    assert page.get_by_role("link", name="Notifications 1 unread").count() == 1


def test_form_errors_and_messages_stay_lists_inside_live_regions(browser_page, page, live_server, world):
    curator = browser_page(world["curator"])
    _open(curator, "/sources/new/")
    form = curator.locator("main form[method=post]").first
    form.evaluate("f => { f.noValidate = true; }")
    with curator.expect_navigation():
        form.locator("button[type=submit]").first.click()
    errors = curator.locator("ul.errorlist")
    assert errors.count() >= 1
    for i in range(errors.count()):
        ul = errors.nth(i)
        assert ul.get_attribute("role") is None, ul.evaluate("e => e.outerHTML")
        assert ul.evaluate("e => e.parentElement.getAttribute('role')") == "alert"
    assert curator.evaluate(STRUCTURE_JS) == []

    # A saved vendor: the success message is a list inside a status region.
    _open(curator, "/people/vendors/")
    curator.fill("#id_name", "Vendor with a message")
    with curator.expect_navigation():
        curator.locator("#id_name").evaluate("e => e.form.requestSubmit()")
    messages = curator.locator("ul.messages")
    assert messages.count() == 1, curator.content()[:2000]
    assert messages.get_attribute("role") is None
    assert messages.evaluate("e => e.parentElement.getAttribute('role')") == "status"

    # The login page's own error (anonymous).
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill("wrong-password")
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    ul = page.locator("ul.errorlist")
    assert ul.count() == 1 and ul.get_attribute("role") is None
    assert ul.evaluate("e => e.parentElement.getAttribute('role')") == "alert"
    assert page.evaluate(STRUCTURE_JS) == []


def test_amber_badges_and_the_focus_ring_have_enough_contrast(browser_page, world):
    page = browser_page(world["curator"])
    _open(page, "/specs/")
    draft = page.locator(".status-draft").first
    assert draft.inner_text() == "Draft"
    assert drawn_contrast(draft) >= 4.5

    # Keyboard focus on a button on the light page background: the ring must stand out 3:1.
    page.locator("#status-filter").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => { const e = document.activeElement; const s = getComputedStyle(e);
        return {tag: e.tagName, text: e.textContent.trim(), shadow: s.boxShadow, outline: s.outlineColor,
                bg: getComputedStyle(document.body).backgroundColor}; }""")
    assert focused["text"] == "New spec", focused
    page_bg = rgb(focused["bg"])
    rings = [rgb(focused["outline"])] + [rgb(m) for m in re.findall(r"rgba?\([^)]*\)", focused["shadow"])]
    assert max(contrast(ring, page_bg) for ring in rings) >= 3, focused


def test_labeling_page_toolbar_labels_submit_hint_and_preview_group(browser_page, world):
    page = browser_page(world["annotator"])
    _open(page, "/work/")
    page.click("#start-labeling")
    page.wait_for_url(re.compile(r"/label/\d+/"))
    page.wait_for_selector("#label-app[data-ready='1']")
    page.wait_for_load_state("networkidle")
    # The brush controls are dimmed until the brush is chosen; their labels must still be readable.
    assert page.locator("#brush-controls.active").count() == 0
    for label in ["label[for=brush-size]", "label[for=opacity]"]:
        assert drawn_contrast(page.locator(label)) >= 4.5, label
    assert drawn_contrast(page.locator("#btn-submit kbd")) >= 4.5
    preview = page.locator(".preview")
    assert preview.get_attribute("aria-label") == "Rendered preview"
    assert preview.get_attribute("role") == "group"
    assert page.locator("#region-errors").get_attribute("role") is None
    assert page.locator("#region-errors").evaluate("e => e.parentElement.getAttribute('role')") == "alert"
    assert page.evaluate(STRUCTURE_JS) == []
    assert not page.errors, page.errors


@pytest.mark.django_db
def test_help_text_is_the_description_its_field_points_at(client):
    """Django points a field with help text at "<id>_helptext" (aria-describedby); the shared field
    template named the help "<id>_help", so screen readers found no description."""
    import re

    from common import roles
    from tests import factories

    client.force_login(factories.make_user(roles.CURATOR))
    page = client.get("/specs/new/").content.decode()
    described = set(re.findall(r'aria-describedby="([^"]+)"', page))
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    helptexts = {d for d in described if d.endswith("_helptext")}
    assert helptexts and helptexts <= ids, helptexts - ids
