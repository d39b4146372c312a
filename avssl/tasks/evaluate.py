"""Cross-modal retrieval evaluation of a checkpoint over a source (`avssl evaluate retrieval`).

Every clip is a query and every clip a candidate, in both directions: its own sound is
the one right answer for its frames (video->audio) and the other way round
(audio->video). Ranks come from `avssl.tasks.metrics` (batched matrix products, ties
counted against the query), so tens of thousands of clips take seconds on a CPU.
Clips without sound are left out of both directions.

Published figures are measured on subsets (CAV-MAE: 5 clips per class of the AudioSet eval and
VGGSound test sets); `evaluate_retrieval(..., per_class=N, seed=S)` draws such a subset
reproducibly (`avssl.tasks.protocol`) so that numbers can be set beside them.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from avssl.data.manifest import write_manifest
from avssl.tasks.embed import Embeddings, embed_source
from avssl.tasks.metrics import retrieval_summary, score_chunks
from avssl.tasks.protocol import draw_protocol_subset

log = logging.getLogger(__name__)

KS = (1, 5, 10)


def same_class_at_1(queries: torch.Tensor, candidates: torch.Tensor, labels: torch.Tensor) -> float:
    """Percent of queries whose top-scoring candidate has the query's label (single-label only):
    a looser reading than instance R@1 when a class's clips look and sound alike."""
    top = torch.cat([scores.argmax(dim=1) for _, scores in score_chunks(queries, candidates)])
    return float((labels[top] == labels).double().mean() * 100)


def retrieval_metrics(embeddings: Embeddings, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """R@k, median and mean rank in both directions over the clips with sound, plus the clip
    count, chance-level R@1 and, for labelled single-label data, same-class precision at 1."""
    keep = embeddings.has_audio.bool()
    count = int(keep.sum())
    if count == 0:
        raise ValueError("retrieval needs clips with sound: none of the embedded clips has an audio stream")
    video, audio = embeddings.video_emb[keep], embeddings.audio_emb[keep]
    metrics = retrieval_summary(video, audio, ks)
    metrics["num_clips"] = float(count)
    metrics["num_silent_clips"] = float(len(embeddings) - count)
    labels = embeddings.labels[keep]
    if labels.ndim == 1 and bool((labels >= 0).all()) and embeddings.classes:
        metrics["v2a_class_P@1"] = same_class_at_1(video, audio, labels)
        metrics["a2v_class_P@1"] = same_class_at_1(audio, video, labels)
    return metrics


def evaluate_retrieval(checkpoint: Any, source: str | Path, *, per_class: int | None = None, seed: int = 0,
                       subset_csv: str | Path | None = None, **embed_kwargs: Any) -> dict[str, Any]:
    """Embed `source` with a checkpoint (or model) and evaluate retrieval on it; `embed_kwargs`
    go to `embed_source` (clips_per_video, batch_size, num_workers, device, show_progress).

    per_class: evaluate on the protocol subset instead of every clip: `per_class` clips of each
    class drawn with `seed` (`avssl.tasks.protocol`; CAV-MAE used 5 per class of the AudioSet
    eval and VGGSound test sets). The metrics then hold a "protocol" entry (N, seed, number of
    clips and classes, clips set aside), and `subset_csv` (optional) receives the drawn clips
    as a manifest, to share or to evaluate other models on exactly the same clips.
    """
    if per_class is None:
        return _retrieval_of(embed_source(checkpoint, source, **embed_kwargs))
    subset = draw_protocol_subset(source, per_class, seed)
    with tempfile.TemporaryDirectory(prefix="avssl-subset-") as folder:
        csv_path = Path(subset_csv) if subset_csv is not None else Path(folder) / "subset.csv"
        write_manifest(subset.entries, csv_path)
        embeddings = embed_source(checkpoint, csv_path, **embed_kwargs)
    return {**_retrieval_of(embeddings), "protocol": subset.record()}


def _retrieval_of(embeddings: Embeddings) -> dict[str, Any]:
    metrics = retrieval_metrics(embeddings)
    log.info("retrieval on %d clips: v2a R@1 %.2f, a2v R@1 %.2f (chance %.2f)", metrics["num_clips"],
             metrics["v2a_R@1"], metrics["a2v_R@1"], metrics["chance_R@1"])
    return metrics


def write_json(payload: dict[str, Any], path: str | Path) -> Path:
    """Results as indented JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path
