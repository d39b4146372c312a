"""A classifier's per-video predictions over a pool of clips, the work split among the ranks of a
process group and the result shared by all of them.

Pseudo-labelling needs the teacher's probabilities of every unlabeled clip on every rank, and the
same ones: each rank then chooses the same pseudo labels and trains on its share of the same
student set. Scoring the whole pool on each rank would cost every GPU the whole pool and, where
kernels are not bit-reproducible, could let ranks disagree on a clip at the threshold. So each rank
scores one contiguous block of the pool's videos in source order (a video's views stay on one
rank, so its average is the one a single process takes) and the blocks are gathered in rank order,
which is the pool's order: every rank holds the same tensors, those of one process.

A block of files is a list of them; a block of shards is the pool narrowed to those videos
(`ShardDataset.only_videos`), which reads only the shards holding them: shards written in source
order (`avssl shard` without shuffling) are each read by one rank, shuffled ones by every rank
that has videos in them, each decoding only its own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from avssl.data.datasets import ClipDataset
from avssl.data.manifest import read_source
from avssl.data.shard_index import is_shard_source, resolve_shards
from avssl.data.shards import ShardDataset
from avssl.models.classifier import AVClassifier
from avssl.tasks.video_eval import VideoOutputs, multi_view_dataset, predict_videos
from avssl.train.distributed import gather_objects, rank_and_world_size


def _block(count: int, rank: int, world_size: int) -> range:
    """Rank `rank`'s contiguous share of `count` things in order (the first ranks' are the smaller ones)."""
    return range(rank * count // world_size, (rank + 1) * count // world_size)


def pool_part(source: str | Path, rank: int, world_size: int, **views: Any) -> ClipDataset | ShardDataset | None:
    """The evaluation views (`multi_view_dataset(..., **views)`) of what rank `rank` of `world_size`
    scores of the pool `source`: all of it in one process, else a block of its videos (module
    docstring); None when the pool has fewer videos than there are ranks and this one gets none."""
    if world_size == 1:
        return multi_view_dataset(source, **views)
    if is_shard_source(source):
        block = _block(len(resolve_shards(source)[1]["durations"]), rank, world_size)  # packed videos
        return multi_view_dataset(source, **views).only_videos(block) if block else None
    files = [entry.path for entry in read_source(source)]
    block = _block(len(files), rank, world_size)
    return multi_view_dataset(files[block.start:block.stop], **views) if block else None


def predict_pool(model: AVClassifier, source: str | Path, *, batch_size: int = 8, num_workers: int = 2,
                 **views: Any) -> VideoOutputs:
    """Per-video class probabilities (N, C) of `model` over every video of `source` (files or
    shards), in the pool's order and equal on every rank (module docstring); `views` are
    `multi_view_dataset`'s options (model_config, clips, crops, clip shape, seed, short). A block
    with no usable video (all rejected, or too short) scores nothing, as its videos would score
    nothing in one process; the ValueError is raised, on every rank, only when no block had one."""
    rank, world_size = rank_and_world_size()
    mine: tuple[torch.Tensor, torch.Tensor, list[str]] | str = f"{source}: the pool holds no video to score"
    try:
        part = pool_part(source, rank, world_size, **views)
    except ValueError as err:  # the block's dataset has no usable video
        part, mine = None, str(err)
    if part is not None:
        outputs = predict_videos(model, part, batch_size=batch_size, num_workers=num_workers)
        mine = (outputs.values, outputs.targets, outputs.paths)
    gathered = gather_objects(mine)
    parts = [p for p in gathered if not isinstance(p, str)]
    if not parts:
        raise ValueError("; ".join(dict.fromkeys(gathered)))  # each rank's reason, once
    return VideoOutputs(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                        [path for p in parts for path in p[2]])
