"""Transformer building blocks shared by the encoders and the decoder.

Parameter names follow timm's Vision Transformer (`attn.qkv`, `attn.proj`, `mlp.fc1`, `mlp.fc2`,
`norm1`, `norm2`), the layout CAV-MAE, VideoMAE and AudioMAE checkpoints use, so importing their
weights is a key rename plus shape checks.
"""
from __future__ import annotations

from typing import Iterable, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

Stream = Literal["a", "v", "av"]


class Attention(nn.Module):
    """Multi-head self-attention on `F.scaled_dot_product_attention` (flash / memory-efficient kernels).

    `qkv` packs queries, keys and values as (3, heads, head_dim) along its output, timm's layout.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, D) -> (B, N, D). attn_mask: bool, broadcastable to (B, heads, N, N), True = may attend."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    """Position-wise feed-forward: fc1, GELU, fc2."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples, rescaling the survivors."""

    def __init__(self, prob: float = 0.0) -> None:
        super().__init__()
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep

    def extra_repr(self) -> str:
        return f"prob={self.prob}"


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class JointBlock(Block):
    """A block whose attention and MLP weights are shared by the audio and video streams, while each
    stream keeps its own LayerNorms (CAV-MAE's shared layer).

    `stream` picks the norms: "a" (audio alone: `norm1_a`, `norm2_a`), "v" (video alone: `norm1_v`,
    `norm2_v`) or "av" (the concatenated audio+video sequence: `norm1`, `norm2`). Separate norms let
    one set of weights serve inputs whose statistics differ, which CAV-MAE found helps both tasks.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 norm_eps: float = 1e-6) -> None:
        super().__init__(dim, num_heads, mlp_ratio, drop_path, norm_eps)
        self.norm1_a = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2_a = nn.LayerNorm(dim, eps=norm_eps)
        self.norm1_v = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2_v = nn.LayerNorm(dim, eps=norm_eps)

    def forward(self, x: torch.Tensor, stream: Stream = "av", attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, D) tokens of `stream` -> (B, N, D); attn_mask as in `Attention`."""
        suffix = {"av": "", "a": "_a", "v": "_v"}[stream]
        norm1, norm2 = getattr(self, "norm1" + suffix), getattr(self, "norm2" + suffix)
        x = x + self.drop_path(self.attn(norm1(x), attn_mask))
        return x + self.drop_path(self.mlp(norm2(x)))


def run_blocks(blocks: Iterable[nn.Module], x: torch.Tensor, *, grad_checkpointing: bool = False,
               **kwargs: object) -> torch.Tensor:
    """Apply `blocks` in order; with `grad_checkpointing` (and gradients on) each block's activations
    are recomputed in the backward pass instead of stored, trading ~30% compute for memory."""
    for block in blocks:
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, use_reentrant=False, **kwargs)
        else:
            x = block(x, **kwargs)
    return x


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation (official JAX ViT): xavier-uniform linears with zero bias, unit LayerNorms;
    use with `module.apply(init_weights)`."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """The parameters of the AV encoders' layout that AdamW leaves undecayed besides every 1-D one
    (biases, norms): positional embeddings, mask tokens and modality embeddings (`AVModel.no_weight_decay`,
    `AVClassifier.no_weight_decay`; `avssl.train.optim` applies it to a model that declares nothing itself)."""
    return {name for name, _ in model.named_parameters()
            if "pos_embed" in name or "token" in name or "modality" in name}
