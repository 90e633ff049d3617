"""Pages: the curator's pre-labeling dashboard (jobs with live progress, start and cancel)."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from common.roles import can_read_all_data, is_curator
from curation.selectors import specs_visible_to

from . import selectors, services
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
