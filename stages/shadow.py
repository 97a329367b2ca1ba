"""Shadow: a contact and cast shadow under the product, laid onto the background only."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from stages.colour import parse_hex
from stages.depth.base import DepthMap
from stages.errors import ConfigError
from stages.layout import Layout

_BELOW_FAINT = float(np.nextafter(np.float32(1.0 / 510), np.float32(0.0)))  # zero up to here: under 1/510
WORK_SIDE = 320  # the long side the shadow is computed at; upsampled once at the end


@dataclass(frozen=True)
class ShadowLayer:
    opacity: np.ndarray  # HxW float32 in [0, 1]; 0 under the opaque product
    colour: np.ndarray  # RGB float32 the background is darkened toward
    settings: dict[str, Any]

    def to_png(self) -> np.ndarray:
        """The layer as an 8-bit greyscale image (255 = full shadow) for layers/shadow.png."""
        return np.clip(np.rint(self.opacity * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ShadowOptions:
    """[shadow]: the same contact and cast shadow under the product for every scene backend."""

    enabled: bool = True
    azimuth: float = 0.0  # degrees: 0 = shadow falls straight back, 90 = to the right, -90 = to the left
    elevation: float = 50.0  # light height in degrees: lower = longer shadow; 90 = contact shadow only
    softness: float = 0.035  # blur as a fraction of the canvas width (grows toward the shadow's tip)
    intensity: float = 0.30  # cast shadow opacity, 0..1
    contact: float = 0.55  # contact shadow opacity where the product meets the floor, 0..1
    colour: str = "#000000"  # the colour the background is darkened toward

    def check(self, where: str) -> None:
        check_shadow(self, where)


def check_shadow(cfg: ShadowOptions, where: str = "shadow") -> None:
    """Names the bad value: what `load_config` calls, and again for options built in code."""
    if not 0 <= cfg.intensity <= 1:
        raise ConfigError(f"{where}.intensity = {cfg.intensity}: must be 0..1")
    if not 0 <= cfg.contact <= 1:
        raise ConfigError(f"{where}.contact = {cfg.contact}: must be 0..1")
    if not 0 < cfg.softness <= 0.25:
        raise ConfigError(f"{where}.softness = {cfg.softness}: must be in (0, 0.25]")
    if not 5 <= cfg.elevation <= 90:
        raise ConfigError(f"{where}.elevation = {cfg.elevation}: must be 5..90 degrees")
    if not -180 <= cfg.azimuth <= 180:
        raise ConfigError(f"{where}.azimuth = {cfg.azimuth}: must be -180..180 degrees")
    _colour(cfg.colour, f"{where}.colour")


def _colour(value: str, where: str) -> np.ndarray:
    return parse_hex(value, where)


def shadow_settings(cfg: ShadowOptions) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled, "azimuth": cfg.azimuth, "elevation": cfg.elevation, "softness": cfg.softness,
        "intensity": cfg.intensity, "contact": cfg.contact, "colour": cfg.colour,
    }


def compute_shadow(layout: Layout, depth: DepthMap | None, horizon: float, cfg: ShadowOptions) -> ShadowLayer:
    """The shadow opacity on the canvas for the placed product.

    Every scene backend gets the same shadow, computed from the placed product's matte and the
    floor geometry (the horizon, and the depth map to keep the shadow off the backdrop), so
    switching from the procedural backdrop to a diffusion backend does not change how the product
    sits on the floor. The layer is an opacity map in [0, 1]; it darkens the background before the
    product is composited back, and it is exactly zero under the opaque product, so no product
    pixel can be touched by it.

    The cast shadow is the silhouette projected onto the floor away from a light at `azimuth`
    (0 = the shadow falls straight back, 90 = to the right) and `elevation` (low light: long
    shadow), with the floor foreshortened by perspective toward the horizon. Its blur grows from
    the contact line to the tip, as a real penumbra does. All of it runs at reduced resolution:
    shadows are smooth, and a 1024 px canvas then costs a few milliseconds.
    """
    check_shadow(cfg)
    alpha_full = layout.product_alpha
    H, W = alpha_full.shape
    colour = _colour(cfg.colour, "shadow.colour")
    settings = shadow_settings(cfg)
    if not cfg.enabled or (cfg.intensity == 0 and cfg.contact == 0) or not alpha_full.any():
        return ShadowLayer(np.zeros((H, W), np.float32), colour, settings)
    f = max(1.0, max(H, W) / WORK_SIDE)
    w, h = max(8, round(W / f)), max(8, round(H / f))
    sx, sy = w / W, h / H
    alpha = cv2.resize(alpha_full, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    p = layout.placement
    base = (p.y + p.height) * sy  # the row the product stands on, in work pixels
    top = p.y * sy
    ph = max(1.0, base - top)
    cx = (p.x + p.width / 2) * sx
    soft = max(0.6, cfg.softness * W * sx)

    cast = np.zeros((h, w), np.float32)
    reach = 0.0
    if cfg.intensity > 0 and cfg.elevation < 90:
        M, reach = _projection(base, ph, cx, horizon * h, h, cfg)
        cast = cv2.warpAffine(alpha, M, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
        # Penumbra: sharp near the contact line, soft toward the tip.
        near = cv2.GaussianBlur(cast, (0, 0), soft * 0.35)
        far = cv2.GaussianBlur(cast, (0, 0), soft * 1.6)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = np.hypot(xx - cx, yy - base) / max(reach, 1.0)
        t = np.clip(d, 0.0, 1.0)
        cast = (near * (1 - t) + far * t) * (1.0 - 0.5 * t)  # fades with distance from the product
        cast = np.clip(cast, 0.0, 1.0) * _floor_mask(depth, horizon, h, w, base)

    contact = np.zeros((h, w), np.float32)
    if cfg.contact > 0:
        rows = max(1, int(round(ph * 0.04)))
        b = int(round(base))
        foot = alpha[max(0, b - rows) : max(1, b), :].max(axis=0)
        c_top, c_bot = max(0, b - rows), min(h, b + max(1, rows // 2))
        # Darkest at the contact line, fading below it: no hard band under a flat base.
        fall = np.clip(1.0 - (np.arange(c_top, c_bot, dtype=np.float32) - b) / max(1.0, c_bot - b), 0.25, 1.0)
        contact[c_top:c_bot, :] = foot[None, :] * fall[:, None]
        contact = cv2.GaussianBlur(contact, (0, 0), max(0.6, soft * 0.25))

    small = np.clip(cfg.intensity * cast + cfg.contact * contact, 0.0, 1.0)
    opacity = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    box = slice(p.y, p.y + p.height), slice(p.x, p.x + p.width)  # the opaque product lies in its placed box
    opacity[box][alpha_full[box] == 255] = 0.0  # never under the opaque product
    # too faint to change an 8-bit pixel (under 1/510): keeps the shaded box small
    cv2.threshold(opacity, _BELOW_FAINT, 0.0, cv2.THRESH_TOZERO, dst=opacity)
    settings["length_px"] = round(reach / sy, 1)
    return ShadowLayer(opacity, colour, settings)


def _projection(base: float, ph: float, cx: float, y_h: float, h: int,
                cfg: ShadowOptions) -> tuple[np.ndarray, float]:
    """Affine map from the silhouette to its shadow on the floor, and the shadow's image length.

    A point at height t (0 at the floor, 1 at the top) lands t * cot(elevation) product heights
    away along the azimuth. Across the image that is the product's own scale; into the picture
    the floor is foreshortened: with the focal length taken as the image height, a floor row at
    offset o below the horizon moves to o / (1 + L * ph / h) for a ground distance of L heights.
    """
    run = 1.0 / math.tan(math.radians(cfg.elevation))  # ground length per unit height
    az = math.radians(cfg.azimuth)
    across, back = run * math.sin(az), run * math.cos(az)
    o = max(1.0, base - y_h)  # contact row below the horizon
    L = back * ph / h
    if L >= 0:
        dy = o - o / (1.0 + L)  # toward the horizon
    else:
        dy = -(o / max(0.2, 1.0 + L) - o)  # toward the camera, limited
    dx = across * ph
    # (x, y) -> (x + (base - y) * dx / ph, base - (base - y) * dy / ph): the base row stays put.
    kx, ky = dx / ph, dy / ph
    M = np.array([[1.0, -kx, kx * base], [0.0, ky, base * (1.0 - ky)]], np.float32)
    return M, float(math.hypot(dx, dy))


def _floor_mask(depth: DepthMap | None, horizon: float, h: int, w: int, base: float) -> np.ndarray:
    """1 on the floor, fading out above the horizon: a cast shadow lies on the floor plane.

    With a depth map, pixels much farther than the floor at the horizon (a backdrop far behind)
    are treated as wall too.
    """
    rows = np.arange(h, dtype=np.float32)[:, None]
    y_h = horizon * h
    fade = max(2.0, 0.04 * h)
    mask = np.clip((rows - (y_h - fade)) / fade, 0.0, 1.0) * np.ones((1, w), np.float32)
    if depth is not None and depth.depth.size:
        d = cv2.resize(depth.depth, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        row = int(min(h - 1, max(0, round(y_h))))
        far = float(np.median(d[row]))  # the depth where the floor meets the backdrop
        near = float(np.median(d[int(min(h - 1, round(base)))]))
        if near - far > 8:  # a floor that nears the camera: trust the map
            mask *= np.clip((d - far) / max(1.0, 0.15 * (near - far)), 0.0, 1.0)
    return mask


def apply_shadow(background: np.ndarray, layer: ShadowLayer) -> np.ndarray:
    """Darken the background toward the shadow colour; pixels where the layer is 0 are unchanged."""
    if layer.opacity.shape != background.shape[:2]:
        raise ValueError(f"shadow {layer.opacity.shape} does not match the background {background.shape[:2]}")
    out = np.array(background, copy=True)
    x, y, w, h = cv2.boundingRect(cv2.compare(layer.opacity, 0.0, cv2.CMP_GT))  # the shadow covers a small box
    if w == 0 or h == 0:
        return out
    a = layer.opacity[y : y + h, x : x + w]
    toward = 1.0 - layer.colour / 255.0
    gain = cv2.merge([1.0 - a * toward[c] for c in range(3)])  # per channel: 1 = unchanged
    # float32 products, rounded and saturated to 8 bits
    out[y : y + h, x : x + w] = cv2.multiply(background[y : y + h, x : x + w], gain, dtype=cv2.CV_8U)
    return out
