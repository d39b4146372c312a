"""The fine-tuning recipe: classify labelled clips (action recognition, sound events) with pretrained
encoders and a new head, in the shared training loop.

`run_finetune(cfg)` is what `avssl finetune -c tiny key=value ...` calls.
The encoders come from an avssl checkpoint or run folder (its best checkpoint), from imported
weights (any folder with model.safetensors + config.json), or are freshly initialised (`init=none`).
Training: label smoothing, optional mixup (video and audio mixed with the same lambda and the same
partner), layer-wise lr decay, and everything the loop gives (resume, stop signals, logging,
checkpoints, the best one chosen by validation top-1, or mAP when multi-label). Classes come from
the training set and are forced onto validation and test. At the end the best checkpoint is scored
on the test set (default: validation) with several clips x crops per video (`video_eval`), into
`<out>/eval/`: metrics.json, confusion.png, predictions.csv.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from avssl.config import NON_EMPTY, SEED, Check, Range, at_least
from avssl.data.augment import AugmentConfig
from avssl.data.datasets import ClipDataset
from avssl.data.shards import ShardDataset
from avssl.data.loader import ClipLoader, build_loader
from avssl.models.card import RUN_EVAL, checkpoint_step
from avssl.models.classifier import AVClassifier
from avssl.models.config import ModelConfig
from avssl.models.factory import load_backbone
from avssl.models.weights import load_weights, read_index, resolve_checkpoint
from avssl.tasks.classification_metrics import classification_report
from avssl.tasks.linear_probe import linear_probe
from avssl.tasks.pseudo_labels import PseudoLabelConfig, PseudoLabels, pseudo_labelled
from avssl.tasks.video_eval import EvalReport, eval_loader, evaluate_classifier, multi_view_dataset, predict_videos
from avssl.train import distributed as distr
from avssl.train.checkpoint import Position
from avssl.train.config import TrainConfig
from avssl.train.optim import layer_decay_groups
from avssl.recipes.pretrain import (DataConfig, data_pipeline, log_augmentations, split_sources, training_dataset,
                                   write_rejected)
from avssl.recipes.run import open_run
from avssl.train.trainer import EvalFn, FitResult, StepFn, Trainer

__all__ = ["FinetuneConfig", "FinetuneDataConfig", "HeadConfig", "FinetuneResult", "run_finetune", "finished_result",
           "linear_probe"]

log = logging.getLogger(__name__)


@dataclass
class FinetuneDataConfig(DataConfig):
    """Pretraining's data settings (train/val sources, clip shape, batching, training augmentations)
    plus the test set and the views of the final evaluation."""

    augment: AugmentConfig = field(default_factory=AugmentConfig)  # fine-tuning keeps SpecAugment on by default
    test: str = ""  # scored once at the end with eval_clips x eval_crops; empty: the validation set
    unlabeled: str = ""  # unlabeled clips for pseudo-labelling (the pseudo_label: section); empty: none
    eval_clips: int = 4  # windows per video, evenly spaced ("constant" sampler)
    eval_crops: int = 3  # square crops along the long side of each window (audio mode: always 1)

    RANGES: ClassVar[dict[str, Check]] = {"eval_clips": at_least(1), "eval_crops": at_least(1)}


@dataclass
class HeadConfig:
    """The classification head and the training signal."""

    fusion: Literal["concat", "mean", "joint"] = "concat"  # mode=av only; see avssl.models.classifier
    dropout: float = 0.0
    label_smoothing: float = 0.1
    mixup: float = 0.0  # Beta(alpha, alpha) mixing of clip pairs; 0 turns it off
    layer_decay: float = 0.75  # lr of layer d = lr * layer_decay ** (top - d); 1 turns it off
    # multi-label targets: "cavmae" (positives 1 - s, negatives s / C, as CAV-MAE / AST) or "binary" (s / 2)
    multi_label_smoothing: Literal["cavmae", "binary"] = "cavmae"
    # pooled features: the mean plus the means of time_bins stretches of the clip (order-aware);
    # None: as the model's contrastive projection pooled (model.time_bins); 0: the mean alone
    time_bins: int | None = None

    RANGES: ClassVar[dict[str, Check]] = {  # checked by avssl.config.validate_config
        "dropout": Range(0.0, 1.0, high_open=True), "label_smoothing": Range(0.0, 1.0, high_open=True),
        "mixup": at_least(0.0), "layer_decay": Range(0.0, 1.0, low_open=True), "time_bins": at_least(0),
    }


@dataclass
class FinetuneConfig:
    """Everything `avssl finetune` reads: a built-in recipe (avssl/configs/finetune/) or YAML file plus overrides."""

    out: str = "runs/finetune"
    seed: int = 0
    init: str = "none"  # "none" (random init from `model`), or a checkpoint / run / saved-model folder
    model: ModelConfig = field(default_factory=ModelConfig.from_config_section)  # name + changes to its fields
    mode: Literal["video", "audio", "av"] = "video"
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=5e-4, betas=(0.9, 0.999)))
    head: HeadConfig = field(default_factory=HeadConfig)
    pseudo_label: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)  # read when data.unlabeled is set

    RANGES: ClassVar[dict[str, Check]] = {"out": NON_EMPTY, "seed": SEED, "init": NON_EMPTY}


@dataclass
class FinetuneResult:
    """How a fine-tuning run ended and what its final evaluation measured (NaN / None when the run was
    interrupted before the end, or on ranks other than 0)."""

    top1: float
    top5: float
    metrics: dict[str, float]
    classes: list[str]
    confusion: torch.Tensor | None
    run_dir: Path
    confusion_png: Path | None
    metrics_json: Path | None
    status: str = "finished"
    fit: FitResult | None = None


HEADLINE = re.compile(r"top\d+|chance_top1|mAP")  # the numbers of classification_report in eval/metrics.json


def finished_result(run_dir: Path, epochs: int) -> FinetuneResult | None:
    """The result of the `epochs`-epoch run in `run_dir` read back from its files when it finished,
    training and final evaluation (eval/metrics.json is written last); None otherwise. What a resumed
    pseudo-labelling run takes for a round it does not redo: `fit` says where its training ended,
    with no wall time (none was spent now)."""
    metrics_json = run_dir / RUN_EVAL
    if not metrics_json.is_file():
        return None
    payload = json.loads(metrics_json.read_text())
    metrics = {k: float(v) for k, v in payload.items() if HEADLINE.fullmatch(k)}
    confusion = torch.tensor(payload["confusion"]) if "confusion" in payload else None
    png = run_dir / "eval" / "confusion.png"
    last = checkpoint_step(Path(str(read_index(run_dir / "checkpoints").get("last", "step_0")))) or 0
    fit = FitResult("finished", Position(step=last, epoch=epochs), 0.0)
    return FinetuneResult(metrics["top1"], metrics.get("top5", math.nan), metrics, list(payload["classes"]),
                          confusion, run_dir, png if png.is_file() else None, metrics_json, "finished", fit)


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float, multi_label: bool,
                 multi_label_style: str = "cavmae") -> torch.Tensor:
    """(B, C) float targets: one-hot (or multi-hot) with label smoothing. Single-label puts
    `smoothing / C` on every class. Multi-label, `multi_label_style` "cavmae" (CAV-MAE's and AST's
    dataloader): a positive gets 1 - s, a negative s / C (0.0002 for s = 0.1 on AudioSet's 527
    classes); "binary": each class smoothed as its own two-way choice, y * (1 - s) + s / 2.
    Float (B, C) single-label `labels` are class probabilities (soft pseudo labels), smoothed as
    one-hot ones; soft multi-label ones go through the same formulas, which are linear in y."""
    if multi_label:
        y = labels.float()
        if multi_label_style == "binary":
            return y * (1 - smoothing) + smoothing / 2
        if multi_label_style != "cavmae":
            raise ValueError(f"multi_label_style must be 'cavmae' or 'binary', got {multi_label_style!r}")
        return y * (1 - smoothing) + (1 - y) * smoothing / num_classes
    if labels.is_floating_point():
        return labels * (1 - smoothing) + smoothing / num_classes
    if (labels < 0).any():
        raise ValueError("a training clip has no label (label -1): fine-tuning needs every training video labelled")
    return F.one_hot(labels.long(), num_classes).float() * (1 - smoothing) + smoothing / num_classes


def mixup(video: torch.Tensor, audio: torch.Tensor, targets: torch.Tensor,
          alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix each clip with a random partner of the batch: video, audio and targets all with the same
    lambda ~ Beta(alpha, alpha), so picture, sound and label stay consistent."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(video.shape[0], device=video.device)

    def mix(x: torch.Tensor) -> torch.Tensor:
        return lam * x + (1 - lam) * x[partner]

    return mix(video), mix(audio), mix(targets)


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Cross-entropy against soft targets, or binary cross-entropy per class when multi-label."""
    logits = logits.float()
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, targets)
    return -(targets * logits.log_softmax(dim=-1)).sum(dim=-1).mean()


