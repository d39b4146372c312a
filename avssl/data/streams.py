"""A container's streams, as the probe and the decoder both read them: which streams count, where they
start and end, how to seek to a keyframe, and demuxing and decoding that survive damaged data.

Every failure the decoder reports is a `DecodeError` naming the file; `Budget` bounds the time one
window may take.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import BinaryIO, Iterator

import av

# One decoder thread, slice threading only: breaking out of a frame-threaded decode early has hung
# PyAV, and parallelism comes from DataLoader workers anyway (colour conversion also runs on one thread).
DECODER_THREADS = 1


class DecodeError(RuntimeError):
    """A file or window could not be decoded; the message names the file and what failed."""


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


class Budget:
    """The time one window may take; `check` raises DecodeError once it is spent."""

    def __init__(self, name: str, timeout: float):
        self.name, self.timeout = name, timeout
        self.expires = time.monotonic() + timeout

    def check(self, what: str, near: float) -> None:
        """Raise DecodeError naming `what` was being decoded near `near` seconds once the time is spent."""
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


def demux_packets(container, stream, errors: list[str]) -> Iterator[av.Packet]:
    """`container.demux(stream)`, ended (not raised) by a demuxer error, which is added to `errors`:
    damaged data after a point reads like the end of the file."""
    demuxed = container.demux(stream)
    while True:
        try:
            packet = next(demuxed)
        except StopIteration:
            return
        except av.error.FFmpegError as err:
            errors.append(str(err))
            return
        except IndexError:  # PyAV's answer to a packet of a stream that appears mid-file
            errors.append("a packet of a stream the header did not announce")
            return
        yield packet


def decode_packet(packet: av.Packet, errors: list[str]) -> list:
    """The frames `packet` completes; none when the decoder refuses it (its error is added to
    `errors`): a damaged packet is skipped, as FFmpeg's own tools do."""
    try:
        return packet.decode()
    except av.error.FFmpegError as err:
        errors.append(str(err))
        return []


def stream_end(container, stream) -> float:
    """Where the stream ends according to the headers (absolute seconds; -inf when unknown)."""
    if stream.duration:
        return stream_start(stream) + float(stream.duration * stream.time_base)
    if container.duration:
        return ((container.start_time or 0) + container.duration) / 1_000_000
    return float("-inf")
