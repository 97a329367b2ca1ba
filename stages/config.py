"""Pipeline configuration: `config.toml` parsed once into frozen dataclasses.

Every table is validated when it is read, so a typo or a wrong type fails the run
before the first image is touched, naming the table, the key and the bad value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from stages.errors import ConfigError


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = "outputs"
    batch_size: int = 32
    workers: int = 2
    max_variants: int = 8


@dataclass(frozen=True)
class ScheduleConfig:
    """When the `nightly` deployment runs (prefect.yaml must agree: `stage deploy --check`)."""

    cron: str = "0 2 * * *"
    timezone: str = "UTC"


@dataclass(frozen=True)
class LoadConfig:
    max_pixels: int = 40_000_000
    max_bytes: int = 50_000_000
    min_side: int = 64
    allowed_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "MPO")
    url_timeout_s: float = 20.0


@dataclass(frozen=True)
class StudioMatteConfig:
    border_px: int = 6
    shadows: Literal["remove", "keep"] = "remove"
    min_confidence: float = 0.5


@dataclass(frozen=True)
class RembgMatteConfig:
    model: str = "isnet-general-use"
    alpha_matting: bool = False


@dataclass(frozen=True)
class MatteConfig:
    backend: str = "studio"
    studio: StudioMatteConfig = field(default_factory=StudioMatteConfig)
    rembg: RembgMatteConfig = field(default_factory=RembgMatteConfig)


@dataclass(frozen=True)
class PlacementPreset:
    """A named placement ([layout.presets.<name>]): a mode plus the layout keys it overrides."""

    placement: str = "center"  # center | floor | thirds | fixed | coverage (stages.layout)
    margin: float | None = None  # None: the [layout] value
    floor: float | None = None
    max_scale: float | None = None
    thirds: Literal["left", "right"] | None = None
    box: tuple[float, ...] | None = None
    coverage: float | None = None


@dataclass(frozen=True)
class LayoutConfig:
    width: int = 1024
    height: int = 1024
    margin: float = 0.10
    floor: float = 0.08
    # center | floor | thirds | fixed | coverage, or a [layout.presets] name (stages.layout)
    placement: str = "floor"
    max_scale: float = 2.0
    horizon: float = 0.62
    thirds: Literal["left", "right"] = "left"  # thirds: which vertical third line
    box: tuple[float, ...] = (0.2, 0.2, 0.8, 0.8)  # fixed: left, top, right, bottom (canvas fractions)
    coverage: float = 0.35  # coverage: product area / canvas area
    presets: dict[str, PlacementPreset] = field(default_factory=dict)


@dataclass(frozen=True)
class ControlnetAuxDepthConfig:
    detector: Literal["midas", "zoe"] = "midas"
    model: str = "lllyasviel/Annotators"
    filename: str = ""


@dataclass(frozen=True)
class TransformersDepthConfig:
    model: str = "depth-anything/Depth-Anything-V2-Small-hf"  # hub id or local folder
    revision: str = ""  # branch, tag or commit; empty: main
    values: Literal["auto", "disparity", "distance"] = "auto"  # what the model predicts: large = near | far
    device: Literal["auto", "cuda", "cpu"] = "auto"


@dataclass(frozen=True)
class DepthConfig:
    backend: str = "geometric"
    controlnet_aux: ControlnetAuxDepthConfig = field(default_factory=ControlnetAuxDepthConfig)
    transformers: TransformersDepthConfig = field(default_factory=TransformersDepthConfig)


@dataclass(frozen=True)
class StudioSceneConfig:
    wall_color: str = "#e9e4dc"
    floor_color: str = ""
    grain: float = 1.5


# Scheduler names the diffusers scene backends accept (stages.scene_diffusers.SCHEDULERS maps them).
SchedulerName = Literal["dpmpp_2m_karras", "dpmpp_2m", "euler_a", "euler", "ddim", "unipc"]


@dataclass(frozen=True)
class LoraConfig:
    path: str = ""  # local .safetensors file, folder, or hub id
    scale: float = 1.0
    weight_name: str = ""  # file inside a folder or hub repo; empty: the library's default


@dataclass(frozen=True)
class DiffusersSceneConfig:
    """Shared by the diffusers scene backends; each backend has its own table and defaults."""

    model: str = ""  # inpainting pipeline: hub id or local folder (with model_index.json)
    revision: str = ""  # branch, tag or commit of a hub model; empty: main
    controlnet: str = ""  # depth ControlNet: hub id or local folder
    controlnet_revision: str = ""
    vae: str = ""  # optional VAE override: hub id or local folder; empty: the pipeline's own
    vae_revision: str = ""
    loras: tuple[LoraConfig, ...] = ()
    scheduler: SchedulerName = "dpmpp_2m_karras"
    steps: int = 30
    guidance_scale: float = 7.0
    controlnet_conditioning_scale: float = 0.6
    strength: float = 0.99  # int(steps * strength) denoising steps run
    prompt_template: str = "{prompt}"  # fields: {prompt}, {category}, {title} (stages.prompts)
    max_side: int = 0  # generate at most this many pixels on the long side, then resize; 0: the canvas
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"  # float16 runs as float32 on a CPU
    device: Literal["auto", "cuda", "cpu"] = "auto"
    model_cpu_offload: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    batch_size: int = 1  # images per pipeline call when several are asked at once
    prompt_cache: int = 32  # text embeddings kept per backend (LRU); 0: encode every time
    fuse_qkv: bool = False  # fused attention projections (UNet, ControlNet, VAE)
    channels_last: bool = False  # channels-last memory format for the convolutions
    compile: bool = False  # torch.compile the UNet and ControlNet (minutes on the first image)
    # IP-Adapter: a reference image (row `reference_image` or [scene].reference_image) steers the look.
    ip_adapter: str = ""  # hub id or local folder holding the adapter weights; empty: no adapter
    ip_adapter_subfolder: str = ""
    ip_adapter_weight_name: str = ""
    image_encoder: str = ""  # CLIP vision encoder folder or hub id; empty: `image_encoder` beside the weights
    ip_adapter_scale: float = 0.6


@dataclass(frozen=True)
class DiffusersSdxlSceneConfig(DiffusersSceneConfig):
    model: str = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
    controlnet: str = "diffusers/controlnet-depth-sdxl-1.0"
    vae: str = "madebyollin/sdxl-vae-fp16-fix"  # the stock SDXL VAE overflows in float16
    guidance_scale: float = 7.0
    ip_adapter_subfolder: str = "sdxl_models"
    ip_adapter_weight_name: str = "ip-adapter_sdxl.safetensors"
    controlnet_conditioning_scale: float = 0.5


@dataclass(frozen=True)
class DiffusersSd15SceneConfig(DiffusersSceneConfig):
    model: str = "stable-diffusion-v1-5/stable-diffusion-inpainting"
    controlnet: str = "lllyasviel/control_v11f1p_sd15_depth"
    guidance_scale: float = 7.5
    controlnet_conditioning_scale: float = 0.8
    max_side: int = 768  # SD 1.5 was trained at 512 px; larger canvases are generated smaller
    ip_adapter_subfolder: str = "models"
    ip_adapter_weight_name: str = "ip-adapter_sd15.safetensors"
    safety_checker: bool = True  # when the model ships one: a flagged image fails the product


@dataclass(frozen=True)
class SceneConfig:
    backend: str = "studio"
    # Backends tried in order when `backend` cannot load its models or runs out of memory on a
    # product, e.g. ["diffusers-sd15", "studio"]. Outputs they make name them and go to review.
    fallback: tuple[str, ...] = ()
    default_prompt: str = "clean studio backdrop, soft light"
    negative_prompt: str = "text, watermark, logo, people"
    reference_image: str = ""  # default style reference (relative to config.toml); a row's own wins
    studio: StudioSceneConfig = field(default_factory=StudioSceneConfig)
    diffusers_sdxl: DiffusersSdxlSceneConfig = field(default_factory=DiffusersSdxlSceneConfig)
    diffusers_sd15: DiffusersSd15SceneConfig = field(default_factory=DiffusersSd15SceneConfig)


@dataclass(frozen=True)
class ShadowConfig:
    """Contact and cast shadow laid onto every backend's background (stages.shadow)."""

    enabled: bool = True
    azimuth: float = 0.0  # degrees: 0 = shadow falls straight back, 90 = to the right, -90 = to the left
    elevation: float = 50.0  # light height in degrees: lower = longer shadow; 90 = contact shadow only
    softness: float = 0.035  # blur as a fraction of the canvas width (grows toward the shadow's tip)
    intensity: float = 0.30  # cast shadow opacity, 0..1
    contact: float = 0.55  # contact shadow opacity where the product meets the floor, 0..1
    colour: str = "#000000"  # the colour the background is darkened toward


