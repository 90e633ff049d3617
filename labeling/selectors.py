"""Reads for labeling, always starting from the user.

Curators (and, read-only, model teams) see everything. Vendor users see only
their own vendor's vendor record, people, batches, tasks, annotations, reviews and
the specs/images those batches use; annotators see only their own annotations;
only curators and vendor managers see prices. A foreign object is simply not in
the queryset, so it answers 404.
"""
from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db.models import Prefetch, Q, QuerySet

from common.fields import is_row_id
from common.roles import ANNOTATOR, REVIEWER, VENDOR_MANAGER, can_read_all_data, has_role, is_curator

from .models import (
    Annotation,
    AnnotationVersion,
    Batch,
    BatchEvent,
    Prediction,
    Region,
    Review,
    Task,
    Vendor,
    VendorMembership,
)


def member_vendor(user: User) -> Vendor | None:
    """The vendor `user` is a member of, whether or not it is active (cached on the user)."""
    if not getattr(user, "is_authenticated", False):
        return None
    cached = getattr(user, "_mathset_vendor", False)
    if cached is False:
        membership = VendorMembership.objects.select_related("vendor").filter(user=user).first()
        cached = membership.vendor if membership else None
        user._mathset_vendor = cached
    return cached


def vendor_of(user: User) -> Vendor | None:
    """The vendor `user` works for, or None (curators, model teams, and the people of a
    vendor that was switched off: every read scoped by it then shows them nothing, as
    `common.roles` no longer gives them their vendor roles and token auth refuses them)."""
    vendor = member_vendor(user)
    return vendor if vendor is not None and vendor.active else None


def vendor_curation_filters(user: User) -> tuple[Q, Q] | None:
    """Filters on specs and images for what a vendor user may see: the specs of
    their vendor's batches and the images of their vendor's tasks."""
    vendor = vendor_of(user)
    if vendor is None:
        return None
    return Q(batches__vendor=vendor), Q(tasks__batch__vendor=vendor)


def can_see_prices(user: User) -> bool:
    """Unit prices are for curators and the vendor's managers."""
    return is_curator(user) or has_role(user, VENDOR_MANAGER)


def vendors_visible_to(user: User) -> QuerySet[Vendor]:
    """All vendors for curators and model teams; only their own for vendor users."""
    if can_read_all_data(user) or is_curator(user):
        return Vendor.objects.all()
    vendor = vendor_of(user)
    if vendor is None:
        return Vendor.objects.none()
    return Vendor.objects.filter(pk=vendor.pk)


def members_visible_to(user: User, vendor: Vendor) -> QuerySet[User]:
    """People of `vendor`, with roles, by username: for curators and the vendor's own people.

    Model teams may list vendors, but not their people (names, e-mail addresses), as
    `common.selectors.users_visible_to` shows them nobody but themselves."""
    qs = (User.objects.filter(vendor_membership__vendor=vendor).prefetch_related("groups")
          .select_related("vendor_membership").order_by("username"))
    if is_curator(user):
        return qs
    own = vendor_of(user)
    if own is None or own.pk != vendor.pk:
        return qs.none()
    return qs


def can_add_members(user: User, vendor: Vendor) -> bool:
    """Curators add people to any vendor; a vendor manager only to the vendor they work for
    (whatever other role they also hold)."""
    if is_curator(user):
        return True
    own = vendor_of(user)
    return has_role(user, VENDOR_MANAGER) and own is not None and own.pk == vendor.pk


def batches_visible_to(user: User) -> QuerySet[Batch]:
    """Batches: all for curators; their vendor's for vendor users; none otherwise."""
    qs = Batch.objects.select_related("spec", "vendor")
    if is_curator(user):
        return qs
    vendor = vendor_of(user)
    if vendor is None:
        return qs.none()
    return qs.filter(vendor=vendor)


