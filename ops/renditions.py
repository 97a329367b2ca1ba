"""Channel renditions ([renditions]): the product staged again for each channel preset (web shop,
social, banner, marketplace) at the preset's own size, signed and published like the master."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ops.atomic import write_bytes
from ops.catalog import CatalogRow
from ops.context import StepTimer
from ops.paths import ProductPaths, channel_layer, channel_name
from ops.publish import publish
from ops.record import ChannelRendition
from provenance.iptc import composite_source_type
from stages.check import verdict
from stages.check.compliance import PhotoProblem, check_compliance, photo_problems
from stages.check.pixels import format_pixels
from stages.encode import encode_format, encode_rgba, thumbnail_jpeg
from stages.formats import EXTENSION, mime_type
from stages.layout import Layout, ProductCrop, place_product, uncapped_scale
from stages.load import LoadedImage
from stages.matte import Matte
from stages.pipeline import PIPELINE_VERSION, Brief, Frame, Photo, Variant, matte_crop, stage

if TYPE_CHECKING:
    from ops.config import RenditionPreset
    from ops.workbench import Workbench


@dataclass(frozen=True, eq=False)
class SourcePhoto:
    """The original photo and what its credentials ingredient needs."""

    image: LoadedImage
    data: bytes  # the file's bytes: the parent ingredient
    mime: str
    title: str  # its file name
    thumbnail: bytes  # JPEG, made once per product


@dataclass(frozen=True, eq=False)
class _Staged:
    """One preset staged: what each of its formats is made from."""

    name: str
    preset: RenditionPreset
    variant: Variant
    layout: Layout
    thumbnail: bytes
    timings_ms: dict[str, float]  # stage (layout to thumbnail) and its scene generator's share

    @property
    def blocked(self) -> bool:  # a blocking content check failed: nothing of this preset is published
        return any(c.blocking and not c.passed for c in self.variant.checks)


def render_channels(bench: Workbench, source: SourcePhoto, matte: Matte, brief: Brief, seed: int, row: CatalogRow,
                    paths: ProductPaths, crop: ProductCrop | None = None) -> list[ChannelRendition]:
    """Every active preset, in order, each in each of its formats; a preset whose rules the photo
    cannot meet is withheld (`withhold`) instead of staged.

    `crop`: `stages.layout.product_crop` of the photo and `matte` (the master's `Staging.crop`):
    every preset is laid out from it, so the product's box and its premultiplied pixels are made
    once per product, not once per preset."""
    out: list[ChannelRendition] = []
    for name in bench.cfg.renditions.active:
        preset = bench.cfg.renditions.presets[name]
        t0 = time.perf_counter()
        crop = crop or matte_crop(source.image.rgb, matte, bench.parts.options.layout)
        layout = place_product(source.image.rgb, matte.alpha, bench.parts.options.layout,
                               preset.placement or row.placement, canvas=(preset.width, preset.height), crop=crop)
        if problems := photo_problems(layout, preset.compliance, _uncapped(bench, layout, crop)):
            out += withhold(name, preset, layout, problems, paths, round((time.perf_counter() - t0) * 1000, 2))
            continue
        staged = stage_preset(bench, name, source, matte, brief, seed, row.placement, paths, layout, t0)
        out += [_publish_format(bench, staged, fmt, source, seed, row, paths) for fmt in staged.preset.formats]
    return out


def _uncapped(bench: Workbench, layout: Layout, crop: ProductCrop) -> float:
    """The preset's scale without `max_scale` (only worked out when that cap decided the scale)."""
    p = layout.placement
    if p.limited_by != "max_scale":
        return p.scale
    return uncapped_scale(bench.parts.options.layout, p, layout.size, crop.area)


def withhold(name: str, preset: RenditionPreset, layout: Layout, problems: list[PhotoProblem], paths: ProductPaths,
             layout_ms: float) -> list[ChannelRendition]:
    """A preset the source photo cannot make compliant (`stages.check.compliance.photo_problems`):
    nothing of it is staged, signed or written, and the files an earlier run published for it
    (its renditions in every format, its product layer) are removed, so the publish folder never
    offers a rendition the channel would refuse. Its entries (verdict `withheld`, output None)
    carry the problems; the product's own verdict does not change: no review fixes the photo."""
    for fmt in EXTENSION:
        (paths.folder / channel_name(paths.slug, name, fmt)).unlink(missing_ok=True)
    layer = paths.folder / channel_layer(name)
    layer.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        layer.parent.rmdir()  # only when empty
    return [ChannelRendition(name, fmt, None, [preset.width, preset.height], None, layout.placement.to_dict(), {},
                             [], [], "withheld", [p.why for p in problems], {"layout": layout_ms},
                             photo_problems=list(problems))
            for fmt in preset.formats]


def stage_preset(bench: Workbench, name: str, source: SourcePhoto, matte: Matte, brief: Brief, seed: int,
                 placement: str, paths: ProductPaths, layout: Layout | None = None,
                 t0: float | None = None) -> _Staged:
    """One preset staged on its own canvas, with its product layer written.

    A rendition is never the master squashed or cropped: the product is laid out again from the
    original photo and the master's matte on the preset's canvas (its pixels resampled once, at that
    preset's scale; `layout`: that layout, already made), the scene is generated again for that
    canvas with the primary variant's seed (or, for a `background` preset, the canvas is one flat
    colour), and the product is composited back. The master's content checks run on scenes a
    trained model generated (a flat or procedural backdrop holds nothing new to judge): a blocking
    failure (an NSFW scene) publishes no file of the preset, other failures send the product to
    review. `t0`: when the preset's work began (its layout), for its `stage` timing.
    """
    preset = bench.cfg.renditions.presets[name]
    t0, steps = t0 if t0 is not None else time.perf_counter(), StepTimer()
    frame = Frame(preset.placement or placement, (preset.width, preset.height), preset.background)
    photo = Photo(source.image.rgb, source.image.alpha)
    staging = stage(bench.parts, photo, brief, [seed], frame, matte=matte, layout=layout, checks="trained",
                    timer=steps)
    layout, variant = staging.layout, staging.variants[0]
    write_bytes(paths.folder / channel_layer(name),
                encode_rgba(layout.product_rgb, layout.product_alpha, bench.cfg.write.png_compress_level))
    thumb = thumbnail_jpeg(variant.pixels, bench.cfg.write.thumbnail_px)
    scene_ms = 0.0 if preset.background else steps.ms.get("scene", 0.0)  # a flat colour is no generator
    timings = {"stage": round((time.perf_counter() - t0) * 1000, 2), "scene": round(scene_ms, 2)}
    return _Staged(name, preset, variant, layout, thumb, timings)


def _publish_format(bench: Workbench, staged: _Staged, fmt: str, source: SourcePhoto, seed: int, row: CatalogRow,
                    paths: ProductPaths) -> ChannelRendition:
    """One format of a staged preset: encoded, signed with the source photo as parent, published,
    then judged against the preset's compliance rules."""
    v, layout, preset, cfg = staged.variant, staged.layout, staged.preset, bench.cfg
    entry = ChannelRendition(
        staged.name, fmt, None, [preset.width, preset.height], channel_layer(staged.name),
        layout.placement.to_dict(), {"backend": v.scene.backend, **v.scene.settings}, list(v.checks), [], "", [],
        dict(staged.timings_ms))
    if staged.blocked:  # never signed nor written
        entry.verdict, entry.reasons = verdict(v.checks)
        return entry
    t1 = time.perf_counter()
    settings = {
        "config_digest": cfg.digest(), "pipeline_version": PIPELINE_VERSION, "sku": row.sku, "preset": staged.name,
        "canvas": [preset.width, preset.height], "placement": entry.placement, "scene": v.scene.settings,
        "seed": seed, "format": fmt,
    }
    signed = bench.signer.sign_png(
        encode_format(v.pixels, fmt, cfg.write.jpeg_quality, cfg.write.png_compress_level),
        title=f"{row.title} ({row.sku}) {staged.name}", source_bytes=source.data, source_mime=source.mime,
        source_title=source.title, digital_source_type=composite_source_type(v.scene.trained), settings=settings,
        software_agent=f"product-staging {PIPELINE_VERSION} ({v.scene.backend})", thumbnail=staged.thumbnail,
        source_thumbnail=source.thumbnail, mime=mime_type(fmt),
    )
    out_name = channel_name(paths.slug, staged.name, fmt)
    done = publish(paths.folder / out_name, signed, lambda px: format_pixels(px, layout, cfg.check, fmt),
                   bench.trust_anchors)
    entry.checks += done.checks
    if done.ok:
        entry.output = out_name
        entry.compliance = check_compliance(done.pixels, layout, preset.compliance)
    entry.bytes = len(signed)
    entry.verdict, entry.reasons = verdict(entry.checks + entry.compliance)
    entry.timings_ms["encode_sign_publish"] = round((time.perf_counter() - t1) * 1000, 2)
    return entry
