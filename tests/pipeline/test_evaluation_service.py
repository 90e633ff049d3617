"""Offline evaluation: the metric arithmetic on known answers (stub models), verdicts, speed,
cancel/idempotency/failure, and one end-to-end run with the committed weights on the CPU."""
from __future__ import annotations

import io

import numpy as np
import pytest
import sacrebleu
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from common import rle
from curation.synthetic import formula_photo
from pipeline import evaluation
from pipeline.models import EvaluationRun, EvaluationSample
from pipeline.services import model_version_builtin
from tests.pipeline.evaluation_helpers import StubReader, box, make_eval_snapshot, region

pytestmark = pytest.mark.django_db

TRUTH = [r"x^{2}+1", r"a+b", r"\frac{1}{2}"]
TRUTH_BOX = box(10, 10, 90, 40)


@pytest.fixture
def versions():
    return model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")


def three_image_snapshot(**spec_kw):
    """Three test images, one formula each: two printed, one handwritten."""
    return make_eval_snapshot([([region(TRUTH_BOX, TRUTH[0])], ("printed",)),
                               ([region(TRUTH_BOX, TRUTH[1])], ("printed",)),
                               ([region(TRUTH_BOX, TRUTH[2])], ("handwritten",))], **spec_kw)


def known_answer_reader() -> StubReader:
    # image 1: the exact box plus a spurious one; image 2: shifted by 20 px (IoU 1800/3000 = 0.6);
    # image 3: only a spurious box. Readings: right, right, one token wrong of 7.
    return StubReader(detections=[[TRUTH_BOX, box(150, 60, 190, 90)], [box(30, 10, 110, 40)], [box(150, 60, 190, 90)]],
                      readings=[TRUTH[0], "a + b", r"\frac{1}{3}"])


