"""Write paths for curation: licences, sources, specs, categories, images, import jobs.

Each service is keyword-only, validates what the database cannot, and changes data
inside one transaction. Views, pages, tasks, admin actions and commands all call
these; none writes the models directly.
"""
from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from common.archives import nfc, zip_member_name
from common.errors import KEPT, public_error
from common.fields import MAX_INT, slug_for
from common.latex import character_problems
from common.storage import guarded_files
from common.unchangeable import CANNOT_CHANGE, drop_unchanged
from common.uploads import too_big
from pipeline.refresh import spec_stats_refresh_soon

from .imaging import IMAGE_SUFFIXES, DecodedImage, decode_image
from .imaging import too_big as too_big_image
from .models import (
    Category,
    DatasetSpec,
    Export,
    Image,
    ImportJob,
    Licence,
    ModelRequirement,
    ProgressReport,
    Snapshot,
    SnapshotItem,
    Source,
    Takedown,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- licences


@transaction.atomic
def licence_create(
    *,
    code: str,
    name: str,
    family: str,
    allows_commercial: bool,
    allows_derivatives: bool,
    share_alike: bool,
    requires_attribution: bool,
    version: str = "",
    url: str = "",
    description: str = "",
) -> Licence:
    """Add a licence to the catalogue."""
    licence = Licence(
        code=code, name=name, family=family, version=version, url=url, description=description,
        allows_commercial=allows_commercial, allows_derivatives=allows_derivatives,
        share_alike=share_alike, requires_attribution=requires_attribution,
    )
    licence.full_clean()
    licence.save()
    return licence


LICENCE_FIELDS = ("code", "name", "family", "version", "url", "description", "allows_commercial",
                  "allows_derivatives", "share_alike", "requires_attribution")


@transaction.atomic
def licence_update(*, licence: Licence, **changes) -> Licence:
    """Correct a licence of the catalogue. Making it forbid commercial use is refused while
    commercial specs hold images under it, as a source's licence change is: move or remove
    those images first (exports would leave them out, but the specs would hold them)."""
    unknown = set(changes) - set(LICENCE_FIELDS)
    if unknown:
        raise ValidationError({f: "Unknown field." for f in unknown})
    was_commercial = Licence.objects.filter(pk=licence.pk).values_list("allows_commercial", flat=True).get()
    for key, value in changes.items():
        setattr(licence, key, value)
    if was_commercial and not licence.allows_commercial:
        spec_names = list(
            DatasetSpec.objects.filter(images__source__licence=licence, intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
            .distinct().values_list("name", flat=True)[:5]
        )
        if spec_names:
            raise ValidationError({"allows_commercial": f"Commercial specs hold images under {licence.name}: "
                                                        f"{', '.join(spec_names)}; move or remove them first."})
    licence.full_clean()
    licence.save()
    return licence


# ----------------------------------------------------------------- sources

SOURCE_FIELDS = ("name", "kind", "licence", "copyright_holder", "attribution", "url",
                 "contract_reference", "acquired_on", "notes")


def _source_check(source: Source) -> None:
    if source.licence.family == Licence.Family.CONTRACT and not source.contract_reference:
        raise ValidationError({"contract_reference": "A source under a proprietary contract needs the contract reference."})
    if source.licence.requires_attribution and not source.attribution.strip():
        # Attribution must travel with every export: write the usual line for them.
        source.attribution = f"{source.name} © {source.copyright_holder}, licensed under {source.licence.name}"
        if source.url:
            source.attribution += f" ({source.url})"
    source.full_clean()


@transaction.atomic
def source_create(
    *,
    name: str,
    kind: str,
    licence: Licence,
    copyright_holder: str,
    attribution: str = "",
    url: str = "",
    contract_reference: str = "",
    acquired_on=None,
    notes: str = "",
    created_by: User | None = None,
) -> Source:
    """Record where images come from, who holds the copyright and the licence."""
    source = Source(
        name=name, kind=kind, licence=licence, copyright_holder=copyright_holder, attribution=attribution,
        url=url, contract_reference=contract_reference, acquired_on=acquired_on, notes=notes, created_by=created_by,
    )
    _source_check(source)
    source.save()
    return source


@transaction.atomic
def source_update(*, source: Source, **changes) -> Source:
    """Change a source's fields. A licence change that would put non-commercial
    images into a commercial spec is refused."""
    unknown = set(changes) - set(SOURCE_FIELDS)
    if unknown:
        raise ValidationError({f: "Unknown field." for f in unknown})
    for key, value in changes.items():
        setattr(source, key, value)
    if "licence" in changes and not source.licence.allows_commercial:
        spec_names = list(
            DatasetSpec.objects.filter(images__source=source, intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
            .distinct().values_list("name", flat=True)[:5]
        )
        if spec_names:
            raise ValidationError({"licence": f"{source.licence.name} forbids commercial use, and this source has "
                                   f"images in commercial specs: {', '.join(spec_names)}."})
    _source_check(source)
    source.save()
    return source


def source_ensure(*, name: str, licence_code: str, **fields) -> tuple[Source, bool]:
    """The source called `name`, created with `fields` under licence `licence_code` if
    it does not exist yet; return (source, created). Importers use it for their
    well-known default sources, so re-running an import never makes a second one."""
    existing = Source.objects.filter(name=name).select_related("licence").first()
    if existing is not None:
        return existing, False
    licence = Licence.objects.filter(code=licence_code).first()
    if licence is None:
        raise ValidationError({"licence": f"Unknown licence {licence_code!r}."})
    return source_create(name=name, licence=licence, **fields), True


# ------------------------------------------------------------------- specs

SPEC_FIELDS = ("name", "slug", "requirement", "intended_use", "answer_formats", "status",
               "max_ms_per_image", "target_qps", "serving_target")
# What only spec_create takes: the categories are changed one by one (category_update).
SPEC_CREATE_ONLY = ("default_quota", "custom_categories")


def _check_answer_formats(formats: Sequence[str]) -> list[str]:
    formats = list(dict.fromkeys(formats))
    if not formats:
        raise ValidationError({"answer_formats": "Choose at least one answer format: quad, mask, latex."})
    bad = [f for f in formats if f not in DatasetSpec.ANSWER_FORMATS]
    if bad:
        raise ValidationError({"answer_formats": f"Unknown answer format(s): {', '.join(map(str, bad))}; use quad, mask, latex."})
    return formats


def _set_requirements(spec: DatasetSpec, requirements: Iterable[dict]) -> None:
    spec.requirements.all().delete()
    seen = set()
    for i, req in enumerate(requirements):
        metric = req.get("metric")
        if metric not in ModelRequirement.Metric.values:
            raise ValidationError({"requirements": f"Item {i}: unknown metric {metric!r}."})
        if metric in seen:
            raise ValidationError({"requirements": f"Item {i}: metric {metric} is given twice."})
        seen.add(metric)
        try:
            threshold = float(req["threshold"])
        except (KeyError, TypeError, ValueError):
            raise ValidationError({"requirements": f"Item {i}: give the threshold as a number."}) from None
        # Every metric is measured as a fraction (pipeline.evaluation): 95 would be a requirement no
        # model can meet, -3 one every model meets.
        if not 0 <= threshold <= 1:
            raise ValidationError({"requirements": f"Item {i}: the {metric} threshold is {req['threshold']}; give a "
                                                   "fraction between 0 and 1 (0.9 for 90 %)."})
        ModelRequirement.objects.create(spec=spec, metric=metric, threshold=threshold)


@transaction.atomic
def spec_create(
    *,
    name: str,
    requirement: str,
    intended_use: str,
    answer_formats: Sequence[str],
    slug: str = "",
    status: str = DatasetSpec.Status.DRAFT,
    max_ms_per_image: int | None = None,
    target_qps: float | None = None,
    serving_target: str = "",
    requirements: Iterable[dict] = (),
    default_quota: int = 0,
    custom_categories: Iterable[dict] = (),
    created_by: User | None = None,
) -> DatasetSpec:
    """Create a spec with the five default kinds of image (plus any custom ones)."""
    spec = DatasetSpec(
        name=name, slug=slug or slug_for(name, prefix="spec", max_length=80), requirement=requirement, intended_use=intended_use,
        answer_formats=_check_answer_formats(answer_formats), status=status, max_ms_per_image=max_ms_per_image,
        target_qps=target_qps, serving_target=serving_target, created_by=created_by,
    )
    if not spec.slug:
        raise ValidationError({"name": "The name must contain letters or digits."})
    # The default categories are created below without a full_clean: check their quota here.
    if isinstance(default_quota, bool) or not isinstance(default_quota, int) or not 0 <= default_quota <= MAX_INT:
        raise ValidationError({"default_quota": f"Must be a whole number between 0 and {MAX_INT}."})
    spec.full_clean()
    spec.save()
    for position, (slug_, label, description) in enumerate(Category.DEFAULTS):
        Category.objects.create(spec=spec, slug=slug_, name=label, description=description,
                                target_quota=default_quota, is_builtin=True, position=position)
    for extra in custom_categories:
        category_create(spec=spec, **extra)
    _set_requirements(spec, requirements)
    return spec


def _refuse_dropping_used_formats(spec: DatasetSpec, *, dropped: set[str]) -> None:
    """Refuse dropping an answer format the current versions of the spec's annotations use:
    quads or masks drawn, LaTeX typed. The spec would describe answers its data does not hold."""
    from django.db.models import F

    from labeling.models import Region

    if not dropped:
        return
    regions = Region.objects.filter(version__annotation__task__image__spec=spec,
                                    version__annotation__current_id=F("version_id"))
    used = [fmt for fmt in DatasetSpec.ANSWER_FORMATS if fmt in dropped and (
        regions.exclude(latex="") if fmt == "latex" else regions.filter(kind=fmt)).exists()]
    if used:
        raise ValidationError({"answer_formats": f"Annotations of this spec use {', '.join(used)}; "
                                                 "that format cannot be dropped."})


@transaction.atomic
def spec_update(*, spec: DatasetSpec, requirements: Iterable[dict] | None = None, **changes) -> DatasetSpec:
    """Change a spec. Turning a research spec commercial is refused while it holds
    images whose licence forbids commercial use. `default_quota` and `custom_categories`
    only make a spec's first categories: an update sending them is refused."""
    create_only = sorted(set(changes) & set(SPEC_CREATE_ONLY))
    if create_only:
        raise ValidationError({f: CANNOT_CHANGE for f in create_only})
    unknown = set(changes) - set(SPEC_FIELDS)
    if unknown:
        raise ValidationError({f: "Unknown field." for f in unknown})
    if "answer_formats" in changes:
        changes["answer_formats"] = _check_answer_formats(changes["answer_formats"])
        _refuse_dropping_used_formats(spec, dropped=set(spec.answer_formats) - set(changes["answer_formats"]))
    for key, value in changes.items():
        setattr(spec, key, value)
    if spec.is_commercial:
        blocked = spec.images.filter(source__licence__allows_commercial=False).count()
        if blocked:
            raise ValidationError({"intended_use": f"{blocked} image(s) of this spec come from sources whose licence "
                                   "forbids commercial use; remove them before making the spec commercial."})
    spec.full_clean()
    spec.save()
    if requirements is not None:
        _set_requirements(spec, requirements)
    return spec


# -------------------------------------------------------------- categories


@transaction.atomic
def category_create(
    *, spec: DatasetSpec, name: str, slug: str = "", description: str = "", target_quota: int = 0
) -> Category:
    """Add a custom kind of image to a spec."""
    slug = slug or slug_for(name, prefix="kind", max_length=60)
    if not slug:
        raise ValidationError({"name": "The name must contain letters or digits."})
    if spec.categories.filter(slug=slug).exists():
        raise ValidationError({"slug": f"Spec {spec.slug} already has a category {slug!r}."})
    position = spec.categories.count()
    category = Category(spec=spec, slug=slug, name=name, description=description,
                        target_quota=target_quota, position=position)
    category.full_clean()
    category.save()
    spec_stats_refresh_soon(spec_id=spec.pk)  # a new row (and target) in the quota progress
    return category


@transaction.atomic
def category_update(*, category: Category, **changes) -> Category:
    """Rename a category or change its quota. Its spec and slug are fixed: sent
    unchanged they are no change, another value is refused."""
    changes = drop_unchanged(category, changes, ("spec", "slug"))
    allowed = {"name", "description", "target_quota"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationError({f: CANNOT_CHANGE for f in sorted(unknown)})
    for key, value in changes.items():
        setattr(category, key, value)
    category.full_clean()
    category.save()
    if changes:
        spec_stats_refresh_soon(spec_id=category.spec_id)  # the name and target in the quota progress
    return category


def _regions_name_category(category: Category) -> bool:
    """Whether a region of an annotation version or a pre-label of the category's spec names it.

    Regions keep category slugs in a JSON list. The text match (`"slug"` inside the JSON, on
    SQLite and PostgreSQL alike) only narrows the rows; the lists found are then checked exactly,
    as slugs differing in case only, or LaTeX quoting the slug, would also match the text."""
    from labeling.models import Prediction, Region

    quoted = f'"{category.slug}"'
    for cats in (Region.objects.filter(version__annotation__task__image__spec_id=category.spec_id,
                                       categories__icontains=quoted)
                 .values_list("categories", flat=True).iterator()):
        if category.slug in (cats or []):
            return True
    for regions in (Prediction.objects.filter(image__spec_id=category.spec_id, regions__icontains=quoted)
                    .values_list("regions", flat=True).iterator()):
        if any(isinstance(r, dict) and category.slug in (r.get("categories") or []) for r in regions or []):
            return True
    return False


@transaction.atomic
def category_delete(*, category: Category) -> None:
    """Delete a custom category that no image carries yet, and that no annotation's or
    pre-label's region names: those answers would name a kind the spec no longer has, and
    saving one again (rework, or an annotation started from a pre-label) would be refused."""
    if category.is_builtin:
        raise ValidationError({"category": "Built-in categories cannot be deleted; set their quota to 0."})
    if category.images.exists():
        raise ValidationError({"category": "Images carry this category; remove it from them first."})
    if _regions_name_category(category):
        raise ValidationError({"category": "Regions of annotations or pre-labels of this spec name this category; "
                                           "it cannot be deleted."})
    spec_id = category.spec_id
    category.delete()
    spec_stats_refresh_soon(spec_id=spec_id)


# ---------------------------------------------------------------- progress


def spec_progress_refresh(*, spec: DatasetSpec) -> ProgressReport:
    """Compute `spec`'s quota progress now and store it as the spec's ProgressReport (replacing
    the previous one). The reads run before the write transaction, so nothing is locked while
    the aggregates run."""
    import time

    from .progress import progress_compute

    started = time.perf_counter()
    payload = progress_compute(spec=spec)
    duration_ms = round((time.perf_counter() - started) * 1000)
    with transaction.atomic():
        report, _ = ProgressReport.objects.update_or_create(
            spec=spec, defaults={"computed_at": timezone.now(), "duration_ms": duration_ms, "payload": payload})
    return report


# ------------------------------------------------------------------ images


def licence_check(*, spec: DatasetSpec, source: Source) -> None:
    """Refuse a source whose licence forbids the spec's intended use, saying why."""
    if spec.is_commercial and not source.licence.allows_commercial:
        raise ValidationError({"source": f"Source {source.name!r} is licensed under {source.licence.name}, which forbids "
                               f"commercial use, and spec {spec.name!r} is for a commercial product."})


def resolve_categories(*, spec: DatasetSpec, values: Iterable[str | int | Category]) -> list[Category]:
    """Categories of `spec` named by slug or id; an unknown one is a 400 on `categories`."""
    values = list(values)
    if not values:
        return []
    by_slug = {c.slug: c for c in spec.categories.all()}
    by_id = {c.id: c for c in by_slug.values()}
    out, unknown = [], []
    for v in values:
        if isinstance(v, Category):
            cat = v if v.spec_id == spec.id else None
        elif isinstance(v, int) or (isinstance(v, str) and v.isascii() and v.isdigit()):
            cat = by_id.get(int(v))
        else:
            cat = by_slug.get(str(v).strip())
        if cat is None:
            unknown.append(str(v))
        elif cat not in out:
            out.append(cat)
    if unknown:
        raise ValidationError({"categories": f"Unknown category for spec {spec.slug}: {', '.join(unknown)}. "
                               f"Known: {', '.join(sorted(by_slug))}."})
    return out


@dataclass
class FileOutcome:
    """What became of one file of an ingest: `index` is its place in `files`, `filename`
    the name it was given as (its base name, not cut to what `original_filename` keeps).

    `outcome` is "created" (stored as `image`), "duplicate" (the spec already held these
    bytes as `image`) or "repeated" (an earlier file of the same call, at `same_as`, has
    these bytes; `image` is what that one became)."""

    CREATED = "created"
    DUPLICATE = "duplicate"
    REPEATED = "repeated"

    index: int
    filename: str
    outcome: str
    image: Image
    same_as: int | None = None


# The outcomes a bulk upload reports per file (the API enum, IngestOutcomeEnum).
INGEST_OUTCOMES = (FileOutcome.CREATED, FileOutcome.DUPLICATE, FileOutcome.REPEATED)


@dataclass
class IngestResult:
    """What an ingest did: the images it stored and the exact duplicates it skipped
    (files repeating an earlier file's bytes included), and per file, in the order of
    the files given, what became of it (`files`)."""

    created: list[Image] = field(default_factory=list)
    duplicates: list[tuple[str, Image]] = field(default_factory=list)
    files: list[FileOutcome] = field(default_factory=list)


def _store(guard, spec: DatasetSpec, decoded: DecodedImage) -> tuple[str, str]:
    shard = f"{spec.id}/{decoded.sha256[:2]}"
    name = guard.save(f"images/{shard}/{decoded.sha256}{decoded.extension}", decoded.content)
    thumb = guard.save(f"thumbs/{shard}/{decoded.sha256}.jpg", decoded.thumbnail)
    return name, thumb


def _truths_checked(truths: Sequence[str] | None, *, count: int) -> None:
    """Refuse, naming `truth_latex` (`truth_latex[i]` of several files), a truth holding what no
    LaTeX may hold: a C0 control, a lone surrogate or a Unicode non-character (the character check
    of every annotator's, reviewer's and import's LaTeX). The grammar is not checked: real data
    sets' truths keep their own spelling, and some of CROHME's and im2markup's do not parse by the
    annotators' rules (a `$` inside, an unknown command, nothing but spacing)."""
    for index, truth in enumerate(truths or ()):
        problems = character_problems(truth or "")
        if problems:
            # The field in the message too: a batch import lists a file's failure by its messages.
            where = "truth_latex" if count == 1 else f"truth_latex[{index}]"
            raise ValidationError({where: [f"truth_latex: {p}" for p in problems]})


def images_ingest(
    *,
    spec: DatasetSpec,
    source: Source,
    files: Sequence[tuple[str, bytes]],
    categories: Iterable[str | int | Category] = (),
    uploaded_by: User | None = None,
    capture_session: str = "",
    truth_latex: Sequence[str] | None = None,
    meta: Sequence[dict] | None = None,
    capture_sessions: Sequence[str] | None = None,
) -> IngestResult:
    """Store `files` (name, bytes) as images of `spec`, all or nothing.

    Every file is decoded and checked before anything is written, so one bad file
    fails the whole call with a 400 naming it and nothing is stored. Exact
    duplicates (same sha256 in the spec, or twice in the call) are reported, not
    stored twice. `truth_latex`, `meta` and `capture_sessions` are per file, in the
    order of `files`; `capture_sessions` overrides the one `capture_session`. A truth
    passes the character check of every stored LaTeX (`_truths_checked`).
    `result.files` says per file, in the order of `files`, what became of it: names
    repeat (two folders' IMG_0001.jpg) and stored names are cut to 255 characters,
    so callers must not match results back to their files by name.
    """
    if not files:
        raise ValidationError({"files": "No file was given."})
    _truths_checked(truth_latex, count=len(files))
    # Names and sessions in NFC: a Mac uploads Hangul decomposed (jamo), which would never
    # equal the same name typed into a search box or given by another computer.
    files = [(nfc(name or ""), data) for name, data in files]
    capture_session = nfc(capture_session or "")
    capture_sessions = [nfc(c or "") for c in capture_sessions] if capture_sessions else capture_sessions
    licence_check(spec=spec, source=source)
    cats = resolve_categories(spec=spec, values=categories)
    decoded: list[DecodedImage] = []
    for index, (name, data) in enumerate(files):
        field_name = "file" if len(files) == 1 else f"files[{index}]"
        decoded.append(decode_image(data, name, field=field_name))

    result = IngestResult()
    existing = {im.sha256: im for im in Image.objects.filter(spec=spec, sha256__in=[d.sha256 for d in decoded])}
    fresh: list[tuple[int, DecodedImage]] = []
    repeated: list[tuple[str, str]] = []  # the same bytes twice in this call
    first_of_sha: dict[str, int] = {}  # sha256 -> index of the first fresh file with those bytes
    # Per file: an outcome known now ("duplicate"), or one settled by the insert below
    # (None for a fresh file, the earlier file's index for a repeat).
    pending: list[FileOutcome | int | None] = []
    for index, d in enumerate(decoded):
        if d.sha256 in existing:
            result.duplicates.append((d.filename, existing[d.sha256]))
            pending.append(FileOutcome(index, d.filename, FileOutcome.DUPLICATE, existing[d.sha256]))
        elif d.sha256 in first_of_sha:
            repeated.append((d.filename, d.sha256))
            pending.append(first_of_sha[d.sha256])
        else:
            first_of_sha[d.sha256] = index
            fresh.append((index, d))
            pending.append(None)
    if not fresh:
        # Only duplicates of the spec's images: each file's outcome is known already.
        result.files = [slot for slot in pending if isinstance(slot, FileOutcome)]
        return result
    with guarded_files() as guard, transaction.atomic():
        rows = []
        for index, d in fresh:
            name, thumb = _store(guard, spec, d)
            rows.append(Image(
                spec=spec, source=source, file=name, thumbnail=thumb, original_filename=d.filename[:255],
                sha256=d.sha256, phash=d.phash, width=d.width, height=d.height, format=d.format,
                file_size=len(d.content),
                capture_session=(capture_sessions[index] if capture_sessions else capture_session) or "",
                truth_latex=(truth_latex[index] if truth_latex else "") or "",
                meta=(meta[index] if meta else {}) or {}, uploaded_by=uploaded_by,
            ))
        # What each fresh file's bytes became: its new row, or a concurrent upload's.
        image_of_sha: dict[str, Image] = {}
        try:
            with transaction.atomic():
                created = Image.objects.bulk_create(rows)
            image_of_sha = {im.sha256: im for im in created}
        except IntegrityError:
            # A concurrent upload stored one of these meanwhile: fall back to one by one.
            created = []
            for row in rows:
                try:
                    with transaction.atomic():
                        row.save()
                    created.append(row)
                    image_of_sha[row.sha256] = row
                except IntegrityError:
                    dup = Image.objects.get(spec=spec, sha256=row.sha256)
                    result.duplicates.append((row.original_filename, dup))
                    image_of_sha[row.sha256] = dup
                    for stored in (row.file, row.thumbnail):
                        if stored != dup.file and stored != dup.thumbnail:
                            default_storage.delete(stored)
        if cats and created:
            Through = Image.categories.through
            Through.objects.bulk_create(
                [Through(image_id=im.id, category_id=c.id) for im in created for c in cats]
            )
        result.created = created
        if created:
            spec_stats_refresh_soon(spec_id=spec.pk)  # collected, in the quota progress
    # A repeat maps to whatever its first file became, a concurrent upload's image included
    # (counting it nowhere would leave an import job's files unaccounted for).
    result.duplicates += [(name, image_of_sha[sha]) for name, sha in repeated]
    created_ids = {im.pk for im in created}
    for index, d in enumerate(decoded):
        slot = pending[index]
        if isinstance(slot, FileOutcome):
            result.files.append(slot)
        elif slot is None:
            image = image_of_sha[d.sha256]
            kind = FileOutcome.CREATED if image.pk in created_ids else FileOutcome.DUPLICATE
            result.files.append(FileOutcome(index, d.filename, kind, image))
        else:
            result.files.append(FileOutcome(index, d.filename, FileOutcome.REPEATED, image_of_sha[d.sha256], slot))
    return result


def image_ingest(
    *,
    spec: DatasetSpec,
    source: Source,
    data: bytes,
    filename: str,
    categories: Iterable[str | int | Category] = (),
    uploaded_by: User | None = None,
    capture_session: str = "",
    truth_latex: str = "",
    meta: dict | None = None,
) -> tuple[Image, bool]:
    """Store one image; return (image, created). An exact duplicate returns the
    image already stored and created=False."""
    result = images_ingest(
        spec=spec, source=source, files=[(filename, data)], categories=categories, uploaded_by=uploaded_by,
        capture_session=capture_session, truth_latex=[truth_latex], meta=[meta or {}],
    )
    if result.created:
        return result.created[0], True
    return result.duplicates[0][1], False


@transaction.atomic
def image_update(*, image: Image, categories: Iterable[str | int | Category] | None = None,
                 capture_session: str | None = None) -> Image:
    """Change the kinds an image is counted under, or its capture session."""
    if categories is not None:
        image.categories.set(resolve_categories(spec=image.spec, values=categories))
        spec_stats_refresh_soon(spec_id=image.spec_id)
    if capture_session is not None:
        image.capture_session = nfc(capture_session)
        image.save(update_fields=["capture_session"])
    return image


def image_delete(*, image: Image) -> None:
    """Delete an image and, once the deletion is committed, its files.

    An image frozen into a snapshot stays: the snapshot must remain rebuildable byte for byte.
    So does one a guide shows as an example (the guide would lose it; the database refuses with
    an error, not a message), and one vendors have annotated: its tasks would take their
    annotations, paid work, with them. Tasks nobody has answered yet go with the image.
    """
    from guides.models import GuideExample
    from labeling.models import Annotation

    frozen = sorted(set(SnapshotItem.objects.filter(image=image).values_list("snapshot__name", flat=True)))
    if frozen:
        raise ValidationError({"image": f"This image is in snapshot(s) {', '.join(frozen)}; it cannot be deleted. "
                                        "To honour a copyright takedown or a personal-data erasure request, take "
                                        "it down instead (POST /api/v1/images/{id}/takedown/ or the image page's "
                                        "Take down button): its files are erased and the snapshots amended."})
    if GuideExample.objects.filter(image=image).exists():
        raise ValidationError({"image": "A labeling guide shows this image as an example (a published "
                                        "version keeps its examples); it cannot be deleted."})
    annotated = Annotation.objects.filter(task__image=image).count()
    if annotated:
        raise ValidationError({"image": f"Vendors have {annotated} annotation(s) of this image; it cannot be "
                                        "deleted."})
    names = [image.file, image.thumbnail]
    with transaction.atomic():
        spec_id = image.spec_id
        image.delete()
        spec_stats_refresh_soon(spec_id=spec_id)
        transaction.on_commit(lambda: [default_storage.delete(n) for n in names])


# --------------------------------------------------------------- takedowns


def _takedown_check(*, kind: str, reason: str, requested_by: str) -> tuple[str, str]:
    """The reason and requester, trimmed; a ValidationError naming each bad field."""
    errors: dict[str, str] = {}
    if kind not in Takedown.Kind.values:
        errors["kind"] = f"Unknown kind {kind!r}; use one of {', '.join(Takedown.Kind.values)}."
    reason, requested_by = (reason or "").strip(), (requested_by or "").strip()
    if not reason:
        errors["reason"] = "Say what was requested (the takedown or erasure request, in words)."
    if not requested_by:
        errors["requested_by"] = "Name who asked (rights holder, data subject, authority)."
    elif len(requested_by) > 200:
        errors["requested_by"] = "At most 200 characters."
    if errors:
        raise ValidationError(errors)
    return reason, requested_by


def _export_holds(export: Export, image_ids: set[int]) -> bool:
    """Whether `export`'s zip holds any of `image_ids`: its PROVENANCE.jsonl lists every image
    that went in (an image a commercial export left out is not in it). A zip that cannot be
    read counts as holding them: withdrawing one too many is the safe mistake."""
    import json as _json

    from .exporters.base import PROVENANCE

    try:
        with default_storage.open(export.file, "rb") as fh, zipfile.ZipFile(fh) as zf, zf.open(PROVENANCE) as lines:
            return any(_json.loads(line).get("image_id") in image_ids for line in lines if line.strip())
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return True


def _takedown_images(*, images: list[Image], kind: str, reason: str, requested_by: str, actor: User | None,
                     whole_source: bool) -> list[Takedown]:
    """The write path of both takedowns: one Takedown row per image. Runs inside the caller's
    transaction, with the images' rows locked; the files go only once it commits."""
    from labeling.services import tasks_take_down

    from .tasks import run_export

    now = timezone.now()
    ids = [im.id for im in images]
    takedowns = {im.id: Takedown.objects.create(
        image=im, image_ref=im.id, spec_id=im.spec_id, source_id=im.source_id, kind=kind, reason=reason,
        requested_by=requested_by, whole_source=whole_source, actor=actor,
        files_erased=[n for n in (im.file, im.thumbnail) if n]) for im in images}
    # The rows stay as tombstones (paid annotations and frozen items refer to them), without the
    # uploader's file name or the importer's metadata, which may name a pupil.
    Image.objects.filter(id__in=ids).update(taken_down_at=now, original_filename="", meta={})
    # Frozen snapshot items: marked, never changed (the content hash covers them as frozen).
    per_snapshot: dict[int, int] = {}
    for image_id, item_id, snapshot_id in SnapshotItem.objects.filter(image_id__in=ids).values_list(
            "image_id", "id", "snapshot_id"):
        SnapshotItem.objects.filter(id=item_id).update(takedown=takedowns[image_id])
        takedowns[image_id].snapshot_items += 1
        per_snapshot[snapshot_id] = per_snapshot.get(snapshot_id, 0) + 1
    for snapshot_id, n in per_snapshot.items():
        Snapshot.objects.filter(id=snapshot_id).update(taken_down_items=F("taken_down_items") + n)
    # Export zips: withdrawn (file deleted after commit) where they hold one of the images; a run
    # in progress is queued again (its attempt superseded, it keeps no file) to leave them out.
    zips: list[str] = []
    wanted = set(ids)
    # Every export of those snapshots locked in one statement, whatever its status, and sorted out
    # here: a run committing its zip meanwhile is waited for and then seen as done. Filtering on
    # the status in the locking query missed it (not yet done to this statement's snapshot, no
    # longer running once its commit was waited for), leaving a zip built from the pixels
    # before the erasure done and downloadable.
    exports = list(Export.objects.select_for_update().filter(snapshot_id__in=list(per_snapshot)).order_by("id"))
    for export in [e for e in exports if e.status == Export.Status.DONE]:
        if export.file and not _export_holds(export, wanted):
            continue
        held = sorted(wanted & set(SnapshotItem.objects.filter(snapshot_id=export.snapshot_id)
                                   .values_list("image_id", flat=True)))
        zips += [export.file] if export.file else []
        export.status, export.withdrawn_at, export.file = Export.Status.WITHDRAWN, now, ""
        export.withdrawn_reason = (f"Withdrawn on {now:%Y-%m-%d}: image(s) {', '.join(map(str, held))} were taken "
                                   f"down ({Takedown.Kind(kind).label.lower()}). Build the export again to get "
                                   "the snapshot without them.")
        export.save(update_fields=["status", "withdrawn_at", "file", "withdrawn_reason"])
        for image_id in held:
            takedowns[image_id].exports_withdrawn += 1
    for export_id in [e.id for e in exports if e.status == Export.Status.RUNNING]:
        Export.objects.filter(id=export_id).update(status=Export.Status.QUEUED, started_at=None)
        transaction.on_commit(lambda i=export_id: run_export.delay(i))
    # Tasks: unanswered ones leave the queue, drafts and rework are withdrawn, answers stay.
    # Each row records its own image's counts (a source takedown has one row per image).
    work = tasks_take_down(image_ids=ids)
    for image_id, td in takedowns.items():
        mine = work.by_image.get(image_id)
        td.tasks_removed = mine.tasks_removed if mine else 0
        td.annotations_withdrawn = mine.annotations_withdrawn if mine else 0
    # Import archives: a finished job's is dead weight and may hold these photos (jobs finished
    # before archives were deleted on finishing kept theirs); an unfinished job keeps its own
    # until it finishes (it is still reading it), and then deletes it (`import_job_run`).
    import_job_archives_delete(jobs=ImportJob.objects.filter(spec_id__in=sorted({im.spec_id for im in images})))
    for td in takedowns.values():
        td.save(update_fields=["snapshot_items", "exports_withdrawn", "tasks_removed", "annotations_withdrawn"])
    for spec_id in sorted({im.spec_id for im in images}):
        spec_stats_refresh_soon(spec_id=spec_id)
    names = [n for td in takedowns.values() for n in td.files_erased] + zips

    def erase() -> None:
        for name in names:
            try:
                default_storage.delete(name)
            except Exception:  # noqa: BLE001 - one file that cannot go must not keep the others
                log.exception("takedown: could not delete %s", name)

    transaction.on_commit(erase)
    return [takedowns[i] for i in ids]


def image_takedown(*, image: Image, kind: str, reason: str, requested_by: str, actor: User | None) -> Takedown:
    """Take `image` down: a copyright holder's takedown or a personal-data erasure request.

    Unlike `image_delete` it works on any image, frozen in snapshots, shown by a guide or
    annotated. In one transaction it records a `Takedown`, marks the image taken down (the row
    stays as a tombstone, without its original file name and metadata), marks its frozen
    snapshot items (the hash still covers them; rebuild-check reports the amendment and exports
    built afterwards leave them out, listing them in TAKEDOWNS.json), withdraws every done
    export zip that holds it (its file deleted, downloads answer 410 Gone), queues again any
    export running on those snapshots, and takes its work out of the queues
    (`labeling.services.tasks_take_down`; each row records its own image's counts). Its files
    (the image and the thumbnail, the withdrawn zips, and the archives finished import jobs of
    its spec still hold: `import_job_archives_delete`) are deleted only once the transaction
    commits: a rollback keeps them.
    From then on no endpoint serves its pixels or a crop of them (410 Gone).

    The image's row is locked (SELECT ... FOR UPDATE on PostgreSQL), so two concurrent
    takedowns of one image cannot both pass the "already taken down" check; a unique
    constraint on the takedown's image id backs it.
    """
    reason, requested_by = _takedown_check(kind=kind, reason=reason, requested_by=requested_by)
    with transaction.atomic():
        # FOR NO KEY UPDATE (as the UPDATE below takes anyway), not FOR UPDATE: work in flight on
        # the image's tasks (a save, a release, a review) that updates a task row twice checks its
        # foreign key to the image at commit with KEY SHARE, which FOR UPDATE blocks; we then
        # waited for its annotation while it waited for us (a deadlock, one side a 500).
        locked = Image.objects.select_for_update(no_key=True).get(pk=image.pk)
        if locked.taken_down_at is not None:
            raise ValidationError({"image": f"This image was already taken down on {locked.taken_down_at:%Y-%m-%d}."})
        (takedown,) = _takedown_images(images=[locked], kind=kind, reason=reason, requested_by=requested_by,
                                       actor=actor, whole_source=False)
    image.refresh_from_db()
    return takedown


def source_takedown(*, source: Source, kind: str, reason: str, requested_by: str, actor: User | None) -> list[Takedown]:
    """Take down every image of `source` not taken down yet (a rights holder withdrawing a whole
    collection), in every spec, as `image_takedown` does for one; one Takedown row per image,
    marked ``whole_source``. Refused when the source has no image left to take down."""
    reason, requested_by = _takedown_check(kind=kind, reason=reason, requested_by=requested_by)
    with transaction.atomic():
        images = list(Image.objects.select_for_update(no_key=True).filter(source=source, taken_down_at__isnull=True)
                      .order_by("id"))
        if not images:
            raise ValidationError({"source": "This source has no image left to take down."})
        return _takedown_images(images=images, kind=kind, reason=reason, requested_by=requested_by,
                                actor=actor, whole_source=True)


# ------------------------------------------------------ folders, zips, jobs


@dataclass
class FileFailure:
    """A file an import could not take, and why."""

    file: str
    error: str


@dataclass
class BatchIngestReport:
    """What a folder or zip import did, file by file."""

    imported: int = 0
    duplicates: int = 0
    failures: list[FileFailure] = field(default_factory=list)
    warnings: list[FileFailure] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.imported + self.duplicates + len(self.failures)


def iter_image_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) for every image file in a folder (recursively) or a zip file. A zip
    member larger than the upload limit is a ValidationError naming it, before it is read."""
    path = Path(path)
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                yield nfc(str(p.relative_to(path))), p.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in _zip_image_members(zf):
                item = _zip_item(zf, info)
                if item.data is None:
                    raise ValidationError({"path": f"{item.name}: {item.error}"})
                yield item.name, item.data
    else:
        raise ValidationError({"path": f"{path} is neither a folder nor a zip file."})


def _zip_image_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The members of a zip that an import reads: image files, not folders nor macOS resource forks."""
    return [info for info in zf.infolist()
            if not info.is_dir() and os.path.splitext(info.filename)[1].lower() in IMAGE_SUFFIXES
            and not os.path.basename(info.filename).startswith("._")]


def _zip_item(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> IngestItem:
    """One zip member as an IngestItem, or as a failure when it cannot be taken.

    The size the member declares is checked *before* it is decompressed: a zip bomb (a few
    hundred kilobytes that inflate to gigabytes) would otherwise be read whole into the worker's
    memory only to be refused by `decode_image` afterwards. zipfile never inflates a member
    beyond its declared size (a member that lies fails its CRC check), so the check holds."""
    limit = settings.MATHSET_MAX_UPLOAD_BYTES
    # As meant, not as CP437 mojibake: Korean Windows writes CP949 names without the UTF-8 flag.
    name = zip_member_name(info)
    if info.file_size > limit:
        return IngestItem(name=name, data=None,
                          error=f"the file is {info.file_size} bytes uncompressed; the limit is {limit} bytes.")
    try:
        return IngestItem(name=name, data=zf.read(info))
    except Exception as exc:  # noqa: BLE001 - zlib.error, BadZipFile, RuntimeError (encrypted), NotImplementedError...
        # A corrupt, encrypted or oddly compressed member is listed; the others still import.
        return IngestItem(name=name, data=None, error=f"unreadable zip member: {exc}")


@dataclass
class IngestItem:
    """One file of a batch import and what is already known about it.

    `name` is the stored file name; `label` the file as the user knows it (an ink
    rendered to `x.png` is reported as `x.inkml`), `name` when empty. `error` marks a
    file the caller could not even read or render (listed as a failure, never
    ingested); `warning` is kept with the report if the file goes in.
    """

    name: str
    data: bytes | None
    truth_latex: str = ""
    meta: dict = field(default_factory=dict)
    capture_session: str = ""
    error: str = ""
    warning: str = ""
    label: str = ""

    @property
    def shown_name(self) -> str:
        return self.label or self.name


def _ingest_chunk(*, spec, source, chunk: list[IngestItem], cats, uploaded_by) -> IngestResult:
    return images_ingest(
        spec=spec, source=source, files=[(it.name, it.data) for it in chunk], categories=cats,
        uploaded_by=uploaded_by, truth_latex=[it.truth_latex for it in chunk], meta=[it.meta for it in chunk],
        capture_sessions=[it.capture_session[:120] for it in chunk],
    )


def ingest_batch(
    *,
    spec: DatasetSpec,
    source: Source,
    items: Iterable[IngestItem],
    categories: Iterable[str | int | Category] = (),
    uploaded_by: User | None = None,
    chunk_size: int = 50,
    limit: int | None = None,
    on_progress=None,
) -> BatchIngestReport:
    """Import many files: a bad file is listed with its reason, the rest go in.

    Files go through `images_ingest` `chunk_size` at a time (one transaction and one
    bulk insert per chunk, which is what makes large imports fast). A chunk that fails
    because of one bad file is retried file by file, so only that file is refused.
    Licence and categories are checked once, before anything is read: those refuse
    the whole import. `limit` stops after that many files were taken (imported or
    duplicate). `on_progress(report)` is called after every chunk.
    """
    licence_check(spec=spec, source=source)
    cats = resolve_categories(spec=spec, values=categories)
    report = BatchIngestReport()
    chunk: list[IngestItem] = []

    def flush() -> None:
        if not chunk:
            return
        try:
            parts = [(chunk, _ingest_chunk(spec=spec, source=source, chunk=chunk, cats=cats, uploaded_by=uploaded_by))]
        except ValidationError:
            parts = []
            for it in chunk:
                try:
                    parts.append(([it], _ingest_chunk(spec=spec, source=source, chunk=[it], cats=cats,
                                                      uploaded_by=uploaded_by)))
                except ValidationError as exc:
                    report.failures.append(FileFailure(it.shown_name, "; ".join(exc.messages)))
        for group, result in parts:
            report.imported += len(result.created)
            report.duplicates += len(result.duplicates)
            report.warnings += [FileFailure(it.shown_name, it.warning) for it in group if it.warning]
        chunk.clear()
        if on_progress:
            on_progress(report)

    for item in items:
        if limit is not None and report.imported + report.duplicates + len(chunk) >= limit:
            break
        if item.error or item.data is None:
            report.failures.append(FileFailure(item.shown_name, item.error or "no data"))
            continue
        chunk.append(item)
        if len(chunk) >= chunk_size:
            flush()
    flush()
    return report


def ingest_stream(
    *,
    spec: DatasetSpec,
    source: Source,
    items: Iterable[tuple[str, bytes]],
    categories: Iterable[str | int | Category] = (),
    uploaded_by: User | None = None,
    truths: dict[str, str] | None = None,
    capture_session_of=None,
    on_progress=None,
    chunk_size: int = 25,
) -> BatchIngestReport:
    """Import (name, bytes) pairs: a bad file is listed with its reason, the rest go in.

    `truths` maps a file's base name to its LaTeX; `capture_session_of(name)` names
    its capture session. A thin adapter over `ingest_batch`.
    """
    def as_items() -> Iterator[IngestItem]:
        for name, data in items:
            yield IngestItem(
                name=name, data=data, truth_latex=(truths or {}).get(os.path.basename(name), ""),
                capture_session=capture_session_of(name) if capture_session_of else "",
            )

    return ingest_batch(spec=spec, source=source, items=as_items(), categories=categories,
                        uploaded_by=uploaded_by, chunk_size=chunk_size, on_progress=on_progress)


def _archive_base_name(filename: str, max_bytes: int = 120) -> str:
    """The uploaded archive's base name, cut to `max_bytes` of UTF-8 (its suffix kept).

    Browsers send names of up to 255 characters; with the folder and time prefix, and
    at two or three bytes a character for umlauts or Cyrillic, they exceed both the
    file system's 255-byte limit on a name and the job's `archive` column.
    """
    base = os.path.basename(filename.replace("\\", "/")) or "archive.zip"
    stem, suffix = os.path.splitext(base)
    if len(suffix.encode()) > 16:  # not a real suffix: part of the name
        stem, suffix = base, ""
    room = max_bytes - len(suffix.encode())
    stem = stem.encode()[:room].decode("utf-8", errors="ignore") or "archive"
    return stem + suffix


@transaction.atomic
def import_job_create(
    *, spec: DatasetSpec, source: Source, archive: bytes | File, filename: str,
    categories: Iterable[str | int | Category] = (), created_by: User | None = None,
) -> ImportJob:
    """Queue a zip of images for ingest by a worker.

    `archive` is the zip's bytes or a file: an upload is passed as it came, never read into memory
    (a big one is a temporary file, which the storage moves into place). One over
    MATHSET_MAX_ARCHIVE_BYTES is refused here too: the API refuses it while it streams in, but
    this is the one write path, whoever calls it.
    """
    licence_check(spec=spec, source=source)
    cats = resolve_categories(spec=spec, values=categories)
    size, limit = (len(archive) if isinstance(archive, bytes) else archive.size), settings.MATHSET_MAX_ARCHIVE_BYTES
    if size > limit:
        raise ValidationError({"archive": f"{filename}: {too_big(size=size, limit=limit)}"})
    fh = io.BytesIO(archive) if isinstance(archive, bytes) else archive
    is_zip = zipfile.is_zipfile(fh)  # reads only the end of the file, where a zip's directory is
    fh.seek(0)
    if not is_zip:
        raise ValidationError({"archive": f"{filename}: not a zip file."})
    with guarded_files() as guard:
        name = guard.save(f"imports/{spec.id}/{timezone.now():%Y%m%d%H%M%S}-{_archive_base_name(filename)}", archive)
        job = ImportJob.objects.create(spec=spec, source=source, archive=name, created_by=created_by)
        job.categories.set(cats)
    from .tasks import run_import_job

    transaction.on_commit(lambda: run_import_job.delay(job.id))
    return job


def import_job_run(*, job: ImportJob, resume: bool = False) -> ImportJob:
    """Ingest the job's zip, recording counts and per-file errors as it goes. Idempotent:
    images already stored count as duplicates on a re-run.

    Resumable: the members whose outcome is already recorded (imported, duplicate or
    failed, in archive order) are skipped, so a run cut short by the task's time limit is
    queued again and goes on where it stopped, and `resume=True` takes over a job left
    ``running`` by a worker that died (its task message is delivered again).
    """
    from celery.exceptions import SoftTimeLimitExceeded

    claimable = [ImportJob.Status.QUEUED] + ([ImportJob.Status.RUNNING] if resume else [])
    claimed_at = timezone.now()
    claimed = ImportJob.objects.filter(id=job.id, status__in=claimable).update(
        status=ImportJob.Status.RUNNING, started_at=claimed_at)
    if not claimed:
        return job
    job.refresh_from_db()
    imported_before, duplicates_before, errors_before = job.imported, job.duplicates, list(job.errors)
    done_before = imported_before + duplicates_before + len(errors_before)

    def progress(report: BatchIngestReport) -> None:
        # Failures too, as they happen: the progress bar counts every file settled, not only those stored.
        ImportJob.objects.filter(id=job.id).update(
            imported=imported_before + report.imported, duplicates=duplicates_before + report.duplicates,
            errors=errors_before + [{"file": f.file, "error": f.error} for f in report.failures])

    try:
        with default_storage.open(job.archive, "rb") as fh, zipfile.ZipFile(fh) as zf:
            members = _zip_image_members(zf)
            job.total = len(members)
            job.save(update_fields=["total"])
            # Members are read one chunk at a time (never the whole archive in memory), each
            # refused unread when it declares more than the upload limit (see _zip_item).
            report = ingest_batch(spec=job.spec, source=job.source,
                                  items=(_zip_item(zf, m) for m in members[done_before:]),
                                  categories=list(job.categories.all()), uploaded_by=job.created_by,
                                  chunk_size=25, on_progress=progress)
            progress(report)  # failures after the last chunk
    except SoftTimeLimitExceeded:
        # A large zip outlives one task: keep what is recorded and go on in a fresh task,
        # unless not even one chunk got through (the next run would stop at the same place).
        job.refresh_from_db()
        if job.imported + job.duplicates + len(job.errors) > done_before:
            ImportJob.objects.filter(id=job.id).update(status=ImportJob.Status.QUEUED)
            from .tasks import run_import_job

            transaction.on_commit(lambda: run_import_job.delay(job.id))
            job.status = ImportJob.Status.QUEUED
            return job
        job.status = ImportJob.Status.FAILED
        job.errors = job.errors + [{"file": job.archive, "error": "stopped by the worker's time limit before "
                                    "one more chunk of files was ingested; nothing more could be imported."}]
    except Exception as exc:  # the job, not the worker, records what went wrong
        if isinstance(exc, KEPT):  # an unexpected one is logged, with a reference, by public_error
            log.exception("import job %s failed", job.id)
        message = public_error(exc, what="import", subject=f"import job {job.id}")
        job.status = ImportJob.Status.FAILED
        # Chunks ingested before the failure are stored: keep the counts and errors `progress` recorded.
        job.imported, job.duplicates, job.errors = ImportJob.objects.values_list(
            "imported", "duplicates", "errors").get(id=job.id)
        job.errors = job.errors + [{"file": job.archive, "error": message}]
    else:
        job.status = ImportJob.Status.DONE
        job.imported, job.duplicates = imported_before + report.imported, duplicates_before + report.duplicates
        job.errors = errors_before + [{"file": f.file, "error": f.error} for f in report.failures]
    job.finished_at = timezone.now()
    with transaction.atomic():
        # Only the run that still holds the job writes its outcome: a worker the sweep took the job
        # from (queued again, or failed) may finish late, while a rescued run reads the archive.
        if not ImportJob.objects.select_for_update().filter(
                id=job.id, status=ImportJob.Status.RUNNING, started_at=claimed_at).exists():
            log.warning("import job %s: a later run or the sweep took it over; this run's outcome is dropped", job.id)
            job.refresh_from_db()
            return job
        job.save()
        # Done or failed is final (only a `running` job is ever rescued): its archive goes.
        import_job_archives_delete(jobs=ImportJob.objects.filter(id=job.id))
    job.refresh_from_db(fields=["archive"])
    return job


def import_job_archives_delete(*, jobs) -> list[str]:
    """Delete the uploaded archives of the finished jobs among `jobs` (a queryset), once the
    caller's transaction commits, and clear their `archive` names; returns the names.

    A job is finished for good when done or failed: nothing claims it again (the import task
    claims only ``queued`` jobs, or ``running`` ones on redelivery, and the beat sweep rescues
    only ``running`` ones), so its archive is dead weight, and it may hold photos taken down
    since. A queued or running job keeps its archive (it may still go on; it is deleted when it
    finishes). The job row stays with its report: counts and per-file errors, which name the
    archive where the error was the archive's.
    """
    finished = [ImportJob.Status.DONE, ImportJob.Status.FAILED]
    with transaction.atomic():
        rows = list(jobs.select_for_update().filter(status__in=finished).exclude(archive="")
                    .order_by("id").values_list("id", "archive"))
        if not rows:
            return []
        ImportJob.objects.filter(id__in=[i for i, _ in rows]).update(archive="")
        names = [name for _, name in rows]

        def delete() -> None:
            for name in names:
                try:
                    default_storage.delete(name)
                except Exception:  # noqa: BLE001 - one archive that cannot go must not keep the others
                    log.exception("could not delete import archive %s", name)

        transaction.on_commit(delete)
    return names


# ------------------------------------------------------------ Label Studio and CVAT: the shared steps


# Hashes (or images) one lookup's IN list holds at the most: a list over every image of a large import
# would pass SQLite's bound-variable limit (32,766 in most builds, 999 before 3.32) or psycopg 3's with
# server-side binding (65,535), a traceback after every file was read and decoded.
IMPORT_LOOKUP_CHUNK = 900


def _chunks(values: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _images_by_sha256(*, spec: DatasetSpec, hashes: Iterable[str]) -> dict[str, Image]:
    """The images of `spec` having one of `hashes`, by hash: IMPORT_LOOKUP_CHUNK hashes a query."""
    found: dict[str, Image] = {}
    for chunk in _chunks(list(dict.fromkeys(hashes)), IMPORT_LOOKUP_CHUNK):
        found.update((im.sha256, im) for im in Image.objects.filter(spec=spec, sha256__in=chunk))
    return found


class _ImportTotals:
    """What an import's report (`LabelStudioImport`, `CvatImport`) sums over its items (`_items`)."""

    problems: list[tuple[str, str]]

    def _items(self) -> list[LabelStudioTask] | list[CvatImage]:
        raise NotImplementedError

    def all_problems(self) -> list[tuple[str, str]]:
        return self.problems + [p for item in self._items() for p in item.problems]

    @property
    def images_new(self) -> int:
        return sum(1 for item in self._items() if item.image == "new")

    @property
    def images_duplicate(self) -> int:
        return sum(1 for item in self._items() if item.image.startswith("duplicate"))

    def region_kinds(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for item in self._items():
            for k, n in item.kinds.items():
                total[k] = total.get(k, 0) + n
        return total


def _import_setup(*, problems: list[tuple[str, str]], spec: DatasetSpec, source: Source,
                  categories: Iterable[str | int | Category],
                  category_map: dict[str, str] | None) -> tuple[list[Category], set[str], dict[str, str]]:
    """What an import checks first: the source's licence, the categories given, the category map's
    slugs (problems appended). Returns the categories, the spec's slugs and the map."""
    try:
        licence_check(spec=spec, source=source)
    except ValidationError as exc:
        problems.append(("source", "; ".join(exc.messages)))
    cats = resolve_categories(spec=spec, values=categories)
    spec_slugs = set(Category.objects.filter(spec=spec).values_list("slug", flat=True))
    category_map = dict(category_map or {})
    for label, slug in category_map.items():
        if slug and slug not in spec_slugs:
            problems.append(("category_map", f"{label}={slug}: the spec has no category {slug!r} "
                                             f"(slugs: {', '.join(sorted(spec_slugs))})."))
    return cats, spec_slugs, category_map


def _import_images_index(*, problems: list[tuple[str, str]], images_dir: Path) -> Mapping[str, list[Path]]:
    """The files of the images folder by base name (`labelstudio_import.index_images`), read once."""
    from . import labelstudio_import as ls

    if not images_dir.is_dir():
        problems.append(("images", f"{images_dir} is not a folder."))
        return ls.ImageIndex()
    return ls.index_images(images_dir)


def _import_file_read(plan: LabelStudioTask | CvatImage, path: Path, *, images_dir: Path, field: str,
                      error: type[ValueError]) -> DecodedImage:
    """The image file an item names, checked, noted on `plan` and decoded; `error(field, message)`
    is raised for a file that cannot be imported.

    Checked here, not by the index (audit): a name that is not UTF-8 (a CP949 zip unpacked here,
    named by a "\\udcc7" escape) cannot be stored (UnicodeEncodeError at the write); a link out of the
    folder would import a file the export never held (the index follows file links, so a folder of
    links into the folder itself still works); a file over the upload limit is refused before it is
    read whole into memory.
    """
    from common.fields import unstorable_char

    rel = str(path.relative_to(images_dir))
    if unstorable_char(rel):
        raise error(field, f"the file name {rel!r} is not UTF-8 (or holds a NUL): rename the file.")
    if not path.resolve().is_relative_to(images_dir.resolve()):
        raise error(field, f"{rel} is a link to a file outside the images folder: copy the file in.")
    size = path.stat().st_size
    if size > settings.MATHSET_MAX_UPLOAD_BYTES:
        raise error(field, too_big_image(filename=path.name, size=size))
    plan.file, plan.path = nfc(rel), path       # NFC as every stored name (a Mac's are NFD)
    return decode_image(path.read_bytes(), path.name, field=field)


def _import_regions_checked(plan: LabelStudioTask | CvatImage, found, *, spec: DatasetSpec, decoded: DecodedImage,
                            spec_slugs: set[str], with_confidence: bool, sep: str) -> list[dict]:
    """An item's regions (`found`: its regions and where each came from) checked as the annotation
    format checks them, in their clean form; each problem goes on `plan` under the result or element
    the region came from (``origin[0].latex`` shown as ``origin`` `sep` ``latex``). Without
    `with_confidence` (a truth) a region's confidence is dropped, not refused."""
    from labeling.services import regions_clean

    probe = Image(spec=spec, width=decoded.width, height=decoded.height)
    clean: list[dict] = []
    for region, origin in zip(found.regions, found.origins, strict=True):
        if not with_confidence:
            region = {k: v for k, v in region.items() if k != "confidence"}
        try:
            clean += regions_clean(regions=[region], image=probe, field=origin, spec_categories=spec_slugs,
                                   with_confidence=with_confidence)
        except ValidationError as exc:
            for f, msgs in exc.message_dict.items():
                shown = f.replace(f"{origin}[0].", f"{origin}{sep}").replace(f"{origin}[0]", origin)
                plan.problems.append((shown, " ".join(msgs)))
    return clean


def _import_truth(plan: LabelStudioTask | CvatImage, regions: list[dict], axis_aligned: list[bool], *,
                  field: str, given: str) -> None:
    """An item's one region as its image's truth: its LaTeX, and its box when that is exact; more
    regions are a problem on `field` (`given`: what to import as predictions instead)."""
    if len(regions) > 1:
        plan.problems.append((field, f"{len(regions)} regions; a truth is one formula per image "
                                     f"(Image.truth_latex): import this {given} as predictions instead."))
        return
    if not regions:
        return
    (region,) = regions
    if not region["latex"]:
        plan.notes.append("the region has no LaTeX: no truth stored.")
        return
    plan.truth_latex = region["latex"]
    if region["kind"] == "quad" and axis_aligned[0]:
        xs = [p[0] for p in region["points"]]
        ys = [p[1] for p in region["points"]]
        plan.meta = {"ink_bbox": [min(xs), min(ys), max(xs), max(ys)]}
    else:
        plan.notes.append(f"its {region['kind']} is not kept: a truth holds the LaTeX and at most an "
                          "axis-aligned box.")


def _import_existing(plans: Sequence[LabelStudioTask | CvatImage], *, spec: DatasetSpec,
                     as_truth: bool) -> dict[str, Image]:
    """Notes on each readable item whether its image is new or already in `spec` (same sha256);
    returns those images by hash."""
    existing = _images_by_sha256(spec=spec, hashes=[p.sha256 for p in plans if p.sha256])
    for plan in plans:
        if plan.problems or not plan.sha256:
            continue
        plan.existing = existing.get(plan.sha256)
        plan.image = f"duplicate of image {plan.existing.pk}" if plan.existing else "new"
        if as_truth and plan.existing is not None and plan.truth_latex:
            plan.notes.append(f"already in the spec as image {plan.existing.pk}: its truth is left as it is.")
    return existing


def _import_kept(plans: Sequence[LabelStudioTask | CvatImage], *, existing: dict[str, Image], model_name: str,
                 model_version: str) -> None:
    """predictions_import keeps a prediction an annotation started from (not replaced) without a word:
    said per item and counted, or the summary would claim it stored (audit)."""
    from django.db.models import Exists, OuterRef

    from labeling.models import AnnotationVersion, Prediction

    if not existing or not model_name.strip() or not model_version.strip():
        return
    started = AnnotationVersion.objects.filter(started_from=OuterRef("pk"))
    kept: dict[int, Prediction] = {}
    for chunk in _chunks(list(existing.values()), IMPORT_LOOKUP_CHUNK):
        kept.update((p.image_id, p) for p in Prediction.objects.filter(
            Exists(started), image__in=chunk, model_name=model_name.strip(), model_version=model_version.strip()))
    for plan in plans:
        pred = kept.get(plan.existing.pk) if plan.existing is not None and plan.regions is not None else None
        if pred is not None:
            plan.kept = True
            plan.notes.append(f"already in the spec as image {plan.existing.pk}, with an annotation started "
                              f"from its prediction {pred.model_name}@{pred.model_version} (id {pred.pk}): "
                              "that prediction is kept as it is, not replaced.")


def _import_refuse(problems: list[tuple[str, str]]) -> None:
    """All of an import's problems as one ValidationError, by field."""
    if problems:
        errors: dict[str, list[str]] = {}
        for f, m in problems:
            errors.setdefault(f, []).append(m)
        raise ValidationError(errors)


def _import_write(report: LabelStudioImport | CvatImport, plans: Sequence[LabelStudioTask | CvatImage], *,
                  spec: DatasetSpec, source: Source, cats: list[Category], uploaded_by: User | None, as_truth: bool,
                  model_name: str, model_version: str, chunk: int,
                  origin: Callable[[LabelStudioTask | CvatImage], dict]) -> None:
    """An import's write, in one transaction: the new images ingested `chunk` files at a time (read
    again here: a project of thousands of photos does not fit in memory at once), their meta holding
    `origin(plan)`; then the truths counted, or each item's regions stored as a prediction (an
    item's ``confidence``, a Label Studio score, with it)."""
    from labeling.services import MAX_PREDICTION_ITEMS, predictions_import

    fresh = [p for p in plans if p.existing is None]
    # images_ingest's files join this guard: if storing the predictions fails, they go with the rows.
    with guarded_files(), transaction.atomic():
        image_of: dict[int, Image] = {p.index: p.existing for p in plans if p.existing is not None}
        for p in fresh:
            p.meta = {**p.meta, **origin(p)}
        for start in range(0, len(fresh), chunk):
            part = fresh[start:start + chunk]
            done = images_ingest(spec=spec, source=source,
                                 files=[(os.path.basename(p.file), p.path.read_bytes()) for p in part],
                                 categories=cats, uploaded_by=uploaded_by,
                                 truth_latex=[p.truth_latex for p in part], meta=[p.meta for p in part])
            report.created += done.created
            for p, outcome in zip(part, done.files, strict=True):
                image_of[p.index] = outcome.image
        if as_truth:
            report.truths = sum(1 for p in fresh if p.truth_latex)
            return
        items = []
        for p in plans:
            if p.regions is None:
                continue
            item = {"image": image_of[p.index].pk, "regions": p.regions}
            if getattr(p, "confidence", None) is not None:
                item["confidence"] = p.confidence
            items.append(item)
        for start in range(0, len(items), MAX_PREDICTION_ITEMS):
            report.predictions += len(predictions_import(
                model_name=model_name, model_version=model_version,
                items=items[start:start + MAX_PREDICTION_ITEMS], created_by=uploaded_by))
        report.kept = sum(1 for p in plans if p.kept)
        report.predictions -= report.kept


# ------------------------------------------------------------ Label Studio


# Image files read into memory at once while a Label Studio import writes (phone photos: ~3 MB each).
LABELSTUDIO_INGEST_CHUNK = 50


@dataclass
class LabelStudioTask:
    """What one task of a Label Studio export becomes (or why it cannot)."""

    index: int
    task_id: object = None
    file: str = ""
    used: str = ""                   # "annotation 17", "prediction 4", or "" (nothing to import)
    image: str = ""                  # "new", or "duplicate of image 12"
    kinds: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)   # (field, message)
    notes: list[str] = field(default_factory=list)
    # kept for the write (the file's path, not its bytes: a project of thousands of photos does
    # not fit in memory at once; they are read again, a chunk at a time)
    path: Path | None = None
    sha256: str = ""
    existing: Image | None = None
    regions: list[dict] | None = None
    confidence: float | None = None
    truth_latex: str = ""
    meta: dict = field(default_factory=dict)
    kept: bool = False               # its prediction of this version has an annotation started from it


@dataclass
class LabelStudioImport(_ImportTotals):
    """What `labelstudio_import` found (a dry run) or did: per task, and the totals."""

    tasks: list[LabelStudioTask] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)   # not tied to one task
    as_truth: bool = False
    dry_run: bool = False
    created: list[Image] = field(default_factory=list)
    predictions: int = 0
    kept: int = 0                    # predictions left as they were (an annotation started from them)
    truths: int = 0

    def _items(self) -> list[LabelStudioTask]:
        return self.tasks


def labelstudio_import(
    *,
    spec: DatasetSpec,
    source: Source,
    tasks: object,
    images_dir: Path,
    as_truth: bool = False,
    model_name: str = "label-studio",
    model_version: str = "",
    category_map: dict[str, str] | None = None,
    label_config: str | None = None,
    results: str = "auto",
    predictions: object = None,
    skip_unknown: bool = False,
    categories: Iterable[str | int | Category] = (),
    uploaded_by: User | None = None,
    dry_run: bool = False,
) -> LabelStudioImport:
    """Import a Label Studio JSON export (`tasks`, its image files in `images_dir`) into `spec`,
    all or nothing.

    Every task is read, its image file found and decoded, and its regions converted and checked
    (`curation.labelstudio_import` says how results become regions) before anything is written.
    Any problem refuses the whole import with a ValidationError whose fields name the task and the
    result (``tasks[3].annotations[0].result[2].value.points``); a dry run returns the report
    instead, problems included, and writes nothing. Then, in one transaction, the images are
    ingested as `images_ingest` does (licence check, exact duplicates by sha256 reused, not stored
    twice) and, by default, each task's regions become a prediction of
    `model_name`/`model_version` (`labeling.services.predictions_import`; re-importing the same
    version replaces it). If anything fails, the image files this call stored are deleted.

    `predictions`: Label Studio's predictions of the project (``GET /api/predictions/?project=ID``),
    for tasks that list theirs by id only, as its JSON export does.

    `as_truth`: the LaTeX becomes the image's truth (`Image.truth_latex`, a later gold answer), not a
    prediction. A truth is one formula per image, its LaTeX and at most an axis-aligned box
    (`meta["ink_bbox"]`, what `labeling.services._truth_answer` reads): a task with several
    regions is refused; a rectangle without rotation (or a 4-point polygon along the axes) keeps
    its box, any other shape only its LaTeX (said in the task's notes); an image already in the
    spec keeps the truth it has (noted).
    """
    from common.fields import unstorable_char
    from labeling.models import Prediction
    from labeling.services import MAX_REGIONS

    from . import labelstudio_import as ls

    report = LabelStudioImport(as_truth=as_truth, dry_run=dry_run)
    problems = report.problems
    cats, spec_slugs, category_map = _import_setup(problems=problems, spec=spec, source=source,
                                                   categories=categories, category_map=category_map)
    if not as_truth:
        for name, value in (("model_name", model_name), ("model_version", model_version)):
            limit = Prediction._meta.get_field(name).max_length
            if not value.strip() or len(value.strip()) > limit:
                problems.append((name, f"give 1 to {limit} characters."))
    config_keys = None
    if label_config is not None:
        try:
            config_keys = ls.config_image_keys(label_config)
        except ls.LabelStudioError as exc:
            problems.append((exc.field, exc.message))
    if not isinstance(tasks, list) or not tasks:
        problems.append(("tasks", "must be a non-empty list of Label Studio tasks (its JSON export)."))
        tasks = []
    by_id = None
    if predictions is not None:
        try:
            by_id = ls.predictions_by_id(predictions)
        except ls.LabelStudioError as exc:
            problems.append((exc.field, exc.message))
    index = _import_images_index(problems=problems, images_dir=images_dir)

    first_of_sha: dict[str, int] = {}
    for i, task in enumerate(tasks):
        where = f"tasks[{i}]"
        plan = LabelStudioTask(index=i)
        report.tasks.append(plan)
        try:
            if not isinstance(task, dict):
                raise ls.LabelStudioError(where, "must be an object (a Label Studio task).")
            task_id = task.get("id")
            # It is stored in the image's meta: NaN (Python's json reads it) is invalid JSON to SQLite's
            # check and to PostgreSQL's jsonb, an IntegrityError/DataError after the files went in;
            # a nested object would be stored whole (audit).
            if task_id is not None and (
                    isinstance(task_id, bool) or not isinstance(task_id, int | str)
                    or (isinstance(task_id, int) and not -2**63 <= task_id < 2**63)
                    or (isinstance(task_id, str) and (len(task_id) > 255 or unstorable_char(task_id)))):
                raise ls.LabelStudioError(f"{where}.id", "must be a number or a string (the Label Studio task id).")
            plan.task_id = task_id
            chosen = ls.choose_results(task, where=where, results=results, predictions=by_id)
            result_list = chosen[2]["result"] if chosen else []
            key, url = ls.task_image_url(task, where=where, config_keys=config_keys, results=result_list)
            path = ls.find_image_file(url, index, field=f"{where}.data.{key}")
            decoded = _import_file_read(plan, path, images_dir=images_dir, field=f"{where}.data.{key}",
                                        error=ls.LabelStudioError)
            plan.sha256 = decoded.sha256
            if decoded.sha256 in first_of_sha:
                raise ls.LabelStudioError(f"{where}.data.{key}", f"the same image as tasks[{first_of_sha[decoded.sha256]}]"
                                                                 " (same bytes): one image takes one task's regions.")
            first_of_sha[decoded.sha256] = i
            if chosen is not None:
                field_name, plan.used, item = chosen
                found = ls.task_regions(item["result"], where=field_name, width=decoded.width, height=decoded.height,
                                        spec_slugs=spec_slugs, category_map=category_map, skip_unknown=skip_unknown,
                                        max_regions=MAX_REGIONS)
                plan.kinds, plan.skipped = dict(found.kinds), dict(found.skipped)
                clean = _import_regions_checked(plan, found, spec=spec, decoded=decoded, spec_slugs=spec_slugs,
                                                with_confidence=not as_truth, sep=".")
                plan.regions = found.regions
                if field_name.split(".")[1].startswith("predictions"):
                    plan.confidence = ls.score_of(item, field_name)
                if plan.confidence is None:  # the queue's "lowest confidence first" reads the image's
                    scores = [r["confidence"] for r in found.regions if "confidence" in r]
                    plan.confidence = min(scores) if scores else None
                if as_truth:
                    _import_truth(plan, clean, found.axis_aligned, field=f"{field_name}.result", given="export")
        except ls.LabelStudioError as exc:
            plan.problems.append((exc.field, exc.message))
        except ValidationError as exc:
            plan.problems += [(f, " ".join(m)) for f, m in exc.message_dict.items()]
        except OSError as exc:
            plan.problems.append((f"{where}.data", f"cannot read the image file: {exc}"))
    existing = _import_existing(report.tasks, spec=spec, as_truth=as_truth)
    if not as_truth:
        _import_kept(report.tasks, existing=existing, model_name=model_name, model_version=model_version)
    if dry_run:
        return report
    _import_refuse(report.all_problems())
    _import_write(report, report.tasks, spec=spec, source=source, cats=cats, uploaded_by=uploaded_by,
                  as_truth=as_truth, model_name=model_name, model_version=model_version,
                  chunk=LABELSTUDIO_INGEST_CHUNK,
                  origin=lambda p: {"label_studio": {"task": p.task_id, "file": p.file}})
    return report


# ------------------------------------------------------------ CVAT


# Image files read into memory at once while a CVAT import writes (as LABELSTUDIO_INGEST_CHUNK).
CVAT_INGEST_CHUNK = 50


@dataclass
class CvatImage:
    """What one ``<image>`` of a CVAT XML file becomes (or why it cannot)."""

    index: int
    frame_id: str = ""
    name: str = ""
    file: str = ""
    image: str = ""                  # "new", or "duplicate of image 12"
    kinds: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)   # (field, message)
    notes: list[str] = field(default_factory=list)
    # kept for the write (the file's path, not its bytes: read again a chunk at a time)
    path: Path | None = None
    sha256: str = ""
    existing: Image | None = None
    regions: list[dict] | None = None    # None: no shape to import (no prediction stored)
    truth_latex: str = ""
    meta: dict = field(default_factory=dict)
    kept: bool = False               # its prediction of this version has an annotation started from it


@dataclass
class CvatImport(_ImportTotals):
    """What `cvat_import` found (a dry run) or did: per ``<image>``, and the totals."""

    images: list[CvatImage] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)   # not tied to one image
    as_truth: bool = False
    dry_run: bool = False
    model_version: str = ""
    created: list[Image] = field(default_factory=list)
    predictions: int = 0
    kept: int = 0
    truths: int = 0

    def _items(self) -> list[CvatImage]:
        return self.images


def cvat_import(
    *,
    spec: DatasetSpec,
    source: Source,
    annotations: Path,
    images_dir: Path,
    as_truth: bool = False,
    model_name: str = "cvat",
    model_version: str | None = None,
    category_map: dict[str, str] | None = None,
    latex_attribute: str = "latex",
    skip_unknown: bool = False,
    categories: Iterable[str | int | Category] = (),
    uploaded_by: User | None = None,
    dry_run: bool = False,
) -> CvatImport:
    """Import a CVAT for images 1.1 XML file (`annotations`, its image files in `images_dir`) into
    `spec`, all or nothing.

    The file is parsed safely (`curation.cvat_import`: no DTD, so no entity expansion; refused over
    its size limit before it is read), every ``<image>``'s file found and decoded, and its shapes
    converted and checked before anything is written. Any problem refuses the whole import with a
    ValidationError whose fields name the element (``image[3] polygon[1] points``); a dry run returns
    the report instead, problems included, and writes nothing. Then, in one transaction, the images
    are ingested as `images_ingest` does (licence check, exact duplicates by sha256 reused, not stored
    twice) and, by default, each image's regions become a prediction of `model_name`/`model_version`
    (`labeling.services.predictions_import`; re-importing the same version replaces it; an image
    without shapes gets none). `model_version` None: the task's name in the file's ``<meta>``, else
    the file's name without ``.xml``. If anything fails, the image files this call stored are deleted.

    `as_truth`: the LaTeX becomes the image's truth (`Image.truth_latex`), as `labelstudio_import`
    does it: one formula per image, its axis-aligned box kept as ``meta["ink_bbox"]`` when exact.
    """
    from common.fields import unstorable_char
    from labeling.models import Prediction
    from labeling.services import MAX_REGIONS

    from . import cvat_import as ci

    report = CvatImport(as_truth=as_truth, dry_run=dry_run)
    problems = report.problems
    cats, spec_slugs, category_map = _import_setup(problems=problems, spec=spec, source=source,
                                                   categories=categories, category_map=category_map)
    if not latex_attribute.strip():
        problems.append(("latex_attribute", "name the attribute holding the LaTeX."))
    try:
        document = ci.read_annotations(annotations)
    except ci.CvatError as exc:
        problems.append((exc.field, exc.message))
        document = ci.Document(version="", task_name="", frames=[])
    if model_version is None:
        model_version = (document.task_name or annotations.stem)[:Prediction._meta.get_field("model_version").max_length]
    report.model_version = model_version.strip()
    if not as_truth:
        for name, value in (("model_name", model_name), ("model_version", model_version)):
            limit = Prediction._meta.get_field(name).max_length
            if not value.strip() or len(value.strip()) > limit or unstorable_char(value):
                problems.append((name, f"give 1 to {limit} characters."))
    index = _import_images_index(problems=problems, images_dir=images_dir)

    first_of_sha: dict[str, int] = {}
    first_of_name: dict[str, int] = {}
    for frame in document.frames:
        where = frame.where
        plan = CvatImage(index=frame.index, frame_id=frame.attrib.get("id", "")[:40],
                         name=frame.name[:ci.MAX_NAME_LENGTH])       # a longer one is refused, not echoed
        report.images.append(plan)
        try:
            if frame.name in first_of_name:
                raise ci.CvatError(f"{where} name", f"{frame.name[:200]!r} is also the name of "
                                                    f"image[{first_of_name[frame.name]}]: one <image> per file.")
            first_of_name[frame.name] = frame.index
            width, height = ci.frame_size(frame)
            path = ci.find_frame_file(frame.name, images_dir, index, field=f"{where} name")
            decoded = _import_file_read(plan, path, images_dir=images_dir, field=f"{where} name", error=ci.CvatError)
            for key, declared, actual in (("width", width, decoded.width), ("height", height, decoded.height)):
                if declared is not None and declared != actual:
                    raise ci.CvatError(f"{where} {key}", f"{declared}, but the image file {path.name} is "
                                                         f"{decoded.width}x{decoded.height}: not the image these "
                                                         "shapes were drawn on.")
            plan.sha256 = decoded.sha256
            if decoded.sha256 in first_of_sha:
                raise ci.CvatError(f"{where} name", f"the same image as image[{first_of_sha[decoded.sha256]}] (same "
                                                    "bytes): one image takes one <image>'s shapes.")
            first_of_sha[decoded.sha256] = frame.index
            found = ci.frame_regions(frame, width=decoded.width, height=decoded.height, spec_slugs=spec_slugs,
                                     category_map=category_map, latex_attribute=latex_attribute,
                                     skip_unknown=skip_unknown, max_regions=MAX_REGIONS)
            plan.kinds, plan.skipped = dict(found.kinds), dict(found.skipped)
            clean = _import_regions_checked(plan, found, spec=spec, decoded=decoded, spec_slugs=spec_slugs,
                                            with_confidence=False, sep=" ")
            plan.regions = found.regions or None
            if as_truth:
                _import_truth(plan, clean, found.axis_aligned, field=where, given="file")
        except ci.CvatError as exc:
            plan.problems.append((exc.field, exc.message))
        except ValidationError as exc:
            plan.problems += [(f, " ".join(m)) for f, m in exc.message_dict.items()]
        except OSError as exc:
            plan.problems.append((f"{where} name", f"cannot read the image file: {exc}"))
    existing = _import_existing(report.images, spec=spec, as_truth=as_truth)
    if not as_truth:
        _import_kept(report.images, existing=existing, model_name=model_name, model_version=report.model_version)
    if dry_run:
        return report
    _import_refuse(report.all_problems())
    _import_write(report, report.images, spec=spec, source=source, cats=cats, uploaded_by=uploaded_by,
                  as_truth=as_truth, model_name=model_name, model_version=report.model_version,
                  chunk=CVAT_INGEST_CHUNK,
                  origin=lambda p: {"cvat": {"name": p.name, "file": p.file, "id": p.frame_id}})
    return report
