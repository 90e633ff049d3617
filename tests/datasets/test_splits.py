"""Split assignment: no leaks through near-duplicates or sessions, ratios, strata, determinism."""
from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from curation.splits import (
    ContentHasher,
    SplitItem,
    assign_splits,
    canonical_json,
    content_hash,
    near_duplicate_pairs,
    rows_hash,
)

CATS = ("printed", "handwritten", "shadow", "highlighter")


def _flip(h: int, bits: list[int]) -> int:
    for b in bits:
        h ^= 1 << int(b)
    return h


def _fixture(seed: int = 0, n_free: int = 900):
    """Items with planted near-duplicate groups and sessions, and the groups they must form."""
    rng = np.random.default_rng(seed)
    items, groups = [], []
    next_id = 0
    # 40 near-duplicate groups of 2..6 images: each within 3 bits of its group's base hash.
    for g in range(40):
        base = int(rng.integers(0, 2**63)) | (int(rng.integers(0, 2)) << 63)
        members = []
        for _ in range(int(rng.integers(2, 7))):
            h = _flip(base, list(rng.choice(64, size=int(rng.integers(0, 4)), replace=False)))
            items.append(SplitItem(next_id, f"{h:016x}", categories=(CATS[g % 4],)))
            members.append(next_id)
            next_id += 1
        groups.append(members)
    # 30 capture sessions of 3..8 images with unrelated hashes.
    for s in range(30):
        members = []
        for _ in range(int(rng.integers(3, 9))):
            items.append(SplitItem(next_id, f"{int(rng.integers(0, 2**63)):016x}", session=f"session-{s}",
                                   categories=(CATS[(s + 1) % 4],)))
            members.append(next_id)
            next_id += 1
        groups.append(members)
    # A session that also holds a near-duplicate of group 0: the two groups must merge.
    h0 = int(items[groups[0][0]].phash, 16)
    items.append(SplitItem(next_id, f"{_flip(h0, [5]):016x}", session="session-0", categories=("printed",)))
    groups[0] = groups[0] + groups[40] + [next_id]
    groups.pop(40)
    next_id += 1
    # Free images: random hashes (far apart with overwhelming probability), no session.
    for _ in range(n_free):
        items.append(SplitItem(next_id, f"{int(rng.integers(0, 2**63)):016x}",
                               categories=(CATS[int(rng.integers(0, 4))],)))
        next_id += 1
    return items, groups


def test_near_duplicate_pairs_equal_brute_force():
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**63, size=1500, dtype=np.uint64)
    for k in range(1, 200, 3):  # plant neighbours at 1..8 bits, and exact copies
        bits = rng.choice(64, size=int(rng.integers(0, 9)), replace=False)
        hashes[k] = hashes[k - 1] ^ np.uint64(sum(1 << int(b) for b in bits))
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    for d, chunks in ((0, None), (3, None), (6, None), (8, None), (3, 5), (6, 8), (6, 9), (8, 12)):
        found = {tuple(p) for p in near_duplicate_pairs(hashes, d, chunks=chunks).tolist()}
        i, j = np.nonzero(np.triu(dist <= d, k=1))
        expected = set(zip(i.tolist(), j.tolist(), strict=True))
        # Exact duplicates are chained rather than fully paired; everything else is exact.
        assert found <= expected
        assert {p for p in expected if dist[p] > 0} <= found
        assert len(found) > 0


def test_near_duplicate_pairs_accept_hex_strings_and_refuse_bad_distance():
    assert near_duplicate_pairs(["ffffffffffffffff", "fffffffffffffffe", "0000000000000000"], 1).tolist() == [[0, 1]]
    with pytest.raises(ValueError):
        near_duplicate_pairs(["00"], 64)
    with pytest.raises(ValueError, match="chunks"):
        near_duplicate_pairs(["00", "01"], 3, chunks=3)


def test_a_bucket_larger_than_the_vectorised_limit_is_still_searched():
    # 300 hashes equal in every bit but the low 16: one key for all of them under any plan
    # with few chunks, far more than the per-offset path handles.
    base = 0xABCDEF0123450000
    hashes = np.array([base | int(x) for x in np.random.default_rng(2).choice(1 << 16, 300, replace=False)],
                      dtype=np.uint64)
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    i, j = np.nonzero(np.triu(dist <= 4, k=1))
    assert {tuple(p) for p in near_duplicate_pairs(hashes, 4, chunks=5).tolist()} == set(
        zip(i.tolist(), j.tolist(), strict=True))


