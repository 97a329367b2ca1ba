"""Loading a diffusers ControlNet inpainting pipeline: where each model comes from, then the pipeline
with its scheduler, LoRAs, IP-Adapter, device placement, memory and speed options."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from stages.errors import ModelUnavailableError
from stages.models import (
    ModelSource,
    Requirement,
    choose_device,
    hub_hint,
    load_failure,
    resolve_source,
    source_requirement,
)
from stages.scene import ip_adapter
from stages.scene.diffusers_options import SCHEDULERS, DiffusersOptions

log = logging.getLogger("stages.scene.diffusers")


@dataclass
class Sources:
    """Where every model of a pipeline comes from (resolved before torch is imported)."""

    model: ModelSource
    controlnet: ModelSource
    vae: ModelSource | None = None
    loras: list[ModelSource] = field(default_factory=list)
    ip_adapter: ModelSource | None = None
    image_encoder: ModelSource | None = None


def resolve_sources(o: DiffusersOptions, defaults: DiffusersOptions, where: str) -> Sources:
    """Every model's source; a missing one fails at once (ModelUnavailableError) with how to provide it."""
    ip, encoder = ip_adapter.resolve(o, where)
    return Sources(
        model=resolve_source("inpainting model", o.model, o.revision, "model_index.json", f"[{where}].model",
                             defaults.model),
        controlnet=resolve_source("depth ControlNet", o.controlnet, o.controlnet_revision, "config.json",
                                  f"[{where}].controlnet", defaults.controlnet),
        vae=resolve_source("VAE", o.vae, o.vae_revision, "config.json", f"[{where}].vae",
                           defaults.vae or None) if o.vae else None,
        loras=[resolve_source(f"LoRA #{i}", lora.path, "", lora.weight_name or "pytorch_lora_weights.safetensors",
                              f"[{where}].loras[{i}].path") for i, lora in enumerate(o.loras)],
        ip_adapter=ip, image_encoder=encoder,
    )


def source_requirements(o: DiffusersOptions, defaults: DiffusersOptions, where: str) -> list[Requirement]:
    """The models of `resolve_sources`, each found or missing on its own (nothing is loaded)."""
    found = [
        source_requirement("inpainting model", o.model, o.revision, "model_index.json", f"[{where}].model",
                           defaults.model),
        source_requirement("depth ControlNet", o.controlnet, o.controlnet_revision, "config.json",
                           f"[{where}].controlnet", defaults.controlnet),
    ]
    if o.vae:
        found.append(source_requirement("VAE", o.vae, o.vae_revision, "config.json", f"[{where}].vae",
                                        defaults.vae or None))
    found += [source_requirement(f"LoRA #{i}", lora.path, "", lora.weight_name or "pytorch_lora_weights.safetensors",
                                 f"[{where}].loras[{i}].path") for i, lora in enumerate(o.loras)]
    if o.ip_adapter:
        found.append(source_requirement("IP-Adapter", o.ip_adapter, "", ip_adapter.weights_path(o),
                                        f"[{where}].ip_adapter"))
    if o.image_encoder:
        found.append(source_requirement("IP-Adapter image encoder", o.image_encoder, "", "config.json",
                                        f"[{where}].image_encoder"))
    return found


