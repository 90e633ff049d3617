"""Reads for curation, always starting from the user.

Curators and model teams read everything. Vendor users read only the specs and
images their vendor has work on (see labeling.selectors.vendor_image_filter), so
vendor isolation holds for every endpoint built on these.
"""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Count, Q, QuerySet

from common.roles import can_read_all_data, is_curator

from .imaging import hamming
from .models import Category, DatasetSpec, Image, ImportJob, Licence, Source
from .splits import DEFAULT_MAX_DISTANCE


def _vendor_filters(user: User) -> tuple[Q, Q] | None:
    """(spec filter, image filter) for a vendor user, or None when they have no vendor."""
    from labeling import selectors as labeling_selectors

    return labeling_selectors.vendor_curation_filters(user)


def licences_visible_to(user: User) -> QuerySet[Licence]:
    """The licence catalogue is public to every signed-in user."""
    return Licence.objects.all()


def sources_visible_to(user: User) -> QuerySet[Source]:
    """Sources: curators and model teams only (vendors never see provenance or contracts)."""
    if can_read_all_data(user):
        return Source.objects.select_related("licence")
    return Source.objects.none()


def specs_visible_to(user: User) -> QuerySet[DatasetSpec]:
    """Specs: all for curators and model teams; those with their vendor's work for vendor users."""
    qs = DatasetSpec.objects.all()
    if can_read_all_data(user):
        return qs
    filters = _vendor_filters(user)
    if filters is None:
        return qs.none()
    return qs.filter(filters[0]).distinct()


# Task statuses that count an image as labeled (an answer was handed in) or accepted.
LABELED_STATUSES = ("submitted", "accepted")


def with_quota_progress(categories: QuerySet[Category], vendor=None) -> QuerySet[Category]:
    """Annotate quota progress, counted in SQL: images collected, labeled (a task
    submitted or accepted) and accepted. With `vendor`, only over that vendor's tasks
    and their images (as `curation.progress` counts a vendor's slice): a spec shared by
    several vendors must not tell one vendor how far the others got."""
    if vendor is None:
        return categories.annotate(
            collected=Count("images", distinct=True),
            labeled=Count("images", filter=Q(images__tasks__status__in=LABELED_STATUSES), distinct=True),
            accepted=Count("images", filter=Q(images__tasks__status="accepted"), distinct=True),
        )
    own = Q(images__tasks__batch__vendor=vendor)
    return categories.annotate(
        collected=Count("images", filter=own, distinct=True),
        labeled=Count("images", filter=own & Q(images__tasks__status__in=LABELED_STATUSES), distinct=True),
        accepted=Count("images", filter=own & Q(images__tasks__status="accepted"), distinct=True),
    )


def quota_progress_for(user: User, categories: QuerySet[Category]) -> QuerySet[Category]:
    """`categories` with the quota progress `user` may read: every vendor's work for
    curators and model teams, their own vendor's only for vendor users."""
    if can_read_all_data(user):
        return with_quota_progress(categories)
    from labeling.selectors import vendor_of

    vendor = vendor_of(user)
    if vendor is None:
        return with_quota_progress(categories.none())
    return with_quota_progress(categories, vendor=vendor)


def categories_visible_to(user: User) -> QuerySet[Category]:
    """Categories of the specs `user` may see, with the quota progress they may read."""
    specs = specs_visible_to(user)
    return quota_progress_for(user, Category.objects.filter(spec__in=specs.values("id")).select_related("spec"))


def images_visible_to(user: User) -> QuerySet[Image]:
    """Images: all for curators and model teams; those in their vendor's tasks for vendor users."""
    qs = Image.objects.select_related("source__licence", "spec").prefetch_related("categories")
    if can_read_all_data(user):
        return qs
    filters = _vendor_filters(user)
    if filters is None:
        return qs.none()
    return qs.filter(filters[1]).distinct()


def import_jobs_visible_to(user: User) -> QuerySet[ImportJob]:
    """Import jobs belong to curators."""
    if is_curator(user):
        return ImportJob.objects.select_related("spec", "source")
    return ImportJob.objects.none()


def images_near_duplicates(*, user: User, image: Image, max_distance: int = DEFAULT_MAX_DISTANCE,
                           limit: int = 50) -> list[tuple[Image, int]]:
    """Images of the same spec whose perceptual hash is within `max_distance` bits (by default
    the threshold snapshot splits group near-duplicates by, so what is listed stays in one split)."""
    candidates = images_visible_to(user).filter(spec_id=image.spec_id).exclude(id=image.id).values_list("id", "phash")
    close = sorted(
        ((pk, d) for pk, ph in candidates.iterator(chunk_size=5000) if (d := hamming(image.phash, ph)) <= max_distance),
        key=lambda t: (t[1], t[0]),
    )[:limit]
    by_id = images_visible_to(user).in_bulk([pk for pk, _ in close])
    return [(by_id[pk], d) for pk, d in close if pk in by_id]


def snapshots_visible_to(user: User) -> QuerySet:
    """Snapshots: curators and model teams read them all; vendor users none (they hold
    every vendor's accepted work and the sources' provenance)."""
    from .models import Snapshot

    if can_read_all_data(user):
        return Snapshot.objects.select_related("spec", "created_by")
    return Snapshot.objects.none()


def exports_visible_to(user: User) -> QuerySet:
    """Exports of the snapshots `user` may see."""
    from .models import Export

    if can_read_all_data(user):
        return Export.objects.select_related("snapshot__spec", "created_by")
    return Export.objects.none()


def snapshot_items_left_out(user: User, snapshot) -> QuerySet:
    """Items of `snapshot` that its exports leave out for a commercial use: their licence, as
    frozen in the item or as the image's source has it now, forbids commercial use (the
    exporters apply the stricter of the two). The use is the stricter of the one frozen with
    the snapshot and the spec's now (`snapshots.snapshot_intended_use`): a snapshot frozen for
    a commercial spec since made research still leaves them out. Empty for research use."""
    from .models import SnapshotItem
    from .snapshots import snapshot_intended_use

    if not can_read_all_data(user) or snapshot_intended_use(snapshot) != DatasetSpec.IntendedUse.COMMERCIAL:
        return SnapshotItem.objects.none()
    return SnapshotItem.objects.filter(
        Q(licence__allows_commercial=False) | Q(image__source__licence__allows_commercial=False),
        snapshot=snapshot).order_by("image_id")
