"""QA statistics of a spec, computed over the database and stored as a :class:`QAReport`.

:func:`spec_stats_compute` reads rows with a fixed number of ``values()`` queries (never one
per row) and hands them to the pure functions of :mod:`pipeline.qa`; what is a plain count
(review decisions and reasons, accepted tasks, cost, formulas) is a SQL aggregate.

What is compared:

* **agreement**: tasks with two or more handed-in (submitted, accepted or rejected) annotations; the
  handed-in version of each (for a rejected one, the version its review judged, not a rework draft)
  is compared pairwise (Hungarian matching, :func:`qa.agreement`);
* **gold**: the handed-in version (as for agreement) of every handed-in or rejected annotation of a gold task
  against the task's ``gold_answer`` regions, or, where the gold answer has LaTeX but no region
  (imported truths without an ink box), against its LaTeX alone (``latex_only_tasks``);
* **reviews**: every review decision of the spec, with its reasons;
* **prelabel**: accepted annotations that started from a model's prediction (the first such
  prediction among their versions) against their accepted version, per model version
  (``name@version``) and category;
* **throughput**: seconds per annotation (the sum over its versions), accepted tasks times their
  batch's unit price per vendor and currency, and cost per formula (regions of the accepted answer
  of each accepted task that a snapshot keeps: the last accepted one when the task had overlap).

The region-by-region comparisons (agreement, gold, pre-label changes) run in Python on the most
recent ``SAMPLE_LIMIT`` items of each kind, so a report's cost stays bounded as a spec grows;
each section says how many items it covers (``items``) out of how many exist (``of``).
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from decimal import Decimal

import orjson
from django.db import transaction
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Count,
    Exists,
    F,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from common.analytics import analytic_reads
from curation.models import DatasetSpec, Image
from labeling.models import Annotation, AnnotationVersion, Prediction, Region, Review, Task

from . import qa
from .models import QAReport

SAMPLE_LIMIT = 5_000
KEEP_REPORTS = 20
CENT_PLACES = Decimal("0.0001")  # Batch.unit_price has 4 decimal places
PER_FORMULA_PLACES = Decimal("0.000001")
# Independent answers handed in, whatever the review said (a rejected answer counts too: leaving
# it out would make agreement look better than the raw work is).
HANDED_IN = (Annotation.Status.SUBMITTED, Annotation.Status.ACCEPTED, Annotation.Status.REJECTED)


def _reviewed() -> Exists:
    return Exists(Review.objects.filter(annotation=OuterRef("pk")))


def _handed_in() -> Q:
    """Annotations handed in. A withdrawn one (its annotator was switched off, see
    labeling.services.member_work_release) was handed in when a review sent it back: a
    withdrawn rework counts like the rejected answer it was; a withdrawn draft never did."""
    return Q(status__in=HANDED_IN) | Q(_reviewed(), status=Annotation.Status.WITHDRAWN)


def _never_handed_in() -> Q:
    """Drafts, and drafts withdrawn when their annotator was switched off."""
    return Q(status=Annotation.Status.DRAFT) | Q(~_reviewed(), status=Annotation.Status.WITHDRAWN)


# ------------------------------------------------------------------ loading


def _json(column: str) -> Cast:
    # JSON as text, parsed with orjson: Django's per-row json.loads was most of the loading time.
    return Cast(column, output_field=TextField())


def _chunks(ids: list) -> list[list]:
    """`ids` in slices that fit one ``any_of`` lookup: one array parameter on PostgreSQL, an IN
    list elsewhere (SQLite caps the parameters of a statement)."""
    from django.db import connection

    size = 100_000 if connection.vendor == "postgresql" else 500
    return [ids[k:k + size] for k in range(0, len(ids), size)]


def _regions(version_ids: list[int]) -> dict[int, list[qa.Region]]:
    """Regions of the versions in `version_ids`, in index order.

    Ids already read, not a subquery: the sample's subquery (a scan of the spec's annotations)
    would run once more per query."""
    out: dict[int, list[qa.Region]] = defaultdict(list)
    for chunk in _chunks(sorted({v for v in version_ids if v is not None})):
        rows = (Region.objects.filter(version_id__any_of=chunk).order_by("version_id", "index")
                .values_list("version_id", _json("points"), _json("mask_rle"), "latex", "latex_normalized"))
        for vid, points, mask, text, normalized in rows:
            # The stored normalised form (space-separated tokens) spares normalising the LaTeX again.
            tokens = tuple(normalized.split()) if normalized or not text else None
            out[vid].append(qa.Region(points=orjson.loads(points) if points else None,
                                      mask_rle=orjson.loads(mask) if mask else None, latex=text or "", tokens=tokens))
    return out


def _answer_regions(items: list | None) -> list[qa.Region]:
    """Regions in the annotation format (predictions, gold answers) as qa.Region."""
    # a prediction's confidence was checked on import (labeling.services: a number in 0..1)
    return [qa.Region(points=r.get("points"), mask_rle=r.get("mask"), latex=r.get("latex") or "",
                      confidence=r.get("confidence"))
            for r in items or [] if isinstance(r, dict)]


def _categories(image_ids: list[int]) -> dict[int, tuple[str, ...]]:
    """Category slugs per image of `image_ids`."""
    from curation.models import Category

    pairs: list[tuple[int, int]] = []
    for chunk in _chunks(sorted(set(image_ids))):
        pairs += Image.categories.through.objects.filter(image_id__any_of=chunk).values_list("image_id", "category_id")
    # Slugs looked up once per category, not joined on every row.
    slugs = dict(Category.objects.filter(id__in={c for _, c in pairs}).values_list("id", "slug"))
    out: dict[int, list[str]] = defaultdict(list)
    for image_id, category_id in pairs:
        out[image_id].append(slugs[category_id])
    return {k: tuple(sorted(v)) for k, v in out.items()}


def _named(groups: dict, names: dict) -> list[dict]:
    return sorted(({"id": k, "name": names.get(k, str(k)), **v} for k, v in groups.items()),
                  key=lambda r: (str(r["name"]), str(r["id"])))


# ----------------------------------------------------------------- sections


def _handed_in_version():
    """The version of an annotation that was handed in: the current one, except for a rejected
    annotation, whose current version may be a rework draft not handed in yet; for it, the
    version the rejecting review was about. Agreement and gold accuracy score what annotators
    handed in, not what they are halfway through changing.

    Likewise an annotation accepted with corrections: its current version is the reviewer's fix
    (what the data set gets), the annotator's is the one the review decided on. Accepted work
    without a review (imported) keeps its current version."""
    judged = (Review.objects.filter(annotation=OuterRef("pk")).order_by("-created_at", "-id")
              .values("version_id")[:1])
    return Case(When(status__in=(Annotation.Status.REJECTED, Annotation.Status.WITHDRAWN), then=Subquery(judged)),
                When(status=Annotation.Status.ACCEPTED, then=Coalesce(Subquery(judged), F("current_id"))),
                default=F("current_id"),
                output_field=BigIntegerField())


def _agreement(annotations, vendor_names: dict, annotator_names: dict) -> dict:
    # Only tasks asking for two or more annotators can have them: a cheap filter before grouping.
    handed_in = annotations.filter(_handed_in(), task__overlap__gte=2)
    overlapped = list(handed_in.values("task_id").annotate(n=Count("id")).filter(n__gte=2)
                      .order_by("-task_id").values_list("task_id", flat=True))
    total = len(overlapped)
    picked = handed_in.filter(task_id__any_of=overlapped[:SAMPLE_LIMIT])
    rows = list(picked.order_by("task_id", "annotator_id").values(
        "task_id", "annotator_id", handed_id=_handed_in_version(), vendor_id=F("task__batch__vendor_id"),
        image_id=F("task__image_id")))
    regions = _regions([r["handed_id"] for r in rows])
    cats = _categories([r["image_id"] for r in rows])
    by_task: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task_id"]].append(r)
    tasks = [qa.OverlapTask(tid, [qa.Labeling(r["annotator_id"], r["vendor_id"], regions.get(r["handed_id"], []))
                                  for r in rs], cats.get(rs[0]["image_id"], ()))
             for tid, rs in by_task.items()]
    result = qa.agreement(tasks)
    return {"items": len(tasks), "of": total, "overall": result["overall"],
            "by_vendor": _named(result["by_vendor"], vendor_names),
            "by_annotator": _named(result["by_annotator"], annotator_names),
            "by_category": _named(result["by_category"], {})}


def _gold_truth(answer: dict | None) -> tuple[list[qa.Region], qa.Region | None]:
    """``(truth regions, truth LaTeX)`` of a task's ``gold_answer``; the LaTeX only where the answer
    has no region (an imported truth without an ink box: scored on the LaTeX, see qa.gold_accuracy)."""
    answer = answer if isinstance(answer, dict) else {}
    regions = _answer_regions(answer.get("regions"))
    text = answer.get("latex")
    if regions or not isinstance(text, str) or not text.strip():
        return regions, None
    normalized = answer.get("latex_normalized")
    # Imported truths store their normal form (recomputed by task_set_gold when sent back); a curator's
    # answer may hold only the LaTeX, which qa normalises when it is scored.
    tokens = tuple(normalized.split()) if isinstance(normalized, str) and normalized else None
    return regions, qa.Region(latex=text, tokens=tokens)


def _gold(annotations, vendor_names: dict, annotator_names: dict) -> dict:
    answers = annotations.filter(task__is_gold=True).exclude(_never_handed_in())
    total = answers.count()
    rows = list(answers.order_by("-id").values(
        "annotator_id", handed_id=_handed_in_version(), vendor_id=F("task__batch__vendor_id"),
        truth=F("task__gold_answer"))[:SAMPLE_LIMIT])
    regions = _regions([r["handed_id"] for r in rows])
    cases = [qa.GoldCase(r["annotator_id"], r["vendor_id"], regions.get(r["handed_id"], []), *_gold_truth(r["truth"]))
             for r in rows]
    result = qa.gold_accuracy(cases)
    return {"items": len(cases), "of": total, "overall": result["overall"],
            "by_vendor": _named(result["by_vendor"], vendor_names),
            "by_annotator": _named(result["by_annotator"], annotator_names)}


def _reviews(spec: DatasetSpec, vendor_names: dict, annotator_names: dict) -> dict:
    """Decisions, reject reasons and acceptances with corrections (``corrected_on_acceptance``,
    ``corrected_rate`` of the acceptances), overall, per vendor and per annotator."""
    # Grouped on whether there are corrections, not on what they are (a LaTeX text, moved corners or
    # both): one group per distinct correction would make the rows grow with the reviews.
    corrected = Case(When(corrections={}, then=Value(False)), default=Value(True), output_field=BooleanField())
    groups = (Review.objects.filter(annotation__task__batch__spec=spec)
              .values("decision", "reasons", vendor=F("annotation__task__batch__vendor_id"),
                      annotator=F("annotation__annotator_id"), corrected=corrected)
              .annotate(n=Count("id")).order_by())
    result = qa.review_stats_counted(
        (qa.ReviewRow(g["decision"], g["vendor"], g["annotator"], tuple(g["reasons"] or ()), bool(g["corrected"])),
         g["n"]) for g in groups)
    return {"overall": result["overall"], "by_vendor": _named(result["by_vendor"], vendor_names),
            "by_annotator": _named(result["by_annotator"], annotator_names)}


def _prelabel(annotations) -> dict:
    started = (AnnotationVersion.objects
               .filter(annotation__in=annotations.filter(status=Annotation.Status.ACCEPTED).values("id"),
                       started_from__isnull=False)
               .values("annotation_id").annotate(prediction_id=Min("started_from_id")).order_by())
    # The same count as started.count(), as a semi-join: no grouping of the versions.
    total = (annotations.filter(status=Annotation.Status.ACCEPTED)
             .filter(Exists(AnnotationVersion.objects.filter(annotation_id=OuterRef("pk"), started_from__isnull=False)))
             .count())
    picked = {r["annotation_id"]: r["prediction_id"] for r in started.order_by("-annotation_id")[:SAMPLE_LIMIT]}
    accepted = []
    for chunk in _chunks(list(picked)):
        accepted += Annotation.objects.filter(id__any_of=chunk).values("id", "current_id", image_id=F("task__image_id"))
    predictions = {}
    for chunk in _chunks(sorted(set(picked.values()))):
        predictions.update({p[0]: p for p in Prediction.objects.filter(id__any_of=chunk).order_by().values_list(
            "id", "model_name", "model_version", _json("regions"))})
    regions = _regions([a["current_id"] for a in accepted])
    cats = _categories([a["image_id"] for a in accepted])
    cases = []
    for a in accepted:
        p = predictions.get(picked[a["id"]])
        if p is None:
            continue
        cases.append(qa.PrelabelCase(f"{p[1]}@{p[2]}", _answer_regions(orjson.loads(p[3])),
                                     regions.get(a["current_id"], []), cats.get(a["image_id"], ())))
    result = qa.prelabel_changes(cases)
    return {"items": len(cases), "of": total, "overall": result["overall"],
            "by_model": [{"model": k, **v} for k, v in sorted(result["by_model"].items())],
            "by_model_category": [{"model": m, "category": c, **v}
                                  for (m, c), v in sorted(result["by_model_category"].items())]}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# Medians in SQL (the per-annotation sums never travel to Python), and the formula counts from
# the same pass over the spec's annotations: regions are counted per version on the region
# index alone and merged on the current versions, instead of a second four-table join (that
# count reads the whole region index, every spec's: fine while one spec holds most regions;
# restrict it to the spec's versions if that stops being true).
_THROUGHPUT_SQL = """
WITH per_annotation AS MATERIALIZED (
    SELECT a.id, a.task_id, a.annotator_id, b.vendor_id, a.status, t.status AS task_status, a.current_id,
           SUM(v.time_spent_seconds) AS s
    FROM {version} v JOIN {annotation} a ON a.id = v.annotation_id
    JOIN {task} t ON t.id = a.task_id JOIN {batch} b ON b.id = t.batch_id
    WHERE b.spec_id = %s AND a.status <> %s
      AND NOT (a.status = %s AND NOT EXISTS (SELECT 1 FROM {review} rv WHERE rv.annotation_id = a.id))
    GROUP BY a.id, b.vendor_id, t.status
)
SELECT GROUPING(vendor_id), GROUPING(annotator_id), vendor_id, annotator_id, COUNT(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s)
FROM per_annotation GROUP BY GROUPING SETS ((vendor_id), (annotator_id), ())
UNION ALL
SELECT -1, -1, p.vendor_id, NULL, CAST(SUM(r.n) AS bigint), NULL
FROM per_annotation p JOIN (SELECT version_id, COUNT(*) AS n FROM {region} GROUP BY version_id) r
     ON r.version_id = p.current_id
