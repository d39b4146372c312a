"""Charts: line charts as inline SVG text, for HTML reports that need no plotting library or script,
and confusion matrices as PNG images (PIL)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

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


def _blue(fraction: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1)."""
    f = min(max(fraction, 0.0), 1.0)
    return round(255 - 247 * f), round(255 - 207 * f), round(255 - 148 * f)


def save_confusion_png(confusion: torch.Tensor, classes: Sequence[str], path: str | Path,
                       title: str = "") -> Path:
    """Draw a confusion matrix (rows true, columns predicted) as a PNG with PIL.

    Cells are shaded by the row-normalised fraction (recall per class), so rare classes read as
    clearly as common ones; counts are written in the cells and class names on the axes while
    they fit (cell size shrinks with the number of classes, so 400 classes still make an image
    of a sensible size, then without text).
    """
    num_classes = confusion.shape[0]
    cell = max(3, min(48, 960 // max(num_classes, 1)))
    font_size = max(8, min(14, cell // 3))
    font = ImageFont.load_default(size=font_size)
    labelled = cell >= 10
    label_width = max((font.getbbox(name)[2] for name in classes), default=0) + 8 if labelled else 0
    title_height = font_size * 2 if title else 0
    margin = 8
    left = margin + font_size * 2 + label_width
    top = margin + title_height + font_size * 2 + label_width
    grid = cell * num_classes
    width = max(left + grid, margin + (font.getbbox(title)[2] if title else 0)) + margin
    image = Image.new("RGB", (width, top + grid + margin), "white")
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((margin, margin), title, fill="black", font=font)
    draw.text((left, margin + title_height), "predicted", fill="black", font=font)
    rows = confusion.double()
    totals = rows.sum(dim=1, keepdim=True).clamp(min=1)
    fractions = rows / totals
    for i in range(num_classes):
        for j in range(num_classes):
            x, y = left + j * cell, top + i * cell
            fraction = float(fractions[i, j])
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=_blue(fraction),
                           outline=(220, 220, 220) if labelled else None)
            count = int(confusion[i, j])
            if labelled and count and font.getbbox(str(count))[2] < cell - 2:
                color = "white" if fraction > 0.5 else "black"
                draw.text((x + cell / 2, y + cell / 2), str(count), fill=color, font=font, anchor="mm")
    if labelled:
        for k, name in enumerate(classes):
            draw.text((left - 4, top + k * cell + cell / 2), name, fill="black", font=font, anchor="rm")
            text = Image.new("RGB", (label_width, font_size + 6), "white")
            ImageDraw.Draw(text).text((label_width - 4, 1), name, fill="black", font=font, anchor="ra")
            rotated = text.rotate(90, expand=True)
            image.paste(rotated, (left + k * cell + (cell - rotated.width) // 2, top - label_width - 2))
    axis = Image.new("RGB", (font_size * 6, font_size + 6), "white")
    ImageDraw.Draw(axis).text((0, 1), "true", fill="black", font=font)
    image.paste(axis.rotate(90, expand=True), (margin, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def save_line_png(series: dict[str, Sequence[tuple[float, float]]], path: str | Path, *, title: str = "",
                  xlabel: str = "", ylabel: str = "", size: tuple[int, int] = (640, 420)) -> Path:
    """A line chart as a PNG (PIL): one polyline with point markers per named series of (x, y),
    round ticks (`nice_ticks`) and a legend; non-finite points are skipped. For reports read
    outside a browser (a benchmark's README), where `line_chart`'s SVG does not show."""
    clean = {name: sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
             for name, pts in series.items()}
    clean = {name: pts for name, pts in clean.items() if pts}
    font = ImageFont.load_default(size=12)
    width, height = size
    left, right, top, bottom = 56, 16 + 150, 32, 44
    xs = [x for pts in clean.values() for x, _ in pts] or [0.0, 1.0]
    ys = [y for pts in clean.values() for _, y in pts] or [0.0, 1.0]
    xticks, yticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    plot_w, plot_h = width - left - right, height - top - bottom

    def point(x: float, y: float) -> tuple[float, float]:
        return (left + (x - xticks[0]) / ((xticks[-1] - xticks[0]) or 1.0) * plot_w,
                top + plot_h - (y - yticks[0]) / ((yticks[-1] - yticks[0]) or 1.0) * plot_h)

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((width / 2, 14), title, fill="black", font=font, anchor="mm")
    for t in yticks:
        y = point(xticks[0], t)[1]
        draw.line([(left, y), (left + plot_w, y)], fill=(235, 235, 235))
        draw.text((left - 6, y), _label(t), fill="black", font=font, anchor="rm")
    for t in xticks:
        x = point(t, yticks[0])[0]
        draw.text((x, top + plot_h + 12), _label(t), fill="black", font=font, anchor="mm")
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=(150, 150, 150))
    draw.text((left + plot_w / 2, height - 12), xlabel, fill="black", font=font, anchor="mm")
    draw.text((8, top - 14), ylabel, fill="black", font=font)
    for i, (name, pts) in enumerate(clean.items()):
        color = COLORS[i % len(COLORS)]
        coords = [point(x, y) for x, y in pts]
        if len(coords) > 1:
            draw.line(coords, fill=color, width=2)
        for x, y in coords:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        ly = top + 8 + 18 * i
        draw.line([(width - right + 10, ly), (width - right + 26, ly)], fill=color, width=3)
        draw.text((width - right + 30, ly), name, fill="black", font=font, anchor="lm")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
