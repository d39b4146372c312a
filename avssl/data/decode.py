"""Decode a time window of a video file into frames and a mono waveform, with PyAV.

Only the window is decoded: the video stream seeks back to the keyframe before it, decodes forward,
and stops at the last frame it needs (a seek that lands after the window, or on a frame the decoder
cannot start from, as MPEG-TS seeks do, is tried again further back, down to the stream's start);
the audio stream seeks separately with a pre-roll (AAC and MP3 decode garbage for a few frames
after a seek), is resampled to float by FFmpeg's filter graph (what `av.AudioResampler`
builds), made mono (the mean of the channels, or one of them: `audio_channel`) and placed
sample-exactly by timestamp. Frames are chosen by their presentation time, so
variable frame rate files work.

Times are seconds from the start of the video stream (its start offset is subtracted), the same
clock as `VideoInfo.duration`. A window running past the end repeats the last frame and zero-pads
the audio (the "pad" policy).

Damaged data: a packet the decoder refuses is skipped (as FFmpeg's own tools do), and a window only
fails when no frame could be decoded for it. Every failure is a `DecodeError` naming the file,
whatever PyAV raised, so that the datasets count and skip it.

This module opens the file and puts a window together; `avssl.data.video_reader` picks its frames,
`avssl.data.audio_reader` reads its sound, and `avssl.data.streams` holds what both (and the probe)
need to find, seek and read a container's streams.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import av
import numpy as np
import torch

from avssl.data.audio_reader import check_channel, read_audio
from avssl.data.streams import (Budget, DecodeError, audio_stream, configure_decoder, source_name, stream_start,
                                video_stream)
from avssl.data.video_reader import NoFrameDecoded, VideoReader

log = logging.getLogger(__name__)


@dataclass
class DecodedClip:
    """One decoded window.

    frames: (T, H, W, 3) uint8 RGB; (0, 0, 0, 3) when decoded with_video=False.
    audio: (N,) float32 mono, N == round((end - start) * audio_rate); zeros where the file has no sound.
    has_audio: whether the file has an audio stream (False also when decoded with_audio=False).
    frame_times: (T,) float64 presentation times of the frames taken, on the clip clock.
    shifted_audio: (N,) float32 mono sound of the window moved by its audio shift (the synchronisation
    task's), read in the same container pass; None when no shift was asked for.
    """

    frames: torch.Tensor
    audio: torch.Tensor
    has_audio: bool
    frame_times: torch.Tensor
    shifted_audio: torch.Tensor | None = None


def decode_clip(source: str | Path | BinaryIO, start: float, end: float, num_frames: int,
                **options: Any) -> DecodedClip:
    """Decode the window [start, end) seconds: `num_frames` frames and mono audio; `options` are
    `decode_clips`'s (audio rate, resize, audio channel, ...)."""
    return decode_clips(source, [(start, end)], num_frames, **options)[0]


def decode_clips(
    source: str | Path | BinaryIO,
    windows: Sequence[tuple[float, float]],
    num_frames: int,
    *,
    audio_rate: int = 16000,
    short_side: int | None = None,
    with_video: bool = True,
    with_audio: bool = True,
    timeout: float = 60.0,
    audio_channel: int | str = "mean",
    audio_shifts: Sequence[float] | None = None,
) -> list[DecodedClip]:
    """Decode several windows (start, end) seconds from one open container: for each, `num_frames`
    frames and mono audio at `audio_rate`.

    Frame i is the first frame whose time >= start + (i + 0.5) * (end - start) / num_frames (the last
    frame when none is). `short_side` resizes (inside the decoder's colour conversion) so the shorter
    side has that many pixels, keeping the aspect ratio. `audio_channel` makes several channels mono:
    "mean" (their average, so a stereo file with two equal channels reads exactly like its mono twin;
    FFmpeg's own downmix would add sqrt(2) of gain) or a channel index (0: the first, what CAV-MAE and
    AST feed their models; a file with fewer channels gives its last). A window without any decodable
    frame is tried once more in a freshly opened container. Raises DecodeError when the file cannot be
    read or one window takes longer than `timeout` seconds. `audio_shifts` (seconds, one per window):
    each window's sound is also read moved by its shift, from the open container (`shifted_audio`;
    outside the file it is silence, as past the end of a padded window).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    for start, end in windows:
        if not end > start:
            raise ValueError(f"clip window must have end > start, got ({start}, {end})")
    check_channel(audio_channel)
    if audio_shifts is not None and len(audio_shifts) != len(windows):
        raise ValueError(f"audio_shifts: one per window, got {len(audio_shifts)} for {len(windows)} windows")
    shifts = list(audio_shifts) if audio_shifts is not None else [None] * len(windows)
    request = _Request(source_name(source), num_frames, audio_rate, short_side, with_video, with_audio, timeout,
                       audio_channel)
    opened = None
    try:
        opened = _Opened(source, with_video)
        clips = []
        for (start, end), shift in zip(windows, shifts):
            try:
                clips.append(request.decode(opened, start, end, shift))
            except NoFrameDecoded:
                # a damaged packet can leave the decoder unable to decode anything after it, even
                # after a seek (an MPEG-4 header with other settings); a fresh decoder can
                log.debug("%s: no frame near %.3f s; trying again in a freshly opened file", request.name, start)
                opened.close()
                opened = _Opened(source, with_video)
                clips.append(request.decode(opened, start, end, shift))
        return clips
    except (DecodeError, av.error.FFmpegError) as err:
        raise DecodeError(f"{request.name}: {err}") from err
    except Exception as err:  # PyAV raises more than FFmpegError on damaged data (ValueError, MemoryError, ...)
        raise DecodeError(f"{request.name}: {type(err).__name__}: {err}") from err
    finally:
        if opened is not None:
            opened.close()


class _Opened:
    """An open container of a source and its video and audio streams; a file object is read from
    its start."""

    def __init__(self, source: str | Path | BinaryIO, with_video: bool):
        if not isinstance(source, (str, Path)):
            source.seek(0)
        self.container = av.open(str(source) if isinstance(source, (str, Path)) else source,
                                 metadata_errors="ignore")
        self.video, self.audio = video_stream(self.container), audio_stream(self.container)
        if with_video and self.video is None:
            self.close()
            raise DecodeError("no video stream")
        if with_video and self.video.codec_context is None:
            self.close()
            raise DecodeError("no decoder for the video stream")
        if with_video:
            configure_decoder(self.video)

    def close(self) -> None:
        self.container.close()


@dataclass(frozen=True)
class _Request:
    """What `decode_clips` was asked for, besides the windows."""

    name: str
    num_frames: int
    audio_rate: int
    short_side: int | None
    with_video: bool
    with_audio: bool
    timeout: float
    audio_channel: int | str = "mean"

    def decode(self, opened: _Opened, start: float, end: float, shift: float | None = None) -> DecodedClip:
        """The window [start, end) (seconds on the clip clock) from an open file; with `shift`, also its
        sound moved by that many seconds."""
        budget = Budget(self.name, self.timeout)
        video, audio = opened.video, opened.audio
        origin = stream_start(video if video is not None else audio)
        frames, frame_times = _empty_video()
        if self.with_video:
            reader = VideoReader(opened.container, video, budget)
            frames, frame_times = reader.read(origin + start, origin + end, self.num_frames, self.short_side)
            frame_times -= origin
        has_audio = self.with_audio and audio is not None
        starts = [start] + ([] if shift is None else [start + shift])
        sounds = [np.zeros(round((end - start) * self.audio_rate), np.float32) for _ in starts]
        if has_audio:
            for begin, samples in zip(starts, sounds):
                read_audio(opened.container, audio, origin + begin, samples, self.audio_rate, budget,
                           self.audio_channel)
        return DecodedClip(frames=torch.from_numpy(frames), audio=torch.from_numpy(sounds[0]), has_audio=has_audio,
                           frame_times=torch.from_numpy(frame_times),
                           shifted_audio=None if shift is None else torch.from_numpy(sounds[1]))


def _empty_video() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0, np.float64)
