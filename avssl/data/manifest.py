"""Where the videos are: read a source into manifest entries, write a manifest CSV.

A source is one of:

- a **folder**: every file with a video extension (``VIDEO_EXTENSIONS``, any
  case) below it, recursively, sorted by path; hidden files and folders are
  skipped. Links to folders are followed, but no folder is read twice (see
  ``scan_folder``: loops and second ways in are skipped and logged). The
  folder is read as **class folders** (label = sub-folder name) when every
  video sits directly inside a first-level sub-folder, linked or not (none at
  the top, none deeper) and there are at least two such sub-folders;
  otherwise the entries are unlabeled.
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
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ogv",
                    ".wmv", ".ts")
MANIFEST_COLUMNS = ("path", "label", "labels", "start", "end")
LABELS_SEPARATOR = ";"

log = logging.getLogger(__name__)


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


@dataclass
class FolderScan:
    """What `scan_folder` found: video files (paths relative to the folder, sorted by their parts)
    and what it left out, as reason -> relative paths."""

    files: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, path: str) -> None:
        self.skipped.setdefault(reason, []).append(path)


def scan_folder(root: str | Path) -> FolderScan:
    """The video files below `root`, recursively, each listed once; hidden entries left out.

    Links to folders are followed (corpora are often assembled from links), but each real folder is
    read once: every folder reached without a link first, then the linked ones, skipping a link to a
    folder already read (a loop such as ``ln -s .. up``, or a second way into a folder) or to a
    folder holding `root` (``ln -s ../.. up``); a link to a file already listed is skipped too. So
    files keep the names under which they were first found, and a loop cannot make a class-folder
    corpus look deeper than it is. Broken links and unreadable folders are skipped; what was skipped
    is logged.
    """
    scan = _FolderWalk(root).run()
    if scan.skipped:
        log.warning("%s: skipped %s", root, "; ".join(f"{len(paths)} {reason} (e.g. {paths[0]})"
                                                       for reason, paths in scan.skipped.items()))
    return scan


class _FolderWalk:
    """The state of one `scan_folder`: folders still to read and the real paths already read.

    Relative paths are plain strings, and only links are resolved (a file in a folder read once is
    listed once): a corpus can hold millions of files."""

    def __init__(self, root: str | Path):
        self.base = os.path.abspath(root)
        self.root = os.path.realpath(self.base)
        self.scan = FolderScan()
        self.visited = {self.root}  # real paths of the folders read (or queued)
        self.folders: deque[tuple[str, str]] = deque([("", self.root)])  # (relative, real) paths
        self.linked_folders: deque[str] = deque()  # relative paths, read after every plain folder
        self.linked_files: dict[str, str] = {}  # relative path -> real path

    def run(self) -> FolderScan:
        while self.folders or self.linked_folders:
            if self.folders:
                self._read(*self.folders.popleft())
                continue
            rel = self.linked_folders.popleft()
            real = os.path.realpath(os.path.join(self.base, rel))
            if real in self.visited:
                self.scan.skip("link to a folder already listed", rel)
            elif os.path.commonpath([real, self.root]) == real:  # it holds the whole scan, and more
                self.scan.skip("link to a folder above the one scanned", rel)
            else:
                self.visited.add(real)
                self._read(rel, real)
        self._add_linked_files()
        self.scan.files.sort(key=lambda rel: rel.split(os.sep))
        return self.scan

    def _read(self, rel: str, real: str) -> None:
        """List one folder: its videos, its plain sub-folders (queued) and its links (kept for later)."""
        try:
            with os.scandir(os.path.join(self.base, rel)) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as err:
            self.scan.skip(f"unreadable folder ({err.strerror})", rel or ".")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = os.path.join(rel, entry.name)
            if entry.is_symlink():
                self._add_link(entry, path)
            elif entry.is_dir(follow_symlinks=False):
                self._add_folder(path, os.path.join(real, entry.name))
            elif is_video_file(entry.name):
                self.scan.files.append(path)

    def _add_folder(self, path: str, real: str) -> None:
        if real in self.visited:  # read already through a link that led inside it
            self.scan.skip("folder already listed through a link", path)
        else:
            self.visited.add(real)
            self.folders.append((path, real))

    def _add_link(self, entry: os.DirEntry, path: str) -> None:
        if entry.is_dir():
            self.linked_folders.append(path)
        elif not os.path.exists(entry.path):
            self.scan.skip("broken link", path)
        elif is_video_file(entry.name):
            self.linked_files[path] = os.path.realpath(entry.path)

    def _add_linked_files(self) -> None:
        """Links to files, unless their target is listed already (found in a folder that was read,
        or through an earlier link)."""
        targets: set[str] = set()
        for rel, target in self.linked_files.items():
            name = os.path.basename(target)
            listed = os.path.dirname(target) in self.visited and is_video_file(name) and not name.startswith(".")
            if listed or target in targets:
                self.scan.skip("link to a file already listed", rel)
            else:
                targets.add(target)
                self.scan.files.append(rel)


def _read_folder(root: Path) -> list[ManifestEntry]:
    files = [Path(rel) for rel in scan_folder(root).files]
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
