"""Clip samplers: which time windows of a video become dataset items.

A sampler is a tiny frozen object with two methods:

- ``num_items(duration)``: how many dataset items a video of that length gives
  (0 means the video is skipped);
- ``sample(duration, seed=, epoch=, index=, item=)``: the window(s) for one item.

Every random draw is a pure function of ``(seed, epoch, index, item)`` (hashed
with numpy's ``SeedSequence``), never of global RNG state, so the clips a run
sees do not depend on the number of DataLoader workers or GPUs, and a run that
resumes mid-epoch draws exactly the clips it would have drawn.

Videos shorter than ``clip_duration`` follow the ``short`` policy: ``"pad"``
gives the window ``[0, clip_duration)`` (the decoder repeats the last frame and
zero-pads the audio), ``"skip"`` gives no items at all.

Durations are those of the segment the sampler should draw from; a manifest
entry with explicit start/end is handled by the dataset, which passes the
segment length here and adds the segment start to the windows it gets back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

SAMPLERS = ("random", "uniform", "constant", "random_multi")
SHORT_POLICIES = ("pad", "skip")

# Windows that end within this many seconds of the video end count as reaching
# it; durations come from container metadata and are not exact to the sample.
_EPS = 1e-6


@dataclass(frozen=True)
class ClipInfo:
    """One time window ``[start, end)`` in seconds; ``clip_index`` numbers the
    windows of one item (random_multi) or of one video (uniform, constant)."""

    start: float
    end: float
    clip_index: int


def seed_from(*values: int) -> int:
    """A 63-bit seed that is a stable hash of ``values`` (any ints, negative too).

    Used for every seeded draw in the data pipeline (clip times, augmentation
    generators, shard permutations), so all of them are reproducible across
    processes, machines and Python hash seeds.
    """
    # the count goes first: SeedSequence alone maps (a, b) and (a, b, 0) to one state
    entropy = [len(values)] + [int(v) % (1 << 64) for v in values]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _uniform(count: int, *, seed: int, epoch: int, index: int, item: int) -> np.ndarray:
    """``count`` floats in [0, 1), a pure function of the four keys."""
    return np.random.default_rng(seed_from(seed, epoch, index, item)).random(count)


class ClipSampler(Protocol):
    """What the dataset needs from a sampler (see the module docstring)."""

    clip_duration: float

    def num_items(self, duration: float) -> int:
        """Dataset items a video (or segment) of ``duration`` seconds gives; 0 skips it."""
        ...

    def sample(self, duration: float, *, seed: int, epoch: int, index: int, item: int) -> list[ClipInfo]:
        """Windows for one item; more than one only for random_multi."""
        ...


@dataclass(frozen=True)
class _Sampler:
    """Shared validation and short-video policy."""

    clip_duration: float
    short: str = "pad"

    def __post_init__(self) -> None:
        if not self.clip_duration > 0:
            raise ValueError(f"clip_duration must be > 0 seconds, got {self.clip_duration}")
        if self.short not in SHORT_POLICIES:
            raise ValueError(f"short must be one of {SHORT_POLICIES}, got {self.short!r}")

    def _skips(self, duration: float) -> bool:
        """True when the short policy drops a video of this length."""
        return self.short == "skip" and duration < self.clip_duration - _EPS

    def _slack(self, duration: float) -> float:
        """Seconds a window start can move: 0 for short videos (padded at the end)."""
        return max(duration - self.clip_duration, 0.0)

    def _window(self, start: float, clip_index: int) -> ClipInfo:
        return ClipInfo(start, start + self.clip_duration, clip_index)


@dataclass(frozen=True)
class RandomSampler(_Sampler):
    """One window per video per epoch, uniformly placed; the usual training sampler."""

    def num_items(self, duration: float) -> int:
        return 0 if self._skips(duration) else 1

    def sample(self, duration: float, *, seed: int, epoch: int, index: int, item: int) -> list[ClipInfo]:
        u = _uniform(1, seed=seed, epoch=epoch, index=index, item=item)
        return [self._window(float(u[0]) * self._slack(duration), 0)]


@dataclass(frozen=True)
class _PerVideoSampler(_Sampler):
    """The base of the samplers that take ``clips_per_video`` windows from each video: checks the count."""

    clips_per_video: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {self.clips_per_video}")


@dataclass(frozen=True)
class RandomMultiSampler(_PerVideoSampler):
    """One item = ``clips_per_video`` independent random windows from the same file,
    decoded from one open container (cheaper than separate items)."""

    clips_per_video: int = 2

    def num_items(self, duration: float) -> int:
        return 0 if self._skips(duration) else 1

    def sample(self, duration: float, *, seed: int, epoch: int, index: int, item: int) -> list[ClipInfo]:
        u = _uniform(self.clips_per_video, seed=seed, epoch=epoch, index=index, item=item)
        slack = self._slack(duration)
        return [self._window(float(x) * slack, k) for k, x in enumerate(u)]


@dataclass(frozen=True)
class UniformSampler(_Sampler):
    """Windows every ``stride`` seconds (default: back to back) covering the whole
    video; when the last regular window stops short of the end, one more window
    aligned to the end is added. One item per window; for evaluation/embedding."""

    stride: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stride is not None and not self.stride > 0:
            raise ValueError(f"stride must be > 0 seconds, got {self.stride}")

    def _starts(self, duration: float) -> list[float]:
        slack = self._slack(duration)
        stride = self.stride or self.clip_duration
        count = int(np.floor(slack / stride + _EPS)) + 1
        starts = [k * stride for k in range(count)]
        if slack - starts[-1] > _EPS:
            starts.append(slack)
        return starts

    def num_items(self, duration: float) -> int:
        return 0 if self._skips(duration) else len(self._starts(duration))

    def sample(self, duration: float, *, seed: int, epoch: int, index: int, item: int) -> list[ClipInfo]:
        starts = self._starts(duration)
        if not 0 <= item < len(starts):
            raise IndexError(f"item {item} out of range: a {duration:.3f} s video has {len(starts)} windows")
        return [self._window(starts[item], item)]


@dataclass(frozen=True)
class ConstantSampler(_PerVideoSampler):
    """``clips_per_video`` windows evenly spaced from the first to the last possible
    start (one window: the centre); each window is an item. For evaluation with a
    fixed number of views per video (short padded videos repeat the same window)."""

    def num_items(self, duration: float) -> int:
        return 0 if self._skips(duration) else self.clips_per_video

    def sample(self, duration: float, *, seed: int, epoch: int, index: int, item: int) -> list[ClipInfo]:
        if not 0 <= item < self.clips_per_video:
            raise IndexError(f"item {item} out of range for {self.clips_per_video} clips per video")
        slack = self._slack(duration)
        fraction = 0.5 if self.clips_per_video == 1 else item / (self.clips_per_video - 1)
        return [self._window(slack * fraction, item)]


def make_sampler(name: str, clip_duration: float, *, clips_per_video: int = 1, stride: float | None = None,
                 short: str = "pad") -> ClipSampler:
    """Build a sampler by name: "random", "uniform", "constant" or "random_multi".

    ``clips_per_video`` is the number of windows for "constant" and
    "random_multi"; ``stride`` (seconds) only applies to "uniform". Passing
    either to a sampler that ignores it is an error rather than a silent no-op.
    """
    if clips_per_video != 1 and name not in ("constant", "random_multi"):
        raise ValueError(f"clips_per_video={clips_per_video} needs sampler 'constant' or 'random_multi', "
                         f"not {name!r}")
    if stride is not None and name != "uniform":
        raise ValueError(f"stride applies to the 'uniform' sampler only, not {name!r}")
    if name == "random":
        return RandomSampler(clip_duration, short)
    if name == "random_multi":
        return RandomMultiSampler(clip_duration, short, clips_per_video)
    if name == "uniform":
        return UniformSampler(clip_duration, short, stride)
    if name == "constant":
        return ConstantSampler(clip_duration, short, clips_per_video)
    raise ValueError(f"unknown sampler {name!r}; choose one of {SAMPLERS}")
