"""Labeling pages: the annotator's "My work" and labeling page, the reviewer's page.

Pages only read through selectors (a foreign task is simply not found: 404) and
hand the browser the ids and URLs it needs; every write goes through the API,
which calls the services. One exception: "Review next" (a POST to /review/next/) holds
the next annotation for that reviewer (`services.review_open_next`), as the API's
`annotations/review-next/` does, so that reviewers side by side see different work.
A GET never takes a hold: link prefetchers, reloads, second tabs and crawlers would
otherwise hide work from the other reviewers for the length of a hold.
"""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, Q
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from common import roles
from common.pages import role_required
from curation.models import Category
from guides import selectors as guides_selectors

from . import gating, selectors, services
from .models import Annotation, Batch, Review


def _optional_url(name: str, **kwargs) -> str:
    """The URL of a page another app may provide (guides, questions), or "" while it does not."""
    try:
        return reverse(name, kwargs=kwargs or None)
    except NoReverseMatch:
        return ""


RECENT_TASKS = 50  # rows of "My recent tasks" on My work


@role_required(*roles.VENDOR_ROLES)
def my_work(request):
    """A vendor member's start page: their vendor, active batches, their annotations,
    rejections with reasons."""
    user = request.user
    batches = selectors.batches_visible_to(user).filter(status=Batch.Status.ACTIVE).order_by("deadline", "id")
    mine = selectors.annotations_visible_to(user).filter(annotator=user).order_by("-updated_at", "-id")
    # Filtered and cut in the database: an annotator's history grows by the hundreds a week,
    # and every row brings its regions and reviews along (selectors._with_content).
    # Neither list shows regions; the rejected ones show their newest review.
    rejected = list(mine.filter(status=Annotation.Status.REJECTED).prefetch_related(None).prefetch_related(
        Prefetch("reviews", queryset=Review.objects.order_by("-created_at", "-id"))))
    recent = list(mine.exclude(status=Annotation.Status.REJECTED).prefetch_related(None)[:RECENT_TASKS])
    reason_labels = dict(Review.Reason.choices)
    for a in rejected:
        last = next(iter(a.reviews.all()), None)
        a.last = last
        a.reason_labels = [reason_labels.get(r, r) for r in (last.reasons if last else [])]
        # A closed batch refuses every save: its rework is shown (the reasons stay worth reading)
        # but not offered, or the annotator would redo it only to be refused on saving.
        a.batch_closed = a.task.batch.status == Batch.Status.CLOSED
    return render(request, "labeling/my_work.html", {
        "batches": batches,
        "annotations": recent,
        "rejected": rejected,
        "rework_open": sum(not a.batch_closed for a in rejected),
        "is_annotator": roles.has_role(user, roles.ANNOTATOR),
        # the queue's own reasons (a new guide version to read), so "no further task" is not said
        # to somebody whose tasks wait behind a guide
        "held_back": selectors.batches_held_back(user),
        "is_reviewer": roles.has_role(user, roles.REVIEWER, roles.CURATOR),
        "vendor": selectors.vendor_of(user),
    })


