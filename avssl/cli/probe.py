"""`avssl probe PATH...`: check videos before training on them, one line per file.

A report, not a gate: the exit code is 0 however many files are bad (2 only when no PATH exists).
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avssl.data.manifest import ManifestEntry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `probe` and its options."""
    parser = subparsers.add_parser(
        "probe",
        help="scan videos: duration, frame rate, size, codecs, audio, and why a file is unusable",
        description="Scan each video once (demux, no full decode) and print one line per file: status, "
        "duration, frame rate, size, video codec, audio rate and channels, and for a bad file the reason "
        "(missing, zero-byte, not a media file, no video stream, no decoder for it, truncated, zero, absurd or "
        "inconsistent duration, undecodable, unseekable). Folders are searched once each: links that loop or "
        "lead to a folder already listed are skipped and logged. "
        "Results are cached by path, size and mtime ($AVSSL_CACHE_DIR or ~/.cache/avssl/probe.json), so "
        "a second scan is near-instant. Example: avssl probe videos/ data/train.csv --json probe.json",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="video file, folder (searched recursively) or CSV manifest (its path column)")
    parser.add_argument("--no-cache", action="store_true", help="probe every file again and leave the cache alone")
    parser.add_argument("--json", metavar="OUT", help="also write every result to this JSON file")
    parser.set_defaults(func=run)


def _entries(paths: list[str]) -> list[ManifestEntry]:
    """What to probe, in order: files as given, the videos under folders, the rows of CSV manifests."""
    from pathlib import Path

    from avssl.data.manifest import ManifestEntry, read_source

    if not any(Path(text).exists() for text in paths):
        raise FileNotFoundError(f"none of the paths exist: {', '.join(paths)}")
    entries = []
    for text in paths:
        path = Path(text)
        if path.is_dir() or (path.suffix.lower() == ".csv" and path.is_file()):
            entries.extend(read_source(path))
        else:
            entries.append(ManifestEntry(text))  # a path that does not exist is reported as a missing file
    return entries


def format_line(info) -> str:
    """One aligned report line for a VideoInfo."""
    status = "ok" if info.ok else "BAD"
    audio = f"{info.audio_rate} Hz x{info.audio_channels}" if info.has_audio else "no audio"
    line = (f"{status:<3} {info.duration:8.2f} s {info.fps:6.2f} fps {f'{info.width}x{info.height}':>9} "
            f"{info.video_codec or '-':<6} {audio:<13} {info.path}")
    return f"{line}  {info.reason}" if info.reason else line


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from dataclasses import asdict

    from avssl.data.probe import summarize
    from avssl.data.scan import scan_entries

    corpus = scan_entries(_entries(args.paths), probe_cache=False if args.no_cache else None,
                          show_progress=sys.stderr.isatty())
    infos = corpus.files  # one line per file, however many manifest rows name it
    for info in infos:
        print(format_line(info))
    seconds = sum(info.duration for info in infos if info.ok)
    print(f"{summarize(infos)}; {seconds:.1f} s ({seconds / 3600:.2f} h) of usable video")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(info) for info in infos], handle, indent=1)
    return 0
