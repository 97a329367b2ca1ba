"""Settings shared by the diffusers scene backends; each backend's table has its own defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from stages.errors import ConfigError
from stages.scene import prompts

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
SchedulerName = Literal["dpmpp_2m_karras", "dpmpp_2m", "euler_a", "euler", "ddim", "unipc"]


@dataclass(frozen=True)
class LoraOptions:
    path: str = ""  # local .safetensors file, folder, or hub id
    scale: float = 1.0
    weight_name: str = ""  # file inside a folder or hub repo; empty: the library's default


@dataclass(frozen=True)
class DiffusersOptions:
    """Models are hub ids (read from the Hugging Face cache) or local diffusers-format folders."""

    model: str = ""  # inpainting pipeline: hub id or local folder (with model_index.json)
    revision: str = ""  # branch, tag or commit of a hub model; empty: main
    controlnet: str = ""  # depth ControlNet: hub id or local folder
    controlnet_revision: str = ""
    vae: str = ""  # optional VAE override: hub id or local folder; empty: the pipeline's own
    vae_revision: str = ""
    loras: tuple[LoraOptions, ...] = ()
    scheduler: SchedulerName = "dpmpp_2m_karras"
    steps: int = 30
    guidance_scale: float = 7.0
    controlnet_conditioning_scale: float = 0.6
    strength: float = 0.99  # int(steps * strength) denoising steps run
    prompt_template: str = "{prompt}, professional product photography, photorealistic, high detail"
    max_side: int = 0  # generate at most this many pixels on the long side, then resize; 0: the canvas
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"  # float16 runs as float32 on a CPU
    device: Literal["auto", "cuda", "cpu"] = "auto"
    model_cpu_offload: bool = False  # fits ~6 GiB GPUs, slower; switched on by itself after an out-of-memory
    vae_slicing: bool = False
    vae_tiling: bool = False
    batch_size: int = 1  # images per pipeline call when several are asked at once (halved on out-of-memory)
    prompt_cache: int = 32  # text embeddings kept per backend (LRU); 0: encode every time
    fuse_qkv: bool = False  # fused attention projections (UNet, ControlNet, VAE); not with loras
    channels_last: bool = False  # channels-last memory format for the convolutions
    compile: bool = False  # torch.compile the UNet and ControlNet (minutes on the first image; not with offload)
    guidance_end: float = 1.0  # share of the steps run with classifier-free guidance; the rest cost half
    # IP-Adapter: a reference image (row `reference_image` or [scene].reference_image) steers the look.
    ip_adapter: str = ""  # hub id or local folder holding the adapter weights; empty: no adapter
    ip_adapter_subfolder: str = ""
    ip_adapter_weight_name: str = ""
    image_encoder: str = ""  # CLIP vision encoder folder or hub id; empty: `image_encoder` beside the weights
    ip_adapter_scale: float = 0.6

    def check(self, where: str) -> None:
        """ConfigError naming the first bad value; what `load_config` runs, and the backend again on load."""
        problem = self._problem(where)
        if problem:
            raise ConfigError(problem)

    def _problem(self, where: str) -> str | None:
        d = self
        rules = [
            (bool(d.model.strip()), f"{where}.model is empty: name an inpainting pipeline (hub id or folder)"),
            (bool(d.controlnet.strip()), f"{where}.controlnet is empty: name a depth ControlNet (hub id or folder)"),
            (d.scheduler in SCHEDULERS, f"{where}.scheduler = {d.scheduler!r}: must be one of {sorted(SCHEDULERS)}"),
            (1 <= d.steps <= 500, f"{where}.steps = {d.steps}: must be 1..500"),
            (0 < d.strength <= 1, f"{where}.strength = {d.strength}: must be in (0, 1]"),
            (int(d.steps * d.strength) >= 1, f"{where}.strength = {d.strength} with steps = {d.steps} leaves no "
                                             "denoising step (int(steps * strength) must be >= 1)"),
            (0 <= d.guidance_scale <= 50, f"{where}.guidance_scale = {d.guidance_scale}: must be 0..50"),
            (0 < d.guidance_end <= 1, f"{where}.guidance_end = {d.guidance_end}: must be in (0, 1]"),
            (0 <= d.controlnet_conditioning_scale <= 5,
             f"{where}.controlnet_conditioning_scale = {d.controlnet_conditioning_scale}: must be 0..5"),
            (d.max_side == 0 or 64 <= d.max_side <= 8192, f"{where}.max_side = {d.max_side}: must be 0 or 64..8192"),
            (1 <= d.batch_size <= 64, f"{where}.batch_size = {d.batch_size}: must be 1..64"),
            (0 <= d.prompt_cache <= 10_000, f"{where}.prompt_cache = {d.prompt_cache}: must be 0..10000"),
            (not (d.fuse_qkv and d.loras),
             f"{where}: fuse_qkv does not combine with loras (fuse the LoRA into the model)"),
            (not (d.compile and d.model_cpu_offload), f"{where}: compile does not combine with model_cpu_offload"),
            (0 <= d.ip_adapter_scale <= 5, f"{where}.ip_adapter_scale = {d.ip_adapter_scale}: must be 0..5"),
            (not d.ip_adapter or bool(d.ip_adapter_weight_name.strip()),
             f"{where}.ip_adapter_weight_name is empty: name the adapter's weight file"),
        ]
        for i, lora in enumerate(d.loras):
            rules.append((bool(lora.path.strip()), f"{where}.loras[{i}].path is empty"))
            rules.append((-10 <= lora.scale <= 10, f"{where}.loras[{i}].scale = {lora.scale}: must be -10..10"))
        problem = prompts.template_error(d.prompt_template)
        rules.append((problem is None, f"{where}.prompt_template = {d.prompt_template!r}: {problem}"))
        return next((msg for ok, msg in rules if not ok), None)


def working_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size the pipeline runs at: the canvas, shrunk to `max_side` (0: no limit), floored to 8."""
    s = min(1.0, max_side / max(width, height)) if max_side else 1.0
    return max(8, int(width * s) // 8 * 8), max(8, int(height * s) // 8 * 8)
