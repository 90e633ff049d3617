"""End to end in Debian's chromium through Playwright: a curator publishes a guide
version, the annotator is asked to acknowledge it before the next task, asks a
question about a region of an example image, and sees the curator's answer."""
import pytest
from django.conf import settings
from django.core import mail
from django.test import Client

from guides import selectors, services

pytestmark = [pytest.mark.browser]

QUAD = [[20, 10], [180, 10], [180, 90], [20, 90]]


def _page_as(browser, live_server, user):
    client = Client()
    client.force_login(user)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 768})
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "url": live_server.url,
                          "value": client.cookies[settings.SESSION_COOKIE_NAME].value}])
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_publish_acknowledge_ask_about_region_and_see_answer(browser, live_server, curator, annotator, contract,
                                                             example_image):
    curator.email = "curator@example.org"
    curator.save()
    spec = contract.spec
    # Version 1, with an example image, is published and already read by the annotator.
    from tests import factories

    v1 = factories.make_guide(spec=spec, by=curator, publish=False, body="Draw one quad per formula.")
    services.guide_example_add(version=v1, image=example_image, kind="good", caption="tight quad", regions=[QUAD])
    v1 = services.guide_version_publish(version=v1, by=curator)
    services.guide_acknowledge(version=v1, user=annotator)
    assert selectors.guide_acknowledgement_required(user=annotator, spec=spec) is None
    guide_url = f"/guides/{v1.guide_id}/"

    # The curator writes and publishes version 2 in the browser.
    cur = _page_as(browser, live_server, curator)
    cur.goto(guide_url)
    cur.get_by_role("button", name="New version").click()
    cur.fill("textarea[name=body_md]", "Draw one quad per formula.\n\nA fraction $\\frac{a}{b}$ is **one** region.")
    cur.fill("textarea[name=change_notes]", "Fractions are one region")
    cur.get_by_role("button", name="Save draft").click()
    cur.locator("#publish").click()
    cur.wait_for_url(f"**{guide_url}")
    assert "version 2" in cur.locator("main").inner_text()
    v2 = selectors.spec_current_guide_version(spec=spec)
    assert v2.number == 2

    # The work queue's gate now holds the annotator back: "Start labeling" says why and links
    # to the guide, which asks for the acknowledgement.
    assert selectors.guide_acknowledgement_required(user=annotator, spec=spec) == v2
    factories.make_batch(spec, contract.vendor, images=1)
    ann = _page_as(browser, live_server, annotator)
    ann.goto("/work/")
    ann.locator("#start-labeling").click()
    message = ann.locator("#start-message")
    message.get_by_role("link", name="open the guide").wait_for()
    assert "acknowledge version 2 of the work guide" in message.inner_text()
    message.get_by_role("link", name="open the guide").click()
    ann.wait_for_url(f"**{guide_url}")
    banner = ann.locator("#ack-required")
    assert "before you take your next task" in banner.inner_text()
    assert ann.locator("#guide-body span.math").first.get_attribute("data-latex") == "\\frac{a}{b}"
    ann.locator("#acknowledge").click()
    ann.locator("#ack-done").wait_for()
    assert selectors.guide_acknowledgement_required(user=annotator, spec=spec) is None
    # Acknowledged: the queue now hands out the task.
    ann.goto("/work/")
    ann.locator("#start-labeling").click()
    ann.wait_for_url("**/label/*/")
    ann.goto(guide_url)

    # The annotator asks about a region of the example image, clicking its four corners.
    ann.locator("a.ask-about-image").first.click()
    ann.fill("input[name=title]", "Is the fraction bar part of the region?")
    ann.fill("textarea[name=body]", "The marked part: one region or two?")
    image = ann.locator("#picker-image")
    image.wait_for()
    ann.wait_for_function("document.getElementById('picker-image').naturalWidth > 0")
    box = image.bounding_box()
    scale = box["width"] / example_image.width
    for x, y in [(30, 20), (170, 20), (170, 80), (30, 80)]:
        image.click(position={"x": x * scale, "y": y * scale})
    assert ann.locator("#region-count").inner_text() == "4 of 4 points"
    # The live server commits for real: on_commit fires and the (eager) Celery task mails the curator.
    ann.locator("#send-question").click()
    ann.wait_for_url("**/questions/*/")
    question_url = ann.url
    from guides.models import Question

    region = Question.objects.get(title="Is the fraction bar part of the region?").region
    for (x, y), (ex, ey) in zip(region, [(30, 20), (170, 20), (170, 80), (30, 80)], strict=True):
        assert abs(x - ex) <= 2 and abs(y - ey) <= 2, region
    crop_ok = ann.wait_for_function("document.getElementById('region-crop').naturalWidth > 0")
    assert crop_ok
    assert [m.to for m in mail.outbox] == [[curator.email]]

    # The curator answers.
    cur.goto(question_url)
    cur.fill("textarea[name=a-body]", "One region: the bar belongs to the fraction.")
    cur.locator("#send-answer").click()
    cur.wait_for_url(question_url)

    # The annotator is notified and sees the answer.
    ann.goto(guide_url)
    badge = ann.locator("#nav-notifications .nbadge")
    # Two "new guide version" notices and the answer.
    assert badge.inner_text() == str(selectors.notifications_unread_count(user=annotator)) == "3"
    ann.goto("/notifications/")
    newest = ann.locator("#notifications a").first
    assert "has an answer" in newest.inner_text()
    newest.click()
    ann.wait_for_url(question_url)
    assert "One region: the bar belongs to the fraction." in ann.locator("#answers").inner_text()
    assert ann.locator("#question-status").inner_text() == "Answered"

