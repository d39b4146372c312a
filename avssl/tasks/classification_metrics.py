"""Classification metrics: top-k accuracy, confusion matrix, mAP.

Pure functions over score matrices (no model, no data), shared by fine-tuning and the
linear probe (the confusion-matrix image is drawn by `avssl.tasks.charts.save_confusion_png`). Scores are (N, C), one row per video; single-label targets are (N,) class
indices, multi-label targets are (N, C) multi-hot.
"""
from __future__ import annotations

from typing import Sequence

import torch


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

