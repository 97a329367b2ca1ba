"""Layout: place the cut-out product on the target canvas, and the mask of everything to generate."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import cv2
import numpy as np

from stages.errors import ConfigError, StageError
from stages.unmix import unmix_edge

# Alpha below this is matting noise, not product: it does not count towards the bounding box.
BBOX_ALPHA = 8
MODES = ("center", "floor", "thirds", "fixed", "coverage")


@dataclass(frozen=True)
class PlacementPreset:
    """A named placement ([layout.presets.<name>]): a mode plus the layout keys it overrides."""

    placement: str = "center"  # one of MODES
    margin: float | None = None  # None: the [layout] value
    floor: float | None = None
    max_scale: float | None = None
    thirds: Literal["left", "right"] | None = None
    box: tuple[float, ...] | None = None
    coverage: float | None = None


@dataclass(frozen=True)
class LayoutOptions:
    """[layout]: the canvas, where the product sits on it, and the named placements."""

    width: int = 1024
    height: int = 1024
    margin: float = 0.10  # fraction of the canvas kept free on each side
    floor: float = 0.08  # fraction of the height below the product's base (floor placement)
    placement: str = "floor"  # one of MODES or a [layout.presets] name; a row's `placement` wins
    max_scale: float = 2.0  # never enlarge the product more than this
    horizon: float = 0.62  # where the backdrop meets the floor, as a fraction of the height
    thirds: Literal["left", "right"] = "left"  # thirds: which vertical third line
    box: tuple[float, ...] = (0.2, 0.2, 0.8, 0.8)  # fixed: left, top, right, bottom (canvas fractions)
    coverage: float = 0.35  # coverage: product area / canvas area
    unmix_edge: bool = True  # soft edge pixels: the old backdrop's share replaced by the product's colour
    presets: dict[str, PlacementPreset] = field(default_factory=lambda: {
        "packshot": PlacementPreset(placement="center", margin=0.05),  # marketplace main image: ~90% of the frame
        "copy-space": PlacementPreset(placement="thirds", thirds="left"),  # room for a headline beside it
    })

    def check(self, where: str) -> None:
        for key in ("width", "height"):
            if not 64 <= getattr(self, key) <= 8192:
                raise ConfigError(f"{where}.{key} = {getattr(self, key)}: must be 64..8192")
        if not 0 < self.horizon < 1:
            raise ConfigError(f"{where}.horizon = {self.horizon}: must be in (0, 1)")
        problem = layout_error(self)
        if problem:
            raise ConfigError(problem)


@dataclass(frozen=True)
class Placement:
    scale: float  # product pixels per source pixel
    x: int  # left edge of the product box in the canvas
    y: int  # top edge of the product box in the canvas
    width: int  # product box size in the canvas
    height: int
    source_box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the product in the source photo
    mode: str = "floor"  # one of MODES
    preset: str = ""  # the [layout.presets] name, when one was used
    limited_by: str = "fit"  # fit (the mode's space) | max_scale | coverage (reached its target)
    coverage: float = 0.0  # product area / canvas area, as placed
    unmixed: int = 0  # soft edge pixels (of the photo) unmixed from the old backdrop (`stages.unmix`)

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
    """(x0, y0, x1, y1) of the pixels with alpha >= BBOX_ALPHA (OpenCV's bounding box: no index arrays)."""
    x, y, w, h = cv2.boundingRect((alpha >= BBOX_ALPHA).view(np.uint8))
    if w == 0 or h == 0:
        raise StageError("the matte holds no product pixels (empty cut-out)")
    return int(x), int(y), int(x + w), int(y + h)


def placement_names(cfg: LayoutOptions) -> list[str]:
    """Every value a row's `placement` may take: the modes and the configured preset names."""
    return [*MODES, *sorted(cfg.presets)]


def resolve_placement(cfg: LayoutOptions, name: str = "") -> tuple[str, LayoutOptions]:
    """(preset name or "", the layout settings with `placement` set to a mode) for a mode or preset name."""
    name = name or cfg.placement
    if name in MODES:
        return "", dataclasses.replace(cfg, placement=name)
    preset = cfg.presets.get(name)
    if preset is None:
        raise StageError(f"placement {name!r} is not a mode or a [layout.presets] name; known: {placement_names(cfg)}")
    overrides = {k: v for k, v in dataclasses.asdict(preset).items() if v is not None}
    if "box" in overrides:
        overrides["box"] = tuple(overrides["box"])
    return name, dataclasses.replace(cfg, **overrides)


def layout_error(cfg: LayoutOptions) -> str | None:
    """The first bad placement setting in [layout] and its presets, named; None when all are usable."""
    if cfg.placement not in placement_names(cfg):
        return f"layout.placement = {cfg.placement!r}: must be one of {placement_names(cfg)}"
    for name, preset in cfg.presets.items():
        if name in MODES:
            return f"[layout.presets.{name}]: a preset cannot be named like a placement mode"
        if preset.placement not in MODES:
            return f"layout.presets.{name}.placement = {preset.placement!r}: must be one of {list(MODES)}"
    tables = [("layout", dataclasses.asdict(cfg))]
    tables += [(f"layout.presets.{n}", dataclasses.asdict(p)) for n, p in cfg.presets.items()]
    for where, t in tables:
        for key, lo, hi in (("margin", 0.0, 0.45), ("floor", 0.0, 0.45)):
            if t[key] is not None and not lo <= t[key] < hi:
                return f"{where}.{key} = {t[key]}: must be in [{lo}, {hi})"
        if t["max_scale"] is not None and not t["max_scale"] > 0:
            return f"{where}.max_scale = {t['max_scale']}: must be > 0"
        if t["coverage"] is not None and not 0 < t["coverage"] <= 1:
            return f"{where}.coverage = {t['coverage']}: must be in (0, 1]"
        box = t["box"]
        if box is not None:
            if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
                return f"{where}.box = {list(box)}: must be [left, top, right, bottom] with 0 <= left < right <= 1 " \
                       "and 0 <= top < bottom <= 1"
    for name in ("", *cfg.presets):
        _, eff = resolve_placement(cfg, name)
        if eff.placement == "thirds" and eff.margin >= 1 / 3:
            where = f"layout.presets.{name}" if name else "layout"
            return f"{where}: thirds needs a margin below 1/3, not {eff.margin}"
    return None


@dataclass(frozen=True, eq=False)
class ProductCrop:
    """The product's box cut out of the source photo and its matte: what every layout of the same
    photo and matte starts from (the master's and each channel preset's), made once per product.

    `box` is `product_box(alpha)`; `rgb` and `alpha` are that box's pixels (the soft edge's
    colours unmixed from the old backdrop when `unmixed` > 0); `area` is the matte's area in source
    pixels (what `coverage` placement aims at)."""

    rgb: np.ndarray  # hxwx3 uint8
    alpha: np.ndarray  # hxw uint8
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the source photo
    area: float
    unmixed: int = 0  # soft edge pixels whose colour was unmixed (`stages.unmix.unmix_edge`)

    @functools.cached_property
    def premultiplied16(self) -> np.ndarray:
        """hxwx4 uint16: colour x alpha (exact: at most 65025) and alpha x 257 (alpha on 0..65535):
        what a shrinking layout area-averages; made once however many canvases shrink it."""
        a = self.alpha
        planes = [cv2.multiply(c, a, dtype=cv2.CV_16U) for c in cv2.split(self.rgb)]
        return cv2.merge((*planes, cv2.multiply(a, 257.0, dtype=cv2.CV_16U)))


def product_crop(rgb: np.ndarray, alpha: np.ndarray, unmix: bool = False, leave_plateaus: bool = False) -> ProductCrop:
    """The product's box of a photo and its matte (`ProductCrop`); with `unmix`, the soft edge's
    colours unmixed from the old backdrop (`stages.unmix.unmix_edge`: opaque pixels are copied as
    they are; with `leave_plateaus`, its translucent parts too). Only for a matte whose soft
    pixels mix product and backdrop: not the photo's own transparency, nor shadows a matte kept as
    translucent dark pixels."""
    if rgb.shape[:2] != alpha.shape:
        raise StageError(f"image {rgb.shape[:2]} and matte {alpha.shape} differ in size")
    x0, y0, x1, y1 = product_box(alpha)
    crop_a = np.ascontiguousarray(alpha[y0:y1, x0:x1])
    area = cv2.sumElems(crop_a)[0] / 255.0  # exact: a double holds any uint8 image's sum
    if unmix:
        crop_rgb, unmixed = unmix_edge(rgb, alpha, (x0, y0, x1, y1), leave_plateaus)
        return ProductCrop(crop_rgb, crop_a, (x0, y0, x1, y1), area, unmixed)
    return ProductCrop(np.ascontiguousarray(rgb[y0:y1, x0:x1]), crop_a, (x0, y0, x1, y1), area)


def _resize_premultiplied(crop: ProductCrop, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample colour weighted by alpha so background colour does not bleed into the edge.

    Shrinking (a large photo onto the canvas) area-averages the crop's 16-bit premultiplied colour
    and alpha (`ProductCrop.premultiplied16`, one 4-channel image resized in one pass: each channel
    is averaged on its own, as if resized alone): the same weights as in floats, rounded to 1/65025
    of a level, without float copies of the whole product box; only the canvas-sized result is
    divided back in floats. (Not in two passes like `stages.resample.shrink`: a whole-factor box
    pass first moves the footprints' ends by up to half a source pixel, which shows on the
    product's edge.)"""
    rgb, alpha = crop.rgb, crop.alpha
    shrinking = size[0] < rgb.shape[1]
    if shrinking:
        # colour planes and alpha apart, each contiguous: numpy's float arithmetic on whole 2-D
        # planes is several times faster than on a strided slice or a broadcast last axis
        *colour, ra = cv2.split(cv2.resize(crop.premultiplied16, size, interpolation=cv2.INTER_AREA).astype(np.float32))
        for c in colour:
            c *= np.float32(1 / 255)
        ra *= np.float32(1 / 65535)
    else:
        a = alpha.astype(np.float32) / 255.0
        premult = rgb.astype(np.float32) * a[..., None]
        colour = cv2.split(cv2.resize(premult, size, interpolation=cv2.INTER_CUBIC))
        ra = cv2.resize(a, size, interpolation=cv2.INTER_CUBIC)
    np.clip(ra, 0.0, 1.0, out=ra)
    out_a = np.rint(ra * 255.0).astype(np.uint8)
    inv = np.zeros_like(ra)  # colour only where some alpha is left: fully transparent pixels are black
    np.divide(1.0, ra, out=inv, where=out_a > 0)
    for c in colour:
        c *= inv
    p = cv2.merge(colour)
    np.rint(p, out=p)
    np.clip(p, 0.0, 255.0, out=p)
    return p.astype(np.uint8), out_a


def _frame(cfg: LayoutOptions, W: int, H: int, bw: int, bh: int, area: float) -> tuple[float, str, float, float]:
    """(scale, what limited it, box centre x, box centre y or the base row for `floor`) of the mode."""
    mx, my = W * cfg.margin, H * cfg.margin
    mode = cfg.placement
    if mode == "floor":
        fit = min((W - 2 * mx) / bw, H * (1.0 - cfg.margin - cfg.floor) / bh)
        cx, cy = W / 2, H * (1.0 - cfg.floor)
    elif mode == "thirds":
        cx = W / 3 if cfg.thirds == "left" else 2 * W / 3
        cy = 2 * H / 3
        fit = min(2 * min(cx - mx, W - mx - cx) / bw, 2 * min(cy - my, H - my - cy) / bh)
    elif mode == "fixed":
        left, top, right, bottom = cfg.box
        fit = min((right - left) * W / bw, (bottom - top) * H / bh)
        cx, cy = (left + right) / 2 * W, (top + bottom) / 2 * H
    else:  # center, coverage
        fit = min((W - 2 * mx) / bw, (H - 2 * my) / bh)
        cx, cy = W / 2, H / 2
    if mode == "coverage":
        target = math.sqrt(cfg.coverage * W * H / max(area, 1.0))
        scale, limited = min((target, "coverage"), (fit, "fit"), (cfg.max_scale, "max_scale"), key=lambda s: s[0])
    else:
        scale, limited = min((fit, "fit"), (cfg.max_scale, "max_scale"), key=lambda s: s[0])
    return scale, limited, cx, cy


def uncapped_scale(cfg: LayoutOptions, placement: Placement, canvas: tuple[int, int], area: float) -> float:
    """The scale `placement`'s mode would have given the product had `max_scale` not capped it.

    `area` is the product's matte area in source pixels (what `coverage` placement aims at). A
    channel rule that the capped scale misses but this one meets is missed because the photo is too
    small; one this scale misses too is the placement's own doing (margins, mode), not the photo's.
    """
    _, eff = resolve_placement(cfg, placement.preset or placement.mode)
    x0, y0, x1, y1 = placement.source_box
    scale, _, _, _ = _frame(dataclasses.replace(eff, max_scale=math.inf), canvas[0], canvas[1], x1 - x0, y1 - y0,
                            area)
    return scale


def place_product(rgb: np.ndarray, alpha: np.ndarray, cfg: LayoutOptions, placement: str = "",
                  canvas: tuple[int, int] | None = None, crop: ProductCrop | None = None) -> Layout:
    """Lay the product out on the canvas (`canvas` = (width, height), default [layout]) with the
    named placement (a mode or a [layout.presets] name; default `[layout] placement`).

    The product layer made here is the exact set of product pixels that will be composited; every
    later check compares the published image against it. Placement modes (`[layout] placement`, a
    `[layout.presets.<name>]` table, or a row's `placement`):

    - `center`: the largest size that fits inside the margins, centred.
    - `floor`: standing on the floor line (`floor` of the height below its base), centred across.
    - `thirds`: rule of thirds: the product's box is centred on the intersection of the left (or
      right, `thirds`) vertical third line with the lower horizontal third line, as large as fits
      inside the margins around that point.
    - `fixed`: fitted inside `box` = [left, top, right, bottom] (canvas fractions) and centred in it.
    - `coverage`: scaled so the product's own pixels (the matte's area, not its box) cover
      `coverage` of the canvas, centred; limited by the margins when it would not fit.

    Whatever the mode, the product is never enlarged beyond `max_scale` (it would turn blurry) and
    never cropped; the placement records which limit decided its scale (`limited_by`).

    `crop`: `product_crop` of the photo and matte already made (the master's, shared by the channel
    presets: the box, its pixels and their premultiplied copy are then made once per product);
    without it one is made here, its soft edge unmixed when `unmix_edge` is on.
    """
    if rgb.shape[:2] != alpha.shape:
        raise StageError(f"image {rgb.shape[:2]} and matte {alpha.shape} differ in size")
    preset, cfg = resolve_placement(cfg, placement)
    W, H = canvas or (cfg.width, cfg.height)
    crop = crop or product_crop(rgb, alpha, cfg.unmix_edge)
    x0, y0, x1, y1 = crop.box
    bw, bh = x1 - x0, y1 - y0
    scale, limited, cx, cy = _frame(cfg, W, H, bw, bh, crop.area)
    nw, nh = min(W, max(1, round(bw * scale))), min(H, max(1, round(bh * scale)))
    if (nw, nh) == (bw, bh):
        scale = 1.0
        placed_rgb, placed_a = crop.rgb.copy(), crop.alpha.copy()
        placed_rgb[placed_a == 0] = 0
    else:
        placed_rgb, placed_a = _resize_premultiplied(crop, (nw, nh))
    x = round(cx - nw / 2)
    y = round(cy) - nh if cfg.placement == "floor" else round(cy - nh / 2)
    x, y = min(max(x, 0), W - nw), min(max(y, 0), H - nh)  # never off the canvas
    product_rgb = np.zeros((H, W, 3), np.uint8)
    product_alpha = np.zeros((H, W), np.uint8)
    product_rgb[y : y + nh, x : x + nw] = placed_rgb
    product_alpha[y : y + nh, x : x + nw] = placed_a
    mask = cv2.compare(product_alpha, 255, cv2.CMP_LT)  # 255 where alpha < 255, else 0
    placement_rec = Placement(
        scale=float(scale), x=int(x), y=int(y), width=int(nw), height=int(nh), source_box=(x0, y0, x1, y1),
        mode=cfg.placement, preset=preset, limited_by=limited,
        coverage=round(cv2.sumElems(placed_a)[0] / 255.0 / (W * H), 5), unmixed=crop.unmixed,
    )
    return Layout(product_rgb=product_rgb, product_alpha=product_alpha, mask=mask, placement=placement_rec)
