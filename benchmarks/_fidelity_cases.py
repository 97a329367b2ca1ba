"""The cases `fidelity_eval.py` measures the expansion detector on, built apart from its colour
references: clean composites on procedural and real-photo backgrounds, and extensions of random
shape, fill, direction and reach painted out of the product's outline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ops.config import Config
from ops.sources import load_image
from ops.workbench import load_parts
from stages.check.outline import outside_distance, product_size
from stages.composite import composite
from stages.layout import Layout, place_product
from stages.matte import Matte, compute_matte, load_matte_backend
from stages.pipeline import Brief, Photo, stage

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "catalog" / "images"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
PROMPTS = ("clean studio backdrop", "sage green wall", "charcoal backdrop", "warm terracotta backdrop",
           "dusty blue backdrop")
BACKGROUNDS = ("procedural", "own-backdrop", "other-backdrop", "other-photo")
SHAPES = ("blob", "rectangle", "limb", "strap")
FILLS = ("flat", "gradient", "noise", "stripes", "photo-patch")
REFERENCE_FILL = "product-tone"  # in the detector's own references: reported apart, never in a total
DIRECTIONS = ("up", "side", "down", "floor")
MULTIPLES = (0.5, 1.0, 2.0, 5.0, 10.0)
VISIBLE_DELTA_E = 10.0


@dataclass
class Source:
    name: str
    rgb: np.ndarray
    matte: Matte


@dataclass
class Case:
    photo: str
    background: str  # background family
    label: str  # the prompt or the photo the background came from
    scene: np.ndarray  # the background before the product went on
    final: np.ndarray
    layout: Layout
    source_rgb: np.ndarray
    matte: Matte


@dataclass
class Extension:
    shape: str
    fill: str
    direction: str
    multiple: float
    image: np.ndarray
    region: np.ndarray  # the extension's pixels outside the product
    reach: float  # measured reach out of the outline, in multiples of the limit
    visible: bool


def photo_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def load_sources(cfg: Config, files: Sequence[Path]) -> tuple[list[Source], list[tuple[str, str]]]:
    """Photos cut out by the configured matte; (name, why) for those the pipeline would not stage."""
    matte_backend = load_matte_backend(cfg.matte.backend, cfg.matte.options)
    sources, skipped = [], []
    for f in files:
        img = load_image(str(f), cfg.load)
        matte = compute_matte(matte_backend, img.rgb, img.alpha)
        if not (matte.alpha >= 128).any():
            skipped.append((f.name, "empty cut-out"))
        elif matte.confidence < cfg.matte.min_confidence:
            why = "; ".join(matte.details.get("reasons", [])) or "low confidence"
            skipped.append((f.name, f"matte confidence {matte.confidence:.2f}: {why}"))
        else:
            sources.append(Source(f.name, img.rgb, matte))
    return sources, skipped


def _cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """`rgb` scaled to cover width x height and centre-cropped."""
    h, w = rgb.shape[:2]
    s = max(width / w, height / h)
    nw, nh = max(width, int(round(w * s))), max(height, int(round(h * s)))
    out = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    x, y = (nw - width) // 2, (nh - height) // 2
    return np.ascontiguousarray(out[y:y + height, x:x + width])


def backdrop_crop(src: Source, max_aspect: float = 2.0) -> np.ndarray | None:
    """The largest crop of the photo that holds no product (matte, grown by 3% of the product size),
    no more elongated than `max_aspect`; None when it is under 1/6 of the photo's shorter side."""
    alpha = src.matte.alpha
    h, w = alpha.shape
    grow = int(round(0.03 * product_size(alpha))) + 2
    busy = cv2.dilate((alpha > 8).view(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    step = max(1, max(h, w) // 96)
    free = cv2.resize(1 - busy, (w // step, h // step), interpolation=cv2.INTER_AREA) >= 1
    gh, gw = free.shape
    heights = np.zeros(gw, np.int32)
    best, where = 0, None
    for r in range(gh):
        heights = np.where(free[r], heights + 1, 0)
        for c in range(gw):
            if not heights[c]:
                continue
            run = np.minimum.accumulate(heights[c:])
            widths = np.arange(1, len(run) + 1)
            ww = np.minimum(widths, max_aspect * run)
            hh = np.minimum(run, max_aspect * widths)
            area = ww * hh * (run > 0)
            k = int(np.argmax(area))
            if area[k] > best:
                best, where = area[k], (r, c, int(ww[k]), int(hh[k]))
    if where is None:
        return None
    r, c, ww, hh = where
    y1, x0 = (r + 1) * step, c * step
    crop = src.rgb[y1 - hh * step:y1, x0:x0 + ww * step]
    if min(crop.shape[:2]) < min(h, w) / 6:
        return None
    return crop


def clean_cases(cfg: Config, sources: Sequence[Source], rng: np.random.Generator,
                backgrounds: Sequence[str] = BACKGROUNDS, prompts: Sequence[str] = (),
                prompts_per_photo: int = 2) -> tuple[list[Case], list[str]]:
    """Clean composites of each photo on each background family; notes on those that could not be
    made. The procedural scene takes `prompts`, or `prompts_per_photo` random ones of PROMPTS."""
    cfg = replace(cfg, scene=replace(cfg.scene, backend="procedural", fallback=()),
                  shadow=replace(cfg.shadow, enabled=False))
    parts = load_parts(cfg)
    W, H = cfg.layout.width, cfg.layout.height
    crops = {s.name: backdrop_crop(s) for s in sources}
    out, notes = [], []
    for i, src in enumerate(sources):
        layout = place_product(src.rgb, src.matte.alpha, cfg.layout)
        others = [s for s in sources if s.name != src.name]
        for family in backgrounds:
            scenes: list[tuple[str, np.ndarray]] = []
            if family == "procedural":
                chosen = list(prompts) or [PROMPTS[p] for p in rng.choice(
                    len(PROMPTS), size=min(prompts_per_photo, len(PROMPTS)), replace=False)]
                for prompt in chosen:
                    staging = stage(parts, Photo(src.rgb, None), Brief(prompt), [int(rng.integers(1 << 30))],
                                    matte=src.matte, checks="none")
                    v = staging.variants[0]
                    out.append(Case(src.name, family, prompt, v.scene.rgb, v.pixels, staging.layout, src.rgb,
                                    src.matte))
                continue
            if family == "own-backdrop":
                scenes = [(src.name, crops[src.name])] if crops[src.name] is not None else []
            elif family == "other-backdrop":
                usable = [s for s in others if crops[s.name] is not None]
                if usable:
                    o = usable[(i + int(rng.integers(len(usable)))) % len(usable)]
                    scenes = [(o.name, crops[o.name])]
            elif family == "other-photo" and others:
                o = others[int(rng.integers(len(others)))]
                scenes = [(o.name, o.rgb)]
            if not scenes:
                notes.append(f"{src.name}: no {family} background (no product-free crop large enough)")
            for label, rgb in scenes:
                scene = _cover(rgb, W, H)
                out.append(Case(src.name, family, label, scene, composite(scene, layout), layout, src.rgb, src.matte))
    return out, notes


# --- extensions --------------------------------------------------------------------------------

def _outline_points(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outline points (x, y) with their outward normals (from the gradient of the smoothed alpha)."""
    a = cv2.GaussianBlur(alpha.astype(np.float32) / 255.0, (0, 0), 3.0)
    gy, gx = np.gradient(a)
    sil = (alpha >= 128).view(np.uint8)
    edge = (sil > 0) & (cv2.erode(sil, np.ones((3, 3), np.uint8)) == 0)
    ys, xs = np.nonzero(edge)
    n = -np.stack([gx[ys, xs], gy[ys, xs]], axis=1)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-4
    return np.stack([xs[ok], ys[ok]], axis=1).astype(np.float32), n[ok] / norm[ok, None]


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour of random hue, saturation 0.25-1 and value 0.2-0.95: nothing taken from the product."""
    hsv = np.uint8([[[rng.integers(180), rng.integers(64, 256), rng.integers(51, 243)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _fill(kind: str, shape: tuple[int, int], axis: np.ndarray, rng: np.random.Generator,
          patch_from: Callable[[tuple[int, int]], np.ndarray]) -> np.ndarray:
    """An HxWx3 float32 colour field of one fill family; `axis` is the extension's outward direction."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    if kind == "flat":
        return _random_colour(rng) + rng.normal(0, 3, (h, w, 1)).astype(np.float32)
    if kind == "gradient":  # lit near the product, shaded away from it (or the other way round)
        t = xx * axis[0] + yy * axis[1]
        t = (t - t.min()) / max(1.0, float(np.ptp(t)))
        lo, hi = sorted(rng.uniform(0.45, 1.25, 2))
        ramp = hi + (lo - hi) * (t if rng.random() < 0.5 else 1 - t)
        return _random_colour(rng) * ramp[..., None]
    if kind == "noise":
        grain = cv2.GaussianBlur(rng.normal(0, 28, (h, w)).astype(np.float32), (0, 0), 0.8)
        return _random_colour(rng) + grain[..., None]
    if kind == "stripes":
        a = rng.uniform(0, np.pi)
        period = rng.uniform(4, 10)
        on = (np.mod(xx * np.cos(a) + yy * np.sin(a), period) < period / 2)[..., None]
        return np.where(on, _random_colour(rng), _random_colour(rng))
    if kind in ("photo-patch", REFERENCE_FILL):
        return patch_from((h, w))
    raise ValueError(f"unknown fill {kind!r}")


def _patch(rgb: np.ndarray, alpha: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A patch of `shape` from a random place inside the product's box of a photo (its texture)."""
    h, w = shape
    ys, xs = np.nonzero(alpha >= 128)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    ph, pw = min(h, y1 - y0), min(w, x1 - x0)
    y = int(rng.integers(y0, y1 - ph + 1))
    x = int(rng.integers(x0, x1 - pw + 1))
    patch = rgb[y:y + ph, x:x + pw]
    return cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def _shape_mask(shape: str, hw: tuple[int, int], p: np.ndarray, n: np.ndarray, length: float, size: float,
                rng: np.random.Generator) -> np.ndarray:
    """A shape leaving the outline at `p` along `n`, reaching `length` px out of it (attached: it
    starts 2 px inside)."""
    h, w = hw
    m = np.zeros((h, w), np.uint8)
    t = np.float32([-n[1], n[0]])  # across the direction
    base = p - 2 * n
    if shape == "blob":
        radius = rng.uniform(0.02, 0.06) * size
        centre = p + n * (length / 2)
        axes = (max(1, int(round(length / 2 + 2))), max(2, int(round(radius))))
        angle = np.degrees(np.arctan2(n[1], n[0])) + rng.uniform(-15, 15)
        cv2.ellipse(m, (int(round(centre[0])), int(round(centre[1]))), axes, angle, 0, 360, 1, -1)
    elif shape == "rectangle":
        half = rng.uniform(0.03, 0.10) * size
        tip = p + n * length
        corners = np.array([base + t * half, tip + t * half, tip - t * half, base - t * half])
        cv2.fillPoly(m, [np.rint(corners).astype(np.int32)], 1)
    elif shape in ("limb", "strap"):
        bend = rng.uniform(-0.35, 0.35) * length
        k = np.linspace(0, 1, 16)[:, None]
        spine = base + n * (k * (length + 2)) + t * (bend * np.sin(np.pi * k / 2) * k)
        if shape == "limb":
            w0 = rng.uniform(0.025, 0.05) * size
            widths = w0 * (1 - 0.5 * k[:, 0])
        else:
            widths = np.full(len(k), max(1.0, rng.uniform(0.006, 0.012) * size))
        left = spine + t * widths[:, None]
        right = spine - t * widths[:, None]
        cv2.fillPoly(m, [np.rint(np.vstack([left, right[::-1]])).astype(np.int32)], 1)
        cv2.circle(m, (int(round(spine[-1, 0])), int(round(spine[-1, 1]))), max(1, int(round(widths[-1]))), 1, -1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return m.astype(bool)


def _floor_mask(alpha: np.ndarray, length: float, size: float, rng: np.random.Generator) -> np.ndarray | None:
    """A slab lying on the floor at the product's foot, running out of one side of the foot until
    it lies `length` px from the product (past any overhang above the foot)."""
    h, w = alpha.shape
    sil = alpha >= 128
    foot = int(np.nonzero(sil.any(axis=1))[0].max())
    thick = max(2, int(round(rng.uniform(0.015, 0.04) * size)))
    y0 = max(0, foot - thick + 1)
    cols = np.nonzero(sil[y0:foot + 1].any(axis=0))[0]
    dist = outside_distance(alpha)[(y0 + foot) // 2]
    m = np.zeros((h, w), bool)
    if rng.random() < 0.5:
        far = np.nonzero(dist[:cols.min()] >= length)[0]
        if not far.size:
            return None
        m[y0:foot + 1, int(far.max()):int(cols.min()) + 3] = True
    else:
        far = np.nonzero(dist[cols.max():] >= length)[0]
        if not far.size:
            return None
        m[y0:foot + 1, max(0, int(cols.max()) - 2):int(cols.max() + far.min()) + 1] = True
    return m


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)


def extend(case: Case, shape: str, fill: str, direction: str, multiple: float, limit: float,
           rng: np.random.Generator, patch_source: tuple[np.ndarray, np.ndarray] | None = None,
           point: int | None = None) -> Extension | None:
    """The clean case with the product extended: a `shape` of `fill` leaving the outline in
    `direction`, reaching `multiple` x `limit` x the product size out of it; None when the outline
    has no point facing that way with open canvas in front of it.

    `patch_source` = (rgb, alpha) of another photo for the `photo-patch` fill; `point` picks the
    outline point (an index into the candidates; random when None)."""
    alpha = case.layout.product_alpha
    h, w = alpha.shape
    size = product_size(alpha)
    length = multiple * limit * size
    if direction == "floor":
        mask = _floor_mask(alpha, length, size, rng)
        axis = np.float32([1, 0])
    else:
        pts, normals = _outline_points(alpha)
        ny = normals[:, 1]
        want = {"up": ny < -0.7, "side": np.abs(normals[:, 0]) >= 0.7, "down": ny > 0.7}[direction]
        reach = length + 6
        steps = np.arange(3, int(reach) + 4, dtype=np.float32)
        rx = np.rint(pts[:, :1] + normals[:, :1] * steps).astype(int)
        ry = np.rint(pts[:, 1:] + normals[:, 1:] * steps).astype(int)
        inside = (rx >= 0) & (rx < w) & (ry >= 0) & (ry < h)
        ok = want & inside.all(axis=1)
        ok[ok] = (alpha[ry[ok], rx[ok]] == 0).all(axis=1)
        cand = np.nonzero(ok)[0]
        if not cand.size:
            return None
        k = cand[(point if point is not None else int(rng.integers(len(cand)))) % len(cand)]
        axis = normals[k]
        mask = _shape_mask(shape, (h, w), pts[k], normals[k], length, size, rng)
    if mask is None:
        return None
    region = mask & (alpha < 255)
    if not (region & (alpha == 0)).any():
        return None
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    if fill == REFERENCE_FILL:
        patch_source = (case.layout.product_rgb, alpha)
    def patch_from(hw: tuple[int, int]) -> np.ndarray:
        if patch_source is None:
            raise ValueError(f"fill {fill!r} needs a patch source")
        return _patch(*patch_source, hw, rng)

    image, outside = paint(case, region, _fill(fill, (y1 - y0, x1 - x0), axis, rng, patch_from))
    reach = float(outside_distance(alpha)[outside].max()) / (limit * size)
    return Extension(shape, fill, direction, multiple, image, outside, reach, visible(case.final, image, outside))


def paint(case: Case, region: np.ndarray, colours: np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Paint `colours` (one colour, or a field over the region's box) into the case's background
    over `region` with a 0.8 px feather, as a generator paints all that is not opaque product, then
    composite the product back; returns (image, the painted pixels outside the product)."""
    region = region & (case.layout.product_alpha < 255)
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    colours = np.clip(np.asarray(colours, np.float32), 0, 255)
    a = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 0.8)[y0:y1, x0:x1, None]
    painted = case.scene.copy()
    box = painted[y0:y1, x0:x1].astype(np.float32)
    painted[y0:y1, x0:x1] = np.clip(np.rint(box * (1 - a) + colours * a), 0, 255).astype(np.uint8)
    return composite(painted, case.layout), region & (case.layout.product_alpha == 0)


def visible(before: np.ndarray, after: np.ndarray, region: np.ndarray) -> bool:
    """A person sees the change: median CIELAB delta E over `region` >= VISIBLE_DELTA_E."""
    delta = np.linalg.norm(_lab(after[region]) - _lab(before[region]), axis=1)
    return bool(region.any()) and float(np.median(delta)) >= VISIBLE_DELTA_E


def build_extensions(cases: Sequence[Case], sources: Sequence[Source], limit: float, per_case: int,
                     rng: np.random.Generator, multiples: Sequence[float] = MULTIPLES,
                     with_reference: bool = True) -> list[tuple[Case, Extension]]:
    """`per_case` random (shape, fill, direction) draws per clean case, each at every multiple
    (same point and shape parameters at every size); plus one `product-tone` draw per case."""
    by_name = {s.name: s for s in sources}
    out = []
    for c in cases:
        others = [s for s in sources if s.name != c.photo] or [by_name[c.photo]]
        draws = [(str(rng.choice(SHAPES)), str(rng.choice(FILLS)), str(rng.choice(DIRECTIONS)))
                 for _ in range(per_case)]
        if with_reference:
            draws.append((str(rng.choice(SHAPES)), REFERENCE_FILL, str(rng.choice(("up", "side")))))
        for shape, fill, direction in draws:
            other = others[int(rng.integers(len(others)))]
            seed, point = int(rng.integers(1 << 30)), int(rng.integers(1 << 30))
            for mult in multiples:
                ext = extend(c, shape, fill, direction, mult, limit, np.random.default_rng(seed),
                             (other.rgb, other.matte.alpha), point)
                if ext is not None:
                    out.append((c, ext))
    return out


# --- measuring ---------------------------------------------------------------------------------
