"""The pretraining recipe: config, data, model and validation wired into the shared loop.

`run_pretrain(cfg)` is what `avssl pretrain -c tiny key=value ...`
calls; it also works from Python and under `torchrun` (one process per GPU).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from avssl.config import NON_EMPTY, SEED, Check, OneOf, Range, above, at_least
from avssl.data.augment import PretrainAugmentConfig
from avssl.data.datasets import ClipDataset, open_dataset
from avssl.data.loader import build_loader
from avssl.data.manifest import ManifestEntry, write_manifest
from avssl.data.pipeline import InputPipeline, input_pipeline
from avssl.data.probe import summarize
from avssl.data.sampling import SAMPLERS, SHORT_POLICIES
from avssl.data.scan import scan_source
from avssl.data.sync import SyncShift
from avssl.data.shards import ShardDataset, is_shard_source
from avssl.models.config import ModelConfig
from avssl.models.factory import create_model
from avssl.recipes.run import open_run
from avssl.tasks.metrics import retrieval_summary
from avssl.train.collapse import (
    MODALITIES,
    WARNINGS_FILE,
    CollapseMonitor,
    collapse_metrics,
    read_warnings,
    summarize_warnings,
)
from avssl.train.config import TrainConfig
from avssl.train.trainer import FitResult, StepFn, Trainer

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """Which videos, how clips are cut from them, and how they are batched."""

    train: str = ""  # folder, folder of class folders, CSV manifest, or shards (`avssl shard` folder or pattern)
    val: str = ""  # held-out videos or shards; empty: `val_fraction` of `train`, split by file
    val_fraction: float = 0.1
    num_frames: int | None = None  # None: the model config's
    frame_size: int | None = None  # None: the model config's
    clip_duration: float | None = None  # seconds; None: the model config's
    sampler: str = "random"  # random | random_multi | constant | uniform
    clips_per_video: int = 1
    short_videos: str = "pad"  # pad | skip: videos shorter than a clip
    batch_size: int = 8
    val_batch_size: int | None = None
    num_workers: int = 2
    # training clips only; see avssl.data.augment. Pretraining's defaults leave SpecAugment off (CAV-MAE)
    augment: PretrainAugmentConfig = field(default_factory=PretrainAugmentConfig)

    RANGES: ClassVar[dict[str, Check]] = {  # checked by avssl.config.validate_config
        "val_fraction": Range(0.0, 1.0, low_open=True, high_open=True), "num_frames": at_least(1),
        "frame_size": at_least(1), "clip_duration": above(0.0), "sampler": OneOf(SAMPLERS),
        "clips_per_video": at_least(1), "short_videos": OneOf(SHORT_POLICIES), "batch_size": at_least(1),
        "val_batch_size": at_least(1), "num_workers": at_least(0),
    }


@dataclass
class PretrainConfig:
    """Everything `avssl pretrain` reads: a built-in recipe (avssl/configs/pretrain/) or YAML file plus overrides."""

    out: str = "runs/pretrain"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig.from_config_section)  # name + changes to its fields
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    RANGES: ClassVar[dict[str, Check]] = {"out": NON_EMPTY, "seed": SEED}


MIN_VAL_CLIPS = 8  # fewer held-out clips make validation R@1 too coarse to choose checkpoints by


def _draw(path: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, path): the file's place in the held-out draw."""
    digest = hashlib.blake2b(f"{seed}:{Path(path).name}:{path}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def held_out_files(entries: list[ManifestEntry], seed: int, fraction: float) -> set[str]:
    """The files (all their segments together) to hold out for validation, independent of file order.

    `fraction` of the files (rounded, at least one when there are two or more) in a seeded draw;
    single-label data is drawn per class, so small labelled sets keep every class on both sides.
    """
    single_label = bool(entries) and all(e.label is not None for e in entries)
    groups: dict[str | None, set[str]] = {}
    for entry in entries:
        groups.setdefault(entry.label if single_label else None, set()).add(entry.path)
    ordered = [sorted(paths, key=lambda p: (_draw(p, seed), p)) for paths in groups.values()]
    held = {p for paths in ordered for p in paths[:int(len(paths) * fraction + 0.5)]}
    files = [p for paths in ordered for p in paths]
    if not held and fraction > 0 and len(files) >= 2:
        held = {min(files, key=lambda p: (_draw(p, seed), p))}
    return held


def split_sources(data: DataConfig, run_dir: Path, seed: int) -> tuple[str, str]:
    """Train and validation sources; without `data.val`, a seeded by-file split of `data.train`
    (per class for single-label data; `held_out_files`) written to the run folder
    (train_split.csv / val_split.csv) so it is visible and reused. Only files the probe accepts
    (cached; the datasets probe the same files) are drawn for validation, so damaged files cannot
    leave it empty; the rejected ones stay in the training manifest, where they are counted and
    listed in rejected.txt."""
    if not data.train:
        raise ValueError("data.train is not set: give a folder of videos or a CSV manifest (data.train=PATH)")
    if data.val:
        return data.train, data.val
    if is_shard_source(data.train):
        raise ValueError(f"data.train={data.train} is a set of shards, which is not split by file: "
                         "set data.val to held-out videos or shards")
    corpus = scan_source(data.train)
    entries = [s.entry for s in corpus.entries]
    usable = {info.path for info in corpus.files if info.ok}
    if not usable:
        raise ValueError(f"{data.train}: no usable videos out of {len(corpus.files)}: {summarize(corpus.files)} "
                         "(see `avssl probe`)")
    held = held_out_files([e for e in entries if e.path in usable], seed, data.val_fraction)
    val = [e for e in entries if e.path in held]
    train = [e for e in entries if e.path not in held]
    if not val or not train:
        raise ValueError(
            f"data.val_fraction={data.val_fraction} of {len(entries)} videos leaves an empty split: "
            "set data.val to a held-out folder/CSV or change data.val_fraction"
        )
    train_csv, val_csv = run_dir / "train_split.csv", run_dir / "val_split.csv"
    write_manifest(train, train_csv)
    write_manifest(val, val_csv)
    return str(train_csv), str(val_csv)


def data_pipeline(model_cfg: ModelConfig, data: DataConfig) -> InputPipeline:
    """The model config's input pipeline with the clip shape the recipe's `data` section overrides."""
    return input_pipeline(model_cfg, num_frames=data.num_frames, frame_size=data.frame_size,
                          clip_duration=data.clip_duration)


def training_dataset(source: str, data: DataConfig, pipeline: InputPipeline, seed: int,
                     sync: SyncShift | None = None) -> ClipDataset | ShardDataset:
    """The training clips of `source` (files, folders, CSV or shards: `open_dataset`) as `data` says:
    its sampler, clips per video, short-video policy and augmentations; `sync`: with shifted sound
    for the synchronisation task."""
    return open_dataset(source, sampler=data.sampler, clips_per_video=data.clips_per_video, train=True, seed=seed,
                        short=data.short_videos, augment=data.augment, sync=sync, **pipeline.dataset_kwargs())


def build_datasets(cfg: PretrainConfig, model_cfg: ModelConfig, run_dir: Path
                   ) -> tuple[ClipDataset | ShardDataset, ClipDataset | ShardDataset]:
    """Training and validation clip datasets whose clips match what the model was built for
    (a ShardDataset for shards: streamed, split over ranks by the loader, read once for validation),
    both with the shifted sound of the synchronisation task when the model has one."""
    train_source, val_source = split_sources(cfg.data, run_dir, cfg.seed)
    pipeline = data_pipeline(model_cfg, cfg.data)
    sync = SyncShift.from_config(model_cfg)
    train = training_dataset(train_source, cfg.data, pipeline, cfg.seed, sync)
    val = open_dataset(val_source, sampler="constant", train=False, seed=cfg.seed, short=cfg.data.short_videos,
                       sync=sync, **pipeline.dataset_kwargs())
    return train, val


def require_sound(dataset: ClipDataset | ShardDataset) -> None:
    """Refuse training videos that are all silent: the contrastive and audio terms would teach nothing."""
    silent = getattr(dataset, "silent_videos", 0)
    if silent and silent == dataset.num_videos:
        raise ValueError(f"none of the {silent} training videos has an audio stream: audio-visual pretraining "
                         "needs sound (check the files with `avssl probe`)")
    if silent:
        log.warning("%d of %d training videos have no audio stream: they add only to video reconstruction",
                    silent, dataset.num_videos)


def log_augmentations(dataset: ClipDataset | ShardDataset) -> None:
    """Log, once at the start of a run, the random augmentations the training clips get (read from the
    dataset's transforms), so a run's log says whether, e.g., its clips were mirrored."""
    log.info("training augmentations: %s", dataset.augmentations())


def write_rejected(run_dir: Path, *datasets: ClipDataset | ShardDataset) -> Path:
    """The files the data side refused, one `path<TAB>reason` per line (empty file when none)."""
    path = run_dir / "rejected.txt"
    lines = sorted({f"{info.path}\t{info.reason}" for ds in datasets for info in ds.rejected})
    path.write_text("".join(line + "\n" for line in lines))
    if lines:
        log.warning("%d files were rejected by the data side; see %s", len(lines), path)
    return path


SYNC_KEYS = ("sync_audio", "sync_offset")  # a batch's inputs of the synchronisation task, when it has them


def may_lack_sound(dataset: ClipDataset | ShardDataset) -> bool:
    """Whether training clips without sound may come, so each step must hand the model `has_audio`.

    False only when the dataset counted its silent videos when it was opened (`silent_videos`, from the
    probe, which finds audio streams as the decoder does) and found none; shards do not count them.
    Decided once: a batch's `has_audio` is on the device, and asking it every step would stall the host.
    """
    return getattr(dataset, "silent_videos", None) != 0


def make_pretrain_step(mask_silence: bool) -> StepFn:
    """The loop's `step_fn`: one pretraining forward, the model returning its total loss and each term.

    `mask_silence` (`may_lack_sound`): pass each batch's `has_audio`, which masks the joint and decoder
    attention; without it the model gets None, which keeps them on the unmasked kernels (FlashAttention
    through SDPA on CUDA) with the same losses, every clip having sound.
    """

    def step(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        has_audio = batch["has_audio"] if mask_silence else None
        return model(batch["video"], batch["audio"], has_audio, **{k: batch[k] for k in SYNC_KEYS if k in batch})

    return step


def _validation_pass(model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device
                     ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """One pass over validation batches: the mean of each loss term (`val_<term>`) and, for an alignment
    objective that has one, of its chance level (`val_contrastive_chance`: the loss when its scores
    carry no information, e.g. InfoNCE's ln of the clips with sound in a batch); and the pooled features
    ("video", "audio") and embeddings ("video_emb", "audio_emb") of all clips with sound."""
    sums: dict[str, float] = {}
    parts: dict[str, list[torch.Tensor]] = {}
    count = 0
    for batch in batches:
        video, audio = batch["video"].to(device), batch["audio"].to(device)
        has_audio = batch["has_audio"].to(device)
        out = model(video, audio, has_audio, **{k: batch[k].to(device) for k in SYNC_KEYS if k in batch})
        keep = has_audio.bool()
        terms = {key: float(value) for key, value in out.items() if key.startswith("loss")}
        chance = model.contrastive.chance_level(int(keep.sum()))
        if chance is not None:
            terms["contrastive_chance"] = chance
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value
        for key, value in model.features_and_embeddings(video[keep], audio[keep]).items():
            parts.setdefault(key, []).append(value.float().cpu())
        count += 1
    means = {f"val_{key}": value / max(count, 1) for key, value in sums.items()}
    return means, {key: torch.cat(values) for key, values in parts.items()}


def make_validator(loader: Any) -> Any:
    """Validation: mean loss terms of the pretraining objective with the contrastive term's chance
    level, cross-modal retrieval R@k, and the collapse diagnostics of `avssl.train.collapse`
    (spread of each tower's features and embeddings, alignment and uniformity)."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        metrics, encoded = _validation_pass(model, loader, next(model.parameters()).device)
        if encoded and len(encoded["video_emb"]):
            metrics.update(retrieval_summary(encoded["video_emb"], encoded["audio_emb"], ks=(1, 5)))
            metrics.update(collapse_metrics({m: encoded[m] for m in MODALITIES},
                                            {m: encoded[f"{m}_emb"] for m in MODALITIES}))
        return metrics

    return evaluate


def report_collapse(run_dir: Path, last_epoch: int) -> None:
    """End-of-run summary of the collapse warnings (`avssl.train.collapse`) the run recorded."""
    warnings = read_warnings(run_dir)
    if warnings:
        log.warning("%s; see %s", summarize_warnings(warnings, last_epoch), run_dir / WARNINGS_FILE)


def run_pretrain(cfg: PretrainConfig) -> FitResult:
    """Pretrain as `cfg` says; the run folder gets config.yaml, checkpoints/, metrics.jsonl,
    tensorboard/, rejected.txt and collapse_warnings.txt."""
    with open_run(cfg) as (folder, ctx):  # removed again if the set-up below fails
        run_dir = folder.path
        model = create_model(cfg.model)
        train_set, val_set = build_datasets(cfg, model.config, run_dir)
        require_sound(train_set)
        if ctx.is_main:
            write_rejected(run_dir, train_set, val_set)
        data = cfg.data
        loader = build_loader(
            train_set, batch_size=data.batch_size, num_workers=data.num_workers, shuffle=True, drop_last=True,
            rank=ctx.rank, world_size=ctx.world_size, seed=cfg.seed, batches_per_step=cfg.train.accum_steps,
        )
        val_loader = build_loader(  # its persistent workers serve every validation; closed when the run ends
            val_set, batch_size=data.val_batch_size or data.batch_size, num_workers=data.num_workers,
            shuffle=False, drop_last=False, seed=cfg.seed,
        )
        log.info(
            "pretraining %s (%.1fM parameters) on %d train / %d val clips per epoch, %d process(es) on %s",
            model.config.name, sum(p.numel() for p in model.parameters()) / 1e6,
            len(train_set), len(val_set), ctx.world_size, ctx.device,
        )
        log_augmentations(train_set)
        if len(val_set) < MIN_VAL_CLIPS:
            log.warning("only %d validation clips: retrieval R@1 among them is coarse (chance %.0f %%); "
                        "give more held-out videos with data.val or data.val_fraction",
                        len(val_set), 100 / max(len(val_set), 1))
        monitor = CollapseMonitor(cfg.train.warmup_epochs, run_dir, model.config.alignment)
        trainer = Trainer(
            model, loader, make_pretrain_step(may_lack_sound(train_set)), cfg.train, run_dir, ctx,
            evaluate=make_validator(val_loader), best_metric="mean_R@1", seed=cfg.seed,
            after_validation=monitor.after_validation,
        )
        folder.keep()
        with val_loader:
            result = trainer.fit()
        if ctx.is_main:
            report_collapse(run_dir, result.position.epoch)
        return result
