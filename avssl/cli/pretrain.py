"""`avssl pretrain [-c CONFIG] [key=value ...]`: audio-visual pretraining on raw video files."""
from __future__ import annotations

import argparse

from avssl.cli.recipe import NON_FINITE_EXIT, add_recipe_arguments, is_main_rank, load_recipe_config, run_recipe


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain video and audio encoders (contrastive + masked-patch prediction)",
        description="Pretrain from a built-in recipe (tiny, the default, or base; `avssl configs`) or a YAML "
        "file, with dotted key=value overrides, e.g. `avssl pretrain -c tiny data.train=videos/ train.epochs=5 "
        "out=runs/x`. "
        "Works under torchrun for several GPUs.",
    )
    add_recipe_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avssl.recipes.pretrain import PretrainConfig, run_pretrain

    result = run_recipe("pretrain", run_pretrain, load_recipe_config(PretrainConfig, args))
    if result is None:
        return NON_FINITE_EXIT
    if not is_main_rank():
        return 0  # finished, or stopped by SIGTERM / SIGINT with a checkpoint written: both succeeded
    summary = ", ".join(f"{k}={v:.3f}" for k, v in sorted(result.val_metrics.items()))
    print(f"{result.status} at step {result.position.step} in {result.wall_time:.0f}s; {summary}")
    if result.last_checkpoint:
        print(f"checkpoint: {result.last_checkpoint}")
    if result.status != "finished":
        print("resume with train.resume=true")
    return 0
