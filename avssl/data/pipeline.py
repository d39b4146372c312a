"""The one place that turns a model config into its input pipeline.

Pretraining, fine-tuning, embedding, retrieval queries and evaluation all build their clips from
`input_pipeline(config)`, so they cannot drift apart: clip shape (frames, frame size, seconds),
decoding (audio rate, how several channels become mono, the short side frames are decoded at),
the training augmentations, the evaluation view (centre crop as a fraction of the resized short
side) and the spectrogram (mel bins, length, normalisation).

    >>> pipe = input_pipeline(model.config)
    >>> dataset = ClipDataset("videos/", sampler="constant", train=False, **pipe.dataset_kwargs())
    >>> pipe.video_transform()(frames), pipe.audio_transform()(waveform)     # what a dataset item holds

The spectrogram always has the model's ``audio_frames`` frames: a clip's log-mel is zero-padded or
cut to it (AST's and CAV-MAE's convention: 10 s give 998 frames, padded to 1024 for their weights),
so learned position tables are used as trained, never resampled. When the clip length implies
another length than the model's, a message says so once.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from avssl.data.audio import FBANK_MEAN, FBANK_STD, FRAME_LENGTH_MS, FRAME_SHIFT_MS, AudioTransform, target_frames
from avssl.data.augment import AugmentConfig
from avssl.data.decode import DecodedClip, check_channel, decode_clip
from avssl.data.video import (EVAL_CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD, SpatialCrops, VideoTransform,
                              eval_resize)

log = logging.getLogger(__name__)

_REPORTED: set[tuple[float, int, int]] = set()


@dataclass(frozen=True)
class InputPipeline:
    """How clips are cut, decoded and transformed for one set of weights (see the module doc)."""

    num_frames: int
    frame_size: int
    clip_duration: float  # seconds
    audio_frames: int  # spectrogram length the model takes; clips are padded or cut to it
    audio_rate: int = 16000
    num_mel_bins: int = 128
    audio_channel: int | str = "mean"  # "mean" of the channels, or one channel's index
    eval_crop_fraction: float = EVAL_CROP_FRACTION
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    fbank_mean: float = FBANK_MEAN
    fbank_std: float = FBANK_STD

    def __post_init__(self) -> None:
        check_channel(self.audio_channel)
        if self.audio_frames < 1:
            raise ValueError(f"audio_frames must be >= 1, got {self.audio_frames}")
        if not 0 < self.eval_crop_fraction <= 1:
            raise ValueError(f"eval_crop_fraction must be in (0, 1], got {self.eval_crop_fraction}")

    @property
    def short_side(self) -> int:
        """The short side frames are decoded at: the evaluation view's resize (training crops from it)."""
        return eval_resize(self.frame_size, self.eval_crop_fraction)

    def video_transform(self, train: bool = False, augment: AugmentConfig | None = None) -> VideoTransform:
        """Frames -> (T, 3, S, S): the evaluation view, or with `train` the random crop / flip of `augment`."""
        augment = augment or AugmentConfig()
        return VideoTransform(self.frame_size, train=train, scale=augment.crop_scale, ratio=augment.crop_ratio,
                              flip=augment.flip, mean=self.image_mean, std=self.image_std,
                              crop_fraction=self.eval_crop_fraction)

    def audio_transform(self, train: bool = False, augment: AugmentConfig | None = None) -> AudioTransform:
        """Mono waveform -> (audio_frames, num_mel_bins); with `train`, `augment`'s SpecAugment."""
        augment = augment or AugmentConfig()
        return AudioTransform(self.audio_frames, sample_rate=self.audio_rate, num_mel_bins=self.num_mel_bins,
                              mean=self.fbank_mean, std=self.fbank_std, train=train, freq_mask=augment.freq_mask,
                              time_mask=augment.time_mask)

    def spatial_crops(self, crops: int) -> SpatialCrops:
        """The evaluation view taken `crops` times along the long side (multi-crop evaluation)."""
        return SpatialCrops(self.frame_size, crops, self.image_mean, self.image_std, self.eval_crop_fraction)

    def decode(self, source: str | Path | BinaryIO, start: float, end: float, *, with_video: bool = True,
               with_audio: bool = True) -> DecodedClip:
        """The window [start, end) decoded as a dataset decodes it (frames at `short_side`, mono audio)."""
        return decode_clip(source, start, end, self.num_frames, audio_rate=self.audio_rate,
                           short_side=self.short_side, with_video=with_video, with_audio=with_audio,
                           audio_channel=self.audio_channel)

    def dataset_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `ClipDataset` / `ShardDataset` that give clips of this pipeline."""
        return asdict(self)


def clip_fbank_frames(clip_duration: float, audio_rate: int = 16000) -> int:
    """Log-mel frames a clip of `clip_duration` seconds gives (998 for 10 s, 198 for 2 s)."""
    samples = round(clip_duration * audio_rate)
    window, shift = round(audio_rate * FRAME_LENGTH_MS / 1000), round(audio_rate * FRAME_SHIFT_MS / 1000)
    return 0 if samples < window else 1 + (samples - window) // shift


def report_audio_length(clip_duration: float, audio_frames: int, audio_rate: int = 16000) -> None:
    """Say once (per combination) when the spectrogram length differs from the one avssl pads
    `clip_duration` to by itself: the clip's frames are padded with silence or cut, never resampled."""
    if audio_frames == target_frames(clip_duration) or (clip_duration, audio_frames, audio_rate) in _REPORTED:
        return
    _REPORTED.add((clip_duration, audio_frames, audio_rate))
    frames = clip_fbank_frames(clip_duration, audio_rate)
    if frames <= audio_frames:
        log.info("audio: %g s clips give %d spectrogram frames; the model takes %d, so %d silent frames are "
                 "padded (AST's and CAV-MAE's convention; the positions are used as trained)",
                 clip_duration, frames, audio_frames, audio_frames - frames)
    else:
        log.warning("audio: %g s clips give %d spectrogram frames but the model takes %d: only the first "
                    "%.2f s of each clip's sound reach it (set model.audio_frames, or a shorter data.clip_duration)",
                    clip_duration, frames, audio_frames, (audio_frames - 1) * FRAME_SHIFT_MS / 1000
                    + FRAME_LENGTH_MS / 1000)


def input_pipeline(config: Any, *, num_frames: int | None = None, frame_size: int | None = None,
                   clip_duration: float | None = None) -> InputPipeline:
    """The input pipeline of a `ModelConfig`; `num_frames`, `frame_size`, `clip_duration` (a recipe's
    `data.*`) override the config's clip shape when given. The spectrogram length is always the
    config's `audio_frames`."""
    duration = clip_duration or config.clip_duration
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        raise ValueError(f"clip_duration must be > 0 seconds, got {duration!r}")
    report_audio_length(float(duration), config.audio_frames, config.audio_rate)
    return InputPipeline(
        num_frames=num_frames or config.num_frames, frame_size=frame_size or config.frame_size,
        clip_duration=float(duration), audio_frames=config.audio_frames, audio_rate=config.audio_rate,
        num_mel_bins=config.num_mel_bins, audio_channel=config.audio_channel,
        eval_crop_fraction=config.eval_crop_fraction, image_mean=tuple(config.image_mean),
        image_std=tuple(config.image_std), fbank_mean=config.fbank_mean, fbank_std=config.fbank_std,
    )
