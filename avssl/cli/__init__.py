"""The `avssl` command: one subcommand per module in this package.

Each subcommand module defines `add_parser(subparsers)` (which registers its
parser and sets `func`) so that this file never grows with the commands.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from importlib import import_module

COMMANDS: tuple[str, ...] = (
    "pretrain", "finetune", "embed", "retrieve", "evaluate", "demo", "configs", "prepare", "import_weights", "probe",
    "shard", "export", "select",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="avssl", description="Audio-visual self-supervised learning from raw video.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the traceback of an error reported in one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"avssl.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        code = int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as err:
        if args.verbose:  # where it came from, for a bug report; the one line stays last
            traceback.print_exc()
        print(f"avssl {args.command}: error: {err}", file=sys.stderr)
        code = 2
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, gloo's threads can abort the interpreter's teardown ("terminate called
        # without an active exception") after a clean run; the process group is closed by now,
        # so leave without the teardown once output is flushed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
