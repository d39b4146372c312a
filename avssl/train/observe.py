"""Where a run's numbers go: `metrics.jsonl` (one JSON object per record) and TensorBoard."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

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


class MetricsLogger:
    """Appends scalars to `run_dir/metrics.jsonl` and `run_dir/tensorboard/`; only rank 0 writes.

    `resume_step`: the run continues from the checkpoint of that step, so what was logged after it
    is dropped (from metrics.jsonl now, from TensorBoard's view by its `purge_step`) and written
    once again as the steps are redone."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._writer = None
        if enabled and resume_step is not None:
            dropped = truncate_metrics(self.path, resume_step)
            if dropped:
                log.info("resuming at step %d: dropped %d rows of %s logged after it", resume_step, dropped, self.path)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning("tensorboard is not installed: scalars go to metrics.jsonl only")
            else:
                purge = None if resume_step is None else resume_step + 1
                self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge)

    def log(self, split: str, step: int, values: dict[str, float], epoch: int | None = None) -> None:
        """Record `values` under `split` (e.g. "train", "val") at optimizer step `step`."""
        if not self.enabled:
            return
        record = {"split": split, "step": step, "time": round(time.time(), 3)}
        if epoch is not None:
            record["epoch"] = epoch
        record.update({k: float(v) for k, v in values.items()})
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(f"{split}/{key}", float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(run_dir: str | Path, split: str | None = None) -> list[dict]:
    """The records of a run's `metrics.jsonl`, optionally only one split."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
