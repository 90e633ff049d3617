"""Snapshots and exports: freeze a spec's accepted work, then write it out in a format.

A snapshot copies, per image with an accepted annotation, the accepted version's regions
and the image's licence and source at that moment, and the split the image was assigned
(:func:`curation.splits.assign_splits`: near-duplicates and capture sessions stay in one
split; an image in the spec's previous ready snapshot keeps its split there). Nothing in a snapshot refers back to live, editable rows for its content, so the
snapshot never changes and an export of it is the same bytes every time it is built.

Both are built by Celery workers: :func:`snapshot_create` and :func:`export_create` record
the request and enqueue a task after commit; :func:`snapshot_build` and :func:`export_run`
claim it (a conditional UPDATE, so a duplicate message does nothing) and record the result
only while their attempt is still current. :func:`builds_sweep` (Celery beat) queues again,
once, what a dead worker left running, and fails it the second time, removing its files.
"""
from __future__ import annotations

import glob
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from common.errors import KEPT, public_error
from common.fields import MAX_INT
from common.storage import guarded_files
from pipeline.refresh import spec_stats_refresh_soon
from pipeline.webhooks import (
    webhook_event_export_failed,
    webhook_event_export_ready,
    webhook_event_snapshot_failed,
    webhook_event_snapshot_ready,
)

from .exporters import FORMATS, CategoryInfo, ExportImage, ExportRegion, LicenceInfo, SourceInfo, export
from .models import Category, DatasetSpec, Export, Image, Licence, Snapshot, SnapshotItem
from .splits import ContentHasher, SplitItem, assign_splits

DEFAULT_RATIOS = (0.8, 0.1, 0.1)
SPLIT_NAMES = ("train", "validation", "test")
_ITEM_BATCH = 2000


def _ratios(ratios: object) -> dict[str, float]:
    """Accept (train, validation, test) or a mapping of those names; refuse anything else."""
    if isinstance(ratios, Mapping):
        unknown = sorted(set(ratios) - set(SPLIT_NAMES))
        if unknown:
            raise ValidationError({"ratios": f"Unknown split names {unknown}; use {list(SPLIT_NAMES)}."})
        values = [ratios.get(name, 0) for name in SPLIT_NAMES]
    else:
        values = list(ratios) if isinstance(ratios, list | tuple) else []
        if len(values) != 3:
            raise ValidationError({"ratios": "Give three weights: train, validation, test."})
    try:
        weights = [float(v) for v in values]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
        raise ValidationError({"ratios": "Weights must be numbers."}) from None
    total = sum(weights)
    if any(w < 0 or w != w for w in weights) or total <= 0:
        raise ValidationError({"ratios": "Weights must be non-negative with a positive sum."})
    if not math.isfinite(total):  # e.g. 1e308 three times: every share would come out 0
        raise ValidationError({"ratios": "Weights must be finite numbers with a finite sum."})
    return {name: w / total for name, w in zip(SPLIT_NAMES, weights, strict=True)}


def _accepted_annotations(spec: DatasetSpec) -> dict[int, object]:
    """Per image of `spec`: its accepted annotation (the latest accepted, when a task had overlap)."""
    from labeling.models import Annotation

    chosen: dict[int, object] = {}
    qs = (Annotation.objects.filter(task__image__spec=spec, status=Annotation.Status.ACCEPTED,
                                    current__isnull=False, task__image__taken_down_at__isnull=True)
          .select_related("current", "task").order_by("task__image_id", "id"))
    for annotation in qs.iterator(chunk_size=_ITEM_BATCH):
        chosen[annotation.task.image_id] = annotation  # ordered by id: the last accepted wins
    return chosen


