"""The synchronisation task's audio shifts: which offset each clip's sound is moved by.

A clip of the pretraining task "is this sound in sync with these frames, and by how much is it off"
(Owens & Efros, ECCV 2018) is its frames with its sound moved by one of `offsets` evenly spaced
offsets in [-max_shift, max_shift] seconds; the middle one is 0 (in sync). The offset is drawn per
clip as a pure function of (seed, epoch, index, clip), like every draw of the data pipeline
(`avssl.data.sampling`), and the decoder reads the moved sound in the same container pass as the
clip (`decode_clips(..., audio_shifts=...)`), so the task costs no extra file I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from avssl.data.sampling import seed_from

_SALT = 0x5CA1  # keeps the offset draws apart from the clip-time draws of the same (seed, epoch, index)


@dataclass(frozen=True)
class SyncShift:
    """`offsets` (odd, >= 3) offset classes evenly spaced over [-max_shift, max_shift] seconds."""

    offsets: int = 9
    max_shift: float = 0.8

    def __post_init__(self) -> None:
        if self.offsets < 3 or self.offsets % 2 == 0:
            raise ValueError(f"offsets must be odd and at least 3 (0 s among them), got {self.offsets}")
        if not self.max_shift > 0:
            raise ValueError(f"max_shift must be > 0 seconds, got {self.max_shift}")

    @classmethod
    def from_config(cls, config: Any) -> SyncShift | None:
        """The shifts of a model config (`sync_offsets`, `sync_max_shift`), or None when its
        `sync_weight` is 0 (the task is off)."""
        if not config.sync_weight > 0:
            return None
        return cls(config.sync_offsets, config.sync_max_shift)

    @property
    def seconds(self) -> np.ndarray:
        """The offset of each class in seconds, from -max_shift up; positive: the sound comes from later."""
        return np.linspace(-self.max_shift, self.max_shift, self.offsets)

    @property
    def in_sync(self) -> int:
        """The class whose offset is 0."""
        return self.offsets // 2

    def draw(self, *, seed: int, epoch: int, index: int, clip: int) -> int:
        """The offset class of clip `clip` of item `index` in `epoch`, uniform over the classes."""
        rng = np.random.default_rng(seed_from(_SALT, seed, epoch, index, clip))
        return int(rng.integers(self.offsets))
