"""Alignment objectives besides InfoNCE: redundancy reduction (Barlow Twins, VICReg) and clustering with
swapped assignments (SwAV), each a small loss module over the two towers' projections, and
`make_alignment`, which picks the one a model config names (`model.alignment`).

InfoNCE (`avssl.losses.ContrastiveLoss`) needs many negatives and can sit collapsed at ln(B); these
need none, and avoid collapse otherwise:

- Barlow Twins (Zbontar et al., ICML 2021): the cross-correlation matrix of the two views'
  batch-standardised projections is pushed to the identity (invariance on the diagonal, redundancy
  reduction off it, weighted lambda = 5e-3). Its projector ends in batch norm: the loss standardises
  each dimension over the batch (BatchNorm without affine parameters), and the model's projector for
  it is Linear-BN-ReLU-Linear (`avssl.models.av_model`).
- VICReg (Bardes et al., ICLR 2022): invariance (mean squared distance of the pairs) + variance (a hinge
  keeping every dimension's standard deviation above 1) + covariance (off-diagonal covariances pushed
  to 0), weighted 25 / 25 / 1.
- SwAV (Caron et al., NeurIPS 2020), across modalities as in XDC (Alwassel et al., NeurIPS 2020):
  each tower's L2-normalised projection is scored against learnable prototypes; Sinkhorn-Knopp (3
  iterations, epsilon 0.05) turns one tower's scores into balanced soft codes, which the other tower
  predicts (softmax at temperature 0.1), both ways ("swapped prediction"). The paper's 3000
  prototypes fill a 4096-clip batch. Small batches want fewer (`model.swav_prototypes`) and, as the
  paper does below 4096, a queue (`model.swav_queue`): the embeddings of the last Q clips, scored
  against the current prototypes, join the batch in Sinkhorn, so that the codes are balanced over
  Q + B clips instead of a handful. The queue is a buffer: checkpoints keep it, and resuming
  continues with it.

Under torch.distributed (training mode, world size > 1) the statistics these methods take over the
batch are taken over the global batch, as the papers do: Barlow's cross-correlation and VICReg's
variances and covariances from features gathered with gradients (`avssl.losses.gather_with_grad`),
SwAV's Sinkhorn from every rank's scores. Each rank's gradient is then the single-process gradient
times the world size, which DDP's averaging divides away, as with `ContrastiveLoss`.

Every loss takes (video_z, audio_z, valid): (B, P) projections, row i of each a pair, and an optional
(B,) bool mask that leaves rows out (clips without sound). `unit_inputs` says whether it wants the
L2-normalised embeddings (SwAV, InfoNCE) or the raw projector outputs (Barlow, VICReg, whose variance
terms have a scale). `chance_level(batch)` is the loss when the scores carry no information (SwAV:
ln K), or None where no such level exists (Barlow, VICReg), for the collapse monitor.

Example:
    >>> loss_fn = BarlowTwinsLoss()
    >>> loss = loss_fn(torch.randn(32, 64), torch.randn(32, 64))   # a scalar
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from avssl.losses import ContrastiveLoss, all_gather, distributed, gather_with_grad

ALIGNMENTS = ("infonce", "barlow", "vicreg", "swav")
BN_EPS = 1e-5  # torch's BatchNorm1d default, what Barlow Twins' affine-free batch norm uses
VICREG_EPS = 1e-4  # inside VICReg's square root of the variance


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square (D, D) matrix, flattened: D * (D - 1) values."""
    return matrix[~torch.eye(matrix.shape[0], dtype=torch.bool, device=matrix.device)]


