"""Weights on disk: the one format every avssl model is saved in, and how a folder is found and read.

A saved model is a folder holding `model.safetensors` (the state dict; never pickle), `config.json`
(the `ModelConfig` fields; a fine-tuned classifier adds a "classifier" entry) and `README.md`, its
model card (`avssl.models.card`). `SavesPretrained` writes it for the pretraining model and the
classifier alike, and can push it to the Hugging Face Hub; `avssl.models.factory.load` reads either,
from a local folder or a Hub repo id (`avssl.models.hub`), so the one format is also the Hub's.

A training checkpoint (`checkpoints/step_0000123/`) is such a folder plus `trainer_state.pt` and
`checksums.json` (size and sha256 of each file); `checkpoints/index.json` names the latest and the
best. `resolve_checkpoint` finds the folder a path means (itself, a `checkpoints/` folder or a run
folder) and verifies it. Writing and resuming checkpoints is the trainer's (`avssl.train.checkpoint`);
finding and reading weights lives here, beside the models, so that loading a model never needs the
training code.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from avssl.files import new_file_mode, write_json_atomic
from avssl.models import card, hub

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"  # the model card, as on the Hub
STATE_FILE = "trainer_state.pt"  # a training checkpoint's optimizer / scheduler / RNG state
INDEX_FILE = "index.json"  # in a checkpoints/ folder: the last and the best checkpoint
CHECKSUM_FILE = "checksums.json"


class CheckpointError(ValueError):
    """A checkpoint is damaged or incomplete: a file is missing, fails its checksum or cannot be read."""


class SavesPretrained:
    """Hub conventions for a module (those of transformers' and timm's models): `save_pretrained(directory)`
    writes its state dict as `model.safetensors`, `pretrained_config()` (a JSON object) as `config.json`
    and a model card as `README.md`, optionally pushing the folder to the Hub; `from_pretrained(path or
    repo id)` reads it back in eval mode."""

    def pretrained_config(self) -> dict[str, Any]:
        """What config.json holds: each model class that uses this mixin defines it (abstract hook)."""
        raise NotImplementedError(f"{type(self).__name__} must define pretrained_config()")

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, map_location: str = "cpu", *,
                        revision: str | None = None) -> Any:
        """The model saved at a local path (saved-model, checkpoint or run folder) or in a Hub repo
        ("org/name", from the local Hub cache first; `revision`: a branch, tag or commit), in eval
        mode; ValueError when the folder holds another kind of model. See `avssl.models.factory.load`."""
        from avssl.models.factory import load  # the factory builds the subclasses of this mixin

        return load(path_or_repo_id, map_location, expect=cls, revision=revision)

    def save_pretrained(self, directory: str | Path, *, model_card: str | None = None, push_to_hub: bool = False,
                        repo_id: str | None = None, private: bool | None = None, token: str | None = None) -> Path:
        """Write `model.safetensors`, `config.json` and `README.md` into `directory`; returns it.
        `avssl.models.factory.load(directory)` reads them back.

        model_card: the README.md text (default: `avssl.models.card.model_card(self)`; an existing
        README.md is then kept, as huggingface_hub's mixin does). push_to_hub: also upload the folder to
        the Hub repo `repo_id` (default: the folder's name), created when missing (`private`, `token`
        as `huggingface_hub.HfApi`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        os.chmod(directory / WEIGHTS_FILE, new_file_mode())  # safetensors writes 0600
        (directory / CONFIG_FILE).write_text(json.dumps(self.pretrained_config(), indent=2) + "\n")
        if model_card is not None or not (directory / CARD_FILE).is_file():
            (directory / CARD_FILE).write_text(model_card if model_card is not None else card.model_card(self))
        if push_to_hub:
            hub.push_folder(directory, repo_id or directory.name, private=private, token=token)
        return directory

    def push_to_hub(self, repo_id: str, *, model_card: str | None = None, private: bool | None = None,
                    token: str | None = None) -> str:
        """Save into a temporary folder and upload it to the Hub repo `repo_id`; returns the commit's URL."""
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, model_card=model_card)
            return hub.push_folder(Path(folder), repo_id, private=private, token=token)


# ---- finding a saved model ----------------------------------------------------------------------
def read_index(directory: Path) -> dict[str, Any]:
    """The index of a checkpoints folder; {} when absent or unreadable (the folders themselves remain)."""
    path = directory / INDEX_FILE
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s is unreadable (%s): ignoring it", path, err)
        return {}
    return index if isinstance(index, dict) else {}


def sha256_file(path: Path, *, sync: bool = False) -> str:
    """The file's sha256; with `sync`, the file is also flushed to disk (before a save renames its
    folder into place, so that a crash of the machine never exposes unwritten data)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
        if sync:
            os.fsync(handle.fileno())
    return digest.hexdigest()


def write_checksums(folder: Path) -> Path:
    """Record the size and sha256 of every file in `folder` in its `checksums.json`, syncing each."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p, sync=True)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUM_FILE}
    return write_json_atomic(folder / CHECKSUM_FILE, {"algorithm": "sha256", "files": files}, indent=2)


def verify_checkpoint(folder: str | Path) -> bool:
    """Check every file of a checkpoint folder against its `checksums.json`; raise `CheckpointError`
    naming the first file that is missing, of the wrong size or damaged. Returns False for a folder
    without checksums (weights from `avssl import-weights`, checkpoints of older versions): nothing
    to verify against."""
    folder = Path(folder)
    manifest = folder / CHECKSUM_FILE
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
        expected = {name: (int(info["bytes"]), str(info["sha256"])) for name, info in files.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{folder}: {CHECKSUM_FILE} is unreadable ({type(err).__name__})") from None
    for name, (size, sha256) in expected.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder}: {name} is missing")
        if path.stat().st_size != size:
            raise CheckpointError(f"{folder}: {name} has {path.stat().st_size} bytes, {size} expected (truncated?)")
        if sha256_file(path) != sha256:
            raise CheckpointError(f"{folder}: {name} does not match its sha256 checksum (damaged)")
    return True


def is_checkpoint_folder(path: Path) -> bool:
    """Whether `path` is one checkpoint (or saved-model) folder rather than a folder of them."""
    return any((path / name).is_file() for name in (STATE_FILE, WEIGHTS_FILE, CHECKSUM_FILE))


def resolve_checkpoint(path: str | Path, which: str = "last") -> Path:
    """A checkpoint folder from itself, a `checkpoints/` folder, or a run folder (`last` or `best`),
    verified against its checksums (`CheckpointError` when damaged)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if is_checkpoint_folder(path):
        verify_checkpoint(path)
        return path
    for directory in (path, path / "checkpoints"):
        index = read_index(directory)
        name = index.get(which) or index.get("last")
        if name and (directory / name).is_dir():
            return resolve_checkpoint(directory / name)
    raise FileNotFoundError(f"no checkpoint in {path} (expected {WEIGHTS_FILE} or checkpoints/{INDEX_FILE})")


def saved_files(path: str | Path) -> tuple[Path, Path]:
    """(weights file, config file) of a saved-model folder, a checkpoint, a run folder (its best
    checkpoint) or a .safetensors path."""
    path = Path(path)
    if path.is_dir() or not path.exists() and path.suffix != ".safetensors":
        # the folder itself (verified when it has checksums), or a run / checkpoints/ folder's best
        weights = resolve_checkpoint(path, "best") / WEIGHTS_FILE
    elif path.suffix == ".safetensors":
        weights = path
    else:
        raise FileNotFoundError(f"{path}: expected a folder holding {WEIGHTS_FILE} + {CONFIG_FILE}, "
                                "or a .safetensors file")
    config = weights.parent / CONFIG_FILE
    for needed in (weights, config):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found; a saved model is a folder written by save_pretrained()")
    return weights, config


def read_config(path: Path) -> dict[str, Any]:
    """The JSON object of a `config.json` (ValueError naming the file when it is not one)."""
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of model config fields")
    return values


def read_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict of a `model.safetensors` file, or of the one in a folder."""
    path = Path(path)
    return load_file(str(path / WEIGHTS_FILE if path.is_dir() else path), device=str(device))


def load_weights(model: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu",
                 *, what: str = "its config") -> torch.nn.Module:
    """Copy the weights at `path` into `model`; every tensor must match (ValueError naming the
    missing and unexpected keys otherwise)."""
    missing, unexpected = model.load_state_dict(read_weights(path, device), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match {what}: missing {sorted(missing)[:8]}, "
                         f"unexpected {sorted(unexpected)[:8]}")
    return model
