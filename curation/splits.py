"""Leak-free split assignment and content hashes for frozen snapshots.

Splits
------
:func:`assign_splits` puts every image into train, validation or test by ratio, stratified
by category, so that nothing leaks between splits:

1. **Near-duplicates** (64-bit perceptual hashes within ``max_distance`` bits) are found with
   multi-index hashing: split the hash into ``m > max_distance`` chunks; two hashes within
   that distance agree exactly on at least ``m - max_distance`` chunks (pigeonhole), so only
   hashes sharing the bits of some such chunk combination are compared, with vectorised XOR +
   popcount. ``m`` is planned from the number of hashes (more, longer keys for more hashes).
   Identical hashes are collapsed first, so a burst of identical uploads costs nothing.
2. Near-duplicate pairs and **capture sessions** (every image of a session, linked together)
   become edges of a graph; its connected components (a union-find, done by
   ``scipy.sparse.csgraph``) are the groups that must stay together.
3. Groups are placed greedily, largest first (ties in a seeded random order): each goes to
   the split where it least increases the squared error, relative to the category totals,
   between what the split holds and what its ratio asks for, per category.
   ``fixed`` pins images (e.g. an existing frozen test set) and with them their groups.
   ``previous`` does the same softly, for an earlier snapshot's splits: a group takes the
   split its members had (the most held-out one, test before validation before train, when
   they disagree because a new image now joins them), so successive snapshots of a spec
   never move an image into another split, and a model trained on the newer one never
   trains on the older one's test images.
   Besides the per-category error, the error of each split's total size counts as much as
   all categories' together, so many tiny categories (each too small to be stratified on
   its own) still fill every split by its ratio instead of all rounding into train.
4. A split with a positive ratio left empty (3 images at 0.8/0.1/0.1: a tenth of 3 rounds
   to none, so the error above is smallest with all in train) then takes one freely placed
   group from a split that keeps others, test first: a tiny snapshot still has something to
   evaluate on. The group moved is the one that increases the error least; pinned groups
   never move, and groups move whole.

The result depends only on the items (not their order), the ratios, the seed and the pins.

Content hashes
--------------
:func:`canonical_json` is the one byte encoding of a value (sorted keys, no whitespace,
UTF-8, shortest float repr, NaN refused); :func:`content_hash` its SHA-256, and
:class:`ContentHasher` the same over a stream of rows (a snapshot of a million images is
hashed without holding it), so a frozen snapshot can be rebuilt and checked byte for byte.
"""
from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import itertools
import json
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

TRAIN, VALIDATION, TEST = "train", "validation", "test"
DEFAULT_RATIOS: dict[str, float] = {TRAIN: 0.8, VALIDATION: 0.1, TEST: 0.1}
# The one near-duplicate threshold: what the image browser lists as near-duplicates is what
# splits keep together (re-encoding or resizing a formula photo moves its hash by up to ~8 bits).
DEFAULT_MAX_DISTANCE = 8
NO_CATEGORY = ""
# Which split wins when the members of one group had different splits before: the most held out.
HOLD_OUT_ORDER = (TRAIN, VALIDATION, TEST)
_BLOCK = 2048
_SMALL_BUCKET = 64


@dataclass(frozen=True)
class SplitItem:
    """One image to place: its id, perceptual hash (16 hex digits or int), session and kinds."""

    id: Hashable
    phash: str | int | None = None
    session: str = ""
    categories: tuple[str, ...] = ()


@dataclass
class SplitResult:
    """Where each image went, which group it belongs to, and what each split holds."""

    assignment: dict[Hashable, str]
    group_of: dict[Hashable, int]
    near_duplicate_pairs: int
    counts: dict[str, int] = field(default_factory=dict)
    category_counts: dict[str, dict[str, int]] = field(default_factory=dict)


# --- near-duplicates ----------------------------------------------------------------------

def phash_to_int(value: str | int) -> int:
    return value if isinstance(value, int) else int(value, 16)


