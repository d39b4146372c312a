"""The one dataset entry point, `open_dataset`, and ClipDataset, its map-style dataset of video files.

`open_dataset(source, ...)` is what every command reads videos through (pretraining, fine-tuning,
embedding, the linear probe and evaluation): a folder, class folders, a CSV manifest or video files
give a `ClipDataset`, WebDataset shards written by `avssl shard` a `ShardDataset`
(`avssl.data.shards`), with the same items for the same seed.

ClipDataset: source -> scanned corpus (``scan_source``: manifest entries, probe facts, segments) ->
rejected files set aside -> index of (video, item) pairs from the clip sampler -> per item:
sample window(s) -> decode only those windows -> video and audio transforms.

Everything random in an item (clip times, crop, flip, SpecAugment) is a pure
function of (seed, epoch, index), so results do not depend on worker or GPU
count. A manifest segment (``start``/``end``) is sampled within: the sampler
sees the segment length and the dataset shifts the windows by its start.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from avssl.data.clips import MAX_CONSECUTIVE_FAILURES, ClipMaker, label_target
from avssl.data.decode import DecodeError
from avssl.data.probe import VideoInfo, summarize
from avssl.data.scan import ScannedEntry, scan_source
from avssl.data.shards import ShardDataset, is_shard_source

log = logging.getLogger(__name__)


class ClipDataset(ClipMaker, Dataset):
    """Clips with their sound from a folder, class folders, a CSV manifest or a list of files.

    Each item is a dict: ``video`` (T, 3, frame_size, frame_size) float32,
    ``audio`` (frames, num_mel_bins) float32, ``has_audio`` bool tensor,
    ``label`` (int64 class index, -1 when unlabeled; a float32 multi-hot (C,)
    when multi-label), ``path``, ``clip_start``/``clip_end`` (seconds in the file),
    ``clip_index`` and ``index``. When the sampler gives several clips per item
    ("random_multi" with clips_per_video > 1) an item is a list of such dicts,
    one per clip, all decoded from one open file (``collate_clips`` flattens them).

    `source`: a folder, class folders, a CSV manifest, a video file or a list of them (see
    `avssl.data.manifest.read_source`); ``classes`` fixes the class list (default: the labels found,
    sorted); ``probe_cache`` is `probe`'s cache. ``clip_options`` are `ClipMaker`'s: clip shape,
    sampler, seed, decoding, augmentations and normalisation.

    Files the probe refuses are kept in ``rejected`` and summarised in one
    warning. A file that fails to decode later is logged, counted in
    ``decode_failures`` (per worker process) and replaced by the next video;
    ``MAX_CONSECUTIVE_FAILURES`` failures in a row raise RuntimeError.
    """

    def __init__(self, source: str | Path | Sequence[str | Path], *, classes: list[str] | None = None,
                 probe_cache: str | Path | None = None, **clip_options: Any):
        super().__init__(**clip_options)
        self.decode_failures = 0

        corpus = scan_source(source, probe_cache=probe_cache)
        self.multi_label = corpus.multi_label
        names = [corpus.labels(s) for s in corpus.entries]
        self.classes = self._resolve_classes(corpus.entries, names, classes)
        self.pair_mirrored_classes(self.classes)
        class_index = {c: i for i, c in enumerate(self.classes)}

        segments = corpus.entries
        counts = [self.sampler.num_items(s.length) if s.ok else 0 for s in segments]
        self.rejected: list[VideoInfo] = corpus.rejected
        skipped = len(segments) - len(self.rejected) - sum(1 for c in counts if c)
        if self.rejected:
            log.warning("%s: %d of %d videos rejected (%s); see ClipDataset.rejected", corpus.name,
                        len(self.rejected), len(segments), corpus.summary())
        if skipped:
            log.info("%s: %d videos shorter than %g s skipped", corpus.name, skipped, self.clip_duration)
        keep = [k for k, c in enumerate(counts) if c]
        if not keep:
            reasons = [f"{len(self.rejected)} rejected ({summarize(self.rejected)})"] if self.rejected else []
            if skipped:
                reasons.append(f"{skipped} shorter than the {self.clip_duration:g} s clip and skipped (short='skip')")
            raise ValueError(f"{corpus.name}: no usable videos out of {len(segments)}: {'; '.join(reasons)}")

        self.silent_videos = sum(1 for k in keep if not segments[k].info.has_audio)
        if self.silent_videos:
            log.info("%s: %d of %d videos have no audio stream (their clips get silence and has_audio=False)",
                     corpus.name, self.silent_videos, len(keep))
        # numpy arrays, not Python lists: DataLoader workers read them without copy-on-write growth
        self._paths = _StringTable([segments[k].entry.path for k in keep])
        self._offsets = np.array([segments[k].start for k in keep], np.float64)
        self._durations = np.array([segments[k].length for k in keep], np.float64)
        targets = [[class_index[n] for n in names[k]] for k in keep]
        self._label_splits = np.cumsum([0] + [len(t) for t in targets])
        self._label_values = np.array([c for t in targets for c in t], np.int64)
        kept_counts = np.array([counts[k] for k in keep], np.int64)
        self._first_item = np.concatenate([[0], np.cumsum(kept_counts)])
        self._video_of = np.repeat(np.arange(len(keep)), kept_counts)

    @property
    def num_videos(self) -> int:
        """Videos (or manifest segments) that give at least one item."""
        return len(self._paths)

    def video_of(self, index: int) -> int:
        """The usable video (0-based, in source order) item `index` is cut from."""
        return int(self._video_of[index])

    def video_path(self, video: int) -> str:
        """Path of the ``video``-th usable video (in source order)."""
        return self._paths[video]

    @staticmethod
    def _resolve_classes(entries: list[ScannedEntry], names: list[tuple[str, ...]],
                         classes: list[str] | None) -> list[str]:
        if classes is None:
            return sorted({n for ns in names for n in ns})
        known = set(classes)
        for scanned, ns in zip(entries, names):
            unknown = [n for n in ns if n not in known]
            if unknown:
                raise ValueError(f"{scanned.entry.path}: label {unknown[0]!r} is not one of the {len(classes)} "
                                 "given classes")
        return list(classes)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose clip draws and augmentations ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._video_of)

    def __getitem__(self, index: int) -> dict | list[dict]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        errors = []
        for _ in range(min(MAX_CONSECUTIVE_FAILURES, self.num_videos)):
            try:
                return self._load(index)
            except (DecodeError, OSError) as err:
                video = int(self._video_of[index])
                path = self._paths[video]
                self.decode_failures += 1
                errors.append(str(err) if path in str(err) else f"{path}: {err}")  # DecodeError names it already
                log.warning("decode failed, using the next video instead: %s", errors[-1])
                index = int(self._first_item[(video + 1) % self.num_videos])
        raise RuntimeError(f"{len(errors)} videos in a row failed to decode; last errors: {errors[-3:]}")

    def _load(self, index: int) -> dict | list[dict]:
        video = int(self._video_of[index])
        path = self._paths[video]
        return self.make_item(path, path=path, duration=float(self._durations[video]),
                              offset=float(self._offsets[video]), label=self._label(video), index=index,
                              item=index - int(self._first_item[video]))

    def _label(self, video: int) -> torch.Tensor:
        values = self._label_values[self._label_splits[video]:self._label_splits[video + 1]]
        return label_target(values, len(self.classes), self.multi_label)


class _StringTable:
    """Strings packed in one numpy byte buffer: indexable like a list, but with no
    per-string Python objects for forked workers to touch (and so copy)."""

    def __init__(self, strings: Sequence[str]):
        encoded = [s.encode() for s in strings]
        self._bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i > 0 else 0
        return self._bytes[start:int(self._ends[i])].tobytes().decode()


def open_dataset(source: str | Path | Sequence[str | Path], *, train: bool = True, classes: list[str] | None = None,
                 probe_cache: str | Path | None = None, **clip_options: Any) -> ClipDataset | ShardDataset:
    """The clips of `source`, whatever kind of source it is: WebDataset shards (a folder written by
    `avssl shard`, .tar files, a URL or brace pattern of them; see `is_shard_source`) give a
    `ShardDataset`, anything else (folder, class folders, CSV manifest, video files) a `ClipDataset`.

    Both give the same items for the same seed, epoch and index. Training shards (`train`) are
    shuffled and yield the same number of items on every rank each epoch (what DDP needs);
    evaluation shards are read once each, in order, so every clip comes exactly once. `classes`
    fixes the class list, `probe_cache` is the probe's cache (files only: shards were probed when
    written), `clip_options` are `ClipMaker`'s (clip shape, sampler, seed, augmentations, ...).
    """
    if isinstance(source, (str, os.PathLike)) and is_shard_source(source):
        return ShardDataset(source, train=train, classes=classes, shuffle=train, fixed_length=train, **clip_options)
    return ClipDataset(source, train=train, classes=classes, probe_cache=probe_cache, **clip_options)
