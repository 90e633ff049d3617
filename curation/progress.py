"""Quota progress of a spec per category, per split and per vendor (a selector: reads only).

Every number is a SQL aggregate (one pass over the spec's tasks for every breakdown but the
splits, a handful of queries whatever the size of the spec); nothing loops over images or
tasks in Python. Per image and category:

* **collected**: the image is in the category;
* **pre-labeled**: a model's prediction exists for the image;
* **labeled**: some task of the image was handed in (submitted or accepted);
* **accepted**: some task of the image was accepted.

A **taken-down** image (``Image.taken_down_at``: its files erased on request) counts in none of
them, anywhere (categories, splits, vendors): it can never be delivered.

**Splits** live only on snapshot items (images carry no split field): the breakdown uses the
spec's **latest ready snapshot**, and images not in it are counted as ``unassigned``. A split's
target is the category's quota times the snapshot's ratio for that split.

**Vendors**: per vendor, the same counts over the images of that vendor's tasks ("labeled"
and "accepted" then mean by that vendor).

**Refresh**: a Celery worker computes the readers' view a little after the data changes (the
debounced refresh that also recomputes the QA statistics: ``pipeline.refresh``, triggered by
image uploads, batches, pre-labels, annotations, reviews and snapshots) and stores it as the
spec's :class:`~curation.models.ProgressReport`; pages and the API read that, so a spec page
costs one row however large the spec (plus the spec's categories: their names and targets are read
as they are now, :func:`with_current_categories`). Before the first refresh it is computed on the spot.

Scope: curators and model teams see everything; a vendor user's numbers are those over their
own vendor's tasks and images (the per-vendor columns of the same view), ``by_vendor`` holds
only their vendor, and they get no split breakdown (snapshots are not theirs to read).
"""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Count, F, Q

from common.analytics import analytic_reads
from common.roles import can_read_all_data

from .models import Category, DatasetSpec, Snapshot, SnapshotItem
from .selectors import LABELED_STATUSES

UNASSIGNED = "unassigned"
METRICS = ("collected", "prelabeled", "labeled", "accepted")


# Every count is COUNT(DISTINCT image) over plain joins with FILTER on joined columns: an
# "IN (subquery)" inside FILTER is re-run per row by PostgreSQL once the id set outgrows work_mem
# (minutes at 300,000 images); IN subqueries appear only in WHERE, where they become semi-joins.
def _task_counts(prefix: str = "") -> dict:
    return {
        "labeled": Count("image_id", distinct=True, filter=Q(**{f"{prefix}status__in": LABELED_STATUSES})),
        "accepted": Count("image_id", distinct=True, filter=Q(**{f"{prefix}status": "accepted"})),
    }


def _prelabeled() -> Count:
    return Count("image_id", distinct=True, filter=Q(image__predictions__isnull=False))


# One pass over the spec's tasks instead of one COUNT(DISTINCT) query per breakdown: tasks are
# folded to one row per image carrying 0/1 flags (overall and per vendor, one column each: a spec
# has a handful of vendors), so every count is a plain SUM, with each image counted once per group
# by construction; the per-category and the total rows are two sums over that one derived table.
# Portable SQL (CTEs, CASE, UNION ALL): the same query runs on SQLite in tests.
_GRID_SQL = """
WITH img AS (
    SELECT t.image_id AS image_id,
           MAX(CASE WHEN t.status IN ({labeled}) THEN 1 ELSE 0 END) AS lab,
           MAX(CASE WHEN t.status = %s THEN 1 ELSE 0 END) AS acc{vendor_flags}
    FROM {task} t JOIN {image} i ON i.id = t.image_id
    WHERE t.batch_id IN ({batches}) AND i.taken_down_at IS NULL
    GROUP BY t.image_id
), pre AS (  -- an index-only scan; images of other specs find no partner in the joins below
    SELECT DISTINCT image_id FROM {prediction}
), x AS (
    SELECT img.*, CASE WHEN pre.image_id IS NULL THEN 0 ELSE 1 END AS pre
    FROM img LEFT JOIN pre ON pre.image_id = img.image_id
)
SELECT ic.category_id, {sums} FROM x JOIN {image_categories} ic ON ic.image_id = x.image_id GROUP BY ic.category_id
UNION ALL
SELECT NULL, {sums} FROM x
{all_images}
"""
# Collected and pre-labeled count every image of the spec, with a task or not, even before any
# batch exists (these rows carry the category id negated; their last columns are padding for the UNION).
# A taken-down image counts nowhere (its files are erased: it can never be delivered).
_ALL_IMAGES_SQL = """
UNION ALL
SELECT -ic.category_id, COUNT(*), COUNT(pre.image_id){padding}
FROM {image_categories} ic JOIN {category} c ON c.id = ic.category_id JOIN {image} i ON i.id = ic.image_id
LEFT JOIN pre ON pre.image_id = ic.image_id
WHERE c.spec_id = %s AND i.taken_down_at IS NULL GROUP BY ic.category_id
"""


