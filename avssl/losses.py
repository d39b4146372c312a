"""Pretraining objectives: cross-modal InfoNCE (by default symmetric, with negatives from every rank;
CAV-MAE's one-direction, per-replica loss as options) and the MAE loss.

Example:
    >>> loss_fn = ContrastiveLoss(temperature=0.05)
    >>> video = torch.nn.functional.normalize(torch.randn(8, 64), dim=-1)
    >>> audio = torch.nn.functional.normalize(torch.randn(8, 64), dim=-1)
    >>> loss = loss_fn(video, audio)        # symmetric InfoNCE, a scalar
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

_EXCLUDED = -1e9  # logit of a candidate left out; finite so an all-excluded row stays NaN-free


DIRECTIONS = ("symmetric", "video_to_audio")
GATHER = ("global", "local")


def _symmetric_nce(video_rows: torch.Tensor, audio_rows: torch.Tensor, video_all: torch.Tensor,
                   audio_all: torch.Tensor, offset: int, valid_rows: torch.Tensor | None,
                   valid_all: torch.Tensor | None, logit_scale: torch.Tensor | float,
                   directions: str = "symmetric") -> torch.Tensor:
    """InfoNCE of the pairs `*_rows` (row i pairs with candidate offset + i) against every pair in
    `*_all`, averaged over valid rows and over both directions (video->audio, audio->video), or only
    video->audio (each video picks its sound among the candidates' sounds: CAV-MAE's default, its
    `log_softmax(audio @ video.T, dim=0)`) when `directions` is "video_to_audio"."""
    video_rows, audio_rows = video_rows.float(), audio_rows.float()
    video_all, audio_all = video_all.float(), audio_all.float()
    labels = torch.arange(video_rows.shape[0], device=video_rows.device) + offset
    pairs = [(video_rows, audio_all)] + ([(audio_rows, video_all)] if directions == "symmetric" else [])
    losses = []
    for queries, candidates in pairs:
        logits = logit_scale * queries @ candidates.T
        if valid_all is not None:
            logits = logits.masked_fill(~valid_all[None, :], _EXCLUDED)
        losses.append(F.cross_entropy(logits, labels, reduction="none"))
    per_row = sum(losses) / len(losses)
    if valid_rows is None:
        return per_row.mean()
    return torch.where(valid_rows, per_row, 0.0).sum() / valid_rows.sum().clamp_min(1)


def info_nce(video_emb: torch.Tensor, audio_emb: torch.Tensor, temperature: float = 0.05,
             valid: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's loss) between paired embeddings.

    video_emb, audio_emb: (B, D), L2-normalised; row i of each is a positive pair, every other row a
    negative. The loss is the mean of cross-entropy(video_i -> audios) and cross-entropy(audio_i ->
    videos) over rows. `valid` (B,) bool leaves pairs out entirely (clips without an audio track): the
    result equals `info_nce` on the valid rows alone.
    """
    valid = None if valid is None else valid.bool()
    return _symmetric_nce(video_emb, audio_emb, video_emb, audio_emb, 0, valid, valid, 1.0 / temperature)


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) on each rank -> (world * B, ...) in rank order, without gradients."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums the gradient of the gathered tensor over ranks and hands each
    rank the slice of its own rows (plain collectives, so it runs on gloo and NCCL alike)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = x.shape[0]
        return all_gather(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) on each rank -> (world * B, ...) in rank order, with gradients flowing back to every
    rank's rows. Requires equal B on all ranks."""
    return _GatherWithGrad.apply(x)


def distributed() -> bool:
    """True under torch.distributed with more than one process: when losses gather over ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class ContrastiveLoss(nn.Module):
    """InfoNCE (symmetric by default) whose negatives come from the whole global batch (by default).

    Under torch.distributed (world size > 1, training mode) each rank gathers every rank's embeddings
    with gradients and computes the loss of its own rows against all candidates (open_clip's
    `local_loss` + `gather_with_grad`, which its maintainers found the one that scales). Averaging the
    ranks' gradients, as DDP does, then gives exactly the gradient of the single-process loss on the
    concatenated batch. In eval mode the loss stays local, because evaluation may run on one rank.
    It takes L2-normalised embeddings (`unit_inputs`, read by the model as for the other alignment
    objectives of `avssl.objectives`).

    temperature: initial (or fixed) softmax temperature. learnable: train it as a log-parameterised
    `logit_scale` = log(1 / temperature), clamped to temperatures in [min_temperature, 1] as in CLIP.
    directions: "symmetric" (video->audio and audio->video, averaged; CLIP) or "video_to_audio" only
    (CAV-MAE's default, `bidirect_contrast=False`). gather: "global" (negatives from every rank, as
    above) or "local" (each rank's own clips only: CAV-MAE computes its loss inside each DataParallel
    replica, so its negatives are one GPU's share of the batch).
    """

    unit_inputs = True

    def __init__(self, temperature: float = 0.05, learnable: bool = False, min_temperature: float = 0.01,
                 directions: str = "symmetric", gather: str = "global") -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {', '.join(DIRECTIONS)}, got {directions!r}")
        if gather not in GATHER:
            raise ValueError(f"gather must be one of {', '.join(GATHER)}, got {gather!r}")
        self.directions = directions
        self.gather = gather
        self.learnable = learnable
        self.max_logit_scale = math.log(1.0 / min_temperature)
        scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale, persistent=False)

    @property
    def temperature(self) -> float:
        """The current temperature (after clamping)."""
        return 1.0 / float(self._scale().detach().exp())

    def chance_level(self, batch: int) -> float | None:
        """ln(batch): the loss when the scores carry no information (every candidate equally likely)."""
        return math.log(max(batch, 1))

    def _scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(0.0, self.max_logit_scale)

    def forward(self, video_emb: torch.Tensor, audio_emb: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """video_emb, audio_emb: (B, D) L2-normalised pairs; valid: (B,) bool, False = no audio."""
        scale = self._scale().exp()
        valid = None if valid is None else valid.bool()
        if not (self.training and distributed()) or self.gather == "local":
            return _symmetric_nce(video_emb, audio_emb, video_emb, audio_emb, 0, valid, valid, scale,
                                  self.directions)
        if valid is None:
            valid = torch.ones(video_emb.shape[0], dtype=torch.bool, device=video_emb.device)
        valid_all = all_gather(valid.to(torch.uint8)).bool()
        offset = dist.get_rank() * video_emb.shape[0]
        return _symmetric_nce(video_emb, audio_emb, gather_with_grad(video_emb), gather_with_grad(audio_emb),
                              offset, valid, valid_all, scale, self.directions)


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error on masked patches only (MAE).

    pred, target: (B, N, P) patches; mask: (B, N), 1 = masked (scored), 0 = visible (ignored).
    norm_pix: normalise each target patch by its own mean and (unbiased) variance first, MAE's
    better-representations option. weights: (B,) per-row weights (0 drops a row, e.g. a clip without
    audio). Returns the mean over scored patches; 0 (with a graph) when none is scored.
    """
    target = target.float()
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred.float() - target).pow(2).mean(dim=-1)
    scored = mask.float()
    if weights is not None:
        scored = scored * weights.float()[:, None]
    return (per_patch * scored).sum() / scored.sum().clamp_min(1.0)
