"""Reads for curation, always starting from the user.

Curators and model teams read everything. Vendor users read only the specs and
images their vendor has work on (see labeling.selectors.vendor_image_filter), so
vendor isolation holds for every endpoint built on these.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import NotSupportedError, connection
from django.db.models import Count, F, Func, IntegerField, Q, QuerySet, Value

from common.roles import can_read_all_data, is_curator

from .imaging import hamming
from .models import Category, DatasetSpec, Image, ImportJob, Licence, Source, Takedown
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


def quota_progress_live(categories: QuerySet[Category], vendor=None) -> QuerySet[Category]:
    """Annotate quota progress computed now, in SQL: images collected, labeled (a task submitted
    or accepted) and accepted, taken-down images left out. With `vendor`, only over that vendor's
    tasks and their images (as `curation.progress` counts a vendor's slice): a spec shared by
    several vendors must not tell one vendor how far the others got.

    Only for specs without a stored report (:func:`with_quota_progress`). One grouped pass over
    the categories' images and their tasks: correlated subqueries per count (EXISTS on the tasks
    per image-category row) were measured 3x slower at 100,000 images (470 ms against 145 ms).
    """
    live = Q(images__taken_down_at__isnull=True)
    if vendor is not None:
        live &= Q(images__tasks__batch__vendor=vendor)
    return categories.annotate(
        collected=Count("images", filter=live, distinct=True),
        labeled=Count("images", filter=live & Q(images__tasks__status__in=LABELED_STATUSES), distinct=True),
        accepted=Count("images", filter=live & Q(images__tasks__status="accepted"), distinct=True),
    )


PROGRESS_FIELDS = ("collected", "labeled", "accepted")


def with_quota_progress(user: User, categories: Iterable[Category]) -> list[Category]:
    """`categories` (of specs `user` may see) with the quota progress `user` may read set on each
    (``collected``, ``labeled``, ``accepted``, and ``progress_as_of``: when it was computed).

    Read from each spec's stored :class:`~curation.models.ProgressReport` (refreshed by Celery a
    minute after any change; one query for all the specs), every vendor's work for curators and
    model teams, their vendor's slice of it for vendor users; computed on the spot
    (:func:`quota_progress_live`, ``progress_as_of`` None) only for the specs without a report
    yet, in one query. Categories that already carry their progress are left as they are.
    """
    from labeling.selectors import vendor_of

    from .models import ProgressReport

    cats = list(categories)
    todo = [c for c in cats if not hasattr(c, "progress_as_of")]
    if not todo:
        return cats
    reader = can_read_all_data(user)
    vendor = None if reader else vendor_of(user)
    reports = {spec_id: (computed_at, by_category, by_vendor) for spec_id, computed_at, by_category, by_vendor in
               ProgressReport.objects.filter(spec_id__in={c.spec_id for c in todo})
               .values_list("spec_id", "computed_at", "payload__by_category", "payload__by_vendor")}
    live = [c.pk for c in todo if c.spec_id not in reports]
    counts: dict[int, tuple] = {}
    if live and (reader or vendor is not None):
        counts = {pk: rest for pk, *rest in quota_progress_live(Category.objects.filter(pk__in=live), vendor=vendor)
                  .values_list("pk", *PROGRESS_FIELDS)}
    for c in todo:
        if c.spec_id in reports:
            computed_at, by_category, by_vendor = reports[c.spec_id]
            if not reader:  # their vendor's slice (as curation.progress.vendor_slice gives it)
                mine = [v for v in by_vendor or [] if vendor is not None and v.get("vendor") == vendor.pk]
                by_category = mine[0].get("by_category", []) if mine else []
            row = next((r for r in by_category or [] if r.get("category") == c.slug), {})
            values = tuple(int(row.get(f, 0) or 0) for f in PROGRESS_FIELDS)
            c.progress_as_of = computed_at
        else:
            values = counts.get(c.pk, (0, 0, 0))
            c.progress_as_of = None
        c.collected, c.labeled, c.accepted = values
    return cats


def categories_visible_to(user: User) -> QuerySet[Category]:
    """Categories of the specs `user` may see (their quota progress: :func:`with_quota_progress`)."""
    specs = specs_visible_to(user)
    return Category.objects.filter(spec__in=specs.values("id")).select_related("spec")


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


class PhashDistance(Func):
    """Bits that differ between two 64-bit perceptual hashes stored as hex (``Image.phash``), in
    SQL on PostgreSQL: each read as ``bit(64)`` (``'x' || hex``, left-padded as ``int(h, 16)``
    reads a short one), XORed, its set bits counted (``bit_count``, PostgreSQL 14+; the
    ``'1'``s of its text before that). What :func:`curation.imaging.hamming` gives in Python."""

    arity = 2
    output_field = IntegerField()

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError("PhashDistance is computed in SQL on PostgreSQL only")

    def as_postgresql(self, compiler, connection, **extra_context):
        (a, a_params), (b, b_params) = (compiler.compile(e) for e in self.get_source_expressions())
        xor = f"(('x' || lpad({a}, 16, '0'))::bit(64) # ('x' || lpad({b}, 16, '0'))::bit(64))"
        if connection.pg_version >= 140000:
            return f"bit_count({xor})::integer", [*a_params, *b_params]
        return f"length(replace({xor}::text, '0', ''))", [*a_params, *b_params]


def images_near_duplicates(*, user: User, image: Image, max_distance: int = DEFAULT_MAX_DISTANCE,
                           limit: int = 50) -> list[tuple[Image, int]]:
    """Images of the same spec whose perceptual hash is within `max_distance` bits (by default
    the threshold snapshot splits group near-duplicates by, so what is listed stays in one split),
    closest first (then by id), at most `limit`; taken-down images are gone and not listed.

    On PostgreSQL the distance is computed, filtered, ordered and limited in SQL (one query, no
    hash of the spec read into Python); elsewhere (SQLite in tests) the same in Python.
    """
    candidates = (images_visible_to(user).filter(spec_id=image.spec_id, taken_down_at__isnull=True)
                  .exclude(id=image.id))
    if connection.vendor == "postgresql":
        close = (candidates.annotate(phash_distance=PhashDistance(F("phash"), Value(image.phash)))
                 .filter(phash_distance__lte=max_distance).order_by("phash_distance", "id")[:limit])
        return [(im, im.phash_distance) for im in close]
    scan = candidates.values_list("id", "phash")
    near = sorted(
        ((pk, d) for pk, ph in scan.iterator(chunk_size=5000) if (d := hamming(image.phash, ph)) <= max_distance),
        key=lambda t: (t[1], t[0]),
    )[:limit]
    by_id = images_visible_to(user).in_bulk([pk for pk, _ in near])
    return [(by_id[pk], d) for pk, d in near if pk in by_id]


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


def takedowns_visible_to(user: User) -> QuerySet[Takedown]:
    """Takedowns `user` may read: all for curators (they record them), none for anyone else
    (a request's reason and requester may be personal data)."""
    qs = Takedown.objects.select_related("actor")
    if is_curator(user):
        return qs
    return qs.none()
