"""Per-product look shared by every variant: the style reference, the shadow and the light.

`prepare_style` runs once per product after depth; `StyledBackground.apply` turns each
generated scene into the background the product is composited onto (harmonised colour, then
the shadow). Both steps touch the background only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stages.config import Config
from stages.depth import DepthMap
from stages.harmonize import LightEstimate, estimate_light, harmonize
from stages.layout import Layout
from stages.reference import load_reference
from stages.scene import ReferenceImage
from stages.shadow import ShadowLayer, apply_shadow, compute_shadow


@dataclass(frozen=True, eq=False)
class StyledBackground:
    layout: Layout
    shadow: ShadowLayer
    light: LightEstimate | None
    strength: float

    def apply(self, scene_rgb: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """The background to composite onto, and the settings that made it."""
        rgb, harmony = scene_rgb, None
        if self.light is not None:
            rgb, harmony = harmonize(rgb, self.layout.product_alpha, self.light, self.strength)
        return apply_shadow(rgb, self.shadow), {"shadow": self.shadow.settings, "harmonize": harmony}


def reference_for(cfg: Config, row_reference: str) -> ReferenceImage | None:
    """The row's reference image, else the config's default, else none."""
    path = row_reference or (str(cfg.resolve(cfg.scene.reference_image)) if cfg.scene.reference_image else "")
    return load_reference(path, cfg.load) if path else None


def prepare_style(cfg: Config, layout: Layout, depth: DepthMap, photo_rgb: np.ndarray, matte_alpha: np.ndarray,
                  photo_alpha: np.ndarray | None) -> StyledBackground:
    shadow = compute_shadow(layout, depth, cfg.layout.horizon, cfg.shadow)
    light = None
    if cfg.harmonize.enabled:
        light = estimate_light(photo_rgb, matte_alpha, backdrop_in_photo=photo_alpha is None)
    return StyledBackground(layout, shadow, light, cfg.harmonize.strength)
