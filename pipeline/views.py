"""Pages: the curator's pre-labeling dashboard (jobs with live progress, start and cancel) and the
offline evaluations (comparison table, one run, its worst samples)."""
from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from common.page_cursor import newest_first_page
from common.roles import can_read_all_data, is_curator
from curation.selectors import snapshots_visible_to, specs_visible_to

from . import evaluation, selectors, services, stats
from .filters import PrelabelJobFilter
from .models import EvaluationRun, ModelVersion, PrelabelJob


def _message_errors(request, exc: ValidationError) -> None:
    """A service's field errors as one flash message on the page the user returns to."""
    messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()))


def _posted_id(request, field: str) -> int | None:
    """A posted id, or None when absent or not a number (so a lookup answers 404, not 500)."""
    value = (request.POST.get(field) or "").strip()
    return int(value) if value.isdigit() else None


FAILURES_SHOWN = 20
# The snapshot menus of the evaluations page list the newest snapshots (evaluated ones to compare
# on, any to start on); the one asked for by `?snapshot=` is added when older (each snapshot's page
# links here with it).
COMPARE_MENU_SIZE = 50
START_MENU_SIZE = 100


@login_required
def jobs_page(request):
    """Jobs with progress bars (refreshed from the API every few seconds) and model versions,
    newest first, a page at a time (`?cursor=`, `?limit=`); by `status` and `spec` on request."""
    if not can_read_all_data(request.user):
        raise PermissionDenied
    # The page is picked among the jobs alone (by the (created_at, id) index), and only its jobs
    # are then read through the selector, with their progress counts: paged on the selector, whose
    # counts group every job's items, each page aggregated the items of every job ever run before
    # its LIMIT (PostgreSQL: over a second at 100,000 jobs). Not counted, for the same reason.
    picked = PrelabelJobFilter(request.GET, queryset=selectors.prelabel_jobs_listed_to(request.user)).qs
    page, http_status = newest_first_page(request, picked, counted=False)
    jobs = selectors.prelabel_jobs_with_progress(request.user, [job.pk for job in page["rows"]])
    progress = [(job, selectors.prelabel_job_progress(job)) for job in jobs]
    # the images that failed, with why (all of them: GET /api/v1/prelabel-jobs/<id>/failures/)
    failures = selectors.prelabel_jobs_first_failures([job.pk for job, p in progress if p["failed"]],
                                                      per_job=FAILURES_SHOWN)
    rows = [(job, p, failures.get(job.pk, [])) for job, p in progress]
    return render(request, "pipeline/jobs.html", {
        **page, "rows": rows,
        "specs": specs_visible_to(request.user).order_by("name"),
        "versions": selectors.model_versions_visible_to(request.user).filter(is_active=True),
        "can_start": is_curator(request.user),
        "statuses": PrelabelJob.Status.choices, "status": request.GET.get("status", ""),
        "spec_id": request.GET.get("spec", ""),
    }, status=http_status)


@login_required
@require_POST
def job_start(request):
    if not is_curator(request.user):
        raise PermissionDenied
    spec = get_object_or_404(specs_visible_to(request.user), pk=_posted_id(request, "spec") or 0)
    try:
        job = services.prelabel_job_create(created_by=request.user, spec=spec, force=bool(request.POST.get("force")))
        messages.success(request, f"Pre-labeling job {job.pk} started for {job.total} images.")
    except ValidationError as exc:
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()))
    return redirect("pipeline:jobs")


@login_required
@require_POST
def job_cancel(request, pk: int):
    if not is_curator(request.user):
        raise PermissionDenied
    job = get_object_or_404(selectors.prelabel_jobs_visible_to(request.user), pk=pk)
    try:
        services.prelabel_job_cancel(job=job)
        messages.success(request, f"Job {pk} cancelled.")
    except ValidationError as exc:
        _message_errors(request, exc)
    return redirect("pipeline:jobs")


# ---------------------------------------------------------------- offline evaluations

