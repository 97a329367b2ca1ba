"""`diffusers-sd15`: Stable Diffusion 1.5 inpainting with a depth ControlNet (StableDiffusionControlNetInpaintPipeline)."""

from __future__ import annotations

from dataclasses import dataclass

from stages.scene.diffusers import DiffusersScene
from stages.scene.diffusers_options import DiffusersOptions


@dataclass(frozen=True)
class Sd15Options(DiffusersOptions):
    """[scene.diffusers_sd15]"""

    model: str = "stable-diffusion-v1-5/stable-diffusion-inpainting"
    controlnet: str = "lllyasviel/control_v11f1p_sd15_depth"
    guidance_scale: float = 7.5
    controlnet_conditioning_scale: float = 0.8
    max_side: int = 768  # SD 1.5 works best near 512-768 px: larger canvases are generated smaller, then resized
    ip_adapter_subfolder: str = "models"
    ip_adapter_weight_name: str = "ip-adapter_sd15.safetensors"
    safety_checker: bool = True  # when the model ships one: a flagged image fails the product instead of publishing black


class DiffusersSd15Scene(DiffusersScene):
    """Stable Diffusion 1.5 inpainting with a depth ControlNet ([scene.diffusers_sd15])."""

    name = "diffusers-sd15"
    Options = Sd15Options
    pipeline_class = "StableDiffusionControlNetInpaintPipeline"
    xl = False