def batch_history(batch: Batch, user: User) -> QuerySet[BatchEvent]:
    """The recorded changes of `batch`, oldest first, with who made them; none when `user` may
    not see the batch (`batches_visible_to`, read in the same query). People who see no prices
    are not shown a change that touched only prices (who changed a price, and when, says much
    of the price); the serializer leaves the prices out of the other changes for them."""
    visible = batches_visible_to(user).filter(pk=batch.pk).values("pk")
    qs = BatchEvent.objects.filter(batch__in=visible).select_related("by").order_by("at", "id")
    if can_see_prices(user):
        return qs
    unpriced = [f for f in Batch.EDITABLE if f not in Batch.PRICE_FIELDS]
    return qs.filter(Q(kind=BatchEvent.Kind.CREATED) | Q(changes__has_any_keys=unpriced))


def tasks_visible_to(user: User) -> QuerySet[Task]:
    """Tasks: all for curators; those of their vendor's batches for vendor users."""
    qs = Task.objects.select_related("batch__spec", "image")
    if is_curator(user):
        return qs
    vendor = vendor_of(user)
    if vendor is None:
        return qs.none()
    return qs.filter(batch__vendor=vendor)


def task_visible_to(user: User, pk: object) -> Task | None:
    """The task `pk` with its batch and image if `user` may see it (as in
    `tasks_visible_to`), else None. Every submit asks this, so vendor users get one
    statement written once (common.rawsql) instead of a compiled queryset."""
    from common import rawsql
    from curation.models import Image

    if not is_row_id(pk):  # raw SQL has no ORM guard: an id beyond 64 bits would be a database error
        return None
    if is_curator(user):
        return tasks_visible_to(user).filter(pk=pk).first()
    vendor = vendor_of(user)
    if vendor is None:
        return None
    def build() -> str:
        qn, t = rawsql.qn, rawsql.table
        return (f"SELECT {rawsql.columns(Task, 't')}, {rawsql.columns(Batch, 'b')}, {rawsql.columns(Image, 'i')} "
                f"FROM {t(Task)} t INNER JOIN {t(Batch)} b ON b.{qn('id')} = t.{qn('batch_id')} "
                f"INNER JOIN {t(Image)} i ON i.{qn('id')} = t.{qn('image_id')} "
                f"WHERE t.{qn('id')} = %s AND b.{qn('vendor_id')} = %s")

    rows = rawsql.fetch(rawsql.statement("task_visible_to", build), [pk, vendor.pk])
    return task_from_row(rows[0]) if rows else None


def task_from_row(row: Sequence) -> Task:
    """A Task with its batch and image from one raw row selecting task, batch, image columns in that order."""
    from common import rawsql
    from curation.models import Image

    task = rawsql.build(Task, row)
    task.batch = rawsql.build(Batch, row, rawsql.width(Task))
    task.image = rawsql.build(Image, row, rawsql.width(Task) + rawsql.width(Batch))
    return task


def image_predictions(image) -> list[Prediction]:
    """The pre-labels of an image (already visible to the caller), newest first."""
    from common import rawsql

    def build() -> str:
        qn = rawsql.qn
        return (f"SELECT {rawsql.columns(Prediction, 'p')} FROM {rawsql.table(Prediction)} p "
                f"WHERE p.{qn('image_id')} = %s ORDER BY p.{qn('id')} DESC")

    return [rawsql.build(Prediction, row) for row in rawsql.fetch(rawsql.statement("image_predictions", build),
                                                                  [image.pk])]


def _with_content(qs: QuerySet[Annotation]) -> QuerySet[Annotation]:
    return qs.select_related("task__batch", "annotator", "current").prefetch_related(
        Prefetch("current__regions", queryset=Region.objects.order_by("index")),
        Prefetch("reviews", queryset=Review.objects.select_related("reviewer").order_by("-created_at", "-id")),
    )


def annotations_visible_to(user: User) -> QuerySet[Annotation]:
    """Annotations: all for curators and model teams; their vendor's for vendor
    managers and reviewers; their own for annotators."""
    qs = _with_content(Annotation.objects.all())
    if can_read_all_data(user):
        return qs
    vendor = vendor_of(user)
    if vendor is None:
        return qs.none()
    if has_role(user, VENDOR_MANAGER, REVIEWER):
        return qs.filter(task__batch__vendor=vendor)
    if has_role(user, ANNOTATOR):
        return qs.filter(annotator=user, task__batch__vendor=vendor)
    return qs.none()


