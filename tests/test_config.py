"""Typed configs: YAML + dotted overrides, and errors that name the key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from avssl.config import ConfigError, load_config, parse_overrides, save_config


@dataclass
class Inner:
    lr: float = 0.1
    steps: int = 3
    mode: Literal["a", "b"] = "a"
    betas: tuple[float, float] = (0.9, 0.95)
    resume: bool | str = False


@dataclass
class Outer:
    out: str = "runs/x"
    model: dict = field(default_factory=lambda: {"name": "tiny"})
    train: Inner = field(default_factory=Inner)
    val: str | None = None


def test_defaults_yaml_and_overrides_compose(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.5\n  steps: 7\nmodel:\n  name: base\n")
    cfg = load_config(Outer, path, ["train.steps=9", "model.depth=2", "train.betas=[0.8, 0.99]", "val=v.csv"])
    assert cfg.train.lr == 0.5 and cfg.train.steps == 9
    assert cfg.model == {"name": "base", "depth": 2}
    assert cfg.train.betas == (0.8, 0.99) and cfg.val == "v.csv"


def test_int_accepted_where_float_expected_and_union_keeps_type():
    cfg = load_config(Outer, None, ["train.lr=1", "train.resume=true"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.resume is True
    assert load_config(Outer, None, ["train.resume=runs/a"]).train.resume == "runs/a"


def test_unknown_key_names_it_and_the_nearest():
    with pytest.raises(ConfigError, match=r"'stepz'.*did you mean 'steps'"):
        load_config(Outer, None, ["train.stepz=3"])
    with pytest.raises(ConfigError, match="'trian'"):
        load_config(Outer, None, ["trian.lr=3"])


def test_wrong_types_name_the_key():
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        load_config(Outer, None, ["train.steps=1.5"])
    with pytest.raises(ConfigError, match="train.mode"):
        load_config(Outer, None, ["train.mode=c"])
    with pytest.raises(ConfigError, match="train.betas: expected 2 values"):
        load_config(Outer, None, ["train.betas=[1]"])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.lr"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config(Outer, None, ["train.lr=0.25", "model.name=small"])
    again = load_config(Outer, save_config(cfg, tmp_path / "config.yaml"))
    assert again == cfg


def test_exponent_without_dot_is_a_number_in_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 2e-3\n")  # PyYAML reads this as the string '2e-3'
    assert load_config(Outer, path).train.lr == pytest.approx(2e-3)
    assert load_config(Outer, None, ["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="train.lr: expected a number, got 'fast'"):
        load_config(Outer, None, ["train.lr=fast"])
