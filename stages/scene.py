"""Scene: the background generated around the product.

Backends draw only the background; the product is put back by `stages.composite`, so no
backend can redraw it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stages.config import SceneConfig
from stages.depth import DepthMap
from stages.errors import ConfigError
from stages.layout import Layout
from stages.registry import Registry

# IPTC digital source types (https://cv.iptc.org/newscodes/digitalsourcetype/)
IPTC_COMPOSITE_SYNTHETIC = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic"
IPTC_COMPOSITE_TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


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
    digital_source_type: str
    settings: dict[str, Any]  # everything needed to make the same background again


class SceneBackend(Protocol):
    name: str

    def __init__(self, cfg: SceneConfig) -> None: ...

    def generate(self, request: SceneRequest) -> Scene: ...


scene_backends: Registry[SceneBackend] = Registry("scene")


def make_scene_backend(cfg: SceneConfig) -> SceneBackend:
    return scene_backends.get(cfg.backend)(cfg)


# Colour words a merchandiser is likely to write in a prompt; longest names match first.
COLOUR_WORDS: dict[str, str] = {
    "white": "#f4f3f0", "off white": "#efebe3", "ivory": "#f3eedf", "cream": "#efe6d2",
    "beige": "#e3d6c1", "sand": "#dccbad", "warm sand": "#dfc9a6", "taupe": "#b9ab9b",
    "grey": "#c9c9c7", "gray": "#c9c9c7", "soft grey": "#d6d5d2", "light grey": "#dedddb",
    "charcoal": "#4a4b4d", "black": "#2b2b2c", "slate": "#7d8790",
    "blue": "#a9c1dc", "pale blue": "#cddcec", "dusty blue": "#9fb3c6", "navy": "#38476b",
    "sky": "#bcd7ee", "teal": "#6fa3a3", "green": "#a9c3a0", "sage": "#b5c2a5",
    "sage green": "#adbc9c", "olive": "#9a9b6f", "mint": "#c7e3d4",
    "yellow": "#efdc9a", "mustard": "#d4b25a", "orange": "#f0b486", "peach": "#f3cdb4",
    "terracotta": "#c8775a", "warm terracotta": "#cd7e5e", "red": "#c9605a", "coral": "#ef9a89",
    "pink": "#efc2c8", "blush": "#f0d3d1", "lilac": "#cdbfdc", "lavender": "#d3c8e6", "purple": "#9d86b8",
    "brown": "#8a6a50", "walnut": "#6e5139", "oak": "#b8956a", "marble": "#e9e7e3", "concrete": "#b7b5b0",
}
_COLOUR_RE = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(COLOUR_WORDS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


def parse_hex(value: str, where: str) -> np.ndarray:
    m = re.fullmatch(r"#?([0-9a-fA-F]{6})", value.strip())
    if not m:
        raise ConfigError(f"{where} = {value!r}: expected a colour like '#e9e4dc'")
    h = m.group(1)
    return np.array([int(h[i : i + 2], 16) for i in (0, 2, 4)], np.float32)


def colour_from_prompt(prompt: str) -> tuple[str, str] | None:
    """First colour word in the prompt and its hex value."""
    m = _COLOUR_RE.search(prompt)
    if not m:
        return None
    word = m.group(1).lower()
    return word, COLOUR_WORDS[word]


@scene_backends.register("studio")
class StudioScene:
    """Procedural studio sweep: wall, curved floor, soft key light.

    It needs no weights and is deterministic for a seed; the colour comes from the prompt
    (a colour word) or the config. The shadow under the product is laid on afterwards by
    `stages.shadow`, the same for every backend.
    """

    name = "studio"

    def __init__(self, cfg: SceneConfig) -> None:
        self.cfg = cfg
        self.studio = cfg.studio
        self.default_wall = parse_hex(cfg.studio.wall_color, "scene.studio.wall_color")
        self.floor_override = (
            parse_hex(cfg.studio.floor_color, "scene.studio.floor_color") if cfg.studio.floor_color else None
        )

    def generate(self, request: SceneRequest) -> Scene:
        H, W = request.layout.product_alpha.shape
        rng = np.random.default_rng(request.seed)
        named = colour_from_prompt(request.prompt)
        wall = parse_hex(named[1], "prompt colour") if named else self.default_wall
        floor = self.floor_override if self.floor_override is not None else wall * np.array([0.93, 0.92, 0.90])
        light_x = 0.5 + rng.uniform(-0.18, 0.18)
        light_y = 0.28 + rng.uniform(-0.06, 0.06)

        yy = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None]
        xx = np.linspace(0.0, 1.0, W, dtype=np.float32)[None, :]
        # Sweep: wall blends into floor through a smooth curve around the horizon.
        band = 0.06
        t = np.clip((yy - (request.horizon - band)) / (2 * band), 0.0, 1.0)
        t = t * t * (3 - 2 * t)
        base = wall[None, None, :] * (1 - t[..., None]) + floor[None, None, :] * t[..., None]
        # Key light: broad radial falloff, a touch brighter on the floor near the product.
        aspect = W / H
        r2 = ((xx - light_x) * aspect) ** 2 + (yy - light_y) ** 2
        light = 0.80 + 0.26 * np.exp(-r2 / 0.45)
        rgb = base * light[..., None]
        if self.studio.grain > 0:
            rgb += rng.normal(0.0, self.studio.grain, size=(H, W, 1)).astype(np.float32)
        out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        settings = {
            "prompt": request.prompt,
            "seed": request.seed,
            "wall_color": "#%02x%02x%02x" % tuple(int(v) for v in wall),
            "colour_word": named[0] if named else None,
            "light": [round(light_x, 4), round(light_y, 4)],
            "horizon": request.horizon,
        }
        return Scene(out, self.name, IPTC_COMPOSITE_SYNTHETIC, settings)


# The diffusers backends register themselves here; that module imports torch/diffusers only
# when one of its backends is built.
import stages.scene_diffusers  # noqa: E402,F401
