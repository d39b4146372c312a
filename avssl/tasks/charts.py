"""Line charts as inline SVG text, for HTML reports that need no plotting library or script."""
from __future__ import annotations

import math
from typing import Sequence

from avssl.tasks.markup import Markup, escape

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [low, high].

    A range that is empty at float precision (a constant series) is widened around its value, so
    the step can never vanish next to the values it is added to."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high - low <= 1e-9 * max(1.0, abs(low), abs(high)):
        pad = max(abs(low) * 0.1, 1.0)
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10)), key=lambda candidate: abs(candidate - raw))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _label(value: float) -> str:
    return f"{value:.4g}"


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str = "",
    xlabel: str = "step",
    width: int = 420,
    height: int = 260,
) -> Markup:
    """An SVG chart with one polyline (and point markers) per named series of (x, y) points,
    axes with round ticks, and a legend. Non-finite points are skipped."""
    clean = {name: [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)] for name, pts in series.items()}
    clean = {name: pts for name, pts in clean.items() if pts}
    left, right, top, bottom = 52, 12, 28, 40 + 16 * ((len(clean) + 1) // 2)
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for pts in clean.values() for x, _ in pts] or [0.0, 1.0]
    ys = [y for pts in clean.values() for _, y in pts] or [0.0, 1.0]
    xticks, yticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = xticks[0], xticks[-1], yticks[0], yticks[-1]

    def px(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1.0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / ((y1 - y0) or 1.0) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<title>{escape(title)}</title>',
        f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for t in xticks:
        parts.append(f'<line x1="{px(t):.1f}" y1="{top + plot_h}" x2="{px(t):.1f}" y2="{top + plot_h + 4}" '
                     f'stroke="#999"/><text x="{px(t):.1f}" y="{top + plot_h + 15}" '
                     f'text-anchor="middle">{_label(t)}</text>')
    for t in yticks:
        parts.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + plot_w}" y2="{py(t):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 5}" y="{py(t) + 4:.1f}" text-anchor="end">{_label(t)}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 30}" text-anchor="middle">'
                 f"{escape(xlabel)}</text>")
    for i, (name, pts) in enumerate(clean.items()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        if len(pts) <= 40:
            parts.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.2" fill="{color}"/>' for x, y in pts)
        lx = left + (i % 2) * plot_w / 2
        ly = top + plot_h + 46 + 16 * (i // 2)
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 8}" width="12" height="3" fill="{color}"/>'
                     f'<text x="{lx + 16:.1f}" y="{ly - 3}">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # numbers, the palette and escaped text only