def test_near_duplicates_and_sessions_never_straddle_splits():
    items, groups = _fixture()
    result = assign_splits(items, seed=3)
    for members in groups:
        assert len({result.assignment[m] for m in members}) == 1, members
        assert len({result.group_of[m] for m in members}) == 1
    assert result.near_duplicate_pairs >= sum(len(g) - 1 for g in groups[:40]) - 1


def test_unrelated_images_are_not_grouped():
    items, groups = _fixture()
    result = assign_splits(items, seed=3)
    grouped = {m for g in groups for m in g}
    free_groups = Counter(result.group_of[it.id] for it in items if it.id not in grouped)
    assert max(free_groups.values()) == 1


def test_split_ratios_within_tolerance_and_stratified_by_category():
    items, _ = _fixture(n_free=3000)
    ratios = {"train": 0.7, "validation": 0.15, "test": 0.15}
    result = assign_splits(items, ratios=ratios, seed=11)
    n = len(items)
    counts = Counter(result.assignment.values())
    assert counts == Counter(result.counts)
    for split, r in ratios.items():
        assert abs(counts[split] / n - r) < 0.01, counts
    per_cat: dict[str, Counter] = defaultdict(Counter)
    for it in items:
        per_cat[it.categories[0]][result.assignment[it.id]] += 1
    for cat, c in per_cat.items():
        total = sum(c.values())
        for split, r in ratios.items():
            assert abs(c[split] / total - r) < 0.02, (cat, c)
            assert result.category_counts[split][cat] == c[split]


def test_rare_category_still_reaches_every_split():
    items = [SplitItem(i, None, categories=("printed",)) for i in range(200)]
    items += [SplitItem(1000 + i, None, categories=("whiteout",)) for i in range(10)]
    result = assign_splits(items, ratios={"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
    whiteout = Counter(result.assignment[1000 + i] for i in range(10))
    assert whiteout == {"train": 8, "validation": 1, "test": 1}


def test_assignment_is_deterministic_given_the_seed_and_independent_of_input_order():
    items, _ = _fixture()
    a = assign_splits(items, seed=5).assignment
    shuffled = list(items)
    np.random.default_rng(0).shuffle(shuffled)
    assert assign_splits(shuffled, seed=5).assignment == a
    assert assign_splits(items, seed=6).assignment != a


def test_fixed_items_pin_their_whole_group():
    items, groups = _fixture()
    group = groups[0]
    result = assign_splits(items, seed=1, fixed={group[0]: "test"})
    assert {result.assignment[m] for m in group} == {"test"}
    with pytest.raises(ValueError, match="pinned"):
        assign_splits(items, fixed={group[0]: "test", group[1]: "train"})
    with pytest.raises(ValueError, match="not in ratios"):
        assign_splits(items, fixed={group[0]: "holdout"})


def test_zero_ratio_split_gets_nothing_and_bad_ratios_are_refused():
    items = [SplitItem(i, None, categories=("printed",)) for i in range(50)]
    result = assign_splits(items, ratios={"train": 1, "validation": 0, "test": 1})
    assert set(result.assignment.values()) == {"train", "test"}
    with pytest.raises(ValueError):
        assign_splits(items, ratios={"train": -1, "test": 1})
    assert assign_splits([], seed=0).assignment == {}


def test_images_without_category_or_hash_are_still_assigned():
    items = [SplitItem(i, None if i % 2 else "", categories=()) for i in range(100)]
    result = assign_splits(items, ratios={"train": 0.5, "test": 0.5})
    assert Counter(result.assignment.values()) == {"train": 50, "test": 50}


def test_content_hash_is_canonical():
    a = {"b": [1, 2.5, "é"], "a": {"y": None, "x": True}}
    b = {"a": {"x": True, "y": None}, "b": [1, 2.5, "é"]}
    assert canonical_json(a) == b'{"a":{"x":true,"y":null},"b":[1,2.5,"\xc3\xa9"]}'
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "b": [1, 2.5, "e"]})
    assert content_hash({"v": np.int64(3), "w": np.array([1.5])}) == content_hash({"v": 3, "w": [1.5]})
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})
    with pytest.raises(TypeError, match="sets are unordered"):
        canonical_json({1, 2})


def test_streamed_rows_hash_equals_the_same_rows_hashed_at_once():
    rows = [{"image": i, "annotation_version": i % 3, "split": "train"} for i in range(100)]
    hasher = ContentHasher()
    for row in rows:
        hasher.update(row)
    assert hasher.rows == 100
    assert hasher.hexdigest() == rows_hash(iter(rows))
    assert rows_hash(rows) != rows_hash(rows[::-1])  # order is part of the content
