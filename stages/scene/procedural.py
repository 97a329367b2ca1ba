"""`procedural`: the embedded studio backdrop (no weights), coloured from the prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from stages.colour import parse_hex
from stages.scene.base import Scene, SceneRequest


@dataclass(frozen=True)
class ProceduralOptions:
    """[scene.procedural]"""

    wall_color: str = "#e9e4dc"  # used when the prompt names no colour
    floor_color: str = ""  # empty: derived from the wall colour
    grain: float = 1.5  # std-dev of the seeded grain, in 8-bit levels (stops banding)

    def check(self, where: str) -> None:
        parse_hex(self.wall_color, f"{where}.wall_color")
        if self.floor_color:
            parse_hex(self.floor_color, f"{where}.floor_color")


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


def colour_from_prompt(prompt: str) -> tuple[str, str] | None:
    """First colour word in the prompt and its hex value."""
    m = _COLOUR_RE.search(prompt)
    if not m:
        return None
    word = m.group(1).lower()
    return word, COLOUR_WORDS[word]


class ProceduralScene:
    """Procedural studio sweep: wall, curved floor, soft key light.

    It needs no weights and is deterministic for a seed; the colour comes from the prompt
    (a colour word) or the options. The shadow under the product is laid on afterwards by
    `stages.shadow`, the same for every backend.
    """

    name = "procedural"
    Options = ProceduralOptions
    trained = False

    def __init__(self, options: ProceduralOptions) -> None:
        self.options = options
        self.default_wall = parse_hex(options.wall_color, "scene.procedural.wall_color")
        self.floor_override = (
            parse_hex(options.floor_color, "scene.procedural.floor_color") if options.floor_color else None
        )

    @classmethod
    def load(cls, options: ProceduralOptions) -> ProceduralScene:
        return cls(options)  # nothing to load

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
        if self.options.grain > 0:
            rgb += rng.normal(0.0, self.options.grain, size=(H, W, 1)).astype(np.float32)
        out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        settings = {
            "prompt": request.prompt,
            "seed": request.seed,
            "wall_color": "#%02x%02x%02x" % tuple(int(v) for v in wall),
            "colour_word": named[0] if named else None,
            "light": [round(light_x, 4), round(light_y, 4)],
            "horizon": request.horizon,
        }
        return Scene(out, self.name, self.trained, settings)
