"""One catalog row through the pipeline: read, stage (`stages.pipeline`), sign, publish, record.

Plain Python so that flows, benchmarks and tests run exactly the same code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ops import review
from ops.atomic import write_files, write_json
from ops.cache import cache_key, cached_record
from ops.catalog import CatalogRow
from ops.context import RunContext, StepTimer
from ops.cost import product_cost
from ops.objectstore import store_for
from ops.errors import EXPECTED, is_transient
from ops.fetch import shown
from ops.paths import ProductPaths, image_name, variant_stem
from ops.publish import publish
from ops.record import ChannelRendition, FormatCopy, VariantOutcome, now, photo_problems
from ops.renditions import SourcePhoto, render_channels
from ops.sources import reference_for, read_source
from ops.state import state_for
from ops.stop import STOP, RunStopped
from ops.store_products import publish_product, remote_record, withdraw_product
from ops.triage import review_marks
from ops.usage import Usage, product_usage
from ops.workbench import Workbench
from provenance.iptc import composite_source_type
from stages.check import CheckResult, verdict
from stages.check.nsfw import is_quarantined
from stages.check.pixels import cropped, format_pixels, framing, matte_confidence, product_pixels
from stages.check.prompt_safety import PromptCheck
from stages.encode import encode_format, encode_png, encode_rgba, thumbnail_jpeg
from stages.errors import StageError
from stages.formats import mime_type
from stages.layout import Layout, placement_names
from stages.load import decode_image
from stages.pipeline import PIPELINE_VERSION, Brief, Frame, Photo, Staging, Variant, stage
from stages.scene.chain import fallback_of
from stages.selection import marginal, quality, select

log = logging.getLogger("ops.runner")


@dataclass
class RowResult:
    """What a flow needs to know about one product: small, JSON-able, no pixels."""

    row: int
    sku: str
    status: str  # ok | rejected | failed | cached | stopped (the run stopped before the product was done)
    verdict: str | None = None
    reasons: list[str] = field(default_factory=list)
    record: str | None = None  # record path relative to the output root
    output: str | None = None
    error: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    cost: dict[str, Any] | None = None  # ops.cost.product_cost of timings_ms; None when nothing was staged
    photo_problems: list[dict[str, Any]] = field(default_factory=list)  # renditions withheld (ops.record.photo_problems)
    marks: dict[str, Any] | None = None  # where to look, for a review (ops.triage.review_marks)
    transient: bool = False  # failed for a reason that may pass: the run tries the row again (not serialised)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "transient"}


def variant_seed(row: CatalogRow, variant: int) -> int:
    """The row's seed (plus the variant index) or a stable hash of (sku, variant)."""
    if row.seed is not None:
        return (row.seed + variant) % 2**32
    return int.from_bytes(hashlib.sha256(f"{row.sku}\x00{variant}".encode()).digest()[:4], "big")


def process_row(bench: Workbench, row: CatalogRow, ctx: RunContext) -> RowResult:
    """Run every step for one catalog row. Never raises for a bad product: the result says why."""
    try:
        return _process(bench, row, ctx)
    except RunStopped as exc:
        return RowResult(row.row, row.sku, "stopped", error=str(exc))
    except EXPECTED as exc:
        return RowResult(row.row, row.sku, "failed", error=f"{type(exc).__name__}: {exc}", transient=is_transient(exc))
    except Exception as exc:  # a bug or an unexpected library error must not stop the batch
        log.exception("row %d (SKU %r) failed unexpectedly", row.row, row.sku)
        return RowResult(row.row, row.sku, "failed", error=f"internal error: {type(exc).__name__}: {exc}",
                         transient=is_transient(exc))


@dataclass(eq=False)
class _Product:
    """One product on its way through `_process`: what every later step reads."""

    row: CatalogRow
    paths: ProductPaths
    ctx: RunContext
    timer: StepTimer
    data: bytes  # the source photo's bytes
    key: str  # the cache key
    safety: PromptCheck
    reference: Any  # the row's style reference (stages.scene.ReferenceImage) or None
    source: SourcePhoto = None  # type: ignore[assignment]  # set once the photo is decoded
    staging: Staging = None  # type: ignore[assignment]  # set once the product is staged
    thumbs: dict[int, bytes] = field(default_factory=dict)  # variant -> JPEG thumbnail of its image
    usage: Usage = field(default_factory=Usage)  # set once the channels are made: what `cost` prices

    @property
    def layout(self) -> Layout:
        return self.staging.layout


