"""Run a function on a few gloo processes of this machine, as torchrun would, and collect what each rank
returns: the harness of the tests whose multi-process numbers must match one process (gathered losses)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run_ranks(fn: Callable[[int], Any], world: int, workdir: Path) -> list[Any]:
    """`fn(rank)` on each of `world` processes joined in one gloo process group (a module-level function,
    so the spawned processes can import it); what each returned, in rank order, passed back through
    `torch.save` files in `workdir`."""
    mp.spawn(_rank, args=(fn, world, str(workdir)), nprocs=world, join=True)
    return [torch.load(workdir / f"rank{rank}.pt") for rank in range(world)]


def _rank(rank: int, fn: Callable[[int], Any], world: int, workdir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{workdir}/rendezvous", rank=rank, world_size=world)
    torch.save(fn(rank), os.path.join(workdir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip gloo's teardown, which can abort at interpreter exit
