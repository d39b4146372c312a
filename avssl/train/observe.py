"""Where a run's numbers go: `metrics.jsonl` (one JSON object per record) and TensorBoard."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


class MetricsLogger:
    """Appends scalars to `run_dir/metrics.jsonl` and `run_dir/tensorboard/`; only rank 0 writes."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning("tensorboard is not installed: scalars go to metrics.jsonl only")
            else:
                self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

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
