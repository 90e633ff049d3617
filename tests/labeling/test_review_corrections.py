"""Accept with corrections: a reviewer fixes the LaTeX of some regions of a submitted annotation
and accepts it in one step (labeling.services.review_create with `corrections`).

The fix is a new version authored by the reviewer, which exports deliver; the review keeps the
version decided on (the annotator's) and {index: [old, new]}; geometry stays as drawn; bad input
is a 400 naming `corrections.<index>` with nothing stored; a stale version is the usual 409; the
annotator sees what was changed; QA counts acceptances with corrections."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from common import roles
from curation.models import SnapshotItem
from labeling import services
from labeling.models import Annotation, AnnotationVersion, Region, Review, Task
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for
from tests.pages import text
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db

TYPO = r"x^{2}+l"  # an "l" typed for a "1"
FIXED = r"x^{2}+1"


def _submitted(batch, annotator, regions=None) -> Annotation:
    task = services.task_claim_next(annotator=annotator).task
    assert task is not None and task.batch_id == batch.id
    return services.annotation_create(task=task, annotator=annotator, submit=True, time_spent_seconds=30,
                                      regions=regions or [quad(latex=r"\frac{a}{b}"), quad(100, 50, 190, 90, latex=TYPO)])


def _nothing_stored(annotation: Annotation) -> None:
    fresh = Annotation.objects.get(pk=annotation.pk)
    assert fresh.status == Annotation.Status.SUBMITTED and fresh.version == 1
    assert AnnotationVersion.objects.filter(annotation=fresh).count() == 1
    assert not Review.objects.filter(annotation=fresh).exists()
    assert Task.objects.get(pk=fresh.task_id).status == Task.Status.SUBMITTED


# ------------------------------------------------------------------ service


def test_correction_is_a_new_version_by_the_reviewer_and_the_review_keeps_the_decided_one(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    decided = annotation.current
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"1": f"  {FIXED} "}, comment="1, not l")

    assert review.decision == "accept" and review.version_id == decided.pk
    assert review.corrections == {"1": [TYPO, FIXED]}
    fresh = Annotation.objects.get(pk=annotation.pk)
    assert fresh.status == Annotation.Status.ACCEPTED and fresh.version == 2
    corrected = fresh.current
    assert corrected.number == 2 and corrected.author_id == reviewer.pk and corrected.time_spent_seconds == 0
    before = list(Region.objects.filter(version=decided).order_by("index"))
    after = list(Region.objects.filter(version=corrected).order_by("index"))
    assert [r.latex for r in before] == [r"\frac{a}{b}", TYPO]  # the annotator's version is kept as it was
    assert [r.latex for r in after] == [r"\frac{a}{b}", FIXED]
    assert after[1].latex_normalized == "x ^ { 2 } + 1"  # normalised as an annotator's LaTeX is
    assert after[0].latex_normalized == before[0].latex_normalized
    for b, a in zip(before, after, strict=True):  # text only: geometry, flags and categories as drawn
        assert (a.index, a.kind, a.points, a.mask_rle, a.illegible, a.cut_off, a.categories) == \
               (b.index, b.kind, b.points, b.mask_rle, b.illegible, b.cut_off, b.categories)
    # accepted and paid as any acceptance
    assert Task.objects.get(pk=annotation.task_id).status == Task.Status.ACCEPTED


def test_integer_keys_from_python_callers_name_the_same_regions(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", corrections={1: FIXED})
    assert review.corrections == {"1": [TYPO, FIXED]}


def test_a_correction_equal_to_the_stored_latex_is_ignored(batch, annotator, reviewer):
    """A client may send every region's text; what did not change is no correction, and with
    nothing changed the review is a plain acceptance (no version, nothing counted in QA)."""
    annotation = _submitted(batch, annotator)
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"0": r" \frac{a}{b}", "1": TYPO})
    assert review.corrections == {}
    fresh = Annotation.objects.get(pk=annotation.pk)
    assert fresh.status == Annotation.Status.ACCEPTED and fresh.version == 1 and fresh.current_id == review.version_id


def test_only_the_changed_regions_are_recorded(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"0": r"\frac{a}{b}", "1": FIXED})
    assert review.corrections == {"1": [TYPO, FIXED]}


@pytest.mark.parametrize(("corrections", "field"), [
    ({"2": FIXED}, "corrections.2"),  # two regions: 0 and 1
    ({"-1": FIXED}, "corrections.-1"),
    ({"01": FIXED}, "corrections.01"),
    ({"one": FIXED}, "corrections.one"),
    ({"1": r"\frac{a}{"}, "corrections.1"),  # refused by common/latex.py as an annotator's would be
    ({"1": r"\notacommand x"}, "corrections.1"),
    ({"1": ""}, "corrections.1"),
    ({"1": "x\u0000"}, "corrections.1"),
    ({"1": "x" * 4001}, "corrections.1"),
    ({"1": 12}, "corrections.1"),
    (["x"], "corrections"),
    ("x", "corrections"),
])
def test_bad_corrections_name_the_field_and_store_nothing(batch, annotator, reviewer, corrections, field):
    annotation = _submitted(batch, annotator)
    with pytest.raises(ValidationError) as exc:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", corrections=corrections)
    assert list(exc.value.message_dict) == [field]
    _nothing_stored(annotation)


def test_corrections_come_only_with_an_acceptance(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    with pytest.raises(ValidationError) as exc:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="reject", reasons=["latex_error"],
                               corrections={"1": FIXED})
    assert list(exc.value.message_dict) == ["corrections"]
    _nothing_stored(annotation)


def test_a_stale_version_is_a_conflict_and_stores_nothing(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    with pytest.raises(services.StaleVersion) as exc:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", version=7,
                               corrections={"1": FIXED})
    assert exc.value.current.version == 1
    _nothing_stored(annotation)


def test_a_second_decision_after_a_correction_is_refused_as_today(batch, annotator, reviewer, vendor):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", version=1,
                           corrections={"1": FIXED})
    other = factories.make_user(roles.REVIEWER, vendor=vendor)
    with pytest.raises(services.StaleVersion):  # decided on version 1, which is no longer current
        services.review_create(annotation=Annotation.objects.get(pk=annotation.pk), reviewer=other,
                               decision="accept", version=1, corrections={"1": "x"})
    with pytest.raises(ValidationError) as exc:  # on the current version: no longer submitted
        services.review_create(annotation=Annotation.objects.get(pk=annotation.pk), reviewer=other,
                               decision="accept", version=2)
    assert list(exc.value.message_dict) == ["annotation"]
    assert Review.objects.filter(annotation=annotation).count() == 1


# ------------------------------------------------------------------ delivery


def test_snapshots_deliver_the_corrected_latex(batch, annotator, reviewer, spec):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", corrections={"1": FIXED})
    snapshot = factories.make_snapshot(spec=spec)
    item = SnapshotItem.objects.get(snapshot=snapshot, annotation=annotation)
    assert item.annotation_version == 2
    assert [r["latex"] for r in item.regions] == [r"\frac{a}{b}", FIXED]
    assert item.regions[1]["points"] == [[100.0, 50.0], [190.0, 50.0], [190.0, 90.0], [100.0, 90.0]]


# ------------------------------------------------------------------ API


def test_api_accepts_with_corrections_and_answers_them_as_the_schema_says(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    api = client_for(reviewer)
    r = api.post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept", "version": 1,
                                      "corrections": {"1": FIXED}}, format="json")
    assert r.status_code == 201, r.content
    assert_response_matches_schema(r)
    body = r.json()
    assert body["decision"] == "accept" and body["version_number"] == 1
    assert body["corrections"] == {"1": [TYPO, FIXED]}

    r = api.get(f"/api/v1/reviews/{body['id']}/")
    assert_response_matches_schema(r)
    assert r.json()["corrections"] == {"1": [TYPO, FIXED]}
    r = api.get(f"/api/v1/annotations/{annotation.pk}/")
    assert_response_matches_schema(r)
    ann = r.json()
    assert ann["version"] == 2 and [x["latex"] for x in ann["regions"]] == [r"\frac{a}{b}", FIXED]
    assert ann["reviews"][0]["corrections"] == {"1": [TYPO, FIXED]}
    r = api.get(f"/api/v1/annotations/{annotation.pk}/history/")
    assert_response_matches_schema(r)
    versions = r.json()["results"]
    assert [(v["number"], v["author_username"]) for v in versions] == [(1, annotator.username),
                                                                        (2, reviewer.username)]


def test_api_plain_review_answers_empty_corrections(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "reject",
                                                       "reasons": ["latex_error"], "corrections": None}, format="json")
    assert r.status_code == 201, r.content
    assert_response_matches_schema(r)
    assert r.json()["corrections"] == {}


@pytest.mark.parametrize(("payload", "field"), [
    ({"decision": "accept", "corrections": {"9": FIXED}}, "corrections.9"),
    ({"decision": "accept", "corrections": {"1": r"\frac{"}}, "corrections.1"),
    ({"decision": "accept", "corrections": "x^2"}, "corrections"),
    ({"decision": "reject", "reasons": ["latex_error"], "corrections": {"1": FIXED}}, "corrections"),
])
def test_api_bad_corrections_are_a_400_naming_the_field(batch, annotator, reviewer, payload, field):
    annotation = _submitted(batch, annotator)
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": annotation.pk, **payload}, format="json")
    assert r.status_code == 400, r.content
    assert list(r.json()) == [field]
    _nothing_stored(annotation)


def test_api_stale_version_with_corrections_answers_409_with_the_current_state(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    api = client_for(annotator)
    # Back to the annotator and handed in again: version 2 is current when the reviewer sends version 1.
    services.review_create(annotation=annotation, reviewer=reviewer, decision="reject", reasons=["latex_error"])
    r = api.put(f"/api/v1/annotations/{annotation.pk}/", {"version": 1, "submit": True,
                                                          "regions": [quad(latex=r"\frac{a}{b}"), quad(100, 50, 190, 90)]},
                format="json")
    assert r.status_code == 200, r.content
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept", "version": 1,
                                                       "corrections": {"1": FIXED}}, format="json")
    assert r.status_code == 409, r.content
    assert_response_matches_schema(r)
    assert r.json()["current_version"] == 2
    fresh = Annotation.objects.get(pk=annotation.pk)
    assert fresh.status == Annotation.Status.SUBMITTED and fresh.version == 2
    assert Review.objects.filter(annotation=annotation).count() == 1  # the rejection only


def test_a_reviewer_of_another_vendor_cannot_correct(batch, annotator):
    annotation = _submitted(batch, annotator)
    stranger = factories.make_user(roles.REVIEWER, vendor=factories.make_vendor())
    r = client_for(stranger).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept",
                                                       "corrections": {"1": FIXED}}, format="json")
    assert r.status_code == 400 and list(r.json()) == ["annotation"]
    _nothing_stored(annotation)


def test_the_annotator_cannot_correct_their_own_work(batch, annotator):
    annotation = _submitted(batch, annotator)
    r = client_for(annotator).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept",
                                                        "corrections": {"1": FIXED}}, format="json")
    assert r.status_code == 400 and list(r.json()) == ["annotation"]
    _nothing_stored(annotation)


def test_review_query_count_does_not_grow_with_regions_or_corrections(batch, annotator, reviewer):
    def count(n_regions: int, fixes: dict) -> int:
        annotation = _submitted(batch, annotator, regions=[quad(5 + 6 * i, 5, 10 + 6 * i, 20, latex=TYPO)
                                                           for i in range(n_regions)])
        api = client_for(reviewer)
        with CaptureQueriesContext(connection) as ctx:
            r = api.post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept",
                                              "corrections": fixes}, format="json")
        assert r.status_code == 201, r.content
        return len(ctx)

    plain = count(2, {})  # also warms what a first request reads once (the reviewer's roles)
    small = count(2, {"1": FIXED})
    large = count(8, {str(i): FIXED for i in range(0, 8, 2)})
    assert small == large
    # a correction costs a fixed handful of statements over a plain acceptance: the regions read,
    # the version number taken, the pre-label kept, the version written (one statement on PostgreSQL)
    assert small - plain <= 6, (small, plain)


# ------------------------------------------------------------------ the annotator and QA


def test_the_annotator_sees_what_was_corrected(batch, annotator, reviewer, django_assert_max_num_queries):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", corrections={"1": FIXED},
                           comment="Mind 1 and l")
    for _ in range(2):  # more corrected work adds no query to My work
        services.review_create(annotation=_submitted(batch, annotator), reviewer=reviewer, decision="accept",
                               corrections={"0": "a"})
    client = Client()
    client.force_login(annotator)
    with django_assert_max_num_queries(10):  # as without corrections (tests/labeling/test_pages.py)
        response = client.get("/work/")
    page = text(response)
    assert "Accepted with corrections" in page
    assert f"#{annotation.task_id} 2 {TYPO} {FIXED} Mind 1 and l" in page

    # the annotator's API: the review and the annotation both say what changed
    api = client_for(annotator)
    mine = api.get(f"/api/v1/annotations/{annotation.pk}/").json()
    assert mine["reviews"][0]["corrections"] == {"1": [TYPO, FIXED]}
    listed = api.get("/api/v1/reviews/", {"annotation": annotation.pk}).json()["results"]
    assert [x["corrections"] for x in listed] == [{"1": [TYPO, FIXED]}]


def test_another_annotator_does_not_see_the_correction(batch, annotator, reviewer, vendor):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", corrections={"1": FIXED})
    colleague = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    client = Client()
    client.force_login(colleague)
    assert "Accepted with corrections" not in text(client.get("/work/"))


def test_review_page_offers_accept_with_corrections_with_labels(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    client = Client()
    client.force_login(reviewer)
    html = client.get(f"/review/{annotation.pk}/").content.decode()
    assert 'id="decision-accept"' in html  # the plain Accept stays
    assert '<label for="decision-correct"><input type="radio" name="decision" id="decision-correct" ' \
           'value="accept_corrected"' in html


def test_qa_counts_acceptances_with_corrections_and_scores_the_annotators_version(vendor, spec, annotator,
                                                                                  reviewer):
    from pipeline.stats import spec_stats_compute

    batch = factories.make_batch(spec, vendor, images=3)
    first = _submitted(batch, annotator)
    services.review_create(annotation=first, reviewer=reviewer, decision="accept", corrections={"1": FIXED})
    services.review_create(annotation=_submitted(batch, annotator), reviewer=reviewer, decision="accept")
    services.review_create(annotation=_submitted(batch, annotator), reviewer=reviewer, decision="reject",
                           reasons=["latex_error"])
    # the first task is gold, its known answer the corrected one: the annotator typed it wrong
    Task.objects.filter(pk=first.task_id).update(is_gold=True, gold_answer={"regions": [
        quad(latex=r"\frac{a}{b}"), quad(100, 50, 190, 90, latex=FIXED)]})

    payload = spec_stats_compute(spec=spec).payload
    overall = payload["reviews"]["overall"]
    assert (overall["accepted"], overall["rejected"], overall["corrected_on_acceptance"]) == (2, 1, 1)
    assert overall["corrected_rate"] == pytest.approx(0.5)
    (v,) = payload["reviews"]["by_vendor"]
    (a,) = payload["reviews"]["by_annotator"]
    assert v["corrected_on_acceptance"] == a["corrected_on_acceptance"] == 1
    # gold accuracy scores what the annotator handed in (version 1), not the reviewer's fix
    assert payload["gold"]["overall"]["latex_exact_match"] == pytest.approx(0.5)
    # still accepted and paid: the cost counts both accepted tasks at the batch price
    (t,) = payload["throughput"]["by_vendor"]
    assert t["accepted_tasks"] == 2 and t["cost"] == {"USD": "0.5000"}

    curator = Client()
    curator.force_login(factories.make_user(roles.CURATOR))
    page = text(curator.get(f"/specs/{spec.pk}/qa/"))
    assert "1 of the acceptances came with the reviewer's corrections" in page
