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
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import av
import av.filter
import numpy as np
import torch

log = logging.getLogger(__name__)

AUDIO_PREROLL = 0.5  # seconds decoded before an audio window and thrown away
MAX_DECODED_FRAMES = 20_000  # per window: bounds a runaway decode (e.g. a keyframe every few minutes)
# One decoder thread, slice threading only: breaking out of a frame-threaded decode early has hung
# PyAV, and parallelism comes from DataLoader workers anyway (colour conversion also runs on one thread).
DECODER_THREADS = 1
_EPS = 1e-6  # seconds: timestamps are rationals turned into floats
_SKIP_END_MARGIN = 1.0  # seconds before the stream's end where no frame is skipped (see _skippable)
_RESAMPLER_MARGIN = 0.05  # seconds of pre-roll audio kept before a window, as resampler context
_START_MARGIN = 1.0  # seconds before the stream start where a seek "from the start" aims (_decode_from_keyframe)


class DecodeError(RuntimeError):
    """A file or window could not be decoded; the message names the file and what failed."""


class _NoFrameDecoded(DecodeError):
    """No video frame could be decoded for a window (worth one more try with a fresh decoder)."""


@dataclass
class DecodedClip:
    """One decoded window.

    frames: (T, H, W, 3) uint8 RGB; (0, 0, 0, 3) when decoded with_video=False.
    audio: (N,) float32 mono, N == round((end - start) * audio_rate); zeros where the file has no sound.
    has_audio: whether the file has an audio stream (False also when decoded with_audio=False).
    frame_times: (T,) float64 presentation times of the frames taken, on the clip clock.
    """

    frames: torch.Tensor
    audio: torch.Tensor
    has_audio: bool
    frame_times: torch.Tensor


def video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The first video stream that is not cover art (an attached picture), or None."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def audio_stream(container: av.container.InputContainer) -> av.AudioStream | None:
    """The first audio stream FFmpeg has a decoder for, or None."""
    for stream in container.streams.audio:
        if stream.codec_context is not None:
            return stream
    return None


def stream_start(stream: av.stream.Stream | None) -> float:
    """Start offset of a stream in seconds (0.0 when unknown)."""
    if stream is None or stream.start_time is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def configure_decoder(stream: av.stream.Stream) -> None:
    """Few threads, never frame threading (see DECODER_THREADS)."""
    stream.codec_context.thread_type = "SLICE"
    stream.codec_context.thread_count = DECODER_THREADS


def source_name(source: str | Path | BinaryIO) -> str:
    """A printable name for a path or file object."""
    if isinstance(source, (str, Path)):
        return str(source)
    return str(getattr(source, "name", "<file object>"))


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
    read or one window takes longer than `timeout` seconds.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    for start, end in windows:
        if not end > start:
            raise ValueError(f"clip window must have end > start, got ({start}, {end})")
    check_channel(audio_channel)
    request = _Request(source_name(source), num_frames, audio_rate, short_side, with_video, with_audio, timeout,
                       audio_channel)
    opened = None
    try:
        opened = _Opened(source, with_video)
        clips = []
        for start, end in windows:
            try:
                clips.append(request.decode(opened, start, end))
            except _NoFrameDecoded:
                # a damaged packet can leave the decoder unable to decode anything after it, even
                # after a seek (an MPEG-4 header with other settings); a fresh decoder can
                log.debug("%s: no frame near %.3f s; trying again in a freshly opened file", request.name, start)
                opened.close()
                opened = _Opened(source, with_video)
                clips.append(request.decode(opened, start, end))
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

    def decode(self, opened: _Opened, start: float, end: float) -> DecodedClip:
        """The window [start, end) (seconds on the clip clock) from an open file."""
        budget = _Budget(self.name, self.timeout)
        video, audio = opened.video, opened.audio
        origin = stream_start(video if video is not None else audio)
        frames, frame_times = _empty_video()
        if self.with_video:
            reader = _VideoReader(opened.container, video, budget)
            frames, frame_times = reader.read(origin + start, origin + end, self.num_frames, self.short_side)
            frame_times -= origin
        samples = np.zeros(round((end - start) * self.audio_rate), np.float32)
        has_audio = self.with_audio and audio is not None
        if has_audio:
            _read_audio(opened.container, audio, origin + start, samples, self.audio_rate, budget,
                        self.audio_channel)
        return DecodedClip(frames=torch.from_numpy(frames), audio=torch.from_numpy(samples), has_audio=has_audio,
                           frame_times=torch.from_numpy(frame_times))