def _global_pairs(video_z: torch.Tensor, audio_z: torch.Tensor, valid: torch.Tensor | None, training: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid pairs of the global batch in float32: every rank's rows gathered with gradients when
    training under torch.distributed, else this process's own."""
    video_z, audio_z = video_z.float(), audio_z.float()
    if valid is None:
        valid = torch.ones(video_z.shape[0], dtype=torch.bool, device=video_z.device)
    if training and distributed():
        video_z, audio_z = gather_with_grad(video_z), gather_with_grad(audio_z)
        valid = all_gather(valid.to(torch.uint8))
    valid = valid.bool()
    return video_z[valid], audio_z[valid]


def _no_pairs(video_z: torch.Tensor, audio_z: torch.Tensor) -> torch.Tensor:
    """0 with a graph: the loss of a batch with fewer than two pairs, which has no statistics."""
    return (video_z.sum() + audio_z.sum()) * 0.0


def barlow_twins(video_z: torch.Tensor, audio_z: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    """Barlow Twins' loss of the pairs (N, D), N >= 2: each dimension standardised over the batch (biased
    variance, as batch norm), C = video_n.T @ audio_n / N, loss = sum_i (1 - C_ii)^2 + lambd *
    sum_{i != j} C_ij^2."""
    video_n = F.batch_norm(video_z, None, None, training=True, eps=BN_EPS)
    audio_n = F.batch_norm(audio_z, None, None, training=True, eps=BN_EPS)
    correlation = video_n.T @ audio_n / video_z.shape[0]
    return (1 - correlation.diagonal()).pow(2).sum() + lambd * _off_diagonal(correlation).pow(2).sum()


def vicreg(video_z: torch.Tensor, audio_z: torch.Tensor, invariance: float = 25.0, variance: float = 25.0,
           covariance: float = 1.0) -> torch.Tensor:
    """VICReg's loss of the pairs (N, D), N >= 2: invariance * mean squared difference + variance * the
    mean over both towers and dimensions of relu(1 - sqrt(var + 1e-4)) / 2 + covariance * the sum over
    both towers of the squared off-diagonal covariances / D (unbiased variances and covariances)."""
    loss_inv = F.mse_loss(video_z, audio_z)
    loss_var = loss_cov = video_z.new_zeros(())
    for z in (video_z, audio_z):
        centred = z - z.mean(dim=0)
        std = torch.sqrt(centred.var(dim=0) + VICREG_EPS)
        loss_var = loss_var + F.relu(1 - std).mean() / 2
        cov = centred.T @ centred / (z.shape[0] - 1)
        loss_cov = loss_cov + _off_diagonal(cov).pow(2).sum() / z.shape[1]
    return invariance * loss_inv + variance * loss_var + covariance * loss_cov


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's balanced soft codes of scores (N, K): exp(scores / epsilon) alternately normalised so that
    the prototypes share the N rows equally and each row sums to 1, `iterations` times; (N, K)."""
    codes = torch.exp((scores.float() - scores.max()) / epsilon).T  # (K, N); the max cancels out
    codes /= codes.sum()
    prototypes, rows = codes.shape
    for _ in range(iterations):
        codes /= codes.sum(dim=1, keepdim=True) * prototypes
        codes /= codes.sum(dim=0, keepdim=True) * rows
    return (codes * rows).T


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins (`barlow_twins`) over the global batch; lambd: the off-diagonal weight (paper: 5e-3)."""

    unit_inputs = False

    def __init__(self, lambd: float = 5e-3) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, video_z: torch.Tensor, audio_z: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """video_z, audio_z: (B, D) raw projections; valid: (B,) bool, False rows left out."""
        video_all, audio_all = _global_pairs(video_z, audio_z, valid, self.training)
        if video_all.shape[0] < 2:
            return _no_pairs(video_z, audio_z)
        return barlow_twins(video_all, audio_all, self.lambd)

    def chance_level(self, batch: int) -> float | None:
        """None: the loss has no level that means "no information" (the spread warnings apply)."""
        return None


class VICRegLoss(nn.Module):
    """VICReg (`vicreg`) over the global batch, with the paper's weights 25 / 25 / 1 by default."""

    unit_inputs = False

    def __init__(self, invariance: float = 25.0, variance: float = 25.0, covariance: float = 1.0) -> None:
        super().__init__()
        self.weights = (invariance, variance, covariance)

    def forward(self, video_z: torch.Tensor, audio_z: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """video_z, audio_z: (B, D) raw projections; valid: (B,) bool, False rows left out."""
        video_all, audio_all = _global_pairs(video_z, audio_z, valid, self.training)
        if video_all.shape[0] < 2:
            return _no_pairs(video_z, audio_z)
        return vicreg(video_all, audio_all, *self.weights)

    def chance_level(self, batch: int) -> float | None:
        """None: the loss has no level that means "no information" (the spread warnings apply)."""
        return None


class SwAVLoss(nn.Module):
    """SwAV's swapped prediction between the two modalities, with `num_prototypes` learnable prototypes
    of width `dim` (L2-normalised at every use, as the paper renormalises them after each step).

    Codes come from Sinkhorn over the global batch's scores (no gradient), joined by the scores of
    the `queue_length` most recent clips' embeddings when a queue is kept (their codes are not used);
    each rank's loss is over its own rows:
    -(sum q_audio * log softmax(p_video / t) + sum q_video * log softmax(p_audio / t)) / 2, averaged
    over valid rows. Training steps then push the global batch's valid embeddings into the queue.
    """

    unit_inputs = True

    def __init__(self, dim: int, num_prototypes: int = 3000, temperature: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, queue_length: int = 0) -> None:
        super().__init__()
        self.prototypes = nn.Linear(dim, num_prototypes, bias=False)
        self.temperature, self.epsilon, self.iterations = temperature, epsilon, sinkhorn_iterations
        self.queue_length = queue_length
        if queue_length:
            # newest first: queue[m, :queued] holds modality m's (video 0, audio 1) latest embeddings
            self.register_buffer("queue", torch.zeros(2, queue_length, dim))
            self.register_buffer("queued", torch.zeros((), dtype=torch.long))

    def _codes(self, scores: torch.Tensor, valid: torch.Tensor, queued: torch.Tensor) -> torch.Tensor:
        """Sinkhorn codes (B, K) of this rank's rows, balanced over the valid rows of the global batch and
        the queued scores (Q, K) (invalid rows get zeros)."""
        codes = torch.zeros_like(scores, dtype=torch.float32)
        if self.training and distributed():
            rows = scores.shape[0]
            everyone, everyone_valid = all_gather(scores.detach()), all_gather(valid.to(torch.uint8)).bool()
            mine = torch.zeros_like(everyone_valid)
            mine[dist.get_rank() * rows:(dist.get_rank() + 1) * rows] = True
            if everyone_valid.any():
                batch = everyone[everyone_valid]
                balanced = sinkhorn(torch.cat([batch, queued]), self.epsilon, self.iterations)[:len(batch)]
                codes[valid] = balanced[mine[everyone_valid]]
        elif valid.any():
            batch = scores.detach()[valid]
            codes[valid] = sinkhorn(torch.cat([batch, queued]), self.epsilon, self.iterations)[:len(batch)]
        return codes

    @torch.no_grad()
    def _enqueue(self, embeddings: list[torch.Tensor], valid: torch.Tensor) -> None:
        """Push the global batch's valid (video, audio) embeddings to the front of the queue."""
        if self.training and distributed():
            embeddings, valid = [all_gather(e) for e in embeddings], all_gather(valid.to(torch.uint8)).bool()
        new = torch.stack([e[valid] for e in embeddings]).to(self.queue.dtype)[:, :self.queue_length]
        self.queue.copy_(torch.cat([new, self.queue[:, :self.queue_length - new.shape[1]]], dim=1))
        self.queued.copy_((self.queued + new.shape[1]).clamp_max(self.queue_length))

    def forward(self, video_emb: torch.Tensor, audio_emb: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """video_emb, audio_emb: (B, D) L2-normalised embeddings; valid: (B,) bool, False rows left out."""
        valid = torch.ones(video_emb.shape[0], dtype=torch.bool, device=video_emb.device) if valid is None \
            else valid.bool()
        prototypes = F.normalize(self.prototypes.weight.float(), dim=-1)
        units = {name: F.normalize(z.float(), dim=-1) for name, z in (("video", video_emb), ("audio", audio_emb))}
        scores = {name: unit @ prototypes.T for name, unit in units.items()}
        queued = [(self.queue[m, :self.queued] @ prototypes.T).detach() if self.queue_length
                  else scores[name].new_zeros(0, prototypes.shape[0]) for m, name in enumerate(units)]
        codes = {name: self._codes(scores[name], valid, q) for name, q in zip(units, queued)}
        log_p = {name: F.log_softmax(s / self.temperature, dim=-1) for name, s in scores.items()}
        per_row = -((codes["audio"] * log_p["video"]).sum(dim=-1) + (codes["video"] * log_p["audio"]).sum(dim=-1)) / 2
        if self.queue_length and self.training:
            self._enqueue([units["video"].detach(), units["audio"].detach()], valid)
        return torch.where(valid, per_row, 0.0).sum() / valid.sum().clamp_min(1)

    def chance_level(self, batch: int) -> float | None:
        """ln K: the cross-entropy of any codes against predictions that carry no information (uniform)."""
        return math.log(self.prototypes.out_features)


def make_alignment(config: object) -> nn.Module:
    """The alignment loss a model config names (`config.alignment`, one of ALIGNMENTS) with its options:
    InfoNCE's temperature, directions and gather, SwAV's prototypes (over `config.proj_dim`) and queue."""
    name = config.alignment
    if name == "infonce":
        return ContrastiveLoss(config.temperature, config.learnable_temperature,
                               directions=config.contrastive_directions, gather=config.contrastive_gather)
    if name == "barlow":
        return BarlowTwinsLoss()
    if name == "vicreg":
        return VICRegLoss()
    if name == "swav":
        return SwAVLoss(config.proj_dim, config.swav_prototypes, queue_length=config.swav_queue)
    raise ValueError(f"unknown alignment {name!r}; choose one of {', '.join(ALIGNMENTS)}")
