"""One product through every stage: load, matte, layout, depth, scene, composite, check, sign, write.

Plain Python so that flows, benchmarks and tests run exactly the same code. Backends are
built once per worker in a `Workbench` and reused for every product.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stages import PIPELINE_VERSION
from stages.atomic import staged_file, write_files, write_json
from stages.catalog import CatalogRow
from stages.check import (
    CheckResult, decode_rgb, framing, matte_confidence, product_pixels, rendition_pixels, verdict,
)
from stages.composite import composite
from stages.config import Config
from stages.depth import DepthBackend, make_depth_backend
from stages.errors import StageError, StagingError
from stages.layout import place_product, placement_names
from stages.load import decode_image, mime_type, read_source
from stages.matte import MatteBackend, compute_matte, make_matte_backend
from stages.model_sources import anchor_model_paths
from stages import review as review_q
from stages.guards import Guards
from stages.nsfw import is_quarantined
from stages.selection import marginal, quality, select
from stages.naming import sku_slug
from stages.renditions import Job, Source, channel_reasons, render_channels
from stages.scene import Scene, SceneRequest
from stages.scene_chain import SceneChain, fallback_of
from stages.style import prepare_style, reference_for
from stages.sign import (
    ContentSigner, SignerMaterial, load_signer_material, load_trust_anchors, resolve_callback, verify_file,
)
from stages.write import (
    RENDITION_MIME, encode_png, encode_rendition, encode_rgba, format_copy_name, thumbnail_jpeg,
)

log = logging.getLogger("stages.product")


@dataclass
class Workbench:
    """Backends loaded once per worker process; building one is the expensive part."""

    cfg: Config
    matte: MatteBackend
    depth: DepthBackend
    scene: SceneChain  # the configured backend, then [scene].fallback in order
    signer: ContentSigner
    signer_material: SignerMaterial
    trust_anchors: str | None
    guards: Guards  # prompt safety, NSFW model, expansion and halo checks

    @classmethod
    def build(cls, cfg: Config) -> Workbench:
        material = load_signer_material(cfg.sign)
        if material.is_dev:
            log.warning("signing with development credentials from %s: outputs are NOT trusted", material.origin)
        anchors, _ = load_trust_anchors(cfg.verify)
        models = anchor_model_paths(cfg)  # relative model folders resolve against config.toml
        return cls(
            cfg=cfg,
            matte=make_matte_backend(cfg.matte),
            depth=make_depth_backend(models.depth),
            scene=SceneChain(models.scene),
            signer=ContentSigner(
                material, cfg.sign, sign_callback=resolve_callback(cfg.sign.callback) if cfg.sign.callback else None
            ),
            signer_material=material,
            trust_anchors=anchors,
            guards=Guards.build(cfg),
        )


@dataclass
class RowResult:
    """What a flow needs to know about one product: small, JSON-able, no pixels."""

    row: int
    sku: str
    status: str  # ok | rejected | failed | cached
    verdict: str | None = None
    reasons: list[str] = field(default_factory=list)
    record: str | None = None  # record path relative to the output root
    output: str | None = None
    error: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def variant_seed(row: CatalogRow, variant: int) -> int:
    """The row's seed (plus the variant index) or a stable hash of (sku, variant)."""
    if row.seed is not None:
        return (row.seed + variant) % 2**32
    return int.from_bytes(hashlib.sha256(f"{row.sku}\x00{variant}".encode()).digest()[:4], "big")