def _chunk_masks(chunks: int) -> list[int]:
    """Bit masks of `chunks` contiguous, near-equal slices of 64 bits."""
    masks, start = [], 0
    for i in range(chunks):
        width = 64 // chunks + (1 if i < 64 % chunks else 0)
        masks.append(((1 << width) - 1) << start)
        start += width
    return masks


def _plan(n: int, max_distance: int) -> int:
    """Number of chunks for multi-index hashing of `n` hashes, by a simple cost model.

    With ``m`` chunks, two hashes within ``d`` bits agree on at least ``m - d`` whole chunks,
    so bucketing by every combination of ``m - d`` chunks finds every pair. More chunks mean
    more combinations (sorts) but longer keys (fewer false candidates); the cost is estimated
    for uniformly spread hashes as combinations x (n + n^2 / 2^key_bits).
    """
    best, best_cost = max_distance + 1, math.inf
    for m in range(max_distance + 1, min(64, 4 * (max_distance + 1)) + 1):
        k = m - max_distance
        combos = math.comb(m, k)
        bits = 64 * k / m
        cost = combos * (n + n * n / 2.0 ** bits)
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def _pairs_within(values: np.ndarray, idx: np.ndarray, max_distance: int) -> list[np.ndarray]:
    """Pairs (i < j) of `idx` whose hashes differ in at most `max_distance` bits (one big bucket)."""
    out = []
    h = values[idx]
    for start in range(0, len(idx) - 1, _BLOCK):
        rows = h[start:start + _BLOCK]
        # Only columns from `start` on: pairs with earlier rows were found by earlier blocks.
        dist = np.bitwise_count(rows[:, None] ^ h[None, start:])
        r, c = np.nonzero(dist <= max_distance)
        keep = c > r  # each unordered pair once, no self-pairs
        if keep.any():
            out.append(np.stack([idx[r[keep] + start], idx[c[keep] + start]], axis=1))
    return out


def _pairs_sharing_key(values: np.ndarray, keys: np.ndarray, max_distance: int) -> list[np.ndarray]:
    """Close pairs among hashes with equal `keys`.

    Small buckets are handled all at once, offset by offset (position i against i + o in key
    order, for every bucket together), so a million tiny buckets cost no Python loop each;
    the rare large bucket is compared block-wise.
    """
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    sizes = np.diff(np.r_[starts, len(k)])
    big = sizes > _SMALL_BUCKET
    out: list[np.ndarray] = []
    for s, size in zip(starts[big], sizes[big], strict=True):
        out.extend(_pairs_within(values, order[s:s + size], max_distance))
    in_small = np.repeat(~big, sizes)
    h = values[order]
    for off in range(1, _SMALL_BUCKET):
        pos = np.flatnonzero((k[:-off] == k[off:]) & in_small[:-off])
        if len(pos) == 0:  # no bucket holds more than `off` hashes
            break
        close = np.bitwise_count(h[pos] ^ h[pos + off]) <= max_distance
        if close.any():
            out.append(np.stack([order[pos[close]], order[pos[close] + off]], axis=1))
    return out


