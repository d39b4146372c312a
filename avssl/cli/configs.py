"""`avssl configs [NAME]`: the built-in recipes, or one recipe's YAML to copy and edit."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "configs",
        help="list the built-in recipes (what -c NAME accepts), or print one",
        description="Without NAME, list the recipes shipped with avssl, each with the command that runs it "
        "(its first comment line). With NAME (e.g. pretrain/tiny), print that recipe's YAML: "
        "`avssl configs pretrain/tiny > mine.yaml`, edit, then `avssl pretrain -c mine.yaml`.",
    )
    parser.add_argument("name", nargs="?", help="a recipe to print, e.g. pretrain/tiny")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avssl.recipes.builtin import builtin_recipes

    recipes = builtin_recipes()
    if args.name is None:
        width = max(len(r.name) for r in recipes)
        for recipe in recipes:
            print(f"{recipe.name:<{width}}  {recipe.summary()}")
        return 0
    for recipe in recipes:
        if recipe.name == args.name:
            print(recipe.path.read_text(encoding="utf-8"), end="")
            return 0
    raise ValueError(f"no built-in recipe {args.name!r}; one of {', '.join(r.name for r in recipes)}")
