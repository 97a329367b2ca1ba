"""The order of the steps, written once: `stage` takes one photo to composited, checked variants.

The per-product runner (`ops.runner`), the channel renditions (`ops.renditions`) and the
benchmarks all call `stage`; signing and publishing the result is `ops`' work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from stages.check import CheckResult
from stages.check.guards import ContentChecks
from stages.colour import parse_hex
from stages.composite import composite
from stages.depth import DepthBackend, DepthMap
from stages.errors import StageError
from stages.harmonize import HarmonizeOptions
from stages.layout import Layout, LayoutOptions, ProductCrop, place_product, product_crop
from stages.matte import Escalation, Matte, MatteBackend, compute_matte
from stages.scene import ReferenceImage, Scene, SceneRequest
from stages.shadow import ShadowOptions
from stages.style import StyledBackground, prepare_style

# Part of every cache key and record: a new version regenerates every output.
PIPELINE_VERSION = "0.13.0"

Timer = Callable[[str], AbstractContextManager[Any]]
CheckMode = Literal["all", "trained", "none"]


def untimed(_step: str) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


class Generator(Protocol):
    """A scene backend, or a chain of them (`stages.scene.chain.SceneChain`)."""

    def generate_many(self, requests: Sequence[SceneRequest]) -> list[Scene]: ...


@dataclass(frozen=True)
class StepOptions:
    """The settings of the steps that have no backend."""

    layout: LayoutOptions = field(default_factory=LayoutOptions)
    shadow: ShadowOptions = field(default_factory=ShadowOptions)
    harmonize: HarmonizeOptions = field(default_factory=HarmonizeOptions)


@dataclass
class Parts:
    """Everything `stage` runs: the loaded backends (once per worker) and the step settings."""

    matte: MatteBackend
    depth: DepthBackend
    scene: Generator
    checks: ContentChecks
    options: StepOptions
    matte_escalation: Escalation | None = None  # [matte] escalate_to: the cut-outs `matte` is unsure of


@dataclass(frozen=True, eq=False)
class Photo:
    rgb: np.ndarray  # HxWx3 uint8 sRGB
    alpha: np.ndarray | None = None  # the photo's own transparency, None when it has none


@dataclass(frozen=True, eq=False)
class Brief:
    """What to stage the product in: the row's cleaned text and its style reference."""

    prompt: str
    negative_prompt: str = ""
    title: str = ""
    category: str = ""
    reference: ReferenceImage | None = None


@dataclass(frozen=True)
class Frame:
    """Where: the placement (a mode or preset name; "" = [layout]), the canvas (None = [layout]) and,
    for a flat background (a marketplace preset), its colour instead of a generated scene."""

    placement: str = ""
    canvas: tuple[int, int] | None = None
    background: str = ""


@dataclass(eq=False)
class Variant:
    seed: int
    scene: Scene
    pixels: np.ndarray  # the composited image: HxWx3 uint8
    look: dict[str, Any]  # the shadow and harmonisation settings applied to its background
    checks: list[CheckResult]  # content checks (NSFW, expansion, halo), when they ran
    details: dict[str, Any]  # their diagnostics


@dataclass(eq=False)
class Staging:
    matte: Matte
    layout: Layout
    depth: DepthMap | None  # none under a flat background
    style: StyledBackground | None
    variants: list[Variant]
    crop: ProductCrop | None = None  # the product's box of the photo and matte, for later layouts of the product


def check_inputs(photo: Photo, seeds: Sequence[int], frame: Frame) -> None:
    if photo.rgb.ndim != 3 or photo.rgb.shape[2] != 3 or photo.rgb.dtype != np.uint8:
        raise StageError(f"expected an HxWx3 uint8 photo, got {photo.rgb.dtype} {photo.rgb.shape}")
    if photo.alpha is not None and photo.alpha.shape != photo.rgb.shape[:2]:
        raise StageError(f"alpha shape {photo.alpha.shape} does not match image {photo.rgb.shape[:2]}")
    if not seeds:
        raise StageError("no seeds: ask for at least one variant")
    if frame.background:
        parse_hex(frame.background, "background")