@dataclass(frozen=True)
class HarmonizeConfig:
    """Colour harmonisation of the background toward the product photo's light (stages.harmonize)."""

    enabled: bool = False
    strength: float = 0.5  # 0..1: share of the colour-cast difference removed


@dataclass(frozen=True)
class CheckConfig:
    pixel_tolerance: int = 0
    core_alpha: int = 255
    min_coverage: float = 0.02
    max_coverage: float = 0.90
    lossy_mean_tolerance: float = 4.0


@dataclass(frozen=True)
class SafetyConfig:
    """Prompt safety before generation (stages.prompt_safety)."""

    max_prompt_chars: int = 400  # longer prompts (after clean-up) reject the row
    blocklist: tuple[str, ...] = ()  # words or phrases; a prompt, title or category holding one rejects the row
    blocklist_file: str = ""  # one term a line ('#' comments), relative to config.toml; adds to `blocklist`


@dataclass(frozen=True)
class TransformersNsfwConfig:
    model: str = "Falconsai/nsfw_image_detection"  # image-classification model: hub id or local folder
    revision: str = ""
    nsfw_labels: tuple[str, ...] = ("nsfw", "porn", "hentai", "sexy", "explicit")  # summed into the score
    device: Literal["auto", "cuda", "cpu"] = "auto"


