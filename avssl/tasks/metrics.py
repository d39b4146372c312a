"""Retrieval metrics computed with batched matrix products (no Python loop over pairs)."""
from __future__ import annotations

from collections.abc import Iterator

import torch


def score_chunks(
    queries: torch.Tensor, candidates: torch.Tensor, chunk: int = 2048
) -> Iterator[tuple[int, torch.Tensor]]:
    """(begin, dot-product scores of queries[begin : begin + chunk] against every candidate), `chunk`
    queries at a time, so tens of thousands of clips fit in memory on a CPU (float32)."""
    candidates = candidates.float()
    for begin in range(0, queries.shape[0], chunk):
        yield begin, queries[begin : begin + chunk].float() @ candidates.T


def retrieval_ranks(
    queries: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor | None = None, chunk: int = 2048
) -> torch.Tensor:
    """1-based rank of each query's true candidate among all candidates, by dot-product score.

    queries: (Nq, D), candidates: (Nc, D); targets: (Nq,) index of the true candidate of each
    query (default: query i matches candidate i). Ties count against the query (pessimistic),
    so a constant embedding cannot score well. Work is done `chunk` queries at a time, so tens of
    thousands of clips fit in memory on a CPU.
    """
    if targets is None:
        if queries.shape[0] != candidates.shape[0]:
            raise ValueError("without targets, queries and candidates must pair up one to one")
        targets = torch.arange(queries.shape[0])
    ranks = torch.empty(queries.shape[0], dtype=torch.long)
    for begin, scores in score_chunks(queries, candidates, chunk):
        rows = torch.arange(scores.shape[0])
        true_scores = scores[rows, targets[begin : begin + chunk]]
        better = (scores >= true_scores[:, None]).sum(dim=1)  # includes the true candidate itself
        ranks[begin : begin + chunk] = better
    return ranks


def recall_metrics(ranks: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10), prefix: str = "") -> dict[str, float]:
    """R@k (percent) and median / mean rank from 1-based ranks.

    The median of an even count is the mean of the two middle ranks (numpy's convention, which
    CAV-MAE's evaluation uses): 2.5 for [1, 2, 3, 4], where torch.median would give the lower 2."""
    ranks = ranks.double()
    out = {f"{prefix}R@{k}": float((ranks <= k).double().mean() * 100) for k in ks}
    out[f"{prefix}median_rank"] = float(ranks.quantile(0.5))  # linear: the middle pair's mean
    out[f"{prefix}mean_rank"] = float(ranks.mean())
    return out


def cross_modal_retrieval(
    video_emb: torch.Tensor, audio_emb: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """Both directions: video->audio (`v2a_*`) and audio->video (`a2v_*`); row i of each is one clip."""
    metrics = recall_metrics(retrieval_ranks(video_emb, audio_emb), ks, prefix="v2a_")
    metrics.update(recall_metrics(retrieval_ranks(audio_emb, video_emb), ks, prefix="a2v_"))
    return metrics


def retrieval_summary(
    video_emb: torch.Tensor, audio_emb: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """`cross_modal_retrieval` plus the two figures every report of it shows: `mean_R@1`, the mean of
    both directions' R@1, and `chance_R@1`, what random embeddings would score (100 / clips)."""
    metrics = cross_modal_retrieval(video_emb, audio_emb, ks)
    metrics["mean_R@1"] = (metrics["v2a_R@1"] + metrics["a2v_R@1"]) / 2
    metrics["chance_R@1"] = 100.0 / len(video_emb)
    return metrics