def test_known_answers_give_exact_match_edit_distance_bleu_and_detection_figures(versions, curator):
    snap = three_image_snapshot(requirements=[
        {"metric": "exact_match", "threshold": 0.6}, {"metric": "token_edit_distance", "threshold": 0.01},
        {"metric": "detection_f1", "threshold": 0.9}, {"metric": "mean_iou", "threshold": 0.75}])
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                       created_by=curator, batch_size=2)
    reader = known_answer_reader()
    run = evaluation.evaluation_run(run=run, reader=reader)

    assert run.status == "done", run.error
    assert reader.detect_batches == [2, 1] and reader.recognize_batches == [2, 1]  # batched by batch_size
    o = run.metrics["overall"]
    assert (o["images"], o["regions"], o["recognized"]) == (3, 3, 3)
    assert o["exact_match"] == pytest.approx(2 / 3)
    # \frac { 1 } { 2 } vs \frac { 1 } { 3 }: 1 edit of 7 tokens, the others 0
    assert o["token_edit_distance"] == pytest.approx((1 / 7) / 3)
    hyps = ["x ^ { 2 } + 1", "a + b", r"\frac { 1 } { 3 }"]
    refs = ["x ^ { 2 } + 1", "a + b", r"\frac { 1 } { 2 }"]
    assert o["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score / 100)
    assert 0 < o["bleu4"] < 1
    assert (o["true_positives"], o["false_positives"], o["false_negatives"]) == (2, 2, 1)
    assert o["detection_precision"] == pytest.approx(0.5)
    assert o["detection_recall"] == pytest.approx(2 / 3)
    assert o["detection_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert o["mean_iou"] == pytest.approx((1.0 + 0.6) / 2)

    assert (o["confidence_rated"], o["confidence_ece"], o["confidence_auroc"]) == (0, None, None)  # it gave none

    printed, handwritten = run.metrics["by_category"]["printed"], run.metrics["by_category"]["handwritten"]
    assert printed["exact_match"] == 1.0 and printed["images"] == 2
    assert printed["detection_precision"] == pytest.approx(2 / 3) and printed["detection_recall"] == 1.0
    assert printed["detection_f1"] == pytest.approx(0.8)
    assert handwritten["exact_match"] == 0.0 and handwritten["detection_f1"] == 0.0
    assert handwritten["token_edit_distance"] == pytest.approx(1 / 7)

    verdicts = {v["metric"]: v for v in run.verdicts}
    assert verdicts["exact_match"]["met"] is True and verdicts["exact_match"]["value"] == pytest.approx(2 / 3)
    assert verdicts["token_edit_distance"]["met"] is False and verdicts["token_edit_distance"]["lower_is_better"]
    assert verdicts["detection_f1"]["met"] is False
    assert verdicts["mean_iou"]["met"] is True
    assert run.passed is False
    assert run.processed == 3 and run.device == "StubReader"


def test_samples_store_truth_prediction_and_match_and_sort_worst_first(versions, curator):
    snap = three_image_snapshot()
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                       created_by=curator)
    evaluation.evaluation_run(run=run, reader=known_answer_reader())
    from pipeline.selectors import evaluation_samples_worst_first

    samples = list(evaluation_samples_worst_first(run))
    assert [s.truth_latex for s in samples] == [r"\frac { 1 } { 2 }", "a + b", "x ^ { 2 } + 1"]
    worst, shifted, perfect = samples
    assert worst.predicted_latex == r"\frac { 1 } { 3 }" and worst.edits == 1 and worst.exact is False
    assert worst.iou is None and worst.image_predicted == 1 and worst.image_matched == 0  # missed
    assert worst.categories == ["handwritten"]
    assert shifted.iou == pytest.approx(0.6) and shifted.exact is True
    assert perfect.iou == pytest.approx(1.0) and perfect.image_predicted == 2 and perfect.image_matched == 1
    assert perfect.points == TRUTH_BOX


def test_recognizer_only_run_leaves_detection_unmeasured_and_the_verdict_open(versions, curator):
    snap = three_image_snapshot(requirements=[{"metric": "exact_match", "threshold": 0.5},
                                              {"metric": "detection_f1", "threshold": 0.5}])
    run = evaluation.evaluation_create(snapshot=snap, detector_version=None, recognizer_version=versions[1],
                                       created_by=curator)
    reader = StubReader(readings=list(TRUTH))
    run = evaluation.evaluation_run(run=run, reader=reader)
    assert run.status == "done" and reader.detect_batches == []
    assert run.metrics["overall"]["exact_match"] == 1.0 and run.metrics["overall"]["bleu4"] == pytest.approx(1.0)
    assert run.metrics["overall"]["detection_f1"] is None
    verdicts = {v["metric"]: v["met"] for v in run.verdicts}
    assert verdicts == {"exact_match": True, "detection_f1": None}
    assert run.passed is None


def test_detector_only_run_reads_nothing(versions, curator):
    snap = three_image_snapshot()
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=None,
                                       created_by=curator)
    reader = StubReader(detections=[[TRUTH_BOX], [TRUTH_BOX], [TRUTH_BOX]])
    run = evaluation.evaluation_run(run=run, reader=reader)
    assert reader.recognize_batches == []
    assert run.metrics["overall"]["detection_f1"] == 1.0 and run.metrics["overall"]["exact_match"] is None
    assert set(EvaluationSample.objects.filter(run=run).values_list("predicted_latex", flat=True)) == {""}


def test_speed_targets_become_verdicts_and_qps_matches_the_times(versions, curator):
    snap = three_image_snapshot(target_qps=1_000_000, max_ms_per_image=10**6)  # the most a spec may ask
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                       created_by=curator, batch_size=1)
    run = evaluation.evaluation_run(run=run, reader=known_answer_reader())
    verdicts = {v["metric"]: v for v in run.verdicts}
    assert verdicts["qps"]["met"] is False and verdicts["qps"]["value"] == pytest.approx(run.qps)
    assert verdicts["ms_per_image"]["met"] is True
    assert verdicts["ms_per_image"]["value"] == pytest.approx(run.latency_p95_ms)
    times = sorted(EvaluationSample.objects.filter(run=run).values_list("latency_ms", flat=True))
    assert run.qps == pytest.approx(3 / (sum(times) / 1000))
    assert run.latency_p50_ms == pytest.approx(times[1]) and 0 < run.latency_p50_ms <= run.latency_p95_ms


