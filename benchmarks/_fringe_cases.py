"""Fringe cases for the rim-spill check: a hand-masked catalog product re-shot, by a physical model,
on a plain coloured backdrop.

The model knows nothing of the check (its alpha gate, rim width, shift or share thresholds):
- a soft edge: the hand mask blurred by a Gaussian of `soft` px, so the rim's pixels mix the
  backdrop in by their coverage (what a lens and a JPEG do to an edge);
- colour bleed: light the backdrop throws onto the product, strongest at the rim and fading
  inward (exp(-d / `reach`) over the distance d inside the mask); a pixel takes `bleed` x that
  weight of the backdrop's colour, scaled by its own lightness (a dark product reflects little);
- a plain backdrop with a gentle light falloff and a little sensor noise;
- optionally a pale version of the product (`pale`: every channel brought 70% of the way to white,
  its shading and texture kept): a light garment or a white shoe made of a dark hand-masked one;
- or a dyed one (`dye`: its hue a sixth of the colour circle from the backdrop's, saturated, its
  shading kept): a product in a colour near the backdrop's (a yellow cap on red, a violet shoe on
  pink).
The result is a source photo; the real matte backend, layout step and check take it from there.

Whether a fringe shows is said by the model's own parameters, not by the check: an edge blurred
by 1 px or more mixes the backdrop into a rim pixel wide, and a bleed of 20% or more tints the
rim outright (`visible`); a hard edge (blur 0.5 px or less: a lens's anti-aliasing) with a bleed
of 5% or less is a clean re-shoot (`clean`); the cases between are neither and are not graded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "catalog" / "images"
MASKS = REPO / "tests" / "data" / "masks"
# plain backdrops: a red and a pink bed sheet, a pale pink one, magenta, orange and blue paper
BACKDROPS = {"red": (196, 32, 44), "pink": (236, 140, 178), "orange": (236, 124, 36), "blue": (40, 84, 196),
             "pale-pink": (244, 186, 212), "magenta": (190, 40, 140)}


@dataclass(frozen=True)
class Fringe:
    photo: str
    colour: str
    soft: float  # px of edge blur
    bleed: float  # share of the backdrop's colour at the rim
    rgb: np.ndarray  # the source photo


def visible(soft: float, bleed: float) -> bool:
    """A fringe that shows: an edge blurred by 1 px or more, or a bleed of 20% or more."""
    return soft >= 1.0 or bleed >= 0.2


def clean(soft: float, bleed: float) -> bool:
    """A clean re-shoot: a hard edge (0.5 px blur at most) and a bleed of 5% at most."""
    return soft <= 0.5 and bleed <= 0.05


def hand_masked(stem: str, pale: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, hand mask) of a tuning photo; `pale`: the product brought 70% of the way to white."""
    path = next(IMAGES.glob(f"{stem}.*"))
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if pale:
        rgb = np.clip(255.0 - 0.3 * (255.0 - rgb.astype(np.float32)), 0, 255).astype(np.uint8)
    return rgb, cv2.imread(str(MASKS / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)


def dye(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], turn: float) -> np.ndarray:
    """The product of `rgb` (hand `mask`) dyed a colour `turn` degrees round the hue circle from the
    backdrop `colour`'s: saturated (HSV saturation 0.75), its brightness kept as shading
    (160 + 0.35 x its own value, of 255); the backdrop's pixels stay as they are."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    hue = int(cv2.cvtColor(np.uint8([[colour]]), cv2.COLOR_RGB2HSV_FULL)[0, 0, 0])
    dyed = np.empty_like(hsv)
    dyed[..., 0] = round(hue + turn * 256 / 360) % 256
    dyed[..., 1] = 190
    dyed[..., 2] = np.clip(160.0 + 0.35 * hsv[..., 2], 0, 255).astype(np.uint8)
    return np.where((mask >= 128)[..., None], cv2.cvtColor(dyed, cv2.COLOR_HSV2RGB_FULL), rgb)


def edge_alpha(mask: np.ndarray, soft: float) -> np.ndarray:
    """The re-shot product's coverage (float 0..1): the hand mask's edge blurred by a Gaussian of
    `soft` px, the alpha a perfect matte of the re-shoot would give."""
    hard = (mask >= 128).astype(np.float32)
    return cv2.GaussianBlur(hard, (0, 0), soft) if soft > 0 else hard


def reshoot(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], soft: float, bleed: float,
            reach: float = 4.0, seed: int = 0) -> np.ndarray:
    """The product of `rgb` (hand `mask`) shot on a plain backdrop of `colour`: soft edge + bleed."""
    rng = np.random.default_rng(seed)
    h, w = mask.shape
    hard = (mask >= 128).astype(np.float32)
    a = edge_alpha(mask, soft)
    d = cv2.distanceTransform((mask >= 128).view(np.uint8), cv2.DIST_L2, 5)
    wgt = (bleed * np.exp(-d / reach))[..., None] * hard[..., None]
    p = rgb.astype(np.float32)
    light = p.mean(axis=2, keepdims=True) / 255.0
    c = np.asarray(colour, np.float32)
    p = (1 - wgt) * p + wgt * c * np.maximum(light, 0.3) * 1.15
    yy = np.linspace(1.04, 0.94, h, dtype=np.float32)[:, None, None]
    bg = c * yy + rng.normal(0, 2.0, (h, w, 3)).astype(np.float32)
    out = a[..., None] * p + (1 - a[..., None]) * bg
    return np.clip(out, 0, 255).astype(np.uint8)
