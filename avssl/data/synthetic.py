"""Synthetic videos: a writer for real media files and a tiny corpus whose picture and sound agree.

`write_video` muxes frames and/or audio with PyAV into MP4, MKV, WebM, AVI (or M4A for sound
alone), so tests and demos exercise the same decoder paths as real data. `make_corpus` writes a
small labelled corpus: the easy kind, in which each class is a (shape, colour) paired with a tone, and
within each video the shape flashes exactly when a sound burst starts, so audio-visual correspondence
holds across classes (what sounds) and within a class (when it sounds); or the hard, sparse kind
(`avssl.data.synthetic_sparse`).
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import av
import numpy as np

log = logging.getLogger(__name__)

# Codecs used when none is named, by file suffix: (video codec, audio codec).
# AVI gets MPEG-4 part 2 (as in UCF101 and HMDB51) and PCM: FFmpeg's AVI muxer shifts video
# timestamps by a frame with H.264, or with AAC/MP3 and their encoder delay.
_DEFAULT_CODECS = {".webm": ("libvpx-vp9", "libopus"), ".avi": ("mpeg4", "pcm_s16le")}
_FALLBACK_CODECS = ("libx264", "aac")
# x264's macroblock-tree rate control made the bytes (and decoded pixels) of the same frames vary
# with what the process had done before; without it the output is reproducible.
_ENCODER_OPTIONS = {"libx264": {"x264-params": "mbtree=0"}}
# Encoders that cannot take more than this many audio channels (the audio is downmixed).
_MAX_CHANNELS = {"libmp3lame": 2}
# A fine clock for variable-frame-rate files: frame times are kept to the millisecond.
_VFR_TIME_BASE = Fraction(1, 1000)


def _layout(channels: int) -> av.AudioLayout:
    names = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
    return av.AudioLayout(names.get(channels, channels))


def _pixel_format(codec: str, width: int, height: int) -> str:
    """yuv420p where possible; 4:2:0 needs even sizes in H.264, so odd sizes get yuv444p there."""
    if width % 2 == 0 and height % 2 == 0 or codec.startswith("libvpx"):
        return "yuv420p"
    formats = [f.name for f in av.Codec(codec, "w").video_formats or ()]
    if "yuv444p" in formats:
        return "yuv444p"
    raise ValueError(f"{codec} cannot encode the odd frame size {width}x{height}; use libx264 or libvpx-vp9")


def _add_video(container, codec: str, frames: np.ndarray, fps: float, variable: bool, keyframe_interval: int | None):
    options = _ENCODER_OPTIONS.get(codec, {})
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = _pixel_format(codec, stream.width, stream.height)
    if keyframe_interval:
        stream.codec_context.gop_size = keyframe_interval
    if variable:
        stream.time_base = stream.codec_context.time_base = _VFR_TIME_BASE
    return stream


def _add_audio(container, codec: str, channels: int, rate: int):
    rates = av.Codec(codec, "w").audio_rates
    if rates and rate not in rates:
        # the encoder resamples; pick the nearest rate the codec accepts (e.g. Opus has no 44.1 kHz)
        rate = min(rates, key=lambda r: (abs(r - rate), -r))
    channels = min(channels, _MAX_CHANNELS.get(codec, channels))
    return container.add_stream(codec, rate=rate, layout=_layout(channels))


def write_video(
    path: str | Path,
    frames: np.ndarray | None,
    fps: float,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    *,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    frame_times: Sequence[float] | None = None,
    keyframe_interval: int | None = None,
) -> Path:
    """Encode `frames` (T, H, W, 3) uint8 and `audio` (C, N) float32 in [-1, 1] into a media file.

    The container follows the suffix (.mp4, .m4v, .mov, .mkv, .webm, .avi; .m4a for audio alone).
    Codecs default by container: H.264 + AAC, VP9 + Opus for .webm, MPEG-4 part 2 + PCM for .avi.
    Odd frame sizes are encoded as yuv444p H.264 (4:2:0 H.264 needs even sizes; VP9 takes them as
    they are; MPEG-4 part 2 refuses them). With
    `frame_times` (seconds, increasing, one per frame) the file has a variable frame rate; otherwise
    frame i is shown at i / fps. `keyframe_interval` caps the frames between keyframes (the encoder's
    default otherwise: 250 for H.264). Either `frames` or `audio` may be None, not both.
    """
    path = Path(path)
    if frames is None and audio is None:
        raise ValueError("write_video needs frames, audio or both")
    default_video, default_audio = _DEFAULT_CODECS.get(path.suffix.lower(), _FALLBACK_CODECS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        if frames is not None:
            frames = np.ascontiguousarray(frames, dtype=np.uint8)
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
            if frame_times is not None and len(frame_times) != len(frames):
                raise ValueError(f"{len(frame_times)} frame_times for {len(frames)} frames")
            video = _add_video(container, video_codec or default_video, frames, fps, frame_times is not None,
                               keyframe_interval)
        if audio is not None:
            audio = np.ascontiguousarray(np.atleast_2d(audio), dtype=np.float32)
            sound = _add_audio(container, audio_codec or default_audio, audio.shape[0], audio_rate)
        if frames is not None:
            _encode_frames(container, video, frames, frame_times)
        if audio is not None:
            _encode_audio(container, sound, audio, audio_rate)
    return path


def _encode_frames(container, stream, frames: np.ndarray, frame_times: Sequence[float] | None) -> None:
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        if frame_times is None:
            frame.pts = i
        else:
            frame.pts = round(frame_times[i] / _VFR_TIME_BASE)
            frame.time_base = _VFR_TIME_BASE
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _encode_audio(container, stream, audio: np.ndarray, rate: int) -> None:
    frame = av.AudioFrame.from_ndarray(audio, format="fltp", layout=_layout(audio.shape[0]))
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    container.mux(stream.encode(frame))  # PyAV re-chunks, converts and resamples for the encoder
    container.mux(stream.encode(None))


def counter_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """Flat frames whose colour spells their index (three base-8 digits), for checking which frame a
    decoder returned: read it back with `counter_value`. Survives lossy coding (levels 32 apart)."""
    index = np.arange(num_frames)
    digits = np.stack([(index >> (3 * k)) & 7 for k in range(3)], axis=-1)
    colours = (16 + 32 * digits).astype(np.uint8)
    return np.broadcast_to(colours[:, None, None, :], (num_frames, height, width, 3)).copy()


def counter_value(frame: np.ndarray) -> int:
    """The index written by `counter_frames` into a decoded (H, W, 3) frame (read at its centre)."""
    h, w = frame.shape[:2]
    pixel = frame[h // 2, w // 2].astype(np.int64)
    digits = np.clip(np.rint((pixel - 16) / 32), 0, 7).astype(np.int64)
    return int(digits[0] + 8 * digits[1] + 64 * digits[2])


@dataclass(frozen=True)
class SyntheticClass:
    """One class of the synthetic corpus: what is seen (shape, colour) and heard (pitch, timbre)."""

    name: str
    shape: str
    colour: tuple[int, int, int]
    pitch: float                   # fundamental frequency in Hz
    harmonics: tuple[float, ...]   # amplitude of harmonic 1, 2, ...: the timbre


CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass("circle_low", "circle", (230, 60, 60), 220.0, (1.0,)),
    SyntheticClass("square_mid", "square", (60, 200, 70), 440.0, (1.0, 0.0, 0.33, 0.0, 0.2)),
    SyntheticClass("triangle_high", "triangle", (70, 110, 240), 880.0, (1.0, 0.3)),
    SyntheticClass("diamond_buzz", "diamond", (230, 220, 60), 330.0, (1.0, 0.5, 0.33, 0.25, 0.2, 0.17)),
    SyntheticClass("ring_bell", "ring", (220, 70, 220), 587.0, (1.0, 0.0, 0.0, 0.6, 0.0, 0.0, 0.4)),
    SyntheticClass("cross_deep", "cross", (60, 220, 220), 147.0, (1.0, 0.7, 0.5)),
    SyntheticClass("hbar_whistle", "hbar", (245, 150, 40), 1320.0, (1.0,)),
    SyntheticClass("vbar_hum", "vbar", (200, 200, 200), 98.0, (1.0, 0.8, 0.6, 0.4)),
)


def shape_mask(shape: str, size: int) -> np.ndarray:
    """A boolean (size, size) sprite of the named shape."""
    y, x = (np.mgrid[:size, :size] + 0.5) / size * 2 - 1  # coordinates in [-1, 1]
    masks = {
        "circle": x**2 + y**2 <= 1,
        "square": (abs(x) <= 0.8) & (abs(y) <= 0.8),
        "triangle": (y <= 0.85) & (y >= 2 * abs(x) - 1),
        "diamond": abs(x) + abs(y) <= 1,
        "ring": (x**2 + y**2 <= 1) & (x**2 + y**2 >= 0.35),
        "cross": (abs(x) <= 0.3) | (abs(y) <= 0.3),
        "hbar": abs(y) <= 0.35,
        "vbar": abs(x) <= 0.35,
    }
    return masks[shape]


def _onsets(rng: np.random.Generator, duration: float) -> np.ndarray:
    """Random burst times, at least 0.35 s apart, about 1.2 per second."""
    count = max(1, round(1.2 * duration))
    times = np.sort(rng.uniform(0.1, max(0.2, duration - 0.3), size=4 * count))
    kept: list[float] = []
    for t in times:
        if not kept or t - kept[-1] >= 0.35:
            kept.append(float(t))
    picked = rng.choice(len(kept), size=min(count, len(kept)), replace=False)
    return np.sort(np.asarray(kept)[picked])


def _render_frames(spec: SyntheticClass, onsets: np.ndarray, rng: np.random.Generator,
                   num_frames: int, size: int, fps: float) -> np.ndarray:
    """A shape gliding and bouncing over a dark background; it grows and brightens for 0.15 s at
    every onset."""
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    frames[:] = rng.integers(10, 40, size=3, dtype=np.uint8)
    sprite = max(4, size * 3 // 10)
    sprites = {False: shape_mask(spec.shape, sprite), True: shape_mask(spec.shape, sprite * 13 // 10)}
    colour = np.array(spec.colour, np.float64)
    bright = (0.4 * colour + 0.6 * 255).astype(np.uint8)
    position = rng.uniform(0, size - sprite, size=2)
    velocity = rng.uniform(-1, 1, size=2) * size * 0.6  # pixels per second
    for i in range(num_frames):
        t = i / fps
        flash = bool(np.any((t + 1 / fps > onsets) & (t < onsets + 0.15)))  # frame overlaps a burst
        mask = sprites[flash]
        corner = np.clip(np.rint(position - (len(mask) - sprite) / 2).astype(int), 0, size - len(mask))
        region = frames[i, corner[0]:corner[0] + len(mask), corner[1]:corner[1] + len(mask)]
        region[mask] = bright if flash else colour.astype(np.uint8)
        position += velocity / fps
        for axis in range(2):  # bounce off the borders
            if not 0 <= position[axis] <= size - sprite:
                velocity[axis] = -velocity[axis]
                position[axis] = np.clip(position[axis], 0, size - sprite)
    return frames


def _render_audio(spec: SyntheticClass, onsets: np.ndarray, rng: np.random.Generator,
                  duration: float, rate: int) -> np.ndarray:
    """Decaying tone bursts of the class's pitch and timbre at the onsets, over faint noise: (1, N)."""
    n = round(duration * rate)
    audio = rng.normal(0, 0.005, size=n)
    pitch = spec.pitch * rng.uniform(0.97, 1.03)
    t = np.arange(round(0.3 * rate)) / rate
    tone = sum(a * np.sin(2 * np.pi * k * pitch * t)
               for k, a in enumerate(spec.harmonics, start=1) if k * pitch < 0.45 * rate)
    burst = 0.5 * tone / max(1.0, np.abs(tone).max()) * np.exp(-t / 0.08)
    for onset in onsets:
        start = round(onset * rate)
        piece = burst[: n - start]
        audio[start:start + len(piece)] += piece
    return np.clip(audio, -1, 1).astype(np.float32)[None]


