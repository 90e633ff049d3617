"""QA statistics over the database: every stored number checked against tests/qa_world.py."""
from __future__ import annotations

import pytest
from django.core.cache import cache

from labeling import services as ls
from pipeline import refresh, tasks
from pipeline.models import QAReport
from pipeline.stats import spec_stats_compute
from tests import factories
from tests.factories import quad

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def by_name(rows):
    return {r["name"]: r for r in rows}


def test_report_is_stored_with_timestamp_and_duration(qa_world):
    report = spec_stats_compute(spec=qa_world.spec)
    assert QAReport.objects.filter(spec=qa_world.spec).count() == 1
    assert report.computed_at is not None and report.duration_ms >= 0
    assert set(report.payload) >= {"agreement", "gold", "reviews", "prelabel", "throughput"}


def test_agreement_on_the_overlapped_task(qa_world):
    a = spec_stats_compute(spec=qa_world.spec).payload["agreement"]
    assert (a["items"], a["of"]) == (1, 1)
    o = a["overall"]
    assert o["pairs"] == 1 and o["matched_regions"] == 2 and o["region_f1"] == 1.0
    assert o["mean_quad_iou"] == pytest.approx((7 / 9 + 1) / 2)
    assert o["mean_mask_iou"] is None
    assert o["latex_exact_match"] == 0.5
    assert o["latex_edit_distance"] == pytest.approx(1 / 14)
    assert set(by_name(a["by_annotator"])) == {"a1", "a2"}
    assert by_name(a["by_vendor"])["V1"]["pairs"] == 1 and "V2" not in by_name(a["by_vendor"])
    assert by_name(a["by_category"])["printed"]["mean_quad_iou"] == pytest.approx(8 / 9)


def test_gold_accuracy_per_annotator_and_vendor(qa_world):
    g = spec_stats_compute(spec=qa_world.spec).payload["gold"]
    b1 = by_name(g["by_annotator"])["b1"]
    assert b1 == {"id": qa_world.b1.id, "name": "b1", "tasks": 1, "latex_only_tasks": 0, "region_recall": 1.0,
                  "region_precision": 0.5, "mean_iou": 1.0, "latex_exact_match": 1.0, "latex_edit_distance": 0.0}
    assert by_name(g["by_vendor"])["V2"]["region_precision"] == 0.5
    assert "a1" not in by_name(g["by_annotator"])


def test_review_rates_and_reasons(qa_world):
    r = spec_stats_compute(spec=qa_world.spec).payload["reviews"]
    o = r["overall"]
    # Accepted: a1 on A, a1 on C, b1 on G, b1 on P (second time); rejected: a2 on A, b1 on P.
    assert (o["reviews"], o["accepted"], o["rejected"]) == (6, 4, 2)
    assert o["accept_rate"] == pytest.approx(2 / 3) and o["reject_rate"] == pytest.approx(1 / 3)
    assert {k: v["count"] for k, v in o["reasons"].items()} == {"latex_error": 1, "missing_formula": 1,
                                                                "wrong_region": 1}
    assert o["reasons"]["latex_error"]["share"] == pytest.approx(1 / 3)
    v = by_name(r["by_vendor"])
    assert (v["V1"]["accepted"], v["V1"]["rejected"], v["V2"]["accepted"], v["V2"]["rejected"]) == (2, 1, 2, 1)
    assert by_name(r["by_annotator"])["a2"]["reject_rate"] == 1.0


def test_prelabel_changes_of_the_edited_prediction(qa_world):
    p = spec_stats_compute(spec=qa_world.spec).payload["prelabel"]
    assert (p["items"], p["of"]) == (1, 1)
    o = p["overall"]
    assert (o["kept"], o["moved"], o["deleted"], o["added"]) == (1, 1, 1, 1)
    assert o["latex_unchanged_rate"] == 0.5
    assert o["latex_edit_distance"] == pytest.approx(1 / 6)
    assert [m["model"] for m in p["by_model"]] == ["det@1"]
    assert [(m["model"], m["category"], m["kept"]) for m in p["by_model_category"]] == [("det@1", "handwritten", 1)]


def test_prelabel_confidence_is_set_against_what_came_out_right(qa_world):
    o = spec_stats_compute(spec=qa_world.spec).payload["prelabel"]["overall"]
    # promised 0.9, 0.6, 0.3; only the kept "y" was accepted unchanged
    assert o["with_confidence"] == 3
    assert o["confidence_mean"] == pytest.approx(0.6) and o["confidence_right_rate"] == pytest.approx(1 / 3)
    assert o["confidence_auroc"] == 1.0  # the one right region was the most confident
    assert o["confidence_ece"] == pytest.approx((0.1 + 0.6 + 0.3) / 3)


