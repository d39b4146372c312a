"""Token masking for masked autoencoding, as pure functions.

Every strategy returns a `Masking(ids_keep, mask, ids_restore)` for a batch of token sequences:

* `ids_keep` (B, K) int64: indices of the visible tokens, ascending in each row; the encoder sees
  only these (`gather_tokens`), which is what makes MAE cheap.
* `mask` (B, N) float: 1 for a masked (hidden, reconstructed) token, 0 for a visible one.
* `ids_restore` (B, N) int64: puts the sequence [visible tokens..., masked tokens...] (each part in
  ascending token order) back into token order (`restore_tokens`).

Count rule: every row keeps exactly K = max(1, floor(N * (1 - ratio))) tokens, with a 1e-6 tolerance
so that float error does not drop one (100 tokens at ratio 0.9 keep 10). Tube masking applies the
rule per time slice (K = T' * floor(S * (1 - ratio)) for S tokens per slice).

Randomness comes from `generator` when given (drawn on the generator's device, then moved, so a CPU
generator gives the same masks on any device), else from torch's global RNG on `device`. The
strategies know K in advance, so none reads a tensor back to the host (no device sync per step).
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from einops import rearrange, repeat

AudioMasking = Literal["random", "time", "freq", "time_freq"]


class Masking(NamedTuple):
    """Which tokens each row keeps; see the module docstring."""

    ids_keep: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor


def num_kept(num_tokens: int, ratio: float) -> int:
    """Tokens kept out of `num_tokens` at mask `ratio` (floor, at least one)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    return max(1, min(num_tokens, int(num_tokens * (1.0 - ratio) + 1e-6)))


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None,
             device: torch.device | str | None) -> torch.Tensor:
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device)


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean (B, N): True for the `count` lowest scores of each row."""
    order = scores.argsort(dim=1)
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    return chosen.scatter_(1, order[:, :count], True)


def masking_from_keep(keep: torch.Tensor, num_keep: int | None = None) -> Masking:
    """A `Masking` from a boolean (B, N) keep-mask holding the same number of True values in every row:
    `num_keep` when the caller knows it (trusted, not read from the device), else counted and checked."""
    if num_keep is None:
        counts = keep.sum(dim=1)
        if counts.numel() and bool((counts != counts[0]).any()):
            raise ValueError("every row must keep the same number of tokens")
        num_keep = int(counts[0]) if counts.numel() else 0
    ids_shuffle = (~keep).to(torch.uint8).argsort(dim=1, stable=True)
    return Masking(
        ids_keep=ids_shuffle[:, :num_keep],
        mask=(~keep).float(),
        ids_restore=ids_shuffle.argsort(dim=1),
    )


def random_masking(batch: int, num_tokens: int, ratio: float, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> Masking:
    """Each row keeps a uniformly random subset of K tokens (MAE, CAV-MAE)."""
    count = num_kept(num_tokens, ratio)
    return masking_from_keep(_lowest(_uniform((batch, num_tokens), generator, device), count), count)


def tube_masking(batch: int, grid: tuple[int, int, int], ratio: float, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Masking:
    """VideoMAE's tube masking over a (T', H', W') grid: one random spatial mask repeated in every time
    slice, so a hidden patch cannot be copied from the same place in a neighbouring frame."""
    time, rows, cols = grid
    count = num_kept(rows * cols, ratio)
    spatial = _lowest(_uniform((batch, rows * cols), generator, device), count)
    return masking_from_keep(repeat(spatial, "b s -> b (t s)", t=time), time * count)


def _random_lines(batch: int, lines: int, count: int, generator: torch.Generator | None,
                  device: torch.device | str | None) -> torch.Tensor:
    """Boolean (B, lines): `count` random lines per row."""
    return _lowest(_uniform((batch, lines), generator, device), count)


def audio_masking(batch: int, grid: tuple[int, int], ratio: float, mode: AudioMasking = "random", *,
                  generator: torch.Generator | None = None, device: torch.device | str | None = None) -> Masking:
    """Masking over a spectrogram's (frequency, time) token grid (CAV-MAE's structured masking).

    "random": unstructured. "time": floor(T' * ratio) whole time columns are hidden first.
    "freq": floor(F' * ratio) whole frequency rows. "time_freq": 0.7 of each (CAV-MAE's factor).
    The K visible tokens are then drawn at random among the tokens not yet hidden; when too few are
    left ("time_freq" at high ratios), tokens crossed by one hidden line are used before those crossed
    by two. The count rule of the module docstring always holds.
    """
    if mode == "random":
        return random_masking(batch, grid[0] * grid[1], ratio, generator=generator, device=device)
    if mode not in ("time", "freq", "time_freq"):
        raise ValueError(f"audio masking must be random, time, freq or time_freq, got {mode!r}")
    freqs, times = grid
    scale = 0.7 if mode == "time_freq" else 1.0
    penalty = torch.zeros(batch, freqs, times, device=device)
    if mode in ("time", "time_freq"):
        hidden = _random_lines(batch, times, int(times * ratio * scale), generator, device)
        penalty += rearrange(hidden.float(), "b t -> b 1 t")
    if mode in ("freq", "time_freq"):
        hidden = _random_lines(batch, freqs, int(freqs * ratio * scale), generator, device)
        penalty += rearrange(hidden.float(), "b f -> b f 1")
    scores = rearrange(penalty, "b f t -> b (f t)") + _uniform((batch, freqs * times), generator, device)
    count = num_kept(freqs * times, ratio)
    return masking_from_keep(_lowest(scores, count), count)


def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, D), ids (B, K) -> (B, K, D): the tokens at `ids` in each row."""
    return torch.gather(tokens, 1, repeat(ids, "b k -> b k d", d=tokens.shape[-1]))


def restore_tokens(kept: torch.Tensor, fill: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """kept (B, K, D) visible tokens, fill (D,) or (1, 1, D) placeholder -> (B, N, D) in token order,
    with `fill` at every masked position (MAE's decoder input)."""
    batch, num_keep, dim = kept.shape
    num_masked = ids_restore.shape[1] - num_keep
    placeholders = fill.reshape(1, 1, dim).expand(batch, num_masked, dim).to(kept.dtype)
    return gather_tokens(torch.cat([kept, placeholders], dim=1), ids_restore)
