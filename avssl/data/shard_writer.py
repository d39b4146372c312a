"""Pack a video corpus into WebDataset tar shards: the original bytes plus a JSON of what to sample.

Each valid video (or manifest segment) becomes one sample of two tar members, ``<key>.<ext>`` (the
file's bytes, not re-encoded) and ``<key>.json``: its original path, label(s), segment, its ``index``
(position among the packed videos in source order, which keys every random draw, see
``avssl.data.shards``) and the probe facts. Shards are ``shard-000000.tar``, ... of at most
``shard_size`` bytes (a single larger video gets a shard of its own), each written to a hidden
temporary file and renamed when complete. ``index.json`` beside them, written last, lists the shards
(by file name), their videos, the segment lengths, the classes and the rejected files. Shards and
index get the mode any new file gets (0666 less the umask, e.g. 0644), not the temporary files' 0600,
so the people and jobs who read a corpus can open them.

Files the probe refuses are not packed; they are listed in the report and the index.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from webdataset.writer import TarWriter

from avssl.data.probe import VideoInfo, summarize
from avssl.data.scan import ScannedEntry, label_names, scan_source
from avssl.data.sampling import seed_from
from avssl.files import new_file_mode, write_json_atomic

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_FORMAT = "avssl-shards"
INDEX_VERSION = 1
SHARD_PATTERN = "shard-{:06d}.tar"
_TAR_BLOCK = 512
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str | int) -> int:
    """Bytes in a size such as 1GB, 500MB, 64MiB, 1.5G or 1000000 (decimal units; KiB/MiB/GiB binary)."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(text))
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"shard size {text!r} is not a size: write a number with an optional unit "
                             f"(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 1GB or 500MB")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = int(value * _UNITS[unit])
    if size < 1:
        raise ValueError(f"shard size must be at least 1 byte, got {text!r}")
    return size


