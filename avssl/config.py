"""Typed configs: dataclasses filled from YAML files and dotted `key=value` overrides.

Every recipe (pretrain, finetune, demo) describes its settings as nested dataclasses.
`load_config` reads a YAML file onto the defaults, applies command-line overrides such as
`train.epochs=5 data.train=videos/`, and checks every key and type, so a typo fails at
start-up with the key's name and the closest valid one instead of hours into a run.

Each config class declares the values its keys accept in a ``RANGES`` class attribute beside its
fields (``Range`` for numbers, ``OneOf`` and ``Matches`` for strings); `validate_config` checks a
whole config against them (and every float for being finite), so ``train.accum_steps=0`` or
``train.lr=nan`` fail in one line naming the key and its range, before anything is created. A
recipe's run folder is made through `RunFolder`, which removes it again when the run fails
during set-up, so a wrong setting leaves nothing behind.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import shutil
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that does not fit the recipe's dataclasses."""


@dataclass(frozen=True)
class Range:
    """The numbers a key accepts: from `low` to `high`, each end included unless open."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def accepts(self, value: Any) -> bool:
        """Whether `value` lies in the range (None, meaning "the default", always does)."""
        if value is None:
            return True
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low, high = _number_text(self.low), _number_text(self.high)
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.low == -math.inf:
            return f"{'<' if self.high_open else '<='} {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number_text(value: float) -> str:
    """A range end as written: integers in full, floats short (0.5, 1e-08)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def at_least(low: float) -> Range:
    """Numbers >= `low`."""
    return Range(low)


def above(low: float) -> Range:
    """Numbers > `low`."""
    return Range(low, low_open=True)


@dataclass(frozen=True)
class OneOf:
    """The strings a key accepts: one of `choices`."""

    choices: tuple[str, ...]

    def accepts(self, value: Any) -> bool:
        return value in self.choices

    def __str__(self) -> str:
        return "one of " + ", ".join(self.choices)


@dataclass(frozen=True)
class Matches:
    """The strings a key accepts: those that `pattern` matches whole, described as `what`."""

    pattern: str
    what: str

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None

    def __str__(self) -> str:
        return self.what


Check = Union[Range, OneOf, Matches]
NON_EMPTY = Matches(r"\s*\S.*", "a non-empty path")
SEED = Range(0, 2**63 - 1)  # what every seeded draw (torch, numpy, seed_from) takes


def declared_ranges(cls: type) -> dict[str, Check]:
    """The ``RANGES`` a config class and its bases declare (a subclass's entries win)."""
    ranges: dict[str, Check] = {}
    for klass in reversed(cls.__mro__):
        ranges.update(vars(klass).get("RANGES", {}))
    return ranges