def _frozen_regions(version_ids: list[int]) -> dict[int, list[dict]]:
    """Copies of the regions of the given annotation versions, as plain JSON."""
    from labeling.models import Region

    out: dict[int, list[dict]] = {v: [] for v in version_ids}
    # In chunks: one IN list per chunk stays under SQLite's parameter limit for any snapshot size.
    for chunk in _chunks(sorted(version_ids)):
        for r in Region.objects.filter(version_id__in=chunk).order_by("version_id", "index"):
            flags = [name for name, on in (("illegible", r.illegible), ("partial", r.cut_off)) if on]
            out[r.version_id].append({"kind": r.kind, "points": r.points, "mask_rle": r.mask_rle,
                                      "latex": r.latex, "categories": sorted(r.categories or []), "flags": flags})
    return out


def _chunks(values: list) -> Iterator[list]:
    for start in range(0, len(values), _ITEM_BATCH):
        yield values[start:start + _ITEM_BATCH]


def _item_row(item: SnapshotItem) -> dict:
    """The canonical form of an item that the content hash covers."""
    return {"image": item.image_id, "sha256": item.sha256, "file": item.file, "width": item.width,
            "height": item.height, "annotation": item.annotation_id, "version": item.annotation_version,
            "split": item.split, "capture_session": item.capture_session, "categories": item.categories,
            "regions": item.regions, "licence": item.licence, "source": item.source}


def snapshot_items_hash(items) -> str:
    """SHA-256 over the canonical rows of `items`, in image order (see :mod:`curation.splits`)."""
    hasher = ContentHasher()
    for item in items:
        hasher.update(_item_row(item))
    return hasher.hexdigest()


def _has_accepted(spec: DatasetSpec) -> bool:
    from labeling.models import Annotation

    return Annotation.objects.filter(task__image__spec=spec, status=Annotation.Status.ACCEPTED,
                                     current__isnull=False, task__image__taken_down_at__isnull=True).exists()


def snapshot_create(*, spec: DatasetSpec, name: str, created_by: User | None,
                    ratios: object = DEFAULT_RATIOS, seed: int = 0) -> Snapshot:
    """Record a request to freeze `spec`'s accepted work and queue its build on a worker.

    The snapshot starts ``queued``; :func:`snapshot_build` (run by the Celery task
    ``curation.tasks.build_snapshot`` once this transaction commits) freezes it. Everything a
    build could refuse up front (name, ratios, seed, nothing accepted yet) is refused here,
    so bad input is a 400 and nothing is stored.
    """
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Name the snapshot."})
    weights = _ratios(ratios)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValidationError({"seed": "The seed must be an integer."})
    if not -MAX_INT - 1 <= seed <= MAX_INT:  # the column's range on PostgreSQL (an integer)
        raise ValidationError({"seed": f"The seed must be between {-MAX_INT - 1} and {MAX_INT}."})
    with transaction.atomic():
        if Snapshot.objects.filter(spec=spec, name=name).exists():
            raise ValidationError({"name": f"This spec already has a snapshot named {name!r}."})
        if not _has_accepted(spec):
            raise ValidationError({"spec": "This spec has no accepted annotations yet; nothing to snapshot."})
        try:
            with transaction.atomic():  # a savepoint: a concurrent request may take the name first
                snapshot = Snapshot.objects.create(spec=spec, name=name, created_by=created_by, ratios=weights,
                                                   seed=seed, content_hash="", status=Snapshot.Status.QUEUED)
        except IntegrityError:
            raise ValidationError({"name": f"This spec already has a snapshot named {name!r}."}) from None
        from .tasks import build_snapshot

        transaction.on_commit(lambda: build_snapshot.delay(snapshot.id))
    return snapshot


class _Superseded(Exception):
    """A build or export attempt that the sweep has meanwhile taken away (re-queued or failed)."""