@login_required
def label_task(request, task_id: int):
    """The labeling page of one task of the user's vendor (404 for anybody else's)."""
    task = get_object_or_404(selectors.tasks_visible_to(request.user), pk=task_id)
    spec = task.batch.spec
    categories = list(Category.objects.filter(spec=spec).order_by("name").values("slug", "name"))
    return render(request, "labeling/label.html", {
        "task": task,
        "batch": task.batch,
        "categories": categories,
        "guide_url": (_optional_url("guides:for-spec", spec_id=spec.pk)
                      if guides_selectors.guides_visible_to(request.user).filter(spec=spec).exists() else ""),
        "question_url": _optional_url("guides:question-create"),
        "reasons": dict(Review.Reason.choices),
        # Work taken before a new guide version was published cannot be handed in until that
        # version is acknowledged: say so on opening, not only when Submit is refused.
        "guide_hold": (gating.guide_acknowledgement_hold(annotator=request.user, batch=task.batch, handing_in=True)
                       if roles.has_role(request.user, roles.ANNOTATOR) else None),
    })


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: the answer to a POST, to be fetched with a GET (a reload does not post again)."""

    status_code = 303


def _refuse_non_reviewers(user) -> None:
    if not roles.has_role(user, roles.REVIEWER, roles.CURATOR):
        raise Http404("Only reviewers review.")


@login_required
@require_safe
def review_queue(request):
    """A reviewer's start page: how much is waiting, how much is open with other reviewers,
    the annotation this reviewer holds (to continue), and a "Review next" button that POSTs
    to `review_take_next`. Reading it takes and extends no hold."""
    user = request.user
    _refuse_non_reviewers(user)
    queue = selectors.annotations_reviewable_by(user)
    now = timezone.now()
    held = queue.filter(review_holder=user, review_held_until__gt=now).first()
    return render(request, "labeling/review_queue.html", {
        "waiting": queue.count(),
        "held_by_others": queue.filter(review_held_until__gt=now).exclude(review_holder=user).count(),
        "free": queue.filter(Q(review_holder__isnull=True) | Q(review_held_until__lte=now)).count(),
        "held": held,
    })


@login_required
@require_POST
def review_take_next(request):
    """"Review next": hold the next annotation for this reviewer (the one they hold, else the
    oldest nobody holds) and answer 303 to its review screen; back to the queue page when
    nothing is free."""
    user = request.user
    _refuse_non_reviewers(user)
    annotation = services.review_open_next(reviewer=user)
    if annotation is None:
        return HttpResponseSeeOther(reverse("review_next"))
    return HttpResponseSeeOther(reverse("review_annotation", kwargs={"annotation_id": annotation.pk}))


@login_required
@require_safe
def review(request, annotation_id: int):
    """The review screen of one submitted annotation the reviewer may review. It takes no hold
    (that is `review_take_next`'s, on a POST); it says who holds it, if anybody does."""
    user = request.user
    _refuse_non_reviewers(user)
    queue = selectors.annotations_reviewable_by(user)
    annotation = get_object_or_404(queue.select_related("annotator"), pk=annotation_id)
    task = selectors.tasks_visible_to(user).get(pk=annotation.task_id)
    # A resubmitted rework: its reviewer checks that what was asked for was fixed, so the
    # earlier decisions (reasons, comment, the version they were about) are shown with it.
    reason_labels = dict(Review.Reason.choices)
    previous_reviews = list(selectors.reviews_visible_to(user).filter(annotation=annotation)
                            .order_by("-created_at", "-id"))
    for r in previous_reviews:
        r.reason_labels = [reason_labels.get(code, code) for code in r.reasons]
    now = timezone.now()
    hold = None
    if annotation.review_holder_id and annotation.review_held_until and annotation.review_held_until > now:
        hold = {
            "mine": annotation.review_holder_id == user.pk,
            "until": annotation.review_held_until,
            # a hold is taken (or renewed) for REVIEW_HOLD: its start is that much before its end
            "since": annotation.review_held_until - services.REVIEW_HOLD,
        }
    return render(request, "labeling/review.html", {
        "annotation": annotation,
        "task": task,
        "previous_reviews": previous_reviews,
        "waiting": queue.count(),
        "hold": hold,
        "reasons": Review.Reason.choices,
    })


@role_required(roles.CURATOR, roles.VENDOR_MANAGER)
def batch_overview(request):
    """Batches per vendor with progress against the agreed quantity and the cost so far
    (accepted tasks times the unit price; rejected work is not paid). A batch not closed
    and not done whose deadline was before today (in the configured time zone) is overdue."""
    rows = list(selectors.batches_with_progress(request.user))
    today = timezone.localdate()
    vendors: dict[int, dict] = {}
    for batch in rows:
        batch.cost_so_far = batch.n_accepted * batch.unit_price
        batch.overdue = bool(batch.deadline and batch.deadline < today and batch.status != Batch.Status.CLOSED
                             and batch.n_accepted < batch.agreed_quantity)
        group = vendors.setdefault(batch.vendor_id, {"vendor": batch.vendor, "batches": [], "totals": {}})
        group["batches"].append(batch)
        group["totals"][batch.currency] = group["totals"].get(batch.currency, 0) + batch.cost_so_far
    return render(request, "labeling/batches.html", {"vendors": list(vendors.values())})