def test_throughput_and_cost(qa_world):
    t = spec_stats_compute(spec=qa_world.spec).payload["throughput"]
    o = t["overall"]
    # Seconds per annotation: a1 30 and 10, a2 50, b1 20 and 40+20.
    assert o["annotations"] == 5 and o["median_seconds_per_task"] == 30
    # Accepted tasks: C (V1, 0.25), G and P (V2, 0.40); formulas 1 + 2 + 3.
    assert o["accepted_tasks"] == 3 and o["accepted_formulas"] == 6
    assert o["cost"] == {"USD": "1.0500"}
    assert float(o["cost_per_formula"]["USD"]) == pytest.approx(1.05 / 6)
    v = by_name(t["by_vendor"])
    assert v["V1"]["median_seconds_per_task"] == 30 and v["V2"]["median_seconds_per_task"] == 40
    assert v["V1"]["cost"] == {"USD": "0.2500"} and v["V2"]["cost"] == {"USD": "0.8000"}
    assert float(v["V2"]["cost_per_formula"]["USD"]) == pytest.approx(0.16)
    a = by_name(t["by_annotator"])
    assert (a["a1"]["median_seconds_per_task"], a["a2"]["median_seconds_per_task"],
            a["b1"]["median_seconds_per_task"]) == (20, 50, 40)


def test_a_vendor_paid_in_two_currencies_has_each_cost_divided_by_its_own_formulas(spec):
    """3 tasks at 0.0125 USD and 2 at 0.50 EUR, 2 formulas each: each currency's cost used to be
    divided by all 10 formulas of the vendor (USD 0.00375, EUR 0.100 per formula)."""
    from decimal import Decimal

    vendor = factories.make_vendor("V")
    annotator, reviewer = (factories.make_user(role, vendor=vendor) for role in ("annotator", "reviewer"))
    for n, (price, currency) in ((3, ("0.0125", "USD")), (2, ("0.50", "EUR"))):
        factories.make_batch(spec, vendor, images=n, unit_price=Decimal(price), currency=currency)
        for _ in range(n):
            task = ls.task_claim_next(annotator=annotator).task
            done = ls.annotation_create(task=task, annotator=annotator, regions=[quad(), quad(100, 50, 150, 90)],
                                        submit=True)
            ls.review_create(annotation=done, reviewer=reviewer, decision="accept")
    t = spec_stats_compute(spec=spec).payload["throughput"]
    v = by_name(t["by_vendor"])["V"]
    assert v["accepted_formulas"] == 10 and v["cost"] == {"USD": "0.0375", "EUR": "1.0000"}
    assert {c: float(x) for c, x in v["cost_per_formula"].items()} == {"USD": 0.00625, "EUR": 0.25}
    assert {c: float(x) for c, x in t["overall"]["cost_per_formula"].items()} == {"EUR": 0.25, "USD": 0.00625}


def test_only_the_newest_reports_are_kept(qa_world, monkeypatch):
    monkeypatch.setattr("pipeline.stats.KEEP_REPORTS", 2)
    ids = [spec_stats_compute(spec=qa_world.spec).id for _ in range(3)]
    assert list(QAReport.objects.filter(spec=qa_world.spec).values_list("id", flat=True)) == ids[:0:-1]


