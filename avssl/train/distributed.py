"""Process-group set-up for torchrun, and the few collectives the loop needs.

One process works too: without torchrun's environment nothing is initialised and every
helper here degrades to the single-process answer.

`init_distributed` and `cleanup` nest: a driver of several runs (pseudo-labelling's rounds) opens the
group once and every run inside it joins that group instead of tearing it down at its end, so the
ranks stay joined between the runs (to share the teacher's predictions). A group made by someone
else (a test harness) is joined and left as it is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size, the device it drives."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """CUDA (this process's GPU) when present and not refused, else CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("train.device=cuda was asked for but no CUDA device is available")
        if requested == "cuda":
            return torch.device("cuda", local_rank)
    return torch.device(requested)


_opened = 0  # init_distributed calls that cleanup has not closed yet
_owned = False  # whether init_distributed made the process group (then the last cleanup ends it)


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of ranks in its process group; (0, 1) outside one."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def init_distributed(requested_device: str = "auto") -> DistContext:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) when launched by it, or the group
    this process already belongs to; each call is closed by one `cleanup`."""
    global _opened, _owned
    if dist.is_initialized():
        rank, world_size = rank_and_world_size()
    else:
        rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = pick_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        _owned = True
    _opened += 1
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier() -> None:
    """Wait for every rank; a no-op in a single process."""
    if dist.is_initialized():
        dist.barrier()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on at least one rank (e.g. a stop signal reached one of them)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_across_ranks(values: dict[str, float | torch.Tensor], device: torch.device) -> dict[str, float]:
    """Average scalar metrics (numbers or 0-d tensors) over ranks so the logged figures describe the
    whole batch: one collective and one device-to-host copy for all of them."""
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=device) for k in keys])
    if dist.is_initialized():
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.tolist()))


def min_across_ranks(value: torch.Tensor) -> float:
    """The smallest of a 0-d tensor's values on all ranks, as a number (a host-device sync)."""
    if not dist.is_initialized():
        return float(value)
    low = value.detach().to(torch.float64).reshape(1).clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float(low)


def spread_across_ranks(value: float, device: torch.device) -> float:
    """max - min of `value` over ranks (0.0 in one process): 0 when every rank holds the same number."""
    if not dist.is_initialized():
        return 0.0
    high = torch.tensor([value], device=device, dtype=torch.float64)
    low = high.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float(high - low)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order, on every rank ([obj] in one process)."""
    if not dist.is_initialized():
        return [obj]
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, obj)
    return everyone


def from_main(obj: Any) -> Any:
    """Rank 0's picklable `obj` on every rank: one decision for all, taken where the files are written."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    """Close one `init_distributed`: the last one closed leaves the group it made cleanly (barrier
    first: gloo aborts at exit otherwise); a group made elsewhere, or still used by an outer run, stays."""
    global _opened, _owned
    _opened = max(_opened - 1, 0)
    if _opened or not _owned or not dist.is_initialized():
        return
    dist.barrier()
    dist.destroy_process_group()
    _owned = False
