"""What `avssl pretrain` and `avssl finetune` share: their arguments, reading and printing the config,
and how a run that stopped on a non-finite loss is reported (not a subcommand)."""
from __future__ import annotations

import argparse
import os
from typing import Any, Callable, TypeVar

T = TypeVar("T")
NON_FINITE_EXIT = 4  # the exit code of a run stopped by a NaN / inf loss


def add_recipe_arguments(parser: argparse.ArgumentParser, *, init: bool = False) -> None:
    """-c CONFIG, [--init PATH], --resume PATH and the dotted key=value overrides."""
    parser.add_argument("-c", "--config", help="YAML config file (defaults apply without one)")
    if init:
        parser.add_argument("--init", metavar="PATH", help="pretrained checkpoint, run or weights folder (or none)")
    parser.add_argument("--resume", metavar="PATH", help="resume from this checkpoint or run folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


def is_main_rank() -> bool:
    """Under torchrun, rank 0 speaks for all."""
    return int(os.environ.get("RANK", "0")) == 0


def load_recipe_config(config_class: type[T], args: argparse.Namespace) -> T:
    """The recipe's config from -c and the overrides (--init and --resume are overrides too), printed
    as YAML by the main rank."""
    import yaml

    from avssl.config import config_to_dict, load_config

    overrides = list(args.overrides)
    if getattr(args, "init", None):
        overrides.append(f"init={args.init}")
    if args.resume:
        overrides.append(f"train.resume={args.resume}")
    cfg = load_config(config_class, args.config, overrides)
    if is_main_rank():
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip())
    return cfg


def run_recipe(command: str, run: Callable[[T], Any], cfg: T) -> Any | None:
    """`run(cfg)`; None (after one line) when training stopped on a non-finite loss (exit code 4)."""
    from avssl.train.trainer import NonFiniteLossError

    try:
        return run(cfg)
    except NonFiniteLossError as err:
        print(f"avssl {command}: {err}")
        return None

