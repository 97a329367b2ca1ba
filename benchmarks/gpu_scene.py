"""GPU cost of one SDXL ControlNet-depth inpainting scene: stock settings vs an optimised path.

Builds the real SDXL architecture at full size from the published configs written inline
below (9-channel inpainting UNet, depth ControlNet, fp16-fix VAE, CLIP ViT-L and OpenCLIP
bigG text encoders) with random weights: no download, and the weights do not change the cost.
Then times the production backend (`stages.scene.sdxl.DiffusersSdxlScene.from_pipeline`)
on one product request, 1024x1024, 30 steps (strength 1.0: every step runs), CFG on:

- stock: float16 and diffusers' default attention processors, nothing else: what
  [scene.diffusers_sdxl] runs with its default options;
- optimised: bfloat16, SDPA attention set explicitly, fused QKV projections, channels-last
  (the `fuse_qkv` / `channels_last` options), plus torch.compile of UNet and ControlNet with
  `--compile` (the `compile` option; long warm-up).

FLOPs per image are counted with torch.utils.flop_counter on 1- and 2-step runs and
extrapolated to the step count; MFU is against the device's dense bf16/fp16 peak
(`--peak-tflops` to set it). Prints seconds/image, images/s and MFU for both, and the ratio.

Key figure (last line): optimised speed-up over stock (stock s/image / optimised s/image).

    .venv/bin/python benchmarks/gpu_scene.py              # CUDA GPU with ~24 GiB free
    .venv/bin/python benchmarks/gpu_scene.py --compile    # adds torch.compile
    .venv/bin/python benchmarks/gpu_scene.py --tiny       # tiny config on CPU at 128 px: smoke run (< 60 s)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# --- Published configs (diffusers format) ------------------------------------------------------

SDXL_INPAINT_UNET = {  # diffusers/stable-diffusion-xl-1.0-inpainting-0.1 unet/config.json
    "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
    "center_input_sample": False, "class_embed_type": None, "class_embeddings_concat": False,
    "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 2048, "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 9,
    "layers_per_block": 2, "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
    "num_attention_heads": None, "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816, "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False, "resnet_time_scale_shift": "default", "sample_size": 128,
    "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
    "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "upcast_attention": None,
    "use_linear_projection": True,
}
SDXL_DEPTH_CONTROLNET = {  # diffusers/controlnet-depth-sdxl-1.0 config.json
    "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
    "class_embed_type": None, "conditioning_channels": 3, "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "controlnet_conditioning_channel_order": "rgb", "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "encoder_hid_dim": None, "encoder_hid_dim_type": None, "flip_sin_to_cos": True,
    "freq_shift": 0, "global_pool_conditions": False, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "num_attention_heads": None,
    "num_class_embeds": None, "only_cross_attention": False, "projection_class_embeddings_input_dim": 2816,
    "resnet_time_scale_shift": "default", "transformer_layers_per_block": [1, 2, 10], "upcast_attention": None,
    "use_linear_projection": True,
}
SDXL_VAE = {  # madebyollin/sdxl-vae-fp16-fix config.json
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "force_upcast": False, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "out_channels": 3, "sample_size": 512, "scaling_factor": 0.13025,
}
CLIP_L = dict(  # SDXL text_encoder: CLIP ViT-L/14 text tower
    hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
    projection_dim=768, hidden_act="quick_gelu", max_position_embeddings=77, vocab_size=49408,
)
CLIP_BIGG = dict(  # SDXL text_encoder_2: OpenCLIP ViT-bigG/14 text tower, with projection
    hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
    projection_dim=1280, hidden_act="gelu", max_position_embeddings=77, vocab_size=49408,
)
SDXL_SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    steps_offset=1, timestep_spacing="leading", prediction_type="epsilon",
)

# --- Tiny configs for --tiny (same structure, toy sizes) ---------------------------------------

_TINY_XL = dict(
    block_out_channels=[32, 64], layers_per_block=1, attention_head_dim=[2, 4], use_linear_projection=True,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"], addition_embed_type="text_time",
    addition_time_embed_dim=8, transformer_layers_per_block=[1, 1], projection_class_embeddings_input_dim=80,
    cross_attention_dim=64, norm_num_groups=32,
)
TINY_UNET = {**_TINY_XL, "in_channels": 9, "out_channels": 4, "sample_size": 16,
             "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"]}
TINY_CONTROLNET = {**_TINY_XL, "in_channels": 4, "conditioning_embedding_out_channels": [8, 8, 16, 16]}
TINY_VAE = {"block_out_channels": [32, 32, 32, 32], "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 1, "latent_channels": 4,
            "norm_num_groups": 32, "force_upcast": False}
TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                 projection_dim=32, hidden_act="gelu", max_position_embeddings=77, vocab_size=520)


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16/fp16 tensor-core peak (no sparsity) of known accelerators, TFLOP/s."""
    n = device_name.upper()
    if "H200" in n or "GH200" in n:
        return 989.4
    if "H100" in n:
        return 756.0 if "PCIE" in n else 835.0 if "NVL" in n else 989.4
    if "A100" in n:
        return 312.0
    if "L40S" in n:
        return 362.1
    if "L4" in n.split():
        return 121.0
    return None


