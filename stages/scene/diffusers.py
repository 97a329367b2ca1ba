"""The diffusers scene backends' shared implementation: ControlNet-depth inpainting of the background
around the product (`sdxl.py` and `sd15.py` name the pipeline and the defaults)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from stages.depth.base import preview_canvas
from stages.errors import ConfigError, ModelUnavailableError, StageError
from stages.models import ModelSource, Requirement, package_requirement, quiet_loading
from stages.scene import diffusers_guidance, ip_adapter, prompts
from stages.scene.base import Scene, SceneOutOfMemory, SceneRequest
from stages.scene.diffusers_load import (
    Prepared,
    Sources,
    enable_offload,
    load_pipeline,
    prepare,
    resolve_sources,
    source_requirements,
)
from stages.scene.diffusers_options import DiffusersOptions, working_size

log = logging.getLogger("stages.scene.diffusers")

NEUTRAL_GREY = 128  # fill around the product in the init image (the model repaints it)


@dataclass(frozen=True)
class _Prepared:
    image: Any  # PIL RGB, working size
    mask_image: Any  # PIL L, working size, 255 = generate
    control_image: Any  # PIL RGB depth, working size
    canvas: tuple[int, int]  # (W, H)
    size: tuple[int, int]  # (w, h) the pipeline runs at


class DiffusersScene:
    """One loaded pipeline. Calls are serialised per backend: a diffusers pipeline keeps per-call
    state and must not run twice at once, and one accelerator gains nothing from it."""

    name: ClassVar[str]
    Options: ClassVar[type[DiffusersOptions]]
    pipeline_class: ClassVar[str]
    xl: ClassVar[bool]
    trained: ClassVar[bool] = True

    def __init__(self, options: DiffusersOptions, pipe: Any, sources: Sources, device: Any, dtype: Any,
                 prepared: Prepared) -> None:
        import torch

        self.options = options
        self.pipe = pipe
        self.sources = sources
        self.device = device
        self.dtype = dtype
        self.speedups = prepared.speedups
        self.ip_loaded = prepared.ip_loaded
        self._offloaded = prepared.offloaded
        self._torch = torch
        self._lock = threading.RLock()
        self._embeds: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self.embed_hits = 0
        self.embed_misses = 0
        self._batch = options.batch_size
        self._do_cfg = options.guidance_scale > 1.0
        # installed after torch.compile (prepare): the switch wraps the compiled models' forward
        self._guidance = diffusers_guidance.install(pipe) if self._do_cfg and options.guidance_end < 1 else None
        self._settings = self._base_settings()

    @classmethod
    def where(cls) -> str:
        return f"scene.{cls.name.replace('-', '_')}"

    @classmethod
    def requirements(cls, options: DiffusersOptions) -> list[Requirement]:
        """torch, diffusers, transformers and every model the pipeline loads (each on its own row)."""
        return [package_requirement("torch", "pip install torch"),
                package_requirement("diffusers", "pip install diffusers"),
                package_requirement("transformers", "pip install transformers"),
                *source_requirements(options, cls.Options(), cls.where())]

    @classmethod
    def load(cls, options: DiffusersOptions) -> DiffusersScene:
        """Resolve every model first (a missing one fails at once, before torch is imported), then
        load the pipeline and apply the options to it."""
        where = cls.where()
        options.check(where)
        sources = resolve_sources(options, cls.Options(), where)
        with quiet_loading("diffusers", "transformers"):
            pipe, device, dtype = load_pipeline(options, sources, cls.pipeline_class, cls.xl, where)
            prepared = prepare(pipe, options, sources, device, dtype, where, place=True)
        return cls(options, pipe, sources, device, dtype, prepared)

    @classmethod
    def from_pipeline(cls, options: DiffusersOptions, pipe: Any) -> DiffusersScene:
        """A backend around a pipeline built in memory (benchmarks): nothing is resolved or loaded.

        The pipeline keeps its device and dtype; the scheduler, memory and speed options are
        applied to it, and the settings name the model as "<in memory>".
        """
        where = cls.where()
        options.check(where)
        if options.loras:
            raise ConfigError(f"{where}.loras: load LoRA weights into the pipeline before wrapping it")
        mem = ModelSource("in-memory pipeline", "<in memory>", None, "<in memory>", "memory")
        sources = Sources(model=mem, controlnet=mem)
        device, dtype = pipe.unet.device, pipe.unet.dtype
        return cls(options, pipe, sources, device, dtype, prepare(pipe, options, sources, device, dtype, where,
                                                                  place=False))

    def _base_settings(self) -> dict[str, Any]:
        import diffusers

        o, s = self.options, self.sources
        return {
            "pipeline": self.pipeline_class,
            "model": s.model.record(),
            "controlnet": s.controlnet.record(),
            "vae": s.vae.record() if s.vae is not None else None,
            "loras": [{**src.record(), "weight_name": lora.weight_name or None, "scale": lora.scale}
                      for lora, src in zip(o.loras, s.loras, strict=True)],
            "scheduler": o.scheduler,
            "steps": o.steps,
            "guidance_scale": o.guidance_scale,
            **({"guidance_end": o.guidance_end} if o.guidance_end < 1 else {}),
            "controlnet_conditioning_scale": o.controlnet_conditioning_scale,
            "strength": o.strength,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device.type,
            "generator_device": self.device.type,
            "prompt_template": o.prompt_template,
            "speedups": list(self.speedups),
            "ip_adapter": ip_adapter.record(o, s.ip_adapter, s.image_encoder) if self.ip_loaded else None,
            "init_image": f"product over grey {NEUTRAL_GREY}",
            "versions": {"diffusers": diffusers.__version__, "torch": self._torch.__version__},
        }

    # ------------------------------------------------------------------------------------------
    # Generation

    def prepare(self, request: SceneRequest) -> _Prepared:
        """The pipeline's image inputs for one request (public: tests check the mask convention).

        Inputs per image: the product over neutral grey on the canvas (`preview_canvas`), the layout's
        mask (255 = generate: everything that is not fully product) and the depth map as a 3-channel
        control image. The pipeline's whole output is returned as the background; the product is
        composited back afterwards, so the VAE round trip over the product never reaches a published
        pixel.
        """
        from PIL import Image

        layout = request.layout
        H, W = layout.product_alpha.shape
        w, h = working_size(W, H, self.options.max_side)
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
        return prompts.render(self.options.prompt_template, request.prompt,
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
            if not self._offloaded and self.device.type == "cuda" and not self.options.compile:
                log.warning("%s: CUDA out of memory; retrying with model CPU offload and VAE slicing", self.name)
                enable_offload(self.pipe, self.device)
                self._offloaded = True
                return self._run_with_fallback(chunk)
            w, h = working_size(*chunk[0].layout.size, self.options.max_side)
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
        o = self.options
        prepared = [self.prepare(r) for r in chunk]
        w, h = prepared[0].size
        texts = [self.prompt_for(r) for r in chunk]
        negatives = [r.negative_prompt or "" for r in chunk]
        embeds = self._embeddings(texts, negatives)
        generators = [torch.Generator(device=self.device.type).manual_seed(int(r.seed)) for r in chunk]
        image_prompt, ip_settings = ip_adapter.call_inputs(self.pipe, self.options, chunk[0], self.ip_loaded)
        switch = self._guidance
        stop = {"callback_on_step_end": switch.step_callback(o.guidance_end)} if switch is not None else {}
        try:
            result = self.pipe(
                image=[p.image for p in prepared], mask_image=[p.mask_image for p in prepared],
                control_image=[p.control_image for p in prepared], height=h, width=w,
                strength=o.strength, num_inference_steps=o.steps, guidance_scale=o.guidance_scale,
                controlnet_conditioning_scale=o.controlnet_conditioning_scale,
                generator=generators, output_type="np", **embeds, **image_prompt, **stop,
            )
        finally:
            if switch is not None:
                switch.cond_only = False
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
            scenes.append(Scene(np.ascontiguousarray(rgb), self.name, self.trained, settings))
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
        if self.options.prompt_cache > 0:
            self._embeds[key] = value
            while len(self._embeds) > self.options.prompt_cache:
                self._embeds.popitem(last=False)
        return value
