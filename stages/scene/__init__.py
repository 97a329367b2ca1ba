"""Scene: the background generated around the product (never the product itself).

`BACKENDS` names every backend (one per module); `[scene] backend` picks one, `[scene] fallback`
the ones tried after it (`stages.scene.chain`).
"""

from __future__ import annotations

from typing import Any

from stages.registry import lookup
from stages.scene.base import ReferenceImage, Scene, SceneBackend, SceneOutOfMemory, SceneRequest
from stages.scene.procedural import ProceduralScene
from stages.scene.sd15 import DiffusersSd15Scene
from stages.scene.sdxl import DiffusersSdxlScene

BACKENDS: dict[str, type[SceneBackend]] = {
    ProceduralScene.name: ProceduralScene,
    DiffusersSdxlScene.name: DiffusersSdxlScene,
    DiffusersSd15Scene.name: DiffusersSd15Scene,
}


def load_scene_backend(name: str, options: Any) -> SceneBackend:
    """Load the named backend with its options; an unknown name raises UnknownBackendError."""
    return lookup(BACKENDS, "scene", name).load(options)


__all__ = ["BACKENDS", "ReferenceImage", "Scene", "SceneBackend", "SceneOutOfMemory", "SceneRequest",
           "load_scene_backend"]
