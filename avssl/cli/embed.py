"""`avssl embed --checkpoint CKPT DATA --out FILE`: video and audio embeddings of every clip."""
from __future__ import annotations

import argparse


def add_common_embedding_args(parser: argparse.ArgumentParser) -> None:
    """Options every command that embeds a source shares (embed, retrieve, evaluate)."""
    parser.add_argument("--clips-per-video", type=int, default=1, metavar="N",
                        help="evenly spaced clips per video (default 1: the centre clip)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="B", help="clips per forward pass (default 16)")
    parser.add_argument("--num-workers", type=int, default=2, metavar="W", help="decoding processes (default 2)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed every clip of a folder / CSV with a checkpoint (video and audio vectors)",
        description="Write L2-normalised video and audio embeddings of every clip of DATA, with paths, clip "
        "times, audio flags and labels, to a .pt or .safetensors file that `avssl retrieve --gallery` reads. "
        "Example: avssl embed --checkpoint runs/pretrain videos/ --out gallery.pt --clips-per-video 3",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder (its best) or weights")
    parser.add_argument("data", help="folder of videos, folder of class folders, or CSV manifest")
    parser.add_argument("--out", required=True, help="output file: .pt or .safetensors")
    add_common_embedding_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from avssl.tasks.embed import SUFFIXES, embed_source

    if Path(args.out).suffix not in SUFFIXES:
        raise ValueError(f"--out {args.out}: use a {' or '.join(SUFFIXES)} file name")
    embeddings = embed_source(args.checkpoint, args.data, clips_per_video=args.clips_per_video,
                              batch_size=args.batch_size, num_workers=args.num_workers, device=args.device)
    path = embeddings.save(args.out)
    silent = int((~embeddings.has_audio).sum())
    print(f"{len(embeddings)} clips ({silent} without sound), {embeddings.video_emb.shape[1]}-d embeddings -> {path}")
    return 0
