"""Built-in recipes by name: `-c tiny`, `-c pretrain/tiny` or a path; `avssl configs`; tiny without -c."""
from __future__ import annotations

import re

import pytest

from avssl.cli import build_parser, main
from avssl.cli.recipe import config_path
from avssl.config import load_config
from avssl.recipes.builtin import CONFIG_DIR, builtin_recipes, resolve_config
from avssl.recipes.demo import DemoConfig
from avssl.recipes.finetune import FinetuneConfig
from avssl.recipes.pretrain import PretrainConfig

CONFIG_CLASSES = {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "demo": DemoConfig}


def test_the_shipped_recipes_are_listed_by_name():
    assert [r.name for r in builtin_recipes()] == [
        "demo", "finetune/base", "finetune/tiny", "pretrain/base", "pretrain/tiny"]
    assert [r.short_name for r in builtin_recipes("pretrain")] == ["base", "tiny"]


@pytest.mark.parametrize("recipe", builtin_recipes(), ids=lambda r: r.name)
def test_every_recipe_loads_and_its_first_line_runs_it_by_name(recipe):
    load_config(CONFIG_CLASSES[recipe.command], recipe.path)
    command, name = re.search(r"avssl (\w+) .*-c ([\w/]+)", recipe.summary()).groups()
    assert config_path(build_parser().parse_args([command, "-c", name])) == recipe.path


@pytest.mark.parametrize("spec", ["tiny", "pretrain/tiny"])
def test_a_name_means_the_commands_built_in_recipe(spec):
    assert resolve_config(spec, "pretrain") == CONFIG_DIR / "pretrain" / "tiny.yaml"
    assert resolve_config("tiny", "finetune") == CONFIG_DIR / "finetune" / "tiny.yaml"


def test_a_file_wins_over_a_recipe_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text("seed: 7\n")
    args = build_parser().parse_args(["pretrain", "-c", "tiny"])
    assert load_config(PretrainConfig, config_path(args)).seed == 7


@pytest.mark.parametrize("spec", ["configs/pretrain/tiny.yaml", "./configs/pretrain/tiny.yaml"])
def test_the_recipes_old_repository_path_still_names_it(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the name, not a file, is resolved
    assert resolve_config(spec, "pretrain") == CONFIG_DIR / "pretrain" / "tiny.yaml"
    assert resolve_config(spec.replace("pretrain", "finetune"), "finetune") == CONFIG_DIR / "finetune" / "tiny.yaml"


@pytest.mark.parametrize("spec", ["small", "finetune/tiny", "configs/pretrain/small.yaml",
                                  "configs/finetune/tiny.yaml", "elsewhere/pretrain/tiny.yaml"])
def test_an_unknown_name_is_one_error_line_naming_the_recipes(spec, capsys):
    with pytest.raises(FileNotFoundError, match=r"neither a file nor a built-in pretrain recipe \(base, tiny\)"):
        resolve_config(spec, "pretrain")
    assert main(["pretrain", "-c", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "avssl configs" in err, err


def test_without_c_pretrain_and_finetune_run_the_tiny_recipe():
    for command in ("pretrain", "finetune"):
        default = build_parser().parse_args([command])
        named = build_parser().parse_args([command, "-c", "tiny"])
        assert config_path(default) == config_path(named) == CONFIG_DIR / command / "tiny.yaml"
    assert config_path(build_parser().parse_args(["demo"]), default=None) is None  # DemoConfig is the recipe


def test_avssl_configs_lists_each_recipe_with_its_first_comment_line(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [r.name for r in builtin_recipes()]
    tiny = next(line for line in lines if line.startswith("pretrain/tiny "))
    assert tiny.split(None, 1)[1] == "avssl pretrain -c tiny data.train=PATH [key=value ...]"


def test_avssl_configs_name_prints_the_yaml_to_copy(capsys, tmp_path):
    assert main(["configs", "finetune/base"]) == 0
    copy = tmp_path / "mine.yaml"
    copy.write_text(capsys.readouterr().out)
    assert copy.read_text() == (CONFIG_DIR / "finetune" / "base.yaml").read_text()
    assert load_config(FinetuneConfig, copy) == load_config(FinetuneConfig, CONFIG_DIR / "finetune" / "base.yaml")
    assert main(["configs", "tiny"]) == 2
    assert "one of demo, finetune/base" in capsys.readouterr().err