COMPARISON_COLUMNS = [
    ("exact_match", "Exact match", "pct"), ("token_edit_distance", "Edit distance", "num"),
    ("bleu4", "BLEU-4", "num"), ("confidence_ece", "Conf. ECE", "num"), ("detection_precision", "Det. precision", "pct"),
    ("detection_recall", "Det. recall", "pct"), ("detection_f1", "Det. F1", "pct"), ("mean_iou", "Mean IoU", "num"),
    ("latency_p50_ms", "p50 ms/img", "ms"), ("latency_p95_ms", "p95 ms/img", "ms"), ("qps", "QPS", "num"),
]


def _require_model_people(user) -> None:
    if not can_read_all_data(user):
        raise PermissionDenied


@login_required
def evaluation_list(request):
    """Candidate models compared on one snapshot: a row per run (newest first, a page at a time:
    `?cursor=`, `?limit=`), a column per metric, the best value of each column among all the
    snapshot's finished runs highlighted, a verdict badge per requirement; and a form to start one.

    The snapshot menus list the newest snapshots and the one asked for by `?snapshot=` (any the
    user may see: each snapshot's page links here with it), so an older one can be compared on
    and evaluated too."""
    _require_model_people(request.user)
    runs = selectors.evaluation_runs_visible_to(request.user)
    snapshots = snapshots_visible_to(request.user).filter(evaluations__isnull=False).distinct()
    snapshot = None
    wanted = request.GET.get("snapshot")
    if wanted and wanted.isascii() and wanted.isdigit():  # ("²".isdigit(), and int() refuses it)
        snapshot = get_object_or_404(snapshots_visible_to(request.user), pk=wanted)
    else:
        latest = runs.first()
        snapshot = latest.snapshot if latest else None
    of_snapshot = runs.filter(snapshot=snapshot) if snapshot else runs.none()
    # the links name the snapshot: one chosen as the latest run's must not become another's on
    # the next page (a run started meanwhile on another snapshot)
    page, http_status = newest_first_page(request, of_snapshot,
                                          params={"snapshot": str(snapshot.pk)} if snapshot else None)
    best = _best_values(of_snapshot)
    rows = []
    for run in page["rows"]:
        values = evaluation.comparison_values(run)
        rows.append({"run": run, "cells": [{"value": values[key], "kind": kind,
                                            "best": values[key] is not None and best.get(key) == values[key]}
                                           for key, _, kind in COMPARISON_COLUMNS]})
    versions = selectors.model_versions_visible_to(request.user)
    return render(request, "pipeline/evaluations.html", {
        **page, "rows": rows,
        "snapshot": snapshot, "snapshots": _with_chosen(snapshots, snapshot, COMPARE_MENU_SIZE),
        "columns": COMPARISON_COLUMNS,
        "all_snapshots": _with_chosen(snapshots_visible_to(request.user), snapshot, START_MENU_SIZE),
        # an external full pipeline is evaluated in the detector's place (scored end to end)
        "detectors": versions.filter(kind__in=[ModelVersion.Kind.DETECTOR, ModelVersion.Kind.PIPELINE]),
        "recognizers": versions.filter(kind=ModelVersion.Kind.RECOGNIZER),
        # a start refused (a 400 message above) comes back with the models it had chosen
        "chosen": {f: request.GET.get(f, "") for f in ("detector_version", "recognizer_version")},
    }, status=http_status)


def _with_chosen(snapshots, chosen, newest: int) -> list:
    """The `newest` snapshots of a menu, and `chosen` after them when it is older (one query)."""
    menu = list(snapshots.order_by("-created_at", "-id")[:newest])
    if chosen is not None and all(s.pk != chosen.pk for s in menu):
        menu.append(chosen)
    return menu


def _best_values(runs) -> dict[str, float]:
    """The best value of each comparison column among all the finished `runs` (every page's, not
    only the one shown), read in one query of their overall figures and times."""
    done = (runs.filter(status=EvaluationRun.Status.DONE).select_related(None).order_by()
            .values_list("metrics__overall", "qps", "latency_p50_ms", "latency_p95_ms"))
    return evaluation.best_values([
        EvaluationRun(status=EvaluationRun.Status.DONE, metrics={"overall": overall or {}}, qps=qps,
                      latency_p50_ms=p50, latency_p95_ms=p95) for overall, qps, p50, p95 in done])


