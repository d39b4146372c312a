"""The one place that turns a model config into its input pipeline.

Pretraining, fine-tuning, embedding, retrieval queries and evaluation all build their clips from
`input_pipeline(config)`, so they cannot drift apart: clip shape (frames, frame size, seconds),
decoding (audio rate, how several channels become mono, the short side frames are decoded at),
the training augmentations, the evaluation view (centre crop as a fraction of the resized short
side) and the spectrogram (mel bins, length, normalisation).

    >>> pipe = input_pipeline(model.config)
    >>> dataset = ClipDataset("videos/", sampler="constant", train=False, **pipe.dataset_kwargs())
    >>> pipe.video_transform()(frames), pipe.audio_transform()(waveform)     # what a dataset item holds

Frames and waveforms already in memory go through `Preprocessor`, which cuts, resamples and pads them
as a file's clip is cut, decoded and padded, so an array and the file it came from give the same input:

    >>> prep = Preprocessor.from_config(model.config)
    >>> batch = prep(video=frames, audio=waveform, sample_rate=44100)   # {"video": (1, T, 3, S, S), "audio": (1, F, M)}

The spectrogram always has the model's ``audio_frames`` frames: a clip's log-mel is zero-padded or
cut to it (AST's and CAV-MAE's convention: 10 s give 998 frames, padded to 1024 for their weights),
so learned position tables are used as trained, never resampled. When the clip length implies
another length than the model's, a message says so once.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import av
import numpy as np
import torch

from avssl.data.audio import FBANK_MEAN, FBANK_STD, FRAME_LENGTH_MS, FRAME_SHIFT_MS, AudioTransform, target_frames
from avssl.data.augment import AugmentConfig
# the decoder's own frame-size rule, scaler and resampler: an array must be resized and resampled
# by the same code as a file's frames and sound
from avssl.data.audio_reader import check_channel, resampled, to_mono
from avssl.data.decode import DecodedClip, decode_clip
from avssl.data.sampling import ConstantSampler
from avssl.data.video import (EVAL_CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD, SpatialCrops, VideoTransform,
                              eval_resize)
from avssl.data.video_reader import TIME_EPS, output_size, to_rgb

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


Frames = np.ndarray | torch.Tensor  # (T, H, W, 3) uint8 RGB, or (B, T, H, W, 3)
Waveform = np.ndarray | torch.Tensor  # (N,) or (channels, N) samples, or (B, channels, N)
_SAMPLE_FORMATS = {np.dtype(np.float32): "fltp", np.dtype(np.float64): "dblp", np.dtype(np.int16): "s16p",
                   np.dtype(np.int32): "s32p"}  # planar PyAV formats of the sample types accepted


def _items(batch: Frames | Waveform | Sequence[Frames | Waveform], single_ndim: int) -> list[np.ndarray]:
    """The clips of a batch: one array of `single_ndim` dimensions, a stacked batch of them, or a list."""
    if isinstance(batch, (list, tuple)):
        return [np.asarray(item) for item in batch]
    array = batch.cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    return [array] if array.ndim <= single_ndim else list(array)


@dataclass(frozen=True)
class Preprocessor:
    """Frames and waveforms in memory -> the model's input tensors, as `avssl embed` makes them from files.

    A source (one clip's frames and / or sound) is treated as a file of that length: its centre window
    of `clip_duration` is taken (the "constant" sampler's evaluation clip; a shorter source is padded:
    the last frame repeats, the sound is zero-padded); frames are picked by timestamp (frame i shown
    at i / fps), resized to the decoder's short side by the decoder's own scaler (PyAV's), and given
    the evaluation crop; the sound is resampled by the decoder's own FFmpeg filter graph to the model's
    rate, made mono as `audio_channel` says, cut and turned into the normalised log-mel. Build it with
    `from_config(model.config)`; `AVModel.embed` uses it.
    """

    pipeline: InputPipeline

    @classmethod
    def from_config(cls, config: Any, **clip_shape: Any) -> "Preprocessor":
        """The preprocessor of a `ModelConfig` (`clip_shape`: num_frames, frame_size, clip_duration overrides,
        as `input_pipeline` takes them)."""
        return cls(input_pipeline(config, **clip_shape))

    def window(self, duration: float) -> tuple[float, float]:
        """(start, end) seconds of the clip taken from a source of `duration` seconds."""
        clip = ConstantSampler(self.pipeline.clip_duration).sample(duration, seed=0, epoch=0, index=0, item=0)[0]
        return clip.start, clip.end

    def default_fps(self, num_frames: int) -> float:
        """The frame rate of `num_frames` frames given without one: they span `clip_duration`."""
        return num_frames / self.pipeline.clip_duration

    def video(self, frames: np.ndarray, fps: float | None = None,
              window: tuple[float, float] | None = None) -> torch.Tensor:
        """One source's frames (T, H, W, 3) uint8 -> (num_frames, 3, S, S) normalised. fps: the frame
        rate (default: the frames span `clip_duration`); window: the clip (default: `window(T / fps)`)."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            raise ValueError(f"video: expected uint8 frames of shape (T, H, W, 3), got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        pipe = self.pipeline
        fps = fps or self.default_fps(len(frames))
        start, end = window or self.window(len(frames) / fps)
        targets = start + (np.arange(pipe.num_frames) + 0.5) * (end - start) / pipe.num_frames
        # the first frame shown at or after each target, the last one past the end (as the decoder picks)
        picks = np.minimum(np.searchsorted(np.arange(len(frames)) / fps, targets - TIME_EPS), len(frames) - 1)
        images = {}
        for index in dict.fromkeys(picks.tolist()):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index]), format="rgb24")
            images[index] = to_rgb(frame, *output_size(frame, pipe.short_side))
        return pipe.video_transform()(torch.from_numpy(np.stack([images[i] for i in picks.tolist()])))

    def waveform(self, samples: np.ndarray, sample_rate: int, window: tuple[float, float] | None = None) -> torch.Tensor:
        """One source's samples (N,) or (channels, N) at `sample_rate` -> the clip's mono waveform at the
        model's rate, (round(clip_duration * rate),) float32. window: the clip (default: `window(N / rate)`)."""
        samples = samples[None] if samples.ndim == 1 else samples
        sample_format = _SAMPLE_FORMATS.get(samples.dtype)
        if samples.ndim != 2 or sample_format is None or not samples.shape[1]:
            raise ValueError(f"audio: expected samples of shape (N,) or (channels, N) as float32 / float64 / int16 "
                             f"/ int32, got {samples.dtype} {tuple(samples.shape)}")
        rate = self.pipeline.audio_rate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=sample_format,
                                           layout=f"{samples.shape[0]}c")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
        mono = np.concatenate([to_mono(piece.to_ndarray(), self.pipeline.audio_channel)
                               for piece in resampled(frame, rate)])
        start, end = window or self.window(samples.shape[1] / sample_rate)
        out = np.zeros(round((end - start) * rate), np.float32)
        clip = mono[round(start * rate):][: len(out)]
        out[: len(clip)] = clip
        return torch.from_numpy(out)

    def __call__(self, video: Frames | Sequence[Frames] | None = None, audio: Waveform | Sequence[Waveform] | None = None,
                 *, sample_rate: int | None = None, fps: float | None = None) -> dict[str, torch.Tensor]:
        """Model inputs of one source or a batch: "video" (B, num_frames, 3, S, S) and / or "audio"
        (B, audio_frames, num_mel_bins), for the modalities given.

        video: uint8 frames (T, H, W, 3), a batch (B, T, H, W, 3) or a list of clips; fps: their frame
        rate (default: each clip spans `clip_duration`). audio: samples (N,) or (channels, N), a batch
        (B, channels, N) or a list; sample_rate: their rate (required with audio). With both, a
        source's window comes from its frames' duration, as a file's comes from its video stream."""
        if video is None and audio is None:
            raise ValueError("give video frames, an audio waveform or both")
        clips = _items(video, 4) if video is not None else []
        sounds = _items(audio, 2) if audio is not None else []
        if clips and sounds and len(clips) != len(sounds):
            raise ValueError(f"{len(clips)} video clips but {len(sounds)} waveforms: give one of each per source")
        if sounds and not sample_rate:
            raise ValueError("audio needs its sample_rate (e.g. sample_rate=44100)")
        windows = [self.window(len(frames) / (fps or self.default_fps(len(frames)))) for frames in clips]
        out = {}
        if clips:
            out["video"] = torch.stack([self.video(frames, fps, w) for frames, w in zip(clips, windows)])
        if sounds:
            transform = self.pipeline.audio_transform()
            out["audio"] = torch.stack([transform(self.waveform(samples, sample_rate, windows[k] if windows else None))
                                        for k, samples in enumerate(sounds)])
        return out