def test_two_submits_schedule_one_computation(spec, vendor, monkeypatch, django_capture_on_commit_callbacks):
    cache.delete(refresh.pending_key(spec.id))
    scheduled = []
    monkeypatch.setattr(tasks.spec_stats_refresh, "apply_async",
                        lambda args, countdown: scheduled.append((args, countdown)))
    factories.make_batch(spec, vendor, images=2)
    cache.delete(refresh.pending_key(spec.id))  # the batch itself scheduled one (not run: outside the capture)
    annotators = [factories.make_user("annotator", vendor=vendor) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        for annotator in annotators:
            task = ls.task_claim_next(annotator=annotator).task
            ls.annotation_create(task=task, annotator=annotator, regions=[quad()], submit=True)
    assert scheduled == [((spec.id,), refresh.DEBOUNCE_SECONDS)]
    # A draft save is not a change the statistics see: nothing more is scheduled.
    annotator = factories.make_user("annotator", vendor=vendor)
    factories.make_batch(spec, vendor, images=1)
    cache.delete(refresh.pending_key(spec.id))
    with django_capture_on_commit_callbacks(execute=True):
        task = ls.task_claim_next(annotator=annotator).task
        ls.annotation_create(task=task, annotator=annotator, regions=[quad()])
    assert len(scheduled) == 1


def test_refresh_task_clears_the_marker_and_stores_a_report(qa_world):
    cache.add(refresh.pending_key(qa_world.spec.id), 1)
    report_id = tasks.spec_stats_refresh(qa_world.spec.id)
    assert QAReport.objects.get(pk=report_id).spec_id == qa_world.spec.id
    assert cache.get(refresh.pending_key(qa_world.spec.id)) is None
    assert tasks.spec_stats_refresh(10**9) is None  # a deleted spec is skipped quietly


def test_periodic_refresh_picks_specs_changed_since_their_report(qa_world, django_capture_on_commit_callbacks):
    assert tasks.spec_stats_refresh_active() == []  # the spec is still a draft
    qa_world.spec.status = "active"
    qa_world.spec.save(update_fields=["status"])
    assert tasks.spec_stats_refresh_active() == [qa_world.spec.id]  # eager: computed now
    assert tasks.spec_stats_refresh_active() == []


def test_periodic_refresh_picks_active_specs_whose_progress_is_missing_or_over_an_hour_old(qa_world):
    from datetime import timedelta

    from django.utils import timezone

    from curation.models import ProgressReport

    qa_world.spec.status = "active"
    qa_world.spec.save(update_fields=["status"])
    tasks.spec_stats_refresh_active()
    assert tasks.spec_stats_refresh_active() == []
    # an upload whose debounced refresh was lost changes no annotation: only the age tells
    ProgressReport.objects.filter(spec=qa_world.spec).update(computed_at=timezone.now() - timedelta(minutes=59))
    assert tasks.spec_stats_refresh_active() == []
    ProgressReport.objects.filter(spec=qa_world.spec).update(computed_at=timezone.now() - timedelta(minutes=61))
    assert tasks.spec_stats_refresh_active() == [qa_world.spec.id]
    assert ProgressReport.objects.get(spec=qa_world.spec).computed_at > timezone.now() - timedelta(minutes=1)
    ProgressReport.objects.filter(spec=qa_world.spec).delete()
    assert tasks.spec_stats_refresh_active() == [qa_world.spec.id]
    assert ProgressReport.objects.filter(spec=qa_world.spec).exists()


def test_a_broker_failure_after_commit_keeps_the_submit_and_retries_on_the_next_write(
        spec, vendor, monkeypatch, django_capture_on_commit_callbacks):
    cache.delete(refresh.pending_key(spec.id))
    calls = []

    def broker_down(args, countdown):
        calls.append(args)
        raise OSError("broker unreachable")

    monkeypatch.setattr(tasks.spec_stats_refresh, "apply_async", broker_down)
    factories.make_batch(spec, vendor, images=2)
    cache.delete(refresh.pending_key(spec.id))  # the batch itself scheduled one (not run: outside the capture)
    annotators = [factories.make_user("annotator", vendor=vendor) for _ in range(2)]
    for annotator in annotators:
        with django_capture_on_commit_callbacks(execute=True):
            task = ls.task_claim_next(annotator=annotator).task
            annotation = ls.annotation_create(task=task, annotator=annotator, regions=[quad()], submit=True)
        assert annotation.status == "submitted"
    # the marker was dropped after the failure, so the second submit tried again
    assert calls == [(spec.id,), (spec.id,)]
    assert cache.get(refresh.pending_key(spec.id)) is None


def test_gold_answer_with_latex_and_no_region_is_scored_on_the_latex():
    from tests.qa_world import make_latex_gold_world

    world = make_latex_gold_world()
    g = spec_stats_compute(spec=world.spec).payload["gold"]
    assert (g["items"], g["of"]) == (3, 3)
    wrong = by_name(g["by_annotator"])["wrong"]
    # The best of the two regions ("a+c") against "a+b"; no geometry to measure.
    assert wrong == {"id": world.wrong.id, "name": "wrong", "tasks": 1, "latex_only_tasks": 1,
                     "region_recall": None, "region_precision": None, "mean_iou": None,
                     "latex_exact_match": 0.0, "latex_edit_distance": pytest.approx(1 / 3)}
    right = by_name(g["by_annotator"])["right"]
    # The boxed gold task alone makes the geometry; both tasks make the LaTeX.
    assert (right["tasks"], right["latex_only_tasks"]) == (2, 1)
    assert (right["region_recall"], right["region_precision"], right["mean_iou"]) == (1.0, 1.0, 1.0)
    assert (right["latex_exact_match"], right["latex_edit_distance"]) == (1.0, 0.0)
    o = g["overall"]
    assert (o["tasks"], o["latex_only_tasks"], o["region_recall"], o["region_precision"]) == (3, 2, 1.0, 1.0)
    assert o["latex_exact_match"] == pytest.approx(2 / 3)
    assert o["latex_edit_distance"] == pytest.approx(1 / 9)