@login_required
@require_POST
def evaluation_start(request):
    _require_model_people(request.user)
    snapshot = get_object_or_404(snapshots_visible_to(request.user), pk=_posted_id(request, "snapshot") or 0)
    versions = selectors.model_versions_visible_to(request.user)

    def version(field):
        if not request.POST.get(field):
            return None
        return get_object_or_404(versions, pk=_posted_id(request, field) or 0)

    try:
        run = evaluation.evaluation_create(snapshot=snapshot, detector_version=version("detector_version"),
                                           recognizer_version=version("recognizer_version"),
                                           created_by=request.user)
        messages.success(request, f"Evaluation {run.pk} queued on {run.total} test images.")
    except ValidationError as exc:
        _message_errors(request, exc)
        chosen = urlencode({f: request.POST.get(f, "") for f in ("detector_version", "recognizer_version")
                            if request.POST.get(f)})
        return redirect(f"{reverse('pipeline:evaluations')}?snapshot={snapshot.pk}" + (f"&{chosen}" if chosen else ""))
    return redirect(f"{reverse('pipeline:evaluations')}?snapshot={snapshot.pk}")


@login_required
def evaluation_detail(request, pk: int):
    """One run: status and progress, overall figures, per-category table and the verdicts."""
    _require_model_people(request.user)
    run = get_object_or_404(selectors.evaluation_runs_visible_to(request.user), pk=pk)
    metrics = run.metrics or {}
    return render(request, "pipeline/evaluation_detail.html", {
        "run": run, "overall": metrics.get("overall"), "by_category": sorted((metrics.get("by_category") or {}).items()),
        "licence_excluded": metrics.get("licence_excluded") or [],
    })


@login_required
@require_POST
def evaluation_cancel(request, pk: int):
    _require_model_people(request.user)
    run = get_object_or_404(selectors.evaluation_runs_visible_to(request.user), pk=pk)
    try:
        evaluation.evaluation_cancel(run=run)
        messages.success(request, f"Evaluation {pk} cancelled.")
    except ValidationError as exc:
        _message_errors(request, exc)
    return redirect("pipeline:evaluation-detail", pk=pk)


SAMPLES_PER_PAGE = 25


@login_required
def evaluation_samples(request, pk: int):
    """The worst samples of a run: the crop, the truth, the prediction and their token difference."""
    _require_model_people(request.user)
    run = get_object_or_404(selectors.evaluation_runs_visible_to(request.user), pk=pk)
    category = request.GET.get("category") or None
    page = Paginator(selectors.evaluation_samples_worst_first(run, category=category), SAMPLES_PER_PAGE).get_page(
        request.GET.get("page"))
    samples = [(sample, evaluation.token_diff_html(sample.truth_latex, sample.predicted_latex)) for sample in page]
    categories = sorted((run.metrics or {}).get("by_category", {}))
    return render(request, "pipeline/evaluation_samples.html", {
        "run": run, "page": page, "samples": samples, "category": category or "", "categories": categories,
    })


# ------------------------------------------------------------------ QA statistics


