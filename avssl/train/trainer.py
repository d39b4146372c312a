"""The training loop shared by pretraining and fine-tuning: setup, steps, evaluation, checkpoints.

A recipe hands the loop a model, a loader and a `step_fn(model, batch) -> {"loss": ..., ...}`;
the loop owns everything else: devices and DDP, mixed precision, accumulation, clipping, the
schedule, resumption, stop signals, non-finite losses and logging.

The host waits for the device (and ranks for each other) only at log steps, every
`train.log_every` optimizer steps and at the end of an epoch (MAE's MetricLogger, torchtune): loss
terms and gradient norms are summed on the device in between, and the step of the first non-finite
loss is kept there too, so a NaN is caught within one log interval. A checkpoint is written only
after that check, so the last one is always of finite weights.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from tqdm import tqdm

from avssl.train import distributed as distr
from avssl.train.checkpoint import (
    CheckpointWriteError,
    Position,
    load_latest,
    resume_candidates,
    save_checkpoint,
)
from avssl.train.config import TrainConfig
from avssl.train.observe import MetricsLogger
from avssl.train.optim import adamw, param_groups
from avssl.train.schedule import warmup_cosine
from avssl.train.signals import StopSignal

log = logging.getLogger(__name__)

StepFn = Callable[[nn.Module, dict[str, Any]], dict[str, torch.Tensor]]
EvalFn = Callable[[nn.Module], dict[str, float]]
ValidationHook = Callable[[int, dict[str, float]], dict[str, float]]  # (epoch, metrics) -> numbers to add


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped without writing a checkpoint of that state."""


@dataclass
class FitResult:
    """How a call to `Trainer.fit` ended."""

    status: str  # "finished" | "interrupted"
    position: Position
    wall_time: float
    val_metrics: dict[str, float] = field(default_factory=dict)
    last_checkpoint: Path | None = None


@dataclass
class _Window:
    """Sums over the optimizer steps since the last `train` row of metrics.jsonl; loss terms stay on
    the device (tensors) until that row is written."""

    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0
    wait: float = 0.0
    time: float = 0.0
    clips: int = 0
    grad_norm: torch.Tensor | float = float("nan")  # of the last step

    def add(self, terms: dict[str, torch.Tensor], wait: float, elapsed: float, clips: int,
            grad_norm: torch.Tensor | float) -> None:
        for key, value in terms.items():
            self.terms[key] = self.terms[key] + value if key in self.terms else value
        self.steps += 1
        self.wait += wait
        self.time += elapsed
        self.clips += clips
        self.grad_norm = grad_norm