def snapshot_summaries(items) -> tuple[dict, dict, int]:
    """(images per category and split, images per licence with its flags, commercial-usable images)."""
    categories: dict[str, dict[str, int]] = {}
    licences: dict[str, dict] = {}
    commercial = 0
    for item in items:
        for slug in item.categories:
            per_split = categories.setdefault(slug, dict.fromkeys(SPLIT_NAMES, 0))
            per_split[item.split] = per_split.get(item.split, 0) + 1
        lic = item.licence
        entry = licences.setdefault(lic["code"], {"name": lic["name"], "allows_commercial": lic["allows_commercial"],
                                                  "allows_derivatives": lic["allows_derivatives"], "images": 0})
        entry["images"] += 1
        commercial += bool(lic["allows_commercial"])
    return categories, dict(sorted(licences.items())), commercial


def _previous_splits(snapshot: Snapshot) -> dict[int, str]:
    """Image -> split in the spec's latest ready snapshot requested before `snapshot`.

    The new snapshot keeps those splits (:func:`curation.splits.assign_splits`' ``previous``),
    so an image an earlier snapshot held out for testing never turns up in a later one's
    training data, and results on the two test splits stay comparable.
    """
    earlier = (Snapshot.objects.filter(spec_id=snapshot.spec_id, status=Snapshot.Status.READY, id__lt=snapshot.id)
               .order_by("-id").first())
    if earlier is None:
        return {}
    return dict(SnapshotItem.objects.filter(snapshot=earlier).values_list("image_id", "split"))


def _freeze(snapshot: Snapshot) -> list[SnapshotItem]:
    """Create the items of `snapshot` from the spec's accepted work as it is now."""
    spec = snapshot.spec
    annotations = _accepted_annotations(spec)
    if not annotations:
        raise ValidationError({"spec": "This spec has no accepted annotations yet; nothing to snapshot."})
    # The images' rows are locked (in id order, as takedowns lock them) until the items commit, and
    # those taken down meanwhile left out: a takedown committing between the read above and this
    # build's commit would not see the items yet, and the snapshot would freeze the image unmarked
    # (exports of it would then read an erased file). A takedown that comes later waits, and then
    # marks the items like those of any other snapshot. FOR NO KEY UPDATE: rows that refer to an
    # image (a batch's new task, a pre-label) only take KEY SHARE on it and go on meanwhile.
    images = [im for chunk in _chunks(sorted(annotations))
              for im in Image.objects.filter(id__in=chunk, taken_down_at__isnull=True)
              .select_for_update(of=("self",), no_key=True).select_related("source__licence")
              .prefetch_related("categories").order_by("id")]
    if not images:
        raise ValidationError({"spec": "This spec has no accepted annotations yet; nothing to snapshot."})
    result = assign_splits(
        [SplitItem(id=im.id, phash=im.phash or None, session=im.capture_session,
                   categories=tuple(sorted(c.slug for c in im.categories.all()))) for im in images],
        ratios=snapshot.ratios, seed=snapshot.seed, previous=_previous_splits(snapshot))
    regions = _frozen_regions([a.current_id for a in annotations.values()])
    # A retried build starts clean (a dead attempt's transaction never committed items, but be sure).
    SnapshotItem.objects.filter(snapshot=snapshot).delete()
    items = []
    for im in images:
        annotation = annotations[im.id]
        lic, src = im.source.licence, im.source
        items.append(SnapshotItem(
            snapshot=snapshot, image=im, annotation=annotation, annotation_version=annotation.current.number,
            split=result.assignment[im.id], file=im.file, sha256=im.sha256, width=im.width, height=im.height,
            capture_session=im.capture_session, categories=sorted(c.slug for c in im.categories.all()),
            regions=regions[annotation.current_id],
            licence={"code": lic.code, "name": lic.name, "url": lic.url, "allows_commercial": lic.allows_commercial,
                     "allows_derivatives": lic.allows_derivatives, "share_alike": lic.share_alike,
                     "requires_attribution": lic.requires_attribution},
            source={"name": src.name, "copyright_holder": src.copyright_holder, "attribution": src.attribution,
                    "url": src.url}))
    SnapshotItem.objects.bulk_create(items, batch_size=_ITEM_BATCH)
    snapshot.split_counts, snapshot.near_duplicate_pairs = result.counts, result.near_duplicate_pairs
    return items


