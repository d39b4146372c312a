"""`avssl pretrain -c CONFIG [key=value ...]`: audio-visual pretraining on raw video files."""
from __future__ import annotations

import argparse
import os


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain video and audio encoders (contrastive + masked-patch prediction)",
        description="Pretrain from a YAML config (configs/pretrain/) with dotted key=value overrides, "
        "e.g. `avssl pretrain -c configs/pretrain/tiny.yaml data.train=videos/ train.epochs=5 out=runs/x`. "
        "Works under torchrun for several GPUs.",
    )
    parser.add_argument("-c", "--config", help="YAML config file (defaults apply without one)")
    parser.add_argument("--resume", metavar="PATH", help="resume from this checkpoint or run folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from avssl.config import config_to_dict, load_config
    from avssl.recipes.pretrain import PretrainConfig, run_pretrain
    from avssl.train.trainer import NonFiniteLossError

    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"train.resume={args.resume}")
    cfg = load_config(PretrainConfig, args.config, overrides)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 speaks for all
    if main_rank:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip())
    try:
        result = run_pretrain(cfg)
    except NonFiniteLossError as err:
        print(f"avssl pretrain: {err}")
        return 4
    if not main_rank:
        return 0  # finished, or stopped by SIGTERM / SIGINT with a checkpoint written: both succeeded
    summary = ", ".join(f"{k}={v:.3f}" for k, v in sorted(result.val_metrics.items()))
    print(f"{result.status} at step {result.position.step} in {result.wall_time:.0f}s; {summary}")
    if result.last_checkpoint:
        print(f"checkpoint: {result.last_checkpoint}")
    if result.status != "finished":
        print("resume with train.resume=true")
    return 0
