"""One way to build a model, one way to load one.

    >>> import avssl
    >>> model = avssl.create_model("tiny", proj_dim=32)   # a named size, fields overridden
    >>> model.save_pretrained("out/tiny")                  # model.safetensors + config.json
    >>> same = avssl.load_model("out/tiny")
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from avssl.models.av_model import CONFIG_FILE, WEIGHTS_FILE, AVModel
from avssl.models.config import MODEL_CONFIGS, ModelConfig, config_from_dict, get_config
from avssl.train.checkpoint import resolve_checkpoint

log = logging.getLogger(__name__)


def list_models() -> list[str]:
    """Names accepted by `create_model`."""
    return list(MODEL_CONFIGS)


def create_model(name_or_config: str | ModelConfig = "tiny", **overrides: Any) -> AVModel:
    """A freshly initialised `AVModel` of a named size or a `ModelConfig`, with `overrides` applied
    to the config (e.g. `num_frames=16`). An unknown override raises ValueError naming the closest
    valid field."""
    if isinstance(name_or_config, ModelConfig):
        config = dataclasses.replace(name_or_config)
    else:
        config = get_config(name_or_config)
    return AVModel(config_from_dict(overrides, base=config, where="create_model override"))


def _resolve(path: Path) -> tuple[Path, Path]:
    """(weights file, config file) for a model folder, a run folder or a .safetensors path."""
    if path.is_dir() and not (path / WEIGHTS_FILE).exists():
        path = resolve_checkpoint(path, "best")  # a run folder or its checkpoints/ folder
    if path.is_dir():
        weights = path / WEIGHTS_FILE
    elif path.suffix == ".safetensors":
        weights = path
    else:
        raise FileNotFoundError(
            f"{path}: expected a folder holding {WEIGHTS_FILE} + {CONFIG_FILE}, or a .safetensors file"
            + ("" if path.exists() else " (it does not exist)")
        )
    config = weights.parent / CONFIG_FILE
    for needed in (weights, config):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found; a saved model is a folder written by save_pretrained()")
    return weights, config


def load_model(path: str | Path, map_location: str = "cpu") -> AVModel:
    """An `AVModel` from a folder written by `save_pretrained` (or its model.safetensors path), or
    from a run folder of `avssl pretrain` (its best checkpoint).

    Reads only safetensors and JSON (never pickle); every weight must match the config's shapes.
    """
    weights, config_path = _resolve(Path(path))
    try:
        values = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from err
    if not isinstance(values, dict):
        raise ValueError(f"{config_path}: expected a JSON object of model config fields")
    config = config_from_dict(values)
    model = AVModel(config)
    state = load_file(str(weights), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match its config ({config.name}): missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )
    log.info("loaded %s model (%.1fM parameters) from %s", config.name, model.num_parameters() / 1e6, weights)
    return model.to(map_location)