@dataclass(frozen=True)
class NsfwConfig:
    backend: str = "opennsfw"  # opennsfw (embedded Yahoo open_nsfw ONNX) | transformers
    threshold: float = 0.5  # at or above: quarantined, never published
    review_threshold: float = 0.3  # at or above (below threshold): published, sent to review
    threads: int = 0  # opennsfw: onnxruntime threads per worker; 0: one per core
    transformers: TransformersNsfwConfig = field(default_factory=TransformersNsfwConfig)


@dataclass(frozen=True)
class FidelityConfig:
    """Object expansion and halo checks (stages.fidelity); sizes are shares of the product's size."""

    expansion: Literal["auto", "heuristic", "resegment", "off"] = "auto"  # auto: resegment with a learned matte
    band: float = 0.08  # width of the band judged around the product
    rim: float = 0.004  # anti-aliased rim next to the outline, never judged
    min_area: float = 0.0002  # a grown region smaller than this share of size^2 is noise
    likeness: float = 0.7  # product-like: distance to the edge colour <= likeness x distance to the scene
    min_contrast: float = 32.0  # RGB distance below which two colours cannot be told apart
    expansion_limit: float = 0.01  # farthest reach of grown product beyond the rim, share of the product size
    halo_width: float = 0.006  # rim judged for a backdrop fringe
    halo_limit: float = 0.3  # share of judged rim pixels in the old backdrop colour
    blocking: bool = False  # false: a failed check sends the image to review; true: rejects it
    review_quality: float = 0.5  # a selected variant scoring below this goes to review


@dataclass(frozen=True)
class SignConfig:
    cert_chain_env: str = "STAGE_SIGN_CERT_CHAIN"
    private_key_env: str = "STAGE_SIGN_PRIVATE_KEY"
    tsa_url: str = ""
    callback: str = ""  # "module:function" that signs bytes with a KMS/HSM key (no private key file then)
    claim_generator: str = "product-staging"
    training_mining: Literal["allowed", "notAllowed", "constrained"] = "notAllowed"