def near_duplicate_pairs(hashes: Sequence[str | int] | np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE,
                         *, chunks: int | None = None) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of hashes at Hamming distance <= `max_distance`.

    Multi-index hashing (see the module docstring; ``chunks`` overrides the planned number
    of chunks); returns a ``(k, 2)`` int64 array with each pair once. Identical hashes are
    linked as a chain (enough to group them) rather than all pairwise.
    """
    if max_distance < 0 or max_distance > 63:
        raise ValueError("max_distance must be between 0 and 63")
    if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64:
        values = hashes
    else:
        values = np.fromiter((phash_to_int(h) for h in hashes), dtype=np.uint64, count=len(hashes))
    if len(values) < 2:
        return np.empty((0, 2), dtype=np.int64)
    uniq, inverse = np.unique(values, return_inverse=True)
    pairs: list[np.ndarray] = []
    # Identical hashes: chain each to the previous one with the same value.
    order = np.argsort(inverse, kind="stable")
    same = inverse[order][1:] == inverse[order][:-1]
    if same.any():
        pairs.append(np.stack([order[:-1][same], order[1:][same]], axis=1))
    # Distinct hashes: compare only those agreeing on some m - d whole chunks.
    if len(uniq) > 1 and max_distance > 0:
        m = chunks or _plan(len(uniq), max_distance)
        if not max_distance < m <= 64:
            raise ValueError("chunks must be more than max_distance and at most 64")
        masks = _chunk_masks(m)
        unique_pairs: list[np.ndarray] = []
        for combo in itertools.combinations(masks, m - max_distance):
            keys = uniq & np.uint64(sum(combo))
            unique_pairs.extend(_pairs_sharing_key(uniq, keys, max_distance))
        if unique_pairs:
            up = np.concatenate(unique_pairs)
            up = np.unique(np.sort(up, axis=1), axis=0)
            # Map unique-hash pairs back to one representative image per hash.
            first = np.full(len(uniq), -1, dtype=np.int64)
            first[inverse[::-1]] = np.arange(len(values) - 1, -1, -1)
            pairs.append(np.stack([first[up[:, 0]], first[up[:, 1]]], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    out = np.sort(np.concatenate(pairs).astype(np.int64), axis=1)
    return np.unique(out, axis=0)


def leakage_groups(items: Sequence[SplitItem], *, max_distance: int = DEFAULT_MAX_DISTANCE
                   ) -> tuple[np.ndarray, int]:
    """Group label per item (near-duplicates and sessions joined) and the near-duplicate pair count."""
    n = len(items)
    with_hash = [i for i, it in enumerate(items) if it.phash not in (None, "")]
    dup = near_duplicate_pairs([items[i].phash for i in with_hash], max_distance)
    index = np.asarray(with_hash, dtype=np.int64)
    edges = [index[dup]] if len(dup) else []
    first_of_session: dict[str, int] = {}
    session_edges = []
    for i, it in enumerate(items):
        if it.session:
            j = first_of_session.setdefault(it.session, i)
            if j != i:
                session_edges.append((j, i))
    if session_edges:
        edges.append(np.asarray(session_edges, dtype=np.int64))
    if edges:
        e = np.concatenate(edges)
        graph = coo_matrix((np.ones(len(e), dtype=np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    else:
        graph = coo_matrix((n, n), dtype=np.int8)
    _, labels = connected_components(graph, directed=False)
    return labels, len(dup)


# --- assignment ---------------------------------------------------------------------------

def _fill_empty_splits(*, order, pinned, group_split, g_size, ptr, cols, vals, splits, active, held, size_target,
                       size_scale, current, target, scale) -> None:
    """Give each empty split of positive weight one freely placed group, in place (step 4).

    Most held-out split first, so with two groups for three splits test is filled before
    validation. A group is only taken from a split that keeps something, so filling one
    split never empties another; among those, the move that increases the squared error
    (the greedy placement's, sizes and categories) least wins, ties to the earlier group
    in placement order.
    """
    rank = {k: (HOLD_OUT_ORDER.index(s) if s in HOLD_OUT_ORDER else -1, k) for k, s in enumerate(splits)}
    for k in sorted((k for k in active if held[k] == 0), key=rank.__getitem__, reverse=True):
        best, best_delta = -1, math.inf
        for g in order:
            d = group_split[g]
            size = float(g_size[g])
            if pinned[g] or d == k or held[d] - size <= 0:
                continue
            # Error change of adding g to k and taking it from d (see the greedy placement).
            delta = (2.0 * size * size + 2.0 * size * ((held[k] - size_target[k]) - (held[d] - size_target[d]))
                     ) * size_scale
            for j in range(ptr[g], ptr[g + 1]):
                c, v = cols[j], vals[j]
                delta += (2.0 * v * v + 2.0 * v * ((current[k][c] - target[k][c]) - (current[d][c] - target[d][c]))
                          ) * scale[c]
            if delta < best_delta:
                best, best_delta = g, delta
        if best < 0:
            continue  # nothing can move without emptying another split or splitting a group
        d, size = group_split[best], float(g_size[best])
        group_split[best] = k
        held[d] -= size
        held[k] += size
        for j in range(ptr[best], ptr[best + 1]):
            current[d][cols[j]] -= vals[j]
            current[k][cols[j]] += vals[j]


def assign_splits(
    items: Iterable[SplitItem],
    *,
    ratios: Mapping[str, float] = DEFAULT_RATIOS,
    seed: int = 0,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    fixed: Mapping[Hashable, str] | None = None,
    previous: Mapping[Hashable, str] | None = None,
) -> SplitResult:
    """Assign each item a split; a near-duplicate/session group always lands in one split.

    ``ratios`` maps split names to non-negative weights (normalised to sum 1). ``fixed``
    pins some items to a split (their whole group follows); a group pinned to two splits
    raises ValueError, since honouring both would leak. ``previous`` (an earlier snapshot's
    splits) pins groups not pinned by ``fixed`` softly: splits no longer in ``ratios`` or
    with weight 0 are ignored, and a group whose members had different splits takes the
    most held-out of them (:data:`HOLD_OUT_ORDER`; otherwise the later in ``ratios``).
    Every split with a positive weight gets at least one group where enough freely placed
    groups exist (see step 4 of the module docstring).
    """
    items = sorted(items, key=lambda it: it.id)
    splits = list(ratios)
    weights = np.asarray([float(ratios[s]) for s in splits])
    if not splits or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("ratios must be non-negative with a positive sum")
    weights = weights / weights.sum()
    fixed = dict(fixed or {})
    unknown = sorted({s for s in fixed.values() if s not in ratios})
    if unknown:
        raise ValueError(f"fixed splits {unknown} are not in ratios")
    n = len(items)
    if n == 0:
        return SplitResult({}, {}, 0, {s: 0 for s in splits}, {s: {} for s in splits})

    labels, dup_pairs = leakage_groups(items, max_distance=max_distance)
    n_groups = int(labels.max()) + 1
    cats = sorted({c for it in items for c in (it.categories or (NO_CATEGORY,))})
    cat_index = {c: k for k, c in enumerate(cats)}
    # Per group: image count per category (an image of two kinds counts in both).
    pair_group = [labels[i] for i, it in enumerate(items) for _ in (it.categories or (NO_CATEGORY,))]
    pair_cat = [cat_index[c] for it in items for c in (it.categories or (NO_CATEGORY,))]
    g_cat = np.zeros((n_groups, len(cats)))
    np.add.at(g_cat, (np.asarray(pair_group, dtype=np.int64), np.asarray(pair_cat, dtype=np.int64)), 1.0)
    g_size = np.bincount(labels, minlength=n_groups)
    # Stratifying on categories balances sizes too (every image has one, NO_CATEGORY at
    # least); a separate size term would outweigh small categories and defeat stratification.
    totals = g_cat.sum(axis=0)
    target = (weights[:, None] * totals[None, :]).tolist()
    scale = (1.0 / np.maximum(totals, 1.0)).tolist()
    current = [[0.0] * len(cats) for _ in splits]
    # Each split's total size, its target, and the weight of its squared relative error: as much
    # as all categories' together (len(cats) / n), so that many tiny categories, each of which
    # alone rounds into train, still leave validation and test their share.
    size_target = (weights * n).tolist()
    size_scale = len(cats) / n
    held = [0.0] * len(splits)

    group_split = [-1] * n_groups
    for item_index, it in enumerate(items):
        if it.id in fixed:
            g, s = int(labels[item_index]), splits.index(fixed[it.id])
            if group_split[g] not in (-1, s):
                raise ValueError(f"item {it.id!r} is pinned to {fixed[it.id]!r} but its near-duplicate/session "
                                 f"group is pinned to {splits[group_split[g]]!r}")
            group_split[g] = s
    if previous:
        rank = {s: (HOLD_OUT_ORDER.index(s) if s in HOLD_OUT_ORDER else -1, k) for k, s in enumerate(splits)}
        soft: dict[int, str] = {}
        for item_index, it in enumerate(items):
            s = previous.get(it.id)
            g = int(labels[item_index])
            if s not in rank or weights[splits.index(s)] <= 0 or group_split[g] >= 0:
                continue
            if g not in soft or rank[s] > rank[soft[g]]:
                soft[g] = s
        for g, s in soft.items():
            group_split[g] = splits.index(s)
    # A group's categories as a sparse row (CSR), walked in plain Python: with a handful of
    # categories that is several times faster than a numpy expression per group.
    rows, cols = np.nonzero(g_cat)
    vals = g_cat[rows, cols].tolist()
    cols = cols.tolist()
    ptr = np.searchsorted(rows, np.arange(n_groups + 1)).tolist()
    for g, s in enumerate(group_split):
        if s >= 0:
            held[s] += float(g_size[g])
            for j in range(ptr[g], ptr[g + 1]):
                current[s][cols[j]] += vals[j]

    pinned = [s >= 0 for s in group_split]  # by `fixed` or `previous`: never moved afterwards
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(n_groups)
    order = shuffled[np.argsort(-g_size[shuffled], kind="stable")].tolist()
    active = [k for k in range(len(splits)) if weights[k] > 0]
    for g in order:
        if group_split[g] >= 0:
            continue
        a, b = ptr[g], ptr[g + 1]
        size = float(g_size[g])
        best, best_delta = active[0], math.inf
        for k in active:
            cur, tgt = current[k], target[k]
            # Increase of sum_c ((cur + v - target)^2 - (cur - target)^2) / total_c, plus the
            # same for the split's size, weighted by size_scale.
            delta = (size * size + 2.0 * size * (held[k] - size_target[k])) * size_scale
            for j in range(a, b):
                c, v = cols[j], vals[j]
                delta += (v * v + 2.0 * v * (cur[c] - tgt[c])) * scale[c]
            if delta < best_delta:
                best, best_delta = k, delta
        group_split[g] = best
        held[best] += size
        cur = current[best]
        for j in range(a, b):
            cur[cols[j]] += vals[j]
    _fill_empty_splits(order=order, pinned=pinned, group_split=group_split, g_size=g_size, ptr=ptr, cols=cols,
                       vals=vals, splits=splits, active=active, held=held, size_target=size_target,
                       size_scale=size_scale, current=current, target=target, scale=scale)

    item_split = np.asarray(group_split, dtype=np.int64)[labels]
    sizes = np.bincount(item_split, minlength=len(splits))
    assignment = {it.id: splits[item_split[i]] for i, it in enumerate(items)}
    counts = {s: int(sizes[k]) for k, s in enumerate(splits)}
    category_counts = {s: {c: int(round(current[k][cat_index[c]])) for c in cats} for k, s in enumerate(splits)}
    return SplitResult(
        assignment=assignment,
        group_of={it.id: int(labels[i]) for i, it in enumerate(items)},
        near_duplicate_pairs=dup_pairs,
        counts=counts,
        category_counts=category_counts,
    )


# --- content hashes -----------------------------------------------------------------------

def _default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.hex()
    raise TypeError(f"{type(obj).__name__} has no canonical JSON form (sets are unordered: sort them first)")


def canonical_json(obj: Any) -> bytes:
    """The one byte encoding of `obj`: sorted keys, no spaces, UTF-8, NaN refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_default).encode("utf-8")


def content_hash(obj: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of `obj`."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


class ContentHasher:
    """SHA-256 over a stream of rows, each as canonical JSON plus a newline.

    The caller feeds rows in a defined order (e.g. by image id); the digest then identifies
    the snapshot's content exactly, without holding it in memory.
    """

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.rows = 0

    def update(self, row: Any) -> None:
        self._h.update(canonical_json(row))
        self._h.update(b"\n")
        self.rows += 1

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def rows_hash(rows: Iterable[Any]) -> str:
    """:class:`ContentHasher` digest of `rows`, in the order given."""
    hasher = ContentHasher()
    for row in rows:
        hasher.update(row)
    return hasher.hexdigest()
