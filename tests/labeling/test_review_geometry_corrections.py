"""Geometry corrections: when accepting, a reviewer may also move the four corners of a region
(labeling.services.review_create with `corrections={index: {"points": [...], "latex": ...}}`).

The string form ({index: LaTeX}) stays as it was. New points are checked exactly as an
annotator's (in the image, a simple quadrilateral of some area, made clockwise from its first
corner); the corrected answer is a new version authored by the reviewer, which snapshots and
exports deliver; `Review.corrections` keeps LaTeX-only entries as [old, new] and records a
region whose corners moved as {"points": [old, new], "latex"?: [old, new]}; the API answers
the LaTeX part in `corrections` (as before) and the corners in `geometry_corrections`. Bad input
is a 400 naming `corrections.<index>.points` / `.latex` with nothing stored; a mask-only region
gets no corners; QA counts the acceptance as corrected and scores the annotator's own version;
the annotator is told that the corners were moved."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from common import rle, roles
from curation import snapshots
from curation.models import SnapshotItem
from labeling import services
from labeling.models import Annotation, AnnotationVersion, Region, Review, Task
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for
from tests.pages import text
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db

TYPO = r"x^{2}+l"
FIXED = r"x^{2}+1"
# Region 1 as the annotator drew it (images are 200x100): its right end cut off the formula.
DRAWN = [[100.0, 50.0], [190.0, 50.0], [190.0, 90.0], [100.0, 90.0]]
MOVED = [[98.0, 48.0], [198.0, 48.0], [198.0, 96.0], [98.0, 96.0]]


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


def _regions(version) -> list[Region]:
    return list(Region.objects.filter(version=version).order_by("index"))


# ------------------------------------------------------------------ service


def test_moved_corners_are_a_new_version_by_the_reviewer_and_the_review_records_them(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    decided = annotation.current
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"1": {"points": MOVED}}, comment="the 1 was cut off")

    assert review.decision == "accept" and review.version_id == decided.pk
    assert review.corrections == {"1": {"points": [DRAWN, MOVED]}}
    assert review.latex_corrections == {} and review.geometry_corrections == {"1": [DRAWN, MOVED]}
    fresh = Annotation.objects.get(pk=annotation.pk)
    assert fresh.status == Annotation.Status.ACCEPTED and fresh.version == 2
    corrected = fresh.current
    assert corrected.number == 2 and corrected.author_id == reviewer.pk and corrected.time_spent_seconds == 0
    before, after = _regions(decided), _regions(corrected)
    assert [r.points for r in before] == [quad()["points"], DRAWN]  # the annotator's version is kept as it was
    assert [r.points for r in after] == [quad()["points"], MOVED]
    for b, a in zip(before, after, strict=True):  # corners only: kind, text, flags and categories as drawn
        assert (a.index, a.kind, a.mask_rle, a.latex, a.latex_normalized, a.illegible, a.cut_off, a.categories) == \
               (b.index, b.kind, b.mask_rle, b.latex, b.latex_normalized, b.illegible, b.cut_off, b.categories)
    assert Task.objects.get(pk=annotation.task_id).status == Task.Status.ACCEPTED


def test_corners_and_latex_of_one_region_are_corrected_together(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"0": r"\frac{a}{c}", "1": {"latex": f" {FIXED} ", "points": MOVED}})
    assert review.corrections == {"0": [r"\frac{a}{b}", r"\frac{a}{c}"],
                                  "1": {"latex": [TYPO, FIXED], "points": [DRAWN, MOVED]}}
    assert review.latex_corrections == {"0": [r"\frac{a}{b}", r"\frac{a}{c}"], "1": [TYPO, FIXED]}
    assert review.geometry_corrections == {"1": [DRAWN, MOVED]}
    after = _regions(Annotation.objects.get(pk=annotation.pk).current)
    assert [(r.latex, r.points) for r in after] == [(r"\frac{a}{c}", quad()["points"]), (FIXED, MOVED)]
    assert after[1].latex_normalized == "x ^ { 2 } + 1"


def test_the_object_form_with_latex_only_is_stored_as_the_string_form_is(batch, annotator, reviewer):
    """QA and My work read LaTeX-only entries as [old, new]: the object form does not change that."""
    annotation = _submitted(batch, annotator)
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"1": {"latex": FIXED}})
    assert review.corrections == {"1": [TYPO, FIXED]}
    assert review.geometry_corrections == {}


def test_the_string_form_works_as_before(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={1: FIXED})
    assert review.corrections == {"1": [TYPO, FIXED]}
    assert [r.points for r in _regions(Annotation.objects.get(pk=annotation.pk).current)] == [quad()["points"], DRAWN]


def test_new_points_are_made_clockwise_and_pulled_onto_the_border_as_an_annotators_are(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    # counter-clockwise on screen, the right edge 1.5 px past the 200 px wide image (within tolerance)
    sent = [[98, 48], [98, 96], [201.5, 96], [201.5, 48]]
    image = annotation.task.image
    as_saved = services.regions_clean(regions=[{"kind": "quad", "points": sent}], image=image)[0]["points"]
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"1": {"points": sent}})
    assert as_saved == [[98.0, 48.0], [200.0, 48.0], [200.0, 96.0], [98.0, 96.0]]
    assert review.geometry_corrections == {"1": [DRAWN, as_saved]}
    assert _regions(Annotation.objects.get(pk=annotation.pk).current)[1].points == as_saved


def test_corners_equal_to_the_stored_ones_are_ignored(batch, annotator, reviewer):
    """As with LaTeX: what did not change is no correction; with nothing changed the review is a
    plain acceptance (no version, nothing counted in QA)."""
    annotation = _submitted(batch, annotator)
    # the same quad, counter-clockwise: stored clockwise it is what the annotator drew
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"1": {"points": [DRAWN[0], DRAWN[3], DRAWN[2], DRAWN[1]],
                                                       "latex": TYPO}})
    assert review.corrections == {}
    fresh = Annotation.objects.get(pk=annotation.pk)
    assert fresh.version == 1 and fresh.current_id == review.version_id


def test_an_illegible_regions_corners_may_be_moved_but_not_its_text(batch, annotator, reviewer):
    """Exports deliver an illegible region's box (ICDAR writes it with "###"), never its text."""
    regions = [quad(latex=r"\frac{a}{b}"), quad(100, 50, 190, 90, latex="", illegible=True)]
    annotation = _submitted(batch, annotator, regions=regions)
    with pytest.raises(ValidationError) as exc:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                               corrections={"1": {"latex": "x", "points": MOVED}})
    assert list(exc.value.message_dict) == ["corrections.1.latex"]
    _nothing_stored(annotation)
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"1": {"points": MOVED}})
    assert review.geometry_corrections == {"1": [DRAWN, MOVED]}