WHERE p.status = %s AND p.task_status = %s
  AND NOT EXISTS (SELECT 1 FROM {annotation} later
                  WHERE later.task_id = p.task_id AND later.status = %s AND later.id > p.id)
GROUP BY p.vendor_id
"""


def _seconds_and_formulas(spec: DatasetSpec, annotations) -> tuple[dict, dict, tuple, dict]:
    """``(per vendor, per annotator, overall, formulas per vendor)``: the first three are
    ``(annotations, median seconds per annotation)``, the seconds of an annotation being the sum
    over its versions, drafts left out; formulas are the regions of the current version of the
    delivered answer of each accepted task (:func:`_delivered`).

    PostgreSQL computes the medians itself (``percentile_cont``, the same value as
    ``statistics.median``), so a million annotations never travel to Python; elsewhere (SQLite in
    tests) the per-annotation sums are read and the medians taken in Python.
    """
    from django.db import connection

    from labeling.models import Batch

    if connection.vendor == "postgresql":
        tables = {"version": AnnotationVersion._meta.db_table, "annotation": Annotation._meta.db_table,
                  "task": Task._meta.db_table, "batch": Batch._meta.db_table, "region": Region._meta.db_table,
                  "review": Review._meta.db_table}
        per_vendor, per_annotator, overall, formulas = {}, {}, (0, None), {}
        with connection.cursor() as cur:
            cur.execute(_THROUGHPUT_SQL.format(**tables), [spec.pk, Annotation.Status.DRAFT.value,
                                                           Annotation.Status.WITHDRAWN.value,
                                                           Annotation.Status.ACCEPTED.value, Task.Status.ACCEPTED.value,
                                                           Annotation.Status.ACCEPTED.value])
            for no_vendor, no_annotator, vendor_id, annotator_id, n, median in cur.fetchall():
                if no_vendor == -1:
                    formulas[vendor_id] = int(n)
                elif not no_vendor:
                    per_vendor[vendor_id] = (n, median)
                elif not no_annotator:
                    per_annotator[annotator_id] = (n, median)
                else:
                    overall = (n, median if n else None)
        return per_vendor, per_annotator, overall, formulas
    seconds = (AnnotationVersion.objects
               .filter(annotation__in=annotations.exclude(_never_handed_in()).values("id"))
               .values("annotation_id").annotate(s=Sum("time_spent_seconds"))
               .values_list("annotation__task__batch__vendor_id", "annotation__annotator_id", "s").order_by())
    by_vendor: dict[int, list[float]] = defaultdict(list)
    by_annotator: dict[int, list[float]] = defaultdict(list)
    everything: list[float] = []
    for vendor_id, annotator_id, s in seconds:
        by_vendor[vendor_id].append(s)
        by_annotator[annotator_id].append(s)
        everything.append(s)
    return ({k: (len(v), _median(v)) for k, v in by_vendor.items()},
            {k: (len(v), _median(v)) for k, v in by_annotator.items()}, (len(everything), _median(everything)),
            _formulas(annotations))


def _delivered(annotations):
    """Per accepted task, the accepted annotation whose formulas the data set gets: the last accepted
    one, as a snapshot takes it (``curation.snapshots``). An overlapped task is paid once and yields
    one answer per image, so counting every accepted answer's regions made overlapped work look
    cheaper per formula than it is."""
    later = Annotation.objects.filter(task_id=OuterRef("task_id"), status=Annotation.Status.ACCEPTED,
                                      id__gt=OuterRef("id"))
    return (annotations.filter(status=Annotation.Status.ACCEPTED, task__status=Task.Status.ACCEPTED)
            .exclude(Exists(later)))


def _formulas(annotations) -> dict[int, int]:
    """Regions of the current version of the delivered answer of accepted tasks, per vendor."""
    return dict(_delivered(annotations)
                .values_list("task__batch__vendor_id").annotate(n=Count("current__regions__version_id")).order_by())


def _formulas_by_currency(annotations) -> dict[tuple[int, str], int]:
    """As `_formulas`, per (vendor, currency of the batch): a vendor paid in two currencies has
    each currency's cost divided by the formulas of its own batches only."""
    rows = (_delivered(annotations)
            .values_list("task__batch__vendor_id", "task__batch__currency")
            .annotate(n=Count("current__regions__version_id")).order_by())
    return {(vendor, currency): n for vendor, currency, n in rows}


