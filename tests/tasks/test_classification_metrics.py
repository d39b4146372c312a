"""Classification metrics on hand-built score matrices with known answers."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from avssl.tasks.charts import save_confusion_png
from avssl.tasks.classification_metrics import (
    average_precision,
    classification_report,
    confusion_matrix,
    mean_average_precision,
    topk_accuracy,
)


def test_topk_known_values_and_ties_count_against_the_truth():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    targets = torch.tensor([0, 1, 2])
    # row 0: rank 1; row 1: rank 2; row 2: tied with class 0 below class 1 -> rank 3
    expected = {"top1": 100 / 3, "top2": 200 / 3, "top5": 100.0}
    assert topk_accuracy(scores, targets, ks=(1, 2, 5)) == pytest.approx(expected)
    constant = torch.zeros(4, 3)
    assert topk_accuracy(constant, torch.tensor([0, 1, 2, 0]), ks=(1,))["top1"] == 0.0


def test_confusion_rows_are_true_columns_predicted():
    confusion = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2]), 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def _brute_force_ap(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """AP as a sum over positives of precision at each positive's (pessimistic) rank."""
    total, count = 0.0, 0
    for i in range(len(scores)):
        if positives[i]:
            above = scores >= scores[i]
            total += float(positives[above].double().sum()) / int(above.sum())
            count += 1
    return total / count


def test_average_precision_matches_brute_force_with_ties():
    torch.manual_seed(0)
    scores = torch.randint(0, 6, (40, 5)).float()  # many ties
    positives = (torch.rand(40, 5) < 0.3).float()
    positives[:, 4] = 0  # a class without positives is left out of mAP
    ap = average_precision(scores, positives)
    for c in range(4):
        assert abs(float(ap[c]) - _brute_force_ap(scores[:, c], positives[:, c])) < 1e-9
    assert torch.isnan(ap[4])
    assert abs(mean_average_precision(scores, positives) - float(ap[:4].mean() * 100)) < 1e-9
    perfect = average_precision(positives[:, :4] + 0.0, positives[:, :4])
    assert torch.allclose(perfect, torch.ones(4, dtype=torch.float64))


def test_report_single_and_multi_label():
    scores = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]])
    metrics, confusion = classification_report(scores, torch.tensor([0, 0, 0]), ks=(1,))
    assert metrics == pytest.approx({"top1": 200 / 3, "chance_top1": 100.0})
    assert confusion.tolist() == [[2, 1], [0, 0]]
    multi = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    metrics, confusion = classification_report(scores, multi, multi_label=True)
    assert confusion is None
    assert metrics["top1"] == pytest.approx(200 / 3) and 0 < metrics["mAP"] <= 100


def test_confusion_png_is_drawn(tmp_path):
    confusion = torch.tensor([[5, 1], [0, 6]])
    path = save_confusion_png(confusion, ["circle_low", "square_high"], tmp_path / "cm.png", title="top-1 91.7%")
    image = Image.open(path).convert("RGB")
    assert image.width > 96 and image.height > 96
    colors = {color for _, color in image.getcolors(maxcolors=100_000)}
    assert len(colors) > 10  # shaded cells and anti-aliased text, not a blank canvas
    big = save_confusion_png(torch.eye(400, dtype=torch.long), [f"c{i}" for i in range(400)], tmp_path / "big.png")
    assert max(Image.open(big).size) < 1300
