"""Clip decoding throughput: avssl's decode_clip against torchcodec and PyTorchVideo's EncodedVideo.

Each method decodes the same random 2-second windows (8 frames + audio) over the videos in DIR, one
process, one file opened per clip as a dataset would. torchcodec and pytorchvideo are optional (the
`bench` extra); a method that is not installed is reported as such.

    python benchmarks/decode.py --make /tmp/bench      # writes /tmp/bench/h264_640x360 and /tmp/bench/tiny_64
    python benchmarks/decode.py /tmp/bench/h264_640x360 --clips 100
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from avssl.data.decode import decode_clip
from avssl.data.scan import scan_source
from avssl.data.synthetic import make_corpus, write_video

Window = tuple[str, float, float]


def _scene(num_frames: int, height: int, width: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Frames with camera-like content: a drifting smooth texture, moving blocks and sensor noise."""
    y, x = np.mgrid[:height, :width].astype(np.float32)
    k = rng.uniform(0.01, 0.05, size=4)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    boxes = rng.uniform(0, 1, size=(5, 4))
    for i in range(num_frames):
        t = i / fps
        base = 110 + 50 * np.sin(k[0] * x + k[1] * y + 1.3 * t) + 40 * np.cos(k[2] * x - k[3] * y + 0.7 * t)
        image = np.stack([base, np.roll(base, 17, axis=1), np.roll(base, 31, axis=0)], axis=-1)
        for bx, by, vx, vy in boxes:
            cx = int((bx + 0.1 * vx * t) % 1 * (width - 60))
            cy = int((by + 0.1 * vy * t) % 1 * (height - 60))
            image[cy:cy + 60, cx:cx + 60] = 255 * np.array([vx, vy, 1 - vx])
        image += rng.normal(0, 4, size=image.shape[:2])[..., None]
        frames[i] = np.clip(image, 0, 255)
    return frames


def make_benchmark_corpora(root: Path, *, num_videos: int = 6, seconds: float = 10.0) -> None:
    """640x360 30 fps H.264 + 44.1 kHz stereo AAC (x264 defaults, as in many transcoded datasets) and
    the 64x64 synthetic corpus."""
    rng = np.random.default_rng(0)
    fps, rate = 30, 44100
    for i in range(num_videos):
        frames = _scene(round(seconds * fps), 360, 640, fps, rng)
        t = np.arange(round(seconds * rate)) / rate
        audio = 0.2 * np.sin(2 * np.pi * np.array([[220.0], [330.0]]) * t) * (1 + np.sin(3 * t))
        write_video(root / "h264_640x360" / f"{i}.mp4", frames, fps, audio.astype(np.float32), rate)
    make_corpus(root / "tiny_64")


def _windows(directory: Path, clips: int, seconds: float, seed: int) -> list[Window]:
    """`clips` random windows of `seconds` in the usable entries of `directory`, scanned as a dataset
    scans its source (the probe cache left alone)."""
    usable = scan_source(directory, probe_cache=False).usable
    if not usable:
        raise SystemExit(f"no decodable videos in {directory}")
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(clips):
        scanned = usable[rng.integers(len(usable))]
        start = scanned.start + float(rng.uniform(0, max(0.0, scanned.length - seconds)))
        windows.append((scanned.entry.path, start, start + seconds))
    return windows


def _targets(start: float, end: float, frames: int) -> list[float]:
    return [start + (i + 0.5) * (end - start) / frames for i in range(frames)]


def _avssl(frames: int, rate: int) -> Callable[[Window], None]:
    def run(window: Window) -> None:
        decode_clip(window[0], window[1], window[2], frames, audio_rate=rate)
    return run


def _torchcodec(frames: int, rate: int) -> Callable[[Window], None]:
    from torchcodec.decoders import AudioDecoder, VideoDecoder

    def run(window: Window) -> None:
        path, start, end = window
        video = VideoDecoder(path, seek_mode="approximate", num_ffmpeg_threads=1, dimension_order="NHWC")
        video.get_frames_played_at(_targets(start, end, frames))
        AudioDecoder(path, sample_rate=rate, num_channels=1).get_samples_played_in_range(start, end)
    return run


def _pytorchvideo(frames: int, rate: int) -> Callable[[Window], None]:
    from pytorchvideo.data.encoded_video import EncodedVideo

    def run(window: Window) -> None:  # pytorchvideo keeps the file's sample rate and channels
        clip = EncodedVideo.from_path(window[0], decode_audio=True, decoder="pyav").get_clip(window[1], window[2])
        clip["video"][:, np.linspace(0, clip["video"].shape[1] - 1, frames).round().astype(int)]
    return run


def _measure(methods: dict[str, Callable[[Window], None]], windows: list[Window]) -> dict[str, tuple[float, float]]:
    """Seconds of (wall clock, process CPU) each method spent on all windows. The methods take turns
    window by window, so a busy machine slows them alike; CPU time is the steadier figure there."""
    for run in methods.values():
        run(windows[0])  # warm-up: imports, codec tables
    spent = {name: [0.0, 0.0] for name in methods}
    for window in windows:
        for name, run in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run(window)
            spent[name][0] += time.perf_counter() - wall
            spent[name][1] += time.process_time() - cpu
    return {name: (wall, cpu) for name, (wall, cpu) in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="folder of videos (or, with --make, where to write corpora)")
    parser.add_argument("--make", action="store_true", help="write the benchmark corpora into DIR and stop")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--audio-rate", type=int, default=16000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.make:
        make_benchmark_corpora(args.dir)
        print(f"wrote {args.dir / 'h264_640x360'} and {args.dir / 'tiny_64'}")
        return
    windows = _windows(args.dir, args.clips, args.seconds, args.seed)
    print(f"{args.dir}: {len(windows)} clips of {args.seconds:g} s, {args.frames} frames + "
          f"{args.audio_rate} Hz mono audio, one process")
    # avssl and torchcodec take turns; pytorchvideo runs after them, alone: interleaved with it, the
    # others were measured up to 2x slower (it decodes whole audio tracks and churns memory)
    groups = ({"avssl decode_clip": _avssl, "torchcodec": _torchcodec}, {"pytorchvideo EncodedVideo": _pytorchvideo})
    spent: dict[str, tuple[float, float]] = {}
    for group in groups:
        methods = {}
        for name, make in group.items():
            try:
                methods[name] = make(args.frames, args.audio_rate)
            except ImportError:
                print(f"  {name:<26} not installed (pip install 'avssl[bench]')")
        if methods:
            spent.update(_measure(methods, windows))
    base_wall, base_cpu = spent["avssl decode_clip"]
    for name, (wall, cpu) in spent.items():
        line = f"  {name:<26} {len(windows) / wall:7.1f} clips/s  {1000 * cpu / len(windows):7.1f} ms CPU/clip"
        if name != "avssl decode_clip":
            line += f"   avssl is {wall / base_wall:.2f}x (wall), {cpu / base_cpu:.2f}x (CPU)"
        print(line)


if __name__ == "__main__":
    main()