def _throughput(spec: DatasetSpec, annotations, vendor_names: dict, annotator_names: dict) -> dict:
    per_vendor, per_annotator, everything, formulas = _seconds_and_formulas(spec, annotations)
    priced = _formulas_by_currency(annotations)
    paid = (Task.objects.filter(batch__spec=spec, status=Task.Status.ACCEPTED)
            .values(vendor=F("batch__vendor_id"), currency=F("batch__currency"))
            .annotate(tasks=Count("id"), cost=Sum("batch__unit_price")).order_by())
    vendors: dict[int, dict] = {}
    totals: dict[str, Decimal] = defaultdict(Decimal)
    priced_formulas: dict[str, int] = defaultdict(int)
    for row in paid:
        v = vendors.setdefault(row["vendor"], {"accepted_tasks": 0, "cost": {}})
        v["accepted_tasks"] += row["tasks"]
        # SQLite sums decimals as floats: back to the price's 4 places.
        cost = Decimal(str(row["cost"] or 0)).quantize(CENT_PLACES)
        v["cost"][row["currency"]] = str(cost)
        totals[row["currency"]] += cost
        priced_formulas[row["currency"]] += priced.get((row["vendor"], row["currency"]), 0)
    by_vendor = {}
    for vid in set(per_vendor) | set(vendors):
        v = vendors.get(vid, {"accepted_tasks": 0, "cost": {}})
        n_formulas = formulas.get(vid, 0)
        by_vendor[vid] = {
            "annotations": per_vendor.get(vid, (0, None))[0],
            "median_seconds_per_task": per_vendor.get(vid, (0, None))[1],
            "accepted_tasks": v["accepted_tasks"], "accepted_formulas": n_formulas, "cost": v["cost"],
            "cost_per_formula": {c: str((Decimal(a) / priced[vid, c]).quantize(PER_FORMULA_PLACES))
                                 for c, a in v["cost"].items() if priced.get((vid, c))},
        }
    return {
        "overall": {"annotations": everything[0], "median_seconds_per_task": everything[1],
                    "accepted_tasks": sum(v["accepted_tasks"] for v in vendors.values()),
                    "accepted_formulas": sum(formulas.values()),
                    "cost": {c: str(a) for c, a in sorted(totals.items())},
                    "cost_per_formula": {c: str((a / priced_formulas[c]).quantize(PER_FORMULA_PLACES)) for c, a in sorted(totals.items())
                                         if priced_formulas[c]}},
        "by_vendor": _named(by_vendor, vendor_names),
        "by_annotator": _named({k: {"annotations": n, "median_seconds_per_task": m}
                                for k, (n, m) in per_annotator.items()}, annotator_names),
    }


