"""Channel renditions: one product staged again for each channel preset (web shop, social, banner,
marketplace) at the preset's own size and aspect ratio.

A rendition is never the master squashed or cropped: the product is laid out again from the
original photo and matte on the preset's canvas (so its pixels are resampled once, at that
preset's scale, from the source), the scene is generated again for that canvas with the
configured backend (or, for a `background` preset, the canvas is one flat colour), and the
product is composited back. Each format is signed with the source photo as its parent
ingredient and published through the same write-check-verify path as the master, its product
pixels compared with that preset's own product layer (`layers/<preset>/product.png`). The
preset's compliance rules (stages.compliance) then judge the published pixels.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages import PIPELINE_VERSION
from stages.check import CheckResult, product_pixels, rendition_pixels, verdict
from stages.composite import composite
from stages.compliance import check_compliance
from stages.config import Config, RenditionPreset
from stages.layout import Layout, layout_error, place_product, placement_names
from stages.scene import IPTC_COMPOSITE_SYNTHETIC, IPTC_COMPOSITE_TRAINED, Scene, SceneRequest, parse_hex
from stages.write import RENDITION_EXT, encode_png, encode_rendition, thumbnail_jpeg, write_rgba

FORMAT_EXT = {"png": "png", **RENDITION_EXT}


def channel_file_name(stem: str, preset: str, fmt: str) -> str:
    """File name of a product's channel rendition: <stem>.<preset>.<ext>."""
    return f"{stem}.{preset}.{FORMAT_EXT[fmt]}"
FORMAT_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")

# (path, signed bytes, pixel check on the decoded file) -> (published, checks)
Publish = Callable[[Path, bytes, Callable[[np.ndarray], CheckResult]], tuple[bool, list[CheckResult]]]
# (scene request, generated scene) -> staged pixels: the same finishing as the master
Finish = Callable[[SceneRequest, Scene], np.ndarray]
# (staged pixels, layout) -> the master's content checks (NSFW, expansion, halo) on a rendition
Guard = Callable[[np.ndarray, Layout], list[CheckResult]]


@dataclass(frozen=True)
class Source:
    """The original photo, its matte and what its credentials ingredient needs."""

    rgb: np.ndarray
    alpha: np.ndarray
    data: bytes
    mime: str
    title: str
    thumbnail: bytes


@dataclass(frozen=True)
class Job:
    """One product's channel renditions: the row's text and the primary variant's seed."""

    sku: str
    title: str
    category: str
    prompt: str
    negative_prompt: str
    seed: int
    placement: str  # the row's placement ("" = [layout]); presets that name none use it
    folder: Path  # the product's output folder
    stem: str  # file name stem: <stem>.<preset>.<ext>
    settings: dict[str, Any]  # recorded in every manifest (backends, config digest, ...)
    reference: Any = None  # the row's style reference image (stages.style), passed to the scene backend


def config_error(cfg: Config) -> str | None:
    """The first bad placement or rendition setting, named; None when every preset is usable."""
    problem = layout_error(cfg.layout)
    if problem:
        return problem
    r = cfg.renditions
    if len(set(r.active)) != len(r.active):
        return f"renditions.active = {list(r.active)}: names a preset twice"
    for name in r.active:
        if name not in r.presets:
            return f"renditions.active names {name!r}, which has no [renditions.presets.{name}] table; " \
                   f"known: {sorted(r.presets)}"
    names = placement_names(cfg.layout)
    for name, p in r.presets.items():
        where = f"renditions.presets.{name}"
        if not _NAME.fullmatch(name):
            return f"[{where}]: preset names are lower-case letters, digits, '-' and '_' (it names files)"
        if not (64 <= p.width <= 8192 and 64 <= p.height <= 8192):
            return f"{where}: {p.width}x{p.height} must be 64..8192 on each side"
        if not p.formats or len(set(p.formats)) != len(p.formats):
            return f"{where}.formats = {list(p.formats)}: name each of png, jpeg, webp at most once, at least one"
        if p.placement and p.placement not in names:
            return f"{where}.placement = {p.placement!r}: must be one of {names}"
        c = p.compliance
        for key, value in (("background", p.background), ("compliance.background", c.background)):
            if value and not re.fullmatch(r"#?[0-9a-fA-F]{6}", value):
                return f"{where}.{key} = {value!r}: expected a colour like '#ffffff'"
        if not 0 <= c.background_tolerance <= 255:
            return f"{where}.compliance.background_tolerance = {c.background_tolerance}: must be 0..255"
        for key in ("background_share", "min_fill"):
            if not 0 <= getattr(c, key) <= 1:
                return f"{where}.compliance.{key} = {getattr(c, key)}: must be 0..1"
        if c.max_background_std < 0 or c.min_side < 0:
            return f"{where}.compliance: max_background_std and min_side must be >= 0"
    return None


def _flat(preset: RenditionPreset, layout: Layout) -> tuple[np.ndarray, dict[str, Any]]:
    colour = parse_hex(preset.background, "background").astype(np.uint8)
    W, H = layout.size
    return np.broadcast_to(colour, (H, W, 3)), {"background": preset.background.lower()}