def cache_key(row: CatalogRow, source_sha256: str, cfg: Config, reference_sha256: str = "") -> str:
    """Hash of everything that makes the output: a new photo or style reference under the same
    file name changes it as surely as a changed row or config."""
    fields = {k: v for k, v in row.to_dict().items() if k not in ("row", "image", "reference_image")}
    blob = json.dumps([fields, source_sha256, reference_sha256, cfg.digest(), PIPELINE_VERSION], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


class _Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def __call__(self, stage: str):
        timer = self

        class _Ctx:
            def __enter__(self) -> None:
                self.t0 = time.perf_counter()

            def __exit__(self, *exc: object) -> None:
                timer.ms[stage] = round(timer.ms.get(stage, 0.0) + (time.perf_counter() - self.t0) * 1000, 2)

        return _Ctx()


def cached_record(record_path: Path, key: str) -> dict[str, Any] | None:
    """The product's record when it was made with cache key `key` and every file it published
    (the image, its format copies, its channel renditions) is still there; else None."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("cache_key") != key or not record.get("output"):
        return None
    if record.get("scene_fallback"):  # made by a fallback backend: try the configured one again
        return None
    published = [record["output"]] + [
        r["output"] for r in (record.get("renditions") or []) + (record.get("channel_renditions") or [])
        if r.get("output")
    ]
    if not all((record_path.parent / name).is_file() for name in published):
        return None
    return record


def process_row(bench: Workbench, row: CatalogRow, out_root: Path, run_id: str, force: bool = False) -> RowResult:
    """Run every stage for one catalog row. Never raises for a bad product: the result says why."""
    try:
        return _process(bench, row, out_root, run_id, force)
    except StagingError as exc:
        return RowResult(row.row, row.sku, "failed", error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug or an unexpected library error must not stop the batch
        log.exception("row %d (SKU %r) failed unexpectedly", row.row, row.sku)
        return RowResult(row.row, row.sku, "failed", error=f"internal error: {type(exc).__name__}: {exc}")


def _process(bench: Workbench, row: CatalogRow, out_root: Path, run_id: str, force: bool) -> RowResult:
    cfg = bench.cfg
    t = _Timer()
    slug = sku_slug(row.sku)
    folder = out_root / "products" / slug
    record_path = folder / f"{slug}.json"
    if row.placement and row.placement not in placement_names(cfg.layout):
        raise StageError(f"row {row.row} (SKU {row.sku!r}): placement {row.placement!r} is not a placement mode "
                         f"or a [layout.presets] name; known: {placement_names(cfg.layout)}")
    with t("load"):
        data = read_source(row.image, cfg.load)
        source_sha = hashlib.sha256(data).hexdigest()
        reference = reference_for(cfg, row.reference_image)  # read once per worker, then from memory
        key = cache_key(row, source_sha, cfg, reference.sha256 if reference else "")
        # a reviewer's decision holds while the photo and the row are unchanged, even with --force
        if (held := review_q.held_decision(out_root, row, source_sha, record_path)) is not None:
            return RowResult(row.row, row.sku, held.status, verdict=held.verdict, reasons=held.reasons,
                             record=_rel(record_path, out_root),
                             output=_rel(folder / held.output, out_root) if held.output else None, timings_ms=t.ms)
        safety = bench.guards.check_prompts(row.scene_prompt or cfg.scene.default_prompt,
                                            row.negative_prompt or cfg.scene.negative_prompt, row.title, row.category)
        if not safety.ok:  # never generated
            return RowResult(row.row, row.sku, "rejected", verdict="reject",
                             reasons=[f"prompt_safety: {r}" for r in safety.blocked], timings_ms=t.ms)
        if not force and (prev := cached_record(record_path, key)) is not None:
            return RowResult(
                row.row, row.sku, "cached", verdict=prev.get("verdict"), reasons=prev.get("reasons", []),
                record=_rel(record_path, out_root), output=_rel(folder / prev["output"], out_root),
                timings_ms=t.ms,
            )
        image = decode_image(data, cfg.load, name=row.image)
    with t("matte"):
        matte = compute_matte(bench.matte, image.rgb, image.alpha)
    with t("layout"):
        layout = place_product(image.rgb, matte.alpha, cfg.layout, row.placement)
    with t("depth"):
        depth = bench.depth.run(layout, cfg.layout.horizon)
    sku_checks = [framing(layout, cfg.check), matte_confidence(matte.confidence, cfg.matte.studio.min_confidence)]
    prompt, negative = safety.prompt, safety.negative_prompt  # cleaned of control and instruction-like text
    source_ref = row.image if "://" in row.image else _rel(Path(row.image), folder)
    variants: list[dict[str, Any]] = []
    thumbs: dict[int, bytes] = {}  # variant -> JPEG thumbnail of its staged image
    source_thumb: bytes | None = None
    with t("shadow"):  # shadow layer and light estimate: the same for every variant
        style = prepare_style(cfg, layout, depth, image.rgb, matte.alpha, image.alpha)
    requests = [
        SceneRequest(layout, depth, prompt, negative, variant_seed(row, v), cfg.layout.horizon, safety.category, safety.title,
                     reference=reference)
        for v in range(row.variants)
    ]
    with t("scene"):  # backends that batch (diffusers) make all variants on one loaded pipeline
        scenes = bench.scene.generate_many(requests)
    fallback = next((f for s in scenes if (f := fallback_of(s))), None)
    if fallback:
        sku_checks.append(CheckResult(
            "scene_backend", False, 0.0, f"made by {fallback['wanted']}",
            f"scene made by fallback backend {fallback['used']}: " + "; ".join(fallback["reasons"]), False,
        ))
    with t("check"):
        outline = bench.guards.outline(layout)  # the same product outline in every variant
    for v, (request, scene) in enumerate(zip(requests, scenes, strict=True)):
        seed = request.seed
        with t("composite"):
            background, style_settings = style.apply(scene.rgb)
            staged = composite(background, layout)
        with t("check"):  # NSFW, object expansion, halo: on the composited pixels
            guard_checks, guard_details = bench.guards.variant_checks(staged, layout, image.rgb, matte, bench.matte,
                                                                      outline)
        with t("encode"):
            png = encode_png(staged, cfg.write.png_compress_level)
        settings = {
            "sku": row.sku, "variant": v, "seed": seed, "prompt": prompt, "negative_prompt": negative,
            "backends": {"matte": matte.backend, "depth": depth.backend, "scene": scene.backend},
            "scene": scene.settings, "placement": layout.placement.to_dict(),
            "canvas": list(layout.size), **style_settings,
            "reference_image": reference.record() if reference else None,
            "config_digest": cfg.digest(), "pipeline_version": PIPELINE_VERSION,
        }
        with t("sign"):  # one thumbnail per image: in the manifests and in layers/*.jpg
            thumbs[v] = thumbnail_jpeg(staged, cfg.write.thumbnail_px)
            source_thumb = source_thumb or thumbnail_jpeg(image.rgb, cfg.write.thumbnail_px)
            signed = bench.signer.sign_png(
                png, title=f"{row.title} ({row.sku})", source_bytes=data, source_mime=mime_type(image.format),
                source_title=Path(row.image).name, digital_source_type=scene.digital_source_type,
                settings=settings, software_agent=f"product-staging {PIPELINE_VERSION} ({scene.backend})",
                thumbnail=thumbs[v], source_thumbnail=source_thumb,
            )
        stem = slug if v == 0 else f"{slug}-v{v}"
        quarantined = None
        if any(is_quarantined(c) for c in guard_checks):  # never written to the publish folder
            with t("write"):
                quarantined = review_q.quarantine(out_root, slug, f"{stem}.png", signed, {
                    "sku": row.sku, "row": row.row, "variant": v, "seed": seed, "prompt": prompt,
                    "checks": [c.to_dict() for c in guard_checks], "details": guard_details, "run_id": run_id,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds")}, replaces=folder / f"{stem}.png")
            published, checks = False, []
        else:
            published, checks = _publish(bench, folder / f"{stem}.png", signed, t,
                                         lambda px: product_pixels(px, layout, cfg.check))
        checks = guard_checks + checks
        renditions: list[dict[str, Any]] = []
        for fmt in cfg.write.renditions if published else ():
            with t("encode"):
                data_r = encode_rendition(staged, fmt, cfg.write.jpeg_quality)
            with t("sign"):
                signed_r = bench.signer.sign_rendition(
                    data_r, RENDITION_MIME[fmt], title=f"{row.title} ({row.sku}) {fmt}", master=signed,
                    master_title=f"{stem}.png", settings={"sku": row.sku, "variant": v, "format": fmt},
                    software_agent=f"product-staging {PIPELINE_VERSION}",
                    thumbnail=thumbs[v], master_thumbnail=thumbs[v],
                )
            name_r = format_copy_name(stem, fmt)
            ok_r, checks_r = _publish(bench, folder / name_r, signed_r, t,
                                      lambda px, f=fmt: rendition_pixels(px, layout, cfg.check, f == "webp"))
            renditions.append({"format": fmt, "output": name_r if ok_r else None,
                               "checks": [c.to_dict() for c in checks_r]})
        v_verdict, v_reasons = verdict(sku_checks + checks)
        bad_renditions = [r["format"] for r in renditions if not r["output"]]
        if bad_renditions and v_verdict == "pass":
            v_verdict = "review"
        v_reasons += [f"rendition {f} failed its checks and was not published" for f in bad_renditions]
        v_quality = quality(checks, staged, layout, cfg)
        v_verdict, v_reasons = marginal(v_verdict, v_reasons, v_quality["score"], cfg)
        variants.append({
            "index": v, "seed": seed, "output": f"{stem}.png" if published else None, "verdict": v_verdict,
            "reasons": v_reasons, "checks": [c.to_dict() for c in checks], "renditions": renditions,
            "scene": scene.settings, "quality": v_quality, "guards": guard_details, "quarantined": quarantined,
        })
    primary = variants[select(variants)]  # best of N (stages.selection); the others stay in the record
    channels: list[dict[str, Any]] = []
    if primary["output"] and cfg.renditions.active:
        with t("channels"):  # [renditions] presets, staged again at each channel's own size
            channels = _channels(bench, row, image, matte, data, source_thumb, primary["seed"], folder, slug,
                                 prompt, negative, reference, safety.title, safety.category)
        if more := channel_reasons(channels):
            primary["verdict"] = "review" if primary["verdict"] == "pass" else primary["verdict"]
            primary["reasons"] = primary["reasons"] + more
    with t("write"):
        layers, level = folder / "layers", cfg.write.png_compress_level
        files = {
            layers / "matte.png": encode_png(matte.alpha, level),
            layers / "product.png": encode_rgba(layout.product_rgb, layout.product_alpha, level),
            layers / "mask.png": encode_png(layout.mask, level),
            layers / "depth.png": encode_png(depth.depth, level),
            layers / "shadow.png": encode_png(style.shadow.to_png(), level),
            layers / "before.jpg": source_thumb or thumbnail_jpeg(image.rgb, cfg.write.thumbnail_px),
        }
        if primary["output"]:  # the PNG is lossless: its thumbnail is that of the staged pixels
            files[layers / "after.jpg"] = thumbs[primary["index"]]
        write_files(files)  # all durable before the record that lists them
        record = {
            "sku": row.sku, "row": row.row, "title": row.title, "category": row.category,
            "source": source_ref, "source_sha256": source_sha, "source_info": image.info,
            "output": primary["output"], "renditions": primary["renditions"], "product_layer": "layers/product.png", "matte": "layers/matte.png",
            "channel_renditions": channels,
            "mask": "layers/mask.png", "depth": "layers/depth.png", "shadow": "layers/shadow.png",
            "shadow_settings": style.shadow.settings,
            "harmonize": style_settings["harmonize"],
            "reference_image": reference.record() if reference else None,
            "thumbnails": {"before": "layers/before.jpg", "after": "layers/after.jpg" if primary["output"] else None},
            "placement": layout.placement.to_dict(), "canvas": list(layout.size),
            "backends": {
                "load": "pillow", "matte": matte.backend, "depth": depth.backend, "scene": scene.backend,
                "sign": "c2pa-dev" if bench.signer_material.is_dev else "c2pa",
            },
            "scene_fallback": fallback,
            "matte_confidence": matte.confidence, "matte_details": matte.details, "depth_details": depth.details,
            "seed": primary["seed"], "prompt": prompt, "negative_prompt": negative,
            "checks": [c.to_dict() for c in sku_checks] + primary["checks"],
            "verdict": primary["verdict"], "reasons": primary["reasons"], "variants": variants,
            "selected_variant": primary["index"], "prompt_safety": safety.to_dict(), "row_digest": review_q.row_digest(row),
            "timings_ms": t.ms, "cache_key": key, "config_digest": cfg.digest(),
            "pipeline_version": PIPELINE_VERSION, "run_id": run_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(record_path, record)  # written last: its presence means the product is complete
    status = "ok" if primary["output"] else "rejected"
    return RowResult(
        row.row, row.sku, status, verdict=primary["verdict"], reasons=primary["reasons"],
        record=_rel(record_path, out_root),
        output=_rel(folder / primary["output"], out_root) if primary["output"] else None, timings_ms=t.ms,
    )


def _channels(bench: Workbench, row: CatalogRow, image: Any, matte: Any, data: bytes,
              source_thumb: bytes | None, seed: int, folder: Path, slug: str, prompt: str, negative: str,
              reference: Any, title: str, category: str) -> list[dict[str, Any]]:
    """The [renditions] presets of one product (stages.renditions), published like the master."""
    cfg = bench.cfg

    def finish(request: SceneRequest, scene: Scene) -> np.ndarray:  # the master's shadow and harmonisation
        style = prepare_style(cfg, request.layout, request.depth, image.rgb, matte.alpha, image.alpha)
        background, _ = style.apply(scene.rgb)
        return composite(background, request.layout)

    sub = _Timer()  # their write/check times are the record's "channels", not the master's
    job = Job(
        sku=row.sku, title=title, category=category, prompt=prompt, negative_prompt=negative, seed=seed,
        placement=row.placement, folder=folder, stem=slug, reference=reference,
        settings={"config_digest": cfg.digest(), "pipeline_version": PIPELINE_VERSION},
    )
    source = Source(image.rgb, matte.alpha, data, mime_type(image.format), Path(row.image).name,
                    source_thumb or thumbnail_jpeg(image.rgb, cfg.write.thumbnail_px))
    return render_channels(
        bench, job, source, lambda path, blob, check: _publish(bench, path, blob, sub, check), finish,
        lambda staged, lay: bench.guards.variant_checks(staged, lay, image.rgb, matte, bench.matte)[0],
    )


class _Unpublished(Exception):
    """Internal signal: the staged file failed a blocking check and must not be renamed into place."""


def _publish(bench: Workbench, path: Path, data: bytes, t: _Timer,
             pixel_check: Callable[[np.ndarray], CheckResult]) -> tuple[bool, list[CheckResult]]:
    """Write beside `path`, check the written bytes (pixels, credentials), rename only if all pass."""
    checks: list[CheckResult] = []
    try:
        with t("write"), staged_file(path, data) as tmp:
            with t("check"):
                written = tmp.read_bytes()  # what a reader of the published file will get
                checks.append(pixel_check(decode_rgb(written)))
                ver = verify_file(tmp, bench.trust_anchors, written)
                checks.append(CheckResult(
                    "c2pa", ver.ok, 1.0 if ver.ok else 0.0, "valid manifest",
                    "content credentials verify" if ver.ok else "; ".join(ver.failures), True,
                ))
            if not all(c.passed for c in checks):
                raise _Unpublished
    except _Unpublished:
        return False, checks
    return True, checks
