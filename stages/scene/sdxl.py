"""`diffusers-sdxl`: SDXL inpainting with a depth ControlNet (StableDiffusionXLControlNetInpaintPipeline)."""

from __future__ import annotations

from dataclasses import dataclass

from stages.scene.diffusers import DiffusersScene
from stages.scene.diffusers_options import DiffusersOptions


@dataclass(frozen=True)
class SdxlOptions(DiffusersOptions):
    """[scene.diffusers_sdxl]"""

    model: str = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
    controlnet: str = "diffusers/controlnet-depth-sdxl-1.0"
    vae: str = "madebyollin/sdxl-vae-fp16-fix"  # the stock SDXL VAE overflows in float16; "" keeps the pipeline's
    guidance_scale: float = 7.0
    controlnet_conditioning_scale: float = 0.5
    ip_adapter_subfolder: str = "sdxl_models"
    ip_adapter_weight_name: str = "ip-adapter_sdxl.safetensors"


class DiffusersSdxlScene(DiffusersScene):
    """SDXL inpainting with a depth ControlNet ([scene.diffusers_sdxl])."""

    name = "diffusers-sdxl"
    Options = SdxlOptions
    pipeline_class = "StableDiffusionXLControlNetInpaintPipeline"
    xl = True