def annotations_reviewable_by(user: User, *, include_closed: bool = False) -> QuerySet[Annotation]:
    """Submitted annotations `user` may review, oldest first: their vendor's for
    reviewers (never their own), all for curators.

    Never a closed batch's: `review_create` refuses those, and the review page opens the
    oldest of this queue (again after every decision), so one such leftover at its head
    would hold every reviewer on an annotation nobody can decide. A paused batch's are
    still reviewed. Never a taken-down image's either (`curation.services.image_takedown`):
    its files are erased, so the review screen could only show a 410; the annotation stays
    submitted, as a record of the work handed in. `include_closed` keeps both, for a decision
    sent on one to be refused by the service with the reason ("The batch … is closed", "The
    image was taken down …") rather than "not found"."""
    qs = Annotation.objects.filter(status=Annotation.Status.SUBMITTED)
    if not include_closed:
        qs = qs.exclude(task__batch__status=Batch.Status.CLOSED).filter(task__image__taken_down_at__isnull=True)
    qs = _with_content(qs).order_by("submitted_at", "id")
    if is_curator(user):
        return qs
    vendor = vendor_of(user)
    if vendor is None or not has_role(user, REVIEWER):
        return qs.none()
    return qs.filter(task__batch__vendor=vendor).exclude(annotator=user)


def annotation_history(annotation: Annotation) -> QuerySet[AnnotationVersion]:
    """All versions of an annotation (already visible to the caller), oldest first."""
    return (AnnotationVersion.objects.filter(annotation=annotation).select_related("author")
            .prefetch_related(Prefetch("regions", queryset=Region.objects.order_by("index"))).order_by("number"))


def reviews_visible_to(user: User) -> QuerySet[Review]:
    """Reviews: all for curators; their vendor's for managers and reviewers; those of
    their own annotations for annotators."""
    qs = Review.objects.select_related("reviewer", "annotation", "version")
    if is_curator(user):
        return qs
    vendor = vendor_of(user)
    if vendor is None:
        return qs.none()
    if has_role(user, VENDOR_MANAGER, REVIEWER):
        return qs.filter(annotation__task__batch__vendor=vendor)
    return qs.filter(annotation__annotator=user, annotation__task__batch__vendor=vendor)


def predictions_visible_to(user: User) -> QuerySet[Prediction]:
    """Predictions: all for curators and model teams; those of their tasks' images for vendor users."""
    qs = Prediction.objects.all()
    if can_read_all_data(user):
        return qs
    vendor = vendor_of(user)
    if vendor is None:
        return qs.none()
    return qs.filter(image__tasks__batch__vendor=vendor).distinct()


def batches_with_progress(user: User) -> QuerySet[Batch]:
    """The batches `user` may see with their task counts by status, in one query."""
    from django.db.models import Count

    def count(status: str | None = None):
        return Count("tasks", filter=Q(tasks__status=status)) if status else Count("tasks")

    return batches_visible_to(user).annotate(
        n_tasks=count(), n_submitted=count(Task.Status.SUBMITTED), n_accepted=count(Task.Status.ACCEPTED),
        n_rejected=count(Task.Status.REJECTED), n_in_progress=count(Task.Status.IN_PROGRESS),
    ).order_by("vendor__name", "-status", "deadline", "id")


def batches_held_back(annotator: User) -> list[tuple[str, str]]:
    """Why `annotator` may not take tasks from some of their vendor's active batches now, as
    (reason, link) per batch: a work guide version to acknowledge first (`labeling.gating`,
    what `tasks/next/` reports as "blocked"). Empty for anyone who takes no tasks. One query."""
    vendor = vendor_of(annotator)
    if vendor is None or not has_role(annotator, ANNOTATOR):
        return []
    from .gating import open_batches

    _, held = open_batches(annotator=annotator, vendor=vendor, as_holds=True)
    return list(held.values())
