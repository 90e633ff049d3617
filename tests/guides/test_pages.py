"""The pages: they render for each role, write through the services, and a foreign
vendor's objects are 404 there too."""
from pathlib import Path

import pytest
from django.test import Client

from common import roles
from guides import services
from guides.models import Contract, GuideVersion, Question
from tests import factories

QUAD = [[20, 10], [180, 10], [180, 60], [20, 60]]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world(annotator, contract, published, curator, example_image):
    v2 = services.guide_version_create(guide=published.guide, created_by=curator, body_md="v2 text $y^2$")
    services.guide_example_add(version=v2, image=example_image, kind="good", regions=[QUAD])
    v2 = services.guide_version_publish(version=v2, by=curator)
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Region q", body="b",
                                     guide_version=v2, image=example_image, region=QUAD)
    return {"v1": published, "v2": v2, "question": question, "guide": published.guide}


def test_every_page_renders_for_curator(world, curator):
    c = _client(curator)
    g, v2, q = world["guide"], world["v2"], world["question"]
    for url in ["/guides/", f"/guides/{g.id}/", f"/guides/{g.id}/diff/", f"/guide-versions/{v2.id}/readers/",
                "/questions/", f"/questions/{q.id}/", "/notifications/", "/contracts/", "/contracts/report/",
                "/guides/new/"]:
        response = c.get(url)
        assert response.status_code == 200, url


def test_annotator_is_asked_to_acknowledge_then_is_not(world, annotator):
    c = _client(annotator)
    g, v2 = world["guide"], world["v2"]
    listing = c.get("/guides/").content.decode()
    assert "v2" in listing and "please read and acknowledge" in listing
    page = c.get(f"/guides/{g.id}/").content.decode()
    assert 'id="ack-required"' in page and f"I have read version {v2.number}" in page
    assert 'data-latex="y^2"' in page
    c.post(f"/guide-versions/{v2.id}/acknowledge/")
    page = c.get(f"/guides/{g.id}/").content.decode()
    assert 'id="ack-required"' not in page and 'id="ack-done"' in page
    assert "please read and acknowledge" not in c.get("/guides/").content.decode()


def test_foreign_vendor_gets_404_on_pages(world, foreign_annotator):
    c = _client(foreign_annotator)
    g, v2, q = world["guide"], world["v2"], world["question"]
    for url in [f"/guides/{g.id}/", f"/guides/{g.id}/diff/", f"/questions/{q.id}/"]:
        assert c.get(url).status_code == 404, url
    assert c.post(f"/guide-versions/{v2.id}/acknowledge/").status_code == 404
    assert "Region q" not in c.get("/questions/").content.decode()
    assert c.get("/contracts/report/").status_code == 403


def test_curator_writes_and_publishes_a_guide_through_pages(curator, contract):
    c = _client(curator)
    response = c.post("/guides/new/", {"spec": contract.spec_id, "title": "Page guide", "body_md": "Hello $a$"})
    assert response.status_code == 302
    version = GuideVersion.objects.get(guide__title="Page guide")
    c.post(f"/guide-versions/{version.id}/edit/", {"save": "1", "body_md": "Changed <script>x</script>",
                                                   "change_notes": "n"})
    version.refresh_from_db()
    assert version.body_md.startswith("Changed") and "<script>" not in version.body_html
    c.post(f"/guide-versions/{version.id}/publish/")
    version.refresh_from_db()
    assert version.is_published


def test_annotator_asks_about_a_region_through_the_page(world, annotator, example_image, contract):
    c = _client(annotator)
    url = f"/questions/new/?spec={contract.spec_id}&guide_version={world['v2'].id}&image={example_image.id}"
    form = c.get(url).content.decode()
    assert 'id="picker"' in form
    response = c.post(url, {"spec": contract.spec_id, "title": "Where is the bar?", "body": "here",
                            "guide_version": world["v2"].id, "image": example_image.id,
                            "region": "[[10,10],[100,10],[100,50],[10,50]]"})
    assert response.status_code == 302
    question = Question.objects.get(title="Where is the bar?")
    assert question.region == [[10, 10], [100, 10], [100, 50], [10, 50]]
    bad = c.post(url, {"spec": contract.spec_id, "title": "t", "body": "b", "image": example_image.id,
                       "region": "[[1,1],[2,2]]"})
    assert bad.status_code == 200 and "four [x, y] points" in bad.content.decode()


