"""Classification metrics: top-k accuracy, confusion matrix, mAP, and a confusion-matrix image.

Pure functions over score matrices (no model, no data), shared by fine-tuning and the
linear probe. Scores are (N, C), one row per video; single-label targets are (N,) class
indices, multi-label targets are (N, C) multi-hot.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont


def true_class_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each row's true class; ties count against it (a constant score ranks last),
    as `avssl.tasks.metrics.retrieval_ranks` does for retrieval."""
    true_scores = scores.gather(1, targets.long()[:, None])
    return (scores >= true_scores).sum(dim=1)


def topk_accuracy(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """`{"top1": %, "top5": %}`; k larger than the number of classes is capped (top-5 of 4 classes is 100)."""
    ranks = true_class_ranks(scores, targets)
    return {f"top{k}": float((ranks <= k).double().mean() * 100) for k in ks}


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    flat = targets.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """AP of each column of (N, C) scores against (N, C) 0/1 targets: the mean, over positives, of the
    precision among everything scored at least as high. Ties count against the positives (a whole
    tied group is ranked at once). Columns without positives give NaN."""
    positives = positives.double()
    ap = torch.full((scores.shape[1],), float("nan"), dtype=torch.float64)
    for c in range(scores.shape[1]):
        order = torch.argsort(scores[:, c], descending=True)
        ranked_scores, pos = scores[order, c], positives[order, c]
        if pos.sum() == 0:
            continue
        # every member of a tied group is ranked at the group's end
        _, group_sizes = torch.unique_consecutive(ranked_scores, return_counts=True)
        group_end = torch.cumsum(group_sizes, dim=0) - 1
        end = torch.repeat_interleave(group_end, group_sizes)
        precision = torch.cumsum(pos, dim=0)[end] / (end + 1).double()
        ap[c] = (precision * pos).sum() / pos.sum()
    return ap


def mean_average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """mAP in percent over the classes that have at least one positive (AudioSet's convention)."""
    ap = average_precision(scores, positives)
    valid = ~torch.isnan(ap)
    if not valid.any():
        raise ValueError("mAP is undefined: no class has a positive example")
    return float(ap[valid].mean() * 100)


def classification_report(scores: torch.Tensor, targets: torch.Tensor, *, multi_label: bool = False,
                          ks: Sequence[int] = (1, 5)) -> tuple[dict[str, float], torch.Tensor | None]:
    """The headline numbers of a classifier's per-video scores, and its confusion matrix.

    Single-label: top-k accuracy and the (C, C) confusion matrix of the arg-max predictions.
    Multi-label: `mAP` plus `top1` = percent of videos whose best-scored class is one of theirs;
    no confusion matrix (None). Both report `chance_top1`, the top-1 of guessing the most common
    class (single-label) or of guessing uniformly at random (multi-label).
    """
    num_classes = scores.shape[1]
    if multi_label:
        best = scores.argmax(dim=1)
        hit = targets.gather(1, best[:, None]).squeeze(1) > 0
        metrics = {
            "mAP": mean_average_precision(scores, targets),
            "top1": float(hit.double().mean() * 100),
            "chance_top1": float(targets.double().mean() * 100),
        }
        return metrics, None
    metrics = topk_accuracy(scores, targets, ks)
    counts = torch.bincount(targets.long(), minlength=num_classes)
    metrics["chance_top1"] = float(counts.max() / max(len(targets), 1) * 100)
    return metrics, confusion_matrix(scores.argmax(dim=1), targets, num_classes)


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