def test_percentiles_interpolate_linearly():
    assert evaluation.latency_percentiles([40, 10, 30, 20]) == (25.0, 38.5)
    assert evaluation.latency_percentiles([]) == (None, None)


def test_overall_verdict_fails_on_any_miss_and_is_open_when_unmeasured():
    assert evaluation.overall_passed([{"met": True}, {"met": None}, {"met": False}]) is False
    assert evaluation.overall_passed([{"met": True}, {"met": None}]) is None
    assert evaluation.overall_passed([{"met": True}]) is True
    assert evaluation.overall_passed([]) is None


def test_token_difference_is_highlighted_and_escaped():
    html = evaluation.token_diff_html("x < 1 + y", "x > 1 y <script>")
    assert html == ('x <del class="tok-del">&lt;</del> <ins class="tok-ins">&gt;</ins> 1 '
                    '<del class="tok-del">+</del> y <ins class="tok-ins">&lt;script&gt;</ins>')


def test_mask_only_region_is_scored_by_its_bounding_rectangle():
    mask = np.zeros((100, 200), np.uint8)
    mask[10:40, 20:80] = 1
    quad = evaluation.truth_quad({"mask_rle": rle.encode(mask)})
    assert np.asarray(quad) == pytest.approx(np.asarray(box(20, 10, 79, 39)), abs=1)


def test_a_cancel_during_the_run_stops_before_the_next_batch(versions, curator):
    snap = three_image_snapshot()
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                       created_by=curator, batch_size=1)
    reader = known_answer_reader()
    reader.on_detect = lambda: evaluation.evaluation_cancel(run=run) if len(reader.detect_batches) == 1 else None
    run = evaluation.evaluation_run(run=run, reader=reader)
    assert run.status == "cancelled" and run.processed == 1 and run.metrics is None
    assert reader.detect_batches == [1]
    with pytest.raises(ValidationError) as err:
        evaluation.evaluation_cancel(run=run)
    assert "status" in err.value.message_dict


def test_task_is_idempotent_and_does_nothing_for_a_cancelled_run(versions, curator):
    from pipeline.tasks import run_evaluation

    snap = three_image_snapshot()
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                       created_by=curator)
    evaluation.evaluation_run(run=run, reader=known_answer_reader())
    run_evaluation(run.pk)  # a redelivery: already done, nothing runs again
    assert EvaluationSample.objects.filter(run=run).count() == 3
    again = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                         created_by=curator)
    evaluation.evaluation_cancel(run=again)
    run_evaluation(again.pk)
    again.refresh_from_db()
    assert again.status == "cancelled" and not EvaluationSample.objects.filter(run=again).exists()


def test_an_unreadable_image_fails_the_run_naming_it(versions, curator):
    snap = three_image_snapshot()
    item = snap.items.order_by("image_id").first()
    default_storage.delete(item.file)
    run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=versions[1],
                                       created_by=curator)
    run = evaluation.evaluation_run(run=run, reader=known_answer_reader())
    assert run.status == "failed" and f"image {item.image_id}" in run.error and run.finished_at