def _mask_region(latex: str = r"\alpha") -> dict:
    mask = np.zeros((100, 200), dtype=bool)
    mask[60:80, 120:170] = True
    return {"kind": "mask", "mask": rle.encode(mask), "latex": latex}


def test_a_mask_only_region_gets_no_corners(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator, regions=[quad(), _mask_region()])
    with pytest.raises(ValidationError) as exc:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                               corrections={"1": {"points": MOVED}})
    assert list(exc.value.message_dict) == ["corrections.1.points"]
    assert "mask" in exc.value.message_dict["corrections.1.points"][0]
    _nothing_stored(annotation)


def test_moving_the_quad_of_a_region_that_also_has_a_mask_keeps_the_mask(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    # A region holding both (as imported work may): the quad moves, the mask stays as it was.
    mask = _mask_region()["mask"]
    Region.objects.filter(version=annotation.current, index=1).update(mask_rle=mask)
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"1": {"points": MOVED}})
    assert review.geometry_corrections == {"1": [DRAWN, MOVED]}
    region = _regions(Annotation.objects.get(pk=annotation.pk).current)[1]
    assert (region.kind, region.points, region.mask_rle) == ("quad", MOVED, mask)


BOW_TIE = [[100, 50], [190, 90], [190, 50], [100, 90]]


