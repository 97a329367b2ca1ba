"""Harmonize: move the generated background's colour cast toward the light the product was shot in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from stages.errors import ConfigError

MIN_BACKDROP_SHARE = 0.02  # fewer backdrop pixels than this: estimate the light from the product


@dataclass(frozen=True)
class HarmonizeOptions:
    """[harmonize]: the background's colour cast moved toward the light of the product photo."""

    enabled: bool = False
    strength: float = 0.5  # 0..1: share of the colour-cast difference removed

    def check(self, where: str) -> None:
        if not 0 <= self.strength <= 1:
            raise ConfigError(f"{where}.strength = {self.strength}: must be 0..1")


@dataclass(frozen=True)
class LightEstimate:
    ab: tuple[float, float]  # Lab a*, b* of the light's tint
    source: str  # "backdrop" | "product highlights"


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def estimate_light(photo_rgb: np.ndarray, matte_alpha: np.ndarray, backdrop_in_photo: bool = True) -> LightEstimate:
    """The tint of the light in the source photo.

    `backdrop_in_photo` is False for cut-out sources (transparent PNGs): the pixels around the
    product then carry no light information and the product's brightest pixels are used.
    """
    back = matte_alpha == 0
    if backdrop_in_photo and back.mean() >= MIN_BACKDROP_SHARE:
        lab = _lab(photo_rgb[back][None, :, :])[0]
        return LightEstimate((float(lab[:, 1].mean()), float(lab[:, 2].mean())), "backdrop")
    solid = matte_alpha >= 250
    if not solid.any():
        solid = matte_alpha > 0
    lab = _lab(photo_rgb[solid][None, :, :])[0]
    bright = lab[:, 0] >= np.percentile(lab[:, 0], 90)  # white patch: the highlights carry the light's tint
    return LightEstimate((float(lab[bright, 1].mean()), float(lab[bright, 2].mean())), "product highlights")


def background_cast(background: np.ndarray, alpha: np.ndarray) -> tuple[float, float]:
    """Mean Lab a*, b* of the background where the product is absent."""
    lab = _lab(background)
    free = alpha == 0
    return float(lab[..., 1][free].mean()), float(lab[..., 2][free].mean())


def harmonize(background: np.ndarray, alpha: np.ndarray, light: LightEstimate,
              strength: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The background with its mean cast moved `strength` of the way to the light's tint.

    A product photographed under warm tungsten looks pasted-on in front of a cool generated room.
    The photo's own backdrop (a studio sweep is near-neutral, so its tint is the light's tint) or,
    without one, the product's highlights give the target cast as Lab a*/b* (`estimate_light`).
    Lightness is left alone. The shift is weighted by (1 - alpha), so it is zero under the opaque
    product, and the product is composited back afterwards in any case: product pixels never change.
    """
    lab = _lab(background)
    free = alpha == 0
    if strength <= 0 or not free.any():
        return background, {"strength": strength, "shift_ab": [0.0, 0.0], "light": light.source}
    mean = np.array([lab[..., 1][free].mean(), lab[..., 2][free].mean()], np.float32)
    shift = strength * (np.array(light.ab, np.float32) - mean)
    weight = 1.0 - alpha.astype(np.float32) / 255.0
    lab[..., 1] += shift[0] * weight
    lab[..., 2] += shift[1] * weight
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    out = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    out[alpha == 255] = background[alpha == 255]  # exactly untouched there, not a Lab round trip
    return out, {
        "strength": strength, "light": light.source, "light_ab": [round(v, 2) for v in light.ab],
        "shift_ab": [round(float(v), 2) for v in shift],
    }
