"""`avssl shard DATA --out DIR`: pack videos into WebDataset tar shards for streaming at scale.

A thin layer over `avssl.data.shard_writer.write_shards`: parse the options, pack, print the counts
and the files refused (exit code 0 when at least one video was packed).
"""
from __future__ import annotations

import argparse

_EXAMPLES = 5


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `shard` and its options."""
    parser = subparsers.add_parser(
        "shard",
        help="pack videos (original bytes + metadata JSON) into WebDataset tar shards",
        description="Probe every video of DATA and pack the valid ones, bytes unchanged, with a JSON of their "
        "metadata (path, label(s), segment, index, probe facts) into DIR/shard-000000.tar, ... plus "
        "DIR/index.json. Unreadable files are reported and left out. Train on the result with "
        "data.train=DIR. Example: avssl shard videos/ --out shards/ --shard-size 1GB --shuffle-seed 0",
    )
    parser.add_argument("data", metavar="DATA", help="folder of videos, folder of class folders, or CSV manifest")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the shards and index.json")
    parser.add_argument("--shard-size", default="1GB", metavar="SIZE",
                        help="largest shard, e.g. 1GB, 500MB, 64MiB (default 1GB; a larger video gets its own)")
    parser.add_argument("--shuffle-seed", type=int, metavar="SEED",
                        help="pack videos in an order shuffled with SEED so each shard mixes classes "
                        "(recommended for training; default: source order)")
    parser.add_argument("--overwrite", action="store_true", help="replace shards already in DIR")
    parser.add_argument("--no-cache", action="store_true", help="probe every file again, leave the probe cache alone")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the shards and print what was packed and what was refused."""
    import sys

    from avssl.data.shard_writer import parse_size, write_shards

    size = parse_size(args.shard_size)  # a bad size fails before anything is probed
    try:
        report = write_shards(args.data, args.out, shard_size=size, shuffle_seed=args.shuffle_seed,
                              probe_cache=False if args.no_cache else None, overwrite=args.overwrite,
                              show_progress=sys.stderr.isatty())
    except FileExistsError as err:  # reported like the other usage errors, without a traceback
        raise ValueError(str(err)) from err
    print(report.summary())
    for info in report.rejected[:_EXAMPLES]:
        print(f"rejected: {info.path}: {info.reason}")
    if len(report.rejected) > _EXAMPLES:
        print(f"... and {len(report.rejected) - _EXAMPLES} more; all are listed in {report.out_dir}/index.json")
    return 0