@pytest.mark.parametrize(("corrections", "field"), [
    ({"1": {"points": [[100, 50], [260, 50], [260, 90], [100, 90]]}}, "corrections.1.points"),  # outside the image
    ({"1": {"points": [[100, -9], [190, -9], [190, 90], [100, 90]]}}, "corrections.1.points"),
    ({"1": {"points": BOW_TIE}}, "corrections.1.points"),  # not a simple polygon
    ({"1": {"points": [[100, 50], [150, 50], [190, 50], [120, 50]]}}, "corrections.1.points"),  # no area
    ({"1": {"points": MOVED[:3]}}, "corrections.1.points"),
    ({"1": {"points": [*MOVED, [99, 60]]}}, "corrections.1.points"),
    ({"1": {"points": [["98", 48], [198, 48], [198, 96], [98, 96]]}}, "corrections.1.points"),
    ({"1": {"points": [[True, 48], [198, 48], [198, 96], [98, 96]]}}, "corrections.1.points"),
    ({"1": {"points": [[float("nan"), 48], [198, 48], [198, 96], [98, 96]]}}, "corrections.1.points"),
    ({"1": {"points": [[10**400, 48], [198, 48], [198, 96], [98, 96]]}}, "corrections.1.points"),
    ({"1": {"points": "98,48 198,48 198,96 98,96"}}, "corrections.1.points"),
    ({"1": {"points": None}}, "corrections.1.points"),
    ({"1": {"latex": r"\frac{a}{"}}, "corrections.1.latex"),
    ({"1": {"latex": "", "points": MOVED}}, "corrections.1.latex"),
    ({"1": {"latex": 3}}, "corrections.1.latex"),
    ({"1": {"latex": "x" * 4001}}, "corrections.1.latex"),
    ({"1": {}}, "corrections.1"),  # names nothing to correct
    ({"1": {"point": MOVED}}, "corrections.1.point"),  # a misspelt key would otherwise be ignored
    ({"1": {"points": MOVED, "kind": "mask"}}, "corrections.1.kind"),
    ({"1": [FIXED]}, "corrections.1"),
    ({"2": {"points": MOVED}}, "corrections.2"),  # two regions: 0 and 1
    # all or nothing: a good correction of region 0 is not stored beside a bad one of region 1
    ({"0": {"points": [[5, 5], [95, 5], [95, 45], [5, 45]]}, "1": {"points": BOW_TIE}}, "corrections.1.points"),
])
def test_bad_geometry_corrections_name_the_field_and_store_nothing(batch, annotator, reviewer, corrections, field):
    annotation = _submitted(batch, annotator)
    with pytest.raises(ValidationError) as exc:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", corrections=corrections)
    assert list(exc.value.message_dict) == [field]
    _nothing_stored(annotation)


def test_geometry_corrections_come_only_with_an_acceptance(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    with pytest.raises(ValidationError) as exc:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="reject", reasons=["wrong_region"],
                               corrections={"1": {"points": MOVED}})
    assert list(exc.value.message_dict) == ["corrections"]
    _nothing_stored(annotation)


def test_a_stale_version_with_geometry_corrections_is_a_conflict_and_stores_nothing(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    with pytest.raises(services.StaleVersion) as exc:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", version=7,
                               corrections={"1": {"points": MOVED}})
    assert exc.value.current.version == 1
    _nothing_stored(annotation)


# ------------------------------------------------------------------ delivery


def _export(snapshot, fmt: str) -> zipfile.ZipFile:
    buf = io.BytesIO()
    snapshots.export_build(snapshot=snapshot, format=fmt, dest=buf)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


def test_snapshots_and_exports_deliver_the_corrected_corners(batch, annotator, reviewer, spec):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                           corrections={"1": {"points": MOVED, "latex": FIXED}})
    snapshot = factories.make_snapshot(spec=spec)
    item = SnapshotItem.objects.get(snapshot=snapshot, annotation=annotation)
    assert item.annotation_version == 2
    assert [(r["latex"], r["points"]) for r in item.regions] == [(r"\frac{a}{b}", quad()["points"]), (FIXED, MOVED)]

    with _export(snapshot, "jsonl") as z:
        (line,) = [json.loads(raw) for raw in z.read("annotations.jsonl").splitlines()
                   if json.loads(raw)["image_id"] == item.image_id]
    assert [(r["latex"], r["points"]) for r in line["regions"]] == [(r"\frac{a}{b}", quad()["points"]),
                                                                     (FIXED, MOVED)]
    with _export(snapshot, "coco") as z:
        anns = [a for name in z.namelist() if name.startswith("annotations/") and name.endswith(".json")
                for a in json.loads(z.read(name))["annotations"] if a["image_id"] == item.image_id]
    assert [(a["latex"], a["segmentation"]) for a in anns] == [
        (r"\frac{a}{b}", [[v for p in quad()["points"] for v in p]]), (FIXED, [[v for p in MOVED for v in p]])]
    assert anns[1]["bbox"] == [98.0, 48.0, 100.0, 48.0]


# ------------------------------------------------------------------ API


