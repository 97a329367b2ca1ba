"""LoRA style weights on the SD 1.5 backend: a tiny LoRA trained on nothing, saved in the format
`save_lora_weights` writes, loaded through the configured path like a downloaded one."""

from __future__ import annotations

import numpy as np
import pytest

from stages.errors import ModelUnavailableError
from stages.scene.diffusers_options import LoraOptions
from stages.scene.sd15 import DiffusersSd15Scene, Sd15Options
from tests.stages.scene import tiny_diffusers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig as PeftLoraConfig
    from peft.utils import get_peft_model_state_dict

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-lora")
    models = tiny_diffusers.build_sd15(root)
    unet = UNet2DConditionModel.from_pretrained(models["model"], subfolder="unet")
    torch.manual_seed(3)
    unet.add_adapter(PeftLoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                   target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    lora_dir = root / "style-lora"
    StableDiffusionPipeline.save_lora_weights(lora_dir, unet_lora_layers=get_peft_model_state_dict(unet))
    yield models, lora_dir
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def request_():
    return tiny_diffusers.toy_request()


def backend(models, *loras):
    return DiffusersSd15Scene.load(Sd15Options(
        model=models["model"], controlnet=models["controlnet"], steps=2, strength=1.0, dtype="float32",
        device="cpu", max_side=0, scheduler="euler", prompt_template="{prompt}", loras=loras))


def test_lora_changes_the_scene_and_is_recorded(tiny, request_):
    models, lora_dir = tiny
    plain = backend(models).generate(request_)
    styled = backend(models, LoraOptions(path=str(lora_dir), scale=1.0)).generate(request_)
    assert np.abs(plain.rgb.astype(int) - styled.rgb.astype(int)).mean() > 0.5, "the LoRA must change the scene"
    (rec,) = styled.settings["loras"]
    assert rec["scale"] == 1.0 and str(lora_dir) in str(rec)


def test_lora_at_scale_zero_gives_the_plain_scene(tiny, request_):
    models, lora_dir = tiny
    plain = backend(models).generate(request_)
    off = backend(models, LoraOptions(path=str(lora_dir), scale=0.0)).generate(request_)
    assert np.abs(plain.rgb.astype(int) - off.rgb.astype(int)).max() <= 1


def test_a_lora_that_does_not_fit_the_model_names_the_file(tiny, tmp_path):
    models, _ = tiny
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pytorch_lora_weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailableError, match=r"LoRA #0 .*broken.* failed to load"):
        backend(models, LoraOptions(path=str(broken)))
