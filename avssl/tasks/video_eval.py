"""Per-video evaluation of a classifier over several clips x spatial crops (e.g. 4 x 3).

A video is scored by averaging the class probabilities (softmax, or sigmoid when multi-label) of
every view: `clips` windows evenly spaced in time (the "constant" sampler) times `crops` square
crops evenly spaced along the long side of each frame, taken after resizing the short side as every
evaluation view is (`avssl.data.pipeline`: to frame_size / eval_crop_fraction; with 1.0, to the frame
size itself, SlowFast's, VideoMAE's and CAV-MAE's view; left / centre / right for 3 crops on
landscape video). One clip x one crop is the centred view embedding and retrieval use, the cheap
check the fine-tuning loop runs every epoch.

`evaluate_classifier` runs this on a labelled source and writes `metrics.json`, `confusion.png`
(single-label) and `predictions.csv` into a folder.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from einops import rearrange, repeat
from tqdm import tqdm

from avssl.data.datasets import ClipDataset, open_dataset
from avssl.data.loader import ClipLoader, build_loader
from avssl.data.pipeline import input_pipeline
from avssl.data.shards import ShardDataset
from avssl.data.video import SpatialCrops  # noqa: F401  (here before avssl.data.pipeline existed)
from avssl.models.classifier import AVClassifier
from avssl.models.config import ModelConfig
from avssl.tasks.charts import save_confusion_png
from avssl.tasks.classification_metrics import average_precision, classification_report

log = logging.getLogger(__name__)

ViewFn = Callable[[torch.Tensor | None, torch.Tensor | None], torch.Tensor]


def multi_view_dataset(source: str | Path | Sequence[str | Path], *, model_config: ModelConfig, clips: int = 1,
                       crops: int = 1, classes: list[str] | None = None, num_frames: int | None = None,
                       frame_size: int | None = None, clip_duration: float | None = None, seed: int = 0,
                       short: str = "pad") -> ClipDataset | ShardDataset:
    """Evaluation views of `source` (files, folders, CSV manifest or shards: `open_dataset`) as
    `model_config` takes them: `clips` evenly spaced windows per video, each item one window whose
    `video` holds `crops` spatial crops, (crops, T, 3, S, S). `dataset.video_of(index)` gives the video
    of an item, which the per-video averaging groups by; `num_frames`, `frame_size`, `clip_duration`
    (a recipe's `data.*`) override the config's clip shape."""
    pipeline = input_pipeline(model_config, num_frames=num_frames, frame_size=frame_size, clip_duration=clip_duration)
    return open_dataset(source, sampler="constant", clips_per_video=clips, crops=crops, train=False, seed=seed,
                        classes=classes, short=short, **pipeline.dataset_kwargs())


@dataclass
class VideoOutputs:
    """Per-video averages of a function of the views: values (N, K), targets (N,) or (N, C), paths."""

    values: torch.Tensor
    targets: torch.Tensor
    paths: list[str]


def eval_loader(dataset: ClipDataset | ShardDataset, *, batch_size: int = 8, num_workers: int = 2) -> ClipLoader:
    """The loader `per_video` reads `dataset` with: every item once, in source order.

    Built once to score a dataset again and again (fine-tuning's validation every epoch), its persistent
    workers serve every pass instead of being started anew each time; the passes are equal, as an
    evaluation dataset draws nothing that depends on the epoch. Close it (or use it as a context
    manager) to end its workers.
    """
    return build_loader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, drop_last=False)


def per_video(fn: ViewFn, dataset: ClipDataset | ShardDataset, *, mode: str, batch_size: int = 8,
              num_workers: int = 2, device: torch.device | str = "cpu", show_progress: bool = False,
              loader: ClipLoader | None = None) -> VideoOutputs:
    """Average `fn(video_views, audio_views)` -> (n, K) over every view (clip x crop) of each video of a
    `multi_view_dataset`, in source order (items are grouped by `dataset.video_of`, in whatever order
    they come: shards stream in shard order).

    Per batch of B clips, mode "video" passes only the video views (n = B x crops), "audio" only the
    audio (n = B: crops are a picture matter), "av" both (each clip's audio repeated for its crops).
    `loader`: an `eval_loader` of `dataset` kept by the caller, whose workers then outlive this pass;
    by default one is built (`batch_size`, `num_workers`) and closed after it.
    """
    device = torch.device(device)
    with contextlib.nullcontext(loader) if loader is not None else eval_loader(
            dataset, batch_size=batch_size, num_workers=num_workers) as batches:
        return _average_views(fn, dataset, batches, mode, device, show_progress)


def _average_views(fn: ViewFn, dataset: ClipDataset | ShardDataset, batches: ClipLoader, mode: str,
                   device: torch.device, show_progress: bool) -> VideoOutputs:
    """`per_video` over the batches of a loader of `dataset`."""
    num_videos = dataset.num_videos
    sums: torch.Tensor | None = None
    counts = torch.zeros(num_videos)
    targets: list[torch.Tensor | None] = [None] * num_videos
    paths: list[str] = [""] * num_videos
    for batch in tqdm(batches, desc="evaluating", unit="batch", disable=not show_progress, leave=False):
        views = batch["video"].shape[1]
        video = audio = None
        if mode in ("video", "av"):
            video = rearrange(batch["video"], "b v t c h w -> (b v) t c h w").to(device, non_blocking=True)
        if mode == "audio":
            views = 1
            audio = batch["audio"].to(device, non_blocking=True)
        elif mode == "av":
            audio = repeat(batch["audio"], "b f m -> (b v) f m", v=views).to(device, non_blocking=True)
        values = rearrange(fn(video, audio).float().cpu(), "(b v) k -> b v k", v=views).sum(dim=1)
        if sums is None:
            sums = torch.zeros(num_videos, values.shape[1])
        for row, index in enumerate(batch["index"]):
            k = dataset.video_of(int(index))
            sums[k] += values[row]
            counts[k] += views
            targets[k], paths[k] = batch["label"][row], batch["path"][row]
    if sums is None:
        raise ValueError("the evaluation dataset yielded no clips")
    seen = [k for k in range(num_videos) if counts[k] > 0]
    if len(seen) < num_videos:  # the dataset replaced videos that failed to decode by their neighbours
        log.warning("%d of %d videos failed to decode and are left out of the evaluation",
                    num_videos - len(seen), num_videos)
    return VideoOutputs(sums[seen] / counts[seen, None], torch.stack([targets[k] for k in seen]),
                        [paths[k] for k in seen])


def predict_videos(model: AVClassifier, dataset: ClipDataset | ShardDataset, *, batch_size: int = 8,
                   num_workers: int = 2, show_progress: bool = False, loader: ClipLoader | None = None
                   ) -> VideoOutputs:
    """Per-video class probabilities (N, C) of `model` (its own device, eval mode, no gradients);
    `loader`: an `eval_loader` of `dataset` to reuse (`per_video`)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    def probabilities(video: torch.Tensor | None, audio: torch.Tensor | None) -> torch.Tensor:
        logits = model(video, audio).float()
        return logits.sigmoid() if model.multi_label else logits.softmax(dim=-1)

    with torch.no_grad():
        outputs = per_video(probabilities, dataset, mode=model.mode, batch_size=batch_size, num_workers=num_workers,
                            device=device, show_progress=show_progress, loader=loader)
    model.train(was_training)
    return outputs


@dataclass
class EvalReport:
    """What `evaluate_classifier` measured and wrote."""

    metrics: dict[str, float]
    confusion: torch.Tensor | None
    metrics_json: Path
    confusion_png: Path | None
    predictions_csv: Path


def _write_predictions(path: Path, outputs: VideoOutputs, classes: list[str], multi_label: bool) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "predicted", "score"])
        for k, probs in enumerate(outputs.values):
            best = int(probs.argmax())
            target = outputs.targets[k]
            label = ";".join(classes[i] for i in target.nonzero().flatten()) if multi_label else classes[int(target)]
            writer.writerow([outputs.paths[k], label, classes[best], f"{float(probs[best]):.4f}"])
    return path


def evaluate_classifier(model: AVClassifier, dataset: ClipDataset | ShardDataset, out_dir: str | Path, *,
                        batch_size: int = 8, num_workers: int = 2, extra: dict | None = None,
                        show_progress: bool = True) -> EvalReport:
    """Score every video of `dataset` (clips x crops averaged), write `metrics.json` (headline
    numbers, per-class accuracy or AP, the confusion matrix and `extra` facts such as the checkpoint),
    `confusion.png` (single-label) and `predictions.csv` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = predict_videos(model, dataset, batch_size=batch_size, num_workers=num_workers,
                             show_progress=show_progress)
    metrics, confusion = classification_report(outputs.values, outputs.targets, multi_label=model.multi_label)
    classes = list(model.classes)
    views = {"clips": dataset.sampler.clips_per_video, "crops": dataset.video_transform.crops}
    payload = {**(extra or {}), **views, "num_videos": len(outputs.paths), "num_classes": len(classes),
               "multi_label": model.multi_label, "mode": model.mode, **metrics}
    confusion_png = None
    if confusion is not None:
        recall = confusion.diagonal().double() / confusion.sum(dim=1).clamp(min=1)
        payload["per_class_top1"] = {c: float(r * 100) for c, r in zip(classes, recall)}
        payload["confusion"] = confusion.tolist()
        title = (f"top-1 {metrics['top1']:.1f}% on {len(outputs.paths)} videos "
                 f"({views['clips']} clips x {views['crops']} crops)")
        confusion_png = save_confusion_png(confusion, classes, out_dir / "confusion.png", title=title)
    else:
        ap = average_precision(outputs.values, outputs.targets)
        payload["per_class_AP"] = {c: float(v * 100) for c, v in zip(classes, ap) if not v.isnan()}
    payload["classes"] = classes
    metrics_json = out_dir / "metrics.json"
    metrics_json.write_text(json.dumps(payload, indent=2) + "\n")
    predictions_csv = _write_predictions(out_dir / "predictions.csv", outputs, classes, model.multi_label)
    log.info("evaluation: %s (written to %s)", ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()), out_dir)
    return EvalReport(metrics, confusion, metrics_json, confusion_png, predictions_csv)
