"""Snapshots and exports: freeze a spec's accepted work, then write it out in a format.

A snapshot copies, per image with an accepted annotation, the accepted version's regions
and the image's licence and source at that moment, and the split the image was assigned
(:func:`curation.splits.assign_splits`: near-duplicates and capture sessions stay in one
split). Nothing in a snapshot refers back to live, editable rows for its content, so the
snapshot never changes and an export of it is the same bytes every time it is built.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from common.storage import guarded_files

from .exporters import FORMATS, CategoryInfo, ExportImage, ExportRegion, LicenceInfo, SourceInfo, export
from .models import Category, DatasetSpec, Export, Image, Snapshot, SnapshotItem
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
    except (TypeError, ValueError):
        raise ValidationError({"ratios": "Weights must be numbers."}) from None
    if any(w < 0 or w != w for w in weights) or sum(weights) <= 0:
        raise ValidationError({"ratios": "Weights must be non-negative with a positive sum."})
    total = sum(weights)
    return {name: w / total for name, w in zip(SPLIT_NAMES, weights, strict=True)}


def _accepted_annotations(spec: DatasetSpec) -> dict[int, object]:
    """Per image of `spec`: its accepted annotation (the latest accepted, when a task had overlap)."""
    from labeling.models import Annotation

    chosen: dict[int, object] = {}
    qs = (Annotation.objects.filter(task__image__spec=spec, status=Annotation.Status.ACCEPTED,
                                    current__isnull=False)
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


@transaction.atomic
def snapshot_create(*, spec: DatasetSpec, name: str, created_by: User | None,
                    ratios: object = DEFAULT_RATIOS, seed: int = 0) -> Snapshot:
    """Freeze every image of `spec` whose task has an accepted annotation: the accepted
    version's regions, the image's provenance and a leak-free split, in one transaction."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Name the snapshot."})
    if Snapshot.objects.filter(spec=spec, name=name).exists():
        raise ValidationError({"name": f"This spec already has a snapshot named {name!r}."})
    weights = _ratios(ratios)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValidationError({"seed": "The seed must be an integer."})
    annotations = _accepted_annotations(spec)
    if not annotations:
        raise ValidationError({"spec": "This spec has no accepted annotations yet; nothing to snapshot."})
    images = [im for chunk in _chunks(sorted(annotations))
              for im in Image.objects.filter(id__in=chunk).select_related("source__licence")
              .prefetch_related("categories").order_by("id")]
    result = assign_splits(
        [SplitItem(id=im.id, phash=im.phash or None, session=im.capture_session,
                   categories=tuple(sorted(c.slug for c in im.categories.all()))) for im in images],
        ratios=weights, seed=seed)
    regions = _frozen_regions([a.current_id for a in annotations.values()])
    snapshot = Snapshot.objects.create(spec=spec, name=name, created_by=created_by, ratios=weights, seed=seed,
                                       content_hash="", item_count=len(images), split_counts=result.counts,
                                       near_duplicate_pairs=result.near_duplicate_pairs)
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
    snapshot.content_hash = snapshot_items_hash(items)
    snapshot.save(update_fields=["content_hash"])
    return snapshot


# ------------------------------------------------------------------ exports


def _export_region(r: dict) -> ExportRegion:
    cats = r.get("categories") or []
    return ExportRegion(points=r.get("points"), mask_rle=r.get("mask_rle"), latex=r.get("latex", ""),
                        category=cats[0] if cats else None, flags=tuple(r.get("flags") or ()))


def _opener(name: str):
    def open_bytes() -> bytes:
        with default_storage.open(name, "rb") as fh:
            return fh.read()
    return open_bytes


def snapshot_export_images(snapshot: Snapshot) -> Iterator[ExportImage]:
    """The snapshot's items as export records, read from the database in chunks (constant memory)."""
    qs = SnapshotItem.objects.filter(snapshot=snapshot).order_by("image_id")
    for item in qs.iterator(chunk_size=_ITEM_BATCH):
        ext = os.path.splitext(item.file)[1].lower() or ".png"
        yield ExportImage(
            image_id=item.image_id, file_name=f"{item.image_id:08d}{ext}", width=item.width, height=item.height,
            split=item.split, licence=LicenceInfo(**item.licence), source=SourceInfo(**item.source),
            open_bytes=_opener(item.file), categories=tuple(item.categories),
            regions=[_export_region(r) for r in item.regions], capture_session=item.capture_session)


def export_create(*, snapshot: Snapshot, format: str, created_by: User | None) -> Export:
    """Queue an export of `snapshot` in `format`; a worker builds it (see :func:`export_run`)."""
    if format not in FORMATS:
        raise ValidationError({"format": f"Unknown export format {format!r}; choose one of {sorted(FORMATS)}."})
    with transaction.atomic():
        job = Export.objects.create(snapshot=snapshot, format=format, created_by=created_by)
        from .tasks import run_export

        transaction.on_commit(lambda: run_export.delay(job.id))
    return job


def export_build(*, snapshot: Snapshot, format: str, dest) -> object:
    """Write `snapshot` in `format` to `dest` (a path or binary file); return the ExportResult.

    Deterministic: items in image order, fixed zip timestamps, so two builds are the same bytes.
    """
    categories = [CategoryInfo(slug=c.slug, name=c.name)
                  for c in Category.objects.filter(spec_id=snapshot.spec_id).order_by("position", "id")]
    return export(snapshot_export_images(snapshot), dest, format=format,
                  intended_use=snapshot.spec.intended_use, categories=categories)


def export_run(*, job: Export) -> Export:
    """Build a queued export into a zip in storage and record what went in and what was
    left out (and why). Idempotent: a job no longer queued is left alone."""
    claimed = Export.objects.filter(id=job.id, status=Export.Status.QUEUED).update(status=Export.Status.RUNNING)
    if not claimed:
        return job
    job.refresh_from_db()
    tmp = tempfile.NamedTemporaryFile(prefix="export-", suffix=".zip", delete=False)
    tmp.close()
    try:
        result = export_build(snapshot=job.snapshot, format=job.format, dest=tmp.name)
        with guarded_files() as guard, transaction.atomic():
            with open(tmp.name, "rb") as fh:
                name = guard.storage.save(
                    f"exports/{job.snapshot_id}/{job.id}-{job.snapshot.content_hash[:12]}-{job.format}.zip", File(fh))
            guard.names.append(name)
            Export.objects.filter(id=job.id).update(
                status=Export.Status.DONE, file=name, size=guard.storage.size(name), images=result.images,
                regions=result.regions, excluded_images=result.excluded_images, licences=result.licences,
                excluded=result.excluded, error="", finished_at=timezone.now())
    except Exception as exc:
        Export.objects.filter(id=job.id).update(status=Export.Status.FAILED, error=str(exc)[:2000],
                                                finished_at=timezone.now())
    finally:
        if os.path.exists(tmp.name):
            os.remove(tmp.name)
    job.refresh_from_db()
    return job