def _process(bench: Workbench, row: CatalogRow, ctx: RunContext) -> RowResult:
    cfg, t, paths = bench.cfg, StepTimer(), ProductPaths.of(ctx.out_root, row.sku)
    if row.placement and row.placement not in placement_names(cfg.layout):
        raise StageError(f"row {row.row} (SKU {row.sku!r}): placement {row.placement!r} is not a placement mode "
                         f"or a [layout.presets] name; known: {placement_names(cfg.layout)}")
    with t("load"):
        data = read_source(row.image, cfg.load)
        source_sha = hashlib.sha256(data).hexdigest()
        reference = reference_for(cfg, row.reference_image)  # read once per worker
        key = cache_key(row, source_sha, cfg.digest(), reference.sha256 if reference else "")
        done = _decided(bench, row, paths, source_sha, key, ctx, t)
        if isinstance(done, RowResult):
            return done
        p = _Product(row, paths, ctx, t, data, key, done, reference)
        image = decode_image(data, cfg.load, name=row.image)
    title = Path(urllib.parse.urlsplit(row.image).path).name if "://" in row.image else Path(row.image).name
    p.source = SourcePhoto(image, data, mime_type(image.format), title, thumbnail_jpeg(image.rgb, cfg.write.thumbnail_px))
    brief = Brief(p.safety.prompt, p.safety.negative_prompt, p.safety.title, p.safety.category, reference)
    seeds = [variant_seed(row, v) for v in range(row.variants)]
    p.staging = stage(bench.parts, Photo(image.rgb, image.alpha), brief, seeds, Frame(row.placement), timer=t)
    sku_checks = _sku_checks(bench, p.staging)
    with STOP.publishing():  # from the first file to the record: a stopping run never cuts this short
        variants = [_publish_variant(bench, p, v, i, sku_checks) for i, v in enumerate(p.staging.variants)]
        primary = variants[select(variants)]  # best of N (stages.selection); the others stay in the record
        channels = []
        if primary.output and cfg.renditions.active:
            with t("channels"):  # [renditions] presets, staged again at each channel's own size
                channels = render_channels(bench, p.source, p.staging.matte, brief, primary.seed, row, paths,
                                           p.staging.crop)
            if more := [reason for c in channels for reason in c.problems()]:
                primary.verdict = "review" if primary.verdict == "pass" else primary.verdict
                primary.reasons = primary.reasons + more
        p.usage = product_usage(bench.parts, p.staging, channels)
        record = _write_product(bench, p, variants, primary, sku_checks, channels)
        if ctx.output_url:  # the record last, after every file it lists (ops.store_products)
            with t("upload"):
                publish_product(store_for(bench.cfg.storage, ctx.output_url), ctx.out_root, paths.slug,
                                [v.quarantined for v in variants if v.quarantined])
    return RowResult(
        row.row, row.sku, "ok" if primary.output else "rejected", verdict=primary.verdict, reasons=primary.reasons,
        record=paths.rel(paths.record), output=paths.rel(paths.folder / primary.output) if primary.output else None,
        timings_ms=t.ms, cost=_cost(bench, p.usage, t.ms), photo_problems=photo_problems(channels),
        marks=review_marks(record),
    )


def _cost(bench: Workbench, usage: Usage, timings_ms: dict[str, float]) -> dict[str, Any]:
    return product_cost(timings_ms, usage.gpu_ms(timings_ms), usage.calls, bench.cfg.cost)


