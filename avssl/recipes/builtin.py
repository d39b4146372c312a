"""The recipes shipped inside the package (avssl/configs/), by name.

A recipe's name is its path under avssl/configs/ without `.yaml`: `pretrain/tiny`, `finetune/base`,
`demo`. A command also takes the short name of its own recipes (`avssl pretrain -c tiny`), and a
path to a YAML file still works, so a pip-installed avssl runs its recipes from any folder (the
torchtune convention: `tune run RECIPE --config NAME`). Each file opens with a comment giving the
command that runs it; `avssl configs` lists them with that line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class BuiltinRecipe:
    """A YAML recipe shipped with avssl: `name` (e.g. "pretrain/tiny") and the file's `path`."""

    name: str
    path: Path

    @property
    def command(self) -> str:
        """The subcommand that reads it: the name's first part ("pretrain", "finetune", "demo")."""
        return self.name.split("/", 1)[0]

    @property
    def short_name(self) -> str:
        """The name within its command ("tiny" for "pretrain/tiny"; "demo" for "demo")."""
        return self.name.split("/", 1)[-1]

    def summary(self) -> str:
        """The file's first comment line: by convention the command that runs the recipe."""
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
        return ""


def builtin_recipes(command: str | None = None) -> list[BuiltinRecipe]:
    """The built-in recipes sorted by name; only those `command` reads (e.g. "pretrain") when given."""
    recipes = [BuiltinRecipe(path.relative_to(CONFIG_DIR).with_suffix("").as_posix(), path)
               for path in sorted(CONFIG_DIR.rglob("*.yaml"))]
    return [r for r in recipes if command is None or r.command == command]


def resolve_config(spec: str, command: str) -> Path:
    """The YAML file that `avssl COMMAND -c SPEC` reads: `spec` itself when it is a file, else the
    built-in recipe of `command` named `spec` in full ("pretrain/tiny") or short ("tiny"), or by the
    path it had in the repository before the recipes moved into the package
    ("configs/pretrain/tiny.yaml", which older notes, issues and scripts use).

    A file wins over a recipe of the same name, so a user's own `tiny` file is never shadowed.
    Raises FileNotFoundError naming the command's recipes when `spec` is neither.
    """
    if Path(spec).is_file():
        return Path(spec)
    recipes = builtin_recipes(command)
    relative = Path(spec).as_posix()  # "./configs/x.yaml" -> "configs/x.yaml"
    old_name = relative.removeprefix("configs/").removesuffix(".yaml") if relative.startswith("configs/") else None
    for recipe in recipes:
        if spec in (recipe.name, recipe.short_name) or old_name == recipe.name:
            return recipe.path
    names = ", ".join(r.short_name for r in recipes) or "none"
    raise FileNotFoundError(
        f"config {spec!r} is neither a file nor a built-in {command} recipe ({names}); "
        "`avssl configs` lists the built-in recipes")
