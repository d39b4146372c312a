"""The optimisation settings every training recipe shares (pretraining and fine-tuning)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from avssl.config import Check, Matches, OneOf, Range, above, at_least
from avssl.train.observe import LOGGERS


@dataclass
class TrainConfig:
    """How to optimise: schedule, precision, checkpoints, logging, resumption."""

    epochs: int = 10
    lr: float = 1e-4
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    accum_steps: int = 1
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False
    grad_checkpointing: bool = False
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0 = at the end of each epoch only
    keep_checkpoints: int = 2  # most recent kept, besides the best
    log_every: int = 10
    loggers: tuple[str, ...] = ("tensorboard",)  # besides metrics.jsonl: tensorboard, wandb (pip install "avssl[wandb]")
    resume: bool | str = False  # true: this run folder's last checkpoint; or a checkpoint path

    RANGES: ClassVar[dict[str, Check]] = {  # checked by avssl.config.validate_config
        "epochs": at_least(1), "lr": above(0.0), "min_lr_ratio": Range(0.0, 1.0), "weight_decay": at_least(0.0),
        "betas": Range(0.0, 1.0, high_open=True), "warmup_epochs": at_least(0.0), "grad_clip": at_least(0.0),
        "accum_steps": at_least(1), "device": Matches(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, mps, cuda or cuda:N"),
        "checkpoint_every": at_least(0), "keep_checkpoints": at_least(0), "log_every": at_least(1),
        "loggers": OneOf(LOGGERS),
    }