def _decided(bench: Workbench, row: CatalogRow, paths: ProductPaths, source_sha: str, key: str, ctx: RunContext,
             t: StepTimer) -> RowResult | PromptCheck:
    """A result without staging, when one is due (a reviewer's decision that still holds, a blocked
    prompt, an unchanged product); else the row's cleaned prompts."""
    cfg, rel = bench.cfg, paths.rel
    # a reviewer's decision holds while the photo and the row are unchanged, even with --force
    if (held := review.held_decision(ctx.out_root, row, source_sha, paths.record, state_for(ctx))) is not None:
        if ctx.output_url and held.status == "rejected":
            with t("upload"):  # the store's copy is the published one
                withdraw_product(store_for(bench.cfg.storage, ctx.output_url), paths.slug)
        return RowResult(row.row, row.sku, held.status, verdict=held.verdict, reasons=held.reasons,
                         record=rel(paths.record), output=rel(paths.folder / held.output) if held.output else None,
                         timings_ms=t.ms, photo_problems=held.photo_problems)
    safety = bench.prompts.check(row.scene_prompt or cfg.scene.default_prompt,
                                 row.negative_prompt or cfg.scene.negative_prompt, row.title, row.category)
    if not safety.ok:  # never generated
        return RowResult(row.row, row.sku, "rejected", verdict="reject",
                         reasons=[f"prompt_safety: {r}" for r in safety.blocked], timings_ms=t.ms,
                         cost=_cost(bench, Usage(), t.ms))
    if not ctx.force and (prev := _current(bench, ctx, paths, key, t)) is not None:
        return RowResult(row.row, row.sku, "cached", verdict=prev.get("verdict"), reasons=prev.get("reasons", []),
                         record=rel(paths.record), output=rel(paths.folder / prev["output"]), timings_ms=t.ms,
                         photo_problems=prev.get("photo_problems") or [], marks=review_marks(prev))
    if not ctx.force and ctx.output_url and (staged := cached_record(paths.record, key)) is not None:
        return _upload_staged(bench, row, paths, staged, ctx, t)
    return safety


def _upload_staged(bench: Workbench, row: CatalogRow, paths: ProductPaths, record: dict[str, Any],
                   ctx: RunContext, t: StepTimer) -> RowResult:
    """Publish a product already staged in this worker's scratch folder for the same cache key
    but not in the store (its upload failed: the row's retry, or the next run on this worker)
    instead of staging it again: the files are the ones that passed their checks and were
    signed, and `publish_product` verifies each upload as it would have. The result is `ok`, as
    this run published it, with the staging's verdict and cost from the record."""
    held = [v["quarantined"] for v in record.get("variants") or [] if v.get("quarantined")]
    with STOP.publishing(), t("upload"):
        publish_product(store_for(bench.cfg.storage, ctx.output_url), ctx.out_root, paths.slug, held)
    return RowResult(row.row, row.sku, "ok", verdict=record.get("verdict"), reasons=record.get("reasons", []),
                     record=paths.rel(paths.record), output=paths.rel(paths.folder / record["output"]),
                     timings_ms=t.ms, cost=record.get("cost"), photo_problems=record.get("photo_problems") or [],
                     marks=review_marks(record))


def _current(bench: Workbench, ctx: RunContext, paths: ProductPaths, key: str, t: StepTimer) -> dict[str, Any] | None:
    """The product's record when its output is current (`ops.cache`): for an object-store output the
    store's record and objects (`ops.store_products.remote_record`), not the scratch folder's."""
    if not ctx.output_url:
        return cached_record(paths.record, key)
    with t("store_check"):
        return remote_record(store_for(bench.cfg.storage, ctx.output_url), paths.slug, key)


def _sku_checks(bench: Workbench, staging: Staging) -> list[CheckResult]:
    """The product's own checks, the same for every variant: framing, whether the photo crops the
    product, the cut-out's confidence, and whether its scenes came from a fallback backend."""
    checks = [framing(staging.layout, bench.cfg.check),
              cropped(staging.matte.alpha, bench.cfg.check.max_edge_contact),
              matte_confidence(staging.matte.confidence, bench.cfg.matte.min_confidence,
                               staging.matte.details.get("reasons", []))]
    fallback = next((f for v in staging.variants if (f := fallback_of(v.scene))), None)
    if fallback:
        checks.append(CheckResult(
            "scene_backend", False, 0.0, f"made by {fallback['wanted']}",
            f"scene made by fallback backend {fallback['used']}: " + "; ".join(fallback["reasons"]), False,
        ))
    return checks


