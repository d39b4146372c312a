"""The package's layers: every import points down, found from the folder names alone.

From the bottom up (a module may import its own layer and the ones below it, never one above):

    core        avssl (lazy re-exports by name only), avssl.config, avssl.files
    data        avssl.data          probing, decoding, transforms, datasets, shards, corpora
    objectives  avssl.losses, avssl.objectives, avssl.masking
    models      avssl.models        the networks, their configs, the saved-weights format
    train       avssl.train         the generic loop: trainer, optimizer groups, checkpoints, ...
    tasks       avssl.tasks         embed, retrieve, evaluate, linear probe, metrics, report
    recipes     avssl.recipes       pretrain, finetune, demo
    cli         avssl.cli, avssl.__main__

Two places differ from the order "data -> models -> objectives -> train -> recipes -> tasks -> cli"
first proposed in issue 13, on purpose:

- objectives sit below models: the pretraining model computes its own loss in `forward` and masks
  its own tokens (CAV-MAE's convention, which every caller of `AVModel.forward` relies on), so the
  losses and masking are building blocks the model imports, not a layer that drives it;
- tasks sit below recipes: a recipe uses the evaluation tasks (pretraining validates with retrieval
  R@k, fine-tuning scores with multi-view video evaluation, the demo runs retrieval, linear probes
  and writes the report), while no task needs a recipe. With tasks above recipes the demo would
  have nowhere to live.

Imports are read with `ast` from every module, including those inside functions (a lazy import
is still a dependency), relative ones and module names written as strings for `import_module` (a
lazy re-export table); only the core package's own table may name every layer.
"""
from __future__ import annotations

import ast
from pathlib import Path

import avssl

PACKAGE = Path(avssl.__file__).parent

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("avssl", "avssl.config", "avssl.files")),
    ("data", ("avssl.data",)),
    ("objectives", ("avssl.losses", "avssl.objectives", "avssl.masking")),
    ("models", ("avssl.models",)),
    ("train", ("avssl.train",)),
    ("tasks", ("avssl.tasks",)),
    ("recipes", ("avssl.recipes",)),
    ("cli", ("avssl.cli", "avssl.__main__")),
]


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix that names `module` (its package or itself)."""
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    """Whether `dotted` names a module or package of avssl (not a function or class in one)."""
    path = PACKAGE.parent / dotted.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_in(source: str, name: str, is_package: bool = False, strings: bool = True) -> list[tuple[int, str]]:
    """(line, module) of every avssl import in the source of module `name`, wherever it stands
    (inside functions too); relative imports are resolved, `from avssl.x import y` counts as an
    import of avssl.x.y when y is a module, and so does a string that is a module's full name (what
    `import_module` is given) unless `strings` is False."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                parts = package.split(".")
                target = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found += [(node.lineno, f"{target}.{alias.name}" if is_module(f"{target}.{alias.name}") else target)
                      for alias in node.names]
        elif strings and isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [(node.lineno, node.value)] if node.value.startswith("avssl.") and is_module(node.value) else []
    return [(line, target) for line, target in found if target == "avssl" or target.startswith("avssl.")]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """The avssl imports of one module; the core package's re-export table (strings) is allowed to
    name every layer, so its strings are not read."""
    name = module_name(path)
    return imports_in(path.read_text(), name, path.name == "__init__.py", strings=name != "avssl")


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        own = layer_of(name)
        assert own >= 0, f"{name} belongs to no layer: add it to LAYERS in {__file__}"
        for line, target in imports_of(path):
            if target == "avssl":
                continue  # the lazy re-exports
            other = layer_of(target)
            assert other >= 0, f"{path}:{line} imports {target}, which belongs to no layer"
            if other > own:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({LAYERS[own][0]}) imports "
                                f"{target} ({LAYERS[other][0]})")
    return problems


def test_every_module_has_a_layer():
    assert all(layer_of(module_name(p)) >= 0 for p in PACKAGE.rglob("*.py"))


def test_no_lower_layer_imports_a_higher_one():
    problems = upward_imports()
    assert not problems, "imports that point up:\n" + "\n".join(problems)


def test_the_checker_sees_lazy_relative_and_submodule_imports():
    source = ("import os\n"
              "def f():\n"
              "    from avssl.train.trainer import Trainer\n"
              "    import avssl.cli\n"
              "from ..train import checkpoint\n"
              "from . import factory\n")
    assert imports_in(source, "avssl.models.classifier") == [
        (5, "avssl.train.checkpoint"), (6, "avssl.models.factory"), (3, "avssl.train.trainer"), (4, "avssl.cli")]
    assert imports_in('EXPORTS = {"run_pretrain": "avssl.recipes.pretrain", "note": "avssl.nothing"}\n',
                      "avssl.data") == [(1, "avssl.recipes.pretrain")]
    assert layer_of("avssl.models.factory") < layer_of("avssl.train.trainer") < layer_of("avssl.cli")
    assert layer_of("avssl.losses") < layer_of("avssl.models.av_model")
    assert layer_of("avssl.tasks.metrics") < layer_of("avssl.recipes.pretrain")
