"""Fuzz the probe and the decoder with damaged copies of tiny valid videos: crashes, hangs, wrong verdicts.

    python benchmarks/fuzz.py                      # 1,000 files, seed 0
    python benchmarks/fuzz.py --files 5000 --seed 1 --keep /tmp/fuzz   # keep the files to look at

Writes tiny valid videos in every container avssl reads in practice (MP4, MOV, Matroska, WebM, AVI,
MPEG-TS), then derives N files from them with a fixed seed:

- valid: an unchanged copy, or a copy under another container's suffix (FFmpeg reads the bytes);
- must-reject: zero-byte, text, random bytes, audio only, no video frames, a header cut off after
  64 bytes, an MP4 whose video clock says the clip lasts 1e5 to 1e11 s;
- corrupt: byte flips, truncations, zeroed headers, zeroed ranges, renamed or resized MP4 boxes.

Each file goes through `probe_file` and, when accepted, `decode_clips` over a window at its start,
middle and end, in a worker process that is killed and restarted when one file takes longer than
--timeout seconds. A file is judged:

- crash: an exception escaped (anything but a `DecodeError` from the decoder), a rejection came
  without a reason, or the worker died;
- hang: the file took longer than --timeout;
- wrongly accepted: a must-reject file was accepted, or an accepted file failed a window;
- wrongly rejected: a valid file was rejected or failed a window.

Corrupt files may be accepted (and then must decode) or rejected (with a reason). The counts of the
four are printed; the target is 0 / 0 / 0 / 0. `tests/data/test_fuzz.py` runs a few dozen files.
"""
from __future__ import annotations

import argparse
import json
import random
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

VALID, REJECT, CORRUPT = "valid", "must-reject", "corrupt"
JUDGEMENTS = ("crash", "hang", "wrongly accepted", "wrongly rejected")
# Valid bases: file name -> write_video arguments. Keyframes every 8 frames (0.5 s), several per file;
# the MPEG-TS ones every 16 and only at the start, so that windows start between keyframes.
_BASES = {
    "h264.mp4": {}, "h264.mov": {}, "h264.mkv": {}, "vp9.webm": {}, "mpeg4.avi": {},
    "h264.ts": {"keyframe_interval": 16}, "one_keyframe.ts": {"keyframe_interval": 250},
}
_BASE_SECONDS, _BASE_FPS = 3.0, 16
_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex"}
_WINDOW = 1.0  # seconds per decoded window


@dataclass(frozen=True)
class Case:
    """One fuzz file: its path, what it must be judged as (VALID, REJECT or CORRUPT), and how it was made."""

    path: Path
    kind: str
    how: str