def _publish_variant(bench: Workbench, p: _Product, v: Variant, index: int,
                     sku_checks: list[CheckResult]) -> VariantOutcome:
    """Encode, sign and publish one variant (or quarantine it), then its format copies; its verdict."""
    cfg, t, layout = bench.cfg, p.timer, p.layout
    stem = variant_stem(p.paths.slug, index)
    with t("encode"):
        png = encode_png(v.pixels, cfg.write.png_compress_level)
    with t("sign"):  # one thumbnail per image: in the manifests and in layers/*.jpg
        p.thumbs[index] = thumbnail_jpeg(v.pixels, cfg.write.thumbnail_px)
        signed = bench.signer.sign_png(
            png, title=f"{p.row.title} ({p.row.sku})", source_bytes=p.data, source_mime=p.source.mime,
            source_title=p.source.title, digital_source_type=composite_source_type(v.scene.trained),
            settings=_settings(bench, p, v, index), thumbnail=p.thumbs[index], source_thumbnail=p.source.thumbnail,
            software_agent=f"product-staging {PIPELINE_VERSION} ({v.scene.backend})",
        )
    quarantined, checks, copies = None, list(v.checks), []
    if any(is_quarantined(c) for c in v.checks):  # never written to the publish folder
        with t("write"):
            quarantined = review.quarantine(p.ctx.out_root, p.paths.slug, image_name(stem, "png"), signed, {
                "sku": p.row.sku, "row": p.row.row, "variant": index, "seed": v.seed, "prompt": p.safety.prompt,
                "checks": [c.to_dict() for c in v.checks], "details": v.details, "run_id": p.ctx.run_id,
                "created_at": now()}, replaces=p.paths.folder / image_name(stem, "png"))
        published = False
    else:
        done = publish(p.paths.folder / image_name(stem, "png"), signed,
                       lambda px: product_pixels(px, layout, cfg.check), bench.trust_anchors, t)
        published, checks = done.ok, checks + done.checks
        if published:
            copies = [_format_copy(bench, p, v.pixels, index, signed, fmt) for fmt in cfg.write.format_copies]
    outcome = VariantOutcome(index, v.seed, image_name(stem, "png") if published else None, "", [], checks, copies,
                             v.scene.settings, {}, v.details, quarantined)
    _judge(bench, outcome, v, layout, sku_checks)
    return outcome


def _judge(bench: Workbench, outcome: VariantOutcome, v: Variant, layout: Layout,
           sku_checks: list[CheckResult]) -> None:
    """The variant's verdict and reasons, and its quality score (a marginal one goes to review)."""
    cfg = bench.cfg
    verdict_, reasons = verdict(sku_checks + outcome.checks)
    bad = [c.format for c in outcome.format_copies if not c.output]
    if bad and verdict_ == "pass":
        verdict_ = "review"
    reasons += [f"rendition {f} failed its checks and was not published" for f in bad]
    outcome.quality = quality(outcome.checks, v.pixels, layout, cfg.fidelity.expansion_limit,
                              cfg.fidelity.halo_limit, cfg.nsfw.threshold)
    outcome.verdict, outcome.reasons = marginal(verdict_, reasons, outcome.score, cfg.fidelity.review_quality)


def _format_copy(bench: Workbench, p: _Product, pixels: np.ndarray, index: int, master: bytes,
                 fmt: str) -> FormatCopy:
    """A signed JPEG/WebP copy of the master with the master as its parent ingredient, published like it."""
    cfg, t, layout = bench.cfg, p.timer, p.layout
    stem = variant_stem(p.paths.slug, index)
    with t("encode"):
        data = encode_format(pixels, fmt, cfg.write.jpeg_quality)
    with t("sign"):
        signed = bench.signer.sign_rendition(
            data, mime_type(fmt), title=f"{p.row.title} ({p.row.sku}) {fmt}", master=master,
            master_title=image_name(stem, "png"), settings={"sku": p.row.sku, "variant": index, "format": fmt},
            software_agent=f"product-staging {PIPELINE_VERSION}", thumbnail=p.thumbs[index],
            master_thumbnail=p.thumbs[index],
        )
    name = image_name(stem, fmt)
    done = publish(p.paths.folder / name, signed, lambda px: format_pixels(px, layout, cfg.check, fmt),
                   bench.trust_anchors, t)
    return FormatCopy(fmt, name if done.ok else None, done.checks)


def _settings(bench: Workbench, p: _Product, v: Variant, index: int) -> dict[str, Any]:
    """Every generation setting of one variant: its C2PA settings assertion.

    With `row` (the catalog row without its machine-local paths: the fields its cache key hashes)
    and `config` (the output-affecting tables as canonical JSON, whose hash is `config_digest`),
    `stage reproduce` can stage the variant again from the image alone (ops/reproduce.py)."""
    staging = p.staging
    return {
        "row": _row_settings(p.row),
        "config": bench.cfg.output_json(),
        "sku": p.row.sku, "variant": index, "seed": v.seed, "prompt": p.safety.prompt,
        "negative_prompt": p.safety.negative_prompt,
        "backends": {"matte": staging.matte.backend, "depth": staging.depth.backend, "scene": v.scene.backend},
        "scene": v.scene.settings, "placement": staging.layout.placement.to_dict(),
        "canvas": list(staging.layout.size), **v.look,
        "reference_image": p.reference.record() if p.reference else None,
        "config_digest": bench.cfg.digest(), "pipeline_version": PIPELINE_VERSION,
    }


