"""Final read of "accept with corrections moves corners too" (labeling.0009): what the first
tests of it (test_review_geometry_corrections.py) left open.

- The labeling page told the annotator which regions' corners the reviewer moved, but not the
  reviewer's comment when only corners moved: the comment lived in the LaTeX note, which the
  page's script shows only when some LaTeX was corrected. The corners note now carries it then
  (escaped), and leaves it to the LaTeX note otherwise, so that it is never said twice.
- Scope, checked and kept: only a reviewer of the annotation's vendor (or a curator) moves its
  corners; a fellow annotator of the vendor and another vendor's reviewer are refused, with
  nothing stored."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from common import roles
from labeling import services
from labeling.models import Annotation, AnnotationVersion, Review
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for
from tests.pages import text

pytestmark = pytest.mark.django_db

TYPO = r"x^{2}+l"
FIXED = r"x^{2}+1"
MOVED = [[98.0, 48.0], [198.0, 48.0], [198.0, 96.0], [98.0, 96.0]]


def _submitted(batch, annotator) -> Annotation:
    task = services.task_claim_next(annotator=annotator).task
    return services.annotation_create(task=task, annotator=annotator, submit=True, time_spent_seconds=30,
                                      regions=[quad(latex=r"\frac{a}{b}"), quad(100, 50, 190, 90, latex=TYPO)])


def _label_page(annotator, annotation):
    client = Client()
    client.force_login(annotator)
    response = client.get(f"/label/{annotation.task_id}/")
    assert response.status_code == 200
    return response


def _corners_note(response) -> str:
    html = response.content.decode()
    match = re.search(r'<div id="geometry-corrections"[^>]*>(.*?)</div>', html, re.S)
    assert match, "no corners note"
    return match.group(1)


def test_the_labeling_page_shows_the_reviewers_comment_when_only_corners_moved(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                           corrections={"1": {"points": MOVED}}, comment="The 1 was cut off <b>here</b>")
    response = _label_page(annotator, annotation)
    assert "region 2: corners moved by the reviewer" in text(response)
    note = _corners_note(response)
    assert "The 1 was cut off &lt;b&gt;here&lt;/b&gt;" in note  # escaped, never markup
    assert "<b>" not in note


def test_the_labeling_page_says_no_comment_when_corners_moved_without_one(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                           corrections={"1": {"points": MOVED}})
    assert "(no comment)" in _corners_note(_label_page(annotator, annotation))


def test_the_comment_is_left_to_the_latex_note_when_latex_was_corrected_too(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                           corrections={"1": {"points": MOVED, "latex": FIXED}}, comment="Mind the 1")
    response = _label_page(annotator, annotation)
    note = _corners_note(response)
    assert "region 2: corners moved by the reviewer" in note
    # the page's script writes the comment into the LaTeX note (#corrections-comment): not twice
    assert "Mind the 1" not in response.content.decode()


@pytest.mark.parametrize("who", ["fellow_annotator", "other_vendors_reviewer"])
def test_only_a_reviewer_of_the_vendor_moves_corners(batch, annotator, vendor, who):
    annotation = _submitted(batch, annotator)
    user = (factories.make_user(roles.ANNOTATOR, vendor=vendor) if who == "fellow_annotator"
            else factories.make_user(roles.REVIEWER, vendor=factories.make_vendor()))
    r = client_for(user).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept",
                                                    "corrections": {"1": {"points": MOVED}}}, format="json")
    assert r.status_code == 400 and list(r.json()) == ["annotation"], r.content
    assert not Review.objects.filter(annotation=annotation).exists()
    assert AnnotationVersion.objects.filter(annotation=annotation).count() == 1
    assert Annotation.objects.get(pk=annotation.pk).status == Annotation.Status.SUBMITTED