def tar_bytes(sizes: Sequence[int]) -> int:
    """Bytes a tar archive spends on members of these sizes (a header block each, data padded to blocks)."""
    return sum(_TAR_BLOCK + -(-size // _TAR_BLOCK) * _TAR_BLOCK for size in sizes)


@dataclass
class ShardReport:
    """What `write_shards` did: the shards written (file names), the videos packed, the files refused."""

    out_dir: Path
    shards: list[str]
    videos: int
    total_bytes: int
    classes: list[str]
    rejected: list[VideoInfo] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people: counts, size, rejections."""
        line = (f"{self.videos} videos in {len(self.shards)} shards ({self.total_bytes / 1e6:.1f} MB) "
                f"written to {self.out_dir}")
        if self.rejected:
            line += f"; {len(self.rejected)} rejected"
        return line


@dataclass(frozen=True)
class _Video:
    """One video to pack: its scanned entry and its index among the packed videos."""

    scanned: ScannedEntry
    index: int

    def metadata(self, multi_label: bool, ext: str) -> dict:
        entry = self.scanned.entry
        return {
            "index": self.index,
            "path": entry.path,
            "ext": ext,
            "label": entry.label,
            "labels": list(label_names(entry, multi_label)) if multi_label else [],
            "start": self.scanned.start,
            "end": self.scanned.start + self.scanned.length,
            "duration": self.scanned.length,
            "probe": asdict(self.scanned.info),
        }


def _extension(path: str) -> str:
    """Member extension for a video: its suffix, lower case, without dots (tar keys split at the first dot)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if re.fullmatch(r"[a-z0-9]+", suffix) else "video"


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    old = sorted(out_dir.glob("shard-*.tar")) + ([out_dir / INDEX_NAME] if (out_dir / INDEX_NAME).exists() else [])
    if old and not overwrite:
        raise FileExistsError(f"{out_dir} already holds shards ({old[0].name}, ...): choose an empty folder "
                              "or pass overwrite=True (--overwrite) to replace them")
    for path in old:
        path.unlink()


class _ShardSink:
    """Writes samples into numbered shards, starting a new one when the next would pass `limit` bytes."""

    def __init__(self, out_dir: Path, limit: int):
        self.out_dir, self.limit = out_dir, limit
        self.shards: list[dict] = []
        self._writer: TarWriter | None = None
        self._file = None
        self._temp = ""
        self._size = 0

    def add(self, key: str, members: dict[str, bytes], index: int) -> None:
        size = tar_bytes([len(v) for v in members.values()])
        if self._writer is not None and self._size + size > self.limit:
            self._close()
        if self._writer is None:
            self._open()
        self._writer.write({"__key__": key, **members})
        self._size += size
        self.shards[-1]["videos"] += 1
        self.shards[-1]["indices"].append(index)
        if size > self.limit:
            log.info("%s: %.1f MB, more than the shard size, gets a shard of its own", key, size / 1e6)

    def _open(self) -> None:
        name = SHARD_PATTERN.format(len(self.shards))
        handle = tempfile.NamedTemporaryFile(dir=self.out_dir, prefix=f".{name}.", suffix=".tmp", delete=False)
        self._temp = handle.name
        self._writer = TarWriter(handle, encoder=False)
        self._file = handle
        self._size = 0
        self.shards.append({"name": name, "videos": 0, "bytes": 0, "indices": []})

    def _close(self) -> None:
        self._writer.close()
        self._file.close()
        final = self.out_dir / self.shards[-1]["name"]
        os.chmod(self._temp, new_file_mode())
        os.replace(self._temp, final)
        self.shards[-1]["bytes"] = final.stat().st_size
        self._writer = None

    def finish(self) -> list[dict]:
        """Close the open shard; the shards' index entries."""
        if self._writer is not None:
            self._close()
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (after an error)."""
        if self._writer is not None:
            self._file.close()
            os.unlink(self._temp)
            self._writer = None


def write_shards(source: str | Path | Sequence[str | Path], out_dir: str | Path, *, shard_size: int | str = "1GB",
                 shuffle_seed: int | None = None, probe_cache: str | Path | bool | None = None,
                 overwrite: bool = False, show_progress: bool = False) -> ShardReport:
    """Pack the videos of `source` (folder, class folders, CSV manifest, file list) into tar shards in
    `out_dir` with an ``index.json`` (see the module docstring).

    Videos keep their source order unless `shuffle_seed` is given: then they are packed in a seeded
    random order, so that each shard mixes the classes (what training wants when it streams shards).
    Their ``index`` is the source order either way. `probe_cache` is passed to `probe`. Raises
    FileExistsError when `out_dir` already holds shards (unless `overwrite`), ValueError when no video
    is usable.
    """
    limit = parse_size(shard_size)
    out_dir = Path(out_dir)
    corpus = scan_source(source, probe_cache=probe_cache, show_progress=show_progress)
    multi_label, classes, rejected = corpus.multi_label, corpus.classes, corpus.rejected
    videos = [_Video(scanned, index) for index, scanned in enumerate(corpus.usable)]
    if rejected:
        log.warning("%s: %d of %d videos rejected (%s)", corpus.name, len(rejected), len(corpus.entries),
                    corpus.summary())
    if not videos:
        raise ValueError(f"{corpus.name}: no usable videos out of {len(corpus.entries)} ({summarize(rejected)})")
    order = list(range(len(videos)))
    if shuffle_seed is not None:
        order = np.random.default_rng(seed_from(shuffle_seed)).permutation(len(videos)).tolist()

    _prepare_out_dir(out_dir, overwrite)
    sink = _ShardSink(out_dir, limit)
    try:
        for position in order:
            video = videos[position]
            ext = _extension(video.scanned.entry.path)
            data = Path(video.scanned.entry.path).read_bytes()
            meta = json.dumps(video.metadata(multi_label, ext)).encode()
            sink.add(f"{video.index:09d}", {ext: data, "json": meta}, video.index)
    except BaseException:
        sink.abort()
        raise
    shards = sink.finish()
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "source": corpus.name,
        "total": len(videos),
        "classes": classes,
        "multi_label": multi_label,
        "shuffle_seed": shuffle_seed,
        "durations": [v.scanned.length for v in videos],
        "shards": shards,
        "rejected": [{"path": info.path, "reason": info.reason} for info in rejected],
    }
    write_json_atomic(out_dir / INDEX_NAME, index)
    return ShardReport(out_dir, [s["name"] for s in shards], len(videos), sum(s["bytes"] for s in shards),
                       classes, rejected)