# ------------------------------------------------------------------ service


def spec_stats_payload(*, spec: DatasetSpec) -> dict:
    """Every QA section of `spec`, as a JSON-ready dict (no write)."""
    from django.contrib.auth.models import User

    from labeling.models import Vendor

    annotations = Annotation.objects.filter(task__batch__spec=spec)
    vendor_names = dict(Vendor.objects.filter(batches__spec=spec).distinct().values_list("id", "name"))
    annotator_names = dict(User.objects.filter(id__in=annotations.values("annotator_id")).values_list("id", "username"))
    sections = {
        # Longest first, a PostgreSQL-bound one beside a Python-bound one (see _run_sections).
        "throughput": lambda: _throughput(spec, annotations, vendor_names, annotator_names),
        "prelabel": lambda: _prelabel(annotations),
        "agreement": lambda: _agreement(annotations, vendor_names, annotator_names),
        "gold": lambda: _gold(annotations, vendor_names, annotator_names),
        "reviews": lambda: _reviews(spec, vendor_names, annotator_names),
    }
    payload: dict = {"sample_limit": SAMPLE_LIMIT, "timings_ms": {}}
    payload.update(_run_sections(sections, payload["timings_ms"]))
    return payload


def section_threads() -> int:
    """How many sections run at once: ``QA_STATS_THREADS`` on PostgreSQL outside a transaction,
    else 1.

    Inside a caller's transaction (tests, an atomic block) the other threads' connections would
    not see its uncommitted rows, so the sections run in order on the caller's connection; SQLite
    serialises its readers' work on one file anyway.
    """
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return 1
    return max(1, int(getattr(settings, "QA_STATS_THREADS", 2)))


