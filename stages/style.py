"""Per-product look shared by every variant: the shadow under the product and the light it was shot in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stages.depth.base import DepthMap
from stages.harmonize import HarmonizeOptions, LightEstimate, estimate_light, harmonize
from stages.layout import Layout
from stages.shadow import ShadowLayer, ShadowOptions, apply_shadow, compute_shadow


@dataclass(frozen=True, eq=False)
class StyledBackground:
    layout: Layout
    shadow: ShadowLayer
    light: LightEstimate | None
    strength: float

    def apply(self, scene_rgb: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """The background to composite onto (harmonised colour, then the shadow: the background
        only), and the settings that made it."""
        rgb, harmony = scene_rgb, None
        if self.light is not None:
            rgb, harmony = harmonize(rgb, self.layout.product_alpha, self.light, self.strength)
        return apply_shadow(rgb, self.shadow), {"shadow": self.shadow.settings, "harmonize": harmony}


def prepare_style(layout: Layout, depth: DepthMap, horizon: float, shadow: ShadowOptions,
                  harmony: HarmonizeOptions, photo_rgb: np.ndarray, matte_alpha: np.ndarray,
                  photo_alpha: np.ndarray | None) -> StyledBackground:
    """The shadow layer and the light estimate of one placed product: computed once, applied to
    every generated scene. A photo with its own transparency (a cut-out) has no backdrop to read
    the light from: its highlights are used instead."""
    layer = compute_shadow(layout, depth, horizon, shadow)
    light = None
    if harmony.enabled:
        light = estimate_light(photo_rgb, matte_alpha, backdrop_in_photo=photo_alpha is None)
    return StyledBackground(layout, layer, light, harmony.strength)
