"""Audit of frozen, leak-free test sets: leakage, small-count ratios, cross-snapshot stability,
determinism and freezing (see README, "Snapshots and exports")."""
from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image as PILImage

from curation import selectors, snapshots
from curation.models import Category, Image, Licence, Snapshot, Source
from curation.splits import DEFAULT_MAX_DISTANCE, SplitItem, assign_splits
from pipeline.evaluation import evaluation_create
from pipeline.models import ModelVersion
from tests import factories
from tests.curation.test_snapshots import accept_all, export_bytes

SPLITS = ("train", "validation", "test")


def _hex(h: int) -> str:
    return f"{h:016x}"


def _far_hashes(n: int, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    return [_hex(int(rng.integers(0, 2**63))) for _ in range(n)]


# ------------------------------------------------------------------ leakage (pure)


def test_a_near_duplicate_chain_lands_in_one_split_though_its_ends_are_far_apart():
    a = 0
    b = a ^ 0b111111                  # 6 bits from a
    c = b ^ (0b111111 << 20)          # 6 bits from b, 12 from a
    items = [SplitItem(i, _hex(h), categories=("printed",)) for i, h in enumerate((a, b, c))]
    items += [SplitItem(10 + i, h, categories=("printed",)) for i, h in enumerate(_far_hashes(30))]
    for seed in range(5):
        r = assign_splits(items, ratios={"train": 1, "validation": 1, "test": 1}, seed=seed)
        assert r.assignment[0] == r.assignment[1] == r.assignment[2]
        assert r.group_of[0] == r.group_of[2]


def test_images_the_browser_lists_as_near_duplicates_share_a_split():
    """The image browser's near-duplicates (default distance) are what splits keep together:
    a re-encoded or resized copy moves the hash by up to ~8 bits."""
    default = selectors.images_near_duplicates.__kwdefaults__["max_distance"]
    assert default == DEFAULT_MAX_DISTANCE
    base = 0x0F0F_0F0F_0F0F_0F0F
    twin = base ^ 0xFF  # 8 bits apart
    items = [SplitItem(1, _hex(base), categories=("printed",)), SplitItem(2, _hex(twin), categories=("printed",))]
    r = assign_splits(items, ratios={"train": 1, "validation": 0, "test": 1})
    assert r.near_duplicate_pairs == 1 and r.assignment[1] == r.assignment[2]


def test_a_capture_session_spanning_categories_stays_in_one_split():
    items = [SplitItem(i, h, session="s1" if i < 6 else "", categories=(("printed", "handwritten")[i % 2],))
             for i, h in enumerate(_far_hashes(40))]
    r = assign_splits(items, ratios={"train": 1, "validation": 1, "test": 1})
    assert len({r.assignment[i] for i in range(6)}) == 1


# ------------------------------------------------------------------ ratios with small counts


def test_many_tiny_categories_still_give_validation_and_test_their_share():
    """Before: 100 images in 50 categories of 2 all went to train (test empty)."""
    hashes = _far_hashes(100)
    for per_cat in (1, 2, 5):
        items = [SplitItem(i, hashes[i], categories=(f"c{i // per_cat}",)) for i in range(100)]
        counts = assign_splits(items).counts
        assert abs(counts["train"] - 80) <= 2 and abs(counts["validation"] - 10) <= 2 \
            and abs(counts["test"] - 10) <= 2, (per_cat, counts)


def test_one_image_per_category_is_split_by_ratio():
    items = [SplitItem(i, None, categories=(f"c{i}",)) for i in range(10)]
    assert assign_splits(items).counts == {"train": 8, "validation": 1, "test": 1}


def test_stratification_of_large_categories_is_kept():
    hashes = _far_hashes(1000)
    items = [SplitItem(i, hashes[i], categories=(("printed", "handwritten", "rare")[0 if i < 600 else 1 if i < 980
                                                                                     else 2],))
             for i in range(1000)]
    r = assign_splits(items)
    for cat, total in (("printed", 600), ("handwritten", 380), ("rare", 20)):
        for split, w in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
            assert abs(r.category_counts[split][cat] - w * total) <= 1, (cat, split, r.category_counts)


def test_three_images_at_default_ratios_still_give_every_split_an_image():
    r = assign_splits([SplitItem(i, None, categories=("printed",)) for i in range(3)])
    assert r.counts == {"train": 1, "validation": 1, "test": 1}  # 0.3 images would round to none


# ------------------------------------------------------------------ stability across snapshots (pure)


def test_previous_splits_are_kept_when_images_are_added():
    hashes = _far_hashes(80, seed=1)
    items = [SplitItem(i, hashes[i], categories=(("printed", "handwritten")[i % 2],)) for i in range(80)]
    first = assign_splits(items[:50])
    second = assign_splits(items, previous=first.assignment)
    assert all(second.assignment[i] == first.assignment[i] for i in range(50))
    assert abs(second.counts["test"] - 8) <= 2 and abs(second.counts["train"] - 64) <= 2


def test_a_new_image_joining_groups_of_different_splits_takes_the_most_held_out():
    a, c = 0, (1 << 64) - 1 ^ 0xFFFF  # far apart
    items = [SplitItem(1, _hex(a)), SplitItem(2, _hex(c)), SplitItem(3, None, session="s")]
    previous = {1: "train", 2: "test"}
    r = assign_splits(items, previous=previous)
    assert r.assignment[1] == "train" and r.assignment[2] == "test"
    bridged = [SplitItem(1, _hex(a), session="s"), SplitItem(2, _hex(c), session="s")]
    r = assign_splits(bridged, previous=previous)
    assert r.assignment == {1: "test", 2: "test"}
    # A split the new ratios leave empty is not kept; `fixed` still wins over `previous`.
    r = assign_splits(items, ratios={"train": 1, "validation": 0, "test": 0}, previous=previous)
    assert set(r.assignment.values()) == {"train"}
    r = assign_splits(items, previous=previous, fixed={2: "validation"})
    assert r.assignment[2] == "validation"


def test_assignment_does_not_depend_on_input_order_with_pins():
    hashes = _far_hashes(60, seed=3)
    items = [SplitItem(i, hashes[i], session=f"s{i % 7}" if i % 3 == 0 else "",
                       categories=(("printed", "handwritten")[i % 2],)) for i in range(60)]
    previous = {i: SPLITS[i % 3] for i in range(0, 20, 5)}
    want = assign_splits(items, seed=4, previous=previous).assignment
    for k in range(3):
        shuffled = items[:]
        random.Random(k).shuffle(shuffled)
        assert assign_splits(shuffled, seed=4, previous=dict(reversed(previous.items()))).assignment == want


# ------------------------------------------------------------------ snapshots in the database

pytestmark_db = pytest.mark.django_db


def _spec_with_distinct_images(n: int, start: int = 0, spec=None):
    """`n` more accepted images of `spec` whose hashes are far apart (so they can be split freely)."""
    spec = spec or factories.make_spec()
    source = factories.make_source()
    rng = np.random.default_rng(start + 11)
    for k in range(n):
        noise = (rng.random((40, 80)) > 0.5).astype(np.uint8) * 255
        buf = io.BytesIO()
        PILImage.fromarray(np.repeat(noise[:, :, None], 3, 2)).resize((200, 100), PILImage.NEAREST).save(buf, "PNG")
        factories.make_image(spec=spec, source=source, data=buf.getvalue(),
                             categories=(("printed", "handwritten")[k % 2],))
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=0, quantity=n)
    assert accept_all(vendor) == n
    return spec


