"""DataLoader plumbing: a deterministic sharded sampler, a clip collate, one builder.

The order of items is a permutation drawn from (seed, epoch) alone, each rank
takes a strided slice of it, and the clips themselves are a function of
(seed, epoch, index) (see ``avssl.data.sampling``), so a batch's content does
not depend on the number of workers, and ``set_epoch(epoch, start)`` resumes
an interrupted epoch exactly where it stopped.

The epoch travels with every index: the sampler yields ``ItemKey(epoch, index)`` and the loader
reads the dataset through ``EpochItems``, which selects that epoch on the worker's own copy of the
dataset before reading the item. So workers are persistent: they are started once and serve every
epoch (and every validation pass, for a validation loader), instead of being re-spawned each time
to learn the epoch from a dataset attribute. Torch's global RNG in a worker is seeded per item from
(seed, epoch, index) too, and the loader's own RNG never draws from the main process's global RNG,
so iterating it leaves the training loop's random state alone.

Workers ignore SIGTERM and SIGINT sent to the whole process group (Slurm, Kubernetes,
Ctrl-C): the main process decides when to stop and shuts them down itself.

An ``IterableDataset`` (``avssl.data.shards.ShardDataset``) splits itself:
``build_loader`` asks it for this rank's part with ``split`` and
``set_epoch`` goes to it alone, and it shares the epoch with its workers (in shared memory, read at the
start of each pass), so these are persistent too.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
from typing import Any, Iterator, NamedTuple, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from avssl.data.sampling import seed_from

log = logging.getLogger(__name__)


class ItemKey(NamedTuple):
    """What a ``ShardedSampler`` yields: item ``index`` as drawn in ``epoch``."""

    epoch: int
    index: int


class ShardedSampler(Sampler[ItemKey]):
    """Keys ``ItemKey(epoch, index)`` of one rank's shard of a dataset of ``size`` items.

    The epoch's order is ``randperm(size)`` from a generator seeded with
    (seed, epoch) (or ``range(size)`` without shuffle), padded by wrapping
    around to a multiple of ``world_size`` so every rank yields the same
    number of indices; rank r takes positions r, r + world_size, ...
    ``set_epoch(epoch, start)`` selects the epoch and skips the first ``start``
    indices of this rank's shard (those it consumed before a restart); every key carries the epoch.
    """

    def __init__(self, size: int, *, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if size < 1:
            raise ValueError("cannot shard an empty dataset")
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_samples = math.ceil(size / world_size)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; skip the first ``start`` indices of this rank's shard."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start must be in [0, {self.num_samples}] for this shard, got {start}")
        self.epoch = epoch
        self.start = start

    def shard(self) -> list[int]:
        """This rank's full index list for the current epoch (``start`` not applied)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(seed_from(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        total = self.num_samples * self.world_size
        order = (order * math.ceil(total / self.size))[:total]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[ItemKey]:
        return (ItemKey(self.epoch, index) for index in self.shard()[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def collate_clips(items: Sequence[dict | list[dict]]) -> dict[str, Any]:
    """Batch dataset items: lists of dicts (random_multi) are flattened into rows,
    tensors are stacked, everything else (paths, clip times, indices) stays a list."""
    rows = [row for item in items for row in (item if isinstance(item, list) else [item])]
    if not rows:
        raise ValueError("cannot collate an empty batch")
    return {key: torch.stack([r[key] for r in rows]) if isinstance(rows[0][key], torch.Tensor)
            else [r[key] for r in rows] for key in rows[0]}


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Hold SIGTERM / SIGINT back while workers start, so each is born with them blocked (a signal
    to the group in that moment waits, instead of killing a worker before ``_worker_init`` ran);
    the main process gets a held one when this ends."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _ignore_stop_signals() -> None:
    """In a worker: discard SIGTERM / SIGINT from anyone but the main process. A thread takes them
    (they stay blocked everywhere else); SIGTERM from the main process (``Process.terminate`` on a
    worker that does not stop when told) still ends the worker, as torch's own handler would.
    Where ``sigwaitinfo`` is missing (macOS) they just stay blocked, as the worker was born."""
    if not hasattr(signal, "sigwaitinfo"):
        return
    parent = os.getppid()

    def take() -> None:
        while True:
            info = signal.sigwaitinfo(STOP_SIGNALS)
            if info.si_signo == signal.SIGTERM and info.si_pid == parent:
                os._exit(0)

    threading.Thread(target=take, name="avssl-stop-signals", daemon=True).start()


def _worker_init(worker_id: int) -> None:
    # parallelism comes from the workers; intra-op threads in each would oversubscribe the cores
    torch.set_num_threads(1)
    _ignore_stop_signals()


_ITEM_RNG = 2  # seed_from(seed, epoch, index, _ITEM_RNG): a worker's global RNG for one item, not its clip draws


class EpochItems(Dataset):
    """``source`` read by ``ItemKey``: item ``key.index`` with the draws of ``key.epoch``.

    Runs where the item is read (a worker, or the main process without workers): the epoch goes to
    that process's copy of ``source`` (its ``set_epoch``, when it has one) and, in a worker, torch's
    global RNG is seeded from (``seed``, epoch, index), so an item that draws from it (a user's
    dataset) is the same whichever worker reads it and whenever. Otherwise it reads as ``source``
    (``loader.dataset.classes``, ``loader.dataset[0]``), so code holding a loader still finds its data.
    """

    def __init__(self, source: Dataset, seed: int = 0) -> None:
        self.source, self.seed = source, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: ItemKey | int) -> Any:
        if not isinstance(key, ItemKey):
            return self.source[key]
        if hasattr(self.source, "set_epoch"):
            self.source.set_epoch(key.epoch)
        if get_worker_info() is not None:
            torch.manual_seed(seed_from(self.seed, key.epoch, key.index, _ITEM_RNG))
        return self.source[key.index]

    def __getattr__(self, name: str) -> Any:
        if name == "source":  # not set yet (unpickling in a spawned worker): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)


class ClipLoader(DataLoader):
    """A DataLoader over ``EpochItems`` keyed by a ``ShardedSampler`` (or over a self-splitting
    ``IterableDataset``) with ``set_epoch``, an RNG of its own seeded from ``seed``, workers that
    leave stop signals to the main process, and ``close`` to end persistent workers."""

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any) -> None:
        # the workers' base seed comes from here, never from the main process's global RNG
        super().__init__(*args, generator=torch.Generator().manual_seed(seed_from(seed, 1)), **kwargs)

    def __iter__(self) -> Iterator[Any]:
        """A pass over the current epoch; the first one starts the workers (persistent ones serve the later
        passes too: an unfinished pass's prefetched batches are dropped)."""
        with _stop_signals_blocked() if self.num_workers > 0 else contextlib.nullcontext():
            return super().__iter__()

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select ``epoch`` for the next pass; ``start`` is the number of samples (not batches) this
        rank already consumed in that epoch."""
        if isinstance(self.dataset, IterableDataset):
            self.dataset.set_epoch(epoch, start)  # it orders, splits and skips by itself
            return
        self.sampler.set_epoch(epoch, start)

    def close(self) -> None:
        """Shut the workers down now (they would otherwise live as long as the loader)."""
        iterator = getattr(self, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self._iterator = None

    def __enter__(self) -> "ClipLoader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def build_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 2, shuffle: bool = True,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1, seed: int = 0,
                 pin_memory: bool | None = None, timeout: float = 300.0, batches_per_step: int = 1
                 ) -> ClipLoader:
    """A ``ClipLoader`` for ``dataset``: this rank's shard, batched with ``collate_clips``.

    Workers (one torch thread each) are persistent: the epoch reaches them in the sampler's keys, or
    through an IterableDataset's own ``set_epoch``. Each keeps batches in flight for two optimizer steps of
    ``batches_per_step`` batches (gradient accumulation) between them, at least two each, so the step
    never waits for a batch that could have been made while the last one ran. ``timeout`` (seconds,
    workers only) turns a hung decoder into an error instead of a silent stall. ``pin_memory``
    defaults to whether CUDA is available.

    An ``IterableDataset`` must offer ``split(rank=, world_size=, batch_size=, drop_last=, shuffle=)``
    (``ShardDataset`` does): the loader reads the copy it returns, which orders itself from its own
    seed (``seed`` here is for map-style datasets), and whose ``set_epoch(epoch, start)`` must reach
    workers started before it (``ShardDataset``'s does, through shared memory).
    """
    sampler = None
    if isinstance(dataset, IterableDataset):
        if not hasattr(dataset, "split"):
            raise TypeError(f"{type(dataset).__name__} is an IterableDataset without split(rank=, world_size=, ...): "
                            "build_loader cannot give each rank its part of it")
        dataset = dataset.split(rank=rank, world_size=world_size, batch_size=batch_size, drop_last=drop_last,
                                shuffle=shuffle)
        per_rank = len(dataset)
    else:
        sampler = ShardedSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
        per_rank = sampler.num_samples
        dataset = EpochItems(dataset, seed)
    if drop_last and per_rank < batch_size:
        if sampler is not None and per_rank > 1:
            # a corpus smaller than one batch still trains: one batch of all of it per epoch
            log.warning("this rank's part of the data has %d items, fewer than batch_size=%d: batches of %d",
                        per_rank, batch_size, per_rank)
            batch_size = per_rank
        else:
            log.warning("this rank's shard has %d items, fewer than batch_size=%d: with drop_last the loader "
                        "yields no batches", per_rank, batch_size)
    workers = num_workers > 0
    return ClipLoader(
        dataset, seed=seed, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_clips,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory, drop_last=drop_last,
        worker_init_fn=_worker_init if workers else None, timeout=timeout if workers else 0,
        prefetch_factor=prefetch_per_worker(num_workers, batches_per_step) if workers else None,
        persistent_workers=workers)


def prefetch_per_worker(num_workers: int, batches_per_step: int) -> int:
    """Batches each of ``num_workers`` workers keeps ready: two optimizer steps' worth between them
    (``batches_per_step`` each), and at least torch's default of two."""
    return max(2, math.ceil(2 * batches_per_step / num_workers))
