"""Server-rendered SVG charts: stacked bars and lines over the last hour's minutes.

No script and no style attribute: colours come from the stylesheet through class
names, so the Content-Security-Policy stays ``style-src 'self'``. Each chart is an
``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that says the figures in
words, for screen readers (and a table follows each chart on the page).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 600, 160
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 8, 22


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # the class that colours it: ok, bad, warn, muted, line-a, line-b
    values: Sequence[float | None]


def _scale(top: float) -> float:
    """A round upper bound for the axis (1, 2, 5 × 10^n)."""
    if top <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= top:
        magnitude *= 10
    while magnitude > top:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= top:
            return step * magnitude
    return 10 * magnitude


def _frame(chart_id: str, title: str, desc: str, top: float, unit: str, n: int) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="none">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - frac)
        label = _number(top * frac)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(label)}{escape(unit)}</text>"
        )
    parts.append(f'<text class="axis" x="{LEFT}" y="{HEIGHT - 6}">−{n} min</text>')
    parts.append(
        f'<text class="axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">now</text>'
    )
    return parts


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _describe(series: Sequence[Series], unit: str, total: bool) -> str:
    words = []
    for s in series:
        known = [v for v in s.values if v is not None]
        if not known:
            words.append(f"{s.name}: no data")
        elif total:
            words.append(f"{s.name}: {_number(sum(known))}{unit} in all")
        else:
            words.append(
                f"{s.name}: latest {_number(known[-1])}{unit}, highest {_number(max(known))}{unit}"
            )
    return "; ".join(words) + "."


def bars(chart_id: str, title: str, series: Sequence[Series], unit: str = "") -> Markup:
    """Stacked bars, one per minute; series in stacking order (bottom first)."""
    n = max((len(s.values) for s in series), default=0)
    totals = [sum((s.values[i] or 0) for s in series if i < len(s.values)) for i in range(n)]
    top = _scale(max(totals, default=0))
    parts = _frame(chart_id, title, _describe(series, unit, True), top, unit, n)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(n, 1)
    for i in range(n):
        base = 0.0
        for s in series:
            value = (s.values[i] or 0) if i < len(s.values) else 0
            if value <= 0:
                continue
            h = plot_h * value / top
            y = TOP + plot_h - plot_h * (base + value) / top
            parts.append(
                f'<rect class="{s.css}" x="{LEFT + i * step + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(step - 1, 1):.1f}" height="{h:.1f}"/>'
            )
            base += value
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (numbers and escaped text only)


def lines(
    chart_id: str, title: str, series: Sequence[Series], unit: str = "", top: float | None = None
) -> Markup:
    """Lines, one point per minute; a gap where a minute has no value."""
    n = max((len(s.values) for s in series), default=0)
    highest = max((v for s in series for v in s.values if v is not None), default=0)
    top = top if top is not None else _scale(highest)
    parts = _frame(chart_id, title, _describe(series, unit, False), top, unit, n)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(n, 1)
    for s in series:
        runs: list[list[str]] = [[]]
        for i, value in enumerate(s.values):
            if value is None:
                runs.append([])
                continue
            x = LEFT + i * step + step / 2
            y = TOP + plot_h - plot_h * min(value, top) / top
            runs[-1].append(f"{x:.1f},{y:.1f}")
        for points in runs:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle class="{s.css}" cx="{cx}" cy="{cy}" r="2"/>')
            elif points:
                parts.append(f'<polyline class="{s.css}" points="{" ".join(points)}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (numbers and escaped text only)
