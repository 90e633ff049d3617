"""The review page takes a hold only on a POST.

`/review/` held the annotation it showed for 10 minutes on a plain GET: a link prefetcher, a
reload, a second tab or a crawler with a reviewer's session each took work out of the other
reviewers' queue. Now a GET only shows the queue (and the one this reviewer already holds); the
"Review next" button POSTs (with its CSRF token) to `/review/next/`, which takes the hold through
`services.review_open_next` and answers 303 to that annotation's review screen. That screen, opened
by GET, shows the annotation without taking a hold and says who holds it."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from common import roles
from labeling.models import Annotation, Review
from tests import factories

pytestmark = pytest.mark.django_db

NEXT = "/review/next/"


def _page(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _holds() -> list[tuple[int, int]]:
    """(annotation, holder) of every hold in force."""
    return list(Annotation.objects.filter(review_held_until__gt=timezone.now())
                .order_by("id").values_list("id", "review_holder_id"))


def _shown(html: str) -> int | None:
    m = re.search(r'data-annotation="(\d+)"', html)
    return int(m.group(1)) if m else None


def test_opening_the_review_page_holds_nothing(vendor, submitted):
    alice = factories.make_user(roles.REVIEWER, vendor=vendor)
    bob = factories.make_user(roles.REVIEWER, vendor=vendor)
    for client in (_page(alice), _page(alice), _page(bob)):
        r = client.get("/review/")
        assert r.status_code == 200
        html = r.content.decode()
        assert _shown(html) is None  # the queue, not an annotation taken for this reviewer
        assert "3 waiting" in html
        form = re.search(r'<form[^>]*method="post"[^>]*action="/review/next/"[^>]*>(.*?)</form>', html, re.S)
        assert form and "csrfmiddlewaretoken" in form.group(1) and 'id="review-next"' in form.group(1), html
    assert _holds() == []


def test_a_head_or_get_prefetch_leaves_the_queue_to_another_reviewer(vendor, submitted):
    alice = _page(factories.make_user(roles.REVIEWER, vendor=vendor))
    bob = factories.make_user(roles.REVIEWER, vendor=vendor)
    assert alice.head("/review/").status_code == 200
    assert alice.get("/review/").status_code == 200
    assert alice.get(f"/review/{submitted[0].pk}/").status_code == 200
    assert alice.get(NEXT).status_code == 405  # the taking endpoint refuses a GET (and a HEAD)
    assert alice.head(NEXT).status_code == 405
    assert _holds() == []
    r = _page(bob).post(NEXT)
    assert r.status_code == 303 and r["Location"] == f"/review/{submitted[0].pk}/"
    assert _holds() == [(submitted[0].pk, bob.pk)]


def test_review_next_takes_exactly_one_hold_and_redirects_to_it(vendor, submitted):
    alice = factories.make_user(roles.REVIEWER, vendor=vendor)
    bob = factories.make_user(roles.REVIEWER, vendor=vendor)
    r = _page(alice).post(NEXT)
    assert r.status_code == 303 and r["Location"] == f"/review/{submitted[0].pk}/"
    assert _holds() == [(submitted[0].pk, alice.pk)]
    # asking again (a second tab, a double click) gives the same one, not a second hold
    assert _page(alice).post(NEXT)["Location"] == f"/review/{submitted[0].pk}/"
    assert _holds() == [(submitted[0].pk, alice.pk)]
    r = _page(bob).post(NEXT, follow=True)
    assert r.redirect_chain == [(f"/review/{submitted[1].pk}/", 303)]
    assert _shown(r.content.decode()) == submitted[1].pk
    assert _holds() == [(submitted[0].pk, alice.pk), (submitted[1].pk, bob.pk)]


def test_review_next_needs_the_csrf_token_of_the_page(vendor, submitted):
    client = _page(factories.make_user(roles.REVIEWER, vendor=vendor), enforce_csrf_checks=True)
    assert client.post(NEXT).status_code == 403
    assert _holds() == []
    html = client.get("/review/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    r = client.post(NEXT, {"csrfmiddlewaretoken": token})
    assert r.status_code == 303 and r["Location"] == f"/review/{submitted[0].pk}/"


def test_the_queue_page_offers_to_continue_the_one_held(vendor, submitted):
    alice = factories.make_user(roles.REVIEWER, vendor=vendor)
    bob = factories.make_user(roles.REVIEWER, vendor=vendor)
    client = _page(alice)
    client.post(NEXT)
    _page(bob).post(NEXT)
    html = client.get("/review/").content.decode()
    cont = re.search(r'<a[^>]*id="continue-review"[^>]*href="([^"]+)"', html)
    assert cont and cont.group(1) == f"/review/{submitted[0].pk}/", html
    assert "3 waiting" in html and 'id="held-by-others"' in html
    assert re.search(r'id="held-by-others"[^>]*>\s*1\b', html), html
    assert _holds() == [(submitted[0].pk, alice.pk), (submitted[1].pk, bob.pk)]


def test_the_review_screen_by_get_takes_no_hold_and_says_who_holds_it(vendor, submitted):
    alice = factories.make_user(roles.REVIEWER, vendor=vendor)
    bob = factories.make_user(roles.REVIEWER, vendor=vendor)
    url = f"/review/{submitted[0].pk}/"
    html = _page(alice).get(url).content.decode()
    assert _shown(html) == submitted[0].pk and 'id="hold-state"' not in html
    assert _holds() == []

    _page(bob).post(NEXT)
    until = Annotation.objects.get(pk=submitted[0].pk).review_held_until
    html = _page(alice).get(url).content.decode()
    assert _shown(html) == submitted[0].pk
    assert "another reviewer is looking at this since" in html.lower()
    html = _page(bob).get(url).content.decode()
    assert "held by you until" in html.lower()
    # neither GET moved the hold: not taken by alice, not extended for bob
    assert _holds() == [(submitted[0].pk, bob.pk)]
    assert Annotation.objects.get(pk=submitted[0].pk).review_held_until == until

    # a lapsed hold is nobody's: the page says nothing about it
    Annotation.objects.filter(pk=submitted[0].pk).update(review_held_until=timezone.now() - timedelta(seconds=1))
    assert 'id="hold-state"' not in _page(alice).get(url).content.decode()


def test_when_everything_is_held_review_next_goes_back_to_the_queue(vendor, submitted):
    for annotation in submitted:
        other = _page(factories.make_user(roles.REVIEWER, vendor=vendor))
        assert other.post(NEXT)["Location"] == f"/review/{annotation.pk}/"
    late = _page(factories.make_user(roles.REVIEWER, vendor=vendor))
    r = late.post(NEXT, follow=True)
    assert r.redirect_chain == [("/review/", 303)]
    html = r.content.decode()
    assert _shown(html) is None and 'id="held-by-others"' in html and "3 waiting" in html


def test_the_review_screen_posts_for_the_next_one_after_a_decision(vendor, submitted):
    html = _page(factories.make_user(roles.REVIEWER, vendor=vendor)).get(f"/review/{submitted[0].pk}/").content.decode()
    form = re.search(r'<form[^>]*id="next-form"[^>]*>(.*?)</form>', html, re.S)
    assert form and 'method="post"' in form.group(0) and 'action="/review/next/"' in form.group(0)
    assert "csrfmiddlewaretoken" in form.group(1)
    assert 'data-next-url' not in html  # nothing left that would GET its way to the next one


def test_decide_then_next_walks_the_queue(vendor, submitted):
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    client, api = _page(reviewer), APIClient()
    api.force_authenticate(reviewer)
    for annotation in submitted:
        r = client.post(NEXT)
        assert r["Location"] == f"/review/{annotation.pk}/"
        assert api.post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept"},
                        format="json").status_code == 201
    r = client.post(NEXT, follow=True)
    assert r.redirect_chain == [("/review/", 303)]
    assert "Nothing is waiting for your review" in r.content.decode()
    assert _holds() == [] and Review.objects.count() == 3


def test_only_reviewers_take_holds(vendor, annotator, submitted):
    assert _page(annotator).post(NEXT).status_code == 404
    foreign = _page(factories.make_user(roles.REVIEWER, vendor=factories.make_vendor()))
    r = foreign.post(NEXT, follow=True)
    assert r.redirect_chain == [("/review/", 303)] and "Nothing is waiting for your review" in r.content.decode()
    r = Client().post(NEXT)
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]
    assert _holds() == []


# ------------------------------------------------------------------ in a browser


@pytest.mark.browser
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_reviewer_reviews_two_annotations_in_a_row_in_the_browser(browser_page, labeling_setup_two):
    s = labeling_setup_two
    page = browser_page(s["reviewer"])
    page.goto("/review/")
    page.wait_for_selector("#review-next")
    assert _holds() == []  # opening the page took nothing
    with page.expect_navigation():
        page.click("#review-next")
    page.wait_for_selector("#review-app[data-ready='1']")
    first = int(page.locator("#review-app").get_attribute("data-annotation"))
    assert page.url.endswith(f"/review/{first}/")
    assert _holds() == [(first, s["reviewer"].pk)]
    assert "held by you until" in page.locator("#hold-state").inner_text().lower()
    page.check("#decision-accept")
    page.click("#btn-send")

    page.wait_for_function(f"() => document.querySelector('#review-app')?.dataset.annotation"
                           f" && document.querySelector('#review-app').dataset.annotation !== '{first}'"
                           f" && document.querySelector('#review-app').dataset.ready === '1'")
    second = int(page.locator("#review-app").get_attribute("data-annotation"))
    assert second != first and page.url.endswith(f"/review/{second}/")
    assert _holds() == [(second, s["reviewer"].pk)]
    page.check("#decision-reject")
    page.check("#reason-latex_error")
    page.click("#btn-send")
    page.wait_for_selector("text=Nothing is waiting for your review")
    assert page.url.endswith("/review/")
    decisions = dict(Review.objects.values_list("annotation_id", "decision"))
    assert decisions == {first: "accept", second: "reject"}
    assert _holds() == []
    assert not page.errors, page.errors


@pytest.fixture
def labeling_setup_two():
    """Two submitted annotations of one vendor (on the browser tests' photo) and a reviewer."""
    import io

    from PIL import Image as PILImage

    from tests.browser.test_labeling_ui import photo

    vendor, spec = factories.make_vendor(), factories.make_spec()
    for i, name in enumerate(("a.png", "b.png")):
        img = PILImage.open(io.BytesIO(photo())).convert("RGB")
        img.putpixel((5 + i, 5), (0, 0, 0))  # two different photos (an exact duplicate is not ingested twice)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        factories.make_image(spec=spec, data=buf.getvalue(), filename=name)
    factories.make_batch(spec, vendor, images=0, quantity=2, name="Two photos")
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    api = APIClient()
    api.force_authenticate(annotator)
    region = {"kind": "quad", "points": [[80, 68], [330, 68], [330, 110], [80, 110]], "latex": "x^{2}+0=y_{0}"}
    for _ in range(2):
        task = api.post("/api/v1/tasks/next/").json()["task"]
        r = api.post("/api/v1/annotations/", {"task": task["id"], "submit": True, "regions": [region]}, format="json")
        assert r.status_code == 201, r.content
    return {"reviewer": factories.make_user(roles.REVIEWER, vendor=vendor)}
