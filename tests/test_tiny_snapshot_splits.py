"""A tiny snapshot still has an item in every split with a positive ratio (3 images at
0.8/0.1/0.1 used to go all to train, so evaluating it answered 400), without moving
earlier snapshots' images or separating near-duplicates."""
from __future__ import annotations

import pytest

from curation.splits import SplitItem, assign_splits
from pipeline.evaluation import evaluation_create
from pipeline.models import ModelVersion
from tests import factories
from tests.curation.test_split_audit import _far_hashes, _hex, _spec_with_distinct_images

SPLITS = ("train", "validation", "test")


def _items(n: int, **kw) -> list[SplitItem]:
    return [SplitItem(i, h, categories=kw.get("categories", ("printed",))) for i, h in enumerate(_far_hashes(n))]


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_split_gets_an_item_from_three_images_on(n, seed):
    r = assign_splits(_items(n), seed=seed)
    assert all(r.counts[s] >= 1 for s in SPLITS), r.counts
    assert r.counts["train"] == max(r.counts.values())  # the rest still goes by ratio
    assert sum(r.counts.values()) == n
    assert r.category_counts == {s: {"printed": r.counts[s]} for s in SPLITS}


def test_two_images_go_to_train_and_test_first():
    assert assign_splits(_items(2)).counts == {"train": 1, "validation": 0, "test": 1}


def test_a_split_with_ratio_zero_stays_empty():
    r = assign_splits(_items(3), ratios={"train": 0.9, "validation": 0, "test": 0.1})
    assert r.counts == {"train": 2, "validation": 0, "test": 1}


def test_tiny_categories_each_image_of_its_own():
    items = [SplitItem(i, h, categories=(f"c{i}",)) for i, h in enumerate(_far_hashes(3))]
    assert assign_splits(items).counts == {"train": 1, "validation": 1, "test": 1}


def test_near_duplicates_are_not_separated_to_fill_a_split():
    base = 0x0F0F_0F0F_0F0F_0F0F
    twins = [SplitItem(i, _hex(base ^ (1 << i))) for i in range(3)]  # one group of three
    assert assign_splits(twins).counts == {"train": 3, "validation": 0, "test": 0}
    # A group of two and a lone image: the lone one is moved, never half of the pair.
    far = _far_hashes(1)[0]
    r = assign_splits(twins[:2] + [SplitItem(9, far)])
    assert r.assignment[0] == r.assignment[1]
    assert r.counts["test"] == 1 and r.assignment[9] == "test"


def test_previous_splits_are_kept_and_new_images_fill_the_empty_split():
    hashes = _far_hashes(5)
    previous = {0: "train", 1: "train", 2: "train"}  # an older snapshot that had no test item
    items = [SplitItem(i, hashes[i]) for i in range(3)]
    assert assign_splits(items, previous=previous).counts == {"train": 3, "validation": 0, "test": 0}
    items += [SplitItem(i, hashes[i]) for i in range(3, 5)]
    r = assign_splits(items, previous=previous)
    assert all(r.assignment[i] == "train" for i in range(3))
    assert {r.assignment[3], r.assignment[4]} == {"validation", "test"}


def test_fixed_items_are_not_moved():
    r = assign_splits(_items(3), fixed={0: "train", 1: "train", 2: "train"})
    assert r.counts == {"train": 3, "validation": 0, "test": 0}


def test_larger_sets_are_split_as_before():
    # Greedy placement already leaves no split empty here: nothing is moved.
    assert assign_splits([SplitItem(i, None, categories=(f"c{i}",)) for i in range(10)]).counts == \
        {"train": 8, "validation": 1, "test": 1}
    r = assign_splits(_items(100))
    assert r.counts == {"train": 80, "validation": 10, "test": 10}


@pytest.mark.django_db
def test_a_three_image_snapshot_can_be_evaluated(curator):
    spec = _spec_with_distinct_images(3)
    snap = factories.make_snapshot(spec=spec, name="tiny", created_by=curator)
    assert snap.split_counts == {"train": 1, "validation": 1, "test": 1}
    assert snap.items.filter(split="test").count() == 1
    recognizer = ModelVersion.objects.create(kind="recognizer", name="r", version="1", source="builtin")
    run = evaluation_create(snapshot=snap, detector_version=None, recognizer_version=recognizer, created_by=curator)
    assert run.total == 1
