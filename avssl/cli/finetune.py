"""`avssl finetune [-c CONFIG] [key=value ...]`: classify labelled clips with pretrained encoders."""
from __future__ import annotations

import argparse

from avssl.cli.recipe import NON_FINITE_EXIT, add_recipe_arguments, load_recipe_config, run_recipe


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a classifier (action recognition, sound events) from a checkpoint or from scratch",
        description="Fine-tune from a built-in recipe (tiny, the default, or base; `avssl configs`) or a YAML "
        "file, with dotted key=value overrides, e.g. "
        "`avssl finetune -c tiny init=runs/pretrain-tiny data.train=videos/train.csv "
        "data.val=videos/val.csv mode=av out=runs/ft`. The best checkpoint is scored with "
        "data.eval_clips x data.eval_crops views per video into OUT/eval/ (metrics.json, confusion.png, "
        "predictions.csv). Works under torchrun for several GPUs. With data.unlabeled=SOURCE, rounds of "
        "pseudo-labelling (noisy student; the pseudo_label: section) follow, in OUT/round<r>/ with OUT/report.html.",
    )
    add_recipe_arguments(parser, init=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avssl.recipes.finetune import FinetuneConfig, run_finetune
    from avssl.recipes.pseudo_label import run_pseudo_label

    cfg = load_recipe_config(FinetuneConfig, args)
    result = run_recipe("finetune", run_pseudo_label if cfg.data.unlabeled else run_finetune, cfg)
    if result is None:
        return NON_FINITE_EXIT
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
