"""`avssl finetune -c CONFIG [key=value ...]`: classify labelled clips with pretrained encoders."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a classifier (action recognition, sound events) from a checkpoint or from scratch",
        description="Fine-tune from a YAML config (configs/finetune/) with dotted key=value overrides, e.g. "
        "`avssl finetune -c configs/finetune/tiny.yaml init=runs/pretrain-tiny data.train=videos/train.csv "
        "data.val=videos/val.csv mode=av out=runs/ft`. The best checkpoint is scored with "
        "data.eval_clips x data.eval_crops views per video into OUT/eval/ (metrics.json, confusion.png, "
        "predictions.csv). Works under torchrun for several GPUs.",
    )
    parser.add_argument("-c", "--config", help="YAML config file (defaults apply without one)")
    parser.add_argument("--init", metavar="PATH", help="pretrained checkpoint, run or weights folder (or none)")
    parser.add_argument("--resume", metavar="PATH", help="resume from this checkpoint or run folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from avssl.config import config_to_dict, load_config
    from avssl.recipes.finetune import FinetuneConfig, run_finetune
    from avssl.train.trainer import NonFiniteLossError

    overrides = list(args.overrides)
    if args.init:
        overrides.append(f"init={args.init}")
    if args.resume:
        overrides.append(f"train.resume={args.resume}")
    cfg = load_config(FinetuneConfig, args.config, overrides)
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip())
    try:
        result = run_finetune(cfg)
    except NonFiniteLossError as err:
        print(f"avssl finetune: {err}")
        return 4
    if result.status != "finished":
        print(f"{result.status} at step {result.fit.position.step}; resume with train.resume=true out={cfg.out}")
        return 0  # stopped by SIGTERM / SIGINT with a checkpoint written, as asked
    if result.metrics_json is None:  # a rank other than 0: rank 0 evaluates and reports
        return 0
    summary = ", ".join(f"{k}={v:.2f}" for k, v in result.metrics.items())
    print(f"finished in {result.fit.wall_time:.0f}s; {summary}")
    print(f"metrics: {result.metrics_json}")
    if result.confusion_png:
        print(f"confusion matrix: {result.confusion_png}")
    return 0
