"""Training checkpoints: written atomically, checksummed, pruned, and read back without unpickling code.

A checkpoint is a folder `checkpoints/step_0000123/` holding the model as released weights
(`model.safetensors` + `config.json`, so `avssl.load_model` opens it directly),
`trainer_state.pt` (optimizer, scheduler, position in the data and RNG states, all plain tensors
and numbers: `torch.load(weights_only=True)` reads it) and `checksums.json` (the size and sha256
of each of those files). `checkpoints/index.json` names the latest and the best one.

Writing: the files go to `.tmp-step_…`, which gets its final name only once complete; a checkpoint
of the same step is first renamed aside (`.old-step_…`) and deleted only after the new one is in,
so a run killed at any moment leaves a complete checkpoint behind. A failed write (disk full)
removes the temporary folder and raises one `CheckpointWriteError`.

Finding a checkpoint and verifying its checksums is `avssl.models.weights` (loading a model needs it
without the trainer). Reading: every file is checked before anything is loaded, and unreadable
files are reported as a `CheckpointError` naming the file (never a raw unpickling or safetensors
error). `load_latest` tries the checkpoints of a folder newest first and says which it skipped.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.files import new_file_mode, write_json_atomic
from avssl.models.weights import (
    INDEX_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    is_checkpoint_folder,
    read_index,
    read_weights,
    resolve_checkpoint,
    write_checksums,
)

log = logging.getLogger(__name__)

_FOLDER = re.compile(r"^(\.old-)?step_(\d+)$")  # a checkpoint, or one renamed aside while being replaced


class CheckpointWriteError(OSError, ValueError):
    """A checkpoint could not be written (e.g. the disk is full); the previous ones are untouched.

    Also a ValueError, like `io.UnsupportedOperation`, so that the command line reports it in one line."""


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


def _write_folder(folder: Path, model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Weights, trainer state and checksums into a fresh `folder`."""
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    torch.save(state, folder / STATE_FILE)
    for path in folder.iterdir():  # safetensors writes 0600: give every file the mode a new file gets
        if path.is_file():
            os.chmod(path, new_file_mode())
    write_checksums(folder)


def _move_in(tmp: Path, final: Path) -> None:
    """Give the complete folder `tmp` the name `final`. An existing `final` (the same step saved
    again) is renamed aside first and deleted last, so one of the two is complete at every moment."""
    aside = final.with_name(f".old-{final.name}")
    if final.exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(tmp, final)
    shutil.rmtree(aside, ignore_errors=True)


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
    """Write a complete checkpoint, update the index (last, best), prune older ones.

    Raises `CheckpointWriteError` (one line, e.g. "No space left on device") when a file cannot be
    written; the temporary folder is removed and the checkpoints already there stay as they were."""
    directory = Path(directory)
    name = f"step_{position.step:07d}"
    final, tmp = directory / name, directory / f".tmp-{name}"
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "position": vars(position).copy(),
        "rng": rng_state(),
        "extra": extra or {},
        "metric": metric,
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write_folder(tmp, model, state)
        _move_in(tmp, final)
        index = read_index(directory)
        index["last"] = name
        best = index.get("best_metric")
        if metric is not None and (best is None or (metric > best if higher_is_better else metric < best)):
            index["best"], index["best_metric"] = name, metric
        write_json_atomic(directory / INDEX_FILE, index, indent=2)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(err, final) from err
    _prune(directory, keep=keep, protect={index.get("best"), name})
    log.info("checkpoint written: %s", final)
    return final


def _write_error(err: OSError, final: Path) -> CheckpointWriteError:
    """One line saying what failed and what is left (the index still names the last good checkpoint)."""
    kept = read_index(final.parent).get("last")
    left = f"the last good checkpoint, {final.parent / kept}, is intact" if kept else "no earlier checkpoint exists"
    error = CheckpointWriteError(f"cannot write checkpoint {final}: {err.strerror or err}; {left}")
    error.errno = err.errno
    return error


