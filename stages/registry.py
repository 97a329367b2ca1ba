"""Name-to-class registries for pluggable backends; an unknown name fails loudly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from stages.errors import UnknownBackendError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} backend {name!r} registered twice")
            self._entries[name] = cls
            return cls

        return deco

    def get(self, name: str) -> type[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownBackendError(
                f"unknown {self.kind} backend {name!r}; known: {sorted(self._entries)}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)
