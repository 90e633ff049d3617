"""Evaluation pages: the comparison table (best per column), one run with its per-category
table and verdicts, the worst samples with crops and an escaped token difference."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from pipeline import evaluation
from pipeline.models import EvaluationRun
from pipeline.services import model_version_builtin
from tests.pages import text
from tests.pipeline.evaluation_helpers import StubReader, box, make_eval_snapshot, region
from tests.pipeline.test_evaluation_service import TRUTH_BOX, known_answer_reader, three_image_snapshot

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def versions():
    return model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")


def _cell(html: str, run_id: int, col: int) -> str:
    row = re.search(rf'<tr data-run="{run_id}">(.*?)</tr>', html, re.S).group(1)
    return re.search(rf'<td class="num[^"]*" data-col="{col}">', row).group(0)


def test_comparison_table_highlights_the_best_run_per_column(model_team, curator, versions):
    snap = three_image_snapshot(requirements=[{"metric": "exact_match", "threshold": 0.9}])
    good = evaluation.evaluation_run(run=evaluation.evaluation_create(
        snapshot=snap, detector_version=versions[0], recognizer_version=versions[1], created_by=curator),
        reader=StubReader(detections=[[TRUTH_BOX]] * 3, readings=["x^{2}+1", "a+b", r"\frac{1}{2}"]))
    weak = evaluation.evaluation_run(run=evaluation.evaluation_create(
        snapshot=snap, detector_version=versions[0], recognizer_version=versions[1], created_by=curator),
        reader=known_answer_reader())
    queued = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=None,
                                          created_by=curator)
    resp = _client(model_team).get(f"/evaluations/?snapshot={snap.pk}")
    assert resp.status_code == 200
    html = resp.content.decode()
    for col in (0, 1, 2, 6):  # exact match, edit distance (lower wins), BLEU-4, detection F1
        assert "best" in _cell(html, good.pk, col) and "best" not in _cell(html, weak.pk, col), col
    assert f'data-run="{queued.pk}"' in html
    page = text(resp)
    assert "exact_match met" in page and "exact_match missed" in page


def test_detail_page_shows_categories_and_verdicts(model_team, curator, versions):
    snap = three_image_snapshot(requirements=[{"metric": "detection_f1", "threshold": 0.5}])
    run = evaluation.evaluation_run(run=evaluation.evaluation_create(
        snapshot=snap, detector_version=versions[0], recognizer_version=versions[1], created_by=curator),
        reader=known_answer_reader())
    resp = _client(model_team).get(f"/evaluations/{run.pk}/")
    assert resp.status_code == 200
    html = resp.content.decode()
    assert 'data-category="printed"' in html and 'data-category="handwritten"' in html
    handwritten = re.search(r'<tr data-category="handwritten">(.*?)</tr>', html, re.S).group(1)
    assert "0.000" in handwritten  # exact match 0 on the handwritten image
    verdicts = text(resp).split("Verdicts")[-1]
    assert "Detection F1 at IoU 0.5" in verdicts and "0.571" in verdicts and "met" in verdicts


def test_worst_samples_page_shows_crop_truth_prediction_and_escaped_difference(model_team, curator, versions):
    snap = make_eval_snapshot([([region(TRUTH_BOX, "a < b")], ("printed",)),
                               ([region(box(20, 20, 80, 50), "c")], ("shadow",))])
    run = evaluation.evaluation_run(run=evaluation.evaluation_create(
        snapshot=snap, detector_version=None, recognizer_version=versions[1], created_by=curator),
        reader=StubReader(readings=["a > b", "c"]))
    resp = _client(model_team).get(f"/evaluations/{run.pk}/samples/")
    assert resp.status_code == 200
    html = resp.content.decode()
    rows = re.findall(r'<tr data-sample="(\d+)">(.*?)</tr>', html, re.S)
    assert len(rows) == 2
    worst = rows[0][1]
    assert '<del class="tok-del">&lt;</del> <ins class="tok-ins">&gt;</ins>' in worst
    assert f'src="/api/v1/evaluations/{run.pk}/samples/{rows[0][0]}/crop/"' in worst
    assert "<script" not in worst and "a &lt; b" in worst
    crop = _client(model_team).get(f"/api/v1/evaluations/{run.pk}/samples/{rows[0][0]}/crop/")
    assert crop.status_code == 200 and crop["Content-Type"] == "image/jpeg"
    only_shadow = _client(model_team).get(f"/evaluations/{run.pk}/samples/?category=shadow").content.decode()
    assert len(re.findall(r'<tr data-sample="', only_shadow)) == 1


def test_start_form_queues_a_run(curator, versions, django_capture_on_commit_callbacks):
    snap = three_image_snapshot()
    with django_capture_on_commit_callbacks(execute=False):
        resp = _client(curator).post("/evaluations/start/", {"snapshot": snap.pk, "detector_version": versions[0].pk,
                                                             "recognizer_version": ""})
    assert resp.status_code == 302
    run = EvaluationRun.objects.get()
    assert run.status == "queued" and run.recognizer_version is None and run.total == 3
    # a wrong kind is refused with a message, nothing stored
    resp = _client(curator).post("/evaluations/start/", {"snapshot": snap.pk, "detector_version": versions[1].pk},
                                 follow=True)
    assert "detector_version" in text(resp) and EvaluationRun.objects.count() == 1


def test_start_form_answers_404_for_ids_that_are_not_numbers(curator, versions):
    snap = three_image_snapshot()
    client = _client(curator)
    assert client.post("/evaluations/start/", {"snapshot": "abc", "detector_version": versions[0].pk}).status_code == 404
    assert client.post("/evaluations/start/", {"snapshot": snap.pk, "detector_version": "1; drop"}).status_code == 404
    assert not EvaluationRun.objects.exists()


def test_cancel_from_the_detail_page(model_team, curator, versions):
    run = evaluation.evaluation_create(snapshot=three_image_snapshot(), detector_version=versions[0],
                                       recognizer_version=None, created_by=curator)
    assert _client(model_team).post(f"/evaluations/{run.pk}/cancel/").status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_vendor_users_cannot_open_the_pages(annotator, curator, versions):
    run = evaluation.evaluation_create(snapshot=three_image_snapshot(), detector_version=versions[0],
                                       recognizer_version=None, created_by=curator)
    c = _client(annotator)
    for url in ("/evaluations/", f"/evaluations/{run.pk}/", f"/evaluations/{run.pk}/samples/"):
        assert c.get(url).status_code == 403, url


def test_jobs_page_model_home_and_nav_link_to_evaluations(curator, model_team, annotator):
    jobs = _client(curator).get("/pipeline/jobs/").content.decode()
    assert 'href="/evaluations/"' in jobs and ">Evaluations</a>" in jobs  # the page's link and the nav's
    assert ">Evaluations</a>" not in _client(annotator).get("/work/").content.decode()
    assert 'href="/evaluations/"' in _client(model_team).get("/model-team/").content.decode()


def test_an_http_pipeline_is_offered_in_the_detectors_place_and_shown_as_one(model_team, curator,
                                                                              django_capture_on_commit_callbacks):
    from pipeline.services import model_version_register_http

    http = model_version_register_http(name="ext", version="2", endpoint_url="http://ml.example/predict")
    snap = three_image_snapshot()
    with django_capture_on_commit_callbacks(execute=False):
        run = evaluation.evaluation_create(snapshot=snap, detector_version=http, recognizer_version=None,
                                           created_by=curator)
    html = _client(model_team).get("/evaluations/").content.decode()
    detector_select = re.search(r'<select id="e-detector".*?</select>', html, re.S).group(0)
    assert f'<option value="{http.pk}">ext@2 (HTTP pipeline)</option>' in detector_select
    detail = text(_client(model_team).get(f"/evaluations/{run.pk}/"))
    assert "Full pipeline (HTTP)" in detail and "ext@2" in detail and "scored end to end" in detail


def test_detail_page_says_how_honest_the_models_confidence_was(model_team, curator, versions):
    snap = three_image_snapshot()
    run = evaluation.evaluation_run(run=evaluation.evaluation_create(
        snapshot=snap, detector_version=None, recognizer_version=versions[1], created_by=curator),
        reader=StubReader(readings=["x^{2}+1", "a+b", r"\frac{1}{3}"], confidences=[0.9, 0.6, 0.3]))
    html = _client(model_team).get(f"/evaluations/{run.pk}/").content.decode()
    line = re.search(r'<dd id="run-confidence">(.*?)</dd>', html, re.S).group(1)
    assert "3 readings" in line and "0.600" in line and "0.267" in line and "1.000" in line
    quiet = evaluation.evaluation_run(run=evaluation.evaluation_create(
        snapshot=snap, detector_version=None, recognizer_version=versions[1], created_by=curator),
        reader=StubReader(readings=["x^{2}+1", "a+b", r"\frac{1}{3}"]))
    assert 'id="run-confidence"' not in _client(model_team).get(f"/evaluations/{quiet.pk}/").content.decode()