def freeze_unreached(model: AVClassifier) -> list[str]:
    """Freeze the parameters no fine-tuning step reaches, and return their names.

    Every mode leaves some: the joint blocks' norms of the streams it does not run (a video classifier
    reads neither the audio norms nor the joint [audio, video] ones), and the joint fusion reads
    neither the per-stream norms nor the encoders' final norms. Trainable but never given a gradient,
    they need DDP's ``find_unused_parameters``, a walk over the autograd graph on every step; frozen,
    DDP leaves them out, and training is unchanged (AdamW skipped them anyway: no gradient, no update).
    Found by one forward and backward on the meta device, as the step calls the model: shapes only,
    no memory, no compute, no random draws.
    """
    cfg = model.config
    video = torch.empty(1, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size, device="meta")
    audio = torch.empty(1, cfg.audio_frames, cfg.num_mel_bins, device="meta")
    params = {n: p.detach().to("meta").requires_grad_() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.to("meta") for n, b in model.named_buffers()}
    inputs = (video if model.mode != "audio" else None, audio if model.mode != "video" else None)
    logits = functional_call(model, {**params, **buffers}, inputs)
    grads = torch.autograd.grad(logits.sum(), list(params.values()), allow_unused=True)
    unreached = [name for name, grad in zip(params, grads) if grad is None]
    for name in unreached:
        model.get_parameter(name).requires_grad_(False)
    return unreached


