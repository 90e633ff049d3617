"""Pages: the curator's pre-labeling dashboard (jobs with live progress, start and cancel)."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from common.roles import can_read_all_data, is_curator
from curation.selectors import specs_visible_to

from . import selectors, services, stats
from .filters import PrelabelJobFilter


@login_required
def jobs_page(request):
    """Jobs with progress bars (refreshed from the API every few seconds) and model versions."""
    if not can_read_all_data(request.user):
        raise PermissionDenied
    jobs = PrelabelJobFilter(request.GET, queryset=selectors.prelabel_jobs_visible_to(request.user)).qs[:50]
    rows = [(job, selectors.prelabel_job_progress(job)) for job in jobs]
    return render(request, "pipeline/jobs.html", {
        "rows": rows,
        "specs": specs_visible_to(request.user).order_by("name"),
        "versions": selectors.model_versions_visible_to(request.user).filter(is_active=True),
        "can_start": is_curator(request.user),
    })


@login_required
@require_POST
def job_start(request):
    if not is_curator(request.user):
        raise PermissionDenied
    spec = get_object_or_404(specs_visible_to(request.user), pk=request.POST.get("spec") or 0)
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
        messages.error(request, "; ".join(" ".join(v) for v in exc.message_dict.values()))
    return redirect("pipeline:jobs")


# ------------------------------------------------------------------ QA statistics


def _qa_charts(payload: dict) -> dict:
    """One SVG chart per section of a QA report payload (pipeline/stats.py)."""
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
    vendor_cost = [Row(v["name"], [float(amount)], None) for v in t.get("by_vendor", [])
                   for amount in list(v.get("cost", {}).values())[:1]]
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
        "seconds_vendor": hbar_svg(rows(t.get("by_vendor", []), ["median_seconds_per_task"]), ["median seconds"],
                                   title="Median seconds per task, per vendor", fmt="num"),
        "seconds_annotator": hbar_svg(rows(t.get("by_annotator", []), ["median_seconds_per_task"]),
                                      ["median seconds"], title="Median seconds per task, per annotator", fmt="num"),
        "cost_vendor": hbar_svg(vendor_cost, ["cost"], title="Cost of accepted tasks per vendor", fmt="num"),
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
