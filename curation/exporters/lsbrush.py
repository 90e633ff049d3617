"""Label Studio's brush RLE: the ``"rle"`` list of a ``brushlabels`` result.

Label Studio stores a brush region as the whole image's RGBA pixels (row-major, 4 bytes a pixel,
``width * height * 4`` values) packed by thi.ng's ``rle-pack``: a bit stream of a 32-bit value
count, a 5-bit word size minus one, four 4-bit run-size classes minus one, then blocks of
``flag(1) class(2) length-1(class bits)`` followed by one word (a run, flag 1) or ``length`` words
(literals, flag 0); the stream is padded with zero bits and given as a list of bytes. The editor
writes a painted pixel as ``(a, a, a, a)`` with ``a`` its alpha (``Region2RLE``) and shows any pixel
whose alpha is not 0 (``RLE2Region``), so a mask pixel is ``(255, 255, 255, 255)`` and the rest 0.

:func:`encode_runs` is a port of ``encode_rle`` in ``label_studio_sdk/converter/brush.py``
(label-studio-sdk 2.1.2, formerly label-studio-converter; HumanSignal, Apache License 2.0,
https://github.com/HumanSignal/label-studio-sdk): word size 8, run-size classes 3, 4, 8 and 16
bits, a run of one value as a one-word literal block, runs longer than 65536 split into 65536s,
and the SDK's padding (8 zero bits when the stream already ends on a byte). It takes the runs
instead of the flattened array, so a mask is never drawn at the image's full size: the output is
byte for byte the SDK's ``encode_rle(np.repeat(mask.ravel() * 255, 4))`` (tested against lists the
SDK made, and decoded by the SDK's ``decode_rle`` in ``bench/compat_real_tools.py``). :func:`decode`
is the inverse, for brushes coming in (``manage.py import_labelstudio``): the format in one place.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .records import _mask_window

WORD_SIZE = 8
RLE_SIZES = (3, 4, 8, 16)
CHANNELS = 4          # R, G, B, A
ON = 255              # a painted pixel's value in every channel


class _Bits:
    """A most-significant-bit-first bit writer."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._acc = 0
        self._n = 0

    def write(self, value: int, bits: int) -> None:
        self._acc = (self._acc << bits) | value
        self._n += bits
        while self._n >= 8:
            self._n -= 8
            self.out.append((self._acc >> self._n) & 0xFF)
        self._acc &= (1 << self._n) - 1

    def close(self) -> list[int]:
        # The SDK pads with 8 - (bits % 8) zero bits: a whole zero byte when already aligned.
        self.write(0, 8 - self._n)
        return list(self.out)


def encode_runs(num: int, runs: Iterable[tuple[int, int]]) -> list[int]:
    """Label Studio RLE bytes of ``num`` values given as ``(length, value)`` runs (in order,
    consecutive runs of different values, lengths summing to ``num``)."""
    if not 0 <= num < 2**32:
        raise ValueError(f"Label Studio's RLE counts values in 32 bits; {num} values do not fit")
    bits = _Bits()
    bits.write(num, 32)
    bits.write(WORD_SIZE - 1, 5)
    for size in RLE_SIZES:
        bits.write(size - 1, 4)
    for length, value in runs:
        if length == 1:                     # a literal block of one word
            bits.write(0b000, 3)
            bits.write(0, 3)
        elif length <= 8:
            bits.write(0b100, 3)
            bits.write(length - 1, 3)
        elif length <= 16:
            bits.write(0b101, 3)
            bits.write(length - 1, 4)
        elif length <= 256:
            bits.write(0b110, 3)
            bits.write(length - 1, 8)
        else:
            while length > 2**16:
                bits.write(0b111, 3)
                bits.write(2**16 - 1, 16)
                bits.write(value, WORD_SIZE)
                length -= 2**16
            bits.write(0b111, 3)
            bits.write(length - 1, 16)
        bits.write(value, WORD_SIZE)
    return bits.close()


