"""Linear probe: how linearly separable the classes are in a frozen encoder's features.

Features are extracted once (no gradients, no augmentation): the pooled features a fine-tuning
head would read (`AVClassifier.features`), averaged over `clips` evenly spaced windows per video.
A logistic-regression head (softmax, or one sigmoid per class when multi-label) is then fitted on
the standardised training features with full-batch L-BFGS and an L2 penalty, and scored on the
validation videos. Cheap enough to compare checkpoints during pretraining.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from avssl.models.av_model import AVModel
from avssl.models.classifier import AVClassifier
from avssl.models.factory import load_backbone
from avssl.tasks.classification_metrics import classification_report
from avssl.data.datasets import ClipDataset
from avssl.data.shards import ShardDataset
from avssl.tasks.video_eval import VideoOutputs, multi_view_dataset, per_video
from avssl.train.distributed import pick_device

log = logging.getLogger(__name__)


def extract_features(model: AVClassifier, dataset: ClipDataset | ShardDataset, *, batch_size: int = 8,
                     num_workers: int = 2, show_progress: bool = False) -> VideoOutputs:
    """Per-video pooled features (N, feature_dim) of a frozen classifier's encoders, over the views of a
    `multi_view_dataset`."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = per_video(model.features, dataset, mode=model.mode, batch_size=batch_size,
                            num_workers=num_workers, device=device, show_progress=show_progress)
    model.train(was_training)
    return outputs


def fit_logistic_regression(features: torch.Tensor, targets: torch.Tensor, num_classes: int, *,
                            multi_label: bool = False, l2: float = 1e-3, max_iter: int = 300) -> torch.nn.Linear:
    """A linear classifier fitted by full-batch L-BFGS on (N, D) features: cross-entropy (or per-class
    BCE for (N, C) multi-hot targets) + `l2` * squared weight norm. Deterministic (zero init)."""
    head = torch.nn.Linear(features.shape[1], num_classes, device=features.device)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = head(features)
        if multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, targets.float())
        else:
            loss = F.cross_entropy(logits, targets.long())
        loss = loss + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


def fit_probe_head(features: torch.Tensor, targets: torch.Tensor, num_classes: int, *, multi_label: bool = False,
                   l2: float = 1e-2, max_iter: int = 300) -> torch.nn.Linear:
    """Logistic regression on standardised (N, D) features, returned as one linear layer on the raw
    features (the standardisation folded into its weights and bias)."""
    mean, std = features.mean(dim=0), features.std(dim=0).clamp(min=1e-6)
    head = fit_logistic_regression((features - mean) / std, targets, num_classes, multi_label=multi_label,
                                   l2=l2, max_iter=max_iter)
    with torch.no_grad():
        head.weight /= std
        head.bias -= head.weight @ mean
    return head


def linear_probe(checkpoint: str | Path | AVModel, train_source: str | Path, val_source: str | Path, *,
                 mode: str = "video", fusion: str = "concat", clips: int = 1, batch_size: int = 8,
                 num_workers: int = 2, device: str = "auto", l2: float = 1e-2, max_iter: int = 300,
                 seed: int = 0, show_progress: bool = False) -> dict[str, float]:
    """Top-1 (and top-5, or mAP when multi-label) of a logistic-regression probe on frozen features.

    checkpoint: a checkpoint / run folder (its best checkpoint), a saved-model folder (imported
    weights), or an `AVModel` (e.g. a random one, for a baseline; it is copied, not changed).
    train_source / val_source: class folders, CSV manifests or shards of them; the classes come from
    the training set. mode: "video", "audio" or "av" (fused as `fusion`). clips: windows per video whose features
    are averaged. l2: weight penalty of the logistic regression. Returns top1, top5 (single-label) or
    mAP, chance_top1, and num_train / num_val / num_classes / feature_dim.
    """
    backbone = copy.deepcopy(checkpoint) if isinstance(checkpoint, AVModel) else load_backbone(checkpoint)
    torch_device = pick_device(device)
    common = dict(model_config=backbone.config, clips=clips, seed=seed)
    train_set = multi_view_dataset(train_source, **common)
    if not train_set.classes:
        raise ValueError(f"{train_source} has no labels: use class folders or a CSV with a label column")
    val_set = multi_view_dataset(val_source, classes=train_set.classes, **common)
    model = AVClassifier(backbone, len(train_set.classes), mode=mode, fusion=fusion, classes=train_set.classes,
                         multi_label=train_set.multi_label).to(torch_device)
    loader_args = dict(batch_size=batch_size, num_workers=num_workers, show_progress=show_progress)
    train = extract_features(model, train_set, **loader_args)
    val = extract_features(model, val_set, **loader_args)
    head = fit_probe_head(train.values.to(torch_device), train.targets.to(torch_device), len(train_set.classes),
                          multi_label=model.multi_label, l2=l2, max_iter=max_iter)
    with torch.no_grad():
        scores = head(val.values.to(torch_device)).cpu()
    metrics, _ = classification_report(scores, val.targets, multi_label=model.multi_label)
    metrics.update(num_train=len(train.paths), num_val=len(val.paths), num_classes=len(train_set.classes),
                   feature_dim=model.feature_dim)
    log.info("linear probe (%s): %s", mode, ", ".join(f"{k}={v:g}" for k, v in metrics.items()))
    return metrics
