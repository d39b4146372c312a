"""Read a window of an audio stream as mono float samples at a given rate, placed by timestamp.

The stream seeks with a pre-roll (AAC and MP3 decode garbage for a few frames after a seek), is
resampled to float by FFmpeg's filter graph (what `av.AudioResampler` builds) and made mono (the mean
of the channels, or one of them), and each sample lands where its timestamp says: a window running
past the end, and damaged packets, leave silence.
"""
from __future__ import annotations

import logging
import math
from fractions import Fraction

import av
import av.filter
import numpy as np

from avssl.data.streams import Budget, decode_packet, demux_packets, seek_keyframe

log = logging.getLogger(__name__)

AUDIO_PREROLL = 0.5  # seconds decoded before an audio window and thrown away
_RESAMPLER_MARGIN = 0.05  # seconds of pre-roll audio kept before a window, as resampler context


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


def read_audio(container, stream, start: float, out: np.ndarray, rate: int, budget: Budget,
               channel: int | str = "mean") -> None:
    """Fill `out` with mono audio from `start` (absolute seconds) on, placed by timestamp; damaged
    packets, and decoded audio the resampler refuses, leave silence."""
    seek_keyframe(container, stream, start - AUDIO_PREROLL)
    end_time = start + len(out) / rate
    time_base = float(stream.time_base)
    runs: list[_AudioRun] = []
    finished = False
    errors: list[str] = []
    for packet in demux_packets(container, stream, errors):
        budget.check("audio", start)
        for frame in decode_packet(packet, errors):
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
        for piece in resampled(joined, rate):
            samples = to_mono(piece.to_ndarray(), channel)
            offset = round(piece.pts * piece.time_base * rate) - first
            lo, hi = max(offset, 0), min(offset + len(samples), len(out))
            if hi > lo:
                out[lo:hi] = samples[lo - offset:hi - offset]


def resampled(frame: av.AudioFrame, rate: int) -> list[av.AudioFrame]:
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