def _task_grid(spec_id: int) -> tuple[list[int], list[tuple]]:
    """The spec's vendors and rows ``(category_id or None for the total, collected, prelabeled,
    labeled, accepted, then the same four per vendor)`` over the images of the spec's tasks, and
    rows ``(-category_id, collected, prelabeled, 0...)`` over all the spec's images."""
    from django.db import connection

    from labeling.models import Batch, Prediction, Task

    from .models import Image

    batches = Batch.objects.filter(spec_id=spec_id)
    by_vendor: dict[int, list[int]] = {}
    for bid, vid in batches.order_by("vendor_id", "id").values_list("id", "vendor_id"):
        by_vendor.setdefault(vid, []).append(bid)
    vendors = sorted(by_vendor)
    labeled = ", ".join(["%s"] * len(LABELED_STATUSES))
    # Ids are integers read from the database, inlined as literals (no user input).
    flags = "".join(
        f",\n           MAX(CASE WHEN t.batch_id IN ({ids}) THEN 1 ELSE 0 END) AS c{k},"
        f" MAX(CASE WHEN t.batch_id IN ({ids}) AND t.status IN ({labeled}) THEN 1 ELSE 0 END) AS l{k},"
        f" MAX(CASE WHEN t.batch_id IN ({ids}) AND t.status = %s THEN 1 ELSE 0 END) AS a{k}"
        for k, ids in enumerate(",".join(str(int(b)) for b in by_vendor[v]) for v in vendors))
    sums = ", ".join(["COUNT(*)", "SUM(x.pre)", "SUM(x.lab)", "SUM(x.acc)"]
                     + [f"SUM(x.c{k}), SUM(x.c{k} * x.pre), SUM(x.l{k}), SUM(x.a{k})" for k in range(len(vendors))])
    tables = {"task": Task._meta.db_table, "prediction": Prediction._meta.db_table, "image": Image._meta.db_table,
              "image_categories": Image.categories.through._meta.db_table, "category": Category._meta.db_table}
    all_images = _ALL_IMAGES_SQL.format(padding=", 0" * (2 + 4 * len(vendors)), **tables)
    sql = _GRID_SQL.format(vendor_flags=flags, batches=",".join(str(int(b)) for ids in by_vendor.values() for b in ids) or "NULL",
                           sums=sums, all_images=all_images, labeled=labeled, **tables)
    params = [*LABELED_STATUSES, "accepted"]
    for _ in vendors:
        params += [*LABELED_STATUSES, "accepted"]
    params.append(spec_id)
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return vendors, cur.fetchall()


def spec_progress(user: User, spec: DatasetSpec) -> dict:
    """Quota progress of `spec` (already visible to `user`), scoped to what `user` may see.

    Read from the spec's stored :class:`~curation.models.ProgressReport` (``computed_at`` says
    when a worker computed it); computed on the spot when there is none yet (``computed_at``
    None). Vendor users get their vendor's slice (:func:`vendor_slice`); users of no vendor who
    may not read everything get empty breakdowns.

    Returns ``{"spec", "computed_at", "snapshot" (id or None), "snapshot_name", "snapshot_created_at",
    "by_category", "by_split", "by_vendor"}``; see the module docstring for what each count means.
    """
    from labeling.selectors import vendor_of

    from .models import ProgressReport

    report = ProgressReport.objects.filter(spec=spec).first()
    if report is not None:
        view = with_current_categories({**report.payload, "computed_at": report.computed_at}, spec)
    else:
        view = {**progress_compute(spec=spec), "computed_at": None}
    if can_read_all_data(user):
        return view
    vendor = vendor_of(user)
    return vendor_slice(view, vendor.pk if vendor is not None else None)


