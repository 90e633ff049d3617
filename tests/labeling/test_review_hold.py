"""The review queue holds what it shows: reviewers working side by side are shown different
annotations (they were all shown the same oldest one, and all but the first decision on it were
lost), asking again shows the same one again, and a hold lapses after its time. The page takes a
hold on "Review next" (a POST to /review/next/, answered 303 to the annotation), never on a GET
(tests/labeling/test_review_page_post.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from common import roles
from labeling import services
from labeling.models import Annotation
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db


def _page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _shown(client) -> int | None:
    """The annotation "Review next" opens for this reviewer, or None (back on the queue page)."""
    html = client.post("/review/next/", follow=True).content.decode()
    marker = 'data-annotation="'
    if marker not in html:
        return None
    start = html.index(marker) + len(marker)
    return int(html[start:html.index('"', start)])


def test_two_reviewers_side_by_side_are_shown_different_annotations(vendor, submitted):
    alice = _page(factories.make_user(roles.REVIEWER, vendor=vendor))
    bob = _page(factories.make_user(roles.REVIEWER, vendor=vendor))
    assert _shown(alice) == submitted[0].pk
    assert _shown(bob) == submitted[1].pk
    assert _shown(alice) == submitted[0].pk  # asking again shows the one held
    assert _shown(bob) == submitted[1].pk


def test_when_everything_is_held_the_page_says_so_and_a_lapsed_hold_frees_it(vendor, submitted):
    people = [factories.make_user(roles.REVIEWER, vendor=vendor) for _ in range(4)]
    for user, annotation in zip(people, submitted, strict=False):
        assert _shown(_page(user)) == annotation.pk
    last = _page(people[3])
    html = last.get("/review/").content.decode()
    assert _shown(last) is None and 'id="held-by-others"' in html and "3 waiting" in html

    Annotation.objects.filter(pk=submitted[1].pk).update(review_held_until=timezone.now() - timedelta(seconds=1))
    assert _shown(last) == submitted[1].pk


def test_a_decision_releases_the_hold_so_a_resubmitted_rework_is_anyones(vendor, annotator, submitted):
    alice = factories.make_user(roles.REVIEWER, vendor=vendor)
    bob = factories.make_user(roles.REVIEWER, vendor=vendor)
    first = services.review_open_next(reviewer=alice)
    services.review_create(annotation=first, reviewer=alice, decision="reject", reasons=["latex_error"])
    first.refresh_from_db()
    assert (first.review_holder, first.review_held_until) == (None, None)
    services.annotation_update(annotation=first, by=annotator, version=first.version, regions=[quad()], submit=True)
    # the rework joins the end of the queue held by nobody: once the others are taken, it is next
    assert services.review_open_next(reviewer=alice).pk == submitted[1].pk
    assert services.review_open_next(reviewer=bob).pk == submitted[2].pk
    carol = factories.make_user(roles.REVIEWER, vendor=vendor)
    assert services.review_open_next(reviewer=carol).pk == first.pk


def test_deciding_on_an_annotation_someone_else_holds_is_still_allowed(vendor, submitted):
    alice = factories.make_user(roles.REVIEWER, vendor=vendor)
    bob = factories.make_user(roles.REVIEWER, vendor=vendor)
    held = services.review_open_next(reviewer=alice)
    review = services.review_create(annotation=held, reviewer=bob, decision="accept")
    assert review.reviewer == bob


def test_the_api_hands_reviewers_different_annotations_and_204_when_none(vendor, annotator, submitted):
    alice = client_for(factories.make_user(roles.REVIEWER, vendor=vendor))
    bob = client_for(factories.make_user(roles.REVIEWER, vendor=vendor))
    r1, r2 = alice.post("/api/v1/annotations/review-next/"), bob.post("/api/v1/annotations/review-next/")
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert_response_matches_schema(r1)
    assert (r1.json()["id"], r2.json()["id"]) == (submitted[0].pk, submitted[1].pk)
    assert alice.post("/api/v1/annotations/review-next/").json()["id"] == submitted[0].pk
    # an annotator reviews nothing; another vendor's reviewer sees none of these
    r = client_for(annotator).post("/api/v1/annotations/review-next/")
    assert r.status_code == 400 and "Only reviewers" in r.json()["reviewer"][0]
    other = client_for(factories.make_user(roles.REVIEWER, vendor=factories.make_vendor()))
    assert other.post("/api/v1/annotations/review-next/").status_code == 204