def snapshot_build(*, snapshot: Snapshot) -> Snapshot:
    """Freeze a queued snapshot: every image of its spec whose task has an accepted annotation,
    with the accepted version's regions, the image's provenance and a leak-free split.

    Idempotent: a snapshot no longer queued is left alone. The items and the ``ready`` status
    are written in one transaction, and only while this attempt is still the current one, so
    a build the sweep gave up on can never overwrite its successor's result.
    """
    claimed = Snapshot.objects.filter(id=snapshot.id, status=Snapshot.Status.QUEUED).update(
        status=Snapshot.Status.BUILDING, started_at=timezone.now(), attempts=F("attempts") + 1, error="")
    snapshot.refresh_from_db()
    if not claimed:
        return snapshot
    attempt = snapshot.attempts
    current = Snapshot.objects.filter(id=snapshot.id, status=Snapshot.Status.BUILDING, attempts=attempt)
    try:
        with transaction.atomic():
            items = _freeze(snapshot)
            categories, licences, commercial = snapshot_summaries(items)
            spec = snapshot.spec
            frozen_categories = [{"slug": c.slug, "name": c.name}
                                 for c in Category.objects.filter(spec=spec).order_by("position", "id")]
            if not current.update(status=Snapshot.Status.READY, content_hash=snapshot_items_hash(items),
                                  categories=frozen_categories, intended_use=spec.intended_use,
                                  item_count=len(items), split_counts=snapshot.split_counts,
                                  near_duplicate_pairs=snapshot.near_duplicate_pairs, category_counts=categories,
                                  licence_counts=licences, commercial_items=commercial, finished_at=timezone.now()):
                raise _Superseded
            spec_stats_refresh_soon(spec_id=snapshot.spec_id)  # the split breakdown of the quota progress
            webhook_event_snapshot_ready(snapshot_id=snapshot.id)  # sent once this commits
    except _Superseded:
        pass
    except Exception as exc:
        # A refusal (the services', the split assignment's) or an I/O failure keeps its message; any
        # other error records a generic one, and the worker log the details (common.errors).
        message = public_error(exc, what="build", expected=KEPT, named=True, subject=f"snapshot {snapshot.id}")
        with transaction.atomic():  # the event is recorded with the failure, and only by the current attempt
            if current.update(status=Snapshot.Status.FAILED, error=message[:2000], finished_at=timezone.now()):
                webhook_event_snapshot_failed(snapshot_id=snapshot.id)  # sent once this commits
    snapshot.refresh_from_db()
    return snapshot


@dataclass(frozen=True)
class RebuildCheck:
    """The outcome of re-hashing a snapshot's frozen items."""

    content_hash: str
    recomputed_hash: str
    items: int
    matches: bool
    # Takedowns since the freeze: an amendment beside the hash, not a change of the frozen rows.
    # The hash still covers every item as frozen; exports leave these items out.
    taken_down: int = 0
    amended: bool = False
    amendment: str = ""