def test_question_asked_from_the_labeling_page_records_its_task(world, annotator, contract):
    # The labeling page links to /questions/new/?task=<id>&spec=<id>; the form dropped `task`,
    # so the curator never learnt which task the question was about.
    import re

    c = _client(annotator)
    # A task of the annotator's vendor in this spec (question_ask refuses any other id).
    task = factories.make_batch(spec=contract.spec, vendor=contract.vendor, images=1).tasks.first()
    url = f"/questions/new/?task={task.id}&spec={contract.spec_id}"
    form = c.get(url).content.decode()
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    assert hidden["task_ref"] == str(task.id)
    response = c.post(url, {"spec": contract.spec_id, "title": "Dot or cdot?", "body": "a.b", **hidden})
    assert response.status_code == 302
    question = Question.objects.get(title="Dot or cdot?")
    assert question.task_ref == task.id
    assert f"task {task.id}" in c.get(f"/questions/{question.pk}/").content.decode()


def test_question_asked_from_a_task_points_at_a_region_of_its_image(world, annotator, contract):
    # The labeling page's link names the task's image: the form shows that image to click the
    # region's corners on (before, only a guide example's image could be pointed at).
    import re

    from guides.models import GuideExample

    c = _client(annotator)
    factories.make_image(spec=contract.spec)
    examples = GuideExample.objects.values("image_id")
    task = factories.make_batch(spec=contract.spec, vendor=contract.vendor, images=2).tasks.exclude(
        image_id__in=examples).first()
    url = f"/questions/new/?task={task.id}&spec={contract.spec_id}&image={task.image_id}"
    form = c.get(url).content.decode()
    assert f'src="/api/v1/images/{task.image_id}/file/"' in form and 'id="picker"' in form
    assert c.get(f"/api/v1/images/{task.image_id}/file/").status_code == 200  # the annotator may fetch it
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    response = c.post(url, {"spec": contract.spec_id, "title": "Which formula?", "body": "this one", **hidden,
                            "region": "[[10,10],[60,10],[60,40],[10,40]]"})
    assert response.status_code == 302
    question = Question.objects.get(title="Which formula?")
    assert (question.task_ref, question.image_id) == (task.id, task.image_id)
    assert question.region == [[10, 10], [60, 10], [60, 40], [10, 40]]
    factories.make_image(spec=contract.spec)
    other = factories.make_batch(spec=contract.spec, vendor=factories.make_vendor(), images=1).tasks.exclude(
        image_id__in=examples).exclude(image_id=task.image_id).first()
    page = c.get(f"/questions/new/?spec={contract.spec_id}&image={other.image_id}").content.decode()
    assert 'id="picker"' not in page  # another vendor's image is not shown


def test_question_form_shows_the_errors_of_its_hidden_fields(world, annotator, contract):
    # guide_version and task_ref come hidden from the linking page; refused, they re-rendered the
    # form with no visible reason.
    c = _client(annotator)
    ask = {"spec": contract.spec_id, "title": "t", "body": "b"}
    page = c.post("/questions/new/", {**ask, "task_ref": 0}).content.decode()  # refused by the form
    assert "Task ref: Ensure this value is greater than or equal to 1." in page
    page = c.post("/questions/new/", {**ask, "guide_version": 987654}).content.decode()  # refused by the view
    assert "Guide version: No such guide version." in page
    assert not Question.objects.filter(title="t").exists()


def test_notifications_quote_titles_as_written(annotator, contract, curator):
    # Titles went into the messages through repr(): "Is a dot a \cdot?" read "'Is a dot a \\cdot?'" on
    # the notifications page and in the e-mail, and an apostrophe switched the quotes.
    from tests.pages import text

    title = "Is a dot a \\cdot? Don't know"
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title=title, body="b")
    services.question_answer(question=question, author=curator, body="Yes.")
    services.question_close(question=question, by=curator)
    guide_title = "Fractions: \\frac vs \\dfrac"
    services.guide_version_publish(version=factories.make_guide(spec=contract.spec, title=guide_title, publish=False),
                                   by=curator)
    page = text(_client(annotator).get("/notifications/"))
    assert f"Your question “{title}” has an answer." in page
    assert f"Your question “{title}” was closed." in page
    assert f"Guide “{guide_title}” version 1 is published" in page