def _timed_section(compute) -> tuple[object, int]:
    started = time.perf_counter()
    with analytic_reads():
        result = compute()
    return result, round((time.perf_counter() - started) * 1000)


def _on_own_connection(call):
    from django.db import connections

    try:
        return call()
    finally:
        connections.close_all()  # this thread's own connections only: no idle backend left behind


def _threaded_section(compute) -> tuple[object, int]:
    return _on_own_connection(lambda: _timed_section(compute))


def _run_sections(sections: dict, timings: dict) -> dict:
    """Each section's result, timed, each in its own analytic-read transaction.

    With more than one thread (:func:`section_threads`) the sections run side by side, each on its
    own connection: a section waiting on PostgreSQL (throughput, reviews) releases the GIL while
    another compares regions in Python (pre-label, agreement), so on two cores the report takes
    about half the wall time. Sections are independent reads, so their results are the same
    either way (``test_sections_run_side_by_side_give_the_same_report``).
    """
    threads = section_threads()
    if threads <= 1:
        out = {}
        for name, compute in sections.items():
            out[name], timings[name] = _timed_section(compute)
        return out
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(sections)), thread_name_prefix="qa-stats") as pool:
        futures = {name: pool.submit(_threaded_section, compute) for name, compute in sections.items()}
        out = {}
        for name, future in futures.items():
            out[name], timings[name] = future.result()
    return out


