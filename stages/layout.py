"""Layout: place the cut-out product on the target canvas.

The product layer made here is the exact set of product pixels that will be composited;
every later check compares the published image against it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from stages.config import LayoutConfig
from stages.errors import StageError

# Alpha below this is matting noise, not product: it does not count towards the bounding box.
BBOX_ALPHA = 8


@dataclass(frozen=True)
class Placement:
    scale: float  # product pixels per source pixel
    x: int  # left edge of the product box in the canvas
    y: int  # top edge of the product box in the canvas
    width: int  # product box size in the canvas
    height: int
    source_box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the product in the source photo

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Layout:
    product_rgb: np.ndarray  # HxWx3 uint8, canvas space; colour is meaningful where alpha > 0
    product_alpha: np.ndarray  # HxW uint8, canvas space
    mask: np.ndarray  # HxW uint8, 255 = generate (everything not fully product)
    placement: Placement

    @property
    def size(self) -> tuple[int, int]:
        return self.product_alpha.shape[1], self.product_alpha.shape[0]


def product_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(alpha >= BBOX_ALPHA)
    if xs.size == 0:
        raise StageError("the matte holds no product pixels (empty cut-out)")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _resize_premultiplied(rgb: np.ndarray, alpha: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample colour weighted by alpha so background colour does not bleed into the edge."""
    a = alpha.astype(np.float32) / 255.0
    premult = rgb.astype(np.float32) * a[..., None]
    shrinking = size[0] < rgb.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    p = cv2.resize(premult, size, interpolation=interp)
    ra = np.clip(cv2.resize(a, size, interpolation=interp), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        colour = np.where(ra[..., None] > 1e-4, p / np.maximum(ra[..., None], 1e-4), 0.0)
    out_rgb = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    out_a = np.clip(np.rint(ra * 255.0), 0, 255).astype(np.uint8)
    out_rgb[out_a == 0] = 0
    return out_rgb, out_a


def place_product(rgb: np.ndarray, alpha: np.ndarray, cfg: LayoutConfig) -> Layout:
    if rgb.shape[:2] != alpha.shape:
        raise StageError(f"image {rgb.shape[:2]} and matte {alpha.shape} differ in size")
    W, H = cfg.width, cfg.height
    x0, y0, x1, y1 = product_box(alpha)
    bw, bh = x1 - x0, y1 - y0
    avail_w = W * (1.0 - 2.0 * cfg.margin)
    if cfg.anchor == "bottom":
        avail_h = H * (1.0 - cfg.margin - cfg.floor)
    else:
        avail_h = H * (1.0 - 2.0 * cfg.margin)
    scale = min(avail_w / bw, avail_h / bh, cfg.max_scale)
    nw, nh = max(1, round(bw * scale)), max(1, round(bh * scale))
    crop_rgb = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    crop_a = np.ascontiguousarray(alpha[y0:y1, x0:x1])
    if (nw, nh) == (bw, bh):
        scale = 1.0
        placed_rgb, placed_a = crop_rgb.copy(), crop_a.copy()
        placed_rgb[placed_a == 0] = 0
    else:
        placed_rgb, placed_a = _resize_premultiplied(crop_rgb, crop_a, (nw, nh))
    x = (W - nw) // 2
    y = round(H * (1.0 - cfg.floor)) - nh if cfg.anchor == "bottom" else (H - nh) // 2
    y = min(max(y, 0), H - nh)
    product_rgb = np.zeros((H, W, 3), np.uint8)
    product_alpha = np.zeros((H, W), np.uint8)
    product_rgb[y : y + nh, x : x + nw] = placed_rgb
    product_alpha[y : y + nh, x : x + nw] = placed_a
    mask = np.where(product_alpha < 255, 255, 0).astype(np.uint8)
    placement = Placement(
        scale=float(scale), x=int(x), y=int(y), width=int(nw), height=int(nh),
        source_box=(x0, y0, x1, y1),
    )
    return Layout(product_rgb=product_rgb, product_alpha=product_alpha, mask=mask, placement=placement)
