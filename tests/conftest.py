"""Shared fixtures: real media files written with avssl.data.synthetic.

- `synthetic_corpus`: the default synthetic corpus (4 classes x 8 videos x 3 s, 64x64, 16 fps,
  H.264 + AAC, train.csv / val.csv), written once per session. Read-only: copy it to change it.
- `write_test_video`: a factory writing one file into the test's tmp_path; its frames spell their
  index in their colour (read back with `avssl.data.synthetic.counter_value`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

from avssl.data.synthetic import counter_frames, make_corpus, write_video


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default `make_corpus` output (written in about a second)."""
    return make_corpus(tmp_path_factory.mktemp("synthetic_corpus"))


def _tone(duration: float, rate: int, channels: int = 1, *, frequency: float = 440.0,
         bursts: Sequence[float] = ()) -> np.ndarray:
    """(channels, N) float32: a quiet sine with loud 50 ms bursts starting at `bursts` (seconds)."""
    t = np.arange(round(duration * rate)) / rate
    wave = 0.05 * np.sin(2 * np.pi * frequency * t)
    for onset in bursts:
        inside = (t >= onset) & (t < onset + 0.05)
        wave[inside] = 0.8 * np.sin(2 * np.pi * 1000.0 * t[inside])
    return np.repeat(wave[None].astype(np.float32), channels, axis=0)


@pytest.fixture
def write_test_video(tmp_path: Path) -> Callable[..., Path]:
    """write_test_video(name="clip.mp4", *, duration=2.0, fps=16, width=64, height=48,
    audio_rate=16000, channels=1, video=True, audio=True, bursts=(), frame_times=None,
    **write_video_kwargs) -> Path of the written file."""

    def write(name: str = "clip.mp4", *, duration: float = 2.0, fps: float = 16, width: int = 64,
              height: int = 48, audio_rate: int = 16000, channels: int = 1, video: bool = True,
              audio: bool = True, bursts: Sequence[float] = (), frame_times: Sequence[float] | None = None,
              **kwargs) -> Path:
        count = len(frame_times) if frame_times is not None else round(duration * fps)
        frames = counter_frames(count, height, width) if video else None
        sound = _tone(duration, audio_rate, channels, bursts=bursts) if audio else None
        return write_video(tmp_path / name, frames, fps, sound, audio_rate, frame_times=frame_times, **kwargs)

    return write
