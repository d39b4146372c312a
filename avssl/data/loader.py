"""DataLoader plumbing: a deterministic sharded sampler, a clip collate, one builder.

The order of items is a permutation drawn from (seed, epoch) alone, each rank
takes a strided slice of it, and the clips themselves are a function of
(seed, epoch, index) (see ``avssl.data.sampling``), so a batch's content does
not depend on the number of workers, and ``set_epoch(epoch, start)`` resumes
an interrupted epoch exactly where it stopped. The loader's own RNG (the base seed of
its workers) is also drawn from (seed, epoch), never from the global RNG, so iterating it
leaves the training loop's random state alone.

Workers ignore SIGTERM and SIGINT sent to the whole process group (Slurm, Kubernetes,
Ctrl-C): the main process decides when to stop and shuts them down itself.

An ``IterableDataset`` (``avssl.data.shards.ShardDataset``) splits itself:
``build_loader`` asks it for this rank's part with ``split`` and
``set_epoch`` goes to it alone.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from avssl.data.sampling import seed_from

log = logging.getLogger(__name__)


class ShardedSampler(Sampler[int]):
    """Indices of one rank's shard of a dataset of ``size`` items.

    The epoch's order is ``randperm(size)`` from a generator seeded with
    (seed, epoch) (or ``range(size)`` without shuffle), padded by wrapping
    around to a multiple of ``world_size`` so every rank yields the same
    number of indices; rank r takes positions r, r + world_size, ...
    ``set_epoch(epoch, start)`` selects the epoch and skips the first ``start``
    indices of this rank's shard (those it consumed before a restart).
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

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start:])

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


class ClipLoader(DataLoader):
    """A DataLoader over a ``ShardedSampler`` (or a self-splitting ``IterableDataset``) with
    ``set_epoch`` for the sampler and the dataset, an RNG seeded from (``seed``, epoch) and
    workers that leave stop signals to the main process."""

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, generator=torch.Generator(), **kwargs)
        self.seed, self.epoch = seed, 0

    def __iter__(self) -> Iterator[Any]:
        """A fresh pass; its workers' base seed comes from (seed, epoch) whatever came before."""
        self.generator.manual_seed(seed_from(self.seed, self.epoch, 1))  # 1: not the sampler's (seed, epoch)
        with _stop_signals_blocked() if self.num_workers > 0 else contextlib.nullcontext():
            return super().__iter__()

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Reseed the shard order, the dataset's clip draws and the loader's RNG for ``epoch``;
        ``start`` is the number of samples (not batches) this rank already consumed in that epoch."""
        self.epoch = epoch
        if isinstance(self.dataset, IterableDataset):
            self.dataset.set_epoch(epoch, start)  # it orders, splits and skips by itself
            return
        self.sampler.set_epoch(epoch, start)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def build_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 2, shuffle: bool = True,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1, seed: int = 0,
                 pin_memory: bool | None = None, timeout: float = 300.0, prefetch_factor: int | None = None
                 ) -> ClipLoader:
    """A ``ClipLoader`` for ``dataset``: this rank's shard, batched with ``collate_clips``.

    Workers are not persistent, so the epoch set on the dataset before each
    ``iter()`` reaches them; each worker uses one torch thread. ``timeout``
    (seconds, workers only) turns a hung decoder into an error instead of a
    silent stall. ``pin_memory`` defaults to whether CUDA is available.

    An ``IterableDataset`` must offer ``split(rank=, world_size=, batch_size=, drop_last=, shuffle=)``
    (``ShardDataset`` does): the loader reads the copy it returns, which orders itself from its own
    seed (``seed`` here is for map-style datasets).
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
        prefetch_factor=prefetch_factor if workers else None, persistent_workers=False)
