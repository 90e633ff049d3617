"""Labeling pages: the annotator's "My work" and labeling page, the reviewer's page, and
the batches overview with the curator's new-batch and edit-batch forms.

Pages only read through selectors (a foreign task is simply not found: 404) and
hand the browser the ids and URLs it needs; the annotators' and reviewers' writes go
through the API, which calls the services. Exceptions: "Review next" (a POST to
/review/next/) holds the next annotation for that reviewer (`services.review_open_next`),
as the API's `annotations/review-next/` does, so that reviewers side by side see different
work; and the curator's batch forms, which validate with Django forms (labeling/forms.py)
and call `services.batch_create` / `services.batch_update`, as the API does.
A GET never takes a hold: link prefetchers, reloads, second tabs and crawlers would
otherwise hide work from the other reviewers for the length of a hold.
"""
from __future__ import annotations

import math

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, JSONField, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from common import roles
from common.fields import parse_row_id
from common.pages import add_service_errors, curator_required, role_required
from curation import selectors as curation_selectors
from curation.models import Category, DatasetSpec
from guides import selectors as guides_selectors

from . import forms, gating, selectors, services
from .models import Annotation, Batch, Review


def _optional_url(name: str, **kwargs) -> str:
    """The URL of a page another app may provide (guides, questions), or "" while it does not."""
    try:
        return reverse(name, kwargs=kwargs or None)
    except NoReverseMatch:
        return ""


RECENT_TASKS = 50  # rows of "My recent tasks" on My work
REWORK_PER_PAGE = 50  # rows of "Sent back to you" on one page of My work


def _rework_page(rejected: QuerySet[Annotation], number_text: str | None) -> dict:
    """Page `number_text` (1 for anything unreadable, the last one past the end) of the annotations
    sent back, with how many there are and how many of them are open (None: count the rows,
    they are all there). A list that fits one page costs one query and its prefetch, as
    before it was paged; a longer one adds one for the two counts."""
    number = parse_row_id(number_text) or 1
    rows_of = rejected.prefetch_related(None).prefetch_related(
        Prefetch("reviews", queryset=Review.objects.order_by("-created_at", "-id")))

    def rows(n: int) -> list[Annotation]:
        return list(rows_of[(n - 1) * REWORK_PER_PAGE:n * REWORK_PER_PAGE])

    page = rows(number)
    if number == 1 and len(page) < REWORK_PER_PAGE:
        count, n_open = len(page), None
    else:
        totals = rejected.aggregate(count=Count("id"),
                                    open=Count("id", filter=~Q(task__batch__status=Batch.Status.CLOSED)))
        count, n_open = totals["count"], totals["open"]
        last = max(1, math.ceil(count / REWORK_PER_PAGE))
        if number > last:
            number, page = last, rows(last)
    pages = max(1, math.ceil(count / REWORK_PER_PAGE))
    return {"rows": page, "number": number, "pages": pages, "count": count, "open": n_open,
            "previous": number - 1 if number > 1 else None, "next": number + 1 if number < pages else None}