CORPUS_KINDS = ("easy", "sparse")


def make_corpus(out_dir: str | Path, *, kind: str = "easy", **options: Any) -> Path:
    """Write a synthetic corpus of real MP4 files into `out_dir`; returns it.

    kind "easy" (`make_easy_corpus`): one loud tone burst per class and large shapes, the demo's corpus.
    kind "sparse" (`avssl.data.synthetic_sparse.make_sparse_corpus`): short events under per-clip
    nuisance, with unseen objects and voices at test time, the development corpus for learning that
    must work on real video. `options` are that function's keyword arguments.
    """
    if kind == "easy":
        return make_easy_corpus(out_dir, **options)
    if kind == "sparse":
        from avssl.data.synthetic_sparse import make_sparse_corpus  # it builds on this module's writers

        return make_sparse_corpus(out_dir, **options)
    raise ValueError(f"unknown corpus kind {kind!r}; choose one of {', '.join(CORPUS_KINDS)}")


def make_easy_corpus(
    out_dir: str | Path,
    *,
    num_classes: int = 4,
    videos_per_class: int = 8,
    duration: float = 3.0,
    size: int = 64,
    fps: int = 16,
    audio_rate: int = 16000,
    seed: int = 0,
    val_fraction: float = 0.25,
) -> Path:
    """Write a labelled synthetic corpus: out_dir/<class>/<i>.mp4 (H.264 + AAC) plus train.csv and
    val.csv (columns path,label; paths relative to out_dir; split stratified by class).

    Classes are the first `num_classes` of `CLASSES`. Each video draws its own onsets, motion and
    pitch jitter from (seed, class, i), so the corpus is reproducible.
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be between 1 and {len(CLASSES)}, got {num_classes}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out_dir = Path(out_dir)
    num_frames = max(1, round(duration * fps))
    split_rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
    for c, spec in enumerate(CLASSES[:num_classes]):
        num_val = min(videos_per_class - 1, round(videos_per_class * val_fraction)) if val_fraction else 0
        val_ids = set(split_rng.permutation(videos_per_class)[:num_val].tolist())
        for i in range(videos_per_class):
            rng = np.random.default_rng([seed, c, i])
            onsets = _onsets(rng, duration)
            frames = _render_frames(spec, onsets, rng, num_frames, size, fps)
            audio = _render_audio(spec, onsets, rng, duration, audio_rate)
            relative = f"{spec.name}/{i}.mp4"
            write_video(out_dir / relative, frames, fps, audio, audio_rate)
            rows["val" if i in val_ids else "train"].append((relative, spec.name))
    for split, entries in rows.items():
        with open(out_dir / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            writer.writerows(entries)
    log.info("wrote %d synthetic videos to %s", num_classes * videos_per_class, out_dir)
    return out_dir
