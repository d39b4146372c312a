"""Scan a corpus once: its manifest entries, the probe facts of every file, each entry's segment, and
the entries refused with their reasons.

`scan_source(source)` (or `scan_entries(entries)` for entries made elsewhere) is where every user of a
corpus starts: ClipDataset, the shard writer, the retrieval protocol's subset, the corpus converters'
``--check``, pretraining's validation split and ``avssl probe``. So they all judge a video the same
way: an entry is usable when the probe accepts its file and its segment (``start``/``end`` of a
manifest row, else the whole file) starts before the file's end; an entry whose segment starts later
becomes a rejection with that reason. Files are probed once each (`probe`, cached on disk), however
many segments of them the manifest lists.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from avssl.data.manifest import ManifestEntry, read_source
from avssl.data.probe import VideoInfo, probe, summarize


def label_names(entry: ManifestEntry, multi_label: bool) -> tuple[str, ...]:
    """The class names of an entry: its ``labels`` in a multi-label source (when it has any), else its
    ``label`` (none when unlabeled)."""
    if multi_label and entry.labels:
        return entry.labels
    return (entry.label,) if entry.label is not None else ()


def source_label(source: str | Path | Sequence[str | Path]) -> str:
    """A short name for a source in messages: the path, or 'list of N files'."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"list of {len(source)} files"


@dataclass(frozen=True)
class ScannedEntry:
    """One manifest entry as the scan found it: its file's probe facts (`info`, turned into a rejection
    when the segment starts after the file's end) and the segment to sample, `start` and `length`
    seconds into the file."""

    entry: ManifestEntry
    info: VideoInfo
    start: float
    length: float

    @property
    def ok(self) -> bool:
        """Whether clips can be cut from this entry."""
        return self.info.ok

    @classmethod
    def of(cls, entry: ManifestEntry, info: VideoInfo) -> "ScannedEntry":
        """`entry`'s segment in its probed file (`info`)."""
        start = entry.start or 0.0
        end = min(entry.end if entry.end is not None else info.duration, info.duration)
        if info.ok and end <= start:
            info = dataclasses.replace(info, ok=False, reason=f"annotated segment starts at {start:g} s, after "
                                                              f"the end of the video ({info.duration:.2f} s)")
        return cls(entry, info, start, end - start)


@dataclass(frozen=True)
class ScannedCorpus:
    """What `scan_source` found: every entry in source order (`entries`), the probe facts of each
    distinct file in first-listed order (`files`), and `name`, the source in messages."""

    name: str
    entries: list[ScannedEntry]
    files: list[VideoInfo]

    @property
    def multi_label(self) -> bool:
        """Whether the source is multi-label (some entry has ``labels``)."""
        return any(s.entry.labels for s in self.entries)

    def labels(self, scanned: ScannedEntry) -> tuple[str, ...]:
        """The class names of one of the entries, read as this corpus is (single- or multi-label)."""
        return label_names(scanned.entry, self.multi_label)

    @property
    def classes(self) -> list[str]:
        """Every class name of the entries, sorted."""
        return sorted({n for s in self.entries for n in self.labels(s)})

    @property
    def usable(self) -> list[ScannedEntry]:
        """The entries clips can be cut from, in source order."""
        return [s for s in self.entries if s.ok]

    @property
    def rejected(self) -> list[VideoInfo]:
        """The refused entries' probe facts, each with its reason, in source order."""
        return [s.info for s in self.entries if not s.ok]

    def summary(self) -> str:
        """One line: "N ok, M bad (reason: count, ...)" over the entries."""
        return summarize([s.info for s in self.entries])


def scan_entries(entries: Sequence[ManifestEntry], *, name: str = "", probe_cache: str | Path | bool | None = None,
                 show_progress: bool = False) -> ScannedCorpus:
    """Probe the files of `entries` (each once; `probe_cache` as `probe`'s `cache`) and judge each
    entry's segment. `name` is the corpus in messages (default: 'list of N entries')."""
    unique = list(dict.fromkeys(e.path for e in entries))
    files = probe(unique, cache=probe_cache, show_progress=show_progress)
    by_path = dict(zip(unique, files))
    return ScannedCorpus(name or f"list of {len(entries)} entries",
                         [ScannedEntry.of(e, by_path[e.path]) for e in entries], files)


def scan_source(source: str | Path | Sequence[str | Path], *, probe_cache: str | Path | bool | None = None,
                show_progress: bool = False) -> ScannedCorpus:
    """Read `source` (folder, class folders, CSV manifest, video files: `read_source`) and scan its
    entries (`scan_entries`)."""
    return scan_entries(read_source(source), name=source_label(source), probe_cache=probe_cache,
                        show_progress=show_progress)