@dataclass(frozen=True)
class VerifyConfig:
    trust_anchors_env: str = "STAGE_TRUST_ANCHORS"


@dataclass(frozen=True)
class WriteConfig:
    png_compress_level: int = 1
    thumbnail_px: int = 256
    renditions: tuple[Literal["jpeg", "webp"], ...] = ("jpeg",)
    jpeg_quality: int = 92


@dataclass(frozen=True)
class ComplianceRules:
    """Marketplace rules a channel rendition is checked against (stages.compliance); failures go to review."""

    background: str = ""  # "#ffffff": the background must be this colour; "": not checked
    background_tolerance: int = 3  # levels per channel a background pixel may differ from it
    background_share: float = 0.995  # share of the background that must be within the tolerance
    max_background_std: float = 0.0  # std-dev of the background's luminance; 0: not checked
    min_fill: float = 0.0  # product box / frame along its fuller side (0.85: "fills 85% of the image")
    min_side: int = 0  # the image's long side in pixels
    no_text: bool = False  # no text or watermark strokes outside the product's own pixels


@dataclass(frozen=True)
class RenditionPreset:
    """A channel rendition ([renditions.presets.<name>]): re-laid out and re-staged at its own size."""

    width: int = 1024
    height: int = 1024
    formats: tuple[Literal["png", "jpeg", "webp"], ...] = ("png",)
    placement: str = ""  # a placement mode or [layout.presets] name; "": the row's / [layout] placement
    background: str = ""  # "#ffffff": a flat colour and no scene; "": the scene backend makes one
    compliance: ComplianceRules = field(default_factory=ComplianceRules)


