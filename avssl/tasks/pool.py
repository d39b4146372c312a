"""The unlabeled pool `avssl select` chooses from, and what it writes: the manifest to label and a
contact sheet of the chosen clips.

A pool is one row per clip: features (what core-set measures distances on) and, when the checkpoint
is a classifier, class probabilities (what uncertainty and BADGE need). It comes from

- a fine-tuned classifier over a source of videos: the pooled features its head reads, and its
  probabilities (softmax, or sigmoid when multi-label);
- a pretrained model over a source of videos: its video and audio embeddings side by side (`avssl.
  tasks.embed`);
- an embeddings file written by `avssl embed` (no decoding at all: the way to a million clips).
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from avssl.data.datasets import open_dataset
from avssl.data.loader import build_loader
from avssl.data.manifest import read_source
from avssl.data.pipeline import input_pipeline
from avssl.models.av_model import AVModel
from avssl.models.classifier import AVClassifier
from avssl.models.factory import load
from avssl.tasks.embed import SUFFIXES, Embeddings, embed_source
from avssl.tasks.markup import join, markup, tag
from avssl.tasks.report import PageAssets, media_html, shown_path, table_html, write_page
from avssl.tasks.select import STRATEGIES, Measure, badge, k_center_greedy, random_choice, top_scores, uncertainty
from avssl.train.distributed import pick_device

log = logging.getLogger(__name__)

MODALITIES: tuple[str, ...] = ("av", "video", "audio")


@dataclass
class Pool:
    """One row per clip: where it comes from, its features and (classifier pools) its probabilities."""

    features: torch.Tensor  # (N, D) float32
    paths: list[str]
    clip_start: torch.Tensor  # (N,) seconds
    clip_end: torch.Tensor  # (N,) seconds
    probs: torch.Tensor | None = None  # (N, C): softmax, or sigmoid when multi_label
    classes: list[str] = field(default_factory=list)
    multi_label: bool = False

    def __len__(self) -> int:
        return len(self.paths)

    def rows_of(self, paths: Sequence[str]) -> torch.Tensor:
        """(N,) bool: the rows whose file is one of `paths` (compared as absolute paths)."""
        wanted = {os.path.abspath(p) for p in paths}
        return torch.tensor([os.path.abspath(p) in wanted for p in self.paths], dtype=torch.bool)

    def outside(self, paths: Sequence[str]) -> list[str]:
        """The files of `paths` none of whose clips is in the pool."""
        inside = {os.path.abspath(p) for p in self.paths}
        return [p for p in paths if os.path.abspath(p) not in inside]


def embeddings_pool(embeddings: Embeddings, modality: str = "av") -> Pool:
    """A pool from `avssl embed` output: the video embedding, the audio one (zeros for a clip without
    sound) or both side by side ("av")."""
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r}: choose one of {', '.join(MODALITIES)}")
    audio = embeddings.audio_emb * embeddings.has_audio[:, None].to(embeddings.audio_emb.dtype)
    parts = {"video": [embeddings.video_emb], "audio": [audio], "av": [embeddings.video_emb, audio]}[modality]
    return Pool(torch.cat(parts, dim=1).float(), list(embeddings.paths), embeddings.clip_start.double(),
                embeddings.clip_end.double(), classes=list(embeddings.classes))


@torch.no_grad()
def classifier_pool(classifier: AVClassifier, source: str | Path | Sequence[str | Path], *, clips_per_video: int = 1,
                    batch_size: int = 16, num_workers: int = 2, show_progress: bool = True) -> Pool:
    """A pool from a classifier over `source` (files, folders, CSV or shards): per clip ("constant"
    windows, evaluation view), the pooled features its head reads and its class probabilities."""
    device = next(classifier.parameters()).device
    classifier.eval()
    dataset = open_dataset(source, sampler="constant", clips_per_video=clips_per_video, train=False,
                           **input_pipeline(classifier.config).dataset_kwargs())
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, drop_last=False)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("features", "probs", "start", "end", "index")}
    paths: list[str] = []
    for batch in tqdm(loader, desc="scoring the pool", unit="batch", disable=not show_progress, dynamic_ncols=True):
        video = batch["video"].to(device) if classifier.mode != "audio" else None
        audio = batch["audio"].to(device) if classifier.mode != "video" else None
        features = classifier.features(video, audio).float()
        logits = classifier.forward_head(features).float()
        parts["features"].append(features.cpu())
        parts["probs"].append((logits.sigmoid() if classifier.multi_label else logits.softmax(dim=1)).cpu())
        parts["start"].append(torch.as_tensor(batch["clip_start"], dtype=torch.float64))
        parts["end"].append(torch.as_tensor(batch["clip_end"], dtype=torch.float64))
        parts["index"].append(torch.as_tensor(batch["index"]))
        paths.extend(batch["path"])
    if not paths:
        raise ValueError(f"{source}: no clips to score (every video was rejected or skipped)")
    order = torch.cat(parts["index"]).argsort(stable=True)
    cat = {k: torch.cat(v)[order] for k, v in parts.items()}
    return Pool(cat["features"], [paths[k] for k in order.tolist()], cat["start"], cat["end"], cat["probs"],
                list(classifier.classes), classifier.multi_label)


def is_embeddings_file(source: str | Path) -> bool:
    """Whether `source` names an `avssl embed` output (.pt / .safetensors) rather than videos."""
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix in SUFFIXES


def open_pool(source: str | Path, checkpoint: str | Path | AVModel | AVClassifier | None, *, modality: str = "av",
              clips_per_video: int = 1, batch_size: int = 16, num_workers: int = 2, device: str = "auto") -> Pool:
    """The pool of `source` (an embeddings file, or videos scored by `checkpoint`: a classifier or a
    pretrained model, a path or a loaded one)."""
    if is_embeddings_file(source):
        return embeddings_pool(Embeddings.load(source), modality)
    if checkpoint is None:
        raise ValueError(f"{source} holds videos: give a checkpoint (--checkpoint) to score them, "
                         "or an `avssl embed` file")
    model = load(checkpoint, pick_device(device)) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    options = dict(clips_per_video=clips_per_video, batch_size=batch_size, num_workers=num_workers)
    if isinstance(model, AVClassifier):
        return classifier_pool(model, source, **options)
    return embeddings_pool(embed_source(model, source, **options), modality)


@dataclass
class Selection:
    """The chosen rows of a pool, in the order the strategy picked them, with its score of each."""

    strategy: str
    indices: torch.Tensor  # (budget,) rows of the pool
    scores: torch.Tensor  # (budget,) float64


def select_clips(pool: Pool, strategy: str, budget: int, *, labelled: Sequence[str] = (),
                 labelled_features: torch.Tensor | None = None, measure: Measure = "entropy", seed: int = 0,
                 chunk_size: int | None = None) -> Selection:
    """Choose `budget` clips of `pool` by `strategy` (`avssl.tasks.select`). Clips of files in
    `labelled` are never chosen; core-set also starts from them and from `labelled_features` (labelled
    clips outside the pool, embedded the same way)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if strategy in ("uncertainty", "badge") and pool.probs is None:
        raise ValueError(f"strategy {strategy} needs a classifier's predictions: give a fine-tuned checkpoint "
                         "(avssl finetune) and videos, not a pretrained model or an embeddings file")
    exclude = pool.rows_of(labelled)
    chunk = {"chunk_size": chunk_size} if chunk_size else {}
    if strategy == "uncertainty":
        indices, scores = top_scores(uncertainty(pool.probs, measure, multi_label=pool.multi_label), budget,
                                     exclude=exclude)
    elif strategy == "coreset":
        indices, scores = k_center_greedy(pool.features, budget, labelled=labelled_features, exclude=exclude,
                                          seed=seed, **chunk)
    elif strategy == "badge":
        indices, scores = badge(pool.features, pool.probs, budget, multi_label=pool.multi_label, exclude=exclude,
                                seed=seed, **chunk)
    else:
        indices, scores = random_choice(len(pool), budget, exclude=exclude, seed=seed)
    return Selection(strategy, indices, scores)


