"""The labeling pages through Django's test client: they render for the right
people with what the browser needs, and never show another vendor's work."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from common import roles
from labeling.services import annotation_create, review_create, task_claim_next
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_my_work_lists_active_batches_and_start_button(batch, annotator):
    r = client_for(annotator).get("/work/")
    assert r.status_code == 200
    html = r.content.decode()
    assert batch.name in html and 'id="start-labeling"' in html


def test_my_work_hides_other_vendors_batches(batch, spec):
    other = factories.make_user(roles.ANNOTATOR, vendor=factories.make_vendor())
    html = client_for(other).get("/work/").content.decode()
    assert batch.name not in html


def test_pages_require_login(batch):
    task = batch.tasks.first()
    for url in ("/work/", f"/label/{task.id}/", "/review/"):
        r = Client().get(url)
        assert r.status_code == 302 and "/accounts/login/" in r["Location"], url


def test_label_page_renders_task_with_vendored_katex(batch, annotator):
    task = batch.tasks.first()
    r = client_for(annotator).get(f"/label/{task.id}/")
    assert r.status_code == 200
    html = r.content.decode()
    assert f'data-task="{task.id}"' in html and f'data-user="{annotator.id}"' in html
    assert "vendor/katex/katex.min.js" in html and "js/labeling/label.js" in html
    assert "No guide yet" in html
    assert 'id="categories-data"' in html and '"printed"' in html  # the spec's categories for the region editor


def test_annotator_of_another_vendor_gets_404_on_task_page(batch):
    task = batch.tasks.first()
    other = factories.make_user(roles.ANNOTATOR, vendor=factories.make_vendor())
    assert client_for(other).get(f"/label/{task.id}/").status_code == 404


def _submitted(batch, annotator, **region):
    task = task_claim_next(annotator=annotator).task
    return annotation_create(task=task, annotator=annotator, regions=[quad(**region)], submit=True)


def test_review_page_shows_oldest_submitted_annotation(batch, annotator, reviewer):
    ann = _submitted(batch, annotator)
    r = client_for(reviewer).post("/review/next/", follow=True)  # "Review next" (a GET takes nothing)
    assert r.status_code == 200 and r.redirect_chain == [(f"/review/{ann.id}/", 303)]
    html = r.content.decode()
    assert f'data-annotation="{ann.id}"' in html and "Wrong region" in html and "Guide violation" in html


def test_review_page_of_other_vendor_is_404(batch, annotator):
    ann = _submitted(batch, annotator)
    foreign = factories.make_user(roles.REVIEWER, vendor=factories.make_vendor())
    assert client_for(foreign).get(f"/review/{ann.id}/").status_code == 404
    assert f'data-annotation="{ann.id}"' not in client_for(foreign).post("/review/next/", follow=True).content.decode()


def test_annotators_cannot_open_the_review_page(batch, annotator):
    ann = _submitted(batch, annotator)
    assert client_for(annotator).get("/review/").status_code == 404
    assert client_for(annotator).post("/review/next/").status_code == 404
    assert client_for(annotator).get(f"/review/{ann.id}/").status_code == 404


def test_empty_review_queue_says_so(reviewer):
    r = client_for(reviewer).get("/review/")
    assert r.status_code == 200 and "Nothing is waiting for your review" in r.content.decode()


@pytest.mark.parametrize("who", ["curator", "reviewer"])
def test_empty_review_queue_links_back_to_a_page_the_reviewer_may_open(who, request):
    # Curators review too; "Back to my work" sent them to /work/, a vendor member's page (403).
    user = request.getfixturevalue(who)
    client = client_for(user)
    html = client.get("/review/").content.decode()
    assert "Nothing is waiting for your review" in html
    back = re.search(r'Nothing is waiting for your review\. <a href="([^"]+)"', html).group(1)
    assert client.get(back).status_code == 200


def test_my_work_shows_rejection_reasons_and_comment(batch, annotator, reviewer):
    ann = _submitted(batch, annotator)
    review_create(annotation=ann, reviewer=reviewer, decision="reject", reasons=["latex_error", "wrong_region"],
                  comment="the exponent is 3")
    html = client_for(annotator).get("/work/").content.decode()
    assert "LaTeX error, Wrong region" in html and "the exponent is 3" in html
    assert f'href="/label/{ann.task_id}/"' in html


def test_after_submit_my_work_says_why_tasks_wait_instead_of_none_left(batch, spec, annotator):
    # The labeling page sends the annotator to /work/?done=1 when the queue gives no next task. When
    # the tasks wait behind a newly published guide version, "There is no further task for you
    # right now" sent them home; the page now names the guide to read, with its link.
    client = client_for(annotator)
    html = client.get("/work/?done=1").content.decode()
    assert "There is no further task for you right now" in html and "held-back" not in html

    from guides.services import guide_acknowledge

    version = factories.make_guide(spec=spec)
    html = client.get("/work/?done=1").content.decode()
    assert "There is no further task for you right now" not in html
    assert f"Read and acknowledge version {version.number} of the work guide for {spec.name}" in html
    assert f'<a href="/guides/{version.guide_id}/">open the guide</a>' in html

    guide_acknowledge(version=version, user=annotator)
    html = client.get("/work/?done=1").content.decode()
    assert "There is no further task for you right now" in html and "held-back" not in html


def test_my_work_query_count_does_not_grow_with_annotations(batch, annotator, reviewer, django_assert_max_num_queries):
    for ann in [_submitted(batch, annotator) for _ in range(3)]:
        review_create(annotation=ann, reviewer=reviewer, decision="reject", reasons=["other"], comment="redo")
    client = client_for(annotator)
    with django_assert_max_num_queries(10):
        assert client.get("/work/").status_code == 200


def test_batch_overview_shows_progress_and_cost_per_vendor(django_assert_max_num_queries):
    from decimal import Decimal

    from django.test import Client

    from labeling import services as labeling
    from tests.factories import quad

    acme = factories.make_vendor("Acme")
    other = factories.make_vendor("Other")
    batch = factories.make_batch(factories.make_spec(), acme, images=4, unit_price=Decimal("0.25"), quantity=4)
    factories.make_batch(factories.make_spec(), other, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=acme)
    reviewer = factories.make_user(roles.REVIEWER, vendor=acme)
    for decision in ("accept", "accept", "reject"):
        task = labeling.task_claim_next(annotator=annotator).task
        annotation = labeling.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()])
        labeling.review_create(annotation=annotation, reviewer=reviewer, decision=decision,
                               reasons=[] if decision == "accept" else ["latex_error"])

    curator = Client()
    curator.force_login(factories.make_user(roles.CURATOR))
    with django_assert_max_num_queries(12):
        html = curator.get("/batches/").content.decode()
    assert f'data-progress="{batch.pk}">2 / 4 accepted' in html
    assert f'data-cost="{batch.pk}">0.50 USD' in html
    assert "Other" in html

    manager = Client()
    manager.force_login(factories.make_user(roles.VENDOR_MANAGER, vendor=acme))
    html = manager.get("/batches/").content.decode()
    assert "Acme" in html and "Other" not in html
    annotator_client = Client()
    annotator_client.force_login(annotator)
    assert annotator_client.get("/batches/").status_code == 403