def write_tokenizer(folder: Path) -> Path:
    """A byte-level CLIP tokenizer (256 byte symbols, their end-of-word forms, no merges): offline."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    symbols = [chr(c) for c in cs]
    vocab = {s: i for i, s in enumerate(symbols)} | {s + "</w>": i + 256 for i, s in enumerate(symbols)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def build_pipeline(tiny: bool, device: str, dtype: Any, tmp: Path) -> Any:
    """The SDXL ControlNet inpainting pipeline with random weights, built directly on `device`."""
    import torch
    from diffusers import (
        AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLControlNetInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    def text(cfg: dict[str, Any]) -> Any:
        return CLIPTextConfig(**cfg, bos_token_id=512, eos_token_id=513, pad_token_id=513)

    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # no notice per `.to(dtype)` of a freshly built model
    torch.manual_seed(0)
    parts: dict[str, Any] = {}
    specs = {
        "unet": (UNet2DConditionModel, TINY_UNET if tiny else SDXL_INPAINT_UNET),
        "controlnet": (ControlNetModel, TINY_CONTROLNET if tiny else SDXL_DEPTH_CONTROLNET),
        "vae": (AutoencoderKL, TINY_VAE if tiny else SDXL_VAE),
        "text_encoder": (CLIPTextModel, text(TINY_TEXT if tiny else CLIP_L)),
        "text_encoder_2": (CLIPTextModelWithProjection, text(TINY_TEXT if tiny else CLIP_BIGG)),
    }
    for name, (cls, cfg) in specs.items():
        t0 = time.perf_counter()
        with torch.device(device):  # initialise on the accelerator: seconds instead of minutes on a CPU
            model = cls(**cfg) if isinstance(cfg, dict) else cls(cfg)
        parts[name] = model.to(dtype=dtype).eval()  # one model at a time: float32 copies never pile up
        n = sum(p.numel() for p in model.parameters())
        print(f"  built {name:15s} {n / 1e6:8.1f} M params in {time.perf_counter() - t0:5.1f} s")
    tok = CLIPTokenizer(str(write_tokenizer(tmp) / "vocab.json"), str(tmp / "merges.txt"), model_max_length=77)
    return StableDiffusionXLControlNetInpaintPipeline(
        tokenizer=tok, tokenizer_2=tok, scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
        requires_aesthetics_score=False, force_zeros_for_empty_prompt=True, **parts,
    )


def make_request(size: int, seed: int) -> Any:
    """The scene request of one product, laid out and given its depth by the pipeline's own steps."""
    import cv2
    import numpy as np

    from stages.depth.geometric import GeometricDepth, GeometricOptions
    from stages.layout import LayoutOptions
    from stages.pipeline import Brief, Parts, Photo, StepOptions, stage
    from stages.scene import SceneRequest
    from stages.scene.chain import SceneChain
    from stages.scene.procedural import ProceduralOptions, ProceduralScene

    rgb = np.full((600, 450, 3), 60, np.uint8)
    alpha = np.zeros((600, 450), np.uint8)
    cv2.ellipse(alpha, (225, 300), (170, 260), 0, 0, 360, 255, -1)
    procedural = SceneChain(["procedural"], lambda name: ProceduralScene(ProceduralOptions()))
    parts = Parts(None, GeometricDepth(GeometricOptions()), procedural, None,  # the photo brings its own alpha
                  StepOptions(layout=LayoutOptions(width=size, height=size)))
    brief = Brief("warm oak table, soft window light", "text, watermark")
    staging = stage(parts, Photo(rgb, alpha), brief, [seed], checks="none")
    return SceneRequest(staging.layout, staging.depth, brief.prompt, brief.negative_prompt, seed,
                        parts.options.layout.horizon)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def count_flops(pipe: Any, options: Any, request: Any, steps: int, batch: int) -> float:
    """FLOPs of one image: counted at 1 and 2 steps, extrapolated linearly to `steps`."""
    from torch.utils.flop_counter import FlopCounterMode

    from stages.scene.sdxl import DiffusersSdxlScene

    counts = []
    for n in (1, 2):
        opts = replace(options, steps=n, fuse_qkv=False, channels_last=False, compile=False)
        backend = DiffusersSdxlScene.from_pipeline(opts, pipe)
        with FlopCounterMode(display=False) as counter:
            backend.generate_many([replace(request, seed=request.seed + i) for i in range(batch)])
        counts.append(counter.get_total_flops() / batch)
    per_step = counts[1] - counts[0]
    return counts[0] - per_step + steps * per_step


