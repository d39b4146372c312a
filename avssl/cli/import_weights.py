"""`avssl import-weights SOURCE OUT [key=value ...]`: an avssl model folder from foreign weights.

SOURCE is a local transformers model folder (ViT, ViT-MAE, VideoMAE, AST: config.json + weights) or a
CAV-MAE checkpoint file (.pth). The model's shape is read from the checkpoint (widths, depths, patch
and input sizes), the rest comes from `--base`, and `key=value` overrides apply last.
"""
from __future__ import annotations

import argparse

KINDS = ("auto", "vit", "vit_mae", "videomae", "ast", "cavmae")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-weights",
        help="convert a local transformers (ViT, ViT-MAE, VideoMAE, AST) or CAV-MAE checkpoint to an avssl model",
        description="Write an avssl model folder (model.safetensors + config.json, read by avssl.load_model and "
        "every command's --checkpoint) from foreign weights; nothing is downloaded. Examples: "
        "`avssl import-weights ~/hf/videomae-base models/videomae joint_depth=0`, then "
        "`avssl import-weights --init models/videomae ~/hf/ast-finetuned-audioset-10-10-0.4593 models/av` "
        "(AST into the audio side: the two streams share no layer); "
        "`avssl import-weights cav-mae-scale++.pth models/cavmae num_frames=1 tubelet=[1,16,16]` "
        "(CAV-MAE's single frame, exactly). The import report (what was copied, resampled, left as "
        "initialised, unused) is printed and saved as import_report.json. Options go before SOURCE or after "
        "the overrides, not between OUT and them.",
    )
    parser.add_argument("source", help="transformers model folder, or CAV-MAE checkpoint file")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--kind", choices=KINDS, default="auto",
                        help="checkpoint family (default: a folder's config.json model_type; a file is CAV-MAE)")
    parser.add_argument("--target", choices=("auto", "video", "audio", "both"), default="auto",
                        help="transformers only: which stream receives the weights (default: video for "
                        "ViT / ViT-MAE / VideoMAE, audio for AST; 'both' = an image ViT in both, as CAV-MAE inits)")
    parser.add_argument("--base", default="base", help="named size for the fields the checkpoint does not fix "
                        "(default base)")
    parser.add_argument("--init", metavar="MODEL", help="import into this avssl model folder instead of a "
                        "fresh model (e.g. AST audio next to VideoMAE video); its config is kept")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="model config overrides, e.g. num_frames=8 joint_depth=0 tubelet=[2,16,16]")
    parser.set_defaults(func=run)


def _model(args: argparse.Namespace, source: object):
    """The model to import into: --init's, or one shaped after the checkpoint."""
    from avssl.config import parse_overrides
    from avssl.models.config import config_from_dict, get_config
    from avssl.models.convert_cavmae import cavmae_model_config
    from avssl.models.convert_hf import TransformersCheckpoint, transformers_model_config
    from avssl.models.factory import create_model, load_model

    overrides = parse_overrides(args.overrides)
    if args.init:
        if overrides:
            raise ValueError("--init keeps that model's config; key=value overrides cannot apply")
        return load_model(args.init)
    base = get_config(args.base)
    if isinstance(source, TransformersCheckpoint):
        config = transformers_model_config(source, base, joint_depth=overrides.pop("joint_depth", None))
    else:
        config = cavmae_model_config(source, base)
    return create_model(config_from_dict(overrides, base=config, where="import-weights override"))


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from avssl.models.convert_cavmae import import_cavmae, read_cavmae
    from avssl.models.convert_hf import load_transformers_weights, read_transformers

    path = Path(args.source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder or file (import-weights reads local checkpoints only)")
    cavmae = args.kind == "cavmae" or (args.kind == "auto" and path.is_file())
    if cavmae and args.target != "auto":
        raise ValueError("--target applies to transformers checkpoints; CAV-MAE fills both streams")
    source = read_cavmae(path) if cavmae else read_transformers(path, args.kind)
    model = _model(args, source)
    if cavmae:
        report = import_cavmae(model, source, name=str(path))
    else:
        report = load_transformers_weights(model, source, target=args.target)
    out = model.save_pretrained(args.out)
    (out / "import_report.json").write_text(json.dumps(dataclasses.asdict(report), indent=2) + "\n")
    print(report.summary())
    print(f"{model.config.name} model ({model.num_parameters() / 1e6:.1f}M parameters) -> {out}")
    return 0
