"""What the weight importers share: reading foreign state dicts, placing patch kernels and position
tables, and a shape-checked copy into the model with a report of what happened.

Each importer (`convert_hf`, `convert_cavmae`) builds an explicit map {avssl key: tensor}, the way
torchtune's `convert_weights` and nanoGPT's `from_pretrained` do, then `apply_weights` checks every
key and shape against the model before it copies anything: a mismatch leaves the model untouched,
and the error names the key and both shapes.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from einops import repeat
from safetensors.torch import load_file
from torch import nn

from avssl.models.pos_embed import PositionalEmbedding, resample_table

log = logging.getLogger(__name__)

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_NESTED_KEYS = ("model", "state_dict", "module")


@dataclass
class ImportReport:
    """What an import did. `loaded`: model keys written; `missing`: model keys left as they were
    (nothing in the source corresponds); `unused`: source keys with no place in the model; `notes`:
    every place where the result is not an exact copy (resampled positions, inflated kernels, ...)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        """Record (and log) one way in which the import is not an exact copy."""
        log.info("%s: %s", self.source, message)
        self.notes.append(message)

    def summary(self) -> str:
        """A few human-readable lines; keys are grouped by module, layers shown once as `N.*`."""
        lines = [f"imported {len(self.loaded)} tensors from {self.source}"]
        for name, keys in (("left as initialised", self.missing), ("not used", self.unused)):
            if keys:
                lines.append(f"{name} ({len(keys)}): {', '.join(compact_keys(keys))}")
        lines += [f"note: {message}" for message in self.notes]
        return "\n".join(lines)


def compact_keys(keys: list[str], limit: int = 16) -> list[str]:
    """Module names of `keys` (`.weight`/`.bias` dropped, everything below a layer index as `N.*`),
    deduplicated, at most `limit` (then '...')."""
    modules = (re.sub(r"\.(weight|bias)$", "", re.sub(r"\.\d+\..*", ".N.*", key)) for key in sorted(keys))
    patterns = list(dict.fromkeys(modules))
    return patterns[:limit] + (["..."] if len(patterns) > limit else [])


def _unwrap(state: dict) -> dict[str, torch.Tensor]:
    """Training scripts save {"model": state_dict, "optimizer": ...}; keep the tensors."""
    for key in _NESTED_KEYS:
        if isinstance(state.get(key), dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
            return _unwrap(state[key])
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"no tensors found (top-level keys: {sorted(state)[:8]})")
    return tensors


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file on CPU: .safetensors, a sharded `*.safetensors.index.json`, or a
    PyTorch pickle (.bin/.pt/.pth/.ckpt, read with `weights_only=True`, so no code is run); a state
    dict nested under "model"/"state_dict" is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.name.endswith(".safetensors"):
        return load_file(str(path))
    if path.name.endswith(".index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(read_state_dict(path.parent / shard))
        return state
    if path.suffix not in _PICKLE_SUFFIXES:
        raise ValueError(f"{path}: unknown checkpoint format; expected .safetensors or {', '.join(_PICKLE_SUFFIXES)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or code-carrying pickle: say which file, keep the cause
        raise ValueError(f"{path}: cannot read as a PyTorch state dict ({err})") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    try:
        return _unwrap(state)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """`state` with `prefix` removed from the keys that start with it (e.g. DataParallel's "module.")."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def inflate_kernel(weight: torch.Tensor, depth: int, report: ImportReport | None = None) -> torch.Tensor:
    """A 2-D patch kernel (D, C, h, w) as a 3-D tubelet kernel (D, C, depth, h, w): repeated over
    time and divided by `depth`, so a clip of `depth` identical frames embeds exactly as the image
    (I3D's inflation)."""
    if report is not None and depth > 1:
        report.note(f"image patch kernel inflated over {depth} frames (divided by {depth}): exact on static clips")
    return repeat(weight, "d c h w -> d c t h w", t=depth) / depth


def image_table_for_video(table: torch.Tensor, grid: tuple[int, int], video_grid: tuple[int, int, int],
                          report: ImportReport, what: str) -> torch.Tensor:
    """An image position table (rows * cols, D) as a video table on `video_grid` (T', H', W'):
    resampled to (H', W') when the grids differ and shared by every time step."""
    time_steps, frame_grid = video_grid[0], tuple(video_grid[1:])
    if tuple(grid) != frame_grid:
        report.note(f"{what} positions resampled from {'x'.join(map(str, grid))} to {'x'.join(map(str, frame_grid))}")
    if time_steps > 1:
        report.note(f"{what} image positions shared by all {time_steps} time steps")
    return repeat(resample_table(table, tuple(grid), frame_grid), "s d -> (t s) d", t=time_steps)


def place_positions(weights: dict[str, torch.Tensor], key: str, module: PositionalEmbedding,
                    table: torch.Tensor, grid: tuple[int, ...], report: ImportReport, what: str) -> None:
    """Put a source position table (N, D) on `grid` into `module` (key `key`), resampled to the
    module's grid when they differ. A fixed sin-cos module has nothing to load: when the source
    table is not that same table, the difference is recorded in the report."""
    if table.shape[0] != torch.Size(grid).numel():
        raise ValueError(f"{what} positions: {table.shape[0]} rows do not fill a {'x'.join(map(str, grid))} grid")
    if module.kind == "sincos":
        if tuple(grid) == module.grid and torch.allclose(table.float(), module.table[0].float(), atol=1e-5):
            return
        report.note(f"{what} positions not imported: the model uses fixed sin-cos positions "
                    "(build it with pos_embed='learned' to import them)")
        return
    if tuple(grid) != module.grid:
        report.note(f"{what} positions resampled from a {'x'.join(map(str, grid))} grid to "
                    f"{'x'.join(map(str, module.grid))}")
    weights[key] = resample_table(table, tuple(grid), module.grid)[None]


def apply_weights(model: nn.Module, weights: dict[str, torch.Tensor], report: ImportReport) -> ImportReport:
    """Copy `weights` ({model key: tensor}) into `model` after checking every key and shape; fills
    `report.loaded` and `report.missing`. Raises ValueError (model unchanged) on any mismatch."""
    state = model.state_dict()
    unknown = sorted(set(weights) - set(state))
    if unknown:
        raise ValueError(f"{report.source}: the model has no parameters {unknown[:8]}")
    wrong = [f"{k}: source {tuple(v.shape)} vs model {tuple(state[k].shape)}"
             for k, v in weights.items() if v.shape != state[k].shape]
    if wrong:
        raise ValueError(f"{report.source}: shapes do not match the model:\n  " + "\n  ".join(wrong))
    with torch.no_grad():
        for key, value in weights.items():
            state[key].copy_(value.to(state[key].dtype))  # state_dict tensors share the parameters' storage
    report.loaded = sorted(weights)
    report.missing = sorted(set(state) - set(weights))
    return report
