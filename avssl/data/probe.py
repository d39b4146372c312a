"""Scan video files once: duration, frame rate, streams and a validity verdict, cached on disk.

`probe_file` demuxes the video stream's packets without decoding them (only the first frame is
decoded, to prove the stream is readable), checks the duration against the other stream facts
(frame count, stream start, the container's duration: a damaged clock can claim 1e11 s, which a
sampler would cut into that many clip windows) and checks that the streams the decoder reads can
seek. It never raises, whatever PyAV raises on a bad file: it returns ok=False with a specific
reason. With ``audio_alone=True`` (a retrieval query, which may be a sound file) a file without a
video stream is judged the same way on its audio stream's packets instead of being refused.
`probe` adds a JSON cache keyed by (absolute path, size, mtime) (`probe_cache`), so scanning an
unchanged corpus a second time costs one stat per file.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import av
import av.logging
from tqdm import tqdm

from avssl.data.probe_cache import cached_info, default_cache_path, load_cache, save_cache
from avssl.data.streams import audio_stream, configure_decoder, seek_keyframe, stream_start, video_stream

log = logging.getLogger(__name__)

# Longer than this is a damaged clock, not a video.
MAX_DURATION = 24 * 3600.0
# Seconds per frame on average above which the clock, not the content, is what is slow.
MAX_FRAME_INTERVAL = 60.0
# FFmpeg error messages that mean the data stops before the container says it should.
_TRUNCATION_HINTS = ("partial file", "ended prematurely", "truncat", "unexpected end")
# Leading bytes of containers we know: a file that starts like one but cannot be opened is
# truncated or damaged, not "not a media file".
_SIGNATURES = ((4, (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")), (0, (b"\x1a\x45\xdf\xa3",)),
               (0, (b"RIFF", b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"\x30\x26\xb2\x75")))


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_file` learned about one file (see module docstring); `reason` is "" when ok.
    `has_video`: the file has a video stream (an ``audio_alone`` probe accepts files without one)."""

    path: str
    ok: bool
    reason: str
    duration: float = 0.0
    start: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    video_codec: str = ""
    has_video: bool = False
    has_audio: bool = False
    audio_rate: int = 0
    audio_channels: int = 0
    size_bytes: int = 0


_log_lock = threading.Lock()
_log_users = 0
_log_level_before: int | None = None


@contextlib.contextmanager
def _ffmpeg_errors() -> Iterator[list]:
    """Collect FFmpeg's error messages from this thread as (level, name, message) tuples.

    PyAV forwards nothing unless a log level is set, and the level is process-wide, so concurrent
    probes share one counted setting and the last one out restores the previous level. PyAV drops
    a message equal to the previous one, which would make a second broken file of the same kind
    lose its reason, so repeats are kept."""
    global _log_users, _log_level_before
    with _log_lock:
        if _log_users == 0:
            _log_level_before = av.logging.get_level()
            av.logging.set_level(av.logging.ERROR)
            av.logging.set_skip_repeated(False)
        _log_users += 1
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        with _log_lock:
            _log_users -= 1
            if _log_users == 0:
                av.logging.set_level(_log_level_before)


def _last_message(logs: list, err: Exception | None = None) -> str:
    if logs:
        return str(logs[-1][2]).strip()
    return getattr(err, "strerror", None) or str(err)


