"""/api/v1/evaluations/: create (queued, then run by the worker), bad input, isolation,
worst-first samples with their crops, cancel, filters, query counts, schema."""
from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from common import roles
from pipeline import evaluation
from pipeline.models import EvaluationRun
from pipeline.services import model_version_builtin
from tests import factories
from tests.labeling.conftest import client_for
from tests.pipeline.evaluation_helpers import StubReader, box, make_eval_snapshot, region
from tests.pipeline.test_evaluation_service import TRUTH, TRUTH_BOX, known_answer_reader, three_image_snapshot
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions():
    return model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")


@pytest.fixture
def team(model_team):
    return client_for(model_team)


@pytest.fixture
def stub_models(monkeypatch):
    """The worker's models replaced by the known-answer stub."""
    monkeypatch.setattr(evaluation, "_reader_for", lambda run: known_answer_reader())


def _body(snap, versions, **over):
    body = {"snapshot": snap.pk, "detector_version": versions[0].pk, "recognizer_version": versions[1].pk}
    body.update(over)
    return body


def test_model_team_creates_a_queued_run_that_the_worker_finishes(team, versions, stub_models,
                                                                  django_capture_on_commit_callbacks):
    snap = three_image_snapshot()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        resp = team.post("/api/v1/evaluations/", _body(snap, versions, batch_size=2), format="json")
    assert resp.status_code == 201, resp.content
    assert_response_matches_schema(resp)
    body = resp.json()
    assert body["status"] == "queued" and body["total"] == 3 and body["spec"] == snap.spec_id
    assert body["metrics"] == {"by_category": {}} and len(callbacks) == 1

    callbacks[0]()  # the enqueue after commit: the (eager) worker runs it
    resp = team.get(f"/api/v1/evaluations/{body['id']}/")
    assert_response_matches_schema(resp)
    done = resp.json()
    assert done["status"] == "done" and done["processed"] == 3
    assert done["metrics"]["overall"]["exact_match"] == pytest.approx(2 / 3)
    assert set(done["metrics"]["by_category"]) == {"printed", "handwritten"}


def test_curator_may_create_too(curator_api, versions, django_capture_on_commit_callbacks):
    snap = three_image_snapshot()
    with django_capture_on_commit_callbacks(execute=False):
        resp = curator_api.post("/api/v1/evaluations/", _body(snap, versions, detector_version=None), format="json")
    assert resp.status_code == 201, resp.content
    assert resp.json()["detector_version"] is None


def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(team, versions):
    detector, recognizer = versions
    snap = three_image_snapshot()
    http = register_http_pipeline()
    other_spec = factories.make_spec()
    train_only = make_eval_snapshot([([region(TRUTH_BOX, "x")], ("printed",))], ratios=(1, 0, 0))
    cases = [
        (_body(snap, versions, detector_version=recognizer.pk), "detector_version"),
        (_body(snap, versions, recognizer_version=detector.pk), "recognizer_version"),
        (_body(snap, versions, detector_version=None, recognizer_version=None), "detector_version"),
        (_body(snap, versions, spec=other_spec.pk), "snapshot"),
        (_body(train_only, versions), "snapshot"),
        (_body(snap, versions, snapshot=987654), "snapshot"),
        (_body(snap, versions, recognizer_version=987654), "recognizer_version"),
        (_body(snap, versions, batch_size=0), "batch_size"),
        ({"detector_version": detector.pk}, "snapshot"),
        # a full pipeline reads the LaTeX itself, and is given in the detector's place
        (_body(snap, versions, detector_version=http.pk), "recognizer_version"),
        (_body(snap, versions, recognizer_version=http.pk), "recognizer_version"),
        (_body(snap, versions, detector_version=None, recognizer_version=http.pk), "recognizer_version"),
    ]
    for body, field in cases:
        resp = team.post("/api/v1/evaluations/", body, format="json")
        assert resp.status_code == 400, (body, resp.content)
        assert field in resp.json(), (body, resp.json())
    assert not EvaluationRun.objects.exists()


def register_http_pipeline():
    from pipeline.services import model_version_register_http

    return model_version_register_http(name="ext", version="1", endpoint_url="http://ml.example/predict")