@pytestmark_db
def test_a_later_snapshot_keeps_every_image_of_the_earlier_one_in_its_split(curator):
    spec = _spec_with_distinct_images(30)
    first = factories.make_snapshot(spec=spec, name="v1", created_by=curator, ratios=(0.6, 0.2, 0.2))
    _spec_with_distinct_images(20, start=100, spec=spec)
    second = factories.make_snapshot(spec=spec, name="v2", created_by=curator, ratios=(0.6, 0.2, 0.2))
    assert second.item_count == 50
    before = dict(first.items.values_list("image_id", "split"))
    after = dict(second.items.values_list("image_id", "split"))
    moved = {i: (before[i], after[i]) for i in before if before[i] != after[i]}
    assert not moved
    assert second.split_counts["test"] >= 8  # the new images still fill the splits by ratio
    # The new snapshot's test items are what an evaluation of it reads, and all it counts.
    recognizer = ModelVersion.objects.create(kind="recognizer", name="r", version="1", source="builtin")
    run = evaluation_create(snapshot=second, detector_version=None, recognizer_version=recognizer,
                            created_by=curator)
    assert run.total == second.split_counts["test"] == second.items.filter(split="test").count()


@pytestmark_db
def test_edits_after_freezing_change_neither_items_hash_nor_export(curator):
    spec = _spec_with_distinct_images(6)
    snap = factories.make_snapshot(spec=spec, name="frozen", created_by=curator, ratios=(0.5, 0.25, 0.25))
    rows = list(snap.items.order_by("image_id").values())
    before_zip = {fmt: export_bytes(snap, fmt) for fmt in ("jsonl", "yolo-obb")}
    image = Image.objects.get(pk=rows[0]["image_id"])
    # Image, annotation, source and licence edits after the freeze.
    Image.objects.filter(pk=image.pk).update(capture_session="later", width=1)
    image.categories.set(Category.objects.filter(spec=spec, slug="handwritten"))
    Source.objects.filter(pk=image.source_id).update(name="renamed", copyright_holder="someone else")
    Licence.objects.filter(pk=image.source.licence_id).update(name="Renamed licence", url="https://example.org/x")
    from labeling.models import Annotation, Region
    Region.objects.filter(version__annotation__task__image__spec=spec).update(latex="changed")
    Annotation.objects.filter(task__image=image).update(status=Annotation.Status.REJECTED)
    snap = Snapshot.objects.get(pk=snap.pk)
    assert list(snap.items.order_by("image_id").values("image_id", "split", "regions", "licence", "source",
                                                         "categories", "capture_session", "width")) == [
        {k: r[k] for k in ("image_id", "split", "regions", "licence", "source", "categories", "capture_session",
                           "width")} for r in rows]
    assert snapshots.snapshot_rebuild_check(snapshot=snap).matches
    assert {fmt: export_bytes(snap, fmt) for fmt in before_zip} == before_zip


