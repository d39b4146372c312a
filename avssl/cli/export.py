"""`avssl export MODEL --format hub|transformers|onnx|pt2 --out DIR`: a trained model in another form."""
from __future__ import annotations

import argparse
import logging

FORMATS = ("hub", "transformers", "onnx", "pt2")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a model as a Hub folder with a model card, transformers models, or ONNX / torch.export graphs",
        description="Write MODEL (a run folder: its best checkpoint; a checkpoint or saved-model folder; or a Hub "
        "repo id) in another form. hub: model.safetensors + config.json + README.md, a model card with the "
        "run's recipe, data and held-out results (--push-to-hub uploads it). transformers: the video encoder "
        "as a ViViT and the audio encoder as an AST folder for transformers.AutoModel. onnx / pt2: the "
        "embed_video and embed_audio functions as ONNX models or torch.export programs, checked against the "
        "eager model. Example: avssl export runs/pretrain --format transformers --out exported/",
    )
    parser.add_argument("model", help="run folder, checkpoint folder, saved-model folder or Hub repo id (org/name)")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", default=None,
                        help="with --format hub: also upload the folder to this Hub repo (needs a login token)")
    parser.add_argument("--revision", default=None, help="with a Hub repo id as MODEL: its branch, tag or commit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from avssl.models.card import model_card, run_of
    from avssl.models.factory import load
    from avssl.models.hub import resolve
    from avssl.models.weights import saved_files

    if args.push_to_hub and args.fmt != "hub":
        raise ValueError("--push-to-hub goes with --format hub")
    source = resolve(args.model, args.revision)
    model = load(source)
    if args.fmt == "hub":
        checkpoint = saved_files(source)[0].parent
        card = model_card(model, run=run_of(checkpoint), checkpoint=checkpoint, repo_id=args.push_to_hub)
        out = model.save_pretrained(args.out, model_card=card, push_to_hub=bool(args.push_to_hub),
                                    repo_id=args.push_to_hub)
        print(f"{model.config.name} model with its model card -> {out}" + (
            f" (pushed to {args.push_to_hub})" if args.push_to_hub else ""))
    elif args.fmt == "transformers":
        from avssl.models.export_hf import export_transformers

        for stream, folder in export_transformers(model, args.out).items():
            print(f"{stream} encoder -> {folder}")
    else:
        from avssl.models.export_graph import export_embedding_functions

        for name in ("onnx_ir", "onnxscript"):  # they log every graph rewrite at INFO
            logging.getLogger(name).setLevel(logging.WARNING)
        for graph in export_embedding_functions(model, Path(args.out), args.fmt):
            print(f"embed_{graph.modality} -> {graph.path} (max |difference| to eager {graph.max_abs_diff:.1e})")
    return 0