def load_pipeline(o: DiffusersOptions, sources: Sources, pipeline_class: str, xl: bool,
                  where: str) -> tuple[Any, Any, Any]:
    """(pipeline, torch device, dtype): the pipeline's components from their sources, not yet placed.
    `sources` is updated with the hub commits the downloads put into the cache."""
    import diffusers
    import torch

    device = torch.device(choose_device(o.device, where))
    dtype = getattr(torch, o.dtype)
    if device.type == "cpu" and dtype == torch.float16:
        log.warning("%s: float16 does not run on a CPU; using float32", where)
        dtype = torch.float32

    def load(cls: Any, key: str, marker: str, **extra: Any) -> Any:
        src = getattr(sources, key)
        try:
            obj = cls.from_pretrained(src.load_from, dtype=dtype, **src.pretrained_kwargs, **extra)
        except Exception as exc:  # diffusers/hub raise OSError, ValueError, EnvironmentError, ...
            raise load_failure(src, exc, f"Set [{where}].{key} to a complete diffusers-format folder or a hub id "
                                         f"(`hf download {hub_hint(src, '<hub id>')}`).") from exc
        setattr(sources, key, src.after_download(marker))
        return obj

    components: dict[str, Any] = {"controlnet": load(diffusers.ControlNetModel, "controlnet", "config.json")}
    if sources.vae is not None:
        components["vae"] = load(diffusers.AutoencoderKL, "vae", "config.json")
    if not xl and not getattr(o, "safety_checker", True):
        components.update(safety_checker=None, requires_safety_checker=False)
    pipe = load(getattr(diffusers, pipeline_class), "model", "model_index.json", **components)
    return pipe, device, dtype


@dataclass
class Prepared:
    speedups: list[str]
    ip_loaded: bool
    offloaded: bool


def prepare(pipe: Any, o: DiffusersOptions, sources: Sources, device: Any, dtype: Any, where: str,
            place: bool) -> Prepared:
    """Scheduler, LoRAs, IP-Adapter, device placement, memory and speed options, applied to `pipe`."""
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # a per-call fp32 notice otherwise
    pipe.set_progress_bar_config(disable=True)
    cls_name, overrides = SCHEDULERS[o.scheduler]
    pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **overrides)
    _load_loras(pipe, o, sources.loras, where)
    ip_loaded = sources.ip_adapter is not None
    if ip_loaded:
        ip_adapter.load(pipe, o, sources.ip_adapter, sources.image_encoder, dtype, where)
    offloaded = False
    if o.model_cpu_offload and device.type == "cuda":
        enable_offload(pipe, device)
        offloaded = True
    else:
        if o.model_cpu_offload:
            log.warning("%s: model_cpu_offload needs a CUDA device; ignored on %s", where, device)
        if place:
            pipe.to(device)
    if o.vae_slicing:
        pipe.vae.enable_slicing()
    if o.vae_tiling:
        pipe.vae.enable_tiling()
    return Prepared(_apply_speedups(pipe, o), ip_loaded, offloaded)


def enable_offload(pipe: Any, device: Any) -> None:
    """Keep only the running sub-model on the GPU: slower, but SDXL then fits in a few GiB."""
    pipe.enable_model_cpu_offload(device=device)
    pipe.vae.enable_slicing()


def _apply_speedups(pipe: Any, o: DiffusersOptions) -> list[str]:
    """Same maths, faster kernels: fused attention projections, channels-last, torch.compile."""
    import torch

    speedups = []
    models = [m for m in (pipe.unet, pipe.controlnet, pipe.vae) if m is not None]
    if o.fuse_qkv:
        for m in models:
            m.fuse_qkv_projections()
        speedups.append("fuse_qkv")
    if o.channels_last:
        for m in models:
            m.to(memory_format=torch.channels_last)
        speedups.append("channels_last")
    if o.compile:
        pipe.unet = torch.compile(pipe.unet)
        pipe.controlnet = torch.compile(pipe.controlnet)
        speedups.append("torch.compile")
    return speedups


def _load_loras(pipe: Any, o: DiffusersOptions, sources: list[ModelSource], where: str) -> None:
    if not o.loras:
        return
    from diffusers.utils import is_peft_available

    if not is_peft_available():
        raise ModelUnavailableError(f"[{where}].loras needs the `peft` package (pip install peft) to load LoRA weights")
    names = []
    for i, (lora, src) in enumerate(zip(o.loras, sources, strict=True)):
        name = f"lora{i}"
        kwargs = {"weight_name": lora.weight_name} if lora.weight_name else {}
        try:
            pipe.load_lora_weights(src.load_from, adapter_name=name, **kwargs, **src.pretrained_kwargs)
        except Exception as exc:
            raise ModelUnavailableError(f"{src.role} {src.ref} failed to load: {type(exc).__name__}: {exc}") from exc
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[lora.scale for lora in o.loras])
