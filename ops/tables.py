"""TOML tables to frozen dataclasses: every key and value checked against the dataclass's types."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin

from stages.errors import ConfigError


def merge_tables(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Merge nested TOML tables: `extra` wins, sibling keys of a sub-table are kept."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_tables(into[key], value)
        else:
            into[key] = value


def build(cls: type, data: dict[str, Any], where: str) -> Any:
    """An instance of dataclass `cls` from a table: unknown keys and wrong types fail, naming them.

    A table of named tables (`dict[str, X]`, e.g. [layout.presets.<name>]) adds to the field's
    default entries: a name given replaces that entry, the others stay."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"[{where}] has unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for k, v in data.items():
        value = check_value(v, hints[k], f"{where}.{k}" if where else k)
        if get_origin(hints[k]) is dict and fields[k].default_factory is not dataclasses.MISSING:
            value = {**fields[k].default_factory(), **value}
        kwargs[k] = value
    return cls(**kwargs)


def check_value(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where} = {value!r}: must be one of {list(get_args(tp))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: must be a list")
        (item_tp, _ellipsis) = get_args(tp)
        return tuple(check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:  # a table of named tables, e.g. [layout.presets.<name>]
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table, got {value!r}")
        item_tp = get_args(tp)[1]
        return {str(k): check_value(v, item_tp, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for option in get_args(tp):
            try:
                return check_value(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} = {value!r}: wrong type")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table, got {value!r}")
        return build(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is type(None) and value is None:
        return None
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where} = {value!r}: expected {tp.__name__}")
    return value


def check_tables(obj: Any, where: str) -> None:
    """Run `check(where)` of every dataclass in the tree (each options dataclass validates itself)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if callable(getattr(type(obj), "check", None)):
            obj.check(where)
        for f in dataclasses.fields(obj):
            check_tables(getattr(obj, f.name), f"{where}.{f.name}" if where else f.name)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            check_tables(v, f"{where}.{k}")