def snapshot_rebuild_check(*, snapshot: Snapshot) -> RebuildCheck:
    """Re-compute the content hash from the frozen items and say whether it is the recorded one.

    A mismatch means an item row was changed behind the services' back (the admin and the
    API never change them), so exports built from it would no longer be what was published.

    Items taken down since the freeze (:func:`curation.services.image_takedown`) keep their
    frozen rows, so the recorded hash still matches them; the check reports the amendment
    (``amended``, ``taken_down``, ``amendment``) instead: exports built now leave those items out.
    """
    if snapshot.status != Snapshot.Status.READY:
        raise ValidationError({"status": f"Only a ready snapshot can be checked (this one is {snapshot.status})."})
    count = 0

    def counted():
        nonlocal count
        for item in SnapshotItem.objects.filter(snapshot=snapshot).order_by("image_id").iterator(
                chunk_size=_ITEM_BATCH):
            count += 1
            yield item

    recomputed = snapshot_items_hash(counted())
    taken_down = SnapshotItem.objects.filter(snapshot=snapshot, takedown__isnull=False).count()
    amendment = ""
    if taken_down:
        amendment = (f"Amended: {taken_down} of {count} item(s) were taken down after the freeze (copyright or "
                     "personal-data requests); their files are erased and exports built since leave them out. "
                     "The recorded hash still covers the items as frozen.")
    return RebuildCheck(content_hash=snapshot.content_hash, recomputed_hash=recomputed, items=count,
                        matches=recomputed == snapshot.content_hash and count == snapshot.item_count,
                        taken_down=taken_down, amended=bool(taken_down), amendment=amendment)


# ------------------------------------------------------------------ exports


def _export_region(r: dict) -> ExportRegion:
    cats = r.get("categories") or []
    return ExportRegion(points=r.get("points"), mask_rle=r.get("mask_rle"), latex=r.get("latex", ""),
                        category=cats[0] if cats else None, flags=tuple(r.get("flags") or ()),
                        categories=tuple(cats))


class ImageFileMissing(FileNotFoundError):
    """A snapshot item's image file is not in storage (removed behind the services' back)."""


def _opener(name: str, image_id: int):
    def open_bytes() -> bytes:
        try:
            with default_storage.open(name, "rb") as fh:
                return fh.read()
        except FileNotFoundError as exc:  # named as stored, never by its absolute path
            raise ImageFileMissing(f"The file of image {image_id} ({name}) is missing from storage.") from exc
    return open_bytes


def _licence_info(licence: Licence) -> LicenceInfo:
    return LicenceInfo(code=licence.code, name=licence.name, url=licence.url,
                       allows_commercial=licence.allows_commercial, allows_derivatives=licence.allows_derivatives,
                       share_alike=licence.share_alike, requires_attribution=licence.requires_attribution)


def snapshot_export_images(snapshot: Snapshot) -> Iterator[ExportImage]:
    """The snapshot's items as export records, read from the database in chunks (constant memory).

    Each record carries the frozen licence and source (what the files credit) and the licence
    the image's source has now: the exporters leave an image out when either forbids the use,
    so a licence corrected, or an image moved to another source, after the freeze can never
    let data out that its rights holder does not allow today.
    """
    qs = (SnapshotItem.objects.filter(snapshot=snapshot).select_related("image__source__licence", "takedown")
          .order_by("image_id"))
    current: dict[int, LicenceInfo] = {}
    for item in qs.iterator(chunk_size=_ITEM_BATCH):
        ext = os.path.splitext(item.file)[1].lower() or ".png"
        live = item.image.source.licence
        if live.pk not in current:
            current[live.pk] = _licence_info(live)
        takedown = item.takedown
        yield ExportImage(
            image_id=item.image_id, file_name=f"{item.image_id:08d}{ext}", width=item.width, height=item.height,
            split=item.split, licence=LicenceInfo(**item.licence), source=SourceInfo(**item.source),
            # A taken-down item's file is erased: never opened (the exporter leaves it out).
            open_bytes=None if takedown else _opener(item.file, item.image_id), categories=tuple(item.categories),
            regions=[_export_region(r) for r in item.regions], capture_session=item.capture_session,
            current_licence=current[live.pk], taken_down=takedown.kind if takedown else "",
            taken_down_on=f"{takedown.created_at:%Y-%m-%d}" if takedown else "")