def test_api_accepts_moved_corners_and_answers_them_as_the_schema_says(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    api = client_for(reviewer)
    r = api.post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept", "version": 1,
                                      "corrections": {"0": r"\frac{a}{c}", "1": {"points": MOVED}}}, format="json")
    assert r.status_code == 201, r.content
    assert_response_matches_schema(r)
    body = r.json()
    # `corrections` stays {index: [old LaTeX, new LaTeX]} for existing clients; the corners come beside it
    assert body["corrections"] == {"0": [r"\frac{a}{b}", r"\frac{a}{c}"]}
    assert body["geometry_corrections"] == {"1": [DRAWN, MOVED]}

    r = api.get(f"/api/v1/reviews/{body['id']}/")
    assert_response_matches_schema(r)
    assert r.json()["geometry_corrections"] == {"1": [DRAWN, MOVED]}
    r = api.get(f"/api/v1/annotations/{annotation.pk}/")
    assert_response_matches_schema(r)
    ann = r.json()
    assert ann["version"] == 2 and [x["points"] for x in ann["regions"]] == [quad()["points"], MOVED]
    assert ann["reviews"][0]["corrections"] == {"0": [r"\frac{a}{b}", r"\frac{a}{c}"]}
    assert ann["reviews"][0]["geometry_corrections"] == {"1": [DRAWN, MOVED]}


def test_api_plain_and_latex_only_reviews_answer_empty_geometry_corrections(batch, annotator, reviewer):
    first, second = _submitted(batch, annotator), _submitted(batch, annotator)
    api = client_for(reviewer)
    r = api.post("/api/v1/reviews/", {"annotation": first.pk, "decision": "accept", "corrections": {"1": FIXED}},
                 format="json")
    assert r.status_code == 201, r.content
    assert_response_matches_schema(r)
    assert (r.json()["corrections"], r.json()["geometry_corrections"]) == ({"1": [TYPO, FIXED]}, {})
    r = api.post("/api/v1/reviews/", {"annotation": second.pk, "decision": "reject", "reasons": ["wrong_region"]},
                 format="json")
    assert r.status_code == 201, r.content
    assert (r.json()["corrections"], r.json()["geometry_corrections"]) == ({}, {})


@pytest.mark.parametrize(("payload", "field"), [
    ({"decision": "accept", "corrections": {"1": {"points": [[100, 50], [260, 50], [260, 90], [100, 90]]}}},
     "corrections.1.points"),
    ({"decision": "accept", "corrections": {"1": {"points": BOW_TIE}}}, "corrections.1.points"),
    ({"decision": "accept", "corrections": {"1": {"points": MOVED, "latex": r"\frac{"}}}, "corrections.1.latex"),
    ({"decision": "accept", "corrections": {"1": {}}}, "corrections.1"),
    ({"decision": "accept", "corrections": {"9": {"points": MOVED}}}, "corrections.9"),
    ({"decision": "reject", "reasons": ["wrong_region"], "corrections": {"1": {"points": MOVED}}}, "corrections"),
])
def test_api_bad_geometry_corrections_are_a_400_naming_the_field(batch, annotator, reviewer, payload, field):
    annotation = _submitted(batch, annotator)
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": annotation.pk, **payload}, format="json")
    assert r.status_code == 400, r.content
    assert list(r.json()) == [field]
    _nothing_stored(annotation)


def test_api_mask_only_region_gets_no_corners(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator, regions=[quad(), _mask_region()])
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept",
                                                       "corrections": {"1": {"points": MOVED}}}, format="json")
    assert r.status_code == 400 and list(r.json()) == ["corrections.1.points"], r.content
    _nothing_stored(annotation)


def test_api_stale_version_with_geometry_corrections_answers_409(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="reject", reasons=["wrong_region"])
    r = client_for(annotator).put(f"/api/v1/annotations/{annotation.pk}/", {
        "version": 1, "submit": True, "regions": [quad(latex=r"\frac{a}{b}"), quad(100, 50, 190, 90, latex=TYPO)]},
        format="json")
    assert r.status_code == 200, r.content
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept", "version": 1,
                                                       "corrections": {"1": {"points": MOVED}}}, format="json")
    assert r.status_code == 409, r.content
    assert_response_matches_schema(r)
    assert r.json()["current_version"] == 2
    fresh = Annotation.objects.get(pk=annotation.pk)
    assert fresh.status == Annotation.Status.SUBMITTED and fresh.version == 2
    assert Review.objects.filter(annotation=annotation).count() == 1  # the rejection only


def test_the_annotator_cannot_move_corners_of_their_own_work(batch, annotator):
    annotation = _submitted(batch, annotator)
    r = client_for(annotator).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept",
                                                        "corrections": {"1": {"points": MOVED}}}, format="json")
    assert r.status_code == 400 and list(r.json()) == ["annotation"]
    _nothing_stored(annotation)


