"""InkML (online handwriting) reading and rendering, free of any Django or domain code.

InkML files such as CROHME's hold pen strokes (`<trace>`, comma-separated points
`x y` or `x y t`, sometimes more channels) and annotations, among them the truth
LaTeX (`<annotation type="truth">`). This module reads them into an `Ink` and
renders an `Ink` to a grayscale image, optionally with augmentation (slant and
point jitter), for importers and for model-training data generators alike.

    ink = parse_inkml(Path("UN_131_em_1082.inkml"))
    ink.truth            # '\\frac {0}{0}'  ($...$ stripped)
    img = render_ink(ink, height=128)             # PIL 'L' image, black ink on white
    aug = render_ink(ink, height=128, slant=0.2, jitter=0.8, rng=np.random.default_rng(0))

`parse_inkml` raises `InkMLError` (a ValueError) with a readable reason for a file it
cannot use: malformed XML, no `<ink>` root, a trace with a non-numeric point, no
strokes at all. A missing truth annotation is not an error: `truth` is None.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = ["Ink", "InkMLError", "parse_inkml", "ink_bbox", "render_ink"]

# The standard library's expat parser: it never fetches external entities and (expat
# >= 2.4.1) refuses entity-expansion bombs. lxml is stricter than the data: CROHME files
# carry `xml:id="0_1"`, which is not a valid NCName, and lxml rejects the whole file.
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class InkMLError(ValueError):
    """A file that is not usable InkML; the message says why."""


@dataclass
class Ink:
    """Pen strokes of one InkML file and what it says about them.

    traces: one float array of shape (n, 2) per stroke, (x, y) in the file's device
        units, y pointing down as on a tablet. Extra channels (time, pressure) are dropped.
    truth: the truth LaTeX with surrounding `$...$` removed, or None when the file has none.
    ui: the file's unique identifier (`<annotation type="UI">`), else the file name stem.
    annotations: every top-level `<annotation type=...>` as text (writer, age, copyright...).
    symbols: the file's symbol segmentation, where it has one (CROHME's `<traceGroup>`s with a
        truth and `<traceView traceDataRef=..>`s): (symbol label, indices into `traces`) each.
    """

    traces: list[np.ndarray]
    truth: str | None = None
    ui: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    symbols: list[tuple[str, list[int]]] = field(default_factory=list)

    @property
    def writer(self) -> str | None:
        """The writer id when the file names one (CROHME does for most sub-collections)."""
        return self.annotations.get("writer") or None

    @property
    def point_count(self) -> int:
        return int(sum(len(t) for t in self.traces))


def _local(tag) -> str:
    # Namespaced or not, `{http://www.w3.org/2003/InkML}trace` and `trace` are the same element.
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _strip_math(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return text


def _parse_trace(text: str, trace_id: str) -> np.ndarray:
    points = []
    for raw in text.split(","):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise InkMLError(f"trace {trace_id}: point {raw.strip()!r} has fewer than two coordinates")
        x, y = parts[0], parts[1]
        if not (_NUMBER.match(x) and _NUMBER.match(y)):
            raise InkMLError(f"trace {trace_id}: point {raw.strip()!r} is not numeric")
        points.append((float(x), float(y)))
    if not points:
        raise InkMLError(f"trace {trace_id}: no points")
    arr = np.asarray(points, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InkMLError(f"trace {trace_id}: non-finite coordinate")
    return arr


def parse_inkml(data: bytes | str | Path, *, name: str = "") -> Ink:
    """Read InkML from bytes, XML text, or a file path; raise InkMLError if unusable.

    `name` (or the path's stem) is the fallback `ui` when the file has no UI annotation.
    Only `<annotation>` elements directly under `<ink>` count: the truth of a
    `<traceGroup>` (one symbol) is not the formula's truth.
    """
    if isinstance(data, Path):
        name = name or data.stem
        try:
            data = data.read_bytes()
        except OSError as exc:
            raise InkMLError(f"cannot read file: {exc.strerror or exc}") from None
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not data or not data.strip():
        raise InkMLError("empty file")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InkMLError(f"malformed XML: {exc}") from None
    if _local(root.tag) != "ink":
        raise InkMLError(f"root element is <{_local(root.tag)}>, not <ink>")

    annotations: dict[str, str] = {}
    traces: list[np.ndarray] = []
    trace_index: dict[str, int] = {}
    for child in root:
        kind = _local(child.tag)
        if kind == "annotation":
            key = child.get("type") or ""
            if key and key not in annotations:
                annotations[key] = (child.text or "").strip()
    # Traces may sit directly under <ink> or inside <traceGroup>s: take them all, in document order.
    for trace in root.iter():
        if _local(trace.tag) == "trace":
            trace_id = trace.get("id") or trace.get(_XML_ID) or "?"
            trace_index.setdefault(trace_id, len(traces))
            traces.append(_parse_trace(trace.text or "", trace_id))
    if not traces:
        raise InkMLError("no <trace> with points")
    symbols = _symbol_groups(root, trace_index)

    truth = annotations.get("truth")
    truth = _strip_math(truth) if truth is not None else None
    if truth == "":
        truth = None
    ui = annotations.get("UI", "").strip().strip('"') or (Path(name).stem if name else "")
    return Ink(traces=traces, truth=truth, ui=ui, annotations=annotations, symbols=symbols)


def _symbol_groups(root, trace_index: dict[str, int]) -> list[tuple[str, list[int]]]:
    """(label, trace indices) of every `<traceGroup>` that points at strokes through `<traceView>`s.

    A reference to a trace the file does not hold is dropped rather than an error: the segmentation
    is a by-product the strokes and truth do not depend on.
    """
    groups = []
    for group in root.iter():
        if _local(group.tag) != "traceGroup":
            continue
        refs = [trace_index.get(v.get("traceDataRef", "")) for v in group if _local(v.tag) == "traceView"]
        refs = sorted({r for r in refs if r is not None})
        if not refs:
            continue
        label = next(((a.text or "").strip() for a in group
                      if _local(a.tag) == "annotation" and a.get("type") == "truth"), "")
        groups.append((label, refs))
    return groups


def ink_bbox(ink: Ink | list[np.ndarray]) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of all points, in the ink's own units."""
    traces = ink.traces if isinstance(ink, Ink) else ink
    allpts = np.concatenate([t[:, :2] for t in traces], axis=0)
    x0, y0 = allpts.min(axis=0)
    x1, y1 = allpts.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


_SHIFT = 4  # OpenCV sub-pixel precision: coordinates in 1/16 pixel


def render_ink(
    ink: Ink,
    *,
    height: int = 128,
    pen_width: float = 2.5,
    slant: float = 0.0,
    jitter: float = 0.0,
    margin: int = 8,
    max_width: int | None = None,
    min_aspect: float = 1 / 20,
    rng: np.random.Generator | None = None,
) -> Image.Image:
    """Render `ink` as a grayscale ('L') image, black antialiased strokes on white.

    The image is exactly `height` pixels high; the formula is scaled so that its ink
    fills `height - 2*margin` (a very flat drawing such as a lone minus sign counts as
    at least `min_aspect` of its width high, so it is not blown up to a bar). The width
    follows the formula's aspect ratio; with `max_width`, a wider formula is scaled down
    to fit and centred vertically.

    Augmentation (for training data): `slant` shears the strokes horizontally
    (x += slant * (y_bottom - y), positive leans right, 0.2 is about 11 degrees);
    `jitter` adds Gaussian noise of that standard deviation, in output pixels, to
    every point. Both use `rng` (default: a fresh unseeded generator).
    """
    if height <= 2 * margin + 1:
        raise ValueError(f"height {height} leaves no room inside a margin of {margin}")
    if not ink.traces:
        raise ValueError("the ink has no strokes")
    traces = [t[:, :2].astype(np.float64, copy=True) for t in ink.traces]
    if slant:
        y_bottom = max(float(t[:, 1].max()) for t in traces)
        for t in traces:
            t[:, 0] += slant * (y_bottom - t[:, 1])
    x0, y0, x1, y1 = ink_bbox(traces)
    ink_w, ink_h = x1 - x0, y1 - y0
    box = height - 2 * margin
    effective_h = max(ink_h, ink_w * min_aspect, 1e-9)
    scale = box / effective_h
    if ink_w == 0 and ink_h == 0:
        scale = 1.0  # a single dot
    width = int(np.ceil(ink_w * scale)) + 2 * margin
    if max_width is not None and width > max_width:
        scale *= (max_width - 2 * margin) / max(ink_w * scale, 1e-9)
        width = max_width
    width = max(width, 2 * margin + 1)
    # Centre the ink in the box (matters for flat drawings and when max_width shrank it).
    off_x = (width - ink_w * scale) / 2
    off_y = (height - ink_h * scale) / 2
    if jitter and rng is None:
        rng = np.random.default_rng()

    canvas = np.full((height, width), 255, dtype=np.uint8)
    thickness = max(1, int(round(pen_width)))
    factor = 1 << _SHIFT
    for t in traces:
        pts = np.empty_like(t)
        pts[:, 0] = (t[:, 0] - x0) * scale + off_x
        pts[:, 1] = (t[:, 1] - y0) * scale + off_y
        if jitter:
            pts += rng.normal(0.0, jitter, size=pts.shape)
        fixed = np.round(pts * factor).astype(np.int32)
        if len(fixed) == 1 or (fixed == fixed[0]).all():
            cv2.circle(canvas, tuple(int(v) for v in fixed[0]), max(1, thickness // 2) * factor, 0,
                       thickness=-1, lineType=cv2.LINE_AA, shift=_SHIFT)
        else:
            cv2.polylines(canvas, [fixed.reshape(-1, 1, 2)], isClosed=False, color=0, thickness=thickness,
                          lineType=cv2.LINE_AA, shift=_SHIFT)
    return Image.fromarray(canvas)  # 2-D uint8: mode "L"
