"""Colours written in settings and presets ('#e9e4dc')."""

from __future__ import annotations

import re

import numpy as np

from stages.errors import ConfigError


def parse_hex(value: str, where: str) -> np.ndarray:
    """RGB float32 of a '#rrggbb' (or 'rrggbb') colour; ConfigError naming `where` otherwise."""
    m = re.fullmatch(r"#?([0-9a-fA-F]{6})", value.strip())
    if not m:
        raise ConfigError(f"{where} = {value!r}: expected a colour like '#e9e4dc'")
    h = m.group(1)
    return np.array([int(h[i : i + 2], 16) for i in (0, 2, 4)], np.float32)
