"""Snapshot and export pages for curators and model teams.

Curators request snapshots; both roles read them, start exports and download them.
For vendor users these pages do not exist (404), like the rows behind them: snapshots
hold every vendor's accepted work and the sources' provenance. Reads go through the
selectors, writes through the services in :mod:`curation.snapshots`.
"""
from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from common import roles
from common.page_cursor import keyset_page_context, limit_param, newest_first_page
from common.pages import add_service_errors

from . import forms as f
from . import selectors, snapshots
from .exporters.base import REASON_NON_COMMERCIAL
from .models import Category, DatasetSpec, Export, Snapshot

# The images commercial exports leave out, listed by id a page at a time (`?cursor=`, `?limit=`).
LEFT_OUT_PAGE_SIZE = 100
MAX_LEFT_OUT_PAGE_SIZE = 500


def readers_only(view):
    """Curators and model teams in; anonymous users to the login page; everyone else 404."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not roles.can_read_all_data(request.user):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapped


def _snapshot_row(snapshot: Snapshot) -> dict:
    """What a list row shows, from the summaries stored on the snapshot (no query per row)."""
    splits = snapshot.split_counts or {}
    return {"snapshot": snapshot, "splits": [splits.get(name, 0) for name in snapshots.SPLIT_NAMES],
            "not_commercial": snapshot.item_count - snapshot.commercial_items}


@readers_only
def snapshot_list(request):
    """Every snapshot (newest first, a page at a time: `?cursor=`, `?limit=`) with its status,
    split sizes and licence summary."""
    qs = selectors.snapshots_visible_to(request.user)
    specs = list(selectors.specs_visible_to(request.user).order_by("name").only("id", "name"))
    spec_id = request.GET.get("spec", "")
    spec = next((s for s in specs if str(s.id) == spec_id), None)
    if spec is not None:
        qs = qs.filter(spec=spec)
    page, status = newest_first_page(request, qs)
    return render(request, "curation/snapshot_list.html", {
        **page, "rows": [_snapshot_row(s) for s in page["rows"]], "specs": specs, "spec": spec,
        "split_names": snapshots.SPLIT_NAMES,
    }, status=status)


@readers_only
def snapshot_create(request):
    """Request a snapshot of a spec (name, split shares, seed); a worker builds it."""
    if not roles.is_curator(request.user):
        raise PermissionDenied("Only curators create snapshots.")
    specs = selectors.specs_visible_to(request.user).order_by("name")
    initial = {"spec": request.GET.get("spec") or None}
    form = f.SnapshotForm(request.POST or None, specs=specs, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                snapshot = snapshots.snapshot_create(
                    spec=data["spec"], name=data["name"], created_by=request.user, seed=data["seed"],
                    ratios=(data["train"], data["validation"], data["test"]))
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"Snapshot {snapshot.name} is queued; a worker freezes it now.")
                return redirect("curation:snapshot-detail", pk=snapshot.pk)
        status = 400
    return render(request, "curation/snapshot_form.html", {"form": form}, status=status)


def _category_rows(snapshot: Snapshot) -> list[dict]:
    """Images per category and split, named and ordered as the spec's categories were frozen
    with the snapshot (slugs not in that list last). A category renamed, added or deleted since
    must not change the page, as it does not change the exports; only a snapshot frozen before
    categories were recorded falls back to the spec's current ones."""
    names = {c["slug"]: c.get("name") or c["slug"] for c in snapshot.categories or []} or dict(
        Category.objects.filter(spec_id=snapshot.spec_id).order_by("position", "id").values_list("slug", "name"))
    counts = snapshot.category_counts or {}
    order = [slug for slug in names if slug in counts] + sorted(set(counts) - set(names))
    rows = []
    for slug in order:
        splits = [counts[slug].get(name, 0) for name in snapshots.SPLIT_NAMES]
        rows.append({"slug": slug, "name": names.get(slug, slug), "splits": splits, "total": sum(splits)})
    return rows


@readers_only
def snapshot_detail(request, pk: int):
    """One snapshot: split table per category, licences, what commercial exports leave out (every
    image of it, by id, a page at a time: `?cursor=`, `?limit=`), its exports (status polled while
    they build, download when done) and a form for a new one."""
    snapshot = get_object_or_404(selectors.snapshots_visible_to(request.user), pk=pk)
    left_out = selectors.snapshot_items_left_out(request.user, snapshot)
    left_out_count = left_out.count() if snapshot.status == Snapshot.Status.READY else 0
    limit = limit_param(request, default=LEFT_OUT_PAGE_SIZE, maximum=MAX_LEFT_OUT_PAGE_SIZE)
    left_out_page = (keyset_page_context(request, left_out.order_by("image_id", "id"), limit=limit) if left_out_count
                     else {"rows": [], "older_url": "", "newer_url": "", "first_url": "", "cursor_error": ""})
    exports = selectors.exports_visible_to(request.user).filter(snapshot=snapshot).order_by("-created_at", "-id")
    splits = snapshot.split_counts or {}
    return render(request, "curation/snapshot_detail.html", {
        "snapshot": snapshot, "spec": snapshot.spec, "split_names": snapshots.SPLIT_NAMES,
        # what exports apply: the stricter of the use frozen with the snapshot and the spec's now
        "intended_use": DatasetSpec.IntendedUse(snapshots.snapshot_intended_use(snapshot)),
        "split_totals": [splits.get(name, 0) for name in snapshots.SPLIT_NAMES],
        "categories": _category_rows(snapshot), "licences": sorted((snapshot.licence_counts or {}).items()),
        "left_out": left_out_page["rows"], "left_out_page": left_out_page, "left_out_count": left_out_count,
        "left_out_reason": REASON_NON_COMMERCIAL, "exports": exports, "export_form": f.ExportForm(),
        "polling": snapshot.status in (Snapshot.Status.QUEUED, Snapshot.Status.BUILDING),
    }, status=400 if left_out_page["cursor_error"] else 200)


@readers_only
@require_POST
def snapshot_export_create(request, pk: int):
    """Start an export of the snapshot in the chosen format; the detail page polls its progress."""
    snapshot = get_object_or_404(selectors.snapshots_visible_to(request.user), pk=pk)
    form = f.ExportForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the export formats.")
        return redirect("curation:snapshot-detail", pk=snapshot.pk)
    try:
        job = snapshots.export_create(snapshot=snapshot, format=form.cleaned_data["format"], created_by=request.user)
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
    else:
        messages.success(request, f"{Export.Format(job.format).label} export #{job.pk} started.")
    return redirect(reverse("curation:snapshot-detail", args=[snapshot.pk]) + "#exports")


@readers_only
@require_POST
def snapshot_rebuild_check(request, pk: int):
    """Re-hash the frozen items and say whether they still give the recorded content hash."""
    snapshot = get_object_or_404(selectors.snapshots_visible_to(request.user), pk=pk)
    try:
        check = snapshots.snapshot_rebuild_check(snapshot=snapshot)
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
    else:
        if check.matches:
            messages.success(request, f"Rebuild check passed: {check.items} items hash to {check.recomputed_hash[:12]}, "
                                      "the recorded content hash.")
            if check.amended:
                messages.warning(request, check.amendment)
        else:
            messages.error(request, f"Rebuild check FAILED: the {check.items} items hash to "
                                    f"{check.recomputed_hash[:12]}, not the recorded {check.content_hash[:12]}.")
    return redirect("curation:snapshot-detail", pk=snapshot.pk)
