"""ShardDataset: ClipDataset's clips, streamed from the WebDataset tar shards `avssl shard` writes.

Shards are read with the `webdataset` package: local files, URLs or ``pipe:`` commands, found from
a folder, paths or brace patterns and checked against their ``index.json`` (`avssl.data.shard_index`).

Clips are decoded from the bytes in memory with the same decoder, sampler and transforms as
ClipDataset, and every draw is keyed by the item index ClipDataset gives the same clip (computed
from the packed ``index`` and the segment lengths in ``index.json``): for the same seed and epoch the
two datasets give equal items, whatever the shard, rank or worker.

How an epoch is split: the shard order is a permutation drawn from (seed, epoch); rank r takes
shards r, r + world_size, ... of it, and within a rank DataLoader worker w of the A = min(workers,
shards // world_size) active ones takes every A-th of the rank's shards (other workers stay idle).
With ``fixed_length`` (training) every rank yields ceil(items / world_size) items per epoch, dealt to
its workers in blocks of ``batch_size`` so that the DataLoader's round-robin over workers gives the
blocks in order: a worker whose shards hold fewer items than its share starts them again, one with
more stops early (the per-epoch shard order changes which). Without it (evaluation) each worker reads
its shards exactly once. ``set_epoch`` puts the epoch and resume point in shared memory, which each pass
(``__iter__``) reads first: persistent workers, started once, plan and draw every epoch as fresh ones would.
``plan_items`` yields one worker's plan for a stream that deals an epoch itself (`avssl.data.interleave`),
and ``only_videos`` narrows a corpus to some of its videos (a subset streamed without new shards).

Malformed samples (no ``.json`` member, unreadable metadata, the video member missing or not a
regular file) and unreadable shards (truncated, not a tar, gone) are skipped: each is logged and
counted in ``skipped_samples`` (per worker process, like ``decode_failures``), and the stream goes on
with the next sample or shard.
"""
from __future__ import annotations

import copy
import io
import itertools
import json
import logging
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from webdataset.filters import shuffle as shuffle_filter
from webdataset.tariterators import tarfile_samples
from torch.utils.data import IterableDataset, get_worker_info

from avssl.data.clips import MAX_CONSECUTIVE_FAILURES, ClipMaker, label_target
from avssl.data.decode import DecodeError
from avssl.data.probe import VideoInfo
from avssl.data.sampling import seed_from
from avssl.data.shard_index import is_shard_source, resolve_shards  # noqa: F401  (is_shard_source: re-exported)

log = logging.getLogger(__name__)

_ORDER, _BUFFER = 1, 2  # salts that keep the shard-order and shuffle-buffer seeds apart
_META_KEYS = ("index", "path", "ext", "start", "duration", "label", "labels")  # what `_Video.metadata` writes


class MalformedSample(ValueError):
    """A shard sample that cannot be used (a member missing or unreadable); it is skipped."""


class WorkerPlan(NamedTuple):
    """One worker's part of an epoch: shard numbers, items to yield (-1: each shard once), items to
    skip first (consumed before a resume), and the role (worker number before the resume) it plays."""

    shards: list[int]
    items: int
    skip: int
    role: int


