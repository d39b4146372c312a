"""Where a run's numbers go: `metrics.jsonl` (one JSON object per record, always) and the loggers
that `train.loggers` names: TensorBoard (the default) and Weights & Biases (optional, `pip install
"avssl[wandb]"`)."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from avssl.config import ConfigError
from avssl.files import write_text_atomic

log = logging.getLogger(__name__)


def _row_step(line: str) -> int | None:
    """The step of one `metrics.jsonl` line; None for a line a kill cut short (or anything else unreadable)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def truncate_metrics(path: str | Path, step: int) -> int:
    """Drop the rows of a `metrics.jsonl` logged after optimizer step `step` (and lines cut short by
    a kill): a run resumed from the checkpoint of `step` logs them again. The file is replaced whole
    (temporary file, then rename). Returns the number of lines dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [line for line in lines if (row_step := _row_step(line)) is not None and row_step <= step]
    if len(kept) < len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


class TensorBoardLogger:
    """Scalars as `split/key` in `run_dir/tensorboard/`. `purge_step`: TensorBoard hides what an
    earlier attempt logged from that step on (a resumed run logs those steps again)."""

    def __init__(self, run_dir: Path, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def log(self, split: str, step: int, values: dict[str, float], epoch: int | None) -> None:
        for key, value in values.items():
            self._writer.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        self._writer.close()


class WandbLogger:
    """Scalars as `split/key` in a Weights & Biases run named after the run folder, with the run's
    `config.yaml` as its config and its files in `run_dir/wandb/`.

    W&B's own variables apply (WANDB_MODE=offline logs without a network, WANDB_ENTITY,
    WANDB_PROJECT, default "avssl"). W&B accepts only increasing steps, so a resumed run, which
    logs the steps after its checkpoint again, starts a new W&B run in the same group (the folder
    name) rather than rewriting the old one."""

    def __init__(self, run_dir: Path) -> None:
        import wandb  # optional: only runs that ask for it need it installed

        config_file, name = run_dir / "config.yaml", run_dir.resolve().name
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "avssl"), name=name, group=name,
            dir=str(run_dir), config=yaml.safe_load(config_file.read_text()) if config_file.is_file() else None,
        )

    def log(self, split: str, step: int, values: dict[str, float], epoch: int | None) -> None:
        row: dict[str, Any] = {f"{split}/{key}": value for key, value in values.items()}
        if epoch is not None:
            row["epoch"] = epoch
        self._run.log(row, step=step)

    def close(self) -> None:
        self._run.finish()


LOGGERS = ("tensorboard", "wandb")  # what `train.loggers` may name; each imports the module of its name
_INSTALL = {"tensorboard": "tensorboard", "wandb": '"avssl[wandb]"'}  # what `pip install` brings it


def check_loggers(loggers: Sequence[str]) -> None:
    """Raise ConfigError, before anything is written, for a logger that is unknown or whose package is
    missing, saying how to install it or leave it out (every rank calls this, so all stop together)."""
    for name in loggers:
        if name not in LOGGERS:
            raise ConfigError(f"train.loggers: unknown logger {name!r}; one of {', '.join(LOGGERS)}")
        if importlib.util.find_spec(name) is None:
            others = ", ".join(n for n in loggers if n != name)
            raise ConfigError(f"train.loggers names {name}, which is not installed: pip install {_INSTALL[name]}, "
                              f"or leave it out: train.loggers=[{others}]")


class MetricsLogger:
    """Appends scalars to `run_dir/metrics.jsonl` and to each logger of `loggers` ("tensorboard",
    "wandb"; `check_loggers` says what is missing); only rank 0 (`enabled`) writes.

    `resume_step`: the run continues from the checkpoint of that step, so what was logged after it
    is dropped (from metrics.jsonl now, from TensorBoard's view by its `purge_step`) and written
    once again as the steps are redone."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, loggers: Sequence[str] = ("tensorboard",),
                 resume_step: int | None = None) -> None:
        check_loggers(loggers)
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._loggers: list[TensorBoardLogger | WandbLogger] = []
        if not enabled:
            return
        if resume_step is not None:
            dropped = truncate_metrics(self.path, resume_step)
            if dropped:
                log.info("resuming at step %d: dropped %d rows of %s logged after it", resume_step, dropped, self.path)
        if "tensorboard" in loggers:
            self._loggers.append(TensorBoardLogger(Path(run_dir), None if resume_step is None else resume_step + 1))
        if "wandb" in loggers:
            self._loggers.append(WandbLogger(Path(run_dir)))

    def log(self, split: str, step: int, values: dict[str, float], epoch: int | None = None) -> None:
        """Record `values` under `split` (e.g. "train", "val") at optimizer step `step`."""
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()}
        record = {"split": split, "step": step, "time": round(time.time(), 3)}
        if epoch is not None:
            record["epoch"] = epoch
        record.update(values)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        for logger in self._loggers:
            logger.log(split, step, values, epoch)

    def close(self) -> None:
        """Flush and close every logger (a W&B run is marked finished)."""
        for logger in self._loggers:
            logger.close()


def read_metrics(run_dir: str | Path, split: str | None = None) -> list[dict]:
    """The records of a run's `metrics.jsonl`, optionally only one split."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
