"""Quota progress of a spec per category, per split and per vendor (a selector: reads only).

Every number is a SQL aggregate over ``values()`` groups (seven queries whatever the size of
the spec); nothing loops over images or tasks in Python. Per image and category:

* **collected**: the image is in the category;
* **pre-labeled**: a model's prediction exists for the image;
* **labeled**: some task of the image was handed in (submitted or accepted);
* **accepted**: some task of the image was accepted.

**Splits** live only on snapshot items (images carry no split field): the breakdown uses the
spec's **latest ready snapshot**, and images not in it are counted as ``unassigned``. A split's
target is the category's quota times the snapshot's ratio for that split.

**Vendors**: per vendor, the same counts over the images of that vendor's tasks ("labeled"
and "accepted" then mean by that vendor).

Scope: curators and model teams see everything; a vendor user's numbers are computed only
over their own vendor's tasks and images, ``by_vendor`` holds only their vendor, and they get
no split breakdown (snapshots are not theirs to read).
"""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Count, F, Q

from common.roles import can_read_all_data

from .models import Category, DatasetSpec, Snapshot, SnapshotItem
from .selectors import LABELED_STATUSES, snapshots_visible_to

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


def spec_progress(user: User, spec: DatasetSpec) -> dict:
    """Quota progress of `spec` (already visible to `user`), scoped to what `user` may see.

    Returns ``{"spec", "snapshot" (id or None), "snapshot_name", "snapshot_created_at", "by_category",
    "by_split", "by_vendor"}``; see the module docstring for what each count means.
    """
    from labeling.models import Prediction, Task
    from labeling.selectors import vendor_of

    readers = can_read_all_data(user)
    vendor = None if readers else vendor_of(user)
    tasks = Task.objects.filter(batch__spec=spec)
    if vendor is not None:
        tasks = tasks.filter(batch__vendor=vendor)
    elif not readers:
        tasks = tasks.none()

    # The categories and their collected images in one query (a vendor user: images in their tasks).
    vendor_id = vendor.pk if vendor is not None else -1  # -1: no vendor, nothing to count
    collected_count = (Count("images") if readers else Count("images", distinct=True, filter=Q(
        images__tasks__batch__vendor_id=vendor_id, images__tasks__batch__spec=spec)))
    categories = list(Category.objects.filter(spec=spec).values("id", "slug", "name", "target_quota", "position")
                      .annotate(collected=collected_count).order_by("position", "id"))
    cat_by_id = {c["id"]: c for c in categories}
    collected = {c["id"]: c["collected"] for c in categories}

    predictions = Prediction.objects.filter(image__spec=spec, image__categories__isnull=False)
    if not readers:
        predictions = predictions.filter(image_id__in=tasks.values("image_id"))
    prelabeled = dict(predictions.values_list("image__categories").annotate(n=Count("image_id", distinct=True))
                      .order_by())
    worked = {r["category_id"]: r for r in tasks.filter(image__categories__isnull=False)
              .values(category_id=F("image__categories")).annotate(**_task_counts()).order_by()}
    per_cat = {cid: {"collected": collected.get(cid, 0), "prelabeled": prelabeled.get(cid, 0),
                     "labeled": worked.get(cid, {}).get("labeled", 0), "accepted": worked.get(cid, {}).get("accepted", 0)}
               for cid in cat_by_id}
    by_category = [{"category": c["slug"], "name": c["name"], "target": c["target_quota"], **per_cat[c["id"]]}
                   for c in categories]

    snapshot = snapshots_visible_to(user).filter(spec=spec, status=Snapshot.Status.READY).order_by("-created_at", "-id").first()
    by_split: list[dict] = []
    if snapshot is not None:
        ratios = snapshot.ratios or {}
        total_ratio = sum(float(v) for v in ratios.values()) or 1.0
        rows = (SnapshotItem.objects.filter(snapshot=snapshot, image__categories__isnull=False)
                .values("split", category_id=F("image__categories"))
                .annotate(collected=Count("image_id", distinct=True), prelabeled=_prelabeled(),
                          **_task_counts("image__tasks__")).order_by())
        grid = {(r["split"], r["category_id"]): r for r in rows}
        splits = list(ratios) + sorted({s for s, _ in grid} - set(ratios))
        for c in categories:
            left = dict(per_cat[c["id"]])
            for split in splits:
                r = grid.get((split, c["id"]), {})
                counts = {m: r.get(m, 0) for m in METRICS}
                for m in METRICS:
                    left[m] -= counts[m]
                ratio = float(ratios.get(split, 0)) / total_ratio
                by_split.append({"split": split, "category": c["slug"],
                                 "target": round(c["target_quota"] * ratio), **counts})
            by_split.append({"split": UNASSIGNED, "category": c["slug"], "target": None, **left})

    vendor_counts = dict(collected=Count("image_id", distinct=True), prelabeled=_prelabeled(), **_task_counts())
    totals = {r["vendor_id"]: r for r in tasks.values(vendor_id=F("batch__vendor_id"),
                                                      vendor_name=F("batch__vendor__name"))
              .annotate(**vendor_counts).order_by()}
    per_vendor_cat = (tasks.filter(image__categories__isnull=False)
                      .values(vendor_id=F("batch__vendor_id"), category_id=F("image__categories"))
                      .annotate(**vendor_counts).order_by())
    cats_of: dict[int, list[dict]] = {}
    for r in per_vendor_cat:
        cat = cat_by_id.get(r["category_id"])
        if cat is not None:
            cats_of.setdefault(r["vendor_id"], []).append(
                {"category": cat["slug"], **{m: r[m] for m in METRICS}})
    by_vendor = [{"vendor": vid, "vendor_name": t["vendor_name"], **{m: t[m] for m in METRICS},
                  "by_category": cats_of.get(vid, [])}
                 for vid, t in sorted(totals.items(), key=lambda kv: kv[1]["vendor_name"])]

    return {
        "spec": spec.pk,
        "snapshot": snapshot and snapshot.pk,
        "snapshot_name": snapshot and snapshot.name,
        "snapshot_created_at": snapshot and snapshot.created_at,
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