def _num_clips(batch: Any) -> int:
    """Clips in a collated batch: rows of its first tensor (random_multi items hold several)."""
    values = batch.values() if isinstance(batch, dict) else batch
    return next((int(v.shape[0]) for v in values if isinstance(v, torch.Tensor)), 0)


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """The RNG seed of one micro-step, so masking and drop-path repeat exactly after a resume."""
    digest = hashlib.blake2b(f"{seed}/{step}/{micro}/{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class Trainer:
    """Runs `cfg.epochs` epochs of `step_fn` over `loader`, evaluating and checkpointing on the way.

    `after_validation(epoch, metrics)`, when given, runs after each validation (main process) and
    returns numbers recorded with that validation's metrics (pretraining counts collapse warnings).
    """

    def __init__(
        self,
        model: nn.Module,
        loader: Iterable,
        step_fn: StepFn,
        cfg: TrainConfig,
        run_dir: str | Path,
        ctx: distr.DistContext,
        *,
        evaluate: EvalFn | None = None,
        best_metric: str | None = None,
        higher_is_better: bool = True,
        seed: int = 0,
        groups: list[dict[str, Any]] | None = None,
        find_unused_parameters: bool = False,
        after_validation: ValidationHook | None = None,
    ) -> None:
        self.cfg, self.ctx, self.seed = cfg, ctx, seed
        self.after_validation = after_validation
        self.run_dir = Path(run_dir)
        self.loader, self.step_fn, self.evaluate = loader, step_fn, evaluate
        self.best_metric, self.higher_is_better = best_metric, higher_is_better
        self.model = model.to(ctx.device)
        if cfg.grad_checkpointing and hasattr(model, "set_grad_checkpointing"):
            model.set_grad_checkpointing(True)
        self.optimizer = adamw(groups or param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                               device=ctx.device)
        self.steps_per_epoch = len(loader) // cfg.accum_steps
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training loader yields {len(loader)} batches per epoch, fewer than "
                f"train.accum_steps={cfg.accum_steps}: lower data.batch_size or add data"
            )
        total = self.steps_per_epoch * cfg.epochs
        self.scheduler = warmup_cosine(
            self.optimizer, total, round(cfg.warmup_epochs * self.steps_per_epoch), cfg.min_lr_ratio
        )
        self.position = Position()
        self.val_metrics: dict[str, float] = {}
        self._saved: Position | None = None  # the position of the last checkpoint written or resumed from
        # the first optimizer step whose loss was not finite (inf: none yet), kept on the device
        self._first_non_finite = torch.tensor(math.inf, device=ctx.device)
        self._last_path: Path | None = None
        self._resume()
        self.forward_model: nn.Module = torch.compile(model) if cfg.compile else model
        if ctx.distributed:
            self.forward_model = nn.parallel.DistributedDataParallel(
                self.forward_model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters,
            )
        self.metrics = MetricsLogger(self.run_dir, enabled=ctx.is_main, loggers=cfg.loggers,
                                     resume_step=None if cfg.resume is False else self.position.step)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        precision = self.cfg.precision
        if precision == "auto":
            precision = "bf16" if self.ctx.device.type == "cuda" else "fp32"
        return torch.bfloat16 if precision == "bf16" else None

    def _resume(self) -> None:
        """Continue from the newest checkpoint of the source that verifies (`load_latest` says which
        it skipped and why); none verifying is an error, none at all with resume=true a fresh start."""
        resume = self.cfg.resume
        if resume is False:
            return
        source = self.run_dir / "checkpoints" if resume is True else Path(str(resume))
        candidates = resume_candidates(source)
        if not candidates:
            if resume is not True:
                raise FileNotFoundError(f"train.resume={resume}: no checkpoint there")
            log.info("resume=true but %s holds no checkpoint yet: starting from scratch", source)
            return
        folder, self.position, state = load_latest(
            candidates, self.model, self.optimizer, self.scheduler, self.ctx.device)
        self.val_metrics = state.get("extra", {}).get("val_metrics", {})
        self._saved, self._last_path = Position(**vars(self.position)), folder
        log.info("resumed from %s at step %d (epoch %d)", folder, self.position.step, self.position.epoch)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v.to(self.ctx.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }

    def _open_epoch(self, epoch: int, start: int) -> Iterator[Any]:
        """The batches of `epoch` from sample `start` on. A `ClipLoader`'s persistent workers start
        making them at once: opened before a validation, the first batches are ready after it."""
        self.loader.set_epoch(epoch, start=start)
        return iter(self.loader)

    def _close_loader(self) -> None:
        """End the training loader's workers (a stop signal, an error, the end of the run)."""
        close = getattr(self.loader, "close", None)
        if close is not None:
            close()

    def _raise_if_non_finite(self) -> None:
        """Stop every rank with `NonFiniteLossError` when a loss since the start was NaN or infinite
        on any of them (a host-device sync and, under DDP, a collective: called at log steps)."""
        first = distr.min_across_ranks(self._first_non_finite)
        if math.isfinite(first):
            raise NonFiniteLossError(
                f"non-finite loss at step {int(first)} (found at step {self.position.step}, epoch "
                f"{self.position.epoch}); stopped without saving this state, the last good checkpoint is in "
                f"{self.run_dir / 'checkpoints'}"
            )

    def _checkpoint(self, metric: float | None = None) -> None:
        """Rank 0 writes a checkpoint of the current position, once every loss so far is known to be
        finite; a failed write (disk full) stops every rank with the same `CheckpointWriteError`
        instead of leaving the others at a barrier."""
        self._raise_if_non_finite()
        error: CheckpointWriteError | None = None
        if self.ctx.is_main:
            try:
                self._last_path = save_checkpoint(
                    self.run_dir / "checkpoints",
                    self.model,
                    self.optimizer,
                    self.scheduler,
                    self.position,
                    metric=metric,
                    higher_is_better=self.higher_is_better,
                    keep=self.cfg.keep_checkpoints,
                    extra={"val_metrics": self.val_metrics},
                )
            except CheckpointWriteError as err:
                error = err
        if distr.any_rank(error is not None, self.ctx.device):
            raise error or CheckpointWriteError("rank 0 could not write a checkpoint (its log says why)")
        self._saved = Position(**vars(self.position))

    def _micro_step(self, batch: dict[str, Any], micro: int, sync: bool) -> dict[str, torch.Tensor]:
        """Forward and backward of one batch; returns its scalar loss terms (detached, on the device).
        `sync`: DDP all-reduces the gradients (the last micro-step of an optimizer step)."""
        torch.manual_seed(step_seed(self.seed, self.position.step, micro, self.ctx.rank))
        dtype = self.autocast_dtype
        no_sync = (
            self.forward_model.no_sync()
            if not sync and isinstance(self.forward_model, nn.parallel.DistributedDataParallel)
            else contextlib.nullcontext()
        )
        with no_sync:
            with torch.autocast(self.ctx.device.type, dtype=dtype, enabled=dtype is not None):
                out = self.step_fn(self.forward_model, batch)
            loss = out["loss"]
            (loss / self.cfg.accum_steps).backward()
        first = self._first_non_finite  # becomes this step where the loss is not finite, unless earlier
        self._first_non_finite = torch.where(torch.isfinite(loss.detach()), first,
                                             first.clamp(max=self.position.step + 1))
        return {k: v.detach() for k, v in out.items() if k.startswith("loss") and v.ndim == 0}

    def _optimizer_step(self) -> torch.Tensor | float:
        """Clip, step, schedule; returns the gradient norm before clipping (a device tensor; NaN
        without clipping)."""
        grad_norm: torch.Tensor | float = float("nan")
        if self.cfg.grad_clip > 0:
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.position.step += 1
        return grad_norm

    def _run_evaluation(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.evaluate is not None and self.ctx.is_main:
            self.model.eval()
            with torch.no_grad():
                metrics = self.evaluate(self.model)
            self.model.train()
            log.info("epoch %d validation: %s", self.position.epoch,
                     ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
            if self.after_validation is not None:
                metrics.update(self.after_validation(self.position.epoch, metrics))
            self.metrics.log("val", self.position.step, metrics, epoch=self.position.epoch)
        distr.barrier()
        return metrics

    def _check_ranks_agree(self) -> None:
        """DDP keeps replicas identical; a weight checksum that differs across ranks means it did not."""
        with torch.no_grad():
            checksum = sum(float(p.double().sum()) for p in self.model.parameters())
        spread = distr.spread_across_ranks(checksum, self.ctx.device)
        self.metrics.log("ranks", self.position.step, {"weight_spread": spread})
        if spread != 0.0:
            log.warning("model replicas differ across ranks (checksum spread %g)", spread)

    def _stop_requested(self, stop: StopSignal, log_step: bool = True) -> bool:
        """Whether a stop signal reached any rank (every rank asks at the same points). Asking the
        others is a collective, so under DDP only log steps ask; one process acts at once."""
        if self.ctx.distributed and not log_step:
            return False
        return distr.any_rank(stop.requested, self.ctx.device)

    def _train_step(self, batches: Iterator[Any]
                    ) -> tuple[dict[str, torch.Tensor], float, int, torch.Tensor | float]:
        """One optimizer step over `accum_steps` batches: (mean loss terms on the device, seconds spent
        waiting for data, clips seen, gradient norm)."""
        accum = self.cfg.accum_steps
        step_terms: dict[str, torch.Tensor] = {}
        wait, clips = 0.0, 0
        for micro in range(accum):
            fetch = time.perf_counter()
            batch = self._to_device(next(batches))
            wait += time.perf_counter() - fetch
            clips += _num_clips(batch)
            for key, value in self._micro_step(batch, micro, sync=micro == accum - 1).items():
                step_terms[key] = step_terms[key] + value / accum if key in step_terms else value / accum
            self.position.batch_in_epoch += 1
        return step_terms, wait, clips, self._optimizer_step()

    def _log_window(self, window: _Window, bar: tqdm) -> None:
        """One `train` row: the window's mean loss terms (over ranks too), lr, the last gradient norm and
        throughput; the same loss and clips/s on the progress bar. The window's one device sync."""
        means = {k: v / window.steps for k, v in window.terms.items()}
        values = distr.mean_across_ranks({**means, "grad_norm": window.grad_norm}, self.ctx.device)
        clips_per_s = window.clips * self.ctx.world_size / window.time
        bar.set_postfix(loss=f"{values.get('loss', float('nan')):.4f}", clips_s=f"{clips_per_s:.1f}")
        values.update(
            lr=self.scheduler.get_last_lr()[0],
            clips_per_s=clips_per_s,
            data_wait_fraction=window.wait / max(window.time, 1e-9),
        )
        self.metrics.log("train", self.position.step, values, epoch=self.position.epoch)

    def _train_epoch(self, batches: Iterator[Any], stop: StopSignal, bar: tqdm) -> bool:
        """The rest of the current epoch; True when a stop signal ended it early (at a step boundary)."""
        cfg, pos = self.cfg, self.position
        end = self.steps_per_epoch * cfg.accum_steps
        window = _Window()
        while pos.batch_in_epoch < end:
            tick = time.perf_counter()
            terms, wait, clips, grad_norm = self._train_step(batches)
            window.add(terms, wait, time.perf_counter() - tick, clips, grad_norm)
            bar.update(1)
            log_step = pos.step % cfg.log_every == 0 or pos.batch_in_epoch >= end
            if log_step:
                self._raise_if_non_finite()
                self._log_window(window, bar)
                window = _Window()
            if self._stop_requested(stop, log_step):
                return True
            if cfg.checkpoint_every and pos.step % cfg.checkpoint_every == 0:
                self._checkpoint()
        return False

    def fit(self) -> FitResult:
        """Train to the end (or to a stop signal: then the loader's workers are shut down, a
        checkpoint of the position reached is written and the result says "interrupted")."""
        cfg, pos = self.cfg, self.position
        start_time = time.time()
        batch_size = getattr(self.loader, "batch_size", None) or 1
        bar = tqdm(total=self.steps_per_epoch * cfg.epochs, initial=pos.step, disable=not self.ctx.is_main,
                   dynamic_ncols=True, unit="step")
        status = "finished"
        self.model.train()
        batches: Iterator[Any] | None = None
        try:
            with StopSignal() as stop:
                while pos.epoch < cfg.epochs:
                    if self._stop_requested(stop):  # it came during the last validation or checkpoint
                        status = "interrupted"
                        break
                    if batches is None:
                        batches = self._open_epoch(pos.epoch, pos.batch_in_epoch * batch_size)
                    if self._train_epoch(batches, stop, bar):
                        status = "interrupted"
                        break
                    pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
                    # the workers make the next epoch's first batches while this one is validated
                    batches = self._open_epoch(pos.epoch, 0) if pos.epoch < cfg.epochs else None
                    self.val_metrics = self._run_evaluation() or self.val_metrics
                    self._checkpoint(self.val_metrics.get(self.best_metric) if self.best_metric else None)
                if status == "interrupted":
                    self._close_loader()  # before the checkpoint: no worker outlives a stopped run
                    if self._saved != pos:
                        self._checkpoint()
                    log.warning("stopped by signal at step %d; resume with train.resume=true", pos.step)
        finally:
            self._close_loader()
        bar.close()
        if self.ctx.distributed:
            self._check_ranks_agree()
        self.metrics.close()
        return FitResult(status, pos, time.time() - start_time, self.val_metrics, self._last_path)