def _row_settings(row: CatalogRow) -> dict[str, Any]:
    """The row as its credentials record it: no line number and no paths (they are this machine's)."""
    return {k: v for k, v in row.to_dict().items() if k not in ("row", "image", "reference_image")}


def _write_product(bench: Workbench, p: _Product, variants: list[VariantOutcome], primary: VariantOutcome,
                   sku_checks: list[CheckResult], channels: list[ChannelRendition]) -> dict[str, Any]:
    """The audit layers, then the record: written last, its presence means the product is complete.
    Returns the record."""
    staging, level = p.staging, bench.cfg.write.png_compress_level
    layers = p.paths.layers
    with p.timer("write"):
        files = {
            layers / "matte.png": encode_png(staging.matte.alpha, level),
            layers / "product.png": encode_rgba(staging.layout.product_rgb, staging.layout.product_alpha, level),
            layers / "mask.png": encode_png(staging.layout.mask, level),
            layers / "depth.png": encode_png(staging.depth.depth, level),
            layers / "shadow.png": encode_png(staging.style.shadow.to_png(), level),
            layers / "before.jpg": p.source.thumbnail,
        }
        if primary.output:  # the PNG is lossless: its thumbnail is that of the staged pixels
            files[layers / "after.jpg"] = p.thumbs[primary.index]
        write_files(files)  # all durable before the record that lists them
        record = product_record(bench, p, variants, primary, sku_checks, channels)
        write_json(p.paths.record, record)
    return record


def product_record(bench: Workbench, p: _Product, variants: list[VariantOutcome], primary: VariantOutcome,
                   sku_checks: list[CheckResult], channels: list[ChannelRendition]) -> dict[str, Any]:
    """The product's JSON record: its row, source, layers, backends, checks, verdict and every variant."""
    cfg, staging, row, image = bench.cfg, p.staging, p.row, p.source.image
    chosen = staging.variants[primary.index]
    source = shown(row.image) if "://" in row.image else os.path.relpath(Path(row.image), p.paths.folder)
    return {
        "sku": row.sku, "row": row.row, "title": row.title, "category": row.category,
        "source": source, "source_sha256": hashlib.sha256(p.data).hexdigest(), "source_info": image.info,
        "output": primary.output, "format_copies": [c.to_dict() for c in primary.format_copies],
        "renditions": [c.to_dict() for c in channels],
        "product_layer": "layers/product.png", "matte": "layers/matte.png", "mask": "layers/mask.png",
        "depth": "layers/depth.png", "shadow": "layers/shadow.png",
        "shadow_settings": staging.style.shadow.settings, "harmonize": chosen.look.get("harmonize"),
        "reference_image": p.reference.record() if p.reference else None,
        "thumbnails": {"before": "layers/before.jpg", "after": "layers/after.jpg" if primary.output else None},
        "placement": staging.layout.placement.to_dict(), "canvas": list(staging.layout.size),
        "backends": {
            "load": "pillow", "matte": staging.matte.backend, "depth": staging.depth.backend,
            "scene": chosen.scene.backend, "sign": "c2pa-dev" if bench.signer_material.is_dev else "c2pa",
        },
        "scene_fallback": next((f for v in staging.variants if (f := fallback_of(v.scene))), None),
        "matte_confidence": staging.matte.confidence, "matte_details": staging.matte.details,
        "depth_details": staging.depth.details,
        "seed": primary.seed, "prompt": p.safety.prompt, "negative_prompt": p.safety.negative_prompt,
        "checks": [c.to_dict() for c in sku_checks + primary.checks],
        "verdict": primary.verdict, "reasons": primary.reasons, "photo_problems": photo_problems(channels),
        "variants": [v.to_dict() for v in variants],
        "selected_variant": primary.index, "prompt_safety": p.safety.to_dict(), "row_digest": review.row_digest(row),
        "timings_ms": dict(p.timer.ms), "cost": _cost(bench, p.usage, p.timer.ms), "cache_key": p.key,
        "config_digest": cfg.digest(),
        "pipeline_version": PIPELINE_VERSION, "run_id": p.ctx.run_id, "created_at": now(),
    }
