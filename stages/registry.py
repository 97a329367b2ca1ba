"""The one lookup every backend table (`BACKENDS` in a step's package) goes through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from stages.errors import UnknownBackendError

T = TypeVar("T")


def lookup(table: Mapping[str, T], kind: str, name: str) -> T:
    """`table[name]`, or UnknownBackendError naming the known backends of `kind`."""
    try:
        return table[name]
    except KeyError:
        raise UnknownBackendError(f"unknown {kind} backend {name!r}; known: {sorted(table)}") from None


def options_key(name: str) -> str:
    """The config table of a backend: `[matte.plain_backdrop]` for `plain-backdrop`."""
    return name.replace("-", "_")
