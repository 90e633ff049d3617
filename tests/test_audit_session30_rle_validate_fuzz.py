"""`rle.validate` works from the runs; it must accept and refuse exactly what the decode-based check
did (decode, encode back, compare, non-empty), for compressed counts strings, and `bbox` /
`decode_window` must agree with the decoded mask. Seeded fuzz on random and mutated strings.

The old check is run only where pycocotools can decode safely: its decoder writes runs past the
end of the mask's buffer without a bound (heap corruption), so strings whose runs do not sum to the
mask's size are refused by the reference without decoding (the old check refused them too: the
re-encoded string of an HxW mask always sums to H*W)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from common import rle
from common.rle import MaskError

ALPHABET = [chr(c) for c in range(40, 48 + 70)]  # below, inside and above COCO's alphabet


def _c_runs(s: str) -> list[int]:
    """pycocotools' rleFrString, with its 32-bit unsigned counts."""
    cnts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, 1
        while more:
            c = ord(s[p]) - 48 if p < len(s) else -48
            x |= ((c & 0x1F) << 5 * k) if k < 13 else 0
            more = c & 0x20
            p, k = p + 1, k + 1
            if not more and (c & 0x10):
                x |= -1 << 5 * k
        if len(cnts) > 2:
            x += cnts[-2]
        cnts.append(x & 0xFFFFFFFF)
    return cnts


def _old_validate(r: dict, width: int, height: int) -> dict:
    if sum(_c_runs(r["counts"])) != width * height:
        raise MaskError("runs do not cover the mask")
    arr = rle.decode(r)
    if not arr.any():
        raise MaskError("empty")
    return rle.encode(arr)


def _outcome(f, *args, **kwargs):
    try:
        return "ok", f(*args, **kwargs)
    except MaskError:
        return "refused", None


def _cases(seed: int, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        h, w = rng.randint(1, 12), rng.randint(1, 12)
        if rng.random() < 0.5:
            m = np.array([[rng.random() < rng.random() for _ in range(w)] for _ in range(h)])
            s = list(rle.encode(m)["counts"])
            for _ in range(rng.randint(0, 3)):
                op = rng.random()
                if op < 0.4 and s:
                    s[rng.randrange(len(s))] = rng.choice(ALPHABET)
                elif op < 0.7:
                    s.insert(rng.randrange(len(s) + 1), rng.choice(ALPHABET))
                elif len(s) > 1:
                    del s[rng.randrange(len(s))]
            yield h, w, "".join(s)
        else:
            yield h, w, "".join(rng.choice(ALPHABET[8:72]) for _ in range(rng.randint(1, 10)))
    # Huge, negative, over-long (leading-zero-like) and overflowing runs.
    for s in ["0", "1", "P", "o", "00000000", "0?", "0O", "2P0", "0lllll3", "1Y0", "ooooooo1", "\\`0",
              "0" + "o" * 7, "0" + "O" * 6 + "0"]:
        yield 3, 3, s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validate_from_runs_agrees_with_the_decode_based_check(seed):
    for h, w, s in _cases(seed, 3000):
        r = {"size": [h, w], "counts": s}
        old = _outcome(_old_validate, r, w, h)
        new = _outcome(rle.validate, r, width=w, height=h)
        assert old == new, (r, old, new)


@pytest.mark.parametrize("seed", [0, 1])
def test_bbox_and_window_agree_with_the_decoded_mask(seed):
    rng = np.random.default_rng(seed)
    for k in range(1500):
        h, w = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        m = np.zeros((h, w), bool)
        kind = k % 5
        if kind == 0:
            m[:] = True
        elif kind == 1:
            m[int(rng.integers(h)), int(rng.integers(w))] = True
        elif kind == 2:
            m[int(rng.integers(h)):, int(rng.integers(w)):] = True  # touches the bottom right edges
        elif kind == 3:
            m = rng.random((h, w)) < rng.random()
        encoded = rle.encode(m)
        ys, xs = np.nonzero(m)
        pad = int(rng.integers(0, 3))
        if not len(ys):
            assert rle.bbox(encoded) is None and rle.decode_window(encoded, pad=pad) is None
            continue
        assert rle.bbox(encoded) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        x0, y0, win = rle.decode_window(encoded, pad=pad)
        assert (x0, y0) == (max(xs.min() - pad, 0), max(ys.min() - pad, 0))
        assert win.shape == (min(ys.max() + 1 + pad, h) - y0, min(xs.max() + 1 + pad, w) - x0)
        assert (win.astype(bool) == m[y0:y0 + win.shape[0], x0:x0 + win.shape[1]]).all()