def time_backend(backend: Any, request: Any, batch: int, warmup: int, runs: int, device: str) -> dict[str, float]:
    import torch

    reqs = [replace(request, seed=request.seed + i) for i in range(batch)]
    t0 = time.perf_counter()
    for _ in range(warmup):
        backend.generate_many(reqs)
    sync(device)
    warm_s = time.perf_counter() - t0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        backend.generate_many(reqs)
        sync(device)
        times.append(time.perf_counter() - t0)
    per_image = statistics.median(times) / batch
    mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {"s_per_image": per_image, "images_per_s": 1.0 / per_image, "warmup_s": warm_s, "peak_gib": mem,
            "spread": (max(times) - min(times)) / batch}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny config on CPU at 128 px: smoke run")
    ap.add_argument("--size", type=int, default=None, help="square canvas side (default 1024, tiny 128)")
    ap.add_argument("--steps", type=int, default=30, help="denoising steps")
    ap.add_argument("--batch", type=int, default=1, help="images per pipeline call (variants of one product)")
    ap.add_argument("--runs", type=int, default=None, help="timed calls per path (default 5, tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2, tiny 1)")
    ap.add_argument("--compile", action="store_true", help="torch.compile UNet and ControlNet in the optimised path")
    ap.add_argument("--stock-dtype", default=None, choices=["float16", "bfloat16", "float32"],
                    help="stock path dtype (default float16 on a GPU, float32 on a CPU)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs)")
    ap.add_argument("--device", default=None, choices=["cuda", "cpu"], help="default: cuda, or cpu with --tiny")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's; tiny 1)")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    import torch

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # random weights: NaNs in the decoded image
    device = args.device or ("cpu" if args.tiny else "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --tiny for the CPU smoke run", file=sys.stderr)
        return 2
    threads = args.threads or (1 if args.tiny else None)
    if threads:
        torch.set_num_threads(threads)  # toy tensors on a CPU: thread hand-offs cost more than they save
    size = args.size or (128 if args.tiny else 1024)
    runs = args.runs or (1 if args.tiny else 5)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 2)
    stock_dtype = getattr(torch, args.stock_dtype or ("float32" if device == "cpu" else "float16"))
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    peak = args.peak_tflops or (peak_tflops(name) if device == "cuda" else None)
    print(f"device: {name}; torch {torch.__version__}; canvas {size}x{size}, {args.steps} steps, CFG on, "
          f"batch {args.batch}, {'tiny' if args.tiny else 'full-size SDXL'} architecture, random weights")

    from stages.scene.sdxl import DiffusersSdxlScene, SdxlOptions

    base = SdxlOptions(
        steps=args.steps, strength=1.0, guidance_scale=7.0, scheduler="dpmpp_2m_karras", batch_size=args.batch,
        max_side=0, device=device, prompt_template="{prompt}",
    )
    request = make_request(size, seed=1)

    with tempfile.TemporaryDirectory(prefix="bench-gpu-scene-") as tmp:
        t0 = time.perf_counter()
        pipe = build_pipeline(args.tiny, device, stock_dtype, Path(tmp))
        print(f"built in {time.perf_counter() - t0:.1f} s")
        flops = count_flops(pipe, base, request, args.steps, args.batch)
        print(f"FLOPs per image: {flops / 1e12:.3f} TFLOP "
              f"(MFU against {f'{peak:.0f} TFLOP/s' if peak else 'an unknown peak: pass --peak-tflops'})")

        stock = DiffusersSdxlScene.from_pipeline(base, pipe)
        results = {"stock": time_backend(stock, request, args.batch, warmup, runs, device)}
        del stock

        from diffusers.models.attention_processor import AttnProcessor2_0

        if args.compile:
            import torch._inductor.config as inductor

            inductor.conv_1x1_as_mm = True
            inductor.coordinate_descent_tuning = True
            inductor.epilogue_fusion = False
            inductor.coordinate_descent_check_all_directions = True
        pipe.to(dtype=torch.bfloat16)
        for model in (pipe.unet, pipe.controlnet, pipe.vae):
            model.set_attn_processor(AttnProcessor2_0())  # SDPA (flash / memory-efficient kernels)
        fast = replace(base, fuse_qkv=True, channels_last=True, compile=args.compile)
        optimised = DiffusersSdxlScene.from_pipeline(fast, pipe)
        results["optimised"] = time_backend(optimised, request, args.batch, warmup, runs, device)

    labels = {
        "stock": f"stock ({str(stock_dtype).removeprefix('torch.')}, default attention)",
        "optimised": "optimised (bf16, SDPA, fused QKV, channels-last" + (", torch.compile)" if args.compile else ")"),
    }
    print()
    width = max(len(v) for v in labels.values())
    print(f"{'path':{width}s} {'s/image':>9s} {'images/s':>9s} {'MFU':>7s} {'warm-up s':>10s} {'peak GiB':>9s}")
    for key, r in results.items():
        mfu = f"{100 * flops / r['s_per_image'] / (peak * 1e12):6.1f}%" if peak else "    n/a"
        mem = f"{r['peak_gib']:9.1f}" if r["peak_gib"] == r["peak_gib"] else f"{'-':>9s}"
        print(f"{labels[key]:{width}s} {r['s_per_image']:9.3f} {r['images_per_s']:9.3f} {mfu:>7s} "
              f"{r['warmup_s']:10.1f} {mem}")
    ratio = results["stock"]["s_per_image"] / results["optimised"]["s_per_image"]
    print(f"speed-up optimised/stock: {ratio:.2f}x ({results['stock']['s_per_image']:.3f} -> "
          f"{results['optimised']['s_per_image']:.3f} s/image at {size}x{size}, {args.steps} steps, {name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
