"""Transformer encoders for video clips and log-mel spectrograms.

Both are plain ViTs without a CLS token (CAV-MAE, VideoMAE): patch embedding, positional embedding
(interpolated or recomputed when the input grid differs from the config), a learned modality
embedding, `depth` pre-norm blocks, a final LayerNorm, mean pooling. Masked tokens are dropped
before the blocks (`ids_keep`), so masked pretraining pays only for the visible tokens.

Parameter names, per encoder (`video_encoder.` / `audio_encoder.` inside `AVModel`):
`patch_embed.proj.{weight,bias}`, `modality_embed` (1, 1, D), `pos_embed.weight` (learned only),
`blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.{weight,bias}`, `norm.{weight,bias}`.
In `AVModel` the final `norm` comes after the shared joint blocks (CAV-MAE's `norm_v` / `norm_a`).
"""
from __future__ import annotations

import abc
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avssl.masking import gather_tokens
from avssl.models.config import ModelConfig
from avssl.models.layers import Block, JointBlock, Stream, init_weights, run_blocks
from avssl.models.patch_embed import SpectrogramPatchEmbed, TubeletEmbed, audio_grid, video_grid
from avssl.models.pos_embed import PositionalEmbedding


def drop_path_rates(config: ModelConfig) -> list[float]:
    """Stochastic-depth rate of each encoder layer (modality-specific, then joint), rising linearly."""
    layers = config.depth + config.joint_depth
    return [config.drop_path * i / max(layers - 1, 1) for i in range(layers)]


class _Encoder(nn.Module, abc.ABC):
    """What the video and audio encoders share; subclasses define `grid_of` and `stream`."""

    stream: Stream

    def __init__(self, config: ModelConfig, grid: tuple[int, ...], patch_embed: nn.Module) -> None:
        super().__init__()
        dim = config.embed_dim
        self.patch_embed = patch_embed
        self.pos_embed = PositionalEmbedding(dim, grid, config.pos_embed)
        self.modality_embed = nn.Parameter(torch.zeros(1, 1, dim))
        rates = drop_path_rates(config)[: config.depth]
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, rate, config.norm_eps) for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.input_norm = config.input_norm
        self.grad_checkpointing = False
        self.apply(init_weights)
        weight = self.patch_embed.proj.weight.data  # like a Linear on the flattened patch (MAE)
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.modality_embed, std=0.02)

    @abc.abstractmethod
    def grid_of(self, x: torch.Tensor) -> tuple[int, ...]:
        """Token grid of an input batch."""

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input the encoder sees: as given, or (input_norm "clip") less its mean over time (dim 1 of
        both a clip and a spectrogram). Idempotent, so MAE targets can be taken from its output."""
        return x - x.mean(dim=1, keepdim=True) if self.input_norm == "clip" else x

    def embed(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None, *, normalized: bool = False
              ) -> torch.Tensor:
        """Input -> (B, N or K, D) tokens with positions and modality added, only `ids_keep` (B, K) if given.
        `normalized`: x is `normalize_input`'s output already (AVModel.forward normalises once for the
        encoder and the MAE targets), so it is not normalised again."""
        if not normalized:
            x = self.normalize_input(x)
        tokens = self.patch_embed(x) + self.pos_embed(self.grid_of(x)).to(x.dtype) + self.modality_embed
        return tokens if ids_keep is None else gather_tokens(tokens, ids_keep)

    def forward_blocks(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None, *,
                       normalized: bool = False) -> torch.Tensor:
        """Tokens after the modality-specific blocks, before any joint block or final norm: (B, K, D)."""
        return run_blocks(self.blocks, self.embed(x, ids_keep, normalized=normalized),
                          grad_checkpointing=self.grad_checkpointing)

    def forward_joint(self, tokens: torch.Tensor, joint_blocks: Sequence[JointBlock] = ()) -> torch.Tensor:
        """Output of `forward_blocks` through shared `joint_blocks` (this stream's norms), then `norm`."""
        tokens = run_blocks(joint_blocks, tokens, grad_checkpointing=self.grad_checkpointing, stream=self.stream)
        return self.norm(tokens)

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None,
                       joint_blocks: Sequence[JointBlock] = (), *, normalized: bool = False) -> torch.Tensor:
        """Final token features (B, N or K, D)."""
        return self.forward_joint(self.forward_blocks(x, ids_keep, normalized=normalized), joint_blocks)

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None,
                joint_blocks: Sequence[JointBlock] = ()) -> torch.Tensor:
        """Mean-pooled features (B, D)."""
        return self.forward_tokens(x, ids_keep, joint_blocks).mean(dim=1)

    @abc.abstractmethod
    def time_series(self, tokens: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        """All tokens (B, N, D) of an input with token grid `grid` -> (B, time steps, D) means per step."""

    def pool(self, tokens: torch.Tensor, grid: tuple[int, ...], time_bins: int = 0) -> torch.Tensor:
        """All tokens (B, N, D) -> (B, D * (1 + time_bins)): their mean, then (time_bins > 0) the means
        of `time_bins` equal stretches of the time axis, earliest first."""
        pooled = tokens.mean(dim=1)
        if time_bins == 0:
            return pooled
        series = self.time_series(tokens, grid).transpose(1, 2)  # (B, D, steps)
        return torch.cat([pooled, F.adaptive_avg_pool1d(series, time_bins).flatten(1)], dim=1)


class VideoEncoder(_Encoder):
    """ViT over tubelets of a clip (B, T, 3, H, W); any T, H, W that are tubelet multiples."""

    stream: Stream = "v"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, config.video_grid, TubeletEmbed(config.embed_dim, config.tubelet))
        self.tubelet = config.tubelet

    def grid_of(self, x: torch.Tensor) -> tuple[int, int, int]:
        return video_grid(x.shape, self.tubelet)

    def time_series(self, tokens: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        steps, height, width = grid  # tokens in (time, row, column) order
        return tokens.unflatten(1, (steps, height * width)).mean(dim=2)


class AudioEncoder(_Encoder):
    """ViT over 16x16 patches of a log-mel spectrogram (B, frames, mel); any frame count that is a
    patch multiple (positions are recomputed, or interpolated when learned)."""

    stream: Stream = "a"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, config.audio_grid, SpectrogramPatchEmbed(config.embed_dim, config.audio_patch))
        self.patch = config.audio_patch

    def grid_of(self, x: torch.Tensor) -> tuple[int, int]:
        return audio_grid(x.shape, self.patch)

    def time_series(self, tokens: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        bands, steps = grid  # tokens in (frequency, time) order
        return tokens.unflatten(1, (bands, steps)).mean(dim=1)
