"""Colours: written in settings and presets ('#e9e4dc'), in opponent axes, and named."""

from __future__ import annotations

import re

import cv2
import numpy as np

from stages.errors import ConfigError


def parse_hex(value: str, where: str) -> np.ndarray:
    """RGB float32 of a '#rrggbb' (or 'rrggbb') colour; ConfigError naming `where` otherwise."""
    m = re.fullmatch(r"#?([0-9a-fA-F]{6})", value.strip())
    if not m:
        raise ConfigError(f"{where} = {value!r}: expected a colour like '#e9e4dc'")
    h = m.group(1)
    return np.array([int(h[i : i + 2], 16) for i in (0, 2, 4)], np.float32)


# opponent colour axes of sRGB: lightness, then two chroma axes (red-green, yellow-blue), in RGB units
OPPONENT = np.array([[1 / 3, 1 / 3, 1 / 3], [1 / np.sqrt(2), -1 / np.sqrt(2), 0.0],
                      [1 / np.sqrt(6), 1 / np.sqrt(6), -2 / np.sqrt(6)]], np.float32).T


def opponent(rgb: np.ndarray) -> np.ndarray:
    """N x 3 colours as (lightness, red-green, yellow-blue): chroma apart from lightness, in RGB units."""
    return np.asarray(rgb, np.float32).reshape(-1, 3) @ OPPONENT


def hue_name(rgb: np.ndarray) -> str:
    """A plain colour name of an sRGB colour's hue (red, orange, ... pink)."""
    hsv = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8).reshape(1, 1, 3), cv2.COLOR_RGB2HSV_FULL)
    hue = float(hsv[0, 0, 0]) * 360.0 / 256.0
    names = ((15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (255, "blue"),
             (290, "purple"), (340, "pink"), (360, "red"))
    return next(name for top, name in names if hue < top or top == 360)