def export_create(*, snapshot: Snapshot, format: str, created_by: User | None) -> Export:
    """Queue an export of `snapshot` in `format`; a worker builds it (see :func:`export_run`)."""
    if format not in FORMATS:
        raise ValidationError({"format": f"Unknown export format {format!r}; choose one of {sorted(FORMATS)}."})
    if snapshot.status != Snapshot.Status.READY:
        raise ValidationError({"snapshot": f"Snapshot {snapshot.name!r} is {snapshot.status}, not ready; "
                                           "export it once it is built."})
    with transaction.atomic():
        job = Export.objects.create(snapshot=snapshot, format=format, created_by=created_by)
        from .tasks import run_export

        transaction.on_commit(lambda: run_export.delay(job.id))
    return job


def export_build(*, snapshot: Snapshot, format: str, dest) -> object:
    """Write `snapshot` in `format` to `dest` (a path or binary file); return the ExportResult.

    Deterministic: items in image order, fixed zip timestamps, so two builds are the same bytes.
    """
    # The spec's categories as frozen (a category renamed or added since must not change the
    # bytes), and the stricter of the frozen and the current intended use.
    categories = [CategoryInfo(slug=c["slug"], name=c.get("name", "")) for c in snapshot.categories] or [
        CategoryInfo(slug=c.slug, name=c.name)
        for c in Category.objects.filter(spec_id=snapshot.spec_id).order_by("position", "id")]
    return export(snapshot_export_images(snapshot), dest, format=format,
                  intended_use=snapshot_intended_use(snapshot), categories=categories)


def snapshot_intended_use(snapshot: Snapshot) -> str:
    """The use a snapshot's items must be licensed for when they leave the platform (an
    export, an external model's evaluation): the stricter of the use frozen with it and its
    spec's now. A spec made commercial since leaves non-commercial items out; one made
    research since does not let out what the frozen commercial spec left out."""
    uses = {snapshot.intended_use, snapshot.spec.intended_use}
    return DatasetSpec.IntendedUse.COMMERCIAL if DatasetSpec.IntendedUse.COMMERCIAL in uses \
        else snapshot.spec.intended_use


def _partial_dir() -> Path:
    """Where zips are written while they are built: a known place, so the sweep can remove
    what a killed worker left (a random temporary file would be an orphan nobody finds)."""
    configured = getattr(settings, "MATHSET_EXPORT_WORK_DIR", None)
    path = Path(configured) if configured else Path(settings.MEDIA_ROOT) / "exports-partial"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _export_storage_prefix(job: Export) -> tuple[str, str]:
    return f"exports/{job.snapshot_id}", f"{job.id}-"


def export_run(*, job: Export) -> Export:
    """Build a queued export into a zip in storage and record what went in and what was
    left out (and why). Idempotent: a job no longer queued is left alone; a run whose
    attempt the sweep has taken away records nothing and keeps no file."""
    claimed = Export.objects.filter(id=job.id, status=Export.Status.QUEUED).update(
        status=Export.Status.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1, error="")
    job.refresh_from_db()
    if not claimed:
        return job
    current = Export.objects.filter(id=job.id, status=Export.Status.RUNNING, attempts=job.attempts)
    tmp = tempfile.NamedTemporaryFile(prefix=f"export-{job.id}-{job.attempts}-", suffix=".zip", dir=_partial_dir(),
                                      delete=False)
    tmp.close()
    try:
        result = export_build(snapshot=job.snapshot, format=job.format, dest=tmp.name)
        folder, prefix = _export_storage_prefix(job)
        with guarded_files() as guard, transaction.atomic():
            with open(tmp.name, "rb") as fh:
                name = guard.storage.save(f"{folder}/{prefix}{job.snapshot.content_hash[:12]}-{job.format}.zip",
                                          File(fh))
            guard.names.append(name)
            if not current.update(
                    status=Export.Status.DONE, file=name, size=guard.storage.size(name), images=result.images,
                    regions=result.regions, excluded_images=result.excluded_images, licences=result.licences,
                    excluded=result.excluded, error="", finished_at=timezone.now()):
                raise _Superseded
            webhook_event_export_ready(export_id=job.id)  # sent once this commits
    except _Superseded:
        pass
    except Exception as exc:
        # An exporter's refusal (ValueError, naming the region) or an I/O failure (a missing image file,
        # ImageFileMissing) keeps its message; any other error records a generic one (common.errors).
        message = public_error(exc, what="export", expected=KEPT, subject=f"export {job.id}")
        with transaction.atomic():  # the event is recorded with the failure, and only by the current attempt
            if current.update(status=Export.Status.FAILED, error=message[:2000], finished_at=timezone.now()):
                webhook_event_export_failed(export_id=job.id)  # sent once this commits
    finally:
        if os.path.exists(tmp.name):
            os.remove(tmp.name)
    job.refresh_from_db()
    return job


