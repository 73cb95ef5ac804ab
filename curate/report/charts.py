"""The report's charts as small inline SVG: horizontal bars, histograms, a line.

Written out directly rather than drawn with matplotlib: the report's five or
six charts are rectangles, a polyline and labels, and matplotlib's import and
``savefig`` cost about a second a chart run (more than a 10k-record dedup
run's own work). Every chart scales to the page width (``viewBox``), text is
real text (searchable, copyable), and the numbers drawn are the run's own.
"""

from __future__ import annotations

from html import escape

import numpy as np

KEPT, REJECTED, GREY, PURPLE, LINE = "#3b7dd8", "#e4572e", "#8a8a8a", "#6c4fb3", "#3465a4"
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _svg(width: int, height: int, body: list[str], title: str | None = None) -> str:
    label = f' role="img" aria-label="{escape(title)}"' if title else ""
    head = f'<text x="0" y="12" {_FONT} font-weight="600">{escape(title)}</text>' if title else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}"{label}>'
        + head
        + "".join(body)
        + "</svg>"
    )


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() or abs(v) >= 100 else f"{v:.3g}"


def hbars(
    rows: list[tuple[str, list[tuple[float, str]]]],
    title: str | None = None,
    note=lambda segments: f"{sum(v for v, _ in segments):,.0f}",
    legend: list[tuple[str, str]] | None = None,
) -> str:
    """One bar per row, made of (value, colour) segments laid end to end, a note after each bar."""
    label_w = min(220, 7 * max((len(r[0]) for r in rows), default=4) + 10)
    bar_w, row_h, top = 360, 20, 22 if title else 4
    total = max((sum(v for v, _ in segs) for _, segs in rows), default=0) or 1
    body = []
    for i, (label, segs) in enumerate(rows):
        y = top + i * row_h
        body.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" {_FONT}>{escape(label)}</text>')
        x = float(label_w)
        for value, colour in segs:
            w = bar_w * value / total
            body.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}"/>')
            x += w
        body.append(f'<text x="{x + 6:.1f}" y="{y + 13}" {_FONT} fill="#333">{escape(note(segs))}</text>')
    height = top + len(rows) * row_h + (18 if legend else 4)
    if legend:
        x = label_w
        for name, colour in legend:
            body.append(f'<rect x="{x}" y="{height - 13}" width="10" height="10" fill="{colour}"/>')
            body.append(f'<text x="{x + 14}" y="{height - 4}" {_FONT}>{escape(name)}</text>')
            x += 14 + 7 * len(name) + 16
    return _svg(label_w + bar_w + 190, height, body, title)


def counts(counts: dict[str, int], title: str) -> str:
    """Bars of counts by name, largest first."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return hbars([(k, [(v, PURPLE)]) for k, v in items], title=title)


def histogram(
    series: list[tuple[np.ndarray, str, str]],
    *,
    log_x: bool = False,
    bins: int = 30,
    xlabel: str = "",
    title: str | None = None,
    width: int = 520,
    height: int = 170,
) -> str | None:
    """Overlaid histograms of several value arrays on shared bins: (values, colour, legend name)."""
    values = [np.asarray(v, dtype=float) for v, _, _ in series]
    values = [v[np.isfinite(v)] for v in values]
    pooled = np.concatenate(values) if values else np.array([])
    if not len(pooled):
        return None
    lo, hi = float(pooled.min()), float(pooled.max())
    if log_x:
        lo = max(lo, 1.0)
        edges = np.logspace(np.log10(lo), np.log10(max(hi, lo) + 1), bins + 1)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    hists = [np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0] for v in values]
    peak = max((int(h.max()) for h in hists), default=1) or 1
    left, right, top, bottom = 46, 10, 22 if title else 8, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    col_w = plot_w / bins
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 9}" text-anchor="end" {_FONT}>{peak:,}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" {_FONT}>0</text>',
        f'<text x="{left}" y="{top + plot_h + 14}" {_FONT}>{_num(edges[0])}</text>',
        f'<text x="{left + plot_w}" y="{top + plot_h + 14}" text-anchor="end" {_FONT}>{_num(edges[-1])}</text>',
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 14}" text-anchor="middle" {_FONT} fill="#555">'
        f"{escape(xlabel)}{' (log scale)' if log_x else ''}</text>",
    ]
    for h, (_, colour, _) in zip(hists, series):
        for i, n in enumerate(h):
            if n:
                bh = plot_h * n / peak
                body.append(
                    f'<rect x="{left + i * col_w:.1f}" y="{top + plot_h - bh:.1f}" width="{max(col_w - 1, 1):.1f}" '
                    f'height="{bh:.1f}" fill="{colour}" fill-opacity="0.6"/>'
                )
    x = left
    for (_, colour, name), vals in zip(series, values):
        text = f"{name} ({len(vals):,})"
        body.append(f'<rect x="{x}" y="{height - 12}" width="10" height="10" fill="{colour}" fill-opacity="0.6"/>')
        body.append(f'<text x="{x + 14}" y="{height - 3}" {_FONT}>{escape(text)}</text>')
        x += 14 + 7 * len(text) + 16
    return _svg(width, height, body, title)


def line(
    points: list[tuple[float, float]], xlabel: str, ylabel: str, width: int = 520, height: int = 180
) -> str | None:
    """A line through (x, y) points with the axes' ranges labelled."""
    if len(points) < 2:
        return None
    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    left, right, top, bottom = 56, 10, 8, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    x0, x1 = xs.min(), xs.max() if xs.max() > xs.min() else xs.min() + 1
    y0, y1 = ys.min(), ys.max() if ys.max() > ys.min() else ys.min() + 1
    px = left + (xs - x0) / (x1 - x0) * plot_w
    py = top + plot_h - (ys - y0) / (y1 - y0) * plot_h
    path = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
        f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="1.5"/>',
        f'<text x="{left - 4}" y="{top + 9}" text-anchor="end" {_FONT}>{_num(y1)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" {_FONT}>{_num(y0)}</text>',
        f'<text x="{left}" y="{top + plot_h + 14}" {_FONT}>{_num(x0)}</text>',
        f'<text x="{left + plot_w}" y="{top + plot_h + 14}" text-anchor="end" {_FONT}>{_num(x1)}</text>',
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 14}" text-anchor="middle" {_FONT} fill="#555">'
        f"{escape(xlabel)}</text>",
        f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" text-anchor="middle" '
        f'{_FONT} fill="#555">{escape(ylabel)}</text>',
    ]
    return _svg(width, height, body)
