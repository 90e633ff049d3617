"""Server-side SVG bar charts: no JavaScript, no vendored chart library, readable without CSS.

A chart is a list of rows, each with a label and one value per series; bars are scaled to
the largest value (or a given maximum, e.g. a quota target or 1.0 for rates). Every text
goes through :func:`django.utils.html.escape`, so labels from user data are safe.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d")
ROW_H = 14
GAP = 6
LABEL_W = 170
BAR_W = 300
VALUE_W = 90


@dataclass(frozen=True)
class Row:
    """One group of bars: `values` line up with the chart's series (None: not measured)."""

    label: str
    values: Sequence[float | None]
    target: float | None = None


def _fmt(value: float | None, fmt: str) -> str:
    if value is None:
        return "—"
    if fmt == "pct":
        return f"{value * 100:.1f}%"
    if fmt == "int":
        return f"{int(value):,}"
    return f"{value:.3g}"


def hbar_svg(rows: Sequence[Row], series: Sequence[str], *, title: str, max_value: float | None = None,
             fmt: str = "int") -> SafeString:
    """Horizontal grouped bars, one group per row; a row's `target` draws a tick line."""
    top = max_value
    if top is None:
        candidates = [v for r in rows for v in r.values if v is not None] + [r.target for r in rows if r.target]
        top = max(candidates, default=0) or 1
    group_h = len(series) * ROW_H + GAP
    legend_h = 18 if len(series) > 1 else 0
    height = legend_h + max(len(rows), 1) * group_h + 4
    width = LABEL_W + BAR_W + VALUE_W
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">'
             f'<title>{escape(title)}</title>']
    if legend_h:
        x = LABEL_W
        for i, name in enumerate(series):
            parts.append(f'<rect x="{x}" y="3" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                         f'<text x="{x + 14}" y="12">{escape(name)}</text>')
            x += 14 + 7 * len(name) + 12
    if not rows:
        parts.append(f'<text x="4" y="{legend_h + 12}" fill="#777">No data yet.</text>')
    for gi, row in enumerate(rows):
        y0 = legend_h + gi * group_h
        parts.append(f'<text x="{LABEL_W - 6}" y="{y0 + ROW_H - 3}" text-anchor="end">{escape(row.label[:32])}</text>')
        for si, value in enumerate(row.values):
            y = y0 + si * ROW_H
            w = 0.0 if value is None else max(0.0, min(1.0, value / top)) * BAR_W
            name = series[si] if si < len(series) else ""
            parts.append(f'<rect x="{LABEL_W}" y="{y + 1}" width="{w:.1f}" height="{ROW_H - 2}" '
                         f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(row.label)} · {escape(name)}: '
                         f'{escape(_fmt(value, fmt))}</title></rect>'
                         f'<text x="{LABEL_W + w + 3:.1f}" y="{y + ROW_H - 3}">{escape(_fmt(value, fmt))}</text>')
        if row.target:
            tx = LABEL_W + min(1.0, row.target / top) * BAR_W
            parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y0}" y2="{y0 + len(series) * ROW_H}" '
                         f'stroke="#222" stroke-width="2"><title>target {escape(_fmt(row.target, fmt))}</title></line>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above
