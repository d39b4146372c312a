"""`avssl evaluate retrieval|linear-probe|sync`: score a checkpoint without training it."""
from __future__ import annotations

import argparse

from avssl.cli.embed import add_common_embedding_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint: cross-modal retrieval, a linear probe or audio-visual synchronisation",
        description="Evaluate a checkpoint. Examples: avssl evaluate retrieval --checkpoint runs/pretrain "
        "videos/val.csv --json val.json;  avssl evaluate linear-probe --checkpoint runs/pretrain "
        "--train data/train.csv --val data/val.csv;  avssl evaluate sync --checkpoint runs/pretrain videos/val.csv",
    )
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")

    retrieval = tasks.add_parser(
        "retrieval", help="video->audio and audio->video R@1/5/10 and median rank over every clip",
        description="Every clip is a query and every clip a candidate, in both directions; prints R@1, R@5, "
        "R@10 and median rank (and writes them as JSON with --json). Published figures use subsets: CAV-MAE "
        "ranks among 5 clips per class of the AudioSet eval set and of the VGGSound test set (1,545 clips); "
        "--per-class 5 --seed S draws such a subset of labelled DATA, the same clips for the same seed "
        "whatever the manifest order (multi-label: a clip counts for each of its classes, rarest classes "
        "filled first, every class gets at least N). The JSON records the protocol.",
    )
    retrieval.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder (its best) or weights")
    retrieval.add_argument("data", help="folder of videos, folder of class folders, or CSV manifest")
    retrieval.add_argument("--json", metavar="OUT", help="write the metrics to this JSON file")
    retrieval.add_argument("--per-class", type=int, metavar="N",
                           help="evaluate on N clips per class (CAV-MAE: 5) instead of every clip; needs labels")
    retrieval.add_argument("--seed", type=int, default=0, metavar="S",
                           help="seed of the --per-class draw (default 0)")
    retrieval.add_argument("--subset-csv", metavar="CSV",
                           help="with --per-class: also write the drawn clips as a manifest to this file")
    add_common_embedding_args(retrieval)
    retrieval.set_defaults(func=run_retrieval)

    probe = tasks.add_parser(
        "linear-probe", help="frozen encoder + linear classifier: top-1 on labelled data",
        description="Train a linear classifier on frozen features of --train and report top-1 on --val.",
    )
    probe.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder (its best) or weights")
    probe.add_argument("--train", required=True, help="labelled training videos (class folders or CSV)")
    probe.add_argument("--val", required=True, help="labelled validation videos (class folders or CSV)")
    probe.add_argument("--mode", choices=("video", "audio", "av"), default="video",
                       help="features of the video encoder, the audio encoder or both (default video)")
    probe.add_argument("--clips", type=int, default=1, metavar="N",
                       help="evenly spaced clips per video whose features are averaged (default 1)")
    probe.add_argument("--batch-size", type=int, default=8, metavar="B", help="clips per forward pass (default 8)")
    probe.add_argument("--num-workers", type=int, default=2, metavar="W", help="decoding processes (default 2)")
    probe.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    probe.add_argument("--json", metavar="OUT", help="write the metrics to this JSON file")
    probe.set_defaults(func=run_linear_probe)

    sync = tasks.add_parser(
        "sync", help="offset accuracy of the synchronisation head (models pretrained with model.sync_weight > 0)",
        description="Each clip's sound is moved by one of the model's offsets (model.sync_offsets evenly spaced "
        "in +-model.sync_max_shift seconds, drawn with --seed) and the sync head names the offset; prints offset "
        "accuracy with its chance level, accuracy within one offset, in-sync-or-not accuracy and the mean "
        "error in seconds.",
    )
    sync.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder (its last checkpoint: the "
                      "best is chosen on retrieval) or weights")
    sync.add_argument("data", help="folder of videos, folder of class folders, or CSV manifest")
    sync.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the offsets drawn (default 0)")
    sync.add_argument("--json", metavar="OUT", help="write the metrics to this JSON file")
    add_common_embedding_args(sync)
    sync.set_defaults(func=run_sync)


def _print_and_save(metrics: dict, json_path: str | None) -> None:
    from avssl.tasks.evaluate import write_json

    for key, value in sorted(metrics.items()):
        if isinstance(value, dict):
            print(f"{key:>18}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            print(f"{key:>18}: {value:.2f}" if isinstance(value, float) else f"{key:>18}: {value}")
    if json_path:
        print(f"metrics: {write_json(metrics, json_path)}")


def run_retrieval(args: argparse.Namespace) -> int:
    from avssl.tasks.evaluate import evaluate_retrieval

    if args.subset_csv and args.per_class is None:
        raise ValueError("--subset-csv writes the clips drawn by --per-class: give --per-class N too")
    metrics = evaluate_retrieval(args.checkpoint, args.data, per_class=args.per_class, seed=args.seed,
                                 subset_csv=args.subset_csv, clips_per_video=args.clips_per_video,
                                 batch_size=args.batch_size, num_workers=args.num_workers, device=args.device)
    _print_and_save(metrics, args.json)
    return 0


def run_linear_probe(args: argparse.Namespace) -> int:
    from avssl.tasks.linear_probe import linear_probe

    metrics = linear_probe(args.checkpoint, args.train, args.val, mode=args.mode, clips=args.clips,
                           batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                           show_progress=True)
    _print_and_save(metrics, args.json)
    return 0


def run_sync(args: argparse.Namespace) -> int:
    from avssl.tasks.sync import evaluate_sync

    metrics = evaluate_sync(args.checkpoint, args.data, seed=args.seed, clips_per_video=args.clips_per_video,
                            batch_size=args.batch_size, num_workers=args.num_workers, device=args.device)
    _print_and_save(metrics, args.json)
    return 0
