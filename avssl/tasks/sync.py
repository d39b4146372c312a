"""Synchronisation evaluation of a checkpoint (`avssl evaluate sync`): how well its sync head names the
offset of held-out clips' sound.

Each clip (the centre clip of each video, or `clips_per_video` evenly spaced ones) is decoded with its
sound moved by an offset drawn with `seed` from the model's offset classes (`avssl.data.sync`, the
same draw as in pretraining, so a seed gives the same offsets for every checkpoint); the head's
argmax is scored against it. Clips without sound are left out.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from avssl.data.datasets import open_dataset
from avssl.data.loader import build_loader
from avssl.data.pipeline import input_pipeline
from avssl.data.sync import SyncShift
from avssl.models.av_model import AVModel
from avssl.models.factory import load_model
from avssl.models.weights import resolve_checkpoint
from avssl.train.distributed import pick_device

log = logging.getLogger(__name__)


def sync_metrics(predicted: torch.Tensor, target: torch.Tensor, shift: SyncShift) -> dict[str, float]:
    """Scores of offset classes `predicted` against `target` (N,) int: `offset_accuracy` and its
    `chance_accuracy` (percent), `within_one_accuracy` (off by at most one class), `sync_accuracy` (in
    sync or not told apart, percent; chance is the larger share of the two kinds), `mean_abs_error_s`
    (seconds between the offsets) and `num_clips`."""
    if len(target) == 0:
        raise ValueError("sync evaluation needs clips with sound: none of the clips has an audio stream")
    seconds = torch.as_tensor(shift.seconds)
    in_sync_share = float((target == shift.in_sync).double().mean())
    return {
        "offset_accuracy": float((predicted == target).double().mean() * 100),
        "chance_accuracy": 100.0 / shift.offsets,
        "within_one_accuracy": float(((predicted - target).abs() <= 1).double().mean() * 100),
        "sync_accuracy": float(((predicted == shift.in_sync) == (target == shift.in_sync)).double().mean() * 100),
        "sync_chance_accuracy": 100.0 * max(in_sync_share, 1 - in_sync_share),
        "mean_abs_error_s": float((seconds[predicted] - seconds[target]).abs().mean()),
        "num_clips": float(len(target)),
    }


@torch.no_grad()
def evaluate_sync(checkpoint: str | Path | AVModel, source: str | Path, *, seed: int = 0, clips_per_video: int = 1,
                  batch_size: int = 16, num_workers: int = 2, device: str = "auto",
                  show_progress: bool = True) -> dict[str, Any]:
    """`sync_metrics` of a checkpoint (or model) pretrained with `model.sync_weight` > 0 on the clips of
    `source` (folder, class folders, CSV or shards), with their offsets drawn with `seed`. A run folder
    gives its last checkpoint: its best is chosen on retrieval, which says nothing of the sync head."""
    if not isinstance(checkpoint, AVModel) and Path(checkpoint).is_dir():
        checkpoint = resolve_checkpoint(checkpoint, "last")
    model = checkpoint if isinstance(checkpoint, AVModel) else load_model(checkpoint, pick_device(device))
    shift = SyncShift.from_config(model.config)
    if shift is None:
        raise ValueError(f"{checkpoint}: the model was not pretrained with the synchronisation task "
                         "(model.sync_weight=0): it has no sync head to evaluate")
    model.eval()
    dataset = open_dataset(source, sampler="constant", clips_per_video=clips_per_video, train=False, seed=seed,
                           sync=shift, **input_pipeline(model.config).dataset_kwargs())
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, drop_last=False,
                          seed=seed)
    model_device = next(model.parameters()).device
    predicted, target = [], []
    for batch in tqdm(loader, desc="sync", unit="batch", disable=not show_progress, dynamic_ncols=True):
        keep = batch["has_audio"].bool()
        logits = model.sync_logits(batch["video"][keep].to(model_device), batch["sync_audio"][keep].to(model_device))
        predicted.append(logits.argmax(dim=1).cpu())
        target.append(batch["sync_offset"][keep])
    metrics = sync_metrics(torch.cat(predicted), torch.cat(target), shift)
    metrics.update(offsets_s=[round(float(s), 4) for s in shift.seconds], seed=seed)
    log.info("sync on %d clips: offset accuracy %.1f %% (chance %.1f %%)", metrics["num_clips"],
             metrics["offset_accuracy"], metrics["chance_accuracy"])
    return metrics