def render_preset(bench: Any, name: str, job: Job, source: Source, publish: Publish, finish: Finish,
                  guard: Guard | None = None) -> list[dict[str, Any]]:
    """Stage, sign and publish one preset in each of its formats; one record entry per format.

    `bench` provides `cfg`, `depth` (.run), `scene` (.generate) and `signer` (a ContentSigner).
    `guard` runs the master's content checks on scenes a trained model generated (what the checks
    are for; a flat or procedural backdrop holds nothing new to judge): a blocking failure (an
    NSFW scene) publishes no file of the preset, other failures send it to review.
    """
    cfg: Config = bench.cfg
    preset = cfg.renditions.presets[name]
    t0 = time.perf_counter()
    placement = preset.placement or job.placement
    layout = place_product(source.rgb, source.alpha, cfg.layout, placement, canvas=(preset.width, preset.height))
    ms_scene = 0.0  # the generator's share of "stage" (none for a flat background)
    if preset.background:
        background, scene_settings = _flat(preset, layout)
        staged = composite(np.ascontiguousarray(background), layout)
        backend, source_type = "flat", IPTC_COMPOSITE_SYNTHETIC
    else:
        depth = bench.depth.run(layout, cfg.layout.horizon)
        request = SceneRequest(layout, depth, job.prompt, job.negative_prompt, job.seed, cfg.layout.horizon,
                               job.category, job.title, reference=job.reference)
        t_scene = time.perf_counter()
        scene = bench.scene.generate(request)
        ms_scene = (time.perf_counter() - t_scene) * 1000
        staged = finish(request, scene)
        scene_settings, backend, source_type = scene.settings, scene.backend, scene.digital_source_type
    guarded = guard(staged, layout) if guard is not None and source_type == IPTC_COMPOSITE_TRAINED else []
    blocked = any(c.blocking and not c.passed for c in guarded)
    layer_rel = f"layers/{name}/product.png"
    write_rgba(job.folder / layer_rel, layout.product_rgb, layout.product_alpha, cfg.write.png_compress_level)
    thumb = thumbnail_jpeg(staged, cfg.write.thumbnail_px)
    ms_stage = (time.perf_counter() - t0) * 1000  # layout to thumbnail; each format's publish is apart
    settings = {
        **job.settings, "sku": job.sku, "preset": name, "canvas": [preset.width, preset.height],
        "placement": layout.placement.to_dict(), "scene": scene_settings, "seed": job.seed,
    }
    entries: list[dict[str, Any]] = []
    for fmt in preset.formats:
        t1 = time.perf_counter()
        if blocked:  # never signed nor written
            v, reasons = verdict(guarded)
            entries.append({
                "preset": name, "format": fmt, "output": None, "size": [preset.width, preset.height],
                "product_layer": layer_rel, "placement": layout.placement.to_dict(),
                "scene": {"backend": backend, **scene_settings}, "checks": [c.to_dict() for c in guarded],
                "compliance": [], "verdict": v, "reasons": reasons,
                "timings_ms": {"stage": round(ms_stage, 2), "scene": round(ms_scene, 2)},
            })
            continue
        if fmt == "png":
            data = encode_png(staged, cfg.write.png_compress_level)
        else:
            data = encode_rendition(staged, fmt, cfg.write.jpeg_quality)
        signed = bench.signer.sign_png(
            data, title=f"{job.title} ({job.sku}) {name}", source_bytes=source.data, source_mime=source.mime,
            source_title=source.title, digital_source_type=source_type, settings={**settings, "format": fmt},
            software_agent=f"product-staging {PIPELINE_VERSION} ({backend})", thumbnail=thumb,
            source_thumbnail=source.thumbnail, mime=FORMAT_MIME[fmt],
        )
        seen: dict[str, np.ndarray] = {}

        def pixel_check(px: np.ndarray, fmt: str = fmt) -> CheckResult:
            seen["px"] = px
            if fmt == "png":
                return product_pixels(px, layout, cfg.check)
            return rendition_pixels(px, layout, cfg.check, lossless=fmt == "webp")

        out_name = channel_file_name(job.stem, name, fmt)
        ok, checks = publish(job.folder / out_name, signed, pixel_check)
        checks = guarded + checks
        compliance = check_compliance(seen["px"], layout, preset.compliance) if ok and "px" in seen else []
        v, reasons = verdict(checks + compliance)
        entries.append({
            "preset": name, "format": fmt, "output": out_name if ok else None, "size": [preset.width, preset.height],
            "bytes": len(signed), "product_layer": layer_rel, "placement": layout.placement.to_dict(),
            "scene": {"backend": backend, **scene_settings}, "checks": [c.to_dict() for c in checks],
            "compliance": [c.to_dict() for c in compliance], "verdict": v, "reasons": reasons,
            "timings_ms": {"stage": round(ms_stage, 2), "scene": round(ms_scene, 2),
                           "encode_sign_publish": round((time.perf_counter() - t1) * 1000, 2)},
        })
    return entries


def render_channels(bench: Any, job: Job, source: Source, publish: Publish, finish: Finish,
                    guard: Guard | None = None) -> list[dict[str, Any]]:
    """Every active preset of [renditions], in order."""
    entries: list[dict[str, Any]] = []
    for name in bench.cfg.renditions.active:
        entries += render_preset(bench, name, job, source, publish, finish, guard)
    return entries


def channel_reasons(entries: list[dict[str, Any]]) -> list[str]:
    """Why the product needs review because of its renditions: unpublished files and failed rules."""
    reasons: list[str] = []
    for e in entries:
        label = f"rendition {e['preset']} {e['format']}"
        if not e["output"]:
            reasons.append(f"{label} failed its checks and was not published")
        reasons += [f"{label} {c['name']}: {c['message']}" for c in e["checks"] + e["compliance"] if not c["passed"]]
    return reasons