# ------------------------------------------------------------------ sweep


def _export_leftovers_delete(job: Export) -> list[str]:
    """Remove what a dead run of `job` may have left: its partial zips and any zip it saved
    to storage without recording it. Returns what was removed."""
    removed = []
    for path in glob.glob(str(_partial_dir() / f"export-{job.id}-*.zip")):
        os.remove(path)
        removed.append(path)
    folder, prefix = _export_storage_prefix(job)
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotImplementedError):
        files = []
    for name in files:
        stored = f"{folder}/{name}"
        if name.startswith(prefix) and stored != job.file:
            default_storage.delete(stored)
            removed.append(stored)
    return removed


def _stale_cutoff(stale_after_seconds: int | None):
    # A task cannot outlive Celery's hard time limit: twice that since it started means its
    # worker died (killed, lost) and nothing will ever finish it.
    seconds = stale_after_seconds if stale_after_seconds is not None else 2 * settings.CELERY_TASK_TIME_LIMIT
    return timezone.now() - timedelta(seconds=seconds)


@dataclass
class SweepResult:
    """Ids of the jobs a sweep touched, by what it did."""

    requeued_exports: list[int]
    failed_exports: list[int]
    resent_exports: list[int]
    requeued_snapshots: list[int]
    failed_snapshots: list[int]
    resent_snapshots: list[int]
    requeued_imports: list[int] = field(default_factory=list)
    failed_imports: list[int] = field(default_factory=list)
    resent_imports: list[int] = field(default_factory=list)


def _sweep_stale(model, stale: Q, *, running: str, max_attempts: int, before_retry, task,
                 requeued: list[int], failed: list[int], on_failed=None) -> None:
    """Queue again (or fail, after `max_attempts`) each stale job of `model` still `running`.

    Exports and snapshots share the job fields (status, attempts, started_at, finished_at,
    error); each job is re-read under a row lock so a worker that finished meanwhile wins.
    """
    for job_id in list(model.objects.filter(stale, status=running).values_list("id", flat=True)):
        with transaction.atomic():
            job = model.objects.select_for_update().filter(stale, id=job_id, status=running).first()
            if job is None:
                continue
            if before_retry is not None:
                before_retry(job)
            if job.attempts < max_attempts:
                job.status, job.started_at = model.Status.QUEUED, None
                job.save(update_fields=["status", "started_at"])
                transaction.on_commit(lambda i=job.id: task.delay(i))
                requeued.append(job.id)
            else:
                job.status, job.finished_at = model.Status.FAILED, timezone.now()
                job.error = f"The worker stopped without finishing ({job.attempts} attempts)."
                job.save(update_fields=["status", "finished_at", "error"])
                if on_failed is not None:
                    on_failed(job.id)  # its webhook event, sent once this commits
                failed.append(job.id)