@dataclass(frozen=True)
class RenditionsConfig:
    active: tuple[str, ...] = ()  # presets made for every product
    presets: dict[str, RenditionPreset] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    matte: MatteConfig = field(default_factory=MatteConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    shadow: ShadowConfig = field(default_factory=ShadowConfig)
    harmonize: HarmonizeConfig = field(default_factory=HarmonizeConfig)
    check: CheckConfig = field(default_factory=CheckConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    nsfw: NsfwConfig = field(default_factory=NsfwConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    sign: SignConfig = field(default_factory=SignConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    write: WriteConfig = field(default_factory=WriteConfig)
    renditions: RenditionsConfig = field(default_factory=RenditionsConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # Folder the file was read from: relative paths in the config resolve against it.
    base_dir: str = "."

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def output_affecting(self) -> dict[str, Any]:
        """The tables that change pixels or provenance; their hash keys caches and records."""
        d = dataclasses.asdict(self)
        return {k: d[k] for k in ("load", "matte", "layout", "depth", "scene", "shadow", "harmonize", "check", "safety", "nsfw", "fidelity", "sign",
                             "write", "renditions")}

    def digest(self) -> str:
        memo = self.__dict__.get("_digest")  # frozen: computed once per instance (cache keys call it per row)
        if memo is None:
            blob = json.dumps(self.output_affecting(), sort_keys=True, default=str).encode()
            memo = hashlib.sha256(blob).hexdigest()[:16]
            object.__setattr__(self, "_digest", memo)
        return memo


def _check_value(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where} = {value!r}: must be one of {list(get_args(tp))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: must be a list")
        (item_tp, _ellipsis) = get_args(tp)
        return tuple(_check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:  # a table of named tables, e.g. [layout.presets.<name>]
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table, got {value!r}")
        item_tp = get_args(tp)[1]
        return {str(k): _check_value(v, item_tp, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for option in get_args(tp):
            try:
                return _check_value(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} = {value!r}: wrong type")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table, got {value!r}")
        return _build(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is type(None) and value is None:
        return None
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where} = {value!r}: expected {tp.__name__}")
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"[{where}] has unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _check_value(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(cfg.run.batch_size >= 1, f"run.batch_size = {cfg.run.batch_size}: must be >= 1")
    need(cfg.run.workers >= 1, f"run.workers = {cfg.run.workers}: must be >= 1")
    from stages.schedule import schedule_error

    problem = schedule_error(cfg.schedule.cron, cfg.schedule.timezone)
    need(problem is None, f"schedule: {problem}")
    need(1 <= cfg.run.max_variants <= 64, f"run.max_variants = {cfg.run.max_variants}: must be 1..64")
    need(cfg.load.max_pixels > 0, f"load.max_pixels = {cfg.load.max_pixels}: must be > 0")
    need(64 <= cfg.layout.width <= 8192, f"layout.width = {cfg.layout.width}: must be 64..8192")
    need(64 <= cfg.layout.height <= 8192, f"layout.height = {cfg.layout.height}: must be 64..8192")
    need(0 <= cfg.layout.margin < 0.45, f"layout.margin = {cfg.layout.margin}: must be in [0, 0.45)")
    need(0 <= cfg.layout.floor < 0.45, f"layout.floor = {cfg.layout.floor}: must be in [0, 0.45)")
    need(cfg.layout.max_scale > 0, f"layout.max_scale = {cfg.layout.max_scale}: must be > 0")
    need(0 < cfg.layout.horizon < 1, f"layout.horizon = {cfg.layout.horizon}: must be in (0, 1)")
    need(0 <= cfg.check.pixel_tolerance <= 255, f"check.pixel_tolerance = {cfg.check.pixel_tolerance}: must be 0..255")
    need(1 <= cfg.check.core_alpha <= 255, f"check.core_alpha = {cfg.check.core_alpha}: must be 1..255")
    need(50 <= cfg.write.jpeg_quality <= 100, f"write.jpeg_quality = {cfg.write.jpeg_quality}: must be 50..100")
    need(len(set(cfg.write.renditions)) == len(cfg.write.renditions), f"write.renditions = {list(cfg.write.renditions)}: duplicates")
    need(0 <= cfg.write.png_compress_level <= 9, f"write.png_compress_level = {cfg.write.png_compress_level}: must be 0..9")
    chain = [cfg.scene.backend, *cfg.scene.fallback]
    need(len(set(chain)) == len(chain),
         f"scene.fallback = {list(cfg.scene.fallback)}: repeats a backend (scene.backend = {cfg.scene.backend!r})")
    for name in ("diffusers_sdxl", "diffusers_sd15"):
        _validate_diffusers(getattr(cfg.scene, name), f"scene.{name}", need)
    from stages.shadow import check_shadow

    check_shadow(cfg.shadow)
    ref = cfg.scene.reference_image
    need(not ref or cfg.resolve(ref).is_file(), f"scene.reference_image = {ref!r}: no such file ({cfg.resolve(ref)})")
    need(0 <= cfg.harmonize.strength <= 1, f"harmonize.strength = {cfg.harmonize.strength}: must be 0..1")
    _validate_checks(cfg, need)
    from stages.renditions import config_error  # placement and channel presets

    problem = config_error(cfg)
    need(problem is None, str(problem))


def _validate_checks(cfg: Config, need: Any) -> None:
    s, n, f = cfg.safety, cfg.nsfw, cfg.fidelity
    need(20 <= s.max_prompt_chars <= 10_000, f"safety.max_prompt_chars = {s.max_prompt_chars}: must be 20..10000")
    for i, term in enumerate(s.blocklist):
        need(bool(term.strip()), f"safety.blocklist[{i}] is empty")
    need(0 < n.threshold <= 1, f"nsfw.threshold = {n.threshold}: must be in (0, 1]")
    need(0 < n.review_threshold <= n.threshold,
         f"nsfw.review_threshold = {n.review_threshold}: must be in (0, nsfw.threshold = {n.threshold}]")
    need(0 <= n.threads <= 256, f"nsfw.threads = {n.threads}: must be 0..256 (0: one per core)")
    need(bool(n.transformers.model.strip()), "nsfw.transformers.model is empty: name an image-classification model")
    need(bool(n.transformers.nsfw_labels), "nsfw.transformers.nsfw_labels is empty: name the model's unsafe labels")
    for name in ("band", "rim", "min_area", "halo_width"):
        v = getattr(f, name)
        need(0 <= v <= 0.5, f"fidelity.{name} = {v}: must be 0..0.5")
    need(f.rim < f.band, f"fidelity.rim = {f.rim}: must be below fidelity.band = {f.band}")
    need(0 < f.likeness <= 1, f"fidelity.likeness = {f.likeness}: must be in (0, 1]")
    need(0 <= f.min_contrast <= 442, f"fidelity.min_contrast = {f.min_contrast}: must be 0..442")
    for name in ("expansion_limit", "halo_limit", "review_quality"):
        v = getattr(f, name)
        need(0 <= v <= 1, f"fidelity.{name} = {v}: must be 0..1")


def _validate_diffusers(d: DiffusersSceneConfig, where: str, need: Any) -> None:
    need(bool(d.model.strip()), f"{where}.model is empty: name an inpainting pipeline (hub id or folder)")
    need(bool(d.controlnet.strip()), f"{where}.controlnet is empty: name a depth ControlNet (hub id or folder)")
    need(1 <= d.steps <= 500, f"{where}.steps = {d.steps}: must be 1..500")
    need(0 < d.strength <= 1, f"{where}.strength = {d.strength}: must be in (0, 1]")
    need(int(d.steps * d.strength) >= 1,
         f"{where}.strength = {d.strength} with steps = {d.steps} leaves no denoising step "
         "(int(steps * strength) must be >= 1)")
    need(0 <= d.guidance_scale <= 50, f"{where}.guidance_scale = {d.guidance_scale}: must be 0..50")
    need(0 <= d.controlnet_conditioning_scale <= 5,
         f"{where}.controlnet_conditioning_scale = {d.controlnet_conditioning_scale}: must be 0..5")
    need(d.max_side == 0 or 64 <= d.max_side <= 8192, f"{where}.max_side = {d.max_side}: must be 0 or 64..8192")
    need(1 <= d.batch_size <= 64, f"{where}.batch_size = {d.batch_size}: must be 1..64")
    need(0 <= d.prompt_cache <= 10_000, f"{where}.prompt_cache = {d.prompt_cache}: must be 0..10000")
    need(not (d.fuse_qkv and d.loras), f"{where}: fuse_qkv does not combine with loras (fuse the LoRA into the model)")
    need(not (d.compile and d.model_cpu_offload), f"{where}: compile does not combine with model_cpu_offload")
    need(0 <= d.ip_adapter_scale <= 5, f"{where}.ip_adapter_scale = {d.ip_adapter_scale}: must be 0..5")
    need(not d.ip_adapter or bool(d.ip_adapter_weight_name.strip()),
         f"{where}.ip_adapter_weight_name is empty: name the adapter's weight file")
    for i, lora in enumerate(d.loras):
        need(bool(lora.path.strip()), f"{where}.loras[{i}].path is empty")
        need(-10 <= lora.scale <= 10, f"{where}.loras[{i}].scale = {lora.scale}: must be -10..10")
    from stages.prompts import template_error

    problem = template_error(d.prompt_template)
    need(problem is None, f"{where}.prompt_template = {d.prompt_template!r}: {problem}")


def merge_tables(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Merge nested TOML tables: `extra` wins, sibling keys of a sub-table are kept."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_tables(into[key], value)
        else:
            into[key] = value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a config file; `overrides` are nested tables merged on top (per-run values)."""
    data: dict[str, Any] = {}
    base = Path(".").resolve()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        base = p.resolve().parent
    merge_tables(data, overrides or {})
    data.pop("base_dir", None)
    cfg = _build(Config, data, "")
    cfg = dataclasses.replace(cfg, base_dir=str(base))
    _validate(cfg)
    return cfg
