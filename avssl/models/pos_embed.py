"""Absolute positional embeddings for token grids: fixed sin-cos or learned, for any grid size.

Tokens are numbered in C order over their grid: (rows, cols) for a 2-D grid (an image, or a
spectrogram as mel rows x time columns), (time, rows, cols) for a video. Tables are (N, D).

The 2-D sin-cos table is MAE's (`get_2d_sincos_pos_embed`, used by CAV-MAE): the first half of the
channels encodes the column index, the second half the row index, each as [sin, cos] over
frequencies 1 / 10000^(k / (D/4)). The space-time table adds a 1-D sin-cos over the time index to
that spatial table (separable, as in Feichtenhofer et al., "Masked Autoencoders As Spatiotemporal
Learners", 2022), so every frame of a clip shares the spatial code of a 2-D model.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

PosEmbedKind = Literal["sincos", "learned"]


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(N,) positions -> (N, dim) table [sin(p * w_k), cos(p * w_k)], w_k = 1 / 10000^(k / (dim/2))."""
    if dim % 2:
        raise ValueError(f"a 1-D sin-cos embedding needs an even size, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(dim: int, rows: int, cols: int) -> torch.Tensor:
    """(rows * cols, dim) table in row-major order; first half of channels = column, second = row."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos embedding needs a size divisible by 4, got {dim}")
    row = torch.arange(rows).repeat_interleave(cols)
    col = torch.arange(cols).repeat(rows)
    return torch.cat([sincos_1d(dim // 2, col), sincos_1d(dim // 2, row)], dim=1)


def sincos_3d(dim: int, time: int, rows: int, cols: int) -> torch.Tensor:
    """(time * rows * cols, dim): the 2-D table of every frame plus a 1-D table over the time index."""
    spatial = sincos_2d(dim, rows, cols)
    temporal = sincos_1d(dim, torch.arange(time))
    return rearrange(temporal[:, None, :] + spatial[None, :, :], "t s d -> (t s) d")


def sincos_table(dim: int, grid: tuple[int, ...]) -> torch.Tensor:
    """The fixed table for a 2-D (rows, cols) or 3-D (time, rows, cols) grid."""
    if len(grid) == 2:
        return sincos_2d(dim, *grid)
    if len(grid) == 3:
        return sincos_3d(dim, *grid)
    raise ValueError(f"positional grids are 2-D or 3-D, got {grid}")


def resample_table(table: torch.Tensor, grid: tuple[int, ...], new_grid: tuple[int, ...]) -> torch.Tensor:
    """A learned (N, D) table on `grid` interpolated to `new_grid` (bicubic in 2-D, trilinear in 3-D).

    The interpolation runs in float32 on the grid, the usual way (timm, AST) to fine-tune a model at a
    resolution, frame count or clip length other than the one it was trained at.
    """
    if tuple(grid) == tuple(new_grid):
        return table
    mode = {2: "bicubic", 3: "trilinear"}[len(grid)]
    axes = "t h w" if len(grid) == 3 else "h w"
    sizes = dict(zip(axes.split(), grid))
    image = rearrange(table.float(), f"({axes}) d -> 1 d {axes}", **sizes)
    image = F.interpolate(image, size=tuple(new_grid), mode=mode, align_corners=False)
    return rearrange(image, f"1 d {axes} -> ({axes}) d").to(table.dtype)


class PositionalEmbedding(nn.Module):
    """Positions for a token grid; `forward(grid)` returns the (1, N, D) table for that grid.

    "sincos": fixed, held as a non-persistent buffer (not in the state dict) and recomputed for other
    grids, which for a longer/shorter time axis is the same as extending/cropping it.
    "learned": a parameter `weight` (1, N, D), initialised from the sin-cos table (a smooth start
    that already tells positions apart) and resampled by interpolation for other grids.
    """

    def __init__(self, dim: int, grid: tuple[int, ...], kind: PosEmbedKind = "sincos") -> None:
        super().__init__()
        if kind not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {kind!r}")
        self.dim, self.grid, self.kind = dim, tuple(grid), kind
        table = sincos_table(dim, self.grid)[None]
        if kind == "learned":
            self.weight = nn.Parameter(table)
        else:
            self.register_buffer("table", table, persistent=False)

    def forward(self, grid: tuple[int, ...] | None = None) -> torch.Tensor:
        """(1, N, D) positions for `grid` (default: the grid the module was built for)."""
        grid = self.grid if grid is None else tuple(grid)
        if self.kind == "learned":
            return resample_table(self.weight[0], self.grid, grid)[None]
        if grid == self.grid:
            return self.table
        return sincos_table(self.dim, grid).to(self.table)[None]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, grid={self.grid}, kind={self.kind!r}"