def test_create_refuses_wrong_kinds_other_specs_and_empty_test_splits(versions, curator):
    detector, recognizer = versions
    snap = three_image_snapshot()
    cases = [
        (dict(snapshot=snap, detector_version=recognizer, recognizer_version=None), "detector_version"),
        (dict(snapshot=snap, detector_version=None, recognizer_version=detector), "recognizer_version"),
        (dict(snapshot=snap, detector_version=None, recognizer_version=None), "detector_version"),
        (dict(snapshot=snap, detector_version=detector, recognizer_version=None, batch_size=0), "batch_size"),
        (dict(snapshot=snap, detector_version=detector, recognizer_version=None,
              spec=three_image_snapshot().spec), "snapshot"),
        (dict(snapshot=make_eval_snapshot([([region(TRUTH_BOX, "x")], ("printed",))], ratios=(1, 0, 0)),
              detector_version=detector, recognizer_version=None), "snapshot"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as err:
            evaluation.evaluation_create(created_by=curator, **kwargs)
        assert field in err.value.message_dict, (kwargs, err.value.message_dict)
    assert not EvaluationRun.objects.exists()


# ---------------------------------------------------------------- the committed models, end to end

FORMULAS = [r"a^2 + b^2 = c^2", r"y = mx + b", r"S = \pi r^2"]


def photo(latex: str, seed: int) -> tuple[bytes, list[list[float]]]:
    """A generated formula photo and the box of its formula (on_paper puts 40 px around it)."""
    img = formula_photo(latex, "printed", np.random.default_rng(seed))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue(), box(40, 40, img.width - 40, img.height - 40)


def test_committed_weights_run_end_to_end_on_the_cpu_and_deterministically(versions, curator):
    photos = [photo(f, seed) for seed, f in enumerate(FORMULAS)]
    snap = make_eval_snapshot([([region(quad, latex)], ("printed",))
                               for (_, quad), latex in zip(photos, FORMULAS, strict=True)],
                              data=[data for data, _ in photos], requirements=[{"metric": "bleu4", "threshold": 0.99}])
    results = []
    for _ in range(2):
        run = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0],
                                           recognizer_version=versions[1], created_by=curator, batch_size=2)
        run = evaluation.evaluation_run(run=run)
        assert run.status == "done", run.error
        assert "cpu" in run.device
        o = run.metrics["overall"]
        assert o["images"] == 3 and o["recognized"] == 3
        for key in ("exact_match", "token_edit_distance", "bleu4", "detection_precision", "detection_recall",
                    "detection_f1"):
            assert 0.0 <= o[key] <= 1.0, key
        assert run.latency_p95_ms > 0 and run.qps > 0
        assert [v["metric"] for v in run.verdicts] == ["bleu4"]
        results.append(list(EvaluationSample.objects.filter(run=run).order_by("item_id")
                            .values_list("predicted_latex", "iou", "image_predicted")))
    assert results[0] == results[1]  # same weights, same answers
    assert all(pred for pred, _, _ in results[0])  # the recognizer wrote something for every crop
    # the crop served for browsing is the truth region, straightened
    sample = EvaluationSample.objects.filter(run=run).select_related("item").first()
    crop = PILImage.open(io.BytesIO(evaluation.sample_crop_jpeg(sample=sample)))
    x0, y0 = sample.points[0]
    x1, y1 = sample.points[2]
    assert abs(crop.width - (x1 - x0)) <= 2 and abs(crop.height - (y1 - y0)) <= 2


def test_the_models_confidence_is_scored_as_a_probability_of_exactness(versions, curator):
    snap = three_image_snapshot()
    run = evaluation.evaluation_create(snapshot=snap, detector_version=None, recognizer_version=versions[1],
                                       created_by=curator)
    # right at 0.9, right at 0.6, wrong (one token of 7) at 0.3
    reader = StubReader(readings=[TRUTH[0], "a + b", r"\frac{1}{3}"], confidences=[0.9, 0.6, 0.3])
    run = evaluation.evaluation_run(run=run, reader=reader)
    assert run.status == "done", run.error
    o = run.metrics["overall"]
    assert o["confidence_rated"] == 3 and o["confidence_mean"] == pytest.approx(0.6)
    assert o["confidence_ece"] == pytest.approx((0.1 + 0.4 + 0.3) / 3)
    assert o["confidence_auroc"] == 1.0  # the wrong reading was the least sure
    assert run.metrics["by_category"]["printed"]["confidence_auroc"] is None  # both right: undefined
    assert evaluation.comparison_values(run)["confidence_ece"] == pytest.approx(0.8 / 3)
    stored = list(EvaluationSample.objects.filter(run=run).order_by("item__image_id").values_list("confidence", flat=True))
    assert stored == [0.9, 0.6, 0.3]

