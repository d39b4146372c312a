"""Clip embeddings of a whole source: what `avssl embed` writes and retrieval reads back.

Every video of a folder / class folders / CSV manifest / shards gives `clips_per_video` windows
(the "constant" sampler: one centred window by default, otherwise evenly spaced ones);
each window is decoded and transformed exactly as evaluation data is, and embedded by
both encoders in batches. The result travels as an `Embeddings` file (`.pt` or
`.safetensors`) holding both embeddings with the path, clip times, audio flag and label
of every row, so retrieval and evaluation never need to decode the gallery again.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from avssl.data.datasets import ClipDataset, open_dataset
from avssl.data.loader import build_loader
from avssl.data.pipeline import input_pipeline
from avssl.data.shards import ShardDataset
from avssl.models.av_model import AVModel
from avssl.models.factory import load_model
from avssl.train.distributed import pick_device

log = logging.getLogger(__name__)

_TENSORS = ("video_emb", "audio_emb", "clip_start", "clip_end", "has_audio", "labels")
SUFFIXES = (".pt", ".safetensors")


@dataclass
class Embeddings:
    """One row per clip: both embeddings (L2-normalised) and where the clip comes from."""

    video_emb: torch.Tensor  # (N, D) float32
    audio_emb: torch.Tensor  # (N, D) float32
    paths: list[str]  # video file of each row
    clip_start: torch.Tensor  # (N,) float64 seconds
    clip_end: torch.Tensor  # (N,) float64 seconds
    has_audio: torch.Tensor  # (N,) bool; False rows have no meaningful audio embedding
    labels: torch.Tensor  # (N,) int64 class index (-1 unlabeled) or (N, C) multi-hot
    classes: list[str] = field(default_factory=list)
    checkpoint: str = ""  # the weights that produced the embeddings

    def __post_init__(self) -> None:
        n = len(self.paths)
        for name in _TENSORS:
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"embeddings: {name} has {getattr(self, name).shape[0]} rows, paths has {n}")

    def __len__(self) -> int:
        return len(self.paths)

    def save(self, path: str | Path) -> Path:
        """Write to `.pt` (torch, readable with weights_only=True) or `.safetensors`
        (paths and classes go in the header metadata as JSON)."""
        path = Path(path)
        if path.suffix not in SUFFIXES:
            raise ValueError(f"embeddings file {path}: use a {' or '.join(SUFFIXES)} suffix")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: getattr(self, name).contiguous() for name in _TENSORS}
        if path.suffix == ".pt":
            torch.save({**tensors, "paths": self.paths, "classes": self.classes, "checkpoint": self.checkpoint}, path)
        else:
            meta = {"paths": json.dumps(self.paths), "classes": json.dumps(self.classes), "checkpoint": self.checkpoint}
            save_file(tensors, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Embeddings":
        """Read a file written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"embeddings file not found: {path}")
        if path.suffix == ".pt":
            data = torch.load(path, map_location="cpu", weights_only=True)
            missing = [k for k in (*_TENSORS, "paths") if k not in data]
            if missing:
                raise ValueError(f"{path} is not an avssl embeddings file (missing {', '.join(missing)})")
            return cls(**{k: data[k] for k in _TENSORS}, paths=list(data["paths"]),
                       classes=list(data.get("classes", [])), checkpoint=str(data.get("checkpoint", "")))
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                if "paths" not in meta:
                    raise ValueError(f"{path} is not an avssl embeddings file (no paths in its metadata)")
                tensors = {k: handle.get_tensor(k) for k in _TENSORS}
            return cls(**tensors, paths=json.loads(meta["paths"]), classes=json.loads(meta.get("classes", "[]")),
                       checkpoint=meta.get("checkpoint", ""))
        raise ValueError(f"embeddings file {path}: expected a {' or '.join(SUFFIXES)} suffix")


def clip_dataset(model: AVModel, source: str | Path, *, clips_per_video: int = 1) -> ClipDataset | ShardDataset:
    """Evaluation clips of `source` (files, folders, CSV manifest or shards: `open_dataset`) cut and
    transformed the way `model` was trained on them."""
    return open_dataset(source, sampler="constant", clips_per_video=clips_per_video, train=False,
                        **input_pipeline(model.config).dataset_kwargs())


@torch.no_grad()
def embed_dataset(
    model: AVModel, dataset: ClipDataset | ShardDataset, *, batch_size: int = 16, num_workers: int = 2,
    show_progress: bool = True,
) -> Embeddings:
    """Both embeddings of every item of `dataset`, in item index order (a ClipDataset's order; shards,
    which stream in shard order, give the same rows in the same order as their files)."""
    device = next(model.parameters()).device
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, drop_last=False)
    model.eval()
    rows: dict[str, list] = {k: [] for k in (*_TENSORS, "paths", "index")}
    for batch in tqdm(loader, desc="embedding", unit="batch", disable=not show_progress, dynamic_ncols=True):
        rows["video_emb"].append(model.embed_video(batch["video"].to(device)).float().cpu())
        rows["audio_emb"].append(model.embed_audio(batch["audio"].to(device)).float().cpu())
        rows["has_audio"].append(batch["has_audio"].bool())
        rows["labels"].append(batch["label"])
        rows["clip_start"].append(torch.as_tensor(batch["clip_start"], dtype=torch.float64))
        rows["clip_end"].append(torch.as_tensor(batch["clip_end"], dtype=torch.float64))
        rows["paths"].extend(batch["path"])
        rows["index"].append(torch.as_tensor(batch["index"]))
    if not rows["paths"]:
        raise ValueError("no clips to embed: every video of the source was rejected or skipped")
    order = torch.cat(rows["index"]).argsort(stable=True)
    tensors = {k: torch.cat(rows[k])[order] for k in _TENSORS}
    return Embeddings(**tensors, paths=[rows["paths"][k] for k in order.tolist()], classes=list(dataset.classes))


def embed_source(
    checkpoint: str | Path | AVModel,
    source: str | Path,
    *,
    clips_per_video: int = 1,
    batch_size: int = 16,
    num_workers: int = 2,
    device: str = "auto",
    show_progress: bool = True,
) -> Embeddings:
    """Embed every clip of `source` (folder, class folders, CSV or shards) with a checkpoint or a model."""
    if isinstance(checkpoint, AVModel):
        model, name = checkpoint, ""
    else:
        model, name = load_model(checkpoint, pick_device(device)).eval(), str(checkpoint)
    dataset = clip_dataset(model, source, clips_per_video=clips_per_video)
    embeddings = embed_dataset(model, dataset, batch_size=batch_size, num_workers=num_workers,
                               show_progress=show_progress)
    embeddings.checkpoint = name
    log.info("embedded %d clips of %s", len(embeddings), source)
    return embeddings