def spec_stats_compute(*, spec: DatasetSpec) -> QAReport:
    """Compute `spec`'s QA statistics and store them as a new, timestamped QAReport.

    The reads run before the write transaction, so a long computation holds no locks; only
    the newest ``KEEP_REPORTS`` reports of the spec are kept.
    """
    started = time.perf_counter()
    payload = spec_stats_payload(spec=spec)
    duration_ms = round((time.perf_counter() - started) * 1000)
    with transaction.atomic():
        report = QAReport.objects.create(spec=spec, computed_at=timezone.now(), duration_ms=duration_ms,
                                         payload=payload)
        stale = QAReport.objects.filter(spec=spec).order_by("-computed_at", "-id").values_list("id", flat=True)[
            KEEP_REPORTS:]
        QAReport.objects.filter(id__in=list(stale)).delete()
    return report


def spec_reports_refresh(*, spec: DatasetSpec) -> QAReport:
    """Recompute both stored reports of `spec`, its quota progress (``ProgressReport``) and its QA
    statistics (a new ``QAReport``, returned): what the debounced Celery refresh runs.

    With section threads (:func:`section_threads`) the progress aggregates run on a thread of
    their own while the QA sections run side by side, so the job takes about the time of the
    longer of the two instead of their sum.
    """
    from curation.services import spec_progress_refresh

    if section_threads() <= 1:
        spec_progress_refresh(spec=spec)
        return spec_stats_compute(spec=spec)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-stats-progress") as pool:
        progress = pool.submit(_on_own_connection, lambda: spec_progress_refresh(spec=spec))
        report = spec_stats_compute(spec=spec)
        progress.result()  # re-raises its error, if any
    return report


