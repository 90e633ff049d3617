"""Audit of guides: acknowledging, who hears of a new version, questions about a task,
the sanitiser and LaTeX, and taking an answer back out of the FAQ."""
import re

import pytest
from django.test import Client

from common import roles
from guides import selectors, services
from guides.models import Notification, Question
from guides.rendering import render_markdown
from tests import factories
from tests.labeling.conftest import client_for

QUAD = [[20, 10], [180, 10], [180, 60], [20, 60]]


def _page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# ------------------------------------------------------------ acknowledging


@pytest.mark.parametrize("target", ["https://evil.example/phish", "//evil.example/phish", "javascript:alert(1)"])
def test_acknowledge_page_never_redirects_off_site(annotator, published, target):
    response = _page(annotator).post(f"/guide-versions/{published.pk}/acknowledge/", {"next": target})
    assert response.status_code == 302
    assert response["Location"] == f"/guides/{published.guide_id}/"


def test_acknowledge_page_still_follows_a_local_next(annotator, published):
    response = _page(annotator).post(f"/guide-versions/{published.pk}/acknowledge/", {"next": "/tasks/"})
    assert response.status_code == 302 and response["Location"] == "/tasks/"


# --------------------------------------------- vendors working through batches


@pytest.fixture
def batch_annotator(spec):
    """An annotator whose vendor works on `spec` through a batch, without a contract."""
    vendor = factories.make_vendor()
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_batch(spec=spec, vendor=vendor, images=1)
    return annotator


def test_batch_vendor_is_told_of_the_version_it_must_acknowledge(batch_annotator, spec, curator):
    version = factories.make_guide(spec=spec, by=curator)
    # The work queue holds their batch back until they acknowledge the version ...
    assert selectors.guide_acknowledgement_required(user=batch_annotator, spec=spec) == version
    # ... so they must be told it exists, exactly once.
    assert Notification.objects.filter(user=batch_annotator, kind=Notification.Kind.GUIDE_PUBLISHED).count() == 1


def test_vendor_with_contract_and_batch_is_told_once(annotator, contract, curator):
    factories.make_batch(spec=contract.spec, vendor=contract.vendor, images=1)
    factories.make_guide(spec=contract.spec, by=curator)
    assert Notification.objects.filter(user=annotator, kind=Notification.Kind.GUIDE_PUBLISHED).count() == 1


def test_unrelated_vendors_are_not_told(annotator, contract, foreign_annotator, foreign_vendor, curator):
    factories.make_batch(spec=factories.make_spec(), vendor=foreign_vendor, images=1)
    factories.make_guide(spec=contract.spec, by=curator)
    assert not Notification.objects.filter(user=foreign_annotator).exists()
    assert not Notification.objects.filter(user=curator).exists()


def test_batch_vendor_people_are_listed_among_readers(batch_annotator, spec, curator):
    version = factories.make_guide(spec=spec, by=curator)
    rows = selectors.version_readers(user=curator, version=version)
    assert [(r["user"], r["acknowledged_at"]) for r in rows] == [(batch_annotator, None)]


# ------------------------------------------------------- questions about a task


def _ask(api, spec, **extra):
    return api.post("/api/v1/questions/", {"spec": spec.id, "title": "Which region?", "body": "This one.", **extra},
                    format="json")


def test_question_may_name_a_task_of_the_askers_vendor(batch_annotator, spec, curator):
    factories.make_guide(spec=spec, by=curator)
    task = factories.make_batch(spec=spec, vendor=batch_annotator.vendor_membership.vendor, images=1).tasks.first()
    response = _ask(client_for(batch_annotator), spec, task_ref=task.id, image=task.image_id, region=QUAD)
    assert response.status_code == 201, response.content
    assert response.json()["task_ref"] == task.id


def test_question_may_not_name_another_vendors_task(annotator_api, contract, published, foreign_vendor):
    task = factories.make_batch(spec=contract.spec, vendor=foreign_vendor, images=1).tasks.first()
    response = _ask(annotator_api, contract.spec, task_ref=task.id)
    assert response.status_code == 400 and "task_ref" in response.json()
    assert not Question.objects.exists()


def test_question_may_not_name_a_missing_task_or_one_of_another_spec(annotator_api, annotator, contract, published):
    other = factories.make_batch(vendor=contract.vendor, images=1).tasks.first()  # same vendor, another spec
    for task_ref in (other.id, other.id + 1000):
        response = _ask(annotator_api, contract.spec, task_ref=task_ref)
        assert response.status_code == 400 and "task_ref" in response.json(), task_ref
    assert not Question.objects.exists()


# ------------------------------------------------------------ the sanitiser


_ATTR_MATH = [
    '<a title="$" onmouseover=alert(1) x="$">hi</a>',
    '<a href="$x$">link</a>',
    '[link](https://example.org "$x^2$")',
    '![$a_1$](https://example.org/a.png)',
    '<abbr title="$a$ and $b$">ab</abbr>',
]


