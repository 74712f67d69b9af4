"""Typed configs from presets, YAML files and `key=value` overrides.

A run's config is a tree of dataclasses. It is built from a named preset (see `vqvid.presets`), then a YAML file
may replace any part of it, then command-line overrides such as `model.channels=64 train.lr=3e-4`. The resolved
tree is saved next to the run as YAML, so a run can be repeated from its folder alone.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the config's fields or types."""


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass tree as plain dicts, lists and scalars (tuples become lists), ready for YAML or JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {annotation.__name__} fields, got {value!r}")
        return from_dict(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as error:
                errors.append(str(error))
        if len(errors) == 1:  # X | None: X's own message says what was expected
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: {value!r} fits none of {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_types = args if not (len(args) == 2 and args[1] is Ellipsis) else (args[0],) * len(value)
        if len(item_types) != len(value):
            raise ConfigError(f"{where}: expected {len(item_types)} items, got {len(value)}")
        return tuple(_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_types, strict=True)))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # .inf or .nan would train to NaN or hang; no field means either
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from a (possibly partial) dict; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; {cls.__name__} has {names}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from error


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict update that returns a new dict."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["model.channels=64", "train.lr=3e-4"]` -> nested dict; values are parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or "not a YAML value"
            raise ConfigError(f"override {item!r}: {key} is not a valid YAML value ({problem})") from None
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def differences(saved: Any, current: Any, section: str) -> str:
    """Why typed config `current` is not `saved`, of the same type, for a refusal to resume: the fields that
    differ, and the overrides (quoted for a shell) that `parse_overrides` reads back as `saved`'s values, e.g.
    "(differing in model.condition_norm); resume with the run's own config, e.g. add
    'model.condition_norm=false'"."""
    theirs, ours = to_dict(saved), to_dict(current)
    differ = [name for name in ours if theirs[name] != ours[name]]
    overrides = " ".join(f"'{section}.{name}={override_value(theirs[name])}'" for name in differ)
    return (f"(differing in {', '.join(f'{section}.{name}' for name in differ)}); resume with the run's own "
            f"config, e.g. add {overrides}")


def override_value(value: Any) -> str:
    """A config value as a `key=value` override writes it, for `parse_overrides` (YAML) to read back: lowercase
    booleans, null, lists without spaces."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot read it ({error.strerror})") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return data


def resolve(cls: type[T], preset: Any, file: str | Path | None = None, overrides: list[str] = ()) -> T:
    """preset (a `cls` instance) <- YAML file <- overrides, validated into a new `cls`."""
    data = to_dict(preset)
    if file is not None:
        data = merge(data, load_yaml(file))
    data = merge(data, parse_overrides(list(overrides)))
    return from_dict(cls, data)


def save_yaml(config: Any, path: str | Path) -> None:
    from vqvid.files import write_text

    write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
