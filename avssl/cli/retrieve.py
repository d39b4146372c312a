"""`avssl retrieve`: nearest sounds for an image or a video's frames, nearest frames for a sound."""
from __future__ import annotations

import argparse

from avssl.cli.embed import add_common_embedding_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrieve",
        help="find the clips whose sound matches an image/video, or whose frames match a sound",
        description="Embed a query file and print the top-K gallery clips of the other modality with their "
        "scores (cosine similarity). Examples: avssl retrieve --checkpoint runs/pretrain --gallery gallery.pt "
        "--query dog.jpg --html out/dog.html;  avssl retrieve --checkpoint runs/pretrain --gallery videos/ "
        "--query bark.wav --modality audio",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder (its best) or weights")
    parser.add_argument("--gallery", required=True,
                        help="embeddings file from `avssl embed` (.pt/.safetensors), or videos to embed now "
                        "(folder, class folders or CSV)")
    parser.add_argument("--query", required=True, help="an image, a video file, or an audio file")
    parser.add_argument("--modality", choices=("video", "audio"),
                        help="what of the query to use: its frames (video) or its sound (audio); "
                        "default: audio for audio-only files, video otherwise")
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="matches to show (default 5)")
    parser.add_argument("--html", metavar="OUT.html",
                        help="also write a page with thumbnails and audio players (assets beside it)")
    add_common_embedding_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avssl.data.decode import DecodeError
    from avssl.models.factory import load_model
    from avssl.tasks.report import retrieval_page
    from avssl.tasks.retrieval import (embed_query, guess_modality, is_image, open_gallery, other_modality,
                                       query_window)
    from avssl.train.distributed import pick_device

    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}")
    modality = args.modality or guess_modality(args.query)
    model = load_model(args.checkpoint, pick_device(args.device)).eval()
    index = open_gallery(args.gallery, model, clips_per_video=args.clips_per_video, batch_size=args.batch_size,
                         num_workers=args.num_workers)
    try:
        query = embed_query(model, args.query, modality)
    except DecodeError as err:  # a damaged query file is an input error: one line, exit 2
        raise ValueError(f"cannot decode the query's {'frames' if modality == 'video' else 'sound'}: {err}") from None
    target = other_modality(modality)
    matches = index.search(query, args.top_k, target=target)
    window = (0.0, 0.0) if is_image(args.query) else query_window(args.query, model.config.clip_duration)
    print(f"query {args.query} ({modality}); top {len(matches)} {target} matches among {len(index)} gallery clips:")
    width = max((len(m.path) for m in matches), default=0)
    for rank, match in enumerate(matches, 1):
        print(f"{rank:3d}  {match.score:+.4f}  {match.path:<{width}}  [{match.start:.2f}-{match.end:.2f} s]")
    if args.html:
        page = retrieval_page(args.html, args.query, modality, window, matches, checkpoint=args.checkpoint,
                              gallery=args.gallery, audio_rate=model.config.audio_rate)
        print(f"page: {page}")
    return 0
