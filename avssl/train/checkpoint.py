"""Training checkpoints: written atomically, pruned, and read back without unpickling code.

A checkpoint is a folder `checkpoints/step_0000123/` holding the model as released weights
(`model.safetensors` + `config.json`, so `avssl.load_model` opens it directly) and
`trainer_state.pt`: optimizer, scheduler, position in the data and RNG states, all plain
tensors and numbers (`torch.load(weights_only=True)` reads it). `checkpoints/index.json`
names the latest and the best one. A folder only gets its final name once it is complete,
so a run killed while saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from avssl.files import write_json_atomic

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
INDEX_FILE = "index.json"


@dataclass
class Position:
    """Where training stands: optimizer steps done, the epoch, and batches done in it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def rng_state() -> dict[str, Any]:
    """Every RNG the loop touches, as plain values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_index(directory: Path) -> dict[str, Any]:
    path = directory / INDEX_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    position: Position,
    *,
    metric: float | None = None,
    higher_is_better: bool = True,
    keep: int = 2,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint, update the index (last, best), prune older ones."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step_{position.step:07d}"
    final = directory / name
    tmp = directory / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "position": vars(position).copy(),
        "rng": rng_state(),
        "extra": extra or {},
        "metric": metric,
    }
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)

    index = _read_index(directory)
    index["last"] = name
    best = index.get("best_metric")
    if metric is not None and (
        best is None or (metric > best if higher_is_better else metric < best)
    ):
        index["best"], index["best_metric"] = name, metric
    write_json_atomic(directory / INDEX_FILE, index, indent=2)
    _prune(directory, keep=keep, protect={index.get("best"), name})
    log.info("checkpoint written: %s", final)
    return final


def _prune(directory: Path, keep: int, protect: set[str | None]) -> None:
    steps = sorted(p for p in directory.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else steps:
        if old.name not in protect:
            shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path: str | Path, which: str = "last") -> Path:
    """A checkpoint folder from itself, a `checkpoints/` folder, or a run folder (`last` or `best`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if (path / STATE_FILE).is_file() or (path / "model.safetensors").is_file():
        return path
    for directory in (path, path / "checkpoints"):
        index = _read_index(directory)
        name = index.get(which) or index.get("last")
        if name and (directory / name).is_dir():
            return directory / name
    raise FileNotFoundError(f"no checkpoint in {path} (expected model.safetensors or checkpoints/{INDEX_FILE})")


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[Position, dict[str, Any]]:
    """Load weights (and, when given, optimizer and scheduler) from a checkpoint; returns its position."""
    folder = resolve_checkpoint(path)
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(map_location)))
    state_path = folder / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(f"{folder} holds weights only ({STATE_FILE} missing): it cannot resume a run")
    state = torch.load(state_path, map_location=map_location, weights_only=True)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return Position(**state["position"]), state