def _empty_video() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0, np.float64)


class _Budget:
    """The time one window may take; `check` raises DecodeError once it is spent."""

    def __init__(self, name: str, timeout: float):
        self.name, self.timeout = name, timeout
        self.expires = time.monotonic() + timeout

    def check(self, what: str, near: float) -> None:
        if time.monotonic() > self.expires:
            raise DecodeError(f"decoding {what} near {near:.3f} s took longer than {self.timeout:g} s")


def seek_keyframe(container: av.container.InputContainer, stream: av.stream.Stream, seconds: float) -> None:
    """Seek `stream` back to the keyframe at or before `seconds` (absolute stream time).

    Times before the stream start are kept: they land on the first packet, including the encoder
    priming packets AAC and Opus streams start with (at negative times), which the decoder needs to
    get the first real samples right. Demuxers that refuse such times (AVI) seek to the start.
    Raises FFmpeg's error when the stream cannot seek at all (e.g. an MP4 track without an index)."""
    target = math.floor(seconds / float(stream.time_base))  # rounding down only seeks a little earlier
    first = stream.start_time or 0
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError:
        if target >= first:
            raise
        container.seek(first, stream=stream, backward=True, any_frame=False)


def _packets(container, stream, errors: list[str]) -> Iterator[av.Packet]:
    """`container.demux(stream)`, ended (not raised) by a demuxer error, which is added to `errors`:
    damaged data after a point reads like the end of the file."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as err:
            errors.append(str(err))
            return
        except IndexError:  # PyAV's answer to a packet of a stream that appears mid-file
            errors.append("a packet of a stream the header did not announce")
            return
        yield packet


def _decoded(packet: av.Packet, errors: list[str]) -> list:
    """The frames `packet` completes; none when the decoder refuses it (its error is added to
    `errors`): a damaged packet is skipped, as FFmpeg's own tools do."""
    try:
        return packet.decode()
    except av.error.FFmpegError as err:
        errors.append(str(err))
        return []


def _stream_end(container, stream) -> float:
    """Where the stream ends according to the headers (absolute seconds; -inf when unknown)."""
    if stream.duration:
        return stream_start(stream) + float(stream.duration * stream.time_base)
    if container.duration:
        return ((container.start_time or 0) + container.duration) / 1_000_000
    return float("-inf")


def _output_size(frame: av.VideoFrame, short_side: int | None) -> tuple[int, int]:
    if short_side is None:
        return frame.width, frame.height
    scale = short_side / min(frame.width, frame.height)
    return max(1, round(frame.width * scale)), max(1, round(frame.height * scale))


def _to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB; a colour space the converter refuses (a damaged header can
    name a reserved one) is taken as BT.601, the converter's default for an unspecified one."""
    try:
        return frame.to_ndarray(format="rgb24", width=width, height=height, threads=1)
    except av.error.FFmpegError:
        return frame.to_ndarray(format="rgb24", width=width, height=height, threads=1, src_colorspace="ITU601")