@pytestmark_db
def test_deleting_the_accepted_annotation_after_freezing_keeps_the_rebuild_check_matching(curator):
    from labeling.models import Annotation

    spec = _spec_with_distinct_images(2)
    snap = factories.make_snapshot(spec=spec, name="gone", created_by=curator)
    Annotation.objects.filter(task__image_id=snap.items.first().image_id).delete()
    assert snapshots.snapshot_rebuild_check(snapshot=snap).matches


@pytestmark_db
def test_renaming_or_adding_a_category_after_freezing_does_not_change_a_coco_export(curator):
    spec = _spec_with_distinct_images(2)
    snap = factories.make_snapshot(spec=spec, name="cats", created_by=curator)
    before = export_bytes(snap, "coco")
    Category.objects.filter(spec=spec, slug="printed").update(name="Printed (renamed)")
    assert export_bytes(snap, "coco") == before
    from curation.services import category_create

    category_create(spec=spec, name="Graph paper", target_quota=5)
    assert export_bytes(snap, "coco") == before


@pytestmark_db
def test_a_spec_made_research_after_freezing_still_exports_as_commercial(curator):
    """The stricter of the frozen and the current intended use decides what an export leaves out."""
    import io
    import zipfile

    from curation.models import DatasetSpec, Licence

    spec = _spec_with_distinct_images(2)
    assert spec.intended_use == DatasetSpec.IntendedUse.COMMERCIAL
    snap = factories.make_snapshot(spec=spec, name="use", created_by=curator)
    assert snap.intended_use == DatasetSpec.IntendedUse.COMMERCIAL
    code = snap.items.first().licence["code"]
    Licence.objects.filter(code=code).update(allows_commercial=False)  # a catalogue correction
    DatasetSpec.objects.filter(pk=spec.pk).update(intended_use=DatasetSpec.IntendedUse.RESEARCH)
    snap.refresh_from_db()
    buf = io.BytesIO()
    result = snapshots.export_build(snapshot=snap, format="jsonl", dest=buf)
    assert (result.intended_use, result.images, result.excluded_images) == ("commercial", 0, 2)
    assert "licence now forbids commercial use" in zipfile.ZipFile(buf).read("LICENSES.json").decode()


@pytestmark_db
def test_the_same_work_and_seed_give_the_same_splits_without_an_earlier_snapshot(curator, monkeypatch):
    """Run on SQLite and on PostgreSQL (DATABASE_URL): the same hash either way."""
    spec = _spec_with_distinct_images(12)
    a = factories.make_snapshot(spec=spec, name="a", created_by=curator, seed=5)
    monkeypatch.setattr(snapshots, "_previous_splits", lambda snapshot: {})
    b = factories.make_snapshot(spec=spec, name="b", created_by=curator, seed=5)
    assert a.content_hash == b.content_hash
    assert dict(a.items.values_list("image_id", "split")) == dict(b.items.values_list("image_id", "split"))
