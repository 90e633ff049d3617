"""Quota progress of a spec per category, per split and per vendor (a selector: reads only).

Every number is a SQL aggregate over ``values()`` groups (six queries whatever the size of
the spec); nothing loops over images or tasks in Python. Per image and category:

* **collected**: the image is in the category;
* **pre-labeled**: a model's prediction exists for the image;
* **labeled**: some task of the image was handed in (submitted or accepted);
* **accepted**: some task of the image was accepted.

**Splits** live only on snapshot items (images carry no split field): the breakdown uses the
spec's **latest snapshot**, and images not in it are counted as ``unassigned``. A split's
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

from .models import Category, DatasetSpec, Image, SnapshotItem
from .selectors import LABELED_STATUSES, snapshots_visible_to

UNASSIGNED = "unassigned"
METRICS = ("collected", "prelabeled", "labeled", "accepted")


def _counts(image_field: str, pre_ids, lab_ids, acc_ids, *, distinct: bool = False) -> dict:
    # IN (uncorrelated subquery) lets PostgreSQL hash each id set once instead of probing per row.
    return {
        "collected": Count(image_field, distinct=distinct),
        "prelabeled": Count(image_field, distinct=distinct, filter=Q(**{f"{image_field}__in": pre_ids})),
        "labeled": Count(image_field, distinct=distinct, filter=Q(**{f"{image_field}__in": lab_ids})),
        "accepted": Count(image_field, distinct=distinct, filter=Q(**{f"{image_field}__in": acc_ids})),
    }


def spec_progress(user: User, spec: DatasetSpec) -> dict:
    """Quota progress of `spec` (already visible to `user`), scoped to what `user` may see.

    Returns ``{"spec", "snapshot" (id or None), "snapshot_name", "snapshot_created_at", "by_category",
    "by_split", "by_vendor"}``; see the module
    docstring for what each count means.
    """
    from labeling.models import Prediction, Task
    from labeling.selectors import vendor_of

    vendor = None if can_read_all_data(user) else vendor_of(user)
    tasks = Task.objects.filter(batch__spec=spec)
    if vendor is not None:
        tasks = tasks.filter(batch__vendor=vendor)
    elif not can_read_all_data(user):
        tasks = tasks.none()
    pre_ids = Prediction.objects.filter(image__spec=spec).values("image_id")
    lab_ids = tasks.filter(status__in=LABELED_STATUSES).values("image_id")
    acc_ids = tasks.filter(status="accepted").values("image_id")

    categories = list(Category.objects.filter(spec=spec).order_by("position", "id")
                      .values("id", "slug", "name", "target_quota"))
    cat_by_id = {c["id"]: c for c in categories}

    links = Image.categories.through.objects.filter(category__spec=spec)
    if vendor is not None or not can_read_all_data(user):
        links = links.filter(image_id__in=tasks.values("image_id"))
    per_cat = {r["category_id"]: r for r in links.values("category_id").annotate(
        **_counts("image_id", pre_ids, lab_ids, acc_ids)).order_by()}
    by_category = [{"category": c["slug"], "name": c["name"], "target": c["target_quota"],
                    **{m: per_cat.get(c["id"], {}).get(m, 0) for m in METRICS}} for c in categories]

    snapshot = snapshots_visible_to(user).filter(spec=spec).order_by("-created_at", "-id").first()
    by_split: list[dict] = []
    if snapshot is not None:
        ratios = snapshot.ratios or {}
        total_ratio = sum(float(v) for v in ratios.values()) or 1.0
        rows = (SnapshotItem.objects.filter(snapshot=snapshot, image__categories__isnull=False)
                .values("split", category_id=F("image__categories"))
                .annotate(**_counts("image_id", pre_ids, lab_ids, acc_ids)).order_by())
        grid = {(r["split"], r["category_id"]): r for r in rows}
        splits = list(ratios) + sorted({s for s, _ in grid} - set(ratios))
        for c in categories:
            left = {m: per_cat.get(c["id"], {}).get(m, 0) for m in METRICS}
            for split in splits:
                r = grid.get((split, c["id"]), {})
                counts = {m: r.get(m, 0) for m in METRICS}
                for m in METRICS:
                    left[m] -= counts[m]
                ratio = float(ratios.get(split, 0)) / total_ratio
                by_split.append({"split": split, "category": c["slug"],
                                 "target": round(c["target_quota"] * ratio), **counts})
            by_split.append({"split": UNASSIGNED, "category": c["slug"], "target": None, **left})

    vendor_rows = tasks.values(vendor_id=F("batch__vendor_id"), vendor_name=F("batch__vendor__name"))
    totals = {r["vendor_id"]: r for r in vendor_rows.annotate(
        **_counts("image_id", pre_ids, lab_ids, acc_ids, distinct=True)).order_by()}
    per_vendor_cat = (tasks.filter(image__categories__isnull=False)
                      .values(vendor_id=F("batch__vendor_id"), category_id=F("image__categories"))
                      .annotate(**_counts("image_id", pre_ids, lab_ids, acc_ids, distinct=True)).order_by())
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