def test_review_query_count_does_not_grow_with_geometry_corrections(batch, annotator, reviewer):
    def count(n_regions: int, fixes: dict) -> int:
        annotation = _submitted(batch, annotator, regions=[quad(5 + 6 * i, 5, 10 + 6 * i, 20, latex=TYPO)
                                                           for i in range(n_regions)])
        with CaptureQueriesContext(connection) as ctx:
            r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept",
                                                               "corrections": fixes}, format="json")
        assert r.status_code == 201, r.content
        return len(ctx)

    def moved(i: int) -> dict:
        return {"points": [[4 + 6 * i, 4], [11 + 6 * i, 4], [11 + 6 * i, 21], [4 + 6 * i, 21]]}

    count(2, {})  # warms what a first request reads once
    small = count(2, {"1": moved(1)})
    large = count(8, {str(i): moved(i) for i in range(0, 8, 2)})
    assert small == large


# ------------------------------------------------------------------ the annotator and QA


def test_my_work_says_the_corners_were_moved(batch, annotator, reviewer, django_assert_max_num_queries):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                           corrections={"0": r"\frac{a}{c}", "1": {"points": MOVED}}, comment="Mind the 1")
    for _ in range(2):  # more corrected work adds no query to My work
        services.review_create(annotation=_submitted(batch, annotator), reviewer=reviewer, decision="accept",
                               corrections={"1": {"points": MOVED, "latex": FIXED}})
    client = Client()
    client.force_login(annotator)
    with django_assert_max_num_queries(10):  # as without corrections (tests/labeling/test_pages.py)
        response = client.get("/work/")
    page = text(response)
    assert "Accepted with corrections" in page
    assert rf"#{annotation.task_id} 1 \frac{{a}}{{b}} \frac{{a}}{{c}} Mind the 1" in page
    assert "region 2: corners moved by the reviewer" in page


def test_the_labeling_page_says_the_corners_were_moved_to_its_annotator_only(batch, annotator, reviewer, vendor):
    annotation = _submitted(batch, annotator)
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                           corrections={"1": {"points": MOVED}})
    client = Client()
    client.force_login(annotator)
    page = text(client.get(f"/label/{annotation.task_id}/"))
    assert "region 2: corners moved by the reviewer" in page
    colleague = Client()
    colleague.force_login(factories.make_user(roles.VENDOR_MANAGER, vendor=vendor))
    response = colleague.get(f"/label/{annotation.task_id}/")
    assert response.status_code == 200 and "corners moved" not in text(response)


def test_review_page_says_corners_may_be_dragged(batch, annotator, reviewer):
    annotation = _submitted(batch, annotator)
    client = Client()
    client.force_login(reviewer)
    page = text(client.get(f"/review/{annotation.pk}/"))
    assert "drag a region's corners" in page


def test_qa_counts_geometry_corrections_and_scores_the_annotators_version(vendor, spec, annotator, reviewer):
    from pipeline.stats import spec_stats_compute

    batch = factories.make_batch(spec, vendor, images=4)
    first = _submitted(batch, annotator)
    services.review_create(annotation=first, reviewer=reviewer, decision="accept", corrections={"1": {"points": MOVED}})
    services.review_create(annotation=_submitted(batch, annotator), reviewer=reviewer, decision="accept",
                           corrections={"1": FIXED})
    services.review_create(annotation=_submitted(batch, annotator), reviewer=reviewer, decision="accept")
    services.review_create(annotation=_submitted(batch, annotator), reviewer=reviewer, decision="reject",
                           reasons=["wrong_region"])
    # the first task is gold, its known answer the corrected corners: the annotator drew them short
    Task.objects.filter(pk=first.task_id).update(is_gold=True, gold_answer={"regions": [
        quad(latex=r"\frac{a}{b}"), {"kind": "quad", "points": MOVED, "latex": TYPO}]})

    payload = spec_stats_compute(spec=spec).payload
    overall = payload["reviews"]["overall"]
    assert (overall["accepted"], overall["rejected"], overall["corrected_on_acceptance"]) == (3, 1, 2)
    assert overall["corrected_rate"] == pytest.approx(2 / 3)
    (v,) = payload["reviews"]["by_vendor"]
    (a,) = payload["reviews"]["by_annotator"]
    assert v["corrected_on_acceptance"] == a["corrected_on_acceptance"] == 2
    # gold accuracy scores what the annotator handed in (version 1), not the reviewer's corners
    gold = payload["gold"]["overall"]
    assert gold["tasks"] == 1 and gold["region_recall"] == 1.0
    assert gold["mean_iou"] < 0.99
    # still accepted and paid: the cost counts the three accepted tasks at the batch price
    (t,) = payload["throughput"]["by_vendor"]
    assert t["accepted_tasks"] == 3 and t["cost"] == {"USD": "0.7500"}