def _looks_like_media(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(16)
    return any(head[offset:offset + len(magic)] == magic for offset, magics in _SIGNATURES for magic in magics)


def probe_file(path: str | Path, *, audio_alone: bool = False) -> VideoInfo:
    """Probe one file; never raises for a bad file (ok=False and a specific reason instead).

    audio_alone: accept a file with sound and no video stream, judged on its audio packets (its
    ``has_video`` is False); corpora leave it off, since every clip needs frames."""
    try:
        return _probe_file(path, audio_alone)
    except Exception as err:  # PyAV raises more than FFmpegError on damaged data; one file must not stop a scan
        log.debug("probing %s failed", path, exc_info=True)
        return VideoInfo(str(path), False, f"unreadable ({type(err).__name__}: {err})")


def _probe_file(path: str | Path, audio_alone: bool) -> VideoInfo:
    name = str(path)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return VideoInfo(name, False, "missing file")
    except OSError as err:
        return VideoInfo(name, False, f"unreadable file ({err.strerror})")
    if os.path.isdir(path):
        return VideoInfo(name, False, "a folder, not a file")
    if size == 0:
        return VideoInfo(name, False, "zero-byte file")
    with _ffmpeg_errors() as logs:
        try:
            container = av.open(name, metadata_errors="ignore")
        except av.error.FFmpegError as err:
            message = _last_message(logs, err)
            if isinstance(err, EOFError) or _looks_like_media(Path(path)):
                return VideoInfo(name, False, f"truncated ({message})", size_bytes=size)
            return VideoInfo(name, False, f"not a media file ({message})", size_bytes=size)
        with container:
            return _probe_container(container, name, size, logs, audio_alone)


def _probe_container(container, name: str, size: int, logs: list, audio_alone: bool) -> VideoInfo:
    audio_track = audio_stream(container)
    audio = audio_track.codec_context if audio_track else None
    video = video_stream(container)
    base = VideoInfo(name, True, "", size_bytes=size, has_video=video is not None, has_audio=audio is not None,
                     audio_rate=audio.sample_rate if audio else 0, audio_channels=audio.channels if audio else 0)
    if video is None:
        if audio_alone and audio_track is not None:
            return _judge_stream(container, audio_track, base, logs, [audio_track])
        return replace(base, ok=False, reason="no video stream and no decodable audio stream" if audio_alone else "no video stream")
    if video.codec_context is None:  # e.g. an MP4 whose sample description box is damaged
        return replace(base, ok=False, reason="no decoder for the video stream")
    info = replace(base, fps=float(video.average_rate or video.guessed_rate or 0), width=video.codec_context.width,
                   height=video.codec_context.height, video_codec=video.codec_context.name)
    return _judge_stream(container, video, info, logs, [video, audio_track])


def _judge_stream(container, stream, info: VideoInfo, logs: list, seekable: list) -> VideoInfo:
    """`info` completed from the packets of `stream` (the video, or the sound of an audio-alone probe):
    its start and duration, then the verdict; every stream of `seekable` must seek as the decoder does."""
    kind = stream.type
    start = stream_start(stream)
    info = replace(info, start=start)
    scan = _PacketScan(stream)
    try:
        for packet in container.demux(stream):
            scan.add(packet)
        scan.finish()
    except av.error.FFmpegError as err:
        return replace(info, ok=False, reason=f"truncated ({_last_message(logs, err)})")
    except IndexError:  # PyAV's answer to a packet of a stream that appears mid-file
        return replace(info, ok=False, reason="damaged (a packet of a stream the header did not announce)")
    if scan.count == 0 and not logs:
        return replace(info, ok=False, reason=f"zero duration (no {kind} packets)")
    duration = scan.duration(start)
    if duration is None:
        duration = _declared_duration(stream, container, start) or 0.0
    info = replace(info, duration=duration)
    if kind == "video" and not info.fps:  # no declared rate: the packets' own
        info = replace(info, fps=scan.count / duration if duration > 0 else 0.0)
    problem = _truncation(stream, scan, info, logs)
    if problem:
        return replace(info, ok=False, reason=f"truncated ({problem})")
    if duration <= 0:
        return replace(info, ok=False, reason="zero duration")
    problem = _implausible_clock(container, scan, start, duration)
    if problem:
        return replace(info, ok=False, reason=problem)
    if scan.decode_error or not scan.decoded:
        return replace(info, ok=False, reason=f"undecodable {kind} ({scan.decode_error or 'no frame decoded'})")
    problem = _unseekable(container, seekable, duration)
    if problem:
        return replace(info, ok=False, reason=f"unseekable ({problem})")
    return info


def _implausible_clock(container, scan: _PacketScan, start: float, duration: float) -> str:
    """Why the stream facts contradict the scanned stream's clock ("" when they do not): a duration
    longer than MAX_DURATION, frames MAX_FRAME_INTERVAL apart on average, a stream start far after its
    first packets (clip times count from the start), or its packets spanning far more than the
    container's duration (which covers every stream). A stream header's own duration is not used:
    it can be shorter than its packets in a valid file (an MP4 with B-frames counts decoding times)."""
    if not math.isfinite(duration) or duration > MAX_DURATION:
        return f"absurd duration ({duration:.4g} s, more than {MAX_DURATION / 3600:g} h)"
    if scan.count and duration / scan.count > MAX_FRAME_INTERVAL:
        return f"absurd duration ({duration:.4g} s for {scan.count} frames)"
    kind = scan.stream.type
    first = scan.start()
    if first is not None and start - first > 1.0:
        return f"inconsistent timestamps (the {kind} starts at {start:.2f} s, its packets at {first:.2f} s)"
    whole = container.duration / 1_000_000 if container.duration else None
    if whole and duration > 1.5 * whole + 1.0:
        return f"inconsistent duration ({kind} packets span {duration:.2f} s, the container says {whole:.2f} s)"
    return ""


def _unseekable(container, streams: list, duration: float) -> str:
    """Which stream cannot seek to its start or its middle, as the decoder does for every window
    ("" when all can); e.g. an MP4 track whose sample tables are damaged has no index."""
    for stream in filter(None, streams):
        for seconds in (stream_start(stream), stream_start(stream) + duration / 2):
            try:
                seek_keyframe(container, stream, seconds)
            except av.error.FFmpegError as err:
                return f"{stream.type} stream: {getattr(err, 'strerror', None) or err}"
    return ""


class _PacketScan:
    """Walks the demuxed packets of one stream (the video, or an audio-alone file's sound): count, time span,
    and one decoded frame as a health check."""

    def __init__(self, stream):
        self.stream = stream
        self.count = 0
        self.first: int | None = None
        self.end: int | None = None
        self.last_corrupt = False
        self.decoded = False
        self.decode_error = ""
        # a packet without a duration is taken to last one frame (1/25 s where no frame rate is known)
        rate = stream.average_rate if stream.type == "video" else None
        self.frame_ticks = max(1, round(1 / (float(rate or 25) * stream.time_base)))
        configure_decoder(stream)

    def add(self, packet: av.Packet) -> None:
        if packet.size == 0 and packet.pts is None and packet.dts is None:
            return  # the flush packet PyAV yields at the end of the stream
        self.count += 1
        self.last_corrupt = packet.is_corrupt
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is not None:
            self.first = stamp if self.first is None else min(self.first, stamp)
            stop = stamp + (packet.duration or self.frame_ticks)
            self.end = stop if self.end is None else max(self.end, stop)
        if not self.decoded and not self.decode_error:
            self._decode(packet)

    def finish(self) -> None:
        if not self.decoded and not self.decode_error and self.count:
            self._decode(None)  # drain frames the decoder held back

    def _decode(self, packet: av.Packet | None) -> None:
        try:
            self.decoded = bool(self.stream.codec_context.decode(packet))
        except av.error.FFmpegError as err:
            self.decode_error = getattr(err, "strerror", None) or str(err)

    def start(self) -> float | None:
        """Seconds of the earliest packet timestamp, None without timestamps."""
        return None if self.first is None else float(self.first * self.stream.time_base)

    def duration(self, start: float) -> float | None:
        """Seconds from the stream start to the end of the last packet, None without timestamps."""
        if self.end is None:
            return None
        end = float(self.end * self.stream.time_base)
        return max(0.0, end - min(start, self.start()))


def _stream_duration(stream) -> float | None:
    """Duration the container claims for this stream: its header or Matroska's DURATION tag."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", tag or "")
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _declared_duration(stream, container, start: float) -> float | None:
    """The stream's claimed duration or, weaker, the whole file's (which covers every stream)."""
    claimed = _stream_duration(stream)
    if claimed is None and container.duration:
        claimed = container.duration / 1_000_000 - start
    return claimed


def _truncation(stream, scan: _PacketScan, info: VideoInfo, logs: list) -> str:
    """Why the packets show the file was cut short, or "" when they do not."""
    hints = [str(m).strip() for _, _, m in logs if any(h in str(m).lower() for h in _TRUNCATION_HINTS)]
    if hints:
        return hints[-1]
    declared_frames = stream.frames
    if declared_frames and scan.count + max(2, declared_frames // 100) < declared_frames:
        return f"{scan.count} of {declared_frames} {stream.type} packets"
    if scan.last_corrupt:
        return "last video packet is corrupt"
    frame = 1 / info.fps if info.fps else 0.04
    claimed = _stream_duration(stream)
    if claimed and claimed - info.duration > max(3 * frame, 0.02 * claimed):
        return f"{stream.type} packets end at {info.duration:.2f} s of {claimed:.2f} s"
    return ""


def _from_cache(entry: dict | None, stat: os.stat_result, path: str) -> VideoInfo | None:
    info = cached_info(entry, stat)
    try:
        return VideoInfo(**{**info, "path": path}) if info is not None else None
    except TypeError:  # fields of another VideoInfo: probed again
        return None


def probe(
    paths: Sequence[str | Path],
    *,
    cache: str | Path | bool | None = None,
    show_progress: bool = False,
    num_workers: int | None = None,
) -> list[VideoInfo]:
    """Probe many files (in input order), reusing cached results for files whose size and mtime are
    unchanged.

    cache: a JSON file, None for `default_cache_path()`, or False for no cache. num_workers: threads
    probing at once (FFmpeg releases the GIL while demuxing); default min(8, CPU count).
    """
    cache_path = None if cache is False else default_cache_path() if cache in (None, True) else Path(cache)
    entries = load_cache(cache_path) if cache_path else {}
    results: list[VideoInfo | None] = [None] * len(paths)
    todo: list[tuple[int, str, os.stat_result | None]] = []
    for i, path in enumerate(paths):
        key = os.path.abspath(path)
        try:
            stat = os.stat(key)
        except OSError:
            stat = None
        results[i] = _from_cache(entries.get(key), stat, str(path)) if stat else None
        if results[i] is None:
            todo.append((i, key, stat))
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        probed = pool.map(lambda job: probe_file(paths[job[0]]), todo)
        new = {}
        for (i, key, stat), info in tqdm(zip(todo, probed), total=len(todo), disable=not show_progress,
                                         desc="probing videos", unit="file"):
            results[i] = info
            if stat is not None:
                new[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "info": asdict(info)}
    if cache_path and new:
        save_cache(cache_path, new)
    return results


def summarize(infos: Sequence[VideoInfo]) -> str:
    """One line: "N ok, M bad (reason: count, ...)", reasons grouped by kind (details dropped)."""
    bad = Counter(info.reason.split(" (")[0] for info in infos if not info.ok)
    ok = sum(info.ok for info in infos)
    if not bad:
        return f"{ok} ok, 0 bad"
    return f"{ok} ok, {sum(bad.values())} bad ({', '.join(f'{r}: {n}' for r, n in bad.most_common())})"

