"""Pick a window's frames by timestamp from one seek-and-decode pass over a video stream.

The stream seeks back to the keyframe before the window, decodes forward and stops at the last frame
it needs; a seek that lands after the window, or on a frame the decoder cannot start from (as MPEG-TS
seeks do), is tried again further back, down to the stream's start. Frames are chosen by their
presentation time, so variable frame rate files work; a window running past the end repeats the last
frame. Frames are resized inside the decoder's colour conversion.
"""
from __future__ import annotations

import logging
import math
from typing import Iterator

import av
import numpy as np

from avssl.data.streams import (Budget, DecodeError, decode_packet, demux_packets, seek_keyframe, stream_end,
                                stream_start)

log = logging.getLogger(__name__)

MAX_DECODED_FRAMES = 20_000  # per window: bounds a runaway decode (e.g. a keyframe every few minutes)
TIME_EPS = 1e-6  # seconds: timestamps are rationals turned into floats
_SKIP_END_MARGIN = 1.0  # seconds before the stream's end where no frame is skipped (see _skippable)
_START_MARGIN = 1.0  # seconds before the stream start where a seek "from the start" aims (_seek_points)


class NoFrameDecoded(DecodeError):
    """No video frame could be decoded for a window (worth one more try with a fresh decoder)."""


def output_size(frame: av.VideoFrame, short_side: int | None) -> tuple[int, int]:
    """(width, height) of `frame` resized so its shorter side has `short_side` pixels (None: as is)."""
    if short_side is None:
        return frame.width, frame.height
    scale = short_side / min(frame.width, frame.height)
    return max(1, round(frame.width * scale)), max(1, round(frame.height * scale))


def to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB; a colour space the converter refuses (a damaged header can
    name a reserved one) is taken as BT.601, the converter's default for an unspecified one."""
    try:
        return frame.to_ndarray(format="rgb24", width=width, height=height, threads=1)
    except av.error.FFmpegError:
        return frame.to_ndarray(format="rgb24", width=width, height=height, threads=1, src_colorspace="ITU601")


class VideoReader:
    """Picks frames by timestamp from one seek-and-decode pass over a window."""

    def __init__(self, container, stream, budget: Budget):
        self.container, self.stream, self.budget, self.name = container, stream, budget, budget.name
        self.time_base = float(stream.time_base)
        self.skip_before = stream_end(container, stream) - _SKIP_END_MARGIN
        self.errors: list[str] = []  # what the demuxer and decoder refused, for the error message

    def read(self, start: float, end: float, num_frames: int, short_side: int | None):
        """Frames (T, H, W, 3) and their times (absolute) for the window [start, end)."""
        targets = start + (np.arange(num_frames) + 0.5) * (end - start) / num_frames
        picked, last = self._decode_from_keyframe(targets)
        if last is None:
            why = f" ({self.errors[-1]})" if self.errors else ""
            raise NoFrameDecoded(f"no video frame decoded near {start:.3f} s{why}")
        picked += [(last, last.time)] * (num_frames - len(picked))  # past the end: repeat the last frame
        width, height = output_size(picked[0][0], short_side)
        images: dict[int, np.ndarray] = {}
        for frame, _ in picked:
            if id(frame) not in images:
                images[id(frame)] = to_rgb(frame, width, height)
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
            if first is not None and first <= targets[0] + TIME_EPS:
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
        thresholds = (targets - TIME_EPS).tolist() + [math.inf]
        wanted = len(targets)
        first = last = None
        decoded = 0
        context = self.stream.codec_context
        skipping = False
        for packet in demux_packets(self.container, self.stream, self.errors):
            self.budget.check("video", targets[0])
            if skipping != self._skippable(packet, thresholds[len(picked)]):
                skipping = not skipping
                context.skip_frame = "NONREF" if skipping else "DEFAULT"
            for frame in decode_packet(packet, self.errors):
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
