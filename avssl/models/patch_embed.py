"""Patch embeddings (pixels/spectrogram -> tokens) and the matching patchify for MAE targets.

Token order is fixed here, once, for both the embeddings and the reconstruction targets:

* video (B, T, 3, H, W): tubelets of `tubelet = (t, h, w)` frames x pixels; tokens in (time, row,
  col) C order over the (T/t, H/h, W/w) grid; a target patch is (t, h, w, channel) flattened.
* audio (B, F, M) = (time frames, mel bins), as `avssl.data.audio` produces it. Following CAV-MAE
  (and AST), the spectrogram is transposed to an image of mel rows x time columns, (B, 1, M, F),
  before 16x16 patching: the grid is (M/16, F/16) = (frequency, time), tokens in row-major order
  (all time steps of the lowest band first), a target patch is (mel, time) flattened.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


def video_grid(shape: torch.Size | tuple[int, ...], tubelet: tuple[int, int, int]) -> tuple[int, int, int]:
    """(T', H', W') token grid of a (B, T, 3, H, W) clip; raises when a size is not a tubelet multiple."""
    _, frames, channels, height, width = shape
    if channels != 3:
        raise ValueError(f"video must be (B, T, 3, H, W), got shape {tuple(shape)}")
    sizes = (frames, height, width)
    if any(size % patch for size, patch in zip(sizes, tubelet)):
        raise ValueError(
            f"video of {frames} frames at {height}x{width} does not divide into {tubelet[0]}x{tubelet[1]}"
            f"x{tubelet[2]} tubelets; use a frame count and frame size that are multiples of them"
        )
    return tuple(size // patch for size, patch in zip(sizes, tubelet))  # type: ignore[return-value]


def audio_grid(shape: torch.Size | tuple[int, ...], patch: int) -> tuple[int, int]:
    """(M', F') = (frequency, time) token grid of a (B, F, M) spectrogram batch."""
    _, frames, mels = shape
    if frames % patch or mels % patch:
        raise ValueError(
            f"spectrogram of {frames} frames x {mels} mel bins does not divide into {patch}x{patch} patches; "
            f"pad or crop the frame count to a multiple of {patch}"
        )
    return mels // patch, frames // patch


class TubeletEmbed(nn.Module):
    """Video clip (B, T, 3, H, W) -> tokens (B, N, D) with a Conv3d whose kernel = stride = tubelet."""

    def __init__(self, dim: int, tubelet: tuple[int, int, int] = (2, 16, 16), in_chans: int = 3) -> None:
        super().__init__()
        self.tubelet = tuple(tubelet)
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=self.tubelet, stride=self.tubelet)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        video_grid(video.shape, self.tubelet)
        x = self.proj(rearrange(video, "b t c h w -> b c t h w"))
        return rearrange(x, "b d t h w -> b (t h w) d")


class SpectrogramPatchEmbed(nn.Module):
    """Log-mel spectrogram (B, F, M) -> tokens (B, N, D): Conv2d 1 -> D over the (mel, time) image."""

    def __init__(self, dim: int, patch: int = 16) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        audio_grid(audio.shape, self.patch)
        x = self.proj(rearrange(audio, "b f m -> b 1 m f"))
        return rearrange(x, "b d h w -> b (h w) d")


def video_patches(video: torch.Tensor, tubelet: tuple[int, int, int]) -> torch.Tensor:
    """Reconstruction targets: (B, T, 3, H, W) -> (B, N, t*h*w*3), in the token order of TubeletEmbed."""
    pt, ph, pw = tubelet
    return rearrange(video, "b (t pt) c (h ph) (w pw) -> b (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)


def audio_patches(audio: torch.Tensor, patch: int) -> torch.Tensor:
    """Reconstruction targets: (B, F, M) -> (B, N, patch*patch), in SpectrogramPatchEmbed's order."""
    return rearrange(audio, "b (w q) (h p) -> b (h w) (p q)", p=patch, q=patch)
