"""Interleaved streams of shards and files: each rank's share of every part, mixed, dealt to workers
in batch-size blocks; persistent workers, exact resume, reproducible for a seed."""
from __future__ import annotations

import math
import multiprocessing
import os

import pytest
import torch

from avssl.data.datasets import ClipDataset
from avssl.data.interleave import Interleaved
from avssl.data.loader import build_loader
from avssl.data.shard_writer import write_shards
from avssl.data.shards import ShardDataset

TINY = dict(num_frames=2, clip_duration=1.0, frame_size=32)


def _with_pid(item: dict) -> dict:
    """The item and the process that read it (every part's `relabel` here)."""
    return {**item, "pid": os.getpid()}


@pytest.fixture(scope="module")
def shard_dir(synthetic_corpus, tmp_path_factory):
    """train.csv of the synthetic corpus (24 videos) in 6-7 shuffled shards."""
    out = tmp_path_factory.mktemp("shards")
    write_shards(synthetic_corpus / "train.csv", out, shard_size="150KB", shuffle_seed=0, probe_cache=False)
    return out


def _stream(shard_dir, corpus, seed: int = 4) -> Interleaved:
    """The 24 training videos as shards, then the 8 validation videos as files."""
    return Interleaved([ShardDataset(shard_dir, seed=seed, **TINY),
                        ClipDataset(corpus / "val.csv", seed=seed, probe_cache=False, **TINY)],
                       seed=seed, relabel=[_with_pid, _with_pid])


def _pass(loader, epoch: int, start: int = 0) -> tuple[list[str], torch.Tensor, set[int]]:
    """(paths, clip starts, worker pids) of one pass over `epoch` from sample `start`."""
    loader.set_epoch(epoch, start)
    batches = list(loader)
    return ([p for b in batches for p in b["path"]], torch.tensor([t for b in batches for t in b["clip_start"]]),
            {int(p) for b in batches for p in b["pid"]})


def test_each_rank_takes_its_share_of_every_part_mixed(shard_dir, synthetic_corpus):
    files = ClipDataset(synthetic_corpus / "val.csv", probe_cache=False, **TINY)
    val = {files.video_path(k) for k in range(files.num_videos)}
    seen = []
    for rank in (0, 1):
        loader = build_loader(_stream(shard_dir, synthetic_corpus), batch_size=2, num_workers=2, rank=rank,
                              world_size=2, drop_last=False)
        assert len(loader.dataset) == 12 + 4 and len(loader) == 8
        paths, _, _ = _pass(loader, 0)
        kinds = [p in val for p in paths]
        assert len(paths) == 16 and sum(kinds) == 4
        assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)  # the parts are mixed
        seen.append(paths)
    taken = [{p for p in paths if p in val} for paths in seen]
    assert taken[0] | taken[1] == val and not taken[0] & taken[1]  # the ranks split the files' part
    shards = [{p for p in paths if p not in val} for paths in seen]
    assert not shards[0] & shards[1]  # and read disjoint shards


def test_drop_last_keeps_whole_batches_and_every_rank_the_same_count(shard_dir, synthetic_corpus):
    stream = _stream(shard_dir, synthetic_corpus).split(rank=1, world_size=3, batch_size=5, drop_last=True)
    assert len(stream) == (math.ceil(24 / 3) + math.ceil(8 / 3)) // 5 * 5 == 10
    with pytest.raises(ValueError, match="multiple of batch_size=5"):
        stream.set_epoch(0, start=3)


def test_persistent_workers_give_the_orders_of_fresh_ones_and_resume_exactly(shard_dir, synthetic_corpus):
    options = dict(batch_size=2, num_workers=2, rank=1, world_size=2, drop_last=True)
    with build_loader(_stream(shard_dir, synthetic_corpus), **options) as loader:
        order0, starts0, pids = _pass(loader, 0)
        assert len(pids) == 2 and os.getpid() not in pids
        order1, starts1, again = _pass(loader, 1)
        assert again == pids  # the same two processes serve epoch 1
        assert order1 != order0 and not torch.equal(starts1, starts0)
        loader.set_epoch(0)
        next(iter(loader))  # a pass left unfinished: its prefetched batches are dropped
        resumed, resumed_starts, _ = _pass(loader, 1, start=6)
        assert resumed == order1[6:] and torch.equal(resumed_starts, starts1[6:])
        replay, replay_starts, _ = _pass(loader, 0)
        assert replay == order0 and torch.equal(replay_starts, starts0)
    assert not any(p.pid in pids for p in multiprocessing.active_children())
    for epoch, order in ((0, order0), (1, order1)):
        with build_loader(_stream(shard_dir, synthetic_corpus), **options) as fresh:
            assert _pass(fresh, epoch)[0] == order
    with build_loader(_stream(shard_dir, synthetic_corpus, seed=5), **options) as other:
        assert _pass(other, 0)[0] != order0  # another seed, another stream