def write_bases(folder: Path) -> dict[str, Path]:
    """The tiny valid videos everything is derived from (3 s, 64x48, 16 fps, with sound), plus an
    audio-only file and a file without video frames (both must be rejected), by name."""
    from avssl.data.synthetic import counter_frames, write_video

    folder.mkdir(parents=True, exist_ok=True)
    count = round(_BASE_SECONDS * _BASE_FPS)
    frames = counter_frames(count, 48, 64)
    t = np.arange(round(_BASE_SECONDS * 16000)) / 16000
    sound = (0.2 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    bases = {name: write_video(folder / name, frames, _BASE_FPS, sound, 16000,
                               keyframe_interval=options.get("keyframe_interval", 8))
             for name, options in _BASES.items()}
    bases["audio_only.m4a"] = write_video(folder / "audio_only.m4a", None, _BASE_FPS, sound, 16000)
    bases["no_frames.mkv"] = write_video(folder / "no_frames.mkv", frames[:0], _BASE_FPS, sound, 16000)
    return bases


def mp4_boxes(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, type) of every box of an MP4 / MOV file, depth first; a malformed size ends a level."""
    found: list[tuple[int, bytes]] = []

    def walk(start: int, end: int) -> None:
        pos = start
        while pos + 8 <= end:
            size, kind = struct.unpack(">I4s", data[pos:pos + 8])
            header = 8
            if size == 1 and pos + 16 <= end:
                size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
            elif size == 0:
                size = end - pos
            if size < header or pos + size > end:
                return
            found.append((pos, kind))
            if kind in _MP4_CONTAINERS:
                walk(pos + header, pos + size)
            pos += size

    walk(0, len(data))
    return found


def absurd_clock(data: bytes, rng: random.Random) -> bytes:
    """The video track's clock set to 1 tick per second and every frame made 1e5 to 1e11 s long
    (mdhd timescale, stts deltas, mdhd duration to match; the edit list renamed away)."""
    out = bytearray(data)
    boxes = mp4_boxes(data)
    traks = [k for k, (_, kind) in enumerate(boxes) if kind == b"trak"] + [len(boxes)]
    for first, stop in zip(traks, traks[1:]):
        inside = {kind: pos for pos, kind in reversed(boxes[first:stop])}
        hdlr = inside.get(b"hdlr")
        if hdlr is None or data[hdlr + 16:hdlr + 20] != b"vide":
            continue
        mdhd, stts = inside[b"mdhd"], inside[b"stts"]
        entries = struct.unpack(">I", data[stts + 12:stts + 16])[0]
        frames = sum(struct.unpack(">I", data[stts + 16 + 8 * k:stts + 20 + 8 * k])[0] for k in range(entries))
        delta = max(2, min(2 ** 32 - 1, round(10 ** rng.uniform(5, 11) / frames)))
        for k in range(entries):
            struct.pack_into(">I", out, stts + 20 + 8 * k, delta)
        version = data[mdhd + 8]
        clock = mdhd + (28 if version == 1 else 20)
        struct.pack_into(">I", out, clock, 1)
        if version == 1:
            struct.pack_into(">Q", out, clock + 4, frames * delta)
        else:
            struct.pack_into(">I", out, clock + 4, min(2 ** 32 - 1, frames * delta))
        if b"edts" in inside:
            out[inside[b"edts"] + 4:inside[b"edts"] + 8] = b"free"
    return bytes(out)


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    count = rng.choice((1, 2, 4, 8, 16, 64))
    for _ in range(count):
        out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
    return bytes(out), f"{count} bytes flipped"


def _truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    keep = rng.uniform(0.02, 0.99)
    return data[:max(1, int(len(data) * keep))], f"cut at {keep:.0%}"


def _zero_header(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    count = rng.choice((4, 8, 16, 64, 256, 1024))
    return bytes(count) + data[count:], f"first {count} bytes zeroed"


def _zero_range(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    length = rng.randrange(1, max(2, len(data) // 10))
    start = rng.randrange(len(data) - length)
    return data[:start] + bytes(length) + data[start + length:], f"{length} bytes zeroed at {start}"


def _rename_box(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    boxes = mp4_boxes(data)
    pos, kind = rng.choice(boxes)
    new = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(4))
    return data[:pos + 4] + new + data[pos + 8:], f"box {kind.decode('latin-1')} renamed {new.decode()}"


def _resize_box(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    pos, kind = rng.choice(mp4_boxes(data))
    size = struct.unpack(">I", data[pos:pos + 4])[0]
    new = rng.choice((0, 1, 7, size - 1, size + 1, size * 2, 2 ** 32 - 1)) % 2 ** 32
    return data[:pos] + struct.pack(">I", new) + data[pos + 4:], f"box {kind.decode('latin-1')} size {size} -> {new}"


_CORRUPTIONS: dict[str, Callable[[bytes, random.Random], tuple[bytes, str]]] = {
    "flip": _flip, "truncate": _truncate, "zero header": _zero_header, "zero range": _zero_range,
    "rename box": _rename_box, "resize box": _resize_box,
}
_MP4_ONLY = {"rename box", "resize box"}


def _valid(bases: dict[str, Path], rng: random.Random) -> tuple[bytes, str, str]:
    name = rng.choice(list(_BASES))
    suffix = rng.choice([Path(n).suffix for n in _BASES] + [Path(name).suffix] * 4)
    how = "unchanged" if suffix == Path(name).suffix else f"renamed to {suffix}"
    return bases[name].read_bytes(), suffix, f"{name} {how}"


def _must_reject(bases: dict[str, Path], rng: random.Random) -> tuple[bytes, str, str]:
    choice = rng.randrange(7)
    if choice == 0:
        return b"", ".mp4", "zero bytes"
    if choice == 1:
        return b"these are notes, not a video\n" * rng.randrange(1, 50), ".mkv", "text"
    if choice == 2:
        return rng.randbytes(rng.randrange(16, 20000)), rng.choice((".mp4", ".avi", ".ts")), "random bytes"
    if choice == 3:
        return bases["audio_only.m4a"].read_bytes(), ".mp4", "audio only"
    if choice == 4:
        return bases["no_frames.mkv"].read_bytes(), ".mkv", "no video frames"
    if choice == 5:
        name = rng.choice(list(_BASES))
        return bases[name].read_bytes()[:64], Path(name).suffix, f"{name} cut after 64 bytes"
    name = rng.choice(("h264.mp4", "h264.mov"))
    return absurd_clock(bases[name].read_bytes(), rng), Path(name).suffix, f"{name} with an absurd video clock"


def _corrupt(bases: dict[str, Path], rng: random.Random) -> tuple[bytes, str, str]:
    name = rng.choice(list(_BASES))
    suffix = Path(name).suffix
    kinds = [k for k in _CORRUPTIONS if suffix in (".mp4", ".mov") or k not in _MP4_ONLY]
    kind = rng.choice(kinds)
    data, how = _CORRUPTIONS[kind](bases[name].read_bytes(), rng)
    return data, suffix, f"{name}: {how}"


def make_cases(bases: dict[str, Path], folder: Path, count: int, seed: int = 0) -> list[Case]:
    """`count` fuzz files written into `folder` (about 10 % valid, 10 % must-reject, the rest corrupt)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for k in range(count):
        draw = rng.random()
        kind = VALID if draw < 0.1 else REJECT if draw < 0.2 else CORRUPT
        maker = {VALID: _valid, REJECT: _must_reject, CORRUPT: _corrupt}[kind]
        data, suffix, how = maker(bases, rng)
        path = folder / f"{k:05d}{suffix}"
        path.write_bytes(data)
        cases.append(Case(path, kind, how))
    return cases


def check_file(path: str | Path, exact: bool = False) -> dict:
    """What avssl makes of one file: {"outcome": accepted | rejected | undecodable | crash, "detail": ...}.

    Accepted files have a window at their start, middle and end decoded as the training loader would;
    with `exact` (valid files) every frame must also be within a frame of the time it was taken for."""
    from avssl.data.decode import DecodeError, decode_clips
    from avssl.data.probe import probe_file

    try:
        info = probe_file(path)
    except Exception:  # what the benchmark counts: nothing may escape the probe
        return {"outcome": "crash", "detail": f"probe_file raised: {traceback.format_exc(limit=3)}"}
    if not info.ok:
        return {"outcome": "rejected" if info.reason else "crash", "detail": info.reason or "no reason given"}
    width = min(_WINDOW, info.duration)
    middle = max(0.0, info.duration / 2 - width / 2)
    windows = [(0.0, width), (middle, middle + width), (info.duration - width, info.duration)]
    try:
        clips = decode_clips(path, windows, 4, audio_rate=16000, timeout=30.0)
    except DecodeError as err:
        return {"outcome": "undecodable", "detail": str(err)}
    except Exception:  # the decoder may raise DecodeError only
        return {"outcome": "crash", "detail": f"decode_clips raised: {traceback.format_exc(limit=3)}"}
    tolerance = 1 / info.fps + 1e-3 if info.fps > 0 else width
    for (start, end), clip in zip(windows, clips if exact else []):
        targets = start + (np.arange(4) + 0.5) * (end - start) / 4
        if np.abs(clip.frame_times.numpy() - targets).max() > tolerance:
            return {"outcome": "undecodable", "detail": f"frames at {clip.frame_times.tolist()} for {targets.tolist()}"}
    return {"outcome": "accepted", "detail": f"{info.duration:.2f} s"}


def judge(kind: str, outcome: str) -> str:
    """One of JUDGEMENTS, or "fine"; outcome is check_file's, or "hang"."""
    if outcome in ("crash", "hang"):
        return outcome
    if kind == VALID:
        return "fine" if outcome == "accepted" else "wrongly rejected"
    if kind == REJECT:
        return "fine" if outcome == "rejected" else "wrongly accepted"
    return "wrongly accepted" if outcome == "undecodable" else "fine"


class _Worker:
    """A child process running `check_file` on one path at a time, replaced when it hangs or dies."""

    def __init__(self):
        self.process: subprocess.Popen | None = None

    def check(self, case: Case, timeout: float) -> dict:
        if self.process is None:
            self.process = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            if (self._wait(timeout=120.0) or {}).get("outcome") != "ready":  # said once avssl is imported
                raise RuntimeError("the fuzz worker process did not start")
        self.process.stdin.write(json.dumps({"path": str(case.path), "exact": case.kind == VALID}) + "\n")
        self.process.stdin.flush()
        answer = self._wait(timeout)
        return answer if answer is not None else {"outcome": "hang", "detail": f"no answer in {timeout:g} s"}

    def _wait(self, timeout: float) -> dict | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else None
        if line:
            return json.loads(line)
        code = self.process.poll()
        self.close()
        if line is None:
            return None
        return {"outcome": "crash", "detail": f"worker died (exit code {code})"}

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def run_cases(cases: list[Case], timeout: float = 20.0) -> Iterator[tuple[Case, dict, str]]:
    """(case, check_file's answer, judgement) for each case, each file checked in a worker process."""
    worker = _Worker()
    try:
        for case in cases:
            answer = worker.check(case, timeout)
            yield case, answer, judge(case.kind, answer["outcome"])
    finally:
        worker.close()


def _serve() -> None:
    """The worker's loop: check_file's arguments as one JSON line in, its answer as one JSON line out."""
    import avssl.data.decode  # noqa: F401  (imported before "ready", so the first file's timeout is fair)
    import avssl.data.probe  # noqa: F401

    print(json.dumps({"outcome": "ready"}), flush=True)
    for line in sys.stdin:
        print(json.dumps(check_file(**json.loads(line))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="fuzz files to derive and check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds one file may take before it counts as a hang")
    parser.add_argument("--keep", type=Path, help="write the files here and keep them (default: a temporary folder)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _serve()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="avssl_fuzz_"))
    try:
        started = time.perf_counter()
        cases = make_cases(write_bases(folder / "bases"), folder / "files", args.files, args.seed)
        judged, outcomes = Counter(), Counter()
        for case, answer, verdict in run_cases(cases, args.timeout):
            judged[verdict] += 1
            outcomes[(case.kind, answer["outcome"])] += 1
            if verdict != "fine":
                print(f"{verdict}: {case.path.name} ({case.kind}, {case.how}): {answer['detail']}", flush=True)
        seconds = time.perf_counter() - started
        print(f"{len(cases)} files ({', '.join(f'{k} {o}: {n}' for (k, o), n in sorted(outcomes.items()))}) "
              f"in {seconds:.0f} s")
        print(" / ".join(f"{name}: {judged[name]}" for name in JUDGEMENTS))
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