def _check_value(key: str, value: Any, check: Check | None) -> None:
    """Raise ConfigError unless `value` (each item of a list, each entry of a free-form mapping such
    as ``model``) is finite when a float and accepted by `check`."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(f"{key}[{i}]", item, check)
        return
    if isinstance(value, dict):
        for name, item in value.items():
            _check_value(f"{key}.{name}", item, None)
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value}: must be a finite number" + (f" {check}" if check else ""))
    if check is not None and not isinstance(value, bool) and not check.accepts(value):
        raise ConfigError(f"{key}={value!r}: must be {check}")


def validate_config(cfg: Any, prefix: str = "") -> None:
    """Check every key of a config dataclass, nested ones included, against the ranges their
    classes declare (`declared_ranges`); floats must be finite everywhere. Raises ConfigError
    naming the first key out of range and the range, e.g. ``train.accum_steps=0: must be >= 1``."""
    checks = declared_ranges(type(cfg))
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if dataclasses.is_dataclass(value):
            validate_config(value, f"{prefix}{field.name}.")
        else:
            _check_value(prefix + field.name, value, checks.get(field.name))


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def closest(word: str, choices: typing.Iterable[str]) -> str | None:
    """The choice nearest to `word` (difflib's closest match), or None when none is close: the
    "did you mean" of every unknown key or name."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


def key_hint(key: str, valid: list[str]) -> str:
    """What to say after "unknown key": "; did you mean 'X'?" with the valid key nearest to `key`, or
    the valid keys (in the order given) when none is near."""
    close = closest(key, valid)
    return f"; did you mean {close!r}?" if close else f"; valid keys: {', '.join(valid)}"


def _unknown_key(key: Any, valid: list[str], where: str) -> ConfigError:
    return ConfigError(f"unknown config key {where}{key!r}{key_hint(str(key).split('.')[-1], sorted(valid))}")


def _number(text: str, key: str) -> float:
    """A float written as text, such as YAML's string reading of `1e-4`."""
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{key}: expected a number, got {text!r}") from None


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a type annotation, converting where YAML is looser than Python."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(annotation, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return origin(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is float:
        if isinstance(value, str):
            value = _number(value, key)  # YAML 1.1 reads `2e-3` (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported annotation {annotation!r}")


def _build(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """`cls` from a section's keys, each checked and converted by its field's type. A class with a
    `from_config_section(**values)` classmethod is made by it (a section that names a preset and
    changes some of its fields: the model's); `config_section()` writes such a section back."""
    types_ = _field_types(cls)
    for key in values:
        if key not in types_:
            raise _unknown_key(key, list(types_), prefix)
    kwargs = {k: _coerce(v, types_[k], prefix + k) for k, v in values.items()}
    make = getattr(cls, "from_config_section", cls)
    try:
        return make(**kwargs)
    except ConfigError:
        raise
    except ValueError as err:  # a dataclass's own check of its values (__post_init__): say where it sits
        raise ConfigError(f"{prefix}{err}") from None


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


_YAML_HINTS = {  # what to do about the YAML problems people meet most
    "'\\t'": "; indent with spaces, not tabs",
    "constructor for the tag": "; a config holds plain values: tags such as !!python/object are refused",
}


def _yaml(text: str, where: str) -> Any:
    """`text` parsed as YAML (safe: no Python tags); a ConfigError of one line saying where it is wrong."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        hint = next((h for needle, h in _YAML_HINTS.items() if needle in problem), "")
        raise ConfigError(f"{where}: not valid YAML{at}: {problem}{hint}") from None


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["a.b=1", "c=x"]` as a nested dict; values are parsed as YAML scalars (`5`, `true`, `[1,2]`)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        _set_dotted(tree, key.strip(), _yaml(raw, f"override {item!r}") if raw.strip() else "")
    return tree


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain, YAML-safe types (tuples become lists)."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            if hasattr(value, "config_section"):  # what was set, as written (see `_build`)
                return plain(value.config_section())
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return copy.deepcopy(value)
    return plain(cfg)


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (empty file: no keys)."""
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file: {err}") from None
    loaded = _yaml(text, str(path)) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return loaded


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of `cls`, then the YAML file at `path`, then dotted `overrides`, all type-checked
    and checked against the declared ranges (`validate_config`)."""
    tree = config_to_dict(cls())
    if path is not None:
        tree = _merge(tree, _read_yaml(Path(path)))
    tree = _merge(tree, parse_overrides(overrides or []))
    cfg = _build(cls, tree)
    validate_config(cfg)
    return cfg


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML, so a run folder records exactly what ran."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


class RunFolder:
    """A run's output folder: `create` makes it (and its missing parents), and `close` removes what
    `create` made unless `keep` was called, so a run that fails while it sets up (a data source
    that is missing, a model that cannot be built) leaves no folder behind. A folder that existed
    before is never removed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._made: list[Path] = []  # folders `create` made, the deepest first
        self._kept = False

    def create(self) -> Path:
        """Make the folder; returns its path."""
        self._made = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def keep(self) -> None:
        """The run has started: the folder holds its work from now on."""
        self._kept = True

    def close(self) -> None:
        """Remove the folder `create` made, unless kept; parents only while empty (another run may
        have started beside it)."""
        if self._kept or not self._made:
            return
        shutil.rmtree(self._made[0], ignore_errors=True)
        for parent in self._made[1:]:
            try:
                parent.rmdir()
            except OSError:
                return
