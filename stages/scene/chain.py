"""The scene backend and its configured fallbacks ([scene] fallback), tried in order."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from stages.errors import ModelUnavailableError, StageError
from stages.registry import lookup
from stages.scene import BACKENDS
from stages.scene.base import Scene, SceneBackend, SceneOutOfMemory, SceneRequest

log = logging.getLogger("stages.scene.chain")

# Errors that send a product (or the whole worker) on to the next backend.
FALLBACK_ERRORS: tuple[type[Exception], ...] = (ModelUnavailableError, SceneOutOfMemory)


class SceneChain:
    """Duck-types a scene backend (`name`, `generate`, `generate_many`) over an ordered chain.

    A GPU worker whose SDXL weights are missing, or a product that runs SDXL out of memory even
    after the backend's own retries (smaller batch, then offload), should still get a scene from
    the next backend (e.g. SD 1.5, then the procedural backdrop) instead of failing. Every scene
    made by a fallback carries `settings["fallback"]` naming the wanted backend, the one used and
    why, so the record, the credentials and the verdict can say so. Fallbacks load only when first
    needed: a healthy SDXL worker never holds SD 1.5 in memory. Other errors (a library error, a
    safety-checker hit) are not retried on another backend: they fail the product with their reason.
    """

    def __init__(self, names: Sequence[str], load: Callable[[str], SceneBackend]) -> None:
        """`names`: the configured backend, then its fallbacks; `load(name)` loads one with its options."""
        self.names: tuple[str, ...] = tuple(names)
        for name in self.names:  # an unknown name fails before any model is loaded
            lookup(BACKENDS, "scene", name)
        self.name = self.names[0]
        self._load = load
        self._loaded: dict[str, SceneBackend] = {}
        self.unavailable: dict[str, str] = {}  # backend name -> why it could not load
        self._lock = threading.Lock()
        # Build the first backend that loads now, so a worker with none fails at start with every reason.
        if not any(self._backend(n) is not None for n in self.names):
            raise ModelUnavailableError("no scene backend could be loaded: " + "; ".join(
                f"{n}: {self.unavailable[n]}" for n in self.names))

    @property
    def active(self) -> str:
        """The first backend in the chain that loaded (what products get unless they run out of memory)."""
        return next(n for n in self.names if n not in self.unavailable)

    def _backend(self, name: str) -> SceneBackend | None:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            if name in self.unavailable:
                return None
            try:
                backend = self._load(name)
            except ModelUnavailableError as exc:
                self.unavailable[name] = str(exc)
                later = self.names[self.names.index(name) + 1:]
                log.warning("scene backend %s cannot load (%s)%s", name, exc,
                            f"; falling back to {later[0]}" if later else "")
                return None
            self._loaded[name] = backend
            return backend

    def generate(self, request: SceneRequest) -> Scene:
        return self.generate_many([request])[0]

    def generate_many(self, requests: Sequence[SceneRequest]) -> list[Scene]:
        reasons: list[str] = []
        last: Exception | None = None
        for name in self.names:
            backend = self._backend(name)
            if backend is None:
                reasons.append(f"{name} unavailable: {self.unavailable[name]}")
                continue
            try:
                many = getattr(backend, "generate_many", None)
                scenes = many(list(requests)) if many else [backend.generate(r) for r in requests]
            except FALLBACK_ERRORS as exc:
                reasons.append(f"{name}: {exc}")
                last = exc
                log.warning("scene backend %s failed (%s); trying the next backend", name, exc)
                continue
            if name == self.names[0]:
                return scenes
            return [_mark(s, self.names[0], name, reasons) for s in scenes]
        raise StageError("every scene backend failed: " + "; ".join(reasons)) from last


def _mark(scene: Scene, wanted: str, used: str, reasons: list[str]) -> Scene:
    info: dict[str, Any] = {"wanted": wanted, "used": used, "reasons": list(reasons)}
    return dataclasses.replace(scene, settings={**scene.settings, "fallback": info})


def fallback_of(scene: Scene) -> dict[str, Any] | None:
    """The fallback note of a scene made by a backend other than the configured one, else None."""
    return scene.settings.get("fallback")