@role_required(*roles.VENDOR_ROLES)
def my_work(request):
    """A vendor member's start page: their vendor, active batches, their annotations,
    rejections with reasons, and acceptances the reviewer corrected: the LaTeX (old → new) and
    the regions whose corners they moved."""
    user = request.user
    batches = selectors.batches_visible_to(user).filter(status=Batch.Status.ACTIVE).order_by("deadline", "id")
    mine = selectors.annotations_visible_to(user).filter(annotator=user).order_by("-updated_at", "-id")
    # Filtered and cut in the database: an annotator's history grows by the hundreds a week,
    # and every row brings its regions and reviews along (selectors._with_content).
    # Neither list shows regions; the rejected ones show their newest review, a page at a time
    # (?rework_page=N): an annotator may have hundreds sent back.
    rework = _rework_page(mine.filter(status=Annotation.Status.REJECTED), request.GET.get("rework_page"))
    rejected = rework["rows"]
    # Accepted work the reviewer corrected on acceptance (the text or corners of some regions): the light
    # counterpart of the rejections above, so the annotator learns what was wrong without a round
    # trip. Read with the recent rows (subqueries of the same query: no query more per page).
    accepting = Review.objects.filter(annotation=OuterRef("pk"), decision=Review.Decision.ACCEPT).order_by("-id")
    recent = list(mine.exclude(status=Annotation.Status.REJECTED).prefetch_related(None).annotate(
        corrections=Subquery(accepting.values("corrections")[:1], output_field=JSONField()),
        correction_comment=Subquery(accepting.values("comment")[:1]))[:RECENT_TASKS])
    corrected = [a for a in recent if a.corrections]
    for a in corrected:
        latex, moved = Review.split_corrections(a.corrections)
        # One row per change, in region order; a region whose text and corners changed has two.
        a.changes = sorted([{"region": int(i) + 1, "old": old, "new": new} for i, (old, new) in latex.items()]
                           + [{"region": int(i) + 1, "moved": True} for i in moved],
                           key=lambda c: (c["region"], "moved" in c))
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
        "corrected": corrected,
        "rework": rework,
        # over every page, not only the one shown
        "rework_open": (rework["open"] if rework["open"] is not None
                        else sum(not a.batch_closed for a in rejected)),
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
    # The page's script says what the reviewer changed in the LaTeX (from the API's `corrections`),
    # with their comment; moved corners are said here, to the annotator of the work only, with the
    # comment when no LaTeX changed (the script's note stays hidden then). An accepted annotation
    # is decided for good, so its newest acceptance is the one that corrected it.
    record, comment = (Review.objects.filter(annotation__task=task, annotation__annotator=request.user,
                                             annotation__status=Annotation.Status.ACCEPTED,
                                             decision=Review.Decision.ACCEPT)
                       .order_by("-created_at", "-id").values_list("corrections", "comment").first() or (None, ""))
    retyped, moved = Review.split_corrections(record)
    return render(request, "labeling/label.html", {
        "task": task,
        "batch": task.batch,
        "categories": categories,
        "guide_url": (_optional_url("guides:for-spec", spec_id=spec.pk)
                      if guides_selectors.guides_visible_to(request.user).filter(spec=spec).exists() else ""),
        "question_url": _optional_url("guides:question-create"),
        "reasons": dict(Review.Reason.choices),
        "moved_regions": sorted(int(i) + 1 for i in moved),
        "moved_comment": None if retyped else comment,
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


# ------------------------------------------------------------ batch forms (curators)


def _open_specs(user):
    """Specs a batch can be made of: those `user` sees that are not closed."""
    return curation_selectors.specs_visible_to(user).exclude(status=DatasetSpec.Status.CLOSED).order_by("name")


def _contract_prices(user, specs, vendors) -> dict[str, dict]:
    """"spec:vendor" -> the contract's currency and price per kind, for the price hint."""
    contracts = guides_selectors.contracts_visible_to(user).filter(spec__in=specs, vendor__in=vendors)
    return {f"{c.spec_id}:{c.vendor_id}": {"currency": c.currency,
                                          "prices": {kind: str(c.price_for(kind)) for kind in Batch.Kind.values}}
            for c in contracts}


def _price_hint(contracts: dict, spec_id, vendor_id, kind: str) -> str:
    """The line under the price: the contract's price for the kind, or that one is required.
    static/js/labeling/batch_form.js writes the same lines as the choices change."""
    if spec_id is None or vendor_id is None:
        return "Choose a spec and a vendor to see whether a contract prices the batch."
    contract = contracts.get(f"{spec_id}:{vendor_id}")
    if contract is None:
        return "No contract between this vendor and spec: give a unit price."
    price = contract["prices"].get(kind) or contract["prices"][Batch.Kind.FULL]
    return f"Contract price: {price} {contract['currency']} per task; leave the price empty to use it."


def _created_message(batch: Batch, asked: int) -> str:
    n = batch.agreed_quantity
    tasks = f"{n} task{'' if n == 1 else 's'}"
    if n >= asked:
        return f"Batch {batch.name} created with {tasks}."
    images = f"{n} image matches" if n == 1 else f"{n} images match"
    return (f"Batch {batch.name} created with {tasks}: only {images} the filter, fewer than the {asked} asked for; "
            f"its agreed quantity is {n}.")


@curator_required
def batch_create(request):
    """A new batch: spec, vendor, kind, quantity, price, deadline and the image filter, made by
    `services.batch_create`. ?spec=ID preselects a spec (the spec page links so)."""
    user = request.user
    specs = _open_specs(user)
    vendors = selectors.vendors_visible_to(user).filter(active=True).order_by("name")
    sources = curation_selectors.sources_visible_to(user).order_by("name")
    categories: dict[str, list[dict]] = {}
    for c in (curation_selectors.categories_visible_to(user).filter(spec__in=specs)
              .order_by("position", "id").values("spec_id", "slug", "name")):
        categories.setdefault(str(c["spec_id"]), []).append({"slug": c["slug"], "name": c["name"]})
    contracts = _contract_prices(user, specs, vendors)

    data = request.POST if request.method == "POST" else None
    source_of_choice = data if data is not None else request.GET
    spec_id = parse_row_id(source_of_choice.get("spec", ""))
    if spec_id is not None and not (str(spec_id) in categories or specs.filter(pk=spec_id).exists()):
        spec_id = None  # closed, or not there: nothing preselected
    spec_categories = categories.get(str(spec_id), []) if spec_id is not None else []
    # The chosen spec's categories; before one is chosen (or for one not offered) any open spec's,
    # so that the spec's own error is the one shown, and the service says which slugs are not its.
    category_choices = ([(c["slug"], c["name"]) for c in spec_categories] if spec_id is not None else
                        sorted({(c["slug"], c["name"]) for cats in categories.values() for c in cats}))
    form = forms.BatchCreateForm(data, specs=specs, vendors=vendors, sources=sources,
                                 category_choices=category_choices,
                                 initial={"spec": spec_id} if spec_id is not None else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            values = dict(form.cleaned_data)
            asked = values["quantity"]
            try:
                batch = services.batch_create(created_by=user, **values)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, _created_message(batch, asked))
                return redirect("batch_overview")
        status = 400
    chosen = set(data.getlist("categories")) if data is not None else set()
    vendor_id = parse_row_id(data.get("vendor", "")) if data is not None else None
    kind = (data.get("kind") if data is not None else None) or Batch.Kind.FULL
    return render(request, "labeling/batch_form.html", {
        "form": form,
        "category_boxes": [{**c, "checked": c["slug"] in chosen} for c in spec_categories],
        "spec_chosen": spec_id is not None,
        "price_hint": _price_hint(contracts, spec_id, vendor_id, kind),
        "batch_form_config": {"categories": categories, "contracts": contracts,
                              "matchesUrl": reverse("batch_matches")},
    }, status=status)


MATCHES_CAP = services.MAX_BATCH_TASKS  # the live count stops here ("more than …")


@curator_required
@require_safe
def batch_matches(request):
    """How many images of a spec a batch filter matches (the new-batch form's live count), as
    `services.batch_candidate_images` picks them: {"count": n, "more": bool}. 400 for a spec
    or source the curator cannot choose."""
    user = request.user
    spec_id = parse_row_id(request.GET.get("spec", ""))
    spec = _open_specs(user).filter(pk=spec_id).first() if spec_id is not None else None
    if spec is None:
        return JsonResponse({"spec": ["Choose one of the open specs."]}, status=400)
    source = None
    if request.GET.get("source"):
        source_id = parse_row_id(request.GET["source"])
        source = (curation_selectors.sources_visible_to(user).filter(pk=source_id).first()
                  if source_id is not None else None)
        if source is None:
            return JsonResponse({"source": ["Unknown source."]}, status=400)
    # Checked against the spec's own slugs before any query, as batch_create checks them: an
    # unknown one (or one holding a NUL byte, which PostgreSQL refuses in text) is a 400.
    categories = request.GET.getlist("categories")
    unknown = set(categories) - set(Category.objects.filter(spec=spec).values_list("slug", flat=True))
    if unknown:
        return JsonResponse({"categories": [f"Not a category of {spec.name}: {', '.join(sorted(map(repr, unknown)))}."]},
                            status=400)
    only_unlabeled = request.GET.get("only_unlabeled", "1").lower() not in ("0", "false", "off", "")
    n = services.batch_candidate_images(
        spec=spec, quantity=MATCHES_CAP + 1, categories=categories, source=source,
        only_unlabeled=only_unlabeled, lowest_confidence_first=False,  # the order changes no count
    ).count()
    return JsonResponse({"count": min(n, MATCHES_CAP), "more": n > MATCHES_CAP})


@curator_required
def batch_edit(request, pk: int):
    """Change a batch's name, status, deadline, price or agreed quantity through
    `services.batch_update`; under a contract the price is the contract's and not offered."""
    batch = get_object_or_404(selectors.batches_visible_to(request.user), pk=pk)
    contract = (guides_selectors.contracts_visible_to(request.user)
                .filter(vendor_id=batch.vendor_id, spec_id=batch.spec_id).first())
    task_count = batch.tasks.count()
    data = request.POST if request.method == "POST" else None
    form = forms.BatchEditForm(data, initial={name: getattr(batch, name) for name in services.BATCH_EDITABLE},
                               batch=batch, task_count=task_count, contract=contract)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            changes = {k: v for k, v in form.cleaned_data.items() if not form.fields[k].disabled}
            reason = changes.pop("reason")
            try:
                # a copy: the service sets the changes on the row it is given before it checks them
                saved = services.batch_update(batch=Batch.objects.get(pk=batch.pk), by=request.user, reason=reason,
                                              **changes)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"Batch {saved.name} saved.")
                return redirect("batch_overview")
        status = 400
    history = selectors.batch_history(batch, request.user).reverse()  # newest first: the latest matters most
    return render(request, "labeling/batch_edit.html", {
        "form": form, "batch": batch, "task_count": task_count, "contract": contract,
        "history": _history_rows(history[:HISTORY_ROWS]), "history_count": history.count(),
        "history_api": reverse("batch-history", kwargs={"pk": batch.pk}),
    }, status=status)


HISTORY_ROWS = 100  # newest events on the edit page; all of them at the API's batches/{id}/history/


def _history_rows(events) -> list[dict]:
    """Each event as the edit page lists it: when, who, and "Field: old → new" per change."""
    labels = {name: Batch._meta.get_field(name).verbose_name.capitalize() for name in Batch.EDITABLE}
    statuses = dict(Batch.Status.choices)

    def shown(field: str, value) -> str:
        if value is None or value == "":
            return "—"
        return str(statuses.get(value, value)) if field == "status" else str(value)

    # A batch made without a deadline would otherwise list "Deadline: — → —".
    return [{"event": e, "changes": [f"{labels.get(k, k)}: {shown(k, old)} → {shown(k, new)}"
                                     for k, (old, new) in e.changes.items() if shown(k, old) != shown(k, new)]}
            for e in events]