def _split_order(ratios: dict, seen=()) -> list[str]:
    """The snapshot's splits in the usual order (train, validation, test), then any other: the
    ratios are a JSON object, whose key order PostgreSQL's jsonb does not keep."""
    from .snapshots import SPLIT_NAMES

    return [s for s in SPLIT_NAMES if s in ratios] + sorted((set(ratios) | set(seen)) - set(SPLIT_NAMES))


def _split_target(quota: int, ratios: dict, split: str) -> int:
    """A category's target in one split: its quota times the split's share of the ratios."""
    total = sum(float(v) for v in ratios.values()) or 1.0
    return round(quota * float(ratios.get(split, 0)) / total)


def with_current_categories(view: dict, spec: DatasetSpec) -> dict:
    """A stored progress `view` with the spec's categories as they are now: names, targets (and the
    split targets made from them), order, categories added since (all zero: an image put in one
    schedules a refresh) and none deleted since.

    A category's name and quota are settings, not counts: editing them schedules no refresh (and a
    draft spec is never swept), so the stored report alone kept the old targets on the charts and
    in the API while the quota table beside them showed the new ones.
    """
    categories = list(Category.objects.filter(spec=spec).order_by("position", "id")
                      .values_list("slug", "name", "target_quota"))
    slugs = {slug for slug, _, _ in categories}
    zero = dict.fromkeys(METRICS, 0)
    stored = {c["category"]: c for c in view["by_category"]}
    by_category = [{**zero, **stored.get(slug, {}), "category": slug, "name": name, "target": quota}
                   for slug, name, quota in categories]
    by_split = view["by_split"]
    if by_split:
        ratios = (Snapshot.objects.filter(pk=view["snapshot"]).values_list("ratios", flat=True).first()
                  if view.get("snapshot") else None) or {}
        rows = {(s["split"], s["category"]): s for s in by_split}
        splits = _split_order(ratios, {s["split"] for s in by_split} - {UNASSIGNED})
        by_split = [{**zero, **rows.get((split, slug), {}), "split": split, "category": slug,
                     "target": None if split == UNASSIGNED else _split_target(quota, ratios, split)}
                    for slug, _, quota in categories for split in [*splits, UNASSIGNED]]
    by_vendor = [{**v, "by_category": [c for c in v["by_category"] if c["category"] in slugs]}
                 for v in view["by_vendor"]]
    return {**view, "by_category": by_category, "by_split": by_split, "by_vendor": by_vendor}


def vendor_slice(view: dict, vendor_id: int | None) -> dict:
    """What a vendor's users see of a readers' progress `view`: per category the counts over
    their own vendor's tasks and images, ``by_vendor`` holding only them, no split breakdown
    (snapshots are not theirs to read)."""
    mine = [v for v in view["by_vendor"] if vendor_id is not None and v["vendor"] == vendor_id]
    per_cat = {c["category"]: c for c in (mine[0]["by_category"] if mine else [])}
    by_category = [{"category": c["category"], "name": c["name"], "target": c["target"],
                    **{m: per_cat.get(c["category"], {}).get(m, 0) for m in METRICS}}
                   for c in view["by_category"]]
    return {**view, "snapshot": None, "snapshot_name": None, "snapshot_created_at": None,
            "by_category": by_category, "by_split": [], "by_vendor": mine}


def progress_compute(*, spec: DatasetSpec) -> dict:
    """The readers' view of `spec`'s quota progress, computed now from the database (what the
    Celery refresh stores; a handful of aggregate queries, see the module docstring)."""
    with analytic_reads():
        return _progress_compute(spec)


