"""What `avssl pretrain` and `avssl finetune` share: their arguments, reading and printing the config,
and how a run that stopped on a non-finite loss is reported (not a subcommand)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")
NON_FINITE_EXIT = 4  # the exit code of a run stopped by a NaN / inf loss


def add_recipe_arguments(parser: argparse.ArgumentParser, *, init: bool = False) -> None:
    """-c CONFIG, [--init PATH], --resume PATH and the dotted key=value overrides."""
    parser.add_argument("-c", "--config", metavar="CONFIG",
                        help="a built-in recipe's name (tiny, base; `avssl configs` lists them) or a YAML file "
                        "(default: tiny)")
    if init:
        parser.add_argument("--init", metavar="PATH", help="pretrained checkpoint, run or weights folder (or none)")
    parser.add_argument("--resume", metavar="PATH", help="resume from this checkpoint or run folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


def is_main_rank() -> bool:
    """Under torchrun, rank 0 speaks for all."""
    return int(os.environ.get("RANK", "0")) == 0


def config_path(args: argparse.Namespace, default: str | None = "tiny") -> Path | None:
    """The YAML file that `avssl COMMAND -c CONFIG` reads: CONFIG as a file or a built-in recipe's name.
    Without -c, the built-in recipe `default`: pretrain and finetune run the tiny recipe rather than
    the dataclass defaults; the demo (default None) needs no file, its defaults are its recipe."""
    from avssl.recipes.builtin import resolve_config

    spec = args.config or default
    return None if spec is None else resolve_config(spec, args.command)


def load_recipe_config(config_class: type[T], args: argparse.Namespace) -> T:
    """The recipe's config from -c (`config_path`) and the overrides (--init and --resume are
    overrides too), printed as YAML by the main rank."""
    import yaml

    from avssl.config import config_to_dict, load_config

    overrides = list(args.overrides)
    if getattr(args, "init", None):
        overrides.append(f"init={args.init}")
    if args.resume:
        overrides.append(f"train.resume={args.resume}")
    cfg = load_config(config_class, config_path(args), overrides)
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

