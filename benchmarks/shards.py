"""Loader throughput: clips/s reading WebDataset shards against reading the loose files.

Packs the videos of DIR into shards (in a temporary folder unless --shards is given), then runs the
same training loader settings (random sampler, transforms, batch, workers) over both for the same
number of epochs, alternating the two so that a busy machine slows them alike, and prints clips/s for
each and their ratio.

    python benchmarks/shards.py --make /tmp/shard_bench          # a synthetic corpus (64x64 H.264 + AAC)
    python benchmarks/shards.py /tmp/shard_bench --workers 2 --epochs 3
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from avssl.data.datasets import ClipDataset
from avssl.data.loader import build_loader
from avssl.data.shard_writer import write_shards
from avssl.data.shards import ShardDataset
from avssl.data.synthetic import make_corpus


def _clips_per_second(loader, epoch: int) -> tuple[int, float]:
    """(clips, seconds) for one pass over `loader` in `epoch`, worker start-up included."""
    loader.set_epoch(epoch)
    start = time.perf_counter()
    clips = sum(len(batch["index"]) for batch in loader)
    return clips, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="videos: folder, class folders or CSV (with --make: where to write)")
    parser.add_argument("--make", action="store_true", help="write a synthetic corpus into DIR and stop")
    parser.add_argument("--videos-per-class", type=int, default=32, help="with --make (4 classes, 10 s each)")
    parser.add_argument("--shards", type=Path, help="where to write the shards (default: a temporary folder)")
    parser.add_argument("--shard-size", default="2MB")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame-size", type=int, default=112)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.make:
        make_corpus(args.dir, videos_per_class=args.videos_per_class, duration=10.0, val_fraction=0.0)
        print(f"wrote a synthetic corpus to {args.dir}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        out = args.shards or Path(scratch) / "shards"
        report = write_shards(args.dir, out, shard_size=args.shard_size, shuffle_seed=0, probe_cache=False,
                              overwrite=True)
        print(report.summary())
        clip = dict(num_frames=args.frames, frame_size=args.frame_size, clip_duration=args.seconds)
        load = dict(batch_size=args.batch_size, num_workers=args.workers, drop_last=False)
        loaders = {
            "loose files (ClipDataset)": build_loader(ClipDataset(args.dir, probe_cache=False, **clip), **load),
            "shards (ShardDataset)": build_loader(ShardDataset(out, **clip), **load),
        }
        totals = {name: [0, 0.0] for name in loaders}
        for epoch in range(args.epochs):
            for name, loader in loaders.items():
                clips, seconds = _clips_per_second(loader, epoch)
                totals[name][0] += clips
                totals[name][1] += seconds
    print(f"{args.dir}: {args.epochs} epochs, {args.frames} frames at {args.frame_size}px + audio per "
          f"{args.seconds:g} s clip, batch {args.batch_size}, {args.workers} workers")
    rates = {name: clips / seconds for name, (clips, seconds) in totals.items()}
    for name, rate in rates.items():
        print(f"  {name:<26} {rate:7.1f} clips/s  ({totals[name][0]} clips in {totals[name][1]:.1f} s)")
    files, shards = rates.values()
    print(f"  shards / files: {shards / files:.2f}x")


if __name__ == "__main__":
    main()