def test_an_http_pipeline_version_alone_is_accepted_as_the_detector(team, django_capture_on_commit_callbacks):
    snap = three_image_snapshot()
    http = register_http_pipeline()
    with django_capture_on_commit_callbacks(execute=False):
        resp = team.post("/api/v1/evaluations/", {"snapshot": snap.pk, "detector_version": http.pk}, format="json")
    assert resp.status_code == 201, resp.content
    assert resp.json()["detector_version"] == http.pk and resp.json()["recognizer_version"] is None


def test_vendor_users_see_nothing_and_cannot_create(versions, curator, vendor):
    snap = three_image_snapshot()
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                       created_by=curator)
    for role in (roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER):
        api = client_for(factories.make_user(role, vendor=vendor))
        assert api.get("/api/v1/evaluations/").json()["count"] == 0
        assert api.get(f"/api/v1/evaluations/{run.pk}/").status_code == 404
        assert api.get(f"/api/v1/evaluations/{run.pk}/samples/").status_code == 404
        assert api.post("/api/v1/evaluations/", _body(snap, versions), format="json").status_code == 403
        assert api.post(f"/api/v1/evaluations/{run.pk}/cancel/").status_code == 403
    run.refresh_from_db()
    assert run.status == "queued"


def test_samples_come_worst_first_paginated_with_their_crops(team, versions, curator,
                                                             django_assert_max_num_queries):
    snap = three_image_snapshot()
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                       created_by=curator)
    evaluation.evaluation_run(run=run, reader=known_answer_reader())
    with django_assert_max_num_queries(4):
        resp = team.get(f"/api/v1/evaluations/{run.pk}/samples/?limit=2")
    assert resp.status_code == 200
    assert_response_matches_schema(resp)
    page = resp.json()
    assert page["count"] == 3 and page["next"]
    assert [s["truth_latex"] for s in page["results"]] == [r"\frac { 1 } { 2 }", "a + b"]
    worst = page["results"][0]
    assert worst["predicted_latex"] == r"\frac { 1 } { 3 }" and worst["iou"] is None and worst["categories"] == ["handwritten"]
    assert team.get(f"/api/v1/evaluations/{run.pk}/samples/?category=printed").json()["count"] == 2

    # Absolute, as every other link a model team's script downloads (it need not know where the API is).
    assert worst["crop_url"] == f"http://testserver/api/v1/evaluations/{run.pk}/samples/{worst['id']}/crop/"
    crop = team.get(worst["crop_url"])
    assert crop.status_code == 200 and crop["Content-Type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(b"".join(crop.streaming_content) if crop.streaming else crop.content)).size == (80, 30)
    other = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=None,
                                         created_by=curator)
    assert team.get(f"/api/v1/evaluations/{other.pk}/samples/{worst['id']}/crop/").status_code == 404


def test_cancel_a_queued_run_then_a_second_cancel_is_a_400(team, versions, curator):
    run = evaluation.evaluation_create(snapshot=three_image_snapshot(), detector_version=versions[0],
                                       recognizer_version=None, created_by=curator)
    resp = team.post(f"/api/v1/evaluations/{run.pk}/cancel/")
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert_response_matches_schema(resp)
    resp = team.post(f"/api/v1/evaluations/{run.pk}/cancel/")
    assert resp.status_code == 400 and "status" in resp.json()


def test_list_filters_by_snapshot_and_spec_in_few_queries(team, versions, curator, django_assert_max_num_queries):
    first, second = three_image_snapshot(), make_eval_snapshot([([region(TRUTH_BOX, TRUTH[0])], ("printed",))])
    for snap in (first, first, first, second):
        run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0],
                                           recognizer_version=versions[1], created_by=curator)
    evaluation.evaluation_run(run=run, reader=StubReader(detections=[[TRUTH_BOX]], readings=[TRUTH[0]]))
    with django_assert_max_num_queries(4):
        resp = team.get("/api/v1/evaluations/")
    assert resp.json()["count"] == 4
    assert_response_matches_schema(resp)
    assert team.get(f"/api/v1/evaluations/?snapshot={first.pk}").json()["count"] == 3
    by_spec = team.get(f"/api/v1/evaluations/?spec={second.spec_id}").json()
    assert by_spec["count"] == 1 and by_spec["results"][0]["passed"] is None
    assert by_spec["results"][0]["verdicts"] == []
    assert team.get("/api/v1/evaluations/?status=done").json()["count"] == 1


def test_box_helper_matches_the_truth_quad():
    assert box(10, 10, 90, 40) == TRUTH_BOX