class ShardDataset(ClipMaker, IterableDataset):
    """ClipDataset's items (same keys, same values for the same seed) streamed from tar shards.

    `shards`: a folder written by `avssl shard`, shard paths or URLs, or a brace pattern of them
    (see `resolve_shards`); `index`: where ``index.json`` is when not beside the shards; ``classes``
    as in ClipDataset. ``clip_options`` are `ClipMaker`'s, as ClipDataset's. ``shuffle`` permutes the shard order every
    epoch and mixes the items of consecutive videos in a buffer of ``shuffle_buffer`` items (their
    videos held in memory).
    ``rank``/``world_size`` and ``batch_size``/``drop_last`` set how an epoch is split (module
    docstring); `split` returns a copy with them changed (what `build_loader` uses).

    ``len()`` is the number of items this rank yields in the current epoch. A video that fails to
    decode is logged, counted in ``decode_failures`` and its place is filled by the next item that
    decodes (which then appears twice), so positions in the stream, and resumption, stay exact.
    Malformed samples and unreadable shards are logged, counted in ``skipped_samples`` and skipped
    (module docstring); they hold no positions, so the stream stays the same on a rerun.
    """

    def __init__(self, shards: str | Path | Sequence[str | Path], *, index: str | Path | None = None,
                 classes: list[str] | None = None, shuffle: bool = True, shuffle_buffer: int = 16,
                 fixed_length: bool = True, rank: int = 0, world_size: int = 1, batch_size: int = 1,
                 drop_last: bool = False, **clip_options: Any):
        super().__init__(**clip_options)
        self.shuffle, self.shuffle_buffer, self.fixed_length = shuffle, shuffle_buffer, fixed_length
        self.start, self.decode_failures, self.skipped_samples = 0, 0, 0
        self._shared = torch.zeros(2, dtype=torch.int64).share_memory_()  # (epoch, start) as workers see them

        self.urls, data, entries = resolve_shards(shards, index)
        self.multi_label = bool(data["multi_label"])
        self.classes = list(data["classes"]) if classes is None else list(classes)
        unknown = sorted(set(data["classes"]) - set(self.classes))
        if unknown:
            raise ValueError(f"label {unknown[0]!r} in the shards is not one of the {len(self.classes)} given classes")
        self.pair_mirrored_classes(self.classes)
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        self.rejected = [VideoInfo(r["path"], False, r["reason"]) for r in data.get("rejected", [])]
        self._shard_videos = [list(s["indices"]) for s in entries]  # packed video numbers per shard
        self._count_items(np.array([self.sampler.num_items(d) for d in data["durations"]], np.int64), str(shards))
        self.rank, self.world_size, self.batch_size, self.drop_last = 0, 1, 1, False
        self._check_split(rank, world_size, batch_size, drop_last)

    def _count_items(self, counts: np.ndarray, name: str) -> None:
        """Set the items of each packed video (`counts`; 0: it gives none), and from them the ClipDataset
        index of each video's first item and the items per shard."""
        self._counts = counts
        self._first_item = np.concatenate([[0], np.cumsum(counts)])
        self._usable_first = self._first_item[:-1][counts > 0]  # of the videos that give items
        self._shard_items = np.array([int(counts[v].sum()) for v in self._shard_videos], np.int64)
        self.total_items = int(self._shard_items.sum())
        if self.total_items == 0:
            raise ValueError(f"{name}: none of the {sum(map(len, self._shard_videos))} videos gives a "
                             f"{self.clip_duration:g} s clip (all shorter, short='skip')")

    def only_videos(self, videos: Iterable[int]) -> "ShardDataset":
        """A copy whose items are those of the packed videos `videos` (their json ``index``) alone,
        numbered as a ClipDataset of just them numbers them, that reads only the shards holding them:
        part of a corpus (e.g. a pool's pseudo-labelled clips) streamed without writing new shards."""
        keep = np.zeros(len(self._counts), bool)
        keep[list(videos)] = True
        held = [k for k, v in enumerate(self._shard_videos) if keep[v].any()]
        other = copy.copy(self)
        other._shared = self._shared.clone().share_memory_()
        other.urls, other._shard_videos = [self.urls[k] for k in held], [self._shard_videos[k] for k in held]
        other._count_items(np.where(keep, self._counts, 0), f"{int(keep.sum())} chosen videos")
        other._check_split(self.rank, self.world_size, self.batch_size, self.drop_last)
        return other

    @property
    def num_videos(self) -> int:
        """Videos (or manifest segments) in all the shards that give at least one item."""
        return len(self._usable_first)

    def video_of(self, index: int) -> int:
        """The video (0-based among `num_videos`, in source order) item `index` is cut from: the
        number ClipDataset gives it."""
        return int(np.searchsorted(self._usable_first, index, side="right")) - 1

    def _check_split(self, rank: int, world_size: int, batch_size: int, drop_last: bool) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if len(self.urls) < world_size:
            raise ValueError(f"{len(self.urls)} shards cannot be split across {world_size} ranks: write smaller "
                             "shards (avssl shard --shard-size) so that there are at least as many as ranks")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.rank, self.world_size, self.batch_size, self.drop_last = rank, world_size, batch_size, drop_last

    def split(self, *, rank: int, world_size: int, batch_size: int = 1, drop_last: bool = False,
              shuffle: bool | None = None) -> "ShardDataset":
        """A copy that yields rank `rank`'s part of each epoch in blocks of `batch_size` (module docstring)."""
        other = copy.copy(self)
        other._shared = self._shared.clone().share_memory_()  # its own: its set_epoch leaves self's alone
        other._check_split(rank, world_size, batch_size, drop_last)
        other.shuffle = self.shuffle if shuffle is None else shuffle
        return other

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch (shard order and clip draws); skip the first `start` items this rank yields in
        it (those consumed before a restart; a multiple of ``batch_size``). Started workers read both next pass."""
        if start and not self.fixed_length:
            raise ValueError("resuming mid-epoch (start > 0) needs fixed_length=True")
        self.epoch, self.start = epoch, 0
        if not 0 <= start <= len(self):
            raise ValueError(f"start must be in [0, {len(self)}] for this rank, got {start}")
        self.start = start
        self._shared.copy_(torch.tensor([epoch, start]))

    def _rank_shards(self) -> np.ndarray:
        order = np.arange(len(self.urls))
        if self.shuffle:
            order = np.random.default_rng(seed_from(self.seed, self.epoch, _ORDER)).permutation(len(self.urls))
        return order[self.rank::self.world_size]

    def _active_workers(self, num_workers: int) -> int:
        return max(1, min(num_workers, len(self.urls) // self.world_size))

    def _rank_items(self) -> int:
        if self.fixed_length:
            return math.ceil(self.total_items / self.world_size)
        return int(self._shard_items[self._rank_shards()].sum())

    def _blocks(self) -> int:
        items = self._rank_items()
        return items // self.batch_size if self.drop_last else math.ceil(items / self.batch_size)

    def __len__(self) -> int:
        full = self._blocks() * self.batch_size if self.fixed_length and self.drop_last else self._rank_items()
        return full - self.start

    def worker_plan(self, worker: int, num_workers: int) -> WorkerPlan:
        """What DataLoader worker `worker` of `num_workers` reads on this rank in the current epoch.

        After a resume the DataLoader starts again at worker 0, so the workers change roles: worker
        w plays the one that would have given the next batch (round-robin position w after the
        consumed batches)."""
        active = self._active_workers(num_workers)
        if worker >= active:
            return WorkerPlan([], 0, 0, worker)
        size = self.batch_size
        consumed = self.start // size
        role = (worker + consumed) % active
        shards = self._rank_shards()[role::active].tolist()
        if not self.fixed_length:
            return WorkerPlan(shards, -1, 0, role)
        blocks = self._blocks()
        items = (blocks // active + (role < blocks % active)) * size
        short = size * blocks - self._rank_items()  # the last block is partial without drop_last
        if short > 0 and (blocks - 1) % active == role:
            items -= short
        skip = (consumed // active + (role < consumed % active)) * size
        return WorkerPlan(shards, items, min(skip, items), role)

    def __iter__(self) -> Iterator[dict | list[dict]]:
        self.epoch, self.start = self._shared.tolist()  # in a persistent worker: what set_epoch chose since
        info = get_worker_info()
        return self.plan_items(self.worker_plan(*((info.id, info.num_workers) if info is not None else (0, 1))))

    def plan_items(self, plan: WorkerPlan) -> Iterator[dict | list[dict]]:
        """The items of `plan` in the current epoch: what `__iter__` yields for its worker's `worker_plan`,
        or, for a stream that deals epochs itself, the given count from a role's shards."""
        shards, count, skip, role = plan
        if not shards:
            return
        if count > 0 and int(self._shard_items[shards].sum()) == 0:
            raise ValueError(f"rank {self.rank} worker role {role}: its {len(shards)} shards hold no usable items")
        stream = self._stream(shards, repeat=count >= 0, role=role)
        yielded, failures = 0, []
        for position, (sample, meta, index, item) in enumerate(stream):
            if 0 <= count <= yielded:
                return
            if position < skip:
                yielded += 1
                continue
            try:
                out = self._load(sample, meta, index, item)
            except (DecodeError, OSError) as err:
                self.decode_failures += 1
                failures.append(f"{meta['path']} (from {sample['__url__']}): {err}")
                log.warning("decode failed, the next video takes its place: %s", failures[-1])
                if len(failures) >= MAX_CONSECUTIVE_FAILURES:
                    raise RuntimeError(f"{len(failures)} videos in a row failed to decode; "
                                       f"last errors: {failures[-3:]}") from err
                continue
            # the failed positions before this one are filled with it too: one item per stream
            # position keeps the epoch's length and makes a mid-epoch resume land exactly
            for _ in range(len(failures) + 1):
                if 0 <= count <= yielded:
                    return
                yielded += 1
                yield out
            failures = []

    def _stream(self, shards: list[int], repeat: bool, role: int) -> Iterator[tuple[dict, dict, int, int]]:
        """(sample, its metadata, item index, item number within the video) for every item in the
        shards; again and again when `repeat`. Each pass is shuffled on its own (so one pass gives
        every item once), with a seed from (seed, epoch, rank, role, pass)."""
        for cycle in itertools.count():
            items = self._pass(shards)
            if self.shuffle and self.shuffle_buffer > 1:
                seed = seed_from(self.seed, self.epoch, self.rank, role, cycle, _BUFFER)
                items = shuffle_filter(self.shuffle_buffer, self.shuffle_buffer, seed=seed)(items)
            found = 0
            for found, item in enumerate(items, 1):
                yield item
            if not repeat:
                return
            if not found:  # every sample was skipped: repeating would loop without end
                raise RuntimeError(f"no readable samples in {len(shards)} shard(s) "
                                   f"({', '.join(self.urls[s] for s in shards[:3])}, ...); see the warnings above")

    def _pass(self, shards: list[int]) -> Iterator[tuple[dict, dict, int, int]]:
        """One pass over the shards, in order, without the samples and shards that are unreadable."""
        for shard in shards:
            url = self.urls[shard]
            for sample in tarfile_samples([{"url": url}], handler=lambda err, url=url: self._skip(url, err)):
                try:
                    meta = self._metadata(sample)
                except MalformedSample as err:
                    self._skip(url, err)
                    continue
                video = meta["index"]
                for item in range(int(self._counts[video])):
                    yield sample, meta, int(self._first_item[video]) + item, item

    def _skip(self, url: str, err: Exception) -> bool:
        """Log and count an unreadable sample or shard; True tells webdataset to go on."""
        self.skipped_samples += 1
        message = err.args[0] if err.args else err  # webdataset appends its stream objects to args
        log.warning("%s: skipped unreadable data (%s: %s)", url, type(err).__name__, message)
        return True

    def _metadata(self, sample: dict) -> dict:
        """The sample's ``.json`` metadata, checked against its members and the index; raises
        MalformedSample for a sample to skip, ValueError for an index that does not fit the shards."""
        key = sample.get("__key__")
        if "json" not in sample:
            raise MalformedSample(f"sample {key}: no .json member")
        try:
            meta = json.loads(sample["json"])
        except ValueError as err:
            raise MalformedSample(f"sample {key}: unreadable .json member ({err})") from None
        missing = [k for k in _META_KEYS if k not in meta] if isinstance(meta, dict) else list(_META_KEYS)
        if missing:
            raise MalformedSample(f"sample {key}: its .json lacks {', '.join(missing)}")
        if not isinstance(meta["ext"], str) or meta["ext"] not in sample:
            raise MalformedSample(f"sample {key}: no .{meta['ext']} member (missing, or not a regular file)")
        unknown = [n for n in self._names(meta) if n is not None and n not in self._class_index]
        if unknown:
            raise MalformedSample(f"sample {key}: label {unknown[0]!r} is not one of the index's classes")
        video = meta["index"]
        if not isinstance(video, int) or not 0 <= video < len(self._counts):
            raise ValueError(f"{sample['__url__']}: video index {video} is not in the shard index "
                             f"({len(self._counts)} videos); is the index from another run?")
        return meta

    def _load(self, sample: dict, meta: dict, index: int, item: int) -> dict | list[dict]:
        """Decode and transform one item, exactly as ClipDataset would for `index`."""
        path = meta["path"]
        data = io.BytesIO(sample[meta["ext"]])
        data.name = f"{path} (in {sample['__url__']})"  # names the video in decode errors
        return self.make_item(data, path=path, duration=meta["duration"], offset=meta["start"],
                              label=self._label(meta), index=index, item=item)

    def _names(self, meta: dict) -> list:
        """The sample's label names (single-label: one, maybe None)."""
        return list(meta["labels"]) if self.multi_label else [meta["label"]]

    def _label(self, meta: dict) -> torch.Tensor:
        return label_target([self._class_index[n] for n in self._names(meta) if n is not None], len(self.classes),
                            self.multi_label)
