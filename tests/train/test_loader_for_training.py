"""What the training loop needs from its DataLoader: an RNG of its own, items seeded from (seed, epoch,
index), persistent workers that learn the epoch from the sampler's keys, and workers that leave stop
signals to the main process without outliving it."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from avssl.data.loader import build_loader


class _Items(Dataset):
    """Items saying which process made them and with which torch seed, a little slowly."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        time.sleep(0.02)
        return {"index": torch.tensor(index), "pid": os.getpid(), "seed": torch.initial_seed()}


class _Stuck(Dataset):
    """A decoder that hangs for good, after writing its process id to `pid_file`."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        self.pid_file.write_text(str(os.getpid()))
        time.sleep(3600)
        return {}


def _item_seeds(loader, epoch: int) -> dict[int, int]:
    """Index -> the torch seed its item was read with, for one pass over `epoch`."""
    loader.set_epoch(epoch)
    return {int(i): seed for batch in loader for i, seed in zip(batch["index"], batch["seed"])}


def test_iterating_leaves_the_global_rng_alone_and_seeds_items_from_seed_epoch_and_index():
    loader = build_loader(_Items(), batch_size=4, num_workers=1, shuffle=False, seed=3)
    state = torch.get_rng_state()
    first = _item_seeds(loader, 0)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # whatever the training loop did in between
    assert _item_seeds(loader, 0) == first
    assert len(set(first.values())) == 8  # one seed per item, not one per worker
    assert set(_item_seeds(loader, 1).values()).isdisjoint(first.values())
    two_workers = build_loader(_Items(), batch_size=2, num_workers=2, shuffle=False, seed=3)
    assert _item_seeds(two_workers, 0) == first  # whichever worker reads an item
    loader.close(), two_workers.close()


def _pids(loader, epoch: int, start: int = 0) -> tuple[set[int], list[int]]:
    loader.set_epoch(epoch, start)
    batches = list(loader)
    return {pid for b in batches for pid in b["pid"]}, [int(i) for b in batches for i in b["index"]]


def test_workers_persist_across_epochs_and_unfinished_passes():
    with build_loader(_Items(), batch_size=2, num_workers=2, seed=1) as loader:
        pids, order = _pids(loader, 0)
        assert len(pids) == 2 and os.getpid() not in pids and sorted(order) == list(range(8))
        loader.set_epoch(1)
        next(iter(loader))  # a pass left unfinished (a stop signal): its prefetched batches are dropped
        again, resumed = _pids(loader, 1, start=2)
        assert again == pids  # the same two processes: none was re-spawned
        assert resumed == _pids(loader, 1)[1][2:]  # the keys carried epoch 1 and the resume point
        assert resumed != order[2:]
    assert not any(p.pid in pids for p in multiprocessing.active_children())  # close() ended them


def _send(signum: int, pid: int) -> None:
    """Signal `pid` from another process, as a job scheduler or a terminal does."""
    subprocess.run([sys.executable, "-c", f"import os; os.kill({pid}, {int(signum)})"], check=True)


def test_workers_ignore_stop_signals_sent_by_others():
    loader = build_loader(_Items(), batch_size=2, num_workers=1, shuffle=False, drop_last=False)
    batches = iter(loader)
    first = next(batches)
    for signum in (signal.SIGTERM, signal.SIGINT):
        _send(signum, first["pid"][0])
    rest = list(batches)  # before: "DataLoader worker (pid ...) is killed by signal: Terminated"
    assert torch.cat([first["index"], *(b["index"] for b in rest)]).tolist() == list(range(8))


def test_a_hung_worker_still_ends_when_the_loader_shuts_it_down(tmp_path):
    # torch stops a worker that does not answer with SIGTERM from the main process: that one counts
    pid_file = tmp_path / "pid"
    batches = iter(build_loader(_Stuck(pid_file), batch_size=1, num_workers=1, shuffle=False, timeout=1))
    with pytest.raises(RuntimeError, match="timed out"):
        next(batches)
    pid = int(pid_file.read_text())
    batches._shutdown_workers()  # what ClipLoader.close does (and the iterator's collection)
    deadline = time.monotonic() + 10
    try:
        while pid in {p.pid for p in multiprocessing.active_children()}:
            assert time.monotonic() < deadline, "the hung worker outlived its shutdown"
            time.sleep(0.1)
    finally:
        if pid in {p.pid for p in multiprocessing.active_children()}:
            os.kill(pid, signal.SIGKILL)  # or the test process would wait for it at exit