def test_contract_form_shows_service_errors_on_the_field(curator, vendor, spec):
    c = _client(curator)
    response = c.post("/contracts/", {"vendor": vendor.id, "spec": spec.id, "currency": "us1",
                                      "price_regions": "1", "price_latex": "1", "price_full": "1",
                                      "agreed_quantity": 5, "starts_on": "2026-01-01", "deadline": "2026-02-01"})
    assert response.status_code == 200
    assert "ISO 4217" in response.content.decode()
    assert Contract.objects.count() == 0


def test_cost_report_csv_download(curator, contract):
    response = _client(curator).get("/contracts/report/?download=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode("utf-8-sig").splitlines()[0].startswith("section,")


def test_unread_badge_in_navigation(world, curator):
    page = _client(curator).get("/guides/").content.decode()
    assert 'aria-label="1 unread"' in page  # the question asked in `world`


def test_vendor_manager_sees_readers_of_own_vendor_only(world, vendor, foreign_vendor, annotator):
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    factories.make_user(roles.ANNOTATOR, vendor=foreign_vendor)
    page = _client(manager).get(f"/guide-versions/{world['v2'].id}/readers/").content.decode()
    assert annotator.username in page
    assert foreign_vendor.name not in page


def _rows_for_page(*, vendor_ids=None, spec_ids=None):
    import datetime as dt

    from guides.costs import BatchInfo, TaskRow

    vendor_id, spec_id = vendor_ids[0], spec_ids[0]
    rows = [TaskRow(vendor_id=vendor_id, spec_id=spec_id, kind="latex", status="accepted", batch_id=5,
                    accepted_on=dt.date(2026, 2, 3), count=4),
            TaskRow(vendor_id=vendor_id, spec_id=spec_id, kind="latex", status="rejected", batch_id=5, count=2)]
    batches = [BatchInfo(batch_id=5, name="Slow batch", vendor_id=vendor_id, spec_id=spec_id, target=100,
                         started_on=dt.date(2020, 1, 1), deadline=dt.date(2099, 1, 1))]
    return rows, batches


def test_cost_report_page_shows_amounts_and_pace_warning(curator, contract, settings):
    settings.MATHSET_COST_ROWS_PROVIDER = "tests.guides.test_pages._rows_for_page"
    page = _client(curator).get("/contracts/report/").content.decode()
    assert "1.0000 USD" in page  # 4 LaTeX tasks x 0.25; the 2 rejected are unpaid
    assert "Behind pace" in page and "Slow batch" in page
    assert "Rejected (unpaid): 2" in page


def test_guide_page_renders_math_with_the_vendored_katex(published, annotator):
    from django.contrib.staticfiles import finders

    assert finders.find("vendor/katex/katex.min.js") and finders.find("vendor/katex/LICENSE")
    page = _client(annotator).get(f"/guides/{published.guide_id}/").content.decode()
    # The render call is a static file, not inline: the Content-Security-Policy refuses inline scripts.
    assert "vendor/katex/katex.min.js" in page and "js/guides/math.js" in page
    assert "katex.render" in Path(finders.find("js/guides/math.js")).read_text()


@pytest.mark.parametrize("bad", ["²", "99999999999999999999"])
def test_guide_pages_given_a_version_that_is_no_id_show_the_current_versions(world, curator, bad):
    # "²".isdigit() is true and reached the ORM as pk="²": a 500.
    c = _client(curator)
    g = world["guide"]
    assert c.get(f"/guides/{g.id}/", {"version": bad}).status_code == 200
    r = c.get(f"/guides/{g.id}/diff/", {"a": bad, "b": world["v2"].id})
    assert r.status_code == 200 and r.context["new"] == world["v2"]


def test_question_list_pages_through_every_question_keeping_the_filter(annotator, contract, curator):
    # The page used to stop silently at the newest 200 questions.
    from guides.views import QUESTIONS_PER_PAGE

    for n in range(QUESTIONS_PER_PAGE + 3):
        services.question_ask(asked_by=annotator, spec=contract.spec, title=f"Question number {n}", body="b")
    c = _client(curator)
    first = c.get("/questions/", {"status": "open"}).content.decode()
    assert "Question number 52" in first and "Question number 2<" not in first  # newest first
    assert f"Page 1 of 2 ({QUESTIONS_PER_PAGE + 3} questions)" in first
    assert 'href="?status=open&amp;page=2"' in first
    second = c.get("/questions/", {"status": "open", "page": 2}).content.decode()
    assert all(f"Question number {n}<" in second for n in range(3)) and "Question number 3<" not in second
    assert c.get("/questions/", {"page": "abc"}).status_code == 200