def labelled_paths(source: str | Path) -> list[str]:
    """The files of a labelled source (folder, class folders or CSV manifest)."""
    return [entry.path for entry in read_source(source)]


def predicted(pool: Pool, row: int) -> str:
    """The classifier's label of a pool row ("" without predictions): the top class, or, multi-label,
    every class above 0.5 (`;`-separated)."""
    if pool.probs is None or not pool.classes:
        return ""
    probs = pool.probs[row]
    if pool.multi_label:
        return ";".join(pool.classes[k] for k in (probs > 0.5).nonzero().flatten().tolist())
    return pool.classes[int(probs.argmax())]


def write_selection(pool: Pool, selection: Selection, out: str | Path) -> Path:
    """The manifest to label: an avssl CSV (`path`, an empty `label` to fill in, `start`, `end`) with
    the pick's `rank`, the strategy's `score` and the classifier's `predicted` label (other columns
    are ignored by manifest readers), paths absolute."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "start", "end", "rank", "score", "predicted"])
        for rank, (row, score) in enumerate(zip(selection.indices.tolist(), selection.scores.tolist()), 1):
            writer.writerow([os.path.abspath(pool.paths[row]), "", repr(float(pool.clip_start[row])),
                             repr(float(pool.clip_end[row])), rank, f"{score:.6g}", predicted(pool, row)])
    return out


def contact_sheet(pool: Pool, selection: Selection, out: str | Path, *, limit: int = 200, title: str = "") -> Path:
    """An HTML page of the first `limit` chosen clips: rank, score, clip, predicted label and its
    middle frame with an audio player (`avssl.tasks.report`)."""
    assets = PageAssets(out)
    rows = []
    for rank, (row, score) in enumerate(zip(selection.indices.tolist()[:limit], selection.scores.tolist()), 1):
        start, end = float(pool.clip_start[row]), float(pool.clip_end[row])
        image, audio = assets.clip(pool.paths[row], start, end)
        where = f"{shown_path(pool.paths[row], assets.html_path.parent)} [{start:.2f}–{end:.2f} s]"
        rows.append([rank, float(score), where, predicted(pool, row), media_html(image, audio)])
    shown = "" if len(selection.indices) <= limit else f" (the first {limit} shown)"
    body = join([
        markup("<p>{} clips chosen by <code>{}</code> out of {} in the pool{}. {}</p>", len(selection.indices),
               selection.strategy, len(pool), shown, title),
        table_html(["rank", "score", "clip", "predicted", "frame and sound"], rows),
        tag("p", "score: uncertainty, the entropy or margin score (higher: less sure); coreset, the distance to "
            "the nearest clip labelled or chosen before; badge, the gradient embedding's distance (first: its "
            "norm); random, the draw key.", class_="muted"),
    ])
    return write_page(out, "avssl select: clips to label", body)