def stage(parts: Parts, photo: Photo, brief: Brief, seeds: Sequence[int], frame: Frame = Frame(), *,
          matte: Matte | None = None, layout: Layout | None = None, crop: ProductCrop | None = None,
          checks: CheckMode = "all", timer: Timer = untimed) -> Staging:
    """One photo staged once per seed: cut out, placed, a scene generated around it, the original
    product pixels put back, then checked.

    `matte`: a cut-out already made for this photo (a channel rendition reuses the master's).
    `layout`: the product already laid out with that matte for this frame (a channel rendition
    judges its layout before it pays for a scene).
    `crop`: `stages.layout.product_crop` of the photo and that matte, already made; the one the
    layout used is returned in `Staging.crop` (None when `layout` came without it), so the channel
    renditions lay the product out from the master's crop instead of cutting it again.
    `checks`: run the content checks on every variant (`all`), only on scenes a trained model
    generated (`trained`: a flat or procedural backdrop holds nothing new to judge), or not at all.
    `timer(step)` times each step; the names are the record's `timings_ms` keys.
    """
    check_inputs(photo, seeds, frame)
    o, flat = parts.options, bool(frame.background)
    # 1. matte: the product's soft alpha (the photo's own transparency when it has one; a cut-out
    #    the backend is unsure of made again by the one it escalates to)
    with timer("matte"):
        matte = matte or compute_matte(parts.matte, photo.rgb, photo.alpha, parts.matte_escalation)
    # 2. layout: the product layer on the canvas (its soft edge unmixed from the old backdrop) and
    #    the mask of everything to generate
    with timer("layout"):
        if layout is None:
            crop = crop or matte_crop(photo.rgb, matte, o.layout)
            layout = place_product(photo.rgb, matte.alpha, o.layout, frame.placement, canvas=frame.canvas, crop=crop)
    # 3. depth: the canvas depth map that conditions the scene
    with timer("depth"):
        depth = None if flat else parts.depth.run(layout, o.layout.horizon)
    # 4. style: the shadow under the product and the photo's light, the same for every variant
    with timer("shadow"):
        style = None if flat else prepare_style(layout, depth, o.layout.horizon, o.shadow, o.harmonize, photo.rgb,
                                                matte.alpha, photo.alpha)
    # 5. scene: one background per seed, generated together on the loaded backend
    with timer("scene"):
        scenes = ([flat_scene(layout, frame.background)] * len(seeds) if flat else
                  parts.scene.generate_many([_request(layout, depth, brief, seed, o.layout.horizon) for seed in seeds]))
    variants = []
    with timer("check"):  # what the checks measure of the layout, once for every variant
        measures = parts.checks.measure(layout, photo.rgb, matte, brief.category) if checks == "all" else None
    for seed, scene in zip(seeds, scenes, strict=True):
        # 6. composite: the original product pixels back over the styled background
        with timer("composite"):
            background, look = style.apply(scene.rgb) if style is not None else (scene.rgb, {})
            pixels = composite(background, layout)
        # 7. content checks: NSFW, object expansion (on generated scenes), halo, leftovers, hangers
        found: tuple[list[CheckResult], dict[str, Any]] = ([], {})
        if checks == "all" or (checks == "trained" and scene.trained):
            with timer("check"):
                found = parts.checks.run(pixels, layout, photo.rgb, matte, measures, brief.category, scene.trained)
        variants.append(Variant(seed, scene, pixels, look, *found))
    return Staging(matte, layout, depth, style, variants, crop)


def matte_crop(rgb: np.ndarray, matte: Matte, options: LayoutOptions) -> ProductCrop:
    """The product's box of the photo and its matte, the soft edge unmixed from the old backdrop
    when `[layout] unmix_edge` is on and the matte's soft pixels are mixes of the two (its
    translucent parts, when the matte has any, left as they are)."""
    return product_crop(rgb, matte.alpha, unmix=options.unmix_edge and matte.mixed_edge,
                        leave_plateaus=matte.translucent_share > 0.0)


def _request(layout: Layout, depth: DepthMap | None, brief: Brief, seed: int, horizon: float) -> SceneRequest:
    assert depth is not None
    return SceneRequest(layout, depth, brief.prompt, brief.negative_prompt, seed, horizon, brief.category,
                        brief.title, reference=brief.reference)


def flat_scene(layout: Layout, colour: str) -> Scene:
    """One flat colour over the whole canvas: the background of a marketplace main image."""
    rgb = parse_hex(colour, "background").astype(np.uint8)
    W, H = layout.size
    return Scene(np.ascontiguousarray(np.broadcast_to(rgb, (H, W, 3))), "flat", False, {"background": colour.lower()})