def _tags(html: str) -> list[tuple[str, list[str]]]:
    """(tag, attribute names) of every start tag, as a browser would read them."""
    from html.parser import HTMLParser

    found = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, [name for name, _ in attrs]))

    P().feed(html)
    return found


@pytest.mark.parametrize("text", _ATTR_MATH)
def test_latex_inside_an_attribute_cannot_break_out_of_it(text):
    from guides.rendering import ALLOWED_ATTRIBUTES

    html = render_markdown(text)
    for tag, names in _tags(html):
        if tag == "span":
            assert names == ["class", "data-latex", "data-display"], html
            continue
        allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | ({"rel"} if tag == "a" else set())
        assert set(names) <= allowed, (tag, names, html)


def test_latex_in_an_attribute_is_kept_as_its_source_text():
    html = render_markdown('[link](https://example.org "$x^2 < 1$")')
    assert 'title="$x^2 &lt; 1$"' in html


def test_latex_in_text_still_becomes_a_math_span():
    html = render_markdown('Write $x^2$ and <abbr title="t">T</abbr> $$\\frac{a}{b}$$')
    assert '<span class="math math-inline" data-latex="x^2" data-display="false">x^2</span>' in html
    assert 'data-latex="\\frac{a}{b}" data-display="true"' in html
    assert '<abbr title="t">T</abbr>' in html


# ---------------------------------------------------------- FAQ: demoting


@pytest.fixture
def promoted(annotator, contract, published, curator):
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Bar?", body="A fraction bar")
    services.question_answer(question=question, author=curator, body="One region.")
    services.question_promote_to_faq(question=question, by=curator, faq_question="Is a fraction one region?")
    return question


def test_demoted_answer_leaves_the_next_version_but_not_the_published_one(promoted, published, curator, curator_api):
    v2 = services.guide_version_publish(
        version=services.guide_version_create(guide=published.guide, created_by=curator), by=curator)
    assert [f.source_question_id for f in v2.faq.all()] == [promoted.id]
    response = curator_api.post(f"/api/v1/questions/{promoted.id}/demote/")
    assert response.status_code == 200, response.content
    assert response.json()["promoted_to_faq"] is False
    v3 = services.guide_version_create(guide=published.guide, created_by=curator)
    assert list(v3.faq.all()) == []
    assert [f.source_question_id for f in v2.faq.all()] == [promoted.id]  # published: unchanged


def test_demoting_takes_the_answer_out_of_the_open_draft(promoted, published, curator):
    draft = services.guide_version_create(guide=published.guide, created_by=curator)
    assert draft.faq.count() == 1
    services.question_demote_from_faq(question=promoted, by=curator)
    assert draft.faq.count() == 0
    services.guide_version_publish(version=draft, by=curator)
    assert draft.faq.count() == 0  # publishing does not bring it back


def test_an_answer_promoted_again_returns_to_the_faq(promoted, published, curator):
    v2 = services.guide_version_publish(
        version=services.guide_version_create(guide=published.guide, created_by=curator), by=curator)
    services.question_demote_from_faq(question=promoted, by=curator)
    v3 = services.guide_version_publish(
        version=services.guide_version_create(guide=published.guide, created_by=curator), by=curator)
    assert v3.faq.count() == 0
    services.question_promote_to_faq(question=promoted, by=curator, faq_answer="Yes, one region.")
    v4 = services.guide_version_create(guide=published.guide, created_by=curator)
    assert [f.answer_md for f in v4.faq.all()] == ["Yes, one region."]
    assert v2.faq.count() == 1


def test_only_curators_demote(promoted, annotator_api, foreign_api):
    assert annotator_api.post(f"/api/v1/questions/{promoted.id}/demote/").status_code == 403
    assert foreign_api.post(f"/api/v1/questions/{promoted.id}/demote/").status_code == 404
    promoted.refresh_from_db()
    assert promoted.promoted_to_faq is True


def test_demoting_a_question_not_in_the_faq_is_refused(annotator, contract, curator_api):
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="t", body="b")
    response = curator_api.post(f"/api/v1/questions/{question.id}/demote/")
    assert response.status_code == 400


def test_curator_demotes_from_the_question_page(promoted, curator, published):
    c = _page(curator)
    page = c.get(f"/questions/{promoted.id}/").content.decode()
    assert re.search(r'name="op" value="demote"', page)
    response = c.post(f"/questions/{promoted.id}/", {"op": "demote"})
    assert response.status_code == 302
    promoted.refresh_from_db()
    assert promoted.promoted_to_faq is False


def test_vendor_cannot_demote_from_the_question_page(promoted, annotator):
    c = _page(annotator)
    assert 'value="demote"' not in c.get(f"/questions/{promoted.id}/").content.decode()
    assert c.post(f"/questions/{promoted.id}/", {"op": "demote"}).status_code == 403
    promoted.refresh_from_db()
    assert promoted.promoted_to_faq is True
