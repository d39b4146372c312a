"""`avssl select --checkpoint CKPT --pool SOURCE --budget N --strategy S --out to_label.csv`: the clips
worth labelling next."""
from __future__ import annotations

import argparse

from avssl.cli.embed import add_common_embedding_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from avssl.tasks.pool import MODALITIES
    from avssl.tasks.select import MEASURES, STRATEGIES

    parser = subparsers.add_parser(
        "select",
        help="choose the unlabeled clips worth labelling (uncertainty, core-set, BADGE or random)",
        description="Rank the clips of an unlabeled pool with a model and write the BUDGET chosen ones as a "
        "manifest to label (path, an empty label column, start, end, rank, score, predicted) with a contact "
        "sheet (OUT.html: thumbnail, sound, score). uncertainty and badge need a fine-tuned classifier; "
        "coreset works with any checkpoint and with an `avssl embed` file as the pool. Example: avssl select "
        "--checkpoint runs/ft --pool videos/ --budget 100 --strategy badge --labelled train.csv --out to_label.csv",
    )
    parser.add_argument("--checkpoint", help="classifier (avssl finetune) or pretrained checkpoint / run folder; "
                        "optional when --pool is an embeddings file and no labelled clip is outside it")
    parser.add_argument("--pool", required=True,
                        help="unlabeled clips: folder, CSV, shards, or an `avssl embed` file (.pt / .safetensors)")
    parser.add_argument("--budget", type=int, required=True, metavar="N", help="how many clips to choose")
    parser.add_argument("--strategy", required=True, choices=STRATEGIES)
    parser.add_argument("--labelled", metavar="CSV", help="clips already labelled: never chosen, and core-set's "
                        "starting centres (a CSV manifest or folder)")
    parser.add_argument("--out", required=True, help="the manifest to write (CSV)")
    parser.add_argument("--measure", choices=MEASURES, default="entropy", help="uncertainty's measure (default entropy)")
    parser.add_argument("--modality", choices=MODALITIES, default="av",
                        help="pretrained embeddings to measure distances on (default av: both side by side)")
    parser.add_argument("--seed", type=int, default=0, help="seeds random, badge's draws and core-set's first pick")
    parser.add_argument("--chunk-size", type=int, default=None, metavar="R",
                        help="rows per block of a distance computation (default 8192)")
    parser.add_argument("--html", metavar="PATH", help="contact sheet (default: OUT with .html)")
    parser.add_argument("--sheet-limit", type=int, default=200, metavar="K", help="clips shown on the sheet (200)")
    add_common_embedding_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from avssl.models.factory import load
    from avssl.tasks.pool import contact_sheet, labelled_paths, open_pool, select_clips, write_selection
    from avssl.train.distributed import pick_device

    model = load(args.checkpoint, pick_device(args.device)) if args.checkpoint else None
    options = dict(modality=args.modality, clips_per_video=args.clips_per_video, batch_size=args.batch_size,
                   num_workers=args.num_workers)
    pool = open_pool(args.pool, model, **options)
    labelled = labelled_paths(args.labelled) if args.labelled else []
    extra = None
    if args.strategy == "coreset" and pool.outside(labelled):  # core-set's centres need their features
        extra = open_pool(args.labelled, model, **options).features
    selection = select_clips(pool, args.strategy, args.budget, labelled=labelled, labelled_features=extra,
                             measure=args.measure, seed=args.seed, chunk_size=args.chunk_size)
    out = write_selection(pool, selection, args.out)
    html = contact_sheet(pool, selection, args.html or Path(args.out).with_suffix(".html"), limit=args.sheet_limit)
    print(f"{len(selection.indices)} of {len(pool)} clips chosen by {args.strategy} -> {out} (sheet: {html})")
    return 0