def _prune(directory: Path, keep: int, protect: set[str | None]) -> None:
    """Delete all but the `keep` newest checkpoints (and the protected ones), and what killed saves left."""
    steps = sorted(p for p in directory.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else steps:
        if old.name not in protect:
            shutil.rmtree(old, ignore_errors=True)
    for leftover in [*directory.glob(".tmp-step_*"), *directory.glob(".old-step_*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def _rank(folder: Path) -> tuple[int, bool]:
    """(step, not renamed aside) of a checkpoint folder's name."""
    match = _FOLDER.match(folder.name)
    return int(match.group(2)), match.group(1) is None


def resume_candidates(source: str | Path) -> list[Path]:
    """The checkpoints a resume from `source` may use, in the order to try them: a checkpoint folder
    alone; for a run or `checkpoints/` folder, the index's `last` (listed even when its folder is
    gone, so that the skip is reported) and then the older ones, newest first, each followed by its
    copy renamed aside by a save killed mid-replace. Checkpoints newer than `last` belong to an
    abandoned line of training (a resume from an older checkpoint) and are left out."""
    source = Path(source)
    if is_checkpoint_folder(source):
        return [source]
    for directory in (source, source / "checkpoints"):
        if not directory.is_dir():
            continue
        folders = {p for p in directory.iterdir() if _FOLDER.match(p.name) and p.is_dir()}
        last = read_index(directory).get("last")
        if isinstance(last, str) and _FOLDER.match(last):
            newest = _rank(directory / last)[0]
            folders = {directory / last} | {p for p in folders if _rank(p)[0] <= newest}
        if folders:
            return sorted(folders, key=_rank, reverse=True)
    return []


def _read_state(folder: Path, map_location: str | torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and trainer state of a checkpoint folder; damage met while parsing, or NaN / inf
    weights, is a `CheckpointError` naming the file (checksums catch it first, except in folders
    written without them)."""
    if not (folder / STATE_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds weights only ({STATE_FILE} missing): it cannot resume a run")
    current = WEIGHTS_FILE
    try:
        weights = read_weights(folder, map_location)
        current = STATE_FILE
        state = torch.load(folder / STATE_FILE, map_location=map_location, weights_only=True)
        Position(**state["position"])
        missing = {"optimizer", "scheduler", "rng"} - set(state)
    except Exception as err:  # damaged bytes raise whatever the parser meets first
        reason = (str(err).splitlines() or [""])[0][:200]
        raise CheckpointError(f"{folder}: {current} cannot be read ({type(err).__name__}: {reason})") from None
    if missing:
        raise CheckpointError(f"{folder}: {STATE_FILE} lacks {', '.join(sorted(missing))}")
    broken = next((k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if broken is not None:  # training never saves these (a non-finite loss stops it first): damaged bytes
        raise CheckpointError(f"{folder}: {WEIGHTS_FILE} holds non-finite values in {broken} (damaged)")
    return weights, state


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[Position, dict[str, Any]]:
    """Load weights (and, when given, optimizer and scheduler) from a checkpoint; returns its position.

    The checkpoint is verified and read whole before anything is changed, so a damaged one
    (`CheckpointError`, or FileNotFoundError for a missing file) leaves the model as it was."""
    folder = resolve_checkpoint(path)
    weights, state = _read_state(folder, map_location)
    model.load_state_dict(weights)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return Position(**state["position"]), state


def load_latest(
    candidates: list[Path],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[Path, Position, dict[str, Any]]:
    """Load the first of `candidates` (see `resume_candidates`) that verifies, logging each one skipped
    and why; a `CheckpointError` listing every reason when none does."""
    reasons = []
    for folder in candidates:
        try:
            position, state = load_checkpoint(folder, model, optimizer, scheduler, map_location)
        except (CheckpointError, FileNotFoundError) as err:
            log.warning("skipping checkpoint %s: %s", folder.name, err)
            reasons.append(str(err))
            continue
        return folder, position, state
    raise CheckpointError(f"no checkpoint to resume from verifies: {'; '.join(reasons) or 'none found'}")