def _qa_charts(payload: dict) -> dict:
    """One SVG chart per section of a QA report payload (pipeline/stats.py)."""
    from django.utils.safestring import mark_safe

    from common.charts import Row, hbar_svg

    def rows(items, keys, label="name"):
        return [Row(str(i.get(label)), [i.get(k) for k in keys]) for i in items]

    agree_keys = ["mean_quad_iou", "mean_mask_iou", "latex_exact_match", "latex_edit_distance"]
    agree_series = ["quad IoU", "mask IoU", "LaTeX exact", "token edit dist."]
    gold_keys = ["region_recall", "region_precision", "mean_iou", "latex_exact_match"]
    gold_series = ["recall", "precision", "mean IoU", "LaTeX exact"]
    pre_keys = ["kept", "moved", "deleted", "added"]
    a, g, r, p, t = (payload.get(k, {}) for k in ("agreement", "gold", "reviews", "prelabel", "throughput"))
    reasons = (r.get("overall") or {}).get("reasons", {})
    # Currencies are never summed or put on one axis: one chart per currency, each vendor's
    # cost in it (a vendor paid in two currencies is in both).
    cost_by_currency: dict[str, list] = {}
    for v in t.get("by_vendor", []):
        for currency, amount in (v.get("cost") or {}).items():
            cost_by_currency.setdefault(currency, []).append(Row(v["name"], [float(amount)], None))
    return {
        "agreement_vendor": hbar_svg(rows(a.get("by_vendor", []), agree_keys), agree_series,
                                     title="Agreement per vendor", max_value=1, fmt="num"),
        "agreement_annotator": hbar_svg(rows(a.get("by_annotator", []), agree_keys), agree_series,
                                        title="Agreement per annotator", max_value=1, fmt="num"),
        "agreement_category": hbar_svg(rows(a.get("by_category", []), agree_keys), agree_series,
                                       title="Agreement per category", max_value=1, fmt="num"),
        "gold_vendor": hbar_svg(rows(g.get("by_vendor", []), gold_keys), gold_series,
                                title="Gold accuracy per vendor", max_value=1, fmt="num"),
        "gold_annotator": hbar_svg(rows(g.get("by_annotator", []), gold_keys), gold_series,
                                   title="Gold accuracy per annotator", max_value=1, fmt="num"),
        "review_rates": hbar_svg(rows(r.get("by_vendor", []), ["accept_rate", "reject_rate"]), ["accepted", "rejected"],
                                 title="Review decisions per vendor", max_value=1, fmt="pct"),
        "review_reasons": hbar_svg([Row(k, [v["count"]]) for k, v in reasons.items()], ["rejections"],
                                   title="Reasons given for rejections"),
        "prelabel_model": hbar_svg(rows(p.get("by_model", []), pre_keys, "model"), pre_keys,
                                   title="Pre-label changes per model version"),
        "prelabel_category": hbar_svg([Row(f'{i["model"]} · {i["category"]}', [i.get(k) for k in pre_keys])
                                       for i in p.get("by_model_category", [])], pre_keys,
                                      title="Pre-label changes per model version and category"),
        "prelabel_latex": hbar_svg(rows(p.get("by_model", []), ["latex_unchanged_rate", "latex_edit_distance"], "model"),
                                   ["LaTeX unchanged", "token edit distance"],
                                   title="LaTeX from prediction to accepted answer", max_value=1, fmt="num"),
        "prelabel_confidence": hbar_svg(rows([m for m in p.get("by_model", []) if m.get("with_confidence")],
                                             ["confidence_mean", "confidence_right_rate"], "model"),
                                        ["model's mean confidence", "regions that came out right"],
                                        title="Does the model's confidence hold? (per model version)", max_value=1,
                                        fmt="pct"),
        "seconds_vendor": hbar_svg(rows(t.get("by_vendor", []), ["median_seconds_per_task"]), ["median seconds"],
                                   title="Median seconds per task, per vendor", fmt="num"),
        "seconds_annotator": hbar_svg(rows(t.get("by_annotator", []), ["median_seconds_per_task"]),
                                      ["median seconds"], title="Median seconds per task, per annotator", fmt="num"),
        "cost_vendor": mark_safe("".join(  # noqa: S308 - hbar_svg escapes its labels; these are its SVGs
            hbar_svg(rows_, [currency], title=f"Cost of accepted tasks per vendor, in {currency}", fmt="num")
            for currency, rows_ in sorted(cost_by_currency.items()))),
    }


@login_required
def spec_qa(request, pk: int):
    """A spec's latest QA statistics with a chart per section (curators only)."""
    if not is_curator(request.user):
        raise PermissionDenied
    spec = get_object_or_404(specs_visible_to(request.user), pk=pk)
    report = selectors.qa_reports_visible_to(request.user).filter(spec=spec).order_by("-computed_at", "-id").first()
    return render(request, "pipeline/spec_qa.html", {
        "spec": spec, "report": report, "p": report.payload if report else {},
        "charts": _qa_charts(report.payload) if report else {},
    })


@login_required
@require_POST
def spec_qa_recompute(request, pk: int):
    """The curator's "recompute now": the computation runs on a worker."""
    if not is_curator(request.user):
        raise PermissionDenied
    spec = get_object_or_404(specs_visible_to(request.user), pk=pk)
    stats.spec_stats_request(spec=spec)
    messages.success(request, "QA statistics are being recomputed; reload in a moment.")
    return redirect("pipeline:spec-qa", pk=spec.pk)
