"""Shard loaders keep their workers: the epoch and resume point reach persistent workers through
shared memory, so one set of processes serves every epoch with the order a fresh set would give."""
from __future__ import annotations

import multiprocessing
import os

import pytest
import torch

from avssl.data.loader import build_loader
from avssl.data.shard_writer import write_shards
from avssl.data.shards import ShardDataset

TINY = dict(num_frames=2, clip_duration=1.0, frame_size=32)


class _PidShards(ShardDataset):
    """Shard items that also say which process read them."""

    def _load(self, sample: dict, meta: dict, index: int, item: int) -> dict:
        return {**super()._load(sample, meta, index, item), "pid": os.getpid()}


@pytest.fixture(scope="module")
def shard_dir(synthetic_corpus, tmp_path_factory):
    """train.csv of the synthetic corpus (24 videos) in 6-7 shuffled shards."""
    out = tmp_path_factory.mktemp("shards")
    write_shards(synthetic_corpus / "train.csv", out, shard_size="150KB", shuffle_seed=0, probe_cache=False)
    return out


def _pass(loader, epoch: int, start: int = 0) -> tuple[set[int], list[int], torch.Tensor]:
    """(worker pids, item indices, clip starts) of one pass over `epoch` from sample `start`."""
    loader.set_epoch(epoch, start)
    batches = list(loader)
    return ({pid for b in batches for pid in b["pid"]}, [int(i) for b in batches for i in b["index"]],
            torch.tensor([t for b in batches for t in b["clip_start"]]))


def test_shard_workers_persist_across_epochs_with_orders_of_fresh_ones(shard_dir):
    options = dict(batch_size=2, num_workers=2, rank=1, world_size=2, drop_last=True)
    with build_loader(_PidShards(shard_dir, seed=4, **TINY), **options) as loader:
        pids, order0, starts0 = _pass(loader, 0)
        assert len(pids) == 2 and os.getpid() not in pids
        again, order1, starts1 = _pass(loader, 1)
        assert again == pids  # the same two processes: none was re-spawned for epoch 1
        assert order1 != order0 and not torch.equal(starts1, starts0)  # a new shard order and new clip draws
        loader.set_epoch(0)
        next(iter(loader))  # a pass left unfinished (a stop signal): its prefetched batches are dropped
        resumed = _pass(loader, 1, start=4)
        assert resumed[0] <= pids and resumed[1] == order1[4:]  # exact resume by persistent workers
        _, replay, replay_starts = _pass(loader, 0)
        assert replay == order0 and torch.equal(replay_starts, starts0)  # reproducible for the seed
    assert not any(p.pid in pids for p in multiprocessing.active_children())  # close() ended them
    for epoch, order, starts in ((0, order0, starts0), (1, order1, starts1)):  # fresh workers, as before
        with build_loader(_PidShards(shard_dir, seed=4, **TINY), **options) as fresh:
            _, fresh_order, fresh_starts = _pass(fresh, epoch)
        assert fresh_order == order and torch.equal(fresh_starts, starts)


def test_a_split_copy_keeps_its_epoch_to_itself(shard_dir):
    dataset = ShardDataset(shard_dir, **TINY)
    part = dataset.split(rank=0, world_size=2)
    part.set_epoch(3, start=2)
    next(iter(dataset)), next(iter(part))  # each pass reads its own dataset's shared (epoch, start)
    assert (dataset.epoch, dataset.start) == (0, 0) and (part.epoch, part.start) == (3, 2)