def spec_stats_request(*, spec: DatasetSpec) -> None:
    """A curator's "recompute now": schedule the computation after the current transaction commits."""
    from .tasks import spec_stats_refresh

    transaction.on_commit(lambda: spec_stats_refresh.delay(spec.pk))


def specs_needing_stats() -> list[int]:
    """Active specs whose annotations changed after their latest QA report, or whose stored quota
    progress is missing or older than ``settings.MATHSET_STATS_MAX_AGE_S``.

    The second rule covers the writes that leave no annotation timestamp behind (an upload, a
    category edit, a deleted image, a new batch) when their debounced refresh was lost, e.g. to
    a broker outage: such a spec's progress is at most that old.
    """
    from datetime import timedelta

    from django.conf import settings
    from django.db.models import Max, Q, Subquery

    stale_before = timezone.now() - timedelta(seconds=settings.MATHSET_STATS_MAX_AGE_S)
    latest = QAReport.objects.filter(spec=OuterRef("pk")).order_by("-computed_at").values("computed_at")[:1]
    changed = (DatasetSpec.objects.filter(status=DatasetSpec.Status.ACTIVE)
               .annotate(last_report=Subquery(latest), last_change=Max("batches__tasks__annotations__updated_at"),
                         progress_at=F("progress_report__computed_at"))
               .filter(Q(last_change__isnull=False, last_report__isnull=True) | Q(last_change__gt=F("last_report"))
                       | Q(progress_at__isnull=True) | Q(progress_at__lt=stale_before)))
    return list(changed.values_list("id", flat=True))