def mask_runs(rle: Mapping, width: int, height: int) -> list[tuple[int, int]]:
    """Row-major ``(length, 0 | 1)`` pixel runs of a COCO RLE mask, from its bounding box only."""
    if [int(v) for v in rle["size"]] != [height, width]:
        raise ValueError(f"a mask of size {list(rle['size'])} on a {width}x{height} image")
    total = width * height
    window = _mask_window(rle)
    if window is None:
        return [(total, 0)]
    x0, y0, win = window
    h, w = win.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = win
    edges = np.diff(padded, axis=1)
    rs, cs = np.nonzero(edges == 1)          # row-major order: the k-th start pairs with the k-th end
    re, ce = np.nonzero(edges == -1)
    starts = (y0 + rs.astype(np.int64)) * width + x0 + cs
    ends = (y0 + re.astype(np.int64)) * width + x0 + ce
    # A run reaching the right edge continues at the next row's left edge: one run, as the SDK sees it.
    apart = ends[:-1] != starts[1:]
    starts = starts[np.concatenate(([True], apart))].tolist()
    ends = ends[np.concatenate((apart, [True]))].tolist()
    runs, pos = [], 0
    for s, e in zip(starts, ends, strict=True):
        if s > pos:
            runs.append((s - pos, 0))
        runs.append((e - s, 1))
        pos = e
    if pos < total:
        runs.append((total - pos, 0))
    return runs


def mask_to_ls_rle(rle: Mapping, width: int, height: int) -> list[int] | None:
    """The ``value.rle`` of a Label Studio brush result for a COCO RLE mask of a width x height image
    (None for an empty mask: Label Studio has no empty brush region)."""
    runs = mask_runs(rle, width, height)
    if not any(v for _, v in runs):
        return None
    return encode_runs(width * height * CHANNELS, ((n * CHANNELS, ON if v else 0) for n, v in runs))


class _BitReader:
    """A most-significant-bit-first bit reader over the RLE's bytes."""

    # Reads straight from the bytes, a few at a time: unpacking the whole stream to one byte per bit
    # first (as this port did) costs 8 x the RLE's length in memory and ~10 us of numpy per block,
    # minutes for a brush of a few MB that a vendor's export may hold (audit, see the tests).
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data) * 8
        self.pos = 0

    def _span(self, nbits: int) -> tuple[int, int, int]:
        end = self.pos + nbits
        if end > self.size:
            raise ValueError("malformed brush RLE: it ends in the middle of a value.")
        start, self.pos = self.pos, end
        return start, end, (end + 7) >> 3

    def read(self, n: int) -> int:
        start, end, stop = self._span(n)
        value = int.from_bytes(self.data[start >> 3:stop], "big")
        return (value >> ((stop << 3) - end)) & ((1 << n) - 1)

    def words(self, count: int, size: int) -> np.ndarray:
        start, end, stop = self._span(count * size)
        first = start >> 3
        bits = np.unpackbits(np.frombuffer(self.data, dtype=np.uint8, count=stop - first, offset=first))
        chunk = bits[start - (first << 3):end - (first << 3)].reshape(count, size)
        return chunk.dot(1 << np.arange(size - 1, -1, -1, dtype=np.uint64))


def decode(rle: object, *, expect: int) -> np.ndarray:
    """The ``expect`` values (uint8) of a Label Studio brush RLE (a list of bytes).

    A port of ``decode_rle`` in ``label_studio_sdk/converter/brush.py`` (label-studio-sdk 2.1.2;
    HumanSignal, Apache License 2.0, https://github.com/HumanSignal/label-studio-sdk), itself a
    port of thi.ng ``rle-pack``'s ``decode``: a 32-bit value count, a 5-bit word size - 1, four 4-bit
    run-size classes - 1, then blocks ``flag(1) class(2) length-1(class bits)`` followed by one word
    repeated ``length`` times (flag 1) or ``length`` words (flag 0). Same results, read with numpy
    rather than a string of bits, and checked instead of trusting the input: the count must be
    ``expect`` (the image's width x height x 4), words are at most 8 bits (the SDK decodes into
    uint8, as the editor's ``Region2RLE`` writes), and a stream that ends early or a literal block
    past the count (the SDK fails with IndexError there; a run past it is cut, as in the SDK) is
    a ValueError saying what is wrong. The inverse is :func:`encode_runs`.
    """
    if (not isinstance(rle, list) or not rle
            or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in rle)):
        raise ValueError("malformed brush RLE: must be a non-empty list of bytes (0 to 255).")
    bits = _BitReader(bytes(rle))
    num = bits.read(32)
    if num != expect:
        raise ValueError(f"malformed brush RLE: it holds {num} values; the image's "
                                      f"width x height x 4 is {expect}.")
    word_size = bits.read(5) + 1
    if word_size > 8:
        raise ValueError(f"malformed brush RLE: {word_size}-bit words (Label Studio writes 8).")
    rle_sizes = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        x = bits.read(1)
        j = i + 1 + bits.read(rle_sizes[bits.read(2)])
        if x:
            out[i:j] = bits.read(word_size)
            i = j
        else:
            if j > num:
                raise ValueError("malformed brush RLE: a block runs past the image.")
            out[i:j] = bits.words(j - i, word_size)
            i = j
    return out