def make_step(mode: str, num_classes: int, head: HeadConfig, multi_label: bool) -> StepFn:
    """The loop's `step_fn`: targets, optional mixup, forward on the mode's inputs, loss."""

    def step(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        targets = soft_targets(batch["label"], num_classes, head.label_smoothing, multi_label,
                               head.multi_label_smoothing)
        video, audio = batch["video"], batch["audio"]
        if head.mixup > 0:
            video, audio, targets = mixup(video, audio, targets, head.mixup)
        logits = model(video if mode != "audio" else None, audio if mode != "video" else None)
        return {"loss": classification_loss(logits, targets, multi_label)}

    return step


def make_validator(dataset: ClipDataset | ShardDataset, loader: ClipLoader) -> EvalFn:
    """Each epoch: per-video scores of one centred clip, reported as val_top1 / val_top5 (or val_mAP);
    read through `loader` (an `eval_loader` of `dataset`), whose persistent workers serve every epoch."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        outputs = predict_videos(model, dataset, loader=loader)
        metrics, _ = classification_report(outputs.values, outputs.targets, multi_label=model.multi_label)
        return {f"val_{k}": v for k, v in metrics.items()}

    return evaluate


def _final_evaluation(cfg: FinetuneConfig, model: AVClassifier, run_dir: Path, val_source: str) -> EvalReport:
    """Score the best checkpoint on the test set (or validation) with eval_clips x eval_crops views."""
    data = cfg.data
    best = resolve_checkpoint(run_dir / "checkpoints", which="best")
    load_weights(model, best, next(model.parameters()).device, what="the classifier it fine-tuned")
    source = data.test or val_source
    dataset = multi_view_dataset(
        source, model_config=model.config, clips=data.eval_clips, crops=1 if cfg.mode == "audio" else data.eval_crops,
        classes=model.classes, num_frames=data.num_frames, frame_size=data.frame_size,
        clip_duration=data.clip_duration, seed=cfg.seed, short=data.short_videos,
    )
    extra = {"checkpoint": str(best), "split": "test" if data.test else "val", "source": str(source)}
    return evaluate_classifier(model, dataset, run_dir / "eval", batch_size=data.val_batch_size or data.batch_size,
                               num_workers=data.num_workers, extra=extra)


def run_finetune(cfg: FinetuneConfig, pseudo: PseudoLabels | None = None) -> FinetuneResult:
    """Fine-tune as `cfg` says; the run folder gets config.yaml, checkpoints/, metrics.jsonl,
    tensorboard/, rejected.txt and, once training finished, eval/. `pseudo`: pseudo-labelled clips
    of `cfg.data.unlabeled` trained on beside the labelled ones (`avssl.recipes.pseudo_label`)."""
    with open_run(cfg) as (folder, ctx):  # removed again if the set-up below fails
        run_dir = folder.path
        backbone = load_backbone(cfg.init, cfg.model)
        model_cfg, data = backbone.config, cfg.data
        train_source, val_source = split_sources(data, run_dir, cfg.seed)
        shape = dict(num_frames=data.num_frames, frame_size=data.frame_size, clip_duration=data.clip_duration)
        train_set = training_dataset(train_source, data, data_pipeline(model_cfg, data), cfg.seed)
        if not train_set.classes:
            raise ValueError(f"{train_source} has no labels: use class folders or a CSV with a label column")
        classes = train_set.classes
        if pseudo is not None:
            unlabeled = training_dataset(pseudo.source, data, data_pipeline(model_cfg, data), cfg.seed)
            train_set = pseudo_labelled(train_set, unlabeled, pseudo)
        val_set = multi_view_dataset(val_source, model_config=model_cfg, classes=classes, seed=cfg.seed,
                                     short=data.short_videos, **shape)
        if ctx.is_main:
            write_rejected(run_dir, train_set, val_set)
        model = AVClassifier(backbone, len(classes), mode=cfg.mode, fusion=cfg.head.fusion, dropout=cfg.head.dropout,
                             classes=classes, multi_label=train_set.multi_label, time_bins=cfg.head.time_bins)
        frozen = freeze_unreached(model)  # before the optimizer groups: DDP then needs no search for unused ones
        log.info("frozen, as mode %s never reads them: %s", cfg.mode, ", ".join(frozen) or "nothing")
        loader = build_loader(train_set, batch_size=data.batch_size, num_workers=data.num_workers, shuffle=True,
                              drop_last=True, rank=ctx.rank, world_size=ctx.world_size, seed=cfg.seed)
        val_loader = eval_loader(  # its persistent workers serve every validation; closed when training ends
            val_set, batch_size=data.val_batch_size or data.batch_size, num_workers=data.num_workers)
        log.info("fine-tuning %s (%s, %d classes%s) on %d train / %d val videos, %d process(es) on %s",
                 model_cfg.name, cfg.mode, len(classes), ", multi-label" if model.multi_label else "",
                 len(train_set), val_set.num_videos, ctx.world_size, ctx.device)
        log_augmentations(train_set)
        trainer = Trainer(
            model, loader, make_step(cfg.mode, len(classes), cfg.head, model.multi_label), cfg.train, run_dir, ctx,
            evaluate=make_validator(val_set, val_loader),
            best_metric="val_mAP" if model.multi_label else "val_top1", seed=cfg.seed,
            groups=layer_decay_groups(model, cfg.train.lr, cfg.train.weight_decay, cfg.head.layer_decay),
        )
        folder.keep()
        with val_loader:
            fit = trainer.fit()
        result = FinetuneResult(math.nan, math.nan, {}, classes, None, run_dir, None, None, fit.status, fit)
        if ctx.is_main and fit.status == "finished":
            report = _final_evaluation(cfg, model, run_dir, val_source)
            result.top1, result.top5 = report.metrics["top1"], report.metrics.get("top5", math.nan)
            result.metrics, result.confusion = report.metrics, report.confusion
            result.confusion_png, result.metrics_json = report.confusion_png, report.metrics_json
        distr.barrier()
        return result
