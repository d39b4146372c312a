"""Typed configs: YAML + dotted overrides, declared ranges, and errors of one line that name the key."""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest

from avssl.config import (
    Check,
    ConfigError,
    OneOf,
    Range,
    RunFolder,
    above,
    at_least,
    declared_ranges,
    load_config,
    parse_overrides,
    save_config,
    validate_config,
)
from avssl.data.augment import AugmentConfig
from avssl.recipes.demo import DemoConfig
from avssl.recipes.finetune import FinetuneConfig
from avssl.recipes.pretrain import PretrainConfig


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


@dataclass
class Ranged:
    lr: float = 0.1
    steps: int = 3
    betas: tuple[float, float] = (0.9, 0.95)
    size: int | None = None
    name: str = "a"

    RANGES: ClassVar[dict[str, Check]] = {
        "lr": above(0.0), "steps": at_least(1), "betas": Range(0.0, 1.0, high_open=True), "size": at_least(1),
        "name": OneOf(("a", "b")),
    }


@dataclass
class MoreRanged(Ranged):
    RANGES: ClassVar[dict[str, Check]] = {"steps": Range(2, 5)}  # adds to, and overrides, the base's


@dataclass
class Nested:
    train: MoreRanged = field(default_factory=MoreRanged)
    ratio: float = 0.5
    model: dict = field(default_factory=dict)


@pytest.mark.parametrize("override, message", [
    ("train.steps=0", "train.steps=0: must be in [2, 5]"),
    ("train.lr=0", "train.lr=0.0: must be > 0"),
    ("train.lr=nan", "train.lr=nan: must be a finite number > 0"),
    ("ratio=.inf", "ratio=inf: must be a finite number"),
    ("model.temperature=.nan", "model.temperature=nan: must be a finite number"),
    ("train.betas=[0.9, 1.0]", "train.betas[1]=1.0: must be in [0, 1)"),
    ("train.size=0", "train.size=0: must be >= 1"),
    ("train.name=c", "train.name='c': must be one of a, b"),
])
def test_values_out_of_their_declared_range_name_the_key_and_the_range(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_config(Nested, None, [override])


def test_values_in_range_and_unset_optionals_pass():
    cfg = load_config(Nested, None, ["train.steps=5", "train.lr=1e-8", "train.betas=[0, 0.999]"])
    validate_config(cfg)
    assert cfg.train.size is None and declared_ranges(MoreRanged)["lr"] == above(0.0)
    cfg.train.lr = float("nan")  # configs built in Python are checked by the same routine
    with pytest.raises(ConfigError, match="train.lr=nan"):
        validate_config(cfg)


@pytest.mark.parametrize("text, message", [
    ("train:\n  lr: [1\n", r"c.yaml: not valid YAML at line 3, column 1: expected ',' or ']'"),
    ("train:\n\tlr: 1\n", "line 2, column 1: found character '\\\\t' .*; indent with spaces, not tabs"),
    ("train: !!python/object:os.system {}\n", "line 1, column 8: .*python/object.*refused"),
    ("- 1\n- 2\n", "the top level must be a mapping"),
    ("1: 2\n", "unknown config key 1"),
])
def test_malformed_yaml_files_give_one_line(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(Outer, path)
    assert "\n" not in str(caught.value)


def test_malformed_yaml_overrides_and_unreadable_files_give_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^override 'train.lr=\[': not valid YAML at line 1, column 2: "):
        load_config(Outer, None, ["train.lr=["])
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="binary.yaml: cannot read the config file"):
        load_config(Outer, tmp_path / "binary.yaml")


def _numeric_fields(cls, prefix=""):
    """(key, declared check or None) of every number-valued field in a config class tree."""
    hints, checks = typing.get_type_hints(cls), declared_ranges(cls)
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        if dataclasses.is_dataclass(kind):
            if not issubclass(kind, AugmentConfig):  # checks its own values in __post_init__ (data.augment.* errors)
                yield from _numeric_fields(kind, f"{prefix}{item.name}.")
        elif {int, float} & set(typing.get_args(kind) or (kind,)) and kind is not bool:
            yield prefix + item.name, checks.get(item.name)


@pytest.mark.parametrize("cls", [PretrainConfig, FinetuneConfig, DemoConfig])
def test_every_number_in_the_recipes_has_a_declared_range(cls):
    fields = dict(_numeric_fields(cls))
    assert len(fields) > 15 and [key for key, check in fields.items() if check is None] == []
    validate_config(cls())  # the defaults are in range


def test_run_folder_is_removed_unless_the_run_started(tmp_path):
    (tmp_path / "runs" / "other").mkdir(parents=True)
    failed = RunFolder(tmp_path / "runs" / "new" / "run")
    (failed.create() / "config.yaml").write_text("x")
    failed.close()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["other"]  # parents made by it go too
    started = RunFolder(tmp_path / "runs" / "started")
    started.create()
    started.keep()
    started.close()
    existing = RunFolder(tmp_path / "runs" / "other")
    existing.create()
    existing.close()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["other", "started"]
