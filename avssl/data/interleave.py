"""Interleaved: several datasets as one training stream that ranks and DataLoader workers split, the
way `ShardDataset` splits shards: e.g. labelled clips plus pseudo-labelled ones where either part
may be shards (`avssl.tasks.pseudo_labels`).

A part is a map-style dataset (a ClipDataset, read by index) or a `ShardDataset` (read as streams).
How an epoch is split, with W ranks, batch size B and A active workers (at most the shards per rank
of every shard part, as `ShardDataset` counts them; the others stay idle):

- rank r takes ceil(n / W) of a part's n items: a map part's are positions r, r + W, ... of a
  permutation drawn from (seed, epoch, part), padded by wrapping as `ShardedSampler` pads; a shard
  part's come from its shards r, r + W, ... (`ShardDataset.split`);
- the rank's stream mixes the parts: a permutation drawn from (seed, epoch, rank) says which part
  each position takes its item from;
- positions are dealt to workers in blocks of B (block j to worker j mod A), so that the DataLoader's
  round-robin over workers gives them in order; a worker reads its positions' map items by index
  and its shard items from its share of the part's shards (`ShardDataset.plan_items`: started again
  when they hold fewer, cut short when they hold more).

``set_epoch(epoch, start)`` puts the epoch and the resume point in shared memory, which each pass
reads first, so persistent workers serve every epoch as fresh ones would, and a resumed epoch gives
exactly the items not yet consumed (worker w then plays worker (w + consumed blocks) mod A, as in
`ShardDataset`). Each part's items pass through its ``relabel`` callable, if any (e.g. labels made
training targets): a picklable object, since workers get a copy.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from avssl.data.sampling import seed_from
from avssl.data.shards import ShardDataset, WorkerPlan

_PATTERN, _ORDER = 3, 4  # salts that keep the part-mixing and map-order seeds apart from ShardDataset's


class Interleaved(IterableDataset):
    """The items of `parts` (map-style datasets or ShardDatasets) as one stream (module docstring);
    `relabel[k]` (or None) is applied to every item of part k. ``classes``, ``multi_label`` and
    ``augmentations()`` are the first part's; ``rejected`` and ``num_videos`` all parts'.

    ``rank``/``world_size`` and ``batch_size``/``drop_last`` set how an epoch is split; `split`
    returns a copy with them changed (what `build_loader` uses). ``len()`` is the number of items this
    rank yields in the current epoch from ``start`` on. ``shuffle=False`` keeps each part's order and
    puts the parts one after the other.
    """

    def __init__(self, parts: Sequence[Dataset], *, relabel: Sequence[Callable[[Any], Any] | None] | None = None,
                 seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1, batch_size: int = 1,
                 drop_last: bool = False) -> None:
        if not parts:
            raise ValueError("Interleaved needs at least one part")
        self.relabel = list(relabel) if relabel is not None else [None] * len(parts)
        if len(self.relabel) != len(parts):
            raise ValueError(f"{len(self.relabel)} relabel functions for {len(parts)} parts")
        self.seed, self.shuffle, self.epoch, self.start = seed, shuffle, 0, 0
        self._shared = torch.zeros(2, dtype=torch.int64).share_memory_()  # (epoch, start) as workers see them
        self.classes, self.multi_label = parts[0].classes, parts[0].multi_label
        self.rejected = [info for part in parts for info in part.rejected]
        self.num_videos = sum(part.num_videos for part in parts)
        self.parts = list(parts)
        self._set_split(rank, world_size, batch_size, drop_last)

    def augmentations(self) -> str:
        """The random augmentations of the clips (the first part's)."""
        return self.parts[0].augmentations()

    def _set_split(self, rank: int, world_size: int, batch_size: int, drop_last: bool) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.parts = [part.split(rank=rank, world_size=world_size, shuffle=self.shuffle)
                      if isinstance(part, ShardDataset) else part for part in self.parts]
        self.rank, self.world_size, self.batch_size, self.drop_last = rank, world_size, batch_size, drop_last

    def split(self, *, rank: int, world_size: int, batch_size: int = 1, drop_last: bool = False,
              shuffle: bool | None = None) -> "Interleaved":
        """A copy that yields rank `rank`'s part of each epoch in blocks of `batch_size` (module docstring)."""
        other = copy.copy(self)
        other._shared = self._shared.clone().share_memory_()  # its own: its set_epoch leaves self's alone
        other.shuffle = self.shuffle if shuffle is None else shuffle
        other._set_split(rank, world_size, batch_size, drop_last)
        return other

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; skip the first `start` items this rank yields in it (those consumed before a
        restart: whole batches). Started workers read both at their next pass."""
        if start % self.batch_size or not 0 <= start <= self._end():
            raise ValueError(f"start must be a multiple of batch_size={self.batch_size} in [0, {self._end()}] "
                             f"for this rank, got {start}")
        self.epoch, self.start = epoch, start
        self._shared.copy_(torch.tensor([epoch, start]))

    def _part_items(self) -> list[int]:
        """Items this rank takes from each part in an epoch."""
        return [math.ceil((part.total_items if isinstance(part, ShardDataset) else len(part)) / self.world_size)
                for part in self.parts]

    def _end(self) -> int:
        """Positions of this rank's stream an epoch yields (drop_last: whole batches only)."""
        total = sum(self._part_items())
        return total // self.batch_size * self.batch_size if self.drop_last else total

    def __len__(self) -> int:
        return self._end() - self.start

    def _active_workers(self, num_workers: int) -> int:
        per_rank = [len(part.urls) // self.world_size for part in self.parts if isinstance(part, ShardDataset)]
        return max(1, min([num_workers, *per_rank]))

    def _pattern(self) -> np.ndarray:
        """(positions,) the part each position of this rank's stream takes its item from, this epoch."""
        pattern = np.repeat(np.arange(len(self.parts)), self._part_items())
        if self.shuffle:
            pattern = np.random.default_rng(seed_from(self.seed, self.epoch, self.rank, _PATTERN)).permutation(pattern)
        return pattern

    def _map_order(self, k: int) -> np.ndarray:
        """This rank's indices of map part `k` this epoch, in order."""
        size = len(self.parts[k])
        order = np.arange(size)
        if self.shuffle:
            order = np.random.default_rng(seed_from(self.seed, self.epoch, k, _ORDER)).permutation(size)
        return np.resize(order, math.ceil(size / self.world_size) * self.world_size)[self.rank::self.world_size]

    def __iter__(self) -> Iterator[Any]:
        self.epoch, self.start = self._shared.tolist()  # in a persistent worker: what set_epoch chose since
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        active = self._active_workers(num_workers)
        if worker >= active:
            return iter(())
        return self._worker_items((worker + self.start // self.batch_size) % active, active)

    def _worker_items(self, role: int, active: int) -> Iterator[Any]:
        """The items of the blocks worker `role` of `active` is dealt this epoch, from ``start`` on."""
        positions = np.arange(self._end())
        mine = positions[positions // self.batch_size % active == role]
        pattern = self._pattern()
        part_of, done = pattern[mine], mine < self.start
        streams = []
        for k, part in enumerate(self.parts):
            part.set_epoch(self.epoch)
            taken = part_of == k
            if isinstance(part, ShardDataset):
                shards = part.worker_plan(role, active).shards
                streams.append(part.plan_items(WorkerPlan(shards, int(taken.sum()), int((taken & done).sum()), role)))
            else:  # a position's index: the part's next one in this rank's order
                index_at = self._map_order(k)[np.cumsum(pattern == k) - 1]
                streams.append(map(part.__getitem__, index_at[mine[taken & ~done]].tolist()))
        for k in part_of[~done].tolist():
            item = next(streams[k])
            yield item if self.relabel[k] is None else self.relabel[k](item)
