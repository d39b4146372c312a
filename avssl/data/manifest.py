"""Where the videos are: read a source into manifest entries, write a manifest CSV.

A source is one of:

- a **folder**: every file with a video extension (``VIDEO_EXTENSIONS``, any
  case) below it, recursively, sorted by path; hidden files and folders are
  skipped. The folder is read as **class folders** (label = sub-folder name)
  when every video sits directly inside a first-level sub-folder (none at the
  top, none deeper) and there are at least two such sub-folders; otherwise the
  entries are unlabeled.
- a **CSV manifest** (``.csv``): a header row is required; ``path`` is required
  (relative to the CSV's folder, or absolute); optional ``label``, ``labels``
  (``;``-separated, multi-label), ``start`` and ``end`` (seconds, a segment of
  the file). Other columns are ignored.
- a single **video file**, or a **list** of video paths (unlabeled).

Paths in the entries are absolute. Files that are listed but do not exist are
not an error here: the probe reports them as "missing file" and the dataset
lists them with the other rejected files.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ogv",
                    ".wmv", ".ts")
MANIFEST_COLUMNS = ("path", "label", "labels", "start", "end")
LABELS_SEPARATOR = ";"


@dataclass(frozen=True)
class ManifestEntry:
    """One video (or a segment of it): ``labels`` is set for multi-label data,
    ``label`` for single-label data; ``start``/``end`` are seconds or None."""

    path: str
    label: str | None = None
    labels: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None


def is_video_file(path: str | Path) -> bool:
    """True when the file name has one of ``VIDEO_EXTENSIONS`` (case-insensitive)."""
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def read_source(source: str | Path | Sequence[str | Path]) -> list[ManifestEntry]:
    """Entries for a folder, class folders, a CSV manifest, a video file, or a list
    of video paths (see the module docstring for the rules)."""
    if not isinstance(source, (str, os.PathLike)):
        return [ManifestEntry(os.path.abspath(p)) for p in source]
    path = Path(source)
    if path.is_dir():
        return _read_folder(path)
    if not path.exists():
        raise FileNotFoundError(f"video source not found: {path}")
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    if is_video_file(path):
        return [ManifestEntry(os.path.abspath(path))]
    raise ValueError(f"{path} is neither a folder, a .csv manifest, nor a video file ({', '.join(VIDEO_EXTENSIONS)})")


def _scan(root: Path) -> list[Path]:
    """Video files below ``root`` relative to it, sorted; hidden entries skipped."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder, f).relative_to(root) for f in files if not f.startswith(".") and is_video_file(f))
    return sorted(found)


def _read_folder(root: Path) -> list[ManifestEntry]:
    files = _scan(root)
    if not files:
        raise ValueError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found under {root}")
    class_folders = all(len(f.parts) == 2 for f in files) and len({f.parts[0] for f in files}) >= 2
    return [ManifestEntry(os.path.abspath(root / f), label=f.parts[0] if class_folders else None) for f in files]


def _optional_float(row: dict, column: str, where: str) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {column} must be a number of seconds, got {text!r}") from None
    if not value >= 0:  # also catches nan
        raise ValueError(f"{where}: {column} must be >= 0 seconds, got {text!r}")
    return value


def _read_csv(csv_path: Path) -> list[ManifestEntry]:
    base = csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns:
            raise ValueError(f"{csv_path}: a header row with a 'path' column is required; found columns {columns}")
        reader.fieldnames = columns
        entries = []
        for row in reader:
            where = f"{csv_path} line {reader.line_num}"
            rel = (row.get("path") or "").strip()
            if not rel:
                raise ValueError(f"{where}: empty path")
            labels = tuple(s.strip() for s in (row.get("labels") or "").split(LABELS_SEPARATOR) if s.strip())
            start, end = _optional_float(row, "start", where), _optional_float(row, "end", where)
            if start is not None and end is not None and end <= start:
                raise ValueError(f"{where}: end ({end}) must be after start ({start})")
            entries.append(ManifestEntry(os.path.abspath(base / rel), label=(row.get("label") or "").strip() or None,
                                         labels=labels, start=start, end=end))
    if not entries:
        raise ValueError(f"{csv_path}: the manifest lists no videos")
    return entries


def write_manifest(entries: Iterable[ManifestEntry], csv_path: str | Path) -> None:
    """Write entries as an avssl CSV manifest that ``read_source`` reads back.

    Paths under the CSV's folder are written relative to it (the folder can be
    moved as a whole); others stay absolute. Only the optional columns some
    entry uses are written.
    """
    entries = list(entries)
    csv_path = Path(csv_path)
    base = os.path.abspath(csv_path.parent)
    for entry in entries:
        if any(LABELS_SEPARATOR in label for label in entry.labels):
            raise ValueError(f"{entry.path}: labels may not contain {LABELS_SEPARATOR!r}: {entry.labels}")
    used = {
        "label": any(e.label is not None for e in entries),
        "labels": any(e.labels for e in entries),
        "start": any(e.start is not None for e in entries),
        "end": any(e.end is not None for e in entries),
    }
    columns = ["path"] + [c for c in MANIFEST_COLUMNS[1:] if used[c]]
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for e in entries:
            absolute = os.path.abspath(e.path)
            inside = os.path.commonpath([absolute, base]) == base
            values = {
                "path": Path(os.path.relpath(absolute, base)).as_posix() if inside else absolute,
                "label": e.label or "",
                "labels": LABELS_SEPARATOR.join(e.labels),
                "start": "" if e.start is None else repr(e.start),
                "end": "" if e.end is None else repr(e.end),
            }
            writer.writerow([values[c] for c in columns])
