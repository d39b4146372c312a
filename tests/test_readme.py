"""The README's commands stay in step with the CLI: every `avssl ...` line parses, and the config
overrides of pretrain / finetune / demo name real fields with valid values (nothing is run)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from avssl.cli import build_parser
from avssl.cli.recipe import config_path
from avssl.config import load_config
from avssl.models.config import config_from_dict, get_config
from avssl.recipes.demo import DemoConfig
from avssl.recipes.finetune import FinetuneConfig
from avssl.recipes.pretrain import PretrainConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG_CLASSES = {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "demo": DemoConfig}


def readme_commands() -> list[str]:
    """Each `avssl ...` command of the README's bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            match = re.search(r"(?:^|-m |bin/)avssl (.*)", line)
            if match and not line.startswith("#"):
                commands.append(match.group(1))
    return commands


COMMANDS = readme_commands()


def test_readme_shows_every_subcommand():
    shown = {shlex.split(c)[0] for c in COMMANDS}
    assert {"probe", "pretrain", "finetune", "embed", "retrieve", "evaluate", "demo", "prepare",
            "import-weights", "shard"} <= shown, shown


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses_and_its_overrides_are_valid(command, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = build_parser().parse_args(shlex.split(command))
    config_class = CONFIG_CLASSES.get(args.command)
    if config_class is None:
        return
    path = config_path(args, default=None if args.command == "demo" else "tiny")  # as each command reads -c
    cfg = load_config(config_class, path, list(args.overrides))
    for model in (getattr(cfg, "model", None), getattr(getattr(cfg, "pretrain", None), "model", None)):
        if model:
            config_from_dict(model.changes(), base=get_config(model.name), where="README model override")
