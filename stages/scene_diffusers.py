"""Diffusion scene backends: ControlNet-depth inpainting of the background around the product.

- `diffusers-sdxl`: `StableDiffusionXLControlNetInpaintPipeline` ([scene.diffusers_sdxl]);
- `diffusers-sd15`: `StableDiffusionControlNetInpaintPipeline` ([scene.diffusers_sd15]).

Inputs per image: the product over neutral grey on the canvas (`stages.depth.preview_canvas`),
the layout's mask (255 = generate: everything that is not fully product) and the depth map as a
3-channel control image. The pipeline's whole output is returned as the background; the
product is composited back afterwards (`stages.composite`), so the VAE round trip over the
product never reaches a published pixel.

Importing this module is cheap: torch and diffusers are imported when a backend is built, and
each backend loads its weights once (a `Workbench` builds backends once per worker process).
Calls are serialised per backend: a diffusers pipeline keeps per-call state and must not run
twice at once, and one accelerator gains nothing from it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from stages import ip_adapter, prompts
from stages.config import DiffusersSceneConfig, SceneConfig
from stages.depth import preview_canvas
from stages.errors import ConfigError, ModelUnavailableError, StageError
from stages.model_sources import ModelSource, hub_offline, quiet_loading, resolve_source
from stages.scene import IPTC_COMPOSITE_TRAINED, Scene, SceneRequest, scene_backends

log = logging.getLogger("stages.scene_diffusers")

# Scheduler name -> (diffusers class, overrides on the model's own scheduler config).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}

NEUTRAL_GREY = 128  # fill around the product in the init image (the model repaints it)


class SceneOutOfMemory(StageError):
    """The accelerator ran out of memory with one image per call and no lighter mode left:
    a caller may fall back to another scene backend for this product."""


def working_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size the pipeline runs at: the canvas, shrunk to `max_side` (0: no limit), floored to 8."""
    s = min(1.0, max_side / max(width, height)) if max_side else 1.0
    return max(8, int(width * s) // 8 * 8), max(8, int(height * s) // 8 * 8)


def check_options(d: DiffusersSceneConfig, where: str) -> None:
    """What `load_config` checks, again for configs built in code."""
    if d.scheduler not in SCHEDULERS:
        raise ConfigError(f"{where}.scheduler = {d.scheduler!r}: must be one of {sorted(SCHEDULERS)}")
    if d.steps < 1 or not 0 < d.strength <= 1 or int(d.steps * d.strength) < 1:
        raise ConfigError(
            f"{where}: steps = {d.steps}, strength = {d.strength} leaves no denoising step "
            "(need steps >= 1, 0 < strength <= 1 and int(steps * strength) >= 1)"
        )
    if d.batch_size < 1:
        raise ConfigError(f"{where}.batch_size = {d.batch_size}: must be >= 1")
    if d.fuse_qkv and d.loras:
        raise ConfigError(f"{where}: fuse_qkv does not combine with loras (fuse the LoRA into the model)")
    if d.compile and d.model_cpu_offload:
        raise ConfigError(f"{where}: compile does not combine with model_cpu_offload")
    problem = prompts.template_error(d.prompt_template)
    if problem:
        raise ConfigError(f"{where}.prompt_template = {d.prompt_template!r}: {problem}")


@dataclass(frozen=True)
class _Prepared:
    image: Any  # PIL RGB, working size
    mask_image: Any  # PIL L, working size, 255 = generate
    control_image: Any  # PIL RGB depth, working size
    canvas: tuple[int, int]  # (W, H)
    size: tuple[int, int]  # (w, h) the pipeline runs at


class DiffusersScene:
    """Shared implementation; subclasses name the pipeline and the config table."""

    name: ClassVar[str]
    table: ClassVar[str]
    pipeline_class: ClassVar[str]
    xl: ClassVar[bool]

    def __init__(self, cfg: SceneConfig) -> None:
        self._init_state(cfg)
        where = f"scene.{self.table}"
        defaults = type(self.opts)()
        # Every source is resolved before torch is imported: a missing model fails at once.
        self.sources: dict[str, ModelSource] = {
            "model": resolve_source("inpainting model", self.opts.model, self.opts.revision, "model_index.json",
                                    f"[{where}].model", defaults.model),
            "controlnet": resolve_source("depth ControlNet", self.opts.controlnet, self.opts.controlnet_revision,
                                         "config.json", f"[{where}].controlnet", defaults.controlnet),
        }
        if self.opts.vae:
            self.sources["vae"] = resolve_source("VAE", self.opts.vae, self.opts.vae_revision, "config.json",
                                                 f"[{where}].vae", defaults.vae or None)
        self.lora_sources = [
            resolve_source(f"LoRA #{i}", lora.path, "", lora.weight_name or "pytorch_lora_weights.safetensors",
                           f"[{where}].loras[{i}].path")
            for i, lora in enumerate(self.opts.loras)
        ]
        self.ip_source, self.encoder_source = ip_adapter.resolve(self.opts, where)
        with quiet_loading("diffusers", "transformers"):
            self._load()

    @classmethod
    def from_pipeline(cls, cfg: SceneConfig, pipe: Any) -> DiffusersScene:
        """A backend around a pipeline built in memory (benchmarks): nothing is resolved or loaded.

        The pipeline keeps its device and dtype; the scheduler, memory and speed options of the
        config are applied to it, and the settings name the model as "<in memory>".
        """
        import torch

        self = cls.__new__(cls)
        self._init_state(cfg)
        mem = ModelSource("in-memory pipeline", "<in memory>", None, "<in memory>", "memory")
        self.sources = {"model": mem, "controlnet": mem}
        self.lora_sources = []
        self.ip_source = self.encoder_source = None
        if self.opts.loras:
            raise ConfigError(f"scene.{self.table}.loras: load LoRA weights into the pipeline before wrapping it")
        self._torch = torch
        self.device = pipe.unet.device
        self.dtype = pipe.unet.dtype
        self._setup(pipe, place=False)
        return self

    def _init_state(self, cfg: SceneConfig) -> None:
        self.cfg = cfg
        self.opts: DiffusersSceneConfig = getattr(cfg, self.table)
        check_options(self.opts, f"scene.{self.table}")
        self._lock = threading.RLock()
        self._embeds: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self.embed_hits = 0
        self.embed_misses = 0
        self._offloaded = False
        self._batch = self.opts.batch_size
        self.speedups: list[str] = []

    # ------------------------------------------------------------------------------------------
    # Loading

    def _load(self) -> None:
        import diffusers
        import torch

        o = self.opts
        if o.device == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailableError(f"[scene.{self.table}] device = 'cuda' but no CUDA device is visible")
        self.device = torch.device("cuda" if o.device == "cuda" or (o.device == "auto" and torch.cuda.is_available())
                                   else "cpu")
        dtype = getattr(torch, o.dtype)
        if self.device.type == "cpu" and dtype == torch.float16:
            log.warning("%s: float16 does not run on a CPU; using float32", self.name)
            dtype = torch.float32
        self.dtype = dtype
        self._torch = torch
        components: dict[str, Any] = {
            "controlnet": self._from_pretrained(diffusers.ControlNetModel, "controlnet", "config.json"),
        }
        if "vae" in self.sources:
            components["vae"] = self._from_pretrained(diffusers.AutoencoderKL, "vae", "config.json")
        if not self.xl and not getattr(o, "safety_checker", True):
            components.update(safety_checker=None, requires_safety_checker=False)
        pipe = self._from_pretrained(getattr(diffusers, self.pipeline_class), "model", "model_index.json",
                                     **components)
        self._setup(pipe, place=True)

    def _setup(self, pipe: Any, place: bool) -> None:
        """Scheduler, LoRAs, device placement, memory and speed options; then the fixed settings."""
        import diffusers

        diffusers.utils.logging.set_verbosity_error()  # a per-call fp32 notice otherwise
        o = self.opts
        pipe.set_progress_bar_config(disable=True)
        cls_name, overrides = SCHEDULERS[o.scheduler]
        pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **overrides)
        self.pipe = pipe
        self._load_loras()
        self.ip_loaded = False
        if getattr(self, "ip_source", None) is not None:
            ip_adapter.load(pipe, self.opts, self.ip_source, self.encoder_source, self.dtype, self.table)
            self.ip_loaded = True
        if o.model_cpu_offload and self.device.type == "cuda":
            self._enable_offload()
        else:
            if o.model_cpu_offload:
                log.warning("%s: model_cpu_offload needs a CUDA device; ignored on %s", self.name, self.device)
            if place:
                pipe.to(self.device)
        if o.vae_slicing:
            pipe.vae.enable_slicing()
        if o.vae_tiling:
            pipe.vae.enable_tiling()
        self._apply_speedups()
        self._do_cfg = o.guidance_scale > 1.0
        self._settings = self._base_settings()

    def _apply_speedups(self) -> None:
        """Same maths, faster kernels: fused attention projections, channels-last, torch.compile."""
        o, pipe, torch = self.opts, self.pipe, self._torch
        models = [m for m in (pipe.unet, pipe.controlnet, pipe.vae) if m is not None]
        if o.fuse_qkv:
            for m in models:
                m.fuse_qkv_projections()
            self.speedups.append("fuse_qkv")
        if o.channels_last:
            for m in models:
                m.to(memory_format=torch.channels_last)
            self.speedups.append("channels_last")
        if o.compile:
            pipe.unet = torch.compile(pipe.unet)
            pipe.controlnet = torch.compile(pipe.controlnet)
            self.speedups.append("torch.compile")

    def _from_pretrained(self, cls: Any, key: str, marker: str, **extra: Any) -> Any:
        src = self.sources[key]
        try:
            obj = cls.from_pretrained(src.load_from, dtype=self.dtype, **src.pretrained_kwargs, **extra)
        except Exception as exc:  # diffusers/hub raise OSError, ValueError, EnvironmentError, ...
            at = f"@{src.revision}" if src.revision else ""
            offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
            raise ModelUnavailableError(
                f"{src.role} {src.ref}{at} ({src.kind}: {src.load_from}) failed to load{offline}: "
                f"{type(exc).__name__}: {exc}. Set [scene.{self.table}].{key} to a complete diffusers-format "
                f"folder or a hub id (`hf download {src.ref if src.kind != 'local' else '<hub id>'}`)."
            ) from exc
        self.sources[key] = src.after_download(marker)
        return obj

    def _load_loras(self) -> None:
        if not self.opts.loras:
            return
        from diffusers.utils import is_peft_available

        if not is_peft_available():
            raise ModelUnavailableError(
                f"[scene.{self.table}].loras needs the `peft` package (pip install peft) to load LoRA weights"
            )
        names = []
        for i, (lora, src) in enumerate(zip(self.opts.loras, self.lora_sources, strict=True)):
            name = f"lora{i}"
            kwargs = {"weight_name": lora.weight_name} if lora.weight_name else {}
            try:
                self.pipe.load_lora_weights(src.load_from, adapter_name=name, **kwargs, **src.pretrained_kwargs)
            except Exception as exc:
                raise ModelUnavailableError(f"{src.role} {src.ref} failed to load: {type(exc).__name__}: {exc}") from exc
            names.append(name)
        self.pipe.set_adapters(names, adapter_weights=[lora.scale for lora in self.opts.loras])

    def _enable_offload(self) -> None:
        """Keep only the running sub-model on the GPU: slower, but SDXL then fits in a few GiB."""
        self.pipe.enable_model_cpu_offload(device=self.device)
        self.pipe.vae.enable_slicing()
        self._offloaded = True

    def _base_settings(self) -> dict[str, Any]:
        import diffusers
        import torch

        o = self.opts
        return {
            "pipeline": self.pipeline_class,
            "model": self.sources["model"].record(),
            "controlnet": self.sources["controlnet"].record(),
            "vae": self.sources["vae"].record() if "vae" in self.sources else None,
            "loras": [{**src.record(), "weight_name": lora.weight_name or None, "scale": lora.scale}
                      for lora, src in zip(o.loras, self.lora_sources, strict=True)],
            "scheduler": o.scheduler,
            "steps": o.steps,
            "guidance_scale": o.guidance_scale,
            "controlnet_conditioning_scale": o.controlnet_conditioning_scale,
            "strength": o.strength,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device.type,
            "generator_device": self._generator_device,
            "prompt_template": o.prompt_template,
            "speedups": list(self.speedups),
            "ip_adapter": ip_adapter.record(self.opts, self.ip_source, self.encoder_source) if self.ip_loaded else None,
            "init_image": f"product over grey {NEUTRAL_GREY}",
            "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__},
        }

    @property
    def _generator_device(self) -> str:
        return self.device.type

    # ------------------------------------------------------------------------------------------
    # Generation

    def prepare(self, request: SceneRequest) -> _Prepared:
        """The pipeline's image inputs for one request (public: tests check the mask convention)."""
        from PIL import Image

        layout = request.layout
        H, W = layout.product_alpha.shape
        w, h = working_size(W, H, self.opts.max_side)
        init = preview_canvas(layout, NEUTRAL_GREY)
        mask = layout.mask
        depth = request.depth.depth
        if depth.shape != (H, W):
            raise StageError(f"depth map {depth.shape} does not match the canvas {(H, W)}")
        if (w, h) != (W, H):
            init = cv2.resize(init, (w, h), interpolation=cv2.INTER_AREA)
            # Any generate pixel in a shrunk cell keeps the cell generated: no ungenerated halo at the edge.
            mask = np.where(cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA) > 0, 255, 0).astype(np.uint8)
            depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_AREA)
        control = np.repeat(depth[..., None], 3, axis=2)
        return _Prepared(Image.fromarray(init, "RGB"), Image.fromarray(mask, "L"), Image.fromarray(control, "RGB"),
                         (W, H), (w, h))

    def prompt_for(self, request: SceneRequest) -> str:
        return prompts.render(self.opts.prompt_template, request.prompt,
                              category=getattr(request, "category", "") or "",
                              title=getattr(request, "title", "") or "")

    def generate(self, request: SceneRequest) -> Scene:
        return self.generate_many([request])[0]

    def generate_many(self, requests: Sequence[SceneRequest]) -> list[Scene]:
        """Scenes for several requests, `batch_size` per pipeline call (same canvas size per call).

        Each image gets its own generator seeded from its request, so a seed gives the same
        image whether it ran alone or in a batch (up to float rounding of batched kernels).
        """
        out: list[Scene] = []
        with self._lock:
            i = 0
            while i < len(requests):
                size = requests[i].layout.product_alpha.shape
                j = i + 1
                ref = ip_adapter.reference_key(requests[i])  # one reference image per pipeline call
                while (j < len(requests) and j - i < self._batch and requests[j].layout.product_alpha.shape == size
                       and ip_adapter.reference_key(requests[j]) == ref):
                    j += 1
                out.extend(self._run_with_fallback(list(requests[i:j])))
                i = j
        return out

    def _run_with_fallback(self, chunk: list[SceneRequest]) -> list[Scene]:
        torch = self._torch
        try:
            return self._run(chunk)
        except torch.OutOfMemoryError as exc:
            self._free()
            if len(chunk) > 1:
                self._batch = max(1, len(chunk) // 2)
                log.warning("%s: CUDA out of memory with %d images per call; retrying with %d",
                            self.name, len(chunk), self._batch)
                half = len(chunk) // 2
                return self._run_with_fallback(chunk[:half]) + self._run_with_fallback(chunk[half:])
            if not self._offloaded and self.device.type == "cuda" and not self.opts.compile:
                log.warning("%s: CUDA out of memory; retrying with model CPU offload and VAE slicing", self.name)
                self._enable_offload()
                return self._run_with_fallback(chunk)
            w, h = working_size(*chunk[0].layout.size, self.opts.max_side)
            tried = "with model CPU offload" if self._offloaded else "with no lighter mode left to try"
            raise SceneOutOfMemory(f"{self.name}: out of memory at {w}x{h}, one image per call, {tried}: {exc}") from exc
        except (StageError, ModelUnavailableError):
            raise
        except Exception as exc:  # a library error on one product must name the backend, not look like a bug
            raise StageError(f"{self.name} failed: {type(exc).__name__}: {exc}") from exc

    def _free(self) -> None:
        import gc

        gc.collect()
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()

    def _run(self, chunk: list[SceneRequest]) -> list[Scene]:
        torch = self._torch
        o = self.opts
        prepared = [self.prepare(r) for r in chunk]
        w, h = prepared[0].size
        texts = [self.prompt_for(r) for r in chunk]
        negatives = [r.negative_prompt or "" for r in chunk]
        embeds = self._embeddings(texts, negatives)
        generators = [torch.Generator(device=self._generator_device).manual_seed(int(r.seed)) for r in chunk]
        image_prompt, ip_settings = ip_adapter.call_inputs(self.pipe, self.opts, chunk[0], self.ip_loaded)
        result = self.pipe(
            image=[p.image for p in prepared], mask_image=[p.mask_image for p in prepared],
            control_image=[p.control_image for p in prepared], height=h, width=w,
            strength=o.strength, num_inference_steps=o.steps, guidance_scale=o.guidance_scale,
            controlnet_conditioning_scale=o.controlnet_conditioning_scale,
            generator=generators, output_type="np", **embeds, **image_prompt,
        )
        flagged = getattr(result, "nsfw_content_detected", None) or []
        if any(flagged):
            seeds = [r.seed for r, f in zip(chunk, flagged, strict=False) if f]
            raise StageError(f"{self.name}: the model's safety checker flagged the generated scene (seed {seeds})")
        images = np.asarray(result.images, dtype=np.float32)
        scenes = []
        for r, p, text, negative, img in zip(chunk, prepared, texts, negatives, images, strict=True):
            rgb = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
            if p.size != p.canvas:
                rgb = cv2.resize(rgb, p.canvas, interpolation=cv2.INTER_CUBIC)
            settings = {
                **self._settings, "seed": int(r.seed), "prompt": text, "negative_prompt": negative,
                "scene_prompt": r.prompt, "resolution": [w, h], "canvas": list(p.canvas), **ip_settings,
            }
            scenes.append(Scene(np.ascontiguousarray(rgb), self.name, IPTC_COMPOSITE_TRAINED, settings))
        return scenes

    # ------------------------------------------------------------------------------------------
    # Text embeddings

    def _embeddings(self, texts: list[str], negatives: list[str]) -> dict[str, Any]:
        """Prompt embeddings for a batch, from the LRU cache where the (prompt, negative) pair was seen."""
        per = [self._embed(t, n) for t, n in zip(texts, negatives, strict=True)]
        return {k: self._torch.cat([e[k] for e in per]) for k, v in per[0].items() if v is not None}

    def _embed(self, text: str, negative: str) -> dict[str, Any]:
        key = (text, negative)
        if key in self._embeds:
            self._embeds.move_to_end(key)
            self.embed_hits += 1
            return self._embeds[key]
        self.embed_misses += 1
        pipe = self.pipe
        with self._torch.no_grad():
            if self.xl:
                pe, ne, ppe, npe = pipe.encode_prompt(
                    prompt=text, device=pipe._execution_device, num_images_per_prompt=1,
                    do_classifier_free_guidance=self._do_cfg, negative_prompt=negative or None,
                )
                value = {"prompt_embeds": pe, "negative_prompt_embeds": ne,
                         "pooled_prompt_embeds": ppe, "negative_pooled_prompt_embeds": npe}
            else:
                pe, ne = pipe.encode_prompt(text, pipe._execution_device, 1, self._do_cfg,
                                            negative_prompt=negative or None)
                value = {"prompt_embeds": pe, "negative_prompt_embeds": ne}
        if not self._do_cfg:
            value = {k: (v if k in ("prompt_embeds", "pooled_prompt_embeds") else None) for k, v in value.items()}
        if self.opts.prompt_cache > 0:
            self._embeds[key] = value
            while len(self._embeds) > self.opts.prompt_cache:
                self._embeds.popitem(last=False)
        return value


@scene_backends.register("diffusers-sdxl")
class DiffusersSdxlScene(DiffusersScene):
    """SDXL inpainting with a depth ControlNet ([scene.diffusers_sdxl])."""

    name = "diffusers-sdxl"
    table = "diffusers_sdxl"
    pipeline_class = "StableDiffusionXLControlNetInpaintPipeline"
    xl = True


@scene_backends.register("diffusers-sd15")
class DiffusersSd15Scene(DiffusersScene):
    """Stable Diffusion 1.5 inpainting with a depth ControlNet ([scene.diffusers_sd15])."""

    name = "diffusers-sd15"
    table = "diffusers_sd15"
    pipeline_class = "StableDiffusionControlNetInpaintPipeline"
    xl = False
