"""Write paths for labeling: vendors, batches, the work queue, annotations, reviews
and imported predictions.

Every function is keyword-only and atomic. Views, pages, admin actions and
commands call these; none writes labeling models directly.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Count, Exists, F, Min, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from common import geometry, latex, rawsql, rle, roles
from common.fields import is_row_id, slug_for, unstorable_char
from common.unchangeable import CANNOT_CHANGE
from curation.models import Category, DatasetSpec, Image, Source
from pipeline.refresh import spec_stats_refresh_soon

from . import gating
from .models import (
    Annotation,
    AnnotationVersion,
    Batch,
    BatchEvent,
    Claim,
    Prediction,
    Region,
    Review,
    Task,
    Vendor,
    VendorMembership,
)
from .selectors import task_from_row

LEASE = timedelta(minutes=30)
# First key of the advisory lock that serializes one annotator's claims (PostgreSQL); the
# second is the annotator's id. Any constant no other lock of the platform uses.
CLAIM_LOCK_NAMESPACE = 0x4D5354  # "MST"
# Longest LaTeX answer for one region: a real formula is far shorter, and the checks
# should never run over a megabyte someone pasted.
MAX_LATEX_LENGTH = 4000
MAX_REGIONS = 500
MAX_BATCH_TASKS = 100_000
MAX_PREDICTION_ITEMS = 2000
MAX_TIME_SPENT_SECONDS = 24 * 3600

# ----------------------------------------------------------------- vendors


@transaction.atomic
def vendor_create(*, name: str, contact_email: str = "", slug: str = "", active: bool = True) -> Vendor:
    """Register an outsourcing company (`active` false: registered switched off)."""
    vendor = Vendor(name=name, slug=slug or slug_for(name, prefix="vendor", max_length=80), contact_email=contact_email,
                    active=active)
    if not vendor.slug:
        raise ValidationError({"name": "The name must contain letters or digits."})
    vendor.full_clean()
    vendor.save()
    return vendor


@transaction.atomic
def vendor_member_add(*, vendor: Vendor, user: User) -> VendorMembership:
    """Make `user` a member of `vendor`; a user works for one vendor only."""
    # A switched-off vendor's people lose their vendor roles (common.roles): someone added now
    # would hold an account that cannot work, and the vendor is meant to take on nobody.
    if not vendor.active:
        raise ValidationError({"vendor": f"{vendor.name} is not active."})
    existing = VendorMembership.objects.filter(user=user).select_related("vendor").first()
    if existing and existing.vendor_id != vendor.id:
        raise ValidationError({"user": f"{user.username} already works for {existing.vendor.name}."})
    if existing:
        return existing
    return VendorMembership.objects.create(vendor=vendor, user=user)


@transaction.atomic
def vendor_member_create(*, vendor: Vendor, username: str, password: str, role: str, email: str = "",
                         first_name: str = "", last_name: str = "") -> User:
    """Create a vendor manager, annotator or reviewer account working for `vendor`."""
    from common.services import user_create

    if role not in roles.VENDOR_ROLES:
        raise ValidationError({"role": f"A vendor member is a {', '.join(sorted(roles.VENDOR_ROLES))}."})
    return user_create(username=username, password=password, role=role, email=email, first_name=first_name,
                       last_name=last_name, vendor=vendor)


@transaction.atomic
def member_work_release(*, user: User) -> int:
    """Give back what `user` holds in the queues (they were switched off): their live leases
    return their slots, their unfinished annotations (drafts, and rework a reviewer sent back)
    are withdrawn and return theirs, and the annotations they held open for review go back to
    the other reviewers. What they handed in (submitted, accepted) stays as it is. Returns the
    number of slots given back.

    Without it a deactivated annotator's tasks stayed taken until each lease ran out (30
    minutes; a task of overlap 1 was nobody's), and a reviewer's hold likewise. A first save
    turns the lease into a slot for good, so a draft or rework kept its task waiting for ever
    for someone who can no longer log in. Each lease and annotation is given up by a
    conditional UPDATE on its state, so one lapsed lease that a concurrent claim reaps
    (`_reap_expired`), or a draft handed in at the same moment, is never counted back twice
    or taken from under the submit.
    """
    released = 0
    # Locked first, in the order a takedown (`tasks_take_down`) and a submit take them: the
    # unfinished annotations, then the live leases, each in id order. Giving a lease back (the
    # lease, then its task) before the drafts deadlocked with a takedown of the same images.
    list(Annotation.objects.select_for_update(of=("self",)).filter(annotator=user, status__in=EDITABLE)
         .order_by("id").values_list("id", flat=True))
    list(Claim.objects.select_for_update(of=("self",)).filter(annotator=user, state=Claim.State.LIVE)
         .order_by("id").values_list("id", flat=True))
    leases = Claim.objects.filter(annotator=user, state=Claim.State.LIVE).order_by("task_id")
    for claim_id, task_id in leases.values_list("id", "task_id"):
        if Claim.objects.filter(pk=claim_id, state=Claim.State.LIVE).update(state=Claim.State.RELEASED):
            Task.objects.filter(pk=task_id).update(slots_taken=F("slots_taken") - 1)
            _task_refresh_status(task_id)
            released += 1
    unfinished = Annotation.objects.filter(annotator=user, status__in=EDITABLE).order_by("task_id")
    specs = set()
    for annotation_id, task_id, spec_id in unfinished.values_list("id", "task_id", "task__batch__spec_id"):
        if _annotation_withdraw(annotation_id=annotation_id, task_id=task_id, annotator_id=user.pk):
            released += 1
            specs.add(spec_id)
    for spec_id in sorted(specs):  # a task no longer awaiting rework changes the quota progress and QA
        spec_stats_refresh_soon(spec_id=spec_id)
    Annotation.objects.filter(review_holder=user).update(review_holder=None, review_held_until=None)
    return released


def _annotation_withdraw(*, annotation_id: int, task_id: int, annotator_id: int) -> int:
    """Take an unfinished annotation (a draft or rework) out of the workflow and give its slot
    back to the queue; 1 if it was still unfinished, else 0 (handed in or withdrawn meanwhile).

    The annotation is kept, with its versions and the reviews that sent it back: reviewers
    and QA still read why it was rejected. Its claim becomes "withdrawn", not "released": a
    released task may be offered to the same annotator again, and they already hold an
    annotation of it (one per annotator and task)."""
    if not Annotation.objects.filter(pk=annotation_id, status__in=EDITABLE).update(
            status=Annotation.Status.WITHDRAWN, updated_at=timezone.now()):
        return 0
    n = Claim.objects.filter(task_id=task_id, annotator_id=annotator_id, state=Claim.State.ANNOTATED).update(
        state=Claim.State.WITHDRAWN)
    if n:
        Task.objects.filter(pk=task_id).update(slots_taken=F("slots_taken") - n)
    _task_refresh_status(task_id)  # a task that only waited for this rework is open again
    return 1


@dataclass
class TakedownWork:
    """What :func:`tasks_take_down` did to the work of taken-down images."""

    tasks_removed: int = 0
    leases_released: int = 0
    annotations_withdrawn: int = 0
    # The same counts per image id (only images with something counted).
    by_image: dict[int, TakedownWork] = dataclasses.field(default_factory=dict)

    def _of(self, image_id: int) -> TakedownWork:
        return self.by_image.setdefault(image_id, TakedownWork())


def tasks_take_down(*, image_ids: Sequence[int]) -> TakedownWork:
    """Take the work on `image_ids` (being taken down, their files erased) out of the queues.

    Tasks nobody has answered (no annotation of any status) are deleted with their leases, as
    `image_delete` does. Tasks holding annotations stay, as paid work: live leases are given up,
    drafts and rework are withdrawn (kept, with their versions and reviews, as a deactivated
    annotator's are), and the work queue never hands out a task of a taken-down image
    (`_claim_candidate`). Submitted and accepted annotations stay as they are. Call inside the
    takedown's transaction, after the images are marked taken down.
    """
    done = TakedownWork()
    ids = list(image_ids)
    if not ids:
        return done
    # Locks are taken in the order the work in flight takes them, each kind in id order, so that
    # we wait for it instead of deadlocking with it (PostgreSQL then failed one of the two: a 500):
    # 1. The unfinished annotations: a submit or a save of a draft locks its annotation, then its
    #    task (giving a lease back below locks the task).
    #    Submitted ones too: a review in flight (its conditional UPDATE holds the annotation) then
    #    commits first, and a rejection it made is rework that the loop at the end withdraws; a
    #    review coming after us finds the image taken down (`review_create` looks again once it
    #    holds the row) instead of leaving rework on erased files.
    list(Annotation.objects.select_for_update(of=("self",))
         .filter(task__image_id__in=ids, status__in=(*EDITABLE, Annotation.Status.SUBMITTED))
         .order_by("id").values_list("id", flat=True))
    # 2. The live leases, then 3. the tasks: an annotator's first save turns its lease into a slot
    #    (an UPDATE of the claim) and then inserts the annotation, whose foreign key locks the task
    #    (KEY SHARE; a first answer handed in then locks it for update). Deciding which tasks are
    #    unanswered before that save committed deleted its task from under the new annotation
    #    (the deferred foreign key failed one side at commit); a claim (`task_claim_next`)
    #    committing a new lease on the task we were waiting for did the same to its claim row.
    #    Waiting for the lease, then holding the tasks, a fresh statement below sees the answer (the
    #    task stays, the draft is withdrawn) or the save, coming later, finds no lease (a 400).
    #    A claim reaping a lapsed lease holds the task and leaves a lease someone has locked
    #    alone (`_reap_expired`, SKIP LOCKED), so it does not wait for us.
    list(Claim.objects.select_for_update(of=("self",)).filter(task__image_id__in=ids, state=Claim.State.LIVE)
         .order_by("id").values_list("id", flat=True))
    list(Task.objects.select_for_update(of=("self",)).filter(image_id__in=ids).order_by("id")
         .values_list("id", flat=True))
    tasks = Task.objects.filter(image_id__in=ids)
    unanswered = tasks.exclude(Exists(Annotation.objects.filter(task=OuterRef("pk"))))
    for image_id, n in unanswered.values("image_id").annotate(n=Count("id")).values_list("image_id", "n").order_by():
        done._of(image_id).tasks_removed += n
        done.tasks_removed += n
    unanswered.delete()
    for claim_id, task_id, image_id in (Claim.objects.filter(task__image_id__in=ids, state=Claim.State.LIVE)
                                        .order_by("task_id").values_list("id", "task_id", "task__image_id")):
        if Claim.objects.filter(pk=claim_id, state=Claim.State.LIVE).update(state=Claim.State.RELEASED):
            Task.objects.filter(pk=task_id).update(slots_taken=F("slots_taken") - 1)
            _task_refresh_status(task_id)
            done._of(image_id).leases_released += 1
            done.leases_released += 1
    for annotation_id, task_id, annotator_id, image_id in (
            Annotation.objects.filter(task__image_id__in=ids, status__in=EDITABLE)
            .order_by("task_id", "id").values_list("id", "task_id", "annotator_id", "task__image_id")):
        n = _annotation_withdraw(annotation_id=annotation_id, task_id=task_id, annotator_id=annotator_id)
        done._of(image_id).annotations_withdrawn += n
        done.annotations_withdrawn += n
    return done


# ----------------------------------------------------------------- batches


def _truth_answer(image: Image) -> dict | None:
    """The gold answer an importer left on the image, or None."""
    if not image.truth_latex:
        return None
    answer: dict = {"latex": image.truth_latex, "latex_normalized": latex.normalize(image.truth_latex)}
    bbox = (image.meta or {}).get("ink_bbox")
    if isinstance(bbox, list | tuple) and len(bbox) == 4:
        x0, y0, x1, y1 = (float(v) for v in bbox)
        answer["regions"] = [{"kind": "quad", "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
                              "latex": image.truth_latex}]
    return answer


def batch_candidate_images(
    *,
    spec: DatasetSpec,
    quantity: int,
    categories: Sequence[str] = (),
    source: Source | None = None,
    only_unlabeled: bool = True,
    lowest_confidence_first: bool = True,
) -> QuerySet[Image]:
    """Images of `spec` matching a batch filter, in the order they would be picked.

    "Not yet labeled" means in no task of any batch. "Lowest model confidence first"
    orders by the lowest confidence any imported prediction gave the image; images
    no model has seen come last.
    """
    qs = Image.objects.filter(spec=spec, taken_down_at__isnull=True)  # a taken-down image's files are gone
    if categories:
        qs = qs.filter(categories__spec=spec, categories__slug__in=list(categories)).distinct()
    if source is not None:
        qs = qs.filter(source=source)
    if only_unlabeled:
        qs = qs.exclude(Exists(Task.objects.filter(image=OuterRef("pk"))))
    if lowest_confidence_first:
        qs = qs.annotate(min_confidence=Min("predictions__confidence")).order_by(
            F("min_confidence").asc(nulls_last=True), "id")
    else:
        qs = qs.order_by("id")
    return qs[:quantity]


def _currency(value: object) -> str:
    """A three-letter ISO 4217 code, upper-cased; anything else is a 400 naming `currency`."""
    if not (isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha()):
        raise ValidationError({"currency": "Use a three-letter ISO 4217 code, e.g. USD."})
    return value.upper()


def _batch_price(*, spec: DatasetSpec, vendor: Vendor, kind: str, unit_price: Decimal | None,
                 currency: str | None) -> tuple[Decimal, str]:
    """The unit price and currency of a new batch: the contract's for its kind where the
    vendor has a contract for the spec (a different one is refused: the batches page and
    the cost report must price the same work alike), else the one given."""
    from guides.models import Contract

    if kind not in Batch.Kind.values:
        raise ValidationError({"kind": f"Must be one of {', '.join(Batch.Kind.values)}."})
    contract = Contract.objects.filter(vendor=vendor, spec=spec).first()
    if contract is None:
        if unit_price is None:
            raise ValidationError({"unit_price": f"Required: {vendor.name} has no contract for {spec.name} "
                                                 "to take a price from."})
        if unit_price < 0:
            raise ValidationError({"unit_price": "Must be zero or more."})
        return unit_price, _currency(currency or "USD")
    price = contract.price_for(kind)
    if unit_price is not None and unit_price != price:
        raise ValidationError({"unit_price": f"The contract with {vendor.name} for {spec.name} sets {price} "
                                             f"{contract.currency} per {kind} task; leave it out or change the "
                                             "contract."})
    if currency and _currency(currency) != contract.currency:
        raise ValidationError({"currency": f"The contract with {vendor.name} for {spec.name} is in "
                                           f"{contract.currency}."})
    return price, contract.currency


BATCH_EDITABLE = Batch.EDITABLE
# The longest reason a batch's history keeps: a sentence or two, not a pasted e-mail thread.
MAX_REASON_LENGTH = 2000


def _event_value(value: object) -> object:
    """A batch field's value as a history stores it (JSON): prices at the field's four
    places, so that 0.5 and 0.5000 are one price, and dates as ISO text."""
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal(1).scaleb(-Batch._meta.get_field("unit_price").decimal_places)))
    if isinstance(value, date):
        return value.isoformat()
    return value


def _event_changes(old: dict, new: dict) -> dict[str, list]:
    """{field: [old, new]} of the fields of `new` whose history value (`_event_value`) differs
    from `old`'s: what one `BatchEvent` records, for `batch_update` and `batches_contract_price`."""
    changes = {}
    for key, value in new.items():
        before, after = _event_value(old[key]), _event_value(value)
        if before != after:
            changes[key] = [before, after]
    return changes


@transaction.atomic
def batch_create(
    *,
    spec: DatasetSpec,
    vendor: Vendor,
    name: str,
    quantity: int,
    unit_price: Decimal | None = None,
    kind: str = Batch.Kind.FULL,
    currency: str | None = None,
    overlap: int = 1,
    deadline: date | None = None,
    categories: Sequence[str] = (),
    source: Source | None = None,
    only_unlabeled: bool = True,
    lowest_confidence_first: bool = True,
    status: str = Batch.Status.ACTIVE,
    created_by: User | None = None,
) -> Batch:
    """Give `vendor` a batch of up to `quantity` tasks of `spec`, chosen by a filter; its
    agreed quantity is the number of tasks made (fewer where fewer images match). Its
    price is the contract's for the kind where the vendor has one for the spec (see
    `_batch_price`), else `unit_price` is required.

    Images with an imported truth (`truth_latex`, and `meta["ink_bbox"]` when
    present) become gold tasks: their answer is stored on the task and hidden from
    the vendor. Each task starts pre-labeled when a model has already seen the image.

    The spec's row is locked first, so batches of one spec are made one at a time: two
    curators at once would otherwise both read the same unlabeled images before either
    wrote its tasks. (SQLite has no row locks but lets one writer in at a time anyway.)
    """
    DatasetSpec.objects.select_for_update().only("pk").get(pk=spec.pk)
    if not vendor.active:
        raise ValidationError({"vendor": f"{vendor.name} is not active."})
    if not 1 <= quantity <= MAX_BATCH_TASKS:
        raise ValidationError({"quantity": f"Must be between 1 and {MAX_BATCH_TASKS}."})
    if not 1 <= overlap <= 10:
        raise ValidationError({"overlap": "Must be between 1 and 10."})
    unit_price, currency = _batch_price(spec=spec, vendor=vendor, kind=kind, unit_price=unit_price,
                                        currency=currency)
    known = set(Category.objects.filter(spec=spec).values_list("slug", flat=True))
    unknown = sorted(set(categories) - known)
    if unknown:
        raise ValidationError({"categories": f"Not categories of {spec.name}: {', '.join(unknown)}."})
    if source is not None and not Image.objects.filter(spec=spec, source=source).exists():
        raise ValidationError({"source": f"{spec.name} has no image from {source.name}."})
    images = list(
        batch_candidate_images(spec=spec, quantity=quantity, categories=categories, source=source,
                               only_unlabeled=only_unlabeled, lowest_confidence_first=lowest_confidence_first)
        .annotate(n_predictions=Count("predictions", distinct=True))
    )
    if not images:
        raise ValidationError({"quantity": "No image of the spec matches this filter."})
    batch = Batch(
        spec=spec, vendor=vendor, name=name or f"{spec.name} for {vendor.name}", kind=kind,
        # What the vendor can deliver: fewer images may match than were asked for, and a quantity
        # above the task count would keep progress below 100% and the pace warnings on for ever.
        unit_price=unit_price, currency=currency, agreed_quantity=len(images), overlap=overlap,
        deadline=deadline, status=status, created_by=created_by,
        filters={"categories": list(categories), "source": source.pk if source else None,
                 "only_unlabeled": only_unlabeled, "lowest_confidence_first": lowest_confidence_first},
    )
    batch.full_clean()
    batch.save()
    BatchEvent.objects.create(batch=batch, by=created_by, kind=BatchEvent.Kind.CREATED,
                              changes={k: [None, _event_value(getattr(batch, k))] for k in BATCH_EDITABLE})
    tasks = []
    for image in images:
        gold = _truth_answer(image)
        tasks.append(Task(
            batch=batch, image=image, overlap=overlap, is_gold=gold is not None, gold_answer=gold,
            model_confidence=getattr(image, "min_confidence", None),
            status=Task.Status.PRELABELED if image.n_predictions else Task.Status.NEW,
        ))
    Task.objects.bulk_create(tasks, batch_size=1000)
    spec_stats_refresh_soon(spec_id=spec.pk)  # the vendor's columns in the quota progress
    return batch


@transaction.atomic
def batch_update(*, batch: Batch, by: User | None = None, reason: str = "", **changes) -> Batch:
    """Change a batch's name, status, deadline, price or agreed quantity (at most its task count).
    A batch under a contract takes its price from the contract: changing it here is refused.

    A call that changes something records one `BatchEvent` ({field: [old, new]}, `by`, the
    `reason`); one that changes nothing records nothing. Reopening a closed batch (to any
    other status) needs a non-blank `reason`: its work was declared over, and the vendor's
    people may have been told so.

    The batch's row is locked and its stored values are the old ones: a `batch` read before
    another curator's save would otherwise record (and check a reopening against) a status
    that is no longer the batch's, and two saves at once are recorded one after the other.
    """
    from guides.models import Contract

    for key in changes:
        if key not in BATCH_EDITABLE:
            raise ValidationError({key: CANNOT_CHANGE})
    if not isinstance(reason, str):
        raise ValidationError({"reason": "Must be text."})
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError({"reason": f"At most {MAX_REASON_LENGTH} characters."})
    if (bad := unstorable_char(reason)) is not None:  # the API's and the form's fields refuse it; other callers too
        raise ValidationError({"reason": f"Holds the character U+{ord(bad):04X}, which cannot be stored."})
    stored = Batch.objects.select_for_update().filter(pk=batch.pk).values(*BATCH_EDITABLE).get()
    for key, value in stored.items():
        setattr(batch, key, value)
    priced = {k for k in ("unit_price", "currency") if k in changes
              and (_currency(changes[k]) if k == "currency" else changes[k]) != getattr(batch, k)}
    if priced and Contract.objects.filter(vendor_id=batch.vendor_id, spec_id=batch.spec_id).exists():
        raise ValidationError({sorted(priced)[0]: "This batch is priced by its vendor's contract for the spec; "
                                                   "change the contract."})
    if "agreed_quantity" in changes and isinstance(changes["agreed_quantity"], int):
        tasks = batch.tasks.count()
        if changes["agreed_quantity"] > tasks:
            raise ValidationError({"agreed_quantity": f"The batch has {tasks} tasks; it cannot deliver more."})
    for key, value in changes.items():
        setattr(batch, key, _currency(value) if key == "currency" else value)
    batch.full_clean()
    changed = _event_changes(stored, {key: getattr(batch, key) for key in BATCH_EDITABLE})
    if not changed:
        return batch
    reopened = stored["status"] == Batch.Status.CLOSED and batch.status != Batch.Status.CLOSED
    if reopened and not reason:
        raise ValidationError({"reason": "Say why this closed batch is reopened: its work was declared over."})
    batch.save()
    kind = BatchEvent.Kind.REOPENED if reopened else BatchEvent.Kind.CHANGED
    BatchEvent.objects.create(batch=batch, by=by, kind=kind, changes=changed, reason=reason)
    if priced:
        spec_stats_refresh_soon(spec_id=batch.spec_id)  # cost per formula in the QA statistics
    if "status" in changed and batch.status == Batch.Status.CLOSED:
        from pipeline.webhooks import webhook_event_batch_closed

        webhook_event_batch_closed(batch_id=batch.pk)  # sent once this commits
    return batch


@transaction.atomic
def batches_contract_price(*, vendor_id: int, spec_id: int, prices: dict[str, Decimal], currency: str,
                           by: User | None = None, reason: str = "") -> int:
    """Give `vendor_id`'s batches of `spec_id` the price of their kind (`prices`) and `currency`,
    a contract's terms, and record a "changed" `BatchEvent` on each batch whose price or
    currency this changes, as `batch_update` does; return how many changed.

    The rows are locked (in id order) and their stored values are the old ones, so a
    `batch_update` at the same time records its change before or after this one, never over it.
    """
    rows = list(Batch.objects.select_for_update().filter(vendor_id=vendor_id, spec_id=spec_id).order_by("pk")
                .values("pk", "kind", "unit_price", "currency"))
    events, changed_by_kind = [], {}
    for row in rows:
        changes = _event_changes(row, {"unit_price": prices[row["kind"]], "currency": currency})
        if changes:
            events.append(BatchEvent(batch_id=row["pk"], by=by, kind=BatchEvent.Kind.CHANGED, changes=changes,
                                     reason=reason))
            changed_by_kind.setdefault(row["kind"], []).append(row["pk"])
    for kind, ids in changed_by_kind.items():
        Batch.objects.filter(pk__in=ids).update(unit_price=prices[kind], currency=currency)
    BatchEvent.objects.bulk_create(events)
    return len(events)


# What a gold answer holds: the form `_truth_answer` writes for imported truths.
GOLD_ANSWER_KEYS = {"latex", "latex_normalized", "regions"}


@transaction.atomic
def task_set_gold(*, task: Task, answer: dict | None) -> Task:
    """Make `task` a gold task with a curator's known answer (None: no longer gold)."""
    if answer is not None:
        if not isinstance(answer, dict):
            raise ValidationError({"gold_answer": "Must be an object."})
        unknown = sorted(set(answer) - GOLD_ANSWER_KEYS)
        if unknown:
            raise ValidationError({f"gold_answer.{unknown[0]}": "Unknown field; a gold answer holds latex and/or "
                                                               "regions."})
        if "latex_normalized" in answer and "latex" not in answer:
            raise ValidationError({"gold_answer.latex_normalized": "Give the latex it is the normal form of."})
        if "latex" not in answer and "regions" not in answer:
            # {} would make a gold task with nothing to score its answers against
            raise ValidationError({"gold_answer": "Give the known latex, regions or both (null: not gold)."})
        for key in ("latex", "latex_normalized"):
            if key in answer and not isinstance(answer[key], str):
                raise ValidationError({f"gold_answer.{key}": "Must be a string."})
        if "latex" in answer:
            problems, normalized = _latex_checked(answer["latex"])
            if problems:
                raise ValidationError({"gold_answer.latex": problems})
            if "latex_normalized" in answer:  # as read back from an imported truth: recomputed, never trusted
                answer = {**answer, "latex_normalized": normalized}
        if "regions" in answer:
            answer = {**answer, "regions": regions_clean(regions=answer["regions"], image=task.image,
                                                         field="gold_answer.regions")}
    task.is_gold = answer is not None
    task.gold_answer = answer
    task.save(update_fields=["is_gold", "gold_answer", "updated_at"])
    spec_stats_refresh_soon(spec_id=task.batch.spec_id)  # gold accuracy in the QA statistics
    return task


# -------------------------------------------------------------- work queue


@dataclass
class ClaimResult:
    """What `task_claim_next` gave: a task (or None), why, and batches blocked by gates."""

    task: Task | None
    claim: Claim | None
    reason: str  # "rework", "leased", "claimed" or "empty"
    blocked: dict[int, str]
    annotation_id: int | None = None  # the annotator's own annotation of the task (rework)


# Claims whose task the queue never offers their annotator again: held now, annotated, or
# given up with an annotation the annotator still has (`_annotation_withdraw`).
NEVER_AGAIN = (Claim.State.LIVE, Claim.State.ANNOTATED, Claim.State.WITHDRAWN)


def _reap_expired(task_id: int, now) -> int:
    """Return the slots of expired leases on one task to the queue. Call under the task's lock.

    A lapsed lease someone else has locked is left alone (SKIP LOCKED on PostgreSQL): its holder's
    first save is turning it into a slot, or a takedown is removing it. Both lock the lease before
    the task, the opposite of us (we hold the task), so waiting for it deadlocked.
    """
    expired = Claim.objects.filter(task_id=task_id, state=Claim.State.LIVE, expires_at__lte=now)
    if connection.features.has_select_for_update_skip_locked:
        ids = list(expired.select_for_update(skip_locked=True).values_list("pk", flat=True))
        if not ids:
            return 0
        expired = Claim.objects.filter(pk__in=ids, state=Claim.State.LIVE)
    n = expired.update(state=Claim.State.RELEASED)
    if n:
        Task.objects.filter(pk=task_id).update(slots_taken=F("slots_taken") - n)
    return n


def claimable_tasks(*, annotator: User, batch_ids: Iterable[int], now,
                    include_released: bool = True) -> QuerySet[Task]:
    """Tasks of `batch_ids` with a free slot (or an expired lease) that `annotator`
    has never annotated nor holds, in queue order: priority, lowest model confidence, age.
    With include_released=False, tasks the annotator gave back (skipped) are left out too."""
    expired = Claim.objects.filter(task=OuterRef("pk"), state=Claim.State.LIVE, expires_at__lte=now)
    excluded = [*NEVER_AGAIN] + ([] if include_released else [Claim.State.RELEASED])
    mine = Claim.objects.filter(task=OuterRef("pk"), annotator=annotator, state__in=excluded)
    return (
        Task.objects.filter(batch_id__in=list(batch_ids), status__in=Task.CLAIMABLE)
        .filter(Q(slots_taken__lt=F("overlap")) | Exists(expired))
        .exclude(Exists(mine))
        .order_by("-priority", F("model_confidence").asc(nulls_last=True), "id")
    )


@transaction.atomic
def task_claim_next(*, annotator: User, lease: timedelta = LEASE) -> ClaimResult:
    """Give `annotator` their next task: rework first, then the lease they hold, then a
    new task from their vendor's active batches under a lease.

    Safe under concurrency: candidates are row-locked with SKIP LOCKED on PostgreSQL
    so annotators never wait on each other, and the slot itself is taken by a
    conditional UPDATE (`slots_taken < overlap`), which is what keeps the count right
    on SQLite too. A unique (task, annotator) claim means nobody gets a task twice.
    """
    from .selectors import vendor_of

    vendor = vendor_of(annotator)
    if vendor is None or not roles.has_role(annotator, roles.ANNOTATOR):
        raise ValidationError({"annotator": "Only a vendor's annotators take tasks from the queue."})
    q = _queue_sql()
    if "one_at_a_time" in q:
        # PostgreSQL: one claim per annotator at a time. Without it a double-clicked "next"
        # (or two tabs) ran side by side, neither saw the other's uncommitted lease, and SKIP
        # LOCKED handed each another task: one person held several leases. Waiting here, the
        # second call then finds the first one's lease (below) and answers it.
        rawsql.fetch(q["one_at_a_time"], [CLAIM_LOCK_NAMESPACE, annotator.pk])
    now = timezone.now()
    # The hot path reads ids with hand-written SQL (see common.rawsql) and loads full
    # objects through the ORM only on the rare rework and held-lease answers.
    # One round trip asks both: the oldest rework (kind 0) and the oldest lease held (kind 1).
    found = sorted(rawsql.fetch(q["rework_or_held"], [
        annotator.pk, Annotation.Status.REJECTED, vendor.pk, Batch.Status.ACTIVE,
        annotator.pk, Claim.State.LIVE, rawsql.dt(now), vendor.pk, Batch.Status.ACTIVE]))
    if found and found[0][0] == 0:
        rework = Annotation.objects.select_related("task__batch", "task__image").get(pk=found[0][1])
        return ClaimResult(rework.task, None, "rework", {}, annotation_id=rework.id)
    if found:
        held = Claim.objects.select_related("task__batch", "task__image").get(pk=found[0][1])
        return ClaimResult(held.task, held, "leased", {})
    batch_ids, blocked = gating.open_batches(annotator=annotator, vendor=vendor)
    if not batch_ids:
        return ClaimResult(None, None, "empty", blocked)
    for _ in range(10):
        # A task the annotator skipped comes back to them only when nothing else is left.
        task = _claim_candidate(annotator, batch_ids, now, include_released=False) \
            or _claim_candidate(annotator, batch_ids, now, include_released=True)
        if task is None:
            break
        expires = now + lease
        claim_pk = None
        if "take_and_claim" in q:
            # PostgreSQL: the slot and the claim in one round trip (no row when no slot is left).
            found = rawsql.fetch(q["take_and_claim"], [rawsql.dt(now), task.pk, *Task.CLAIMABLE, annotator.pk,
                                                       Claim.State.LIVE, rawsql.dt(now), rawsql.dt(expires)])
            taken = len(found)
            claim_pk = found[0][0] if found else None
        else:
            taken = rawsql.execute(q["take"], [rawsql.dt(now), task.pk, *Task.CLAIMABLE])
        if not taken and _reap_expired(task.pk, now):
            task.slots_taken = Task.objects.values_list("slots_taken", flat=True).get(pk=task.pk)
            taken = Task.objects.filter(pk=task.pk, slots_taken__lt=F("overlap")).update(
                slots_taken=F("slots_taken") + 1, updated_at=now,
                status=Case(When(status=Task.Status.REJECTED, then=F("status")), default=Value(Task.Status.IN_PROGRESS)))
        if not taken:
            continue  # someone took the last slot between our read and write (SQLite)
        # One statement whether or not an earlier lease of ours on this task lapsed
        # or was released (then its row is reused: one claim row per annotator and task).
        claim = Claim(task=task, annotator=annotator, state=Claim.State.LIVE, claimed_at=now, expires_at=expires)
        if claim_pk is None:
            claim_pk = rawsql.fetch(q["claim"], [task.pk, annotator.pk, Claim.State.LIVE, rawsql.dt(now),
                                                 rawsql.dt(expires)])[0][0]
        claim.pk = claim_pk
        task.slots_taken += 1
        if task.status != Task.Status.REJECTED:
            task.status = Task.Status.IN_PROGRESS
        task.updated_at = now
        return ClaimResult(task, claim, "claimed", blocked)
    return ClaimResult(None, None, "empty", blocked)


_SQL: dict[str, dict[str, str]] = {}


def _queue_sql() -> dict[str, str]:
    """The work queue's statements, built once per process and database vendor."""
    from django.db import connection

    found = _SQL.get(connection.vendor)
    if found is not None:
        return found
    qn, t = rawsql.qn, rawsql.table
    rework = (f"SELECT 0 AS kind, x.{qn('id')} FROM {t(Annotation)} x "
              f"INNER JOIN {t(Task)} tk ON tk.{qn('id')} = x.{qn('task_id')} "
              f"INNER JOIN {t(Batch)} b ON b.{qn('id')} = tk.{qn('batch_id')} "
              f"WHERE x.{qn('annotator_id')} = %s AND x.{qn('status')} = %s "
              f"AND b.{qn('vendor_id')} = %s AND b.{qn('status')} = %s "
              f"ORDER BY x.{qn('updated_at')} LIMIT 1")
    held = (f"SELECT 1 AS kind, x.{qn('id')} FROM {t(Claim)} x "
            f"INNER JOIN {t(Task)} tk ON tk.{qn('id')} = x.{qn('task_id')} "
            f"INNER JOIN {t(Batch)} b ON b.{qn('id')} = tk.{qn('batch_id')} "
            f"WHERE x.{qn('annotator_id')} = %s AND x.{qn('state')} = %s AND x.{qn('expires_at')} > %s "
            f"AND b.{qn('vendor_id')} = %s AND b.{qn('status')} = %s "
            f"ORDER BY x.{qn('claimed_at')} LIMIT 1")
    found = {
        # Derived tables keep each part's ORDER BY and LIMIT (SQLite allows them nowhere else in a UNION).
        "rework_or_held": f"SELECT * FROM ({rework}) r UNION ALL SELECT * FROM ({held}) h",
        # The conditional UPDATE that actually takes a slot (never beyond the overlap).
        # A task awaiting rework stays "rejected" (what _task_refresh_status derives), not "in progress".
        "take": (f"UPDATE {t(Task)} SET {qn('slots_taken')} = {qn('slots_taken')} + 1, {qn('status')} = "
                 f"CASE WHEN {qn('status')} = '{Task.Status.REJECTED}' THEN {qn('status')} "
                 f"ELSE '{Task.Status.IN_PROGRESS}' END, {qn('updated_at')} = %s WHERE {qn('id')} = %s AND {qn('status')} IN "
                 f"{rawsql.in_list(Task.CLAIMABLE)} AND {qn('slots_taken')} < {qn('overlap')}"),
        "claim": (f"INSERT INTO {t(Claim)} ({qn('task_id')}, {qn('annotator_id')}, {qn('state')}, {qn('claimed_at')}, "
                  f"{qn('expires_at')}) VALUES (%s, %s, %s, %s, %s) ON CONFLICT ({qn('task_id')}, {qn('annotator_id')}) "
                  f"DO UPDATE SET {qn('state')} = EXCLUDED.{qn('state')}, {qn('claimed_at')} = EXCLUDED.{qn('claimed_at')}, "
                  f"{qn('expires_at')} = EXCLUDED.{qn('expires_at')} RETURNING {qn('id')}"),
        "lease_to_slot": (f"UPDATE {t(Claim)} SET {qn('state')} = %s WHERE {qn('task_id')} = %s "
                          f"AND {qn('annotator_id')} = %s AND {qn('state')} = %s"),
        "set_current": f"UPDATE {t(Annotation)} SET {qn('current_id')} = %s WHERE {qn('id')} = %s",
        "lock_task": f"SELECT {qn('id')} FROM {t(Task)} WHERE {qn('id')} = %s{rawsql.lock()}",
        "refresh": _refresh_sql(),
    }
    # A first answer handed in at once: the lease becomes a slot only once the annotator has
    # acknowledged the current guide version (the gate in the same statement: the hot path).
    found["lease_to_slot_handing_in"] = f"{found['lease_to_slot']} AND NOT {gating.acknowledgement_missing_sql()}"
    if connection.vendor == "postgresql":  # data-modifying WITH: PostgreSQL only
        claim_cols = ", ".join(qn(c) for c in ("task_id", "annotator_id", "state", "claimed_at", "expires_at"))
        upsert = found["claim"].split(" ON CONFLICT ", 1)[1]
        found["take_and_claim"] = (f"WITH taken AS ({found['take']} RETURNING {qn('id')}) "
                                   f"INSERT INTO {t(Claim)} ({claim_cols}) SELECT taken.{qn('id')}, %s, %s, %s, %s "
                                   f"FROM taken ON CONFLICT {upsert}")
        # A transaction-scoped lock on (namespace, annotator): released at commit.
        found["one_at_a_time"] = "SELECT pg_advisory_xact_lock(%s, %s)"
    _SQL[connection.vendor] = found
    return found


def _claim_candidate(annotator: User, batch_ids: list[int], now, *, include_released: bool) -> Task | None:
    """The first task of `batch_ids` in queue order that `annotator` may take, row-locked
    with SKIP LOCKED on PostgreSQL, with its batch and image; what `claimable_tasks`
    selects, in SQL written once instead of compiled per claim."""
    from django.db import connection

    qn, t = rawsql.qn, rawsql.table
    excluded = [*NEVER_AGAIN] + ([] if include_released else [Claim.State.RELEASED])
    key = (connection.vendor, "candidate", len(batch_ids), len(excluded))
    sql = _SQL.get(key)
    if sql is None:
        sql = (
            f"SELECT {rawsql.columns(Task, 't')}, {rawsql.columns(Batch, 'b')}, {rawsql.columns(Image, 'i')} "
            f"FROM {t(Task)} t INNER JOIN {t(Batch)} b ON b.{qn('id')} = t.{qn('batch_id')} "
            f"INNER JOIN {t(Image)} i ON i.{qn('id')} = t.{qn('image_id')} "
            f"WHERE t.{qn('batch_id')} IN {rawsql.in_list(batch_ids)} "
            # A taken-down image's files are erased (curation.services.image_takedown).
            f"AND i.{qn('taken_down_at')} IS NULL "
            # Literal statuses: a prepared statement's generic plan can then still use
            # the partial index (its predicate is proven from constants only).
            f"AND t.{qn('status')} IN ({', '.join(repr(str(x)) for x in Task.CLAIMABLE)}) "
            f"AND (t.{qn('slots_taken')} < t.{qn('overlap')} OR EXISTS (SELECT 1 FROM {t(Claim)} c "
            f"WHERE c.{qn('task_id')} = t.{qn('id')} AND c.{qn('state')} = %s AND c.{qn('expires_at')} <= %s)) "
            f"AND NOT EXISTS (SELECT 1 FROM {t(Claim)} m WHERE m.{qn('task_id')} = t.{qn('id')} "
            f"AND m.{qn('annotator_id')} = %s AND m.{qn('state')} IN {rawsql.in_list(excluded)}) "
            # The order of the partial index task_queue_order_idx (ASC is NULLS LAST on PostgreSQL).
            f"ORDER BY t.{qn('priority')} DESC, t.{qn('model_confidence')} ASC NULLS LAST, t.{qn('id')} ASC "
            f"LIMIT 1{rawsql.lock_skip_locked('t')}"
        )
        _SQL[key] = sql
    rows = rawsql.fetch(sql, [*batch_ids, Claim.State.LIVE, rawsql.dt(now), annotator.pk,
                              *excluded])
    return task_from_row(rows[0]) if rows else None


@transaction.atomic
def claim_release(*, task: Task, annotator: User) -> None:
    """Give a leased task back to the queue before the lease ends."""
    n = Claim.objects.filter(task=task, annotator=annotator, state=Claim.State.LIVE).update(
        state=Claim.State.RELEASED)
    if not n:
        raise ValidationError({"task": "You hold no lease on this task."})
    Task.objects.filter(pk=task.pk).update(slots_taken=F("slots_taken") - n)
    _task_refresh_status(task.pk)


def _task_refresh_status(task_id: int) -> None:
    """Derive a task's status from its annotations and slots.

    The task row is locked first, in its own statement: the UPDATE after it then
    starts a fresh snapshot (READ COMMITTED) and counts annotations that concurrent
    submits committed while we waited. Counting inside the locking UPDATE itself
    would use the older snapshot and lose the other submit (the PostgreSQL
    concurrency test catches exactly that). Both statements are written once
    (`_queue_sql`): they run on every submit and review.
    """
    q = _queue_sql()
    rawsql.fetch(q["lock_task"], [task_id])
    rawsql.execute(q["refresh"], [rawsql.dt(timezone.now()), task_id])


def _refresh_sql() -> str:
    qn, t = rawsql.qn, rawsql.table
    S, A = Task.Status, Annotation.Status

    def count(*statuses: str) -> str:
        return (f"(SELECT COUNT(*) FROM {t(Annotation)} a WHERE a.{qn('task_id')} = {t(Task)}.{qn('id')} "
                f"AND a.{qn('status')} IN ({', '.join(repr(str(x)) for x in statuses)}))")

    return (
        f"UPDATE {t(Task)} SET {qn('status')} = CASE "
        f"WHEN {qn('overlap')} <= {count(A.ACCEPTED)} THEN '{S.ACCEPTED}' "
        f"WHEN {count(A.REJECTED)} > 0 THEN '{S.REJECTED}' "
        f"WHEN {qn('overlap')} <= {count(A.ACCEPTED, A.SUBMITTED)} THEN '{S.SUBMITTED}' "
        f"WHEN {qn('slots_taken')} > 0 THEN '{S.IN_PROGRESS}' "
        f"WHEN EXISTS (SELECT 1 FROM {t(Prediction)} p WHERE p.{qn('image_id')} = {t(Task)}.{qn('image_id')}) "
        f"THEN '{S.PRELABELED}' ELSE '{S.NEW}' END, {qn('updated_at')} = %s WHERE {qn('id')} = %s"
    )


# ------------------------------------------------------------------ regions


def _latex_checked(src: str) -> tuple[list[str], str]:
    """``(problems, normalised form)`` of a LaTeX answer, from one tokenization; an answer over
    the length limit is refused before it is tokenized."""
    if len(src) > MAX_LATEX_LENGTH:
        return [f"The LaTeX is {len(src)} characters long; at most {MAX_LATEX_LENGTH} are allowed."], ""
    # C0 controls, lone surrogates, non-characters: the check an image's truth passes too.
    problems = latex.character_problems(src)
    if problems:
        return problems, ""
    return latex.check_and_normalize(src)


def _quad_checked(points: object, *, image: Image, field: str) -> list[list[float]]:
    """A quad's points as stored (common.geometry.validate_quad against the image: four finite
    points in it, give or take the border tolerance, forming a simple polygon of some area, made
    clockwise from the first); anything else is a 400 naming `field`. Annotators' regions and
    reviewers' corrected corners both pass here, so a reviewer can store no shape an annotator
    could not."""
    try:
        return geometry.validate_quad(points, width=image.width, height=image.height)
    except geometry.GeometryError as exc:
        raise ValidationError({field: str(exc)}) from None


def _flag(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError({field: "Must be true or false."})
    return value


def regions_clean(*, regions: object, image: Image, field: str = "regions",
                  spec_categories: set[str] | None = None, with_confidence: bool = False) -> list[dict]:
    """Validate regions against their image and return them in stored form.

    A quad keeps the start corner it was given (the formula's top-left as read, however the
    photo is turned) and is made clockwise on screen around it (common.geometry.validate_quad).

    A region is {"kind": "quad", "points": [[x, y] x4]} or {"kind": "mask",
    "mask": COCO RLE}, plus "latex", "illegible", "cut_off", "categories" (slugs of
    the spec) and, for predictions, "confidence". Errors name the exact field, e.g.
    `regions[2].points`. LaTeX gets its normalised token form beside it.
    """
    if not isinstance(regions, list):
        raise ValidationError({field: "Must be a list of regions."})
    if len(regions) > MAX_REGIONS:
        raise ValidationError({field: f"{len(regions)} regions; at most {MAX_REGIONS} are allowed per image."})
    allowed = {"kind", "points", "mask", "latex", "illegible", "cut_off", "categories"}
    if with_confidence:
        allowed.add("confidence")
    out = []
    for i, region in enumerate(regions):
        where = f"{field}[{i}]"
        if not isinstance(region, dict):
            raise ValidationError({where: "Must be an object."})
        extra = sorted(set(region) - allowed)
        if extra:
            raise ValidationError({f"{where}.{extra[0]}": "Unknown field."})
        kind = region.get("kind")
        clean: dict = {"kind": kind}
        if kind == Region.Kind.QUAD:
            clean["points"] = _quad_checked(region.get("points"), image=image, field=f"{where}.points")
        elif kind == Region.Kind.MASK:
            try:
                clean["mask"] = rle.validate(region.get("mask"), width=image.width, height=image.height)
            except rle.MaskError as exc:
                raise ValidationError({f"{where}.mask": str(exc)}) from None
        else:
            raise ValidationError({f"{where}.kind": 'Must be "quad" or "mask".'})
        src = region.get("latex", "")
        if not isinstance(src, str):
            raise ValidationError({f"{where}.latex": "Must be a string."})
        src = src.strip()
        normalized = ""
        if src:
            problems, normalized = _latex_checked(src)
            if problems:
                raise ValidationError({f"{where}.latex": problems})
        clean["latex"] = src
        clean["latex_normalized"] = normalized
        clean["illegible"] = _flag(region.get("illegible", False), f"{where}.illegible")
        clean["cut_off"] = _flag(region.get("cut_off", False), f"{where}.cut_off")
        cats = region.get("categories", [])
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise ValidationError({f"{where}.categories": "Must be a list of category slugs."})
        if cats and spec_categories is None:  # only read when a region names categories
            spec_categories = set(Category.objects.filter(spec_id=image.spec_id).values_list("slug", flat=True))
        unknown = sorted(set(cats) - (spec_categories or set()))
        if unknown:
            raise ValidationError({f"{where}.categories": f"Unknown categories: {', '.join(unknown)}."})
        clean["categories"] = sorted(set(cats))
        if with_confidence and region.get("confidence") is not None:
            clean["confidence"] = _confidence(region["confidence"], f"{where}.confidence")
        out.append(clean)
    return out


def _confidence(value, field: str) -> float:
    # The range first: math.isfinite() of an int beyond float range raises OverflowError.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1 or not math.isfinite(value):
        raise ValidationError({field: "Must be a number between 0 and 1."})
    return float(value)


def _check_complete(task: Task, regions: list[dict]) -> None:
    """What a submitted answer must hold, by the batch's task kind."""
    if not regions:
        raise ValidationError({"regions": "Mark at least one formula before submitting."})
    if task.batch.kind in (Batch.Kind.LATEX, Batch.Kind.FULL):
        for i, region in enumerate(regions):
            if not region["latex"] and not region["illegible"]:
                raise ValidationError({f"regions[{i}].latex": "Type the formula, or flag the region illegible."})


_ANNOTATION_FIELDS = ("task", "annotator", "status", "version", "created_at", "updated_at", "submitted_at")
_VERSION_FIELDS = ("number", "author", "time_spent_seconds", "started_from", "created_at")
_REGION_FIELDS = ("index", "kind", "points", "mask_rle", "latex", "latex_normalized", "illegible", "cut_off",
                  "categories")


def _version_started_from(version_id: int) -> Prediction | None:
    """The prediction version `version_id` started from, for a next version that derives from it
    (a save that names none, a reviewer's corrections). Only its id is read: `_save_version`
    stores nothing else of it, and a prediction's regions may be large."""
    return Prediction.objects.only("pk").filter(pk=Subquery(
        AnnotationVersion.objects.filter(pk=version_id).values("started_from_id")[:1])).first()


def _save_version(*, annotation: Annotation, author: User, regions: list[dict], time_spent_seconds: float,
                  started_from: Prediction | None, create: bool = False) -> AnnotationVersion:
    """Store a new version of `annotation` with its regions and make it the current one;
    with `create`, insert the annotation itself first (its fields are already set).

    Every submit runs this, so the statements are written once (common.rawsql): on
    PostgreSQL one statement does it all (`_version_sql`), elsewhere one per table
    and one to point the annotation at its new version."""
    from django.db import connection

    now = timezone.now()
    version = AnnotationVersion(annotation=annotation, number=annotation.version, author=author,
                                time_spent_seconds=time_spent_seconds, started_from=started_from, created_at=now)
    rows = [
        Region(version=version, index=i, kind=r["kind"], points=r.get("points"), mask_rle=r.get("mask"),
               latex=r["latex"], latex_normalized=r["latex_normalized"], illegible=r["illegible"],
               cut_off=r["cut_off"], categories=r["categories"])
        for i, r in enumerate(regions)
    ]
    json_or_null = lambda v: None if v is None else rawsql.js(v)  # noqa: E731  (None is SQL NULL, as the ORM saves it)
    region_values = [(r.index, r.kind, json_or_null(r.points), json_or_null(r.mask_rle), r.latex, r.latex_normalized,
                      r.illegible, r.cut_off, rawsql.js(r.categories)) for r in rows]
    version_values = (version.number, author.pk, time_spent_seconds, started_from.pk if started_from else None,
                      rawsql.dt(now))
    annotation_values = ()
    if create:
        annotation_values = (annotation.task_id, annotation.annotator_id, annotation.status, annotation.version,
                             rawsql.dt(annotation.created_at), rawsql.dt(annotation.updated_at),
                             rawsql.dt(annotation.submitted_at) if annotation.submitted_at else None)
    if connection.vendor == "postgresql":
        params = [*annotation_values] if create else [annotation.pk]
        params += [*version_values] + ([] if create else [annotation.pk])
        params += [v for row in region_values for v in row]
        found = rawsql.fetch(_version_sql(len(rows), create), params)
        if create:
            annotation.pk = found[0][0]
        version.pk = found[0][1]
        region_ids = [r[2] for r in found] if rows else []
    else:
        if create:
            annotation.pk = rawsql.insert(Annotation, _ANNOTATION_FIELDS, [annotation_values])[0]
        version.pk = rawsql.insert(AnnotationVersion, ("annotation", *_VERSION_FIELDS),
                                   [(annotation.pk, *version_values)])[0]
        region_ids = rawsql.insert(Region, ("version", *_REGION_FIELDS),
                                   [(version.pk, *row) for row in region_values]) if rows else []
        rawsql.execute(_queue_sql()["set_current"], [version.pk, annotation.pk])
    if create:
        annotation._state.adding = False
        version.annotation_id = annotation.pk  # built before the annotation had its id
    version._state.adding = False
    for row, pk in zip(rows, region_ids, strict=True):
        row.pk, row.version_id = pk, version.pk  # built before the version had its id
        row._state.adding = False
    annotation.current = version
    # Callers answer with the saved state without reading it back.
    version._prefetched_objects_cache = {"regions": rows}
    return version


def _version_sql(n_regions: int, create: bool) -> str:
    """PostgreSQL: a version, its regions and the annotation's pointer to it in one
    statement (data-modifying WITH; `create`: the annotation row too). Ids come from
    the tables' own sequences first, so the annotation is inserted already pointing
    at its version (the foreign keys are checked at commit). Rows: (annotation id,
    version id, region id) in region order. Every parameter is cast to its column's
    type: an untyped NULL would otherwise be read as text."""
    def build() -> str:
        from django.db import connection

        qn, t = rawsql.qn, rawsql.table

        def cast(model, name: str) -> str:
            kind = model._meta.get_field(name).cast_db_type(connection)
            # A cast to varchar(n) would cut a longer value silently; the column itself refuses it.
            return f"CAST(%s AS {'varchar' if kind.startswith('varchar(') else kind})"

        def cols(model, names) -> str:
            return ", ".join(qn(model._meta.get_field(n).column) for n in names)

        def nextval(model) -> str:
            return f"nextval(pg_get_serial_sequence('{t(model)}', '{model._meta.pk.column}'))"

        parts = [f"ids AS (SELECT {nextval(Annotation) if create else cast(Annotation, 'id')} AS a, "
                 f"{nextval(AnnotationVersion)} AS v)"]
        if create:
            parts.append(f"an AS (INSERT INTO {t(Annotation)} ({qn('id')}, {cols(Annotation, _ANNOTATION_FIELDS)}, "
                         f"{qn('current_id')}) SELECT ids.a, "
                         f"{', '.join(cast(Annotation, n) for n in _ANNOTATION_FIELDS)}, ids.v FROM ids)")
        parts.append(f"ve AS (INSERT INTO {t(AnnotationVersion)} ({qn('id')}, {qn('annotation_id')}, "
                     f"{cols(AnnotationVersion, _VERSION_FIELDS)}) SELECT ids.v, ids.a, "
                     f"{', '.join(cast(AnnotationVersion, n) for n in _VERSION_FIELDS)} FROM ids)")
        if not create:
            parts.append(f"cu AS (UPDATE {t(Annotation)} SET {qn('current_id')} = ids.v FROM ids "
                         f"WHERE {t(Annotation)}.{qn('id')} = {cast(Annotation, 'id')})")
        if n_regions:
            one = "(" + ", ".join(cast(Region, n) for n in _REGION_FIELDS) + ")"
            names = ", ".join(f"c{i}" for i in range(len(_REGION_FIELDS)))
            parts.append(f"re AS (INSERT INTO {t(Region)} ({qn('version_id')}, {cols(Region, _REGION_FIELDS)}) "
                         f"SELECT ids.v, x.* FROM ids, (VALUES {', '.join([one] * n_regions)}) AS x ({names}) "
                         f"RETURNING {qn('id')}, {qn('index')})")
            tail = f"SELECT ids.a, ids.v, re.{qn('id')} FROM ids, re ORDER BY re.{qn('index')}"
        else:
            tail = "SELECT ids.a, ids.v, NULL FROM ids"
        return "WITH " + ", ".join(parts) + " " + tail

    return rawsql.statement(f"save_version:{n_regions}:{int(create)}", build)


def _time_spent(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_TIME_SPENT_SECONDS \
            or not math.isfinite(value):  # the range first: isfinite() of a huge int raises OverflowError
        raise ValidationError({"time_spent_seconds": f"Must be between 0 and {MAX_TIME_SPENT_SECONDS} seconds."})
    return float(value)


def _started_from(task: Task, prediction: Prediction | None) -> Prediction | None:
    if prediction is not None and prediction.image_id != task.image_id:
        raise ValidationError({"started_from": "That prediction is of another image."})
    return prediction


# -------------------------------------------------------------- annotations


def _refuse_if_closed(batch: Batch, *, field: str) -> None:
    """A closed batch's work is over (delivered and costed): nothing more is annotated,
    handed in or reviewed in it. A paused one only stops handing out tasks; what an
    annotator has open may still be saved and handed in, and reviewed."""
    if batch.status == Batch.Status.CLOSED:
        raise ValidationError({field: f"The batch {batch.name!r} is closed: its work is over and nothing more is "
                                      "saved or reviewed in it."})


def _refuse_if_guide_unread(batch: Batch, annotator: User) -> None:
    """Handing in holds the queue's gate (`labeling.gating`): a lease, a draft or rework
    taken before a new guide version was published is not handed in until the annotator
    has acknowledged that version. Drafts are still saved, so nothing is lost meanwhile.

    The field is "guide", not "task" or "annotation": the message is what to read, and the
    labeling page takes a "task" error on a first save for "already saved elsewhere"."""
    missing = gating.guide_acknowledgement_missing(annotator=annotator, batch=batch, handing_in=True)
    if missing is not None:
        raise ValidationError({"guide": missing})


@transaction.atomic
def annotation_create(
    *,
    task: Task,
    annotator: User,
    regions: object,
    time_spent_seconds: float = 0,
    started_from: Prediction | None = None,
    submit: bool = False,
) -> Annotation:
    """Save an annotator's first answer for a task they hold a lease on (version 1),
    optionally submitting it at once (not while a guide version is unacknowledged)."""
    _refuse_if_closed(task.batch, field="task")
    clean = regions_clean(regions=regions, image=task.image)
    spent = _time_spent(time_spent_seconds)
    started_from = _started_from(task, started_from)
    if submit:
        _check_complete(task, clean)
    # The lease becomes a permanent slot. A lapsed lease still counts while nobody
    # else has reaped it; once reaped, the slot may be someone else's.
    q = _queue_sql()
    params = [Claim.State.ANNOTATED, task.pk, annotator.pk, Claim.State.LIVE]
    if submit:  # and only with the guide acknowledged: `_refuse_if_guide_unread` in the same statement
        from guides.models import GuideVersion

        taken = rawsql.execute(q["lease_to_slot_handing_in"],
                               [*params, annotator.pk, GuideVersion.Status.PUBLISHED, task.batch_id])
    else:
        taken = rawsql.execute(q["lease_to_slot"], params)
    if not taken:
        if Annotation.objects.filter(task=task, annotator=annotator).exists():
            raise ValidationError({"task": "You already annotated this task; update that annotation."})
        if submit:
            _refuse_if_guide_unread(task.batch, annotator)
        raise ValidationError({"task": "You hold no lease on this task; ask for the next task."})
    now = timezone.now()
    annotation = Annotation(
        task=task, annotator=annotator, version=1,
        status=Annotation.Status.SUBMITTED if submit else Annotation.Status.DRAFT,
        created_at=now, updated_at=now, submitted_at=now if submit else None)
    annotation._prefetched_objects_cache = {"reviews": []}  # a new annotation has none
    _save_version(annotation=annotation, author=annotator, regions=clean, time_spent_seconds=spent,
                  started_from=started_from, create=True)
    if submit:
        _task_refresh_status(task.pk)
        spec_stats_refresh_soon(spec_id=task.batch.spec_id)
    return annotation


class StaleVersion(Exception):
    """The caller edited an older version; `current` is the annotation as it is now."""

    def __init__(self, current: Annotation):
        super().__init__(f"Version {current.version} is current.")
        self.current = current


EDITABLE = (Annotation.Status.DRAFT, Annotation.Status.REJECTED)


@transaction.atomic
def annotation_update(
    *,
    annotation: Annotation,
    by: User,
    version: int,
    regions: object,
    time_spent_seconds: float = 0,
    started_from: Prediction | None = None,
    submit: bool = False,
) -> Annotation:
    """Save a new version of an annotation, if `version` is still the current one.

    Optimistic concurrency: the version number moves on in one conditional UPDATE,
    so of two saves from the same version exactly one wins and the other gets
    StaleVersion (HTTP 409) with the current state; no save is ever lost silently.
    Submitting with the save waits for the guide as `annotation_submit` does.
    """
    if by.pk != annotation.annotator_id:
        raise ValidationError({"annotation": "Only its annotator edits an annotation."})
    task = annotation.task
    _refuse_if_closed(task.batch, field="annotation")
    clean = regions_clean(regions=regions, image=task.image)
    spent = _time_spent(time_spent_seconds)
    started_from = _started_from(task, started_from)
    if started_from is None and annotation.current_id is not None:
        # A save that does not name the prediction it started from keeps the one the answer
        # started from: a later version derives from the earlier one (the API showed null after
        # any save from a client that did not send it again).
        started_from = _version_started_from(annotation.current_id)
    if submit:
        _check_complete(task, clean)
        _refuse_if_guide_unread(task.batch, by)
    if annotation.status not in EDITABLE:
        raise ValidationError({"status": f"A {annotation.get_status_display().lower()} annotation cannot be changed."})
    now = timezone.now()
    changes: dict = {"version": F("version") + 1, "updated_at": now}
    if submit:
        changes.update(status=Annotation.Status.SUBMITTED, submitted_at=now)
    won = Annotation.objects.filter(pk=annotation.pk, version=version, status__in=EDITABLE).update(**changes)
    if not won:
        current = Annotation.objects.get(pk=annotation.pk)
        if current.version == version:  # handed in (or reviewed) meanwhile, not saved: retrying cannot help
            raise ValidationError({"status": f"A {current.get_status_display().lower()} annotation cannot be changed."})
        raise StaleVersion(current)
    annotation.refresh_from_db()
    _save_version(annotation=annotation, author=by, regions=clean, time_spent_seconds=spent,
                  started_from=started_from)
    if submit:
        _task_refresh_status(task.pk)
        spec_stats_refresh_soon(spec_id=task.batch.spec_id)
    return annotation


@transaction.atomic
def annotation_submit(*, annotation: Annotation, by: User, version: int) -> Annotation:
    """Hand the current version in for review (also after a rejection's rework), once
    `by` has acknowledged the current version of the spec's work guide."""
    if by.pk != annotation.annotator_id:
        raise ValidationError({"annotation": "Only its annotator submits an annotation."})
    _refuse_if_closed(annotation.task.batch, field="annotation")
    _refuse_if_guide_unread(annotation.task.batch, by)
    now = timezone.now()
    won = Annotation.objects.filter(pk=annotation.pk, version=version, status__in=EDITABLE).update(
        status=Annotation.Status.SUBMITTED, submitted_at=now, updated_at=now)
    if not won:
        current = Annotation.objects.get(pk=annotation.pk)
        if current.version == version:
            raise ValidationError({"status": f"A {current.get_status_display().lower()} annotation cannot be submitted."})
        raise StaleVersion(current)
    # The version handed in is checked, read under the row lock the UPDATE took: `annotation`
    # may have been read before a later save (an incomplete answer raises, undoing the UPDATE).
    annotation.refresh_from_db()
    regions = [
        {"latex": r.latex, "illegible": r.illegible}
        for r in Region.objects.filter(version_id=annotation.current_id).only("latex", "illegible")
    ]
    _check_complete(annotation.task, regions)
    _task_refresh_status(annotation.task_id)
    spec_stats_refresh_soon(spec_id=annotation.task.batch.spec_id)
    return annotation


# ------------------------------------------------------------------ reviews

REVIEW_HOLD = timedelta(minutes=10)


@transaction.atomic
def review_open_next(*, reviewer: User, hold: timedelta = REVIEW_HOLD) -> Annotation | None:
    """The submitted annotation the review queue shows `reviewer` next, held for them for
    `hold`: the one they already hold, else the oldest no other reviewer holds. None when
    there is nothing, or everything waiting is open with other reviewers.

    Without it every reviewer of a vendor was shown the same oldest annotation, and all but
    the first decision on it were lost work. The hold only steers the queue: opening an
    annotation by its id, or deciding on one another reviewer holds, is still allowed. It is
    taken by a conditional UPDATE, so two reviewers asking at once get different ones."""
    from .selectors import annotations_reviewable_by

    if not (roles.is_curator(reviewer) or roles.has_role(reviewer, roles.REVIEWER)):
        raise ValidationError({"reviewer": "Only reviewers and curators review."})
    now = timezone.now()
    queue = annotations_reviewable_by(reviewer)
    mine = queue.filter(review_holder=reviewer, review_held_until__gt=now).first()
    if mine is not None:
        Annotation.objects.filter(pk=mine.pk).update(review_held_until=now + hold)
        return mine
    free = Q(review_holder__isnull=True) | Q(review_held_until__lte=now) | Q(review_holder=reviewer)
    for _ in range(10):
        candidate = queue.filter(free).first()
        if candidate is None:
            return None
        if Annotation.objects.filter(free, pk=candidate.pk, status=Annotation.Status.SUBMITTED).update(
                review_holder=reviewer, review_held_until=now + hold):
            candidate.review_holder, candidate.review_held_until = reviewer, now + hold
            return candidate
        # another reviewer took it between our read and write: the next one
    return None


def _refuse_if_taken_down(image_id: int) -> None:
    """A 400 when the image was taken down: its files are erased, so nobody can check its
    annotations; they stay submitted, out of the review queue."""
    taken_down = Image.objects.filter(pk=image_id).values_list("taken_down_at", flat=True).first()
    if taken_down is not None:
        raise ValidationError({"annotation": f"The image was taken down on {taken_down:%Y-%m-%d} and its files "
                                             "erased; its annotations are no longer reviewed."})


@dataclass(frozen=True)
class _Correction:
    """One region's checked correction: its new LaTeX (stripped, normalised) and/or its new
    corners (as `_quad_checked` stores them), each with the field its errors name."""

    latex: tuple[str, str] | None = None
    latex_field: str = ""
    points: list[list[float]] | None = None
    points_field: str = ""


_CORRECTION_KEYS = ("latex", "points")


def _correction_latex(src: object, field: str) -> tuple[str, str]:
    """(stripped LaTeX, its normalised form) of a corrected text, checked as an annotator's
    (`_latex_checked`, after the strip `regions_clean` applies); errors name `field`."""
    if not isinstance(src, str):
        raise ValidationError({field: "Must be a string."})
    src = src.strip()
    if not src:
        # Clearing a formula is not a fix of its text: a region without LaTeX must be flagged
        # illegible, which is the annotator's call; send the work back instead.
        raise ValidationError({field: "Type the corrected LaTeX; to have a formula removed, reject the annotation."})
    problems, normalized = _latex_checked(src)
    if problems:
        raise ValidationError({field: problems})
    return src, normalized


def _corrections_checked(corrections: object, *, image: Image) -> dict[str, _Correction]:
    """{region index as text: its checked correction} of a reviewer's corrections.

    A value is the corrected LaTeX (a string, errors name `corrections.<key>`), or an object
    with "latex" and/or "points" (errors name `corrections.<key>.latex` / `.points`); new corners
    are checked against `image` exactly as an annotator's (`_quad_checked`). Which indexes exist,
    and whether a region has corners to move, is checked later, against the version decided on
    (`_corrections_apply`)."""
    if not isinstance(corrections, dict):
        raise ValidationError({"corrections": "Must be an object of region index -> corrected LaTeX, or -> "
                                              '{"latex": ..., "points": ...}.'})
    if len(corrections) > MAX_REGIONS:
        raise ValidationError({"corrections": f"{len(corrections)} corrections; an annotation has at most "
                                              f"{MAX_REGIONS} regions."})
    out: dict[str, _Correction] = {}
    for key, src in corrections.items():
        field = f"corrections.{key}"
        # JSON object keys are text; a Python caller may pass ints. "01" or "-1" name no region.
        text = str(key)
        if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text.startswith("0")):
            raise ValidationError({field: "Not a region index: use the region's `index` (0, 1, …)."})
        if len(text) > len(str(MAX_REGIONS - 1)):
            # names no region; and int() of more than 4300 digits raises ValueError (a 500)
            raise ValidationError({field: f"No such region: an annotation has at most {MAX_REGIONS} regions."})
        if text in out:  # 1 and "1" from a Python caller
            raise ValidationError({field: "The same region is corrected twice."})
        if isinstance(src, str):  # the first form, kept as it was for existing clients
            out[text] = _Correction(latex=_correction_latex(src, field), latex_field=field)
            continue
        if not isinstance(src, dict):
            raise ValidationError({field: 'Must be the corrected LaTeX (a string), or an object with "latex" '
                                          'and/or "points".'})
        # A misspelt "point" would otherwise be ignored: the acceptance would go through without it.
        extra = sorted(str(k) for k in src if k not in _CORRECTION_KEYS)
        if extra:
            raise ValidationError({f"{field}.{extra[0]}": 'Unknown field: a correction holds "latex" and/or '
                                                          '"points".'})
        if not src:
            raise ValidationError({field: 'Give the corrected "latex", the corrected "points" (4 corners), or both.'})
        out[text] = _Correction(
            latex=_correction_latex(src["latex"], f"{field}.latex") if "latex" in src else None,
            latex_field=f"{field}.latex",
            points=_quad_checked(src["points"], image=image, field=f"{field}.points") if "points" in src else None,
            points_field=f"{field}.points")
    return out


def _corrections_apply(*, version_id: int, checked: dict[str, _Correction]) -> tuple[list[dict], dict]:
    """The regions of version `version_id` in `_save_version`'s form with the checked corrections
    applied, and the record of those that change something (`Review.corrections`):

    - only the LaTeX changed: {index: [old LaTeX, new LaTeX]}, the form every reader knew first;
    - the corners moved: {index: {"points": [old points, new points]}}, plus "latex": [old, new]
      when the text changed too.

    Only the corrected parts change: kind, flags, categories, and a mask the region may hold
    beside its quad, are copied as stored (already validated when the annotator saved them).
    No write path stores such a region today (`regions_clean` keeps a quad or a mask, never
    both); were one stored, exports would part ways on it: COCO takes its box and segmentation
    from the mask (the moved quad rides along as "quad"), quad-only formats (ICDAR, YOLO-OBB,
    crops) take the moved quad.
    A region without corners (a mask-only one) gets none: its shape is the annotator's to redraw.
    A correction identical to what is stored is left out of both: it changes nothing, so it is not
    counted as a correction in QA nor shown to the annotator, and a client may send every
    region's text and corners."""
    regions = [
        {"kind": r.kind, "points": r.points, "mask": r.mask_rle, "latex": r.latex, "latex_normalized": r.latex_normalized,
         "illegible": r.illegible, "cut_off": r.cut_off, "categories": r.categories}
        for r in Region.objects.filter(version_id=version_id).order_by("index")
    ]
    record: dict[str, list[str] | dict[str, list]] = {}
    for key, fix in sorted(checked.items(), key=lambda kv: int(kv[0])):
        i = int(key)
        if i >= len(regions):
            raise ValidationError({f"corrections.{key}": f"No region {i}: the version decided on has "
                                                         f"{len(regions)} (indexes 0 to {len(regions) - 1})."})
        region = regions[i]
        latex_change = points_change = None
        if fix.latex is not None and region["latex"] != fix.latex[0]:
            if region["illegible"]:
                # Exports deliver no text of an illegible region (im2latex skips it, ICDAR writes "###"):
                # a correction would be counted and shown but never delivered. The flag is the
                # annotator's call, as clearing a formula is (`_correction_latex`).
                raise ValidationError({fix.latex_field: "This region is flagged illegible, so its LaTeX is not "
                                                        "delivered; to have it read, reject the annotation."})
            latex_change = [region["latex"], fix.latex[0]]
            region = {**region, "latex": fix.latex[0], "latex_normalized": fix.latex[1]}
        if fix.points is not None:
            if region["points"] is None:
                raise ValidationError({fix.points_field: f"Region {i + 1} is a pixel mask without corners; to have "
                                                         "it redrawn, reject the annotation."})
            if region["points"] != fix.points:
                points_change = [region["points"], fix.points]
                region = {**region, "points": fix.points}
        if points_change is not None:
            record[key] = {"points": points_change, **({"latex": latex_change} if latex_change else {})}
        elif latex_change is not None:
            record[key] = latex_change
        regions[i] = region
    return regions, record


@transaction.atomic
def review_create(*, annotation: Annotation, reviewer: User, decision: str, reasons: Sequence[str] = (),
                  comment: str = "", version: int | None = None, corrections: object = None) -> Review:
    """Accept or reject a submitted annotation. Rejection sends it back to its
    annotator for rework (or, when they were switched off meanwhile, withdraws it and
    frees its slot: `_annotation_withdraw`); acceptance completes the task once its
    overlap is met.

    An acceptance may carry `corrections`, {region index: LaTeX} or {region index: {"latex":
    LaTeX, "points": [[x, y] x4]}} (either key or both): the reviewer fixes the LaTeX of those
    regions, or moves their four corners (a quad cutting off part of its formula), instead of
    sending the whole annotation back. New corners are checked as an annotator's are
    (`_quad_checked`); a region that is only a pixel mask gets none, and one holding a mask
    beside its quad keeps the mask as it is (only the quad moves). Flags and categories stay as
    the annotator set them. The fixed answer is stored as a new version authored by the
    reviewer, which becomes the current one (what exports and snapshots deliver); the review
    still records the version decided on (the annotator's, which agreement and gold accuracy
    keep scoring), and keeps what changed in `Review.corrections` for QA and the annotator
    ({index: [old, new]} for text only, {index: {"points": [old, new], "latex"?: [old, new]}}
    where the corners moved: `_corrections_apply`). The task is accepted and paid as with any
    acceptance. Corrections equal to what is stored are ignored; when none is left it is a
    plain acceptance. A region flagged illegible gets no new text (no export delivers it): that
    is a rejection's matter; its corners may be moved (its box is delivered).
    """
    if reviewer.pk == annotation.annotator_id:
        raise ValidationError({"annotation": "Nobody reviews their own annotation."})
    _refuse_if_closed(annotation.task.batch, field="annotation")
    _refuse_if_taken_down(annotation.task.image_id)
    if decision not in Review.Decision.values:
        raise ValidationError({"decision": 'Must be "accept" or "reject".'})
    reasons = list(dict.fromkeys(reasons))
    bad = [r for r in reasons if r not in Review.Reason.values]
    if bad:
        raise ValidationError({"reasons": f"Unknown reason codes: {', '.join(map(str, bad))}."})
    if decision == Review.Decision.REJECT and not reasons:
        raise ValidationError({"reasons": "Give at least one reason for a rejection."})
    if decision == Review.Decision.ACCEPT and reasons:
        # Reasons are what was wrong: stored with an acceptance they would count as rejection causes in QA.
        raise ValidationError({"reasons": "An acceptance takes no reasons; they explain a rejection."})
    if decision == Review.Decision.REJECT and Review.Reason.OTHER in reasons and not comment.strip():
        raise ValidationError({"comment": 'Explain the "other" reason in a comment.'})
    if len(comment) > 5000:
        raise ValidationError({"comment": "At most 5000 characters."})
    checked: dict[str, _Correction] = {}
    if corrections is not None and corrections != {}:
        if decision != Review.Decision.ACCEPT:
            # A rejection sends the work back to be fixed by its annotator; a fix stored with it
            # would be overwritten by their rework, or delivered behind their back.
            raise ValidationError({"corrections": "Corrections come with an acceptance; a rejection's comment says "
                                                  "what to fix."})
        checked = _corrections_checked(corrections, image=annotation.task.image)
    expected = annotation.version if version is None else version
    new_status = Annotation.Status.ACCEPTED if decision == Review.Decision.ACCEPT else Annotation.Status.REJECTED
    annotator_left = False
    if new_status == Annotation.Status.REJECTED:
        # Rework for someone switched off would wait for ever: their answer is withdrawn at once
        # (below). Their user row is locked first, as `user_deactivate` locks it by saving it, so
        # a deactivation at the same moment either commits before this reads it or, waiting,
        # finds this rejection and withdraws it itself; neither leaves rework for nobody.
        annotator_left = not User.objects.select_for_update().filter(pk=annotation.annotator_id).values_list(
            "is_active", flat=True).get()
    won = Annotation.objects.filter(pk=annotation.pk, status=Annotation.Status.SUBMITTED, version=expected).update(
        status=new_status, updated_at=timezone.now(), review_holder=None, review_held_until=None)
    if not won:
        current = Annotation.objects.get(pk=annotation.pk)
        if current.version != expected:
            raise StaleVersion(current)
        raise ValidationError({"annotation": f"Only submitted annotations are reviewed; this one is "
                                             f"{current.get_status_display().lower()}."})
    # Looked at again under the row lock, in a new statement: a takedown that held the annotation
    # while we waited has committed by now (our UPDATE went on, the row itself unchanged).
    _refuse_if_taken_down(annotation.task.image_id)
    # The version decided on is the one current under the row lock the UPDATE took, not the
    # one `annotation` held when it was read (it may be a later rework of it).
    annotation.refresh_from_db()
    decided_id = annotation.current_id
    record: dict = {}
    if checked:
        # Indexes are checked against the version decided on, read under the row lock; a bad one
        # raises here and the atomic block undoes the UPDATE above: nothing is stored.
        regions, record = _corrections_apply(version_id=decided_id, checked=checked)
        if record:
            # The corrected answer is the next version. The UPDATE above holds the row lock and
            # changed the status, so no save or other decision can come in between; the reviewer's
            # version keeps the pre-label the answer started from, and adds no annotating time.
            Annotation.objects.filter(pk=annotation.pk).update(version=F("version") + 1)
            annotation.version += 1  # read under the lock just above: nothing else moved it
            _save_version(annotation=annotation, author=reviewer, regions=regions, time_spent_seconds=0,
                          started_from=_version_started_from(decided_id))
    review = Review.objects.create(annotation=annotation, version_id=decided_id, reviewer=reviewer,
                                   decision=decision, reasons=reasons, comment=comment.strip(), corrections=record)
    if annotator_left:
        _annotation_withdraw(annotation_id=annotation.pk, task_id=annotation.task_id,
                             annotator_id=annotation.annotator_id)
        annotation.refresh_from_db(fields=["status", "updated_at"])
    else:
        _task_refresh_status(annotation.task_id)
    spec_stats_refresh_soon(spec_id=annotation.task.batch.spec_id)
    return review


# -------------------------------------------------------------- predictions


_PREDICTION_ITEM_FIELDS = {"image", "regions", "confidence"}


@transaction.atomic
def predictions_import(*, model_name: str, model_version: str, items: object,
                       created_by: User | None = None, images: QuerySet[Image] | None = None) -> list[Prediction]:
    """Store a model's pre-labels for many images at once, all or nothing.

    `items` is a list of {"image": id, "regions": [...], "confidence": 0..1}; the
    regions use the annotation format (each may carry a "confidence"). A second
    import of the same model version replaces its earlier prediction, unless an
    annotation started from it (that one is kept as the annotator saw it). Open tasks of
    those images become pre-labeled and take the lowest confidence of the image's
    predictions for queue order (as a new batch orders its images).
    `images` limits which images may be named (the caller's selector).
    """
    for field, value, missing in (("model_name", model_name, "Name the model."),
                                  ("model_version", model_version, "Give the model version.")):
        if not value.strip():
            raise ValidationError({field: missing})
        # Callers other than the API (the pipeline's pre-label hook) reach here unchecked: a
        # name the column cannot hold must be a field error, not a DataError.
        limit = Prediction._meta.get_field(field).max_length
        if len(value.strip()) > limit:
            raise ValidationError({field: f"At most {limit} characters."})
    if not isinstance(items, list) or not items:
        raise ValidationError({"items": "Must be a non-empty list."})
    if len(items) > MAX_PREDICTION_ITEMS:
        raise ValidationError({"items": f"At most {MAX_PREDICTION_ITEMS} items per request."})
    ids = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("image"), int) or isinstance(item.get("image"), bool):
            raise ValidationError({f"items[{i}].image": "Give the image id."})
        # A misspelt "region" or Label Studio's "score"/"result" would otherwise be ignored:
        # the image would get an empty pre-label (or no queue confidence) without a word.
        extra = sorted(set(item) - _PREDICTION_ITEM_FIELDS)
        if extra:
            raise ValidationError({f"items[{i}].{extra[0]}": "Unknown field."})
        ids.append(item["image"])
    if len(set(ids)) != len(ids):
        raise ValidationError({"items": "An image appears twice."})
    # An id beyond 64 bits is simply unknown (an `in` lookup would hand it to the database and fail there).
    by_id = (images if images is not None else Image.objects.all()).in_bulk([pk for pk in ids if is_row_id(pk)])
    spec_cats: dict[int, set[str]] = {}
    rows = []
    for i, item in enumerate(items):
        image = by_id.get(item["image"])
        if image is None:
            raise ValidationError({f"items[{i}].image": f"Unknown image {item['image']}."})
        if image.spec_id not in spec_cats:
            spec_cats[image.spec_id] = set(Category.objects.filter(spec_id=image.spec_id).values_list("slug", flat=True))
        regions = regions_clean(regions=item.get("regions", []), image=image, field=f"items[{i}].regions",
                                spec_categories=spec_cats[image.spec_id], with_confidence=True)
        conf = item.get("confidence")
        conf = None if conf is None else _confidence(conf, f"items[{i}].confidence")
        rows.append((image, regions, conf))
    name, version = model_name.strip(), model_version.strip()
    # A prediction an annotation started from stays what the annotator saw: QA's "pre-label
    # changes" compare the answer with it. Re-importing the same model version leaves it be.
    started = AnnotationVersion.objects.filter(started_from=OuterRef("pk"))
    seen = {p.image_id: p for p in Prediction.objects.filter(
        Exists(started), image__in=[image for image, _, _ in rows], model_name=name, model_version=version)}
    saved = []
    for image, regions, conf in rows:
        if image.pk in seen:
            saved.append(seen[image.pk])
            continue
        pred, _ = Prediction.objects.update_or_create(
            image=image, model_name=name, model_version=version,
            defaults={"regions": regions, "confidence": conf, "created_by": created_by})
        saved.append(pred)
        open_tasks = Task.objects.filter(image=image, status__in=Task.CLAIMABLE)
        open_tasks.filter(status=Task.Status.NEW).update(status=Task.Status.PRELABELED)
        # Recomputed, not min(old, new): a re-import replaces this model's confidence, and a
        # corrected (higher) one must move the task back in the "lowest confidence first" queue.
        lowest = Prediction.objects.filter(image=image).aggregate(lowest=Min("confidence"))["lowest"]
        open_tasks.exclude(model_confidence=lowest).update(model_confidence=lowest)
    for spec_id in spec_cats:  # pre-labeled counts in the quota progress
        spec_stats_refresh_soon(spec_id=spec_id)
    return saved
