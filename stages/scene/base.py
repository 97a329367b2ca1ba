"""What a scene backend is asked for and what it gives: the background around the product.

Backends draw only the background; the product is put back by `stages.composite`, so no
backend can redraw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stages.depth.base import DepthMap
from stages.errors import StageError
from stages.layout import Layout


@dataclass(frozen=True, eq=False)
class ReferenceImage:
    """A style reference (brand moodboard shot) that image-prompted backends follow."""

    rgb: np.ndarray  # HxWx3 uint8
    sha256: str  # of the file's bytes: recorded with every image made from it
    name: str  # file name, for records

    def record(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


@dataclass(frozen=True)
class SceneRequest:
    layout: Layout
    depth: DepthMap
    prompt: str
    negative_prompt: str
    seed: int
    horizon: float
    category: str = ""  # prompt templates may use the row's category and title
    title: str = ""
    reference: ReferenceImage | None = None  # style reference; backends without image prompts ignore it


@dataclass(frozen=True)
class Scene:
    rgb: np.ndarray  # HxWx3 uint8 background, canvas space
    backend: str
    trained: bool  # made by a trained generative model (recorded as such in the credentials)
    settings: dict[str, Any]  # everything needed to make the same background again


class SceneBackend(Protocol):
    name: str  # its name in the table (stages.scene.BACKENDS)
    Options: type  # its options dataclass: the [scene.<name>] table
    trained: bool  # its scenes are drawn by a trained generative model (`Scene.trained`)

    @classmethod
    def load(cls, options: Any) -> SceneBackend: ...

    def generate(self, request: SceneRequest) -> Scene: ...


class SceneOutOfMemory(StageError):
    """The accelerator ran out of memory with one image per call and no lighter mode left:
    a caller may fall back to another scene backend for this product."""
