"""The masked-autoencoder decoder shared by both modalities (CAV-MAE's design).

Visible encoder tokens are projected to `decoder_dim`, each modality's sequence is completed with its
mask token at the hidden positions, positions and a modality embedding are added, and one light
transformer runs over the concatenated [audio, video] sequence, so each modality's missing patches
can be inferred from the other. Separate linear heads predict the pixels / spectrogram values.

Parameter names (`decoder.` inside `AVModel`): `embed`, `mask_token_audio`, `mask_token_video`,
`modality_audio`, `modality_video`, `pos_embed_audio.weight` / `pos_embed_video.weight` (learned only),
`blocks.{i}.*` (as in the encoders), `norm`, `head_audio`, `head_video`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from avssl.masking import restore_tokens
from avssl.models.config import ModelConfig
from avssl.models.layers import Block, init_weights, run_blocks
from avssl.models.pos_embed import PositionalEmbedding


class MAEDecoder(nn.Module):
    """Reconstructs every patch of both modalities from the visible, jointly encoded tokens."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.decoder_dim
        self.embed = nn.Linear(config.embed_dim, dim)
        self.mask_token_audio = nn.Parameter(torch.zeros(1, 1, dim))
        self.mask_token_video = nn.Parameter(torch.zeros(1, 1, dim))
        self.modality_audio = nn.Parameter(torch.zeros(1, 1, dim))
        self.modality_video = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed_audio = PositionalEmbedding(dim, config.audio_grid, config.pos_embed)
        self.pos_embed_video = PositionalEmbedding(dim, config.video_grid, config.pos_embed)
        self.blocks = nn.ModuleList(
            Block(dim, config.decoder_heads, config.mlp_ratio, norm_eps=config.norm_eps)
            for _ in range(config.decoder_depth)
        )
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.head_audio = nn.Linear(dim, config.audio_patch ** 2)
        self.head_video = nn.Linear(dim, math.prod(config.tubelet) * 3)
        self.grad_checkpointing = False
        self.apply(init_weights)
        for token in (self.mask_token_audio, self.mask_token_video, self.modality_audio, self.modality_video):
            nn.init.normal_(token, std=0.02)

    def _complete(self, kept: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor,
                  pos: PositionalEmbedding, grid: tuple[int, ...], modality: torch.Tensor) -> torch.Tensor:
        full = restore_tokens(self.embed(kept), mask_token, ids_restore)
        return full + pos(grid).to(full.dtype) + modality

    def forward(self, audio_tokens: torch.Tensor, video_tokens: torch.Tensor, audio_restore: torch.Tensor,
                video_restore: torch.Tensor, audio_grid: tuple[int, int], video_grid: tuple[int, int, int],
                attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """audio_tokens (B, Ka, D), video_tokens (B, Kv, D): visible tokens from the joint encoder;
        *_restore (B, N*) from the masking; grids of the inputs; attn_mask: bool (B, 1, 1, Na + Nv),
        False for keys no query may attend to (the audio of clips without sound).
        Returns predicted patches: audio (B, Na, patch^2), video (B, Nv, t*h*w*3)."""
        audio = self._complete(audio_tokens, audio_restore, self.mask_token_audio, self.pos_embed_audio,
                               audio_grid, self.modality_audio)
        video = self._complete(video_tokens, video_restore, self.mask_token_video, self.pos_embed_video,
                               video_grid, self.modality_video)
        x = run_blocks(self.blocks, torch.cat([audio, video], dim=1), grad_checkpointing=self.grad_checkpointing,
                       attn_mask=attn_mask)
        x = self.norm(x)
        num_audio = audio.shape[1]
        return self.head_audio(x[:, :num_audio]), self.head_video(x[:, num_audio:])