class _VideoReader:
    """Picks frames by timestamp from one seek-and-decode pass over a window."""

    def __init__(self, container, stream, budget: _Budget):
        self.container, self.stream, self.budget, self.name = container, stream, budget, budget.name
        self.time_base = float(stream.time_base)
        self.skip_before = _stream_end(container, stream) - _SKIP_END_MARGIN
        self.errors: list[str] = []  # what the demuxer and decoder refused, for the error message

    def read(self, start: float, end: float, num_frames: int, short_side: int | None):
        """Frames (T, H, W, 3) and their times (absolute) for the window [start, end)."""
        targets = start + (np.arange(num_frames) + 0.5) * (end - start) / num_frames
        picked, last = self._decode_from_keyframe(targets)
        if last is None:
            why = f" ({self.errors[-1]})" if self.errors else ""
            raise _NoFrameDecoded(f"no video frame decoded near {start:.3f} s{why}")
        picked += [(last, last.time)] * (num_frames - len(picked))  # past the end: repeat the last frame
        width, height = _output_size(picked[0][0], short_side)
        images: dict[int, np.ndarray] = {}
        for frame, _ in picked:
            if id(frame) not in images:
                images[id(frame)] = _to_rgb(frame, width, height)
        frames = np.stack([images[id(frame)] for frame, _ in picked])
        return frames, np.array([t for _, t in picked], np.float64)

    def _decode_from_keyframe(self, targets: np.ndarray):
        """Decode from a seek point early enough that the first frame decoded is not after the first
        target (`_seek_points`); returns the picks and the last frame decoded.

        Demuxers do not all land on the keyframe at or before a seek target: MPEG-TS lands on
        whatever packet has that decoding time, and the decoder drops frames until the next
        keyframe; a damaged index can land after the window."""
        for seek_to in self._seek_points(float(targets[0])):
            picked, first, last = self._decode(targets, seek_to)
            if first is not None and first <= targets[0] + _EPS:
                break
            log.debug("%s: seeking to %.3f s decoded %s", self.name, seek_to,
                      "nothing" if first is None else f"from {first:.3f} s on")
        return picked, last

    def _seek_points(self, target: float) -> Iterator[float]:
        """`target`, then 1, 3, 7, ... s before it, and last a point before the stream's start (by a
        margin for decoding times, which precede presentation times): decoding from the first packet."""
        begin = stream_start(self.stream) - _START_MARGIN
        for doubling in range(40):
            point = target - (2 ** doubling - 1)
            if not point > begin:
                break
            yield point
        yield begin

    def _decode(self, targets: np.ndarray, seek_to: float):
        """Seek, decode forward and take, for each target, the first frame at or after it.

        Returns the picks, the time of the first frame decoded and the last frame decoded (None,
        None when the stream cannot seek there)."""
        picked: list[tuple[av.VideoFrame, float]] = []
        try:
            seek_keyframe(self.container, self.stream, seek_to)
        except av.error.FFmpegError as err:
            self.errors.append(f"seeking to {seek_to:.3f} s: {err}")
            return picked, None, None
        # plain floats and a sentinel past the last target: this loop runs for every packet
        thresholds = (targets - _EPS).tolist() + [math.inf]
        wanted = len(targets)
        first = last = None
        decoded = 0
        context = self.stream.codec_context
        skipping = False
        for packet in _packets(self.container, self.stream, self.errors):
            self.budget.check("video", targets[0])
            if skipping != self._skippable(packet, thresholds[len(picked)]):
                skipping = not skipping
                context.skip_frame = "NONREF" if skipping else "DEFAULT"
            for frame in _decoded(packet, self.errors):
                decoded += 1
                if decoded > MAX_DECODED_FRAMES:
                    raise DecodeError(f"more than {MAX_DECODED_FRAMES} frames decoded "
                                      f"for one clip near {targets[0]:.3f} s")
                shown = frame.time
                if shown is None:
                    continue
                first = shown if first is None else first
                while shown >= thresholds[len(picked)]:
                    picked.append((frame, shown))
                last = frame
            if len(picked) == wanted:
                break
        context.skip_frame = "DEFAULT"
        return picked, first, last

    def _skippable(self, packet: av.Packet, threshold: float) -> bool:
        """Whether the decoder may drop this packet's frame if nothing references it.

        A frame shown before the next target can never be picked (picks are the first frames at or
        after their targets), so unreferenced ones need not be decoded: on H.264 with B-frames this
        skips a third or more of the decoding between the keyframe and the window. Not near the
        end of the stream, where the last frame may be needed as padding."""
        if packet.pts is None or threshold > self.skip_before:  # (all picked: the threshold is inf)
            return False
        return packet.pts * self.time_base < threshold


def check_channel(channel: int | str) -> None:
    """Raise ValueError unless `channel` is "mean" or a channel index >= 0."""
    if channel != "mean" and (isinstance(channel, bool) or not isinstance(channel, int) or channel < 0):
        raise ValueError(f"audio_channel: expected 'mean' or a channel index >= 0, got {channel!r}")


def to_mono(samples: np.ndarray, channel: int | str) -> np.ndarray:
    """(channels, N) planar samples -> (N,): their mean, or channel `channel` (the last when there are
    fewer)."""
    if channel == "mean":
        return samples.mean(axis=0, dtype=np.float32) if samples.shape[0] > 1 else samples[0]
    return samples[min(int(channel), samples.shape[0] - 1)]


