"""Which unlabeled clips to label next: active-learning strategies over a pool's features and predictions.

Four strategies, each `select(...)`-able from a `Pool` (`avssl.tasks.pool`):

- "uncertainty": the clips a classifier is least sure of, by entropy or by margin (top-two
  probability gap; multi-label: the class closest to 0.5);
- "coreset": greedy k-center on the features (Sener & Savarese, ICLR 2018), starting from the
  labelled clips: each pick is the clip farthest from every clip chosen or labelled so far;
- "badge": k-means++ seeding on gradient embeddings of the classifier's last layer (Ash et al., ICLR
  2020), so picks are both uncertain (large gradients) and diverse;
- "random": a seeded uniform draw, the baseline every strategy has to beat.

Everything is deterministic for a seed and works on a million clips: distances are computed in
chunks of `chunk_size` rows, never as an N x N matrix; k-center and k-means++ keep one vector of
each clip's squared distance to its nearest centre, updated once per pick. BADGE's gradient
embedding of clip i is the outer product of (p_i - y_i) (C) and its features h_i (D); it is never
built: <a_i x h_i, a_j x h_j> = <a_i, a_j> <h_i, h_j>.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch

STRATEGIES: tuple[str, ...] = ("uncertainty", "coreset", "badge", "random")
MEASURES: tuple[str, ...] = ("entropy", "margin")
CHUNK_SIZE = 8192  # rows per block of a distance computation: a block is chunk_size x chunk_size floats

Measure = Literal["entropy", "margin"]


@dataclass
class Points:
    """Vectors to choose among. Row i is `h[i]`, or, when `a` is given, the outer product a[i] x h[i]
    (flattened, C x D) without ever being built (BADGE's gradient embeddings)."""

    h: torch.Tensor  # (N, D)
    a: torch.Tensor | None = None  # (N, C)

    def __len__(self) -> int:
        return self.h.shape[0]

    def rows(self, index: torch.Tensor | slice) -> "Points":
        """The points at `index`."""
        return Points(self.h[index], None if self.a is None else self.a[index])

    def sq_norms(self) -> torch.Tensor:
        """(N,) squared norms."""
        norms = self.h.double().square().sum(dim=1)
        return norms if self.a is None else norms * self.a.double().square().sum(dim=1)

    def dots(self, other: "Points") -> torch.Tensor:
        """(len(self), len(other)) inner products."""
        products = self.h.double() @ other.h.double().T
        return products if self.a is None else products * (self.a.double() @ other.a.double().T)


def nearest_sq_distances(points: Points, centers: Points, chunk_size: int = CHUNK_SIZE) -> torch.Tensor:
    """(N,) squared Euclidean distance of each point to its nearest centre (+inf without centres),
    computed in blocks of at most chunk_size x chunk_size."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    nearest = torch.full((len(points),), math.inf, dtype=torch.float64)
    if not len(centers):
        return nearest
    center_norms = centers.sq_norms()
    for i in range(0, len(points), chunk_size):
        block = points.rows(slice(i, i + chunk_size))
        norms = block.sq_norms()
        for j in range(0, len(centers), chunk_size):
            part = centers.rows(slice(j, j + chunk_size))
            sq = norms[:, None] + center_norms[None, j:j + chunk_size] - 2 * block.dots(part)
            nearest[i:i + chunk_size] = torch.minimum(nearest[i:i + chunk_size], sq.clamp(min=0).min(dim=1).values)
    return nearest


Chooser = Callable[[torch.Tensor, torch.Tensor], int]  # (nearest squared distances, available) -> index


def _greedy_centers(points: Points, budget: int, nearest: torch.Tensor, available: torch.Tensor, choose: Chooser,
                    chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`budget` picks, each by `choose` from the distances to the centres so far, which then gains
    the pick. Returns (indices, each pick's squared distance to the centres before it)."""
    picked, scores = [], []
    nearest, available = nearest.clone(), available.clone()
    for _ in range(budget):
        index = choose(nearest, available)
        picked.append(index)
        scores.append(float(nearest[index]))
        available[index] = False
        nearest = torch.minimum(nearest, nearest_sq_distances(points, points.rows(slice(index, index + 1)),
                                                              chunk_size))
    return torch.tensor(picked, dtype=torch.int64), torch.tensor(scores, dtype=torch.float64)


def _farthest(nearest: torch.Tensor, available: torch.Tensor) -> int:
    """The available point farthest from every centre (ties: the lowest index)."""
    return int(torch.where(available, nearest, -1.0).argmax())


def k_center_greedy(features: torch.Tensor, budget: int, *, labelled: torch.Tensor | None = None,
                    exclude: torch.Tensor | None = None, seed: int = 0,
                    chunk_size: int = CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Core-set selection: `budget` rows of `features` (N, D), each the one farthest from the
    centres so far, which start as the `labelled` clips' features (L, D) and the pool rows marked
    in `exclude` (N,) bool (clips of the pool already labelled; never picked). Without any centre
    the first pick is a seeded random row (its distance: inf). Returns (indices, the Euclidean
    distance of each pick to its nearest centre when it was picked)."""
    points = Points(features)
    available = _available(len(points), exclude, budget)
    centers = [features[~available]] + ([labelled.to(features.dtype)] if labelled is not None else [])
    nearest = nearest_sq_distances(points, Points(torch.cat(centers)), chunk_size)
    first: list[int] = []
    if budget and not torch.isfinite(nearest).any():  # no centre: a seeded first pick
        first = _seeded_order(available, seed)[:1]
        available = available.clone()
        available[first[0]] = False
        nearest = nearest_sq_distances(points, points.rows(slice(first[0], first[0] + 1)), chunk_size)
    indices, scores = _greedy_centers(points, budget - len(first), nearest, available, _farthest, chunk_size)
    return (torch.cat([torch.tensor(first, dtype=torch.int64), indices]),
            torch.cat([torch.full((len(first),), math.inf, dtype=torch.float64), scores.sqrt()]))


def gradient_factors(probs: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """(N, C) gradient of the loss with respect to the logits at the predicted label: p - onehot(argmax
    p) for softmax cross-entropy, p - [p > 0.5] for per-class sigmoid BCE. Its outer product with the
    features is the gradient of the last layer's weights (BADGE's gradient embedding)."""
    if multi_label:
        return probs - (probs > 0.5).to(probs.dtype)
    return probs - torch.nn.functional.one_hot(probs.argmax(dim=1), probs.shape[1]).to(probs.dtype)


def badge(features: torch.Tensor, probs: torch.Tensor, budget: int, *, multi_label: bool = False,
          exclude: torch.Tensor | None = None, seed: int = 0,
          chunk_size: int = CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """BADGE: k-means++ seeding on the gradient embeddings (`gradient_factors` x `features`): the first
    pick is the largest gradient, each next one drawn with probability proportional to its squared
    distance to the picks so far (a seeded generator). `exclude` (N,) bool: rows never picked.
    Returns (indices, each pick's gradient-embedding norm (first) or distance when drawn)."""
    points = Points(features, gradient_factors(probs.float(), multi_label))
    available = _available(len(points), exclude, budget)
    generator = torch.Generator().manual_seed(seed)

    def draw(nearest: torch.Tensor, free: torch.Tensor) -> int:
        weights = torch.where(free, nearest, 0.0)
        if not torch.isfinite(weights).all():  # the first pick: no centre yet, the largest gradient
            return int(torch.where(free, points.sq_norms(), -1.0).argmax())
        if float(weights.sum()) <= 0:  # only copies of the picks are left
            return int(free.nonzero()[0])
        return int(torch.multinomial(weights, 1, generator=generator))

    nearest = torch.full((len(points),), math.inf, dtype=torch.float64)
    indices, scores = _greedy_centers(points, budget, nearest, available, draw, chunk_size)
    scores[0] = float(points.rows(indices[:1]).sq_norms()[0]) if budget else 0.0
    return indices, scores.sqrt()


def uncertainty(probs: torch.Tensor, measure: Measure = "entropy", *, multi_label: bool = False) -> torch.Tensor:
    """(N,) how unsure a classifier is of each clip, higher is less sure. "entropy": of the softmax,
    or the sum of each class's binary entropy when multi-label; "margin": 1 - (top probability -
    second), or, multi-label, 1 - 2 |p - 0.5| of the class closest to the decision boundary."""
    p = probs.double().clamp(1e-12, 1 - 1e-12)
    if measure == "entropy":
        if multi_label:
            return -(p * p.log() + (1 - p) * (1 - p).log()).sum(dim=1)
        return -(p * p.log()).sum(dim=1)
    if measure == "margin":
        if multi_label:
            return 1 - 2 * (p - 0.5).abs().min(dim=1).values
        if p.shape[1] < 2:
            raise ValueError("margin needs at least two classes")
        top = p.topk(2, dim=1).values
        return 1 - (top[:, 0] - top[:, 1])
    raise ValueError(f"uncertainty measure {measure!r}: choose one of {', '.join(MEASURES)}")


def top_scores(scores: torch.Tensor, budget: int, *, exclude: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The `budget` highest `scores` (ties: the lowest index first), skipping `exclude`d rows:
    (indices, their scores)."""
    available = _available(len(scores), exclude, budget)
    masked = torch.where(available, scores.double(), -math.inf)
    indices = torch.sort(masked, descending=True, stable=True).indices[:budget]
    return indices, masked[indices]


def random_choice(num_rows: int, budget: int, *, exclude: torch.Tensor | None = None,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`budget` rows drawn uniformly without replacement by a seeded generator: (indices, their
    draw keys in [0, 1), the order they were drawn in)."""
    available = _available(num_rows, exclude, budget)
    keys = torch.rand(num_rows, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    masked = torch.where(available, keys, math.inf)
    order = torch.sort(masked, stable=True).indices[:budget]
    return order, masked[order]


def _seeded_order(available: torch.Tensor, seed: int) -> list[int]:
    """The available rows in a seeded random order."""
    return random_choice(len(available), int(available.sum()), exclude=~available, seed=seed)[0].tolist()


def _available(num_rows: int, exclude: torch.Tensor | None, budget: int) -> torch.Tensor:
    """(N,) bool of the rows a strategy may pick; an error when fewer than `budget` are left."""
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    available = torch.ones(num_rows, dtype=torch.bool) if exclude is None else ~exclude.bool()
    left = int(available.sum())
    if budget > left:
        raise ValueError(f"budget {budget} is more than the {left} unlabeled clips of the pool")
    return available
