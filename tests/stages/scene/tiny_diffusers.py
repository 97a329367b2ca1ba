"""Tiny, randomly initialised models with the real architectures, built offline from configs.

They let the tests load diffusion and depth models through the production loading code
(`from_pretrained` on a folder) in well under a second each, without any download:

- `build_sdxl(folder)`: an SDXL inpainting pipeline (9-channel UNet, two text encoders) plus
  an SDXL depth ControlNet, as `StableDiffusionXLControlNetInpaintPipeline` loads them;
- `build_sd15(folder)`: the same for SD 1.5 (`StableDiffusionControlNetInpaintPipeline`);
- `build_depth_anything(folder)`: a Depth Anything model and its image processor, as
  `transformers.pipeline("depth-estimation", model=folder)` loads them;
- `build_ip_adapter(folder, model)`: IP-Adapter weights for a built pipeline's UNet plus a CLIP
  vision encoder, laid out as the h94/IP-Adapter repo is (`load_ip_adapter` reads them).

Each builder returns the paths a config needs and writes nothing outside `folder`.
"""

from __future__ import annotations

import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to one printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_clip_tokenizer(folder: Path) -> Path:
    """A CLIP tokenizer with the 256 byte symbols (and their end-of-word forms), no merges."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tok.save_pretrained(folder)
    return folder


def _vae():
    from diffusers import AutoencoderKL

    # Four blocks: a scale factor of 8, which the ControlNet conditioning embedding assumes.
    return AutoencoderKL(
        block_out_channels=(8, 8, 16, 16), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=64,
    )


def _text_config(projection_dim: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_size=32, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=520, projection_dim=projection_dim,
        hidden_act="gelu", max_position_embeddings=77,
    )


_BLOCKS = dict(
    block_out_channels=(16, 32), layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), norm_num_groups=8,
)
_COND = (8, 8, 16, 16)  # ControlNet conditioning embedding: three stride-2 steps (scale 8)


def build_sdxl(folder: Path, seed: int = 0) -> dict[str, str]:
    import torch
    from diffusers import (
        ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLControlNetInpaintPipeline, UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    time_dim, proj = 8, 32
    xl = dict(
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=time_dim, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * time_dim + proj, cross_attention_dim=64,
    )
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=9, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **_BLOCKS, **xl,
    )
    controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=_COND, **_BLOCKS, **xl)
    tok = write_clip_tokenizer(folder / "_tokenizer")
    from transformers import CLIPTokenizer

    pipe = StableDiffusionXLControlNetInpaintPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(proj)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(proj)),
        tokenizer=CLIPTokenizer.from_pretrained(tok), tokenizer_2=CLIPTokenizer.from_pretrained(tok),
        unet=unet, controlnet=controlnet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
            timestep_spacing="leading",
        ),
        requires_aesthetics_score=False, force_zeros_for_empty_prompt=True,
    )
    base, cn = folder / "sdxl-inpaint", folder / "sdxl-controlnet-depth"
    pipe.save_pretrained(base)  # the ControlNet is saved inside too; the config points at its own folder
    controlnet.save_pretrained(cn)
    return {"model": str(base), "controlnet": str(cn), "vae": str(base / "vae")}


def build_sd15(folder: Path, seed: int = 0) -> dict[str, str]:
    import torch
    from diffusers import (
        ControlNetModel, PNDMScheduler, StableDiffusionControlNetInpaintPipeline, UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    common = dict(cross_attention_dim=32, attention_head_dim=(2, 4))
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=9, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **_BLOCKS, **common,
    )
    controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=_COND, **_BLOCKS, **common)
    tok = write_clip_tokenizer(folder / "_tokenizer")
    pipe = StableDiffusionControlNetInpaintPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config()), tokenizer=CLIPTokenizer.from_pretrained(tok),
        unet=unet, controlnet=controlnet,
        scheduler=PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                skip_prk_steps=True, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    base, cn = folder / "sd15-inpaint", folder / "sd15-controlnet-depth"
    pipe.save_pretrained(base)
    controlnet.save_pretrained(cn)
    return {"model": str(base), "controlnet": str(cn), "vae": str(base / "vae")}


def build_depth_anything(folder: Path, seed: int = 0) -> str:
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(seed)
    backbone = Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=56,
        patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False, apply_layernorm=True,
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, patch_size=14, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type="relative",
    )
    model = DepthAnythingForDepthEstimation(cfg).eval()
    with torch.no_grad():  # the default init is so small that the ReLU head outputs ~0 everywhere
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                torch.nn.init.normal_(module.weight, std=0.3)
                if module.bias is not None:
                    torch.nn.init.uniform_(module.bias, 0.0, 0.2)
        model.head.conv2.weight.abs_()  # positive through the head's ReLUs: a non-flat map
        model.head.conv3.weight.abs_()
    processor = DPTImageProcessor(
        do_resize=True, size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
        do_rescale=True, do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )
    out = folder / "depth-anything-tiny"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)


def build_ip_adapter(folder: Path, model: str, subfolder: str = "models", seed: int = 0) -> dict[str, str]:
    """IP-Adapter weights matching the UNet saved under `model`, beside a tiny image encoder.

    The file holds what `load_ip_adapter` expects of the plain IP-Adapter: an image projection
    (`image_proj.proj`, `image_proj.norm`: four tokens of the UNet's cross-attention width from
    the encoder's image embedding) and, for every cross-attention layer in the UNet's processor
    order, `ip_adapter.<1, 3, 5, ...>.to_k_ip/to_v_ip` key and value projections.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    root = folder / "ip-adapter"
    embed_dim = 32
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=embed_dim, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        image_size=32, patch_size=4, num_channels=3,
    ))
    encoder.save_pretrained(root / subfolder / "image_encoder")
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    cross, blocks = unet.config.cross_attention_dim, list(unet.config.block_out_channels)
    tensors = {
        "image_proj.proj.weight": torch.randn(4 * cross, embed_dim) * 0.5,
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = blocks[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
        else:
            hidden = blocks[int(name[len("down_blocks.")])]
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.5
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.5
        key_id += 2
    weight_name = "ip-adapter_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(root / subfolder / weight_name))
    return {"ip_adapter": str(root), "subfolder": subfolder, "weight_name": weight_name,
            "image_encoder": str(root / subfolder / "image_encoder")}


def toy_request(seed: int = 11):
    """A 128 px scene request around a flat rectangular product: enough for the tiny pipelines."""
    import cv2
    import numpy as np

    from stages.depth.geometric import GeometricDepth, GeometricOptions
    from stages.layout import LayoutOptions, place_product
    from stages.scene import SceneRequest

    rgb = np.full((120, 90, 3), (150, 60, 40), np.uint8)
    alpha = np.zeros((120, 90), np.uint8)
    cv2.rectangle(alpha, (20, 15), (70, 105), 255, -1)
    layout = place_product(rgb, alpha, LayoutOptions(width=128, height=128))
    return SceneRequest(layout, GeometricDepth(GeometricOptions()).run(layout, 0.62), "linen", "text", seed, 0.62)