def _progress_compute(spec: DatasetSpec) -> dict:
    from labeling.models import Vendor

    categories = list(Category.objects.filter(spec=spec).values("id", "slug", "name", "target_quota", "position")
                      .order_by("position", "id"))
    cat_by_id = {c["id"]: c for c in categories}
    vendors, grid = _task_grid(spec.pk)
    per_cat = {cid: dict.fromkeys(METRICS, 0) for cid in cat_by_id}
    totals: dict[int, dict] = {}
    cats_of: dict[int, list[dict]] = {}
    for cid, *values in grid:
        values = [int(v or 0) for v in values]
        if cid is not None and cid < 0:  # every image of the spec: collected and pre-labeled
            if -cid in per_cat:
                per_cat[-cid].update(collected=values[0], prelabeled=values[1])
            continue
        overall = dict(zip(METRICS, values[:4], strict=True))
        if cid is not None and cid in per_cat:
            per_cat[cid].update({m: overall[m] for m in ("labeled", "accepted")})
        for k, vid in enumerate(vendors):
            counts = dict(zip(METRICS, values[4 + 4 * k: 8 + 4 * k], strict=True))
            if cid is None:
                if counts["collected"]:  # a vendor with a batch but no task yet has no row
                    totals[vid] = counts
            elif cid in cat_by_id and counts["collected"]:
                cats_of.setdefault(vid, []).append({"category": cat_by_id[cid]["slug"], **counts})
    by_category = [{"category": c["slug"], "name": c["name"], "target": c["target_quota"], **per_cat[c["id"]]}
                   for c in categories]

    snapshot = (Snapshot.objects.filter(spec=spec, status=Snapshot.Status.READY).order_by("-created_at", "-id")
                .first())
    by_split: list[dict] = []
    if snapshot is not None:
        ratios = snapshot.ratios or {}
        rows = (SnapshotItem.objects.filter(snapshot=snapshot, image__categories__isnull=False,
                                            image__taken_down_at__isnull=True)
                .values("split", category_id=F("image__categories"))
                .annotate(collected=Count("image_id", distinct=True), prelabeled=_prelabeled(),
                          **_task_counts("image__tasks__")).order_by())
        grid = {(r["split"], r["category_id"]): r for r in rows}
        splits = _split_order(ratios, {s for s, _ in grid})
        for c in categories:
            left = dict(per_cat[c["id"]])
            for split in splits:
                r = grid.get((split, c["id"]), {})
                counts = {m: r.get(m, 0) for m in METRICS}
                for m in METRICS:
                    left[m] -= counts[m]
                by_split.append({"split": split, "category": c["slug"],
                                 "target": _split_target(c["target_quota"], ratios, split), **counts})
            by_split.append({"split": UNASSIGNED, "category": c["slug"], "target": None, **left})

    names = dict(Vendor.objects.filter(id__in=list(totals)).values_list("id", "name"))
    by_vendor = [{"vendor": vid, "vendor_name": names.get(vid, str(vid)), **t, "by_category": cats_of.get(vid, [])}
                 for vid, t in sorted(totals.items(), key=lambda kv: names.get(kv[0], str(kv[0])))]

    return {
        "spec": spec.pk,
        "snapshot": snapshot and snapshot.pk,
        "snapshot_name": snapshot and snapshot.name,
        "snapshot_created_at": snapshot and snapshot.created_at.isoformat(),
        "by_category": by_category,
        "by_split": by_split,
        "by_vendor": by_vendor,
    }


def progress_charts(progress: dict) -> dict:
    """The SVG charts of a progress dict, for the spec page."""
    from common.charts import Row, hbar_svg

    series = ["collected", "pre-labeled", "labeled", "accepted"]
    cat_rows = [Row(c["name"], [c[m] for m in METRICS], target=c["target"] or None)
                for c in progress["by_category"]]
    split_rows = [Row(f'{s["split"]} · {s["category"]}', [s[m] for m in METRICS], target=s["target"] or None)
                  for s in progress["by_split"] if s["collected"] or s["target"]]
    vendor_rows = [Row(v["vendor_name"], [v[m] for m in METRICS]) for v in progress["by_vendor"]]
    return {
        "category": hbar_svg(cat_rows, series, title="Quota progress per category (line: target)"),
        "split": hbar_svg(split_rows, series, title="Progress per split of the latest snapshot") if split_rows else None,
        "vendor": hbar_svg(vendor_rows, series, title="Progress per vendor") if vendor_rows else None,
    }