def builds_sweep(*, stale_after_seconds: int | None = None, max_attempts: int = 2) -> SweepResult:
    """Rescue exports, snapshots and zip imports whose worker died (run by Celery beat).

    A job ``running``/``building`` since before the cutoff is queued again once (its
    leftover files removed first) and marked ``failed`` when it has used `max_attempts`;
    a job still ``queued`` since before the cutoff has its task sent again (its message was
    lost; the task's claim makes a duplicate harmless). Idempotent: each job is re-read
    under a row lock and changed only if it is still in the state that made it stale.
    """
    from .tasks import build_snapshot, run_export

    cutoff = _stale_cutoff(stale_after_seconds)
    # Runs claimed before started_at existed have none: their age is the job's.
    stale = Q(started_at__lt=cutoff) | Q(started_at__isnull=True, created_at__lt=cutoff)
    out = SweepResult([], [], [], [], [], [])
    _sweep_stale(Export, stale, running=Export.Status.RUNNING, max_attempts=max_attempts,
                 before_retry=_export_leftovers_delete, task=run_export,
                 requeued=out.requeued_exports, failed=out.failed_exports,
                 on_failed=lambda i: webhook_event_export_failed(export_id=i))
    _sweep_stale(Snapshot, stale, running=Snapshot.Status.BUILDING, max_attempts=max_attempts,
                 before_retry=None, task=build_snapshot,
                 requeued=out.requeued_snapshots, failed=out.failed_snapshots,
                 on_failed=lambda i: webhook_event_snapshot_failed(snapshot_id=i))
    # Those just queued again already have a fresh message on its way.
    lost_exports = Export.objects.filter(status=Export.Status.QUEUED, created_at__lt=cutoff).exclude(
        id__in=out.requeued_exports)
    for export_id in list(lost_exports.values_list("id", flat=True)):
        run_export.delay(export_id)
        out.resent_exports.append(export_id)
    lost_snapshots = Snapshot.objects.filter(status=Snapshot.Status.QUEUED, created_at__lt=cutoff).exclude(
        id__in=out.requeued_snapshots)
    for snapshot_id in list(lost_snapshots.values_list("id", flat=True)):
        build_snapshot.delay(snapshot_id)
        out.resent_snapshots.append(snapshot_id)
    _sweep_imports(stale, cutoff=cutoff, max_attempts=max_attempts, out=out)
    return out


def _sweep_imports(stale: Q, *, cutoff, max_attempts: int, out: SweepResult) -> None:
    """Zip imports whose worker died (still ``running`` since before the cutoff) are queued
    again, and go on after the files already recorded (`services.import_job_run`); after
    `max_attempts` such rescues they fail, keeping what was imported (their archive is deleted:
    `services.import_job_archives_delete`). A ``queued`` one whose
    message was lost has it sent again (the run's conditional claim makes a duplicate harmless)."""
    from .models import ImportJob
    from .services import import_job_archives_delete
    from .tasks import run_import_job

    running = ImportJob.Status.RUNNING
    for job_id in list(ImportJob.objects.filter(stale, status=running).values_list("id", flat=True)):
        with transaction.atomic():
            job = ImportJob.objects.select_for_update().filter(stale, id=job_id, status=running).first()
            if job is None:
                continue
            if job.attempts < max_attempts:
                job.status, job.started_at, job.attempts = ImportJob.Status.QUEUED, None, job.attempts + 1
                job.save(update_fields=["status", "started_at", "attempts"])
                transaction.on_commit(lambda i=job.id: run_import_job.delay(i))
                out.requeued_imports.append(job.id)
            else:
                job.status, job.finished_at = ImportJob.Status.FAILED, timezone.now()
                job.errors = [*job.errors, {"file": job.archive, "error": f"The worker stopped without finishing "
                                                                          f"({job.attempts} rescues)."}]
                job.save(update_fields=["status", "finished_at", "errors"])
                out.failed_imports.append(job.id)
                # Failed for good: nothing rescues it again, so its archive goes (after commit).
                import_job_archives_delete(jobs=ImportJob.objects.filter(id=job.id))
    lost = ImportJob.objects.filter(status=ImportJob.Status.QUEUED, created_at__lt=cutoff).exclude(
        id__in=out.requeued_imports)
    for job_id in list(lost.values_list("id", flat=True)):
        run_import_job.delay(job_id)
        out.resent_imports.append(job_id)