def _read_audio(container, stream, start: float, out: np.ndarray, rate: int, budget: _Budget,
                channel: int | str = "mean") -> None:
    """Fill `out` with mono audio from `start` (absolute seconds) on, placed by timestamp; damaged
    packets, and decoded audio the resampler refuses, leave silence."""
    seek_keyframe(container, stream, start - AUDIO_PREROLL)
    end_time = start + len(out) / rate
    time_base = float(stream.time_base)
    runs: list[_AudioRun] = []
    finished = False
    errors: list[str] = []
    for packet in _packets(container, stream, errors):
        budget.check("audio", start)
        for frame in _decoded(packet, errors):
            if frame.pts is None:
                continue  # without a time it cannot be placed
            begin = frame.pts * time_base
            if begin >= end_time:
                finished = True
                break
            if begin + frame.samples / frame.sample_rate < start - _RESAMPLER_MARGIN:
                continue  # pre-roll: decoded to settle the decoder, not needed any more
            if not runs or not runs[-1].add(frame, begin):
                runs.append(_AudioRun(frame, begin))
        if finished:
            break
    first = round(start * rate)  # sample number of out[0] on the stream's clock
    for run in runs:
        try:
            run.resample_into(out, first, rate, channel)
        except av.error.FFmpegError as err:  # e.g. damaged data decoded as 25 channels in no known order
            errors.append(f"resampling {run.format}: {err}")
    if errors:
        log.debug("%s: audio near %.3f s: %d damaged parts left silent (%s)", budget.name, start, len(errors),
                  errors[-1])


class _AudioRun:
    """Decoded audio without gaps and in one sample format, gathered in a FIFO so that it goes
    through the resampler in one call (PyAV's per-call overhead, not the resampling itself,
    dominates when frames are resampled one by one).

    Where the run starts is estimated from every frame's timestamp, not just the first one's:
    Matroska stores times to the millisecond, so any single frame may be 0.5 ms off."""

    def __init__(self, frame: av.AudioFrame, begin: float):
        self.format = (frame.format.name, frame.layout.name, frame.sample_rate)
        self.end = begin
        self.tolerance = max(2.0, float(frame.time_base) * frame.sample_rate)  # samples; a clock tick may be coarse
        self.samples = 0
        self.starts: list[float] = []  # run start implied by each frame's timestamp
        self.fifo = av.AudioFifo()
        self.add(frame, begin)

    def add(self, frame: av.AudioFrame, begin: float) -> bool:
        """Append `frame` (starting at `begin` seconds) when it continues this run; False if not."""
        rate = frame.sample_rate
        if (frame.format.name, frame.layout.name, rate) != self.format or abs(begin - self.end) * rate > self.tolerance:
            return False
        self.starts.append(begin - self.samples / rate)
        self.samples += frame.samples
        self.end = begin + frame.samples / rate
        frame.pts = None  # the FIFO would check timestamps against its own count from zero
        self.fifo.write(frame)
        return True

    def resample_into(self, out: np.ndarray, first: int, rate: int, channel: int | str = "mean") -> None:
        """Resample to float at `rate`, make it mono (`to_mono`) and copy what falls inside `out` (whose
        first sample is sample number `first`)."""
        source_rate = self.format[2]
        first_input = round(float(np.median(self.starts)) * source_rate)
        # start on an input sample that falls on the output grid, or every output sample would be
        # a fraction of a sample away from where it is put (drops < 10 ms of the pre-roll margin)
        skip = -first_input % (source_rate // math.gcd(source_rate, rate))
        if skip >= self.fifo.samples:
            return
        if skip:
            self.fifo.read(skip)
        joined = self.fifo.read()
        joined.pts, joined.time_base = first_input + skip, Fraction(1, source_rate)
        for piece in _resampled(joined, rate):
            samples = to_mono(piece.to_ndarray(), channel)
            offset = round(piece.pts * piece.time_base * rate) - first
            lo, hi = max(offset, 0), min(offset + len(samples), len(out))
            if hi > lo:
                out[lo:hi] = samples[lo - offset:hi - offset]


def _resampled(frame: av.AudioFrame, rate: int) -> list[av.AudioFrame]:
    """`frame` as planar float at `rate`, every channel kept (mixed down by `to_mono`: FFmpeg's own
    stereo downmix adds sqrt(2) of gain to float output), flushed: the filter graph
    `av.AudioResampler` builds, but with one thread (AudioResampler's graph starts a thread pool per
    instance, which cost more than the resampling itself on short clips)."""
    graph = av.filter.Graph()
    graph.threads = 1
    source = graph.add("abuffer", sample_rate=str(frame.sample_rate), sample_fmt=frame.format.name,
                       channel_layout=frame.layout.name, time_base=str(frame.time_base))
    convert = graph.add("aformat", sample_rates=str(rate), sample_fmts="fltp")
    sink = graph.add("abuffersink")
    source.link_to(convert)
    convert.link_to(sink)
    graph.configure()
    pieces = []
    for item in (frame, None):
        graph.push(item)
        while True:
            try:
                pieces.append(graph.pull())
            except (EOFError, av.error.BlockingIOError):
                break
    return pieces
