"""GPU cost of one SDXL ControlNet-depth inpainting scene: diffusers as shipped vs the project's backend optimised.

Builds the real SDXL architecture at full size from the published configs written inline
below (9-channel inpainting UNet, depth ControlNet, fp16-fix VAE, CLIP ViT-L and OpenCLIP
bigG text encoders) with random weights: no download, and the weights do not change the cost.
One product request, 1024x1024, 30 steps (strength 1.0: every step runs), CFG 7, float16, on
the same components in both paths:

- stock: diffusers' own `StableDiffusionXLControlNetInpaintPipeline` called plainly (prompts as
  text, default attention, no compile);
- optimised: the production backend (`stages.scene.sdxl.DiffusersSdxlScene.from_pipeline`) with
  every speed option it has: `fuse_qkv`, `channels_last`, `compile` (torch.compile of UNet and
  ControlNet; `--no-compile` to leave it out) and `guidance_end` (0.8: the last 20% of the
  steps without classifier-free guidance, at half the cost; `--guidance-end 1` to leave it out).
  Random weights cannot show what guidance_end does to the picture: judge that on real weights
  before switching it on in production.

Every timed call has a prompt never used before, so the backend's prompt-embedding cache saves
nothing (text encoding is counted in both paths). Times are seconds per image, median and p90
over the timed calls. MFU: the UNet + ControlNet FLOPs actually run per image (counted with
torch.utils.flop_counter) over the image's whole time, against the device's dense bf16/fp16
peak (H100/H200 SXM: 989 TFLOP/s; `--peak-tflops` to set it). Targets: >= 2x stock and, on an
H100/H200, >= 40% MFU. These GPU figures have not been measured on the development machines
(no GPU there); without a CUDA device the script says so and prints a NOT RUN key line.

Key figure (last line): stock s/image / optimised s/image.

    python benchmarks/gpu_scene.py              # CUDA GPU with ~24 GiB free; torch.compile warms up for minutes
    python benchmarks/gpu_scene.py --tiny       # tiny models on the CPU at 128 px: both paths end to end (seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks._common import machine_line, median, percentile, table  # noqa: E402

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


def count_flops(pipe: Any, options: Any, request: Any, steps: int, batch: int) -> tuple[float, float]:
    """FLOPs of one image and of one denoising step (UNet + ControlNet, both CFG halves): counted at
    1 and 2 steps, the image's extrapolated linearly to `steps`."""
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
    return counts[0] - per_step + steps * per_step, per_step


def fresh(request: Any, call: int, batch: int) -> list[Any]:
    """The requests of timed call `call`: a prompt never seen before (the backend's prompt-embedding
    cache must not count as a speed-up) and one seed per image."""
    prompt = f"{request.prompt}, take {call}"
    return [replace(request, prompt=prompt, seed=request.seed + call * batch + i) for i in range(batch)]


def timed(call: Any, batch: int, warmup: int, runs: int, device: str) -> dict[str, float]:
    """Seconds per image of `call(i)` (median and p90 over `runs` calls after `warmup` untimed ones)."""
    import torch

    t0 = time.perf_counter()
    for i in range(warmup):
        call(i)
    sync(device)
    warm_s = time.perf_counter() - t0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup, warmup + runs):
        t0 = time.perf_counter()
        call(i)
        sync(device)
        times.append((time.perf_counter() - t0) / batch)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {"median": median(times), "p90": percentile(times, 0.9), "warmup_s": warm_s, "peak_gib": mem}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU at 128 px: proves both paths run")
    ap.add_argument("--size", type=int, default=None, help="square canvas side (default 1024, tiny 128)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 30, tiny 5)")
    ap.add_argument("--batch", type=int, default=1, help="images per call (variants of one product)")
    ap.add_argument("--runs", type=int, default=None, help="timed calls per path (default 10, tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3, tiny 1)")
    ap.add_argument("--no-compile", action="store_true", help="optimised path without torch.compile (tiny: always)")
    ap.add_argument("--guidance-end", type=float, default=0.8,
                    help="optimised path's guidance_end: share of the steps with guidance (default 0.8; 1: all)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's; tiny 1)")
    return ap.parse_args(argv)


GUIDANCE = 7.0
CONTROL_SCALE = 0.5
TARGET_SPEEDUP = 2.0
TARGET_MFU = 0.40


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # random weights: NaNs in the decoded image
    device = "cpu" if args.tiny else "cuda"
    key = "gpu_scene_speedup_vs_stock" + ("_tiny_cpu" if args.tiny else "")
    target = f"target >= {TARGET_SPEEDUP:g} with MFU >= {TARGET_MFU:.0%}"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_scene: no CUDA device here: the real benchmark needs one (an H100/H200 for the MFU target); "
              "`--tiny` runs both paths on tiny models on the CPU", file=sys.stderr)
        print(f"{key}=nan {target} NOT RUN")
        return 2
    threads = args.threads or (1 if args.tiny else None)
    if threads:
        torch.set_num_threads(threads)  # toy tensors on a CPU: thread hand-offs cost more than they save
    size = args.size or (128 if args.tiny else 1024)
    steps = args.steps or (5 if args.tiny else 30)
    runs = args.runs or (2 if args.tiny else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    dtype = torch.float32 if args.tiny else torch.float16
    compile_ = not (args.tiny or args.no_compile)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    peak = args.peak_tflops or (peak_tflops(name) if device == "cuda" else None)
    print(machine_line())
    print(f"device: {name}; torch {torch.__version__}; canvas {size}x{size}, {steps} steps, strength 1.0, "
          f"CFG {GUIDANCE:g}, batch {args.batch}, {'tiny' if args.tiny else 'full-size SDXL'} architecture, random "
          f"weights, {str(dtype).removeprefix('torch.')}; a fresh prompt per call (text encoding counted in both)")

    from stages.scene.sdxl import DiffusersSdxlScene, SdxlOptions

    base = SdxlOptions(steps=steps, strength=1.0, guidance_scale=GUIDANCE, controlnet_conditioning_scale=CONTROL_SCALE,
                       scheduler="euler", batch_size=args.batch, max_side=0, device=device, prompt_template="{prompt}")
    request = make_request(size, seed=1)

    with tempfile.TemporaryDirectory(prefix="bench-gpu-scene-") as tmp:
        t0 = time.perf_counter()
        pipe = build_pipeline(args.tiny, device, dtype, Path(tmp))
        pipe.set_progress_bar_config(disable=True)
        print(f"built in {time.perf_counter() - t0:.1f} s")
        per_image, per_step = count_flops(pipe, base, request, steps, args.batch)
        print(f"FLOPs: {per_step / 1e12:.3f} TFLOP per step of UNet + ControlNet with CFG (both halves), "
              f"{per_image / 1e12:.2f} TFLOP per image in all")

        prepared = DiffusersSdxlScene.from_pipeline(base, pipe).prepare(request)
        results = {"stock": timed(lambda i: stock_call(pipe, prepared, fresh(request, i, args.batch), steps),
                                  args.batch, warmup, runs, device)}

        if compile_:
            import torch._dynamo
            import torch._inductor.config as inductor

            inductor.conv_1x1_as_mm = True
            inductor.coordinate_descent_tuning = True
            inductor.epilogue_fusion = False
            inductor.coordinate_descent_check_all_directions = True
            # guidance_end halves the batch for the last steps: one static graph per batch size,
            # not a dynamic-shape graph for the second size seen
            torch._dynamo.config.automatic_dynamic_shapes = False
        fast = replace(base, fuse_qkv=True, channels_last=True, compile=compile_, guidance_end=args.guidance_end,
                       prompt_cache=base.prompt_cache)
        optimised = DiffusersSdxlScene.from_pipeline(fast, pipe)
        results["optimised"] = timed(lambda i: optimised.generate_many(fresh(request, i, args.batch)), args.batch,
                                     warmup, runs, device)
        assert optimised.embed_hits == 0, "a timed call reused cached prompt embeddings"

    guided = math.ceil(args.guidance_end * steps)
    work = {"stock": per_step * steps, "optimised": per_step * (guided + (steps - guided) / 2)}
    labels = {"stock": f"stock: diffusers pipeline called plainly ({str(dtype).removeprefix('torch.')}, default "
                       "attention, no compile)",
              "optimised": "optimised: backend with fuse_qkv, channels_last" + (", compile" if compile_ else "")
                           + f", guidance_end {args.guidance_end:g}"}
    rows, mfu = [], {}
    for k, r in results.items():
        mfu[k] = work[k] / r["median"] / (peak * 1e12) if peak else float("nan")
        rows.append((labels[k], r["median"], r["p90"], 1 / r["median"], 100 * mfu[k], r["warmup_s"], r["peak_gib"]))
    print()
    print(table(["path", "s/image", "p90 s", "images/s", "MFU %", "warm-up s", "peak GiB"], rows, floatfmt="{:.3f}"))
    print(f"MFU: UNet + ControlNet FLOPs actually run ({guided} guided steps, {steps - guided} conditional-only in "
          f"the optimised path) over the whole image's time, against {f'{peak:.0f} TFLOP/s' if peak else 'no known peak'}")
    ratio = results["stock"]["median"] / results["optimised"]["median"]
    mfu_ok = mfu["optimised"] >= TARGET_MFU if peak and ("H100" in name or "H200" in name) else None
    print("gpu_scene_mfu_optimised=" + (f"{100 * mfu['optimised']:.1f}%" if peak else "n/a") + f" target >= "
          f"{TARGET_MFU:.0%} " + ({True: "PASS", False: "FAIL", None: "(not an H100/H200: not judged)"}[mfu_ok]))
    ok = ratio >= TARGET_SPEEDUP and mfu_ok is not False
    print(f"{key}={ratio:.2f} {target} {'PASS' if ok else 'FAIL'}")
    return 0


def stock_call(pipe: Any, prepared: Any, requests: list[Any], steps: int) -> Any:
    """One plain call of diffusers' pipeline for `len(requests)` images of one product: prompts as text,
    its own scheduler settings, one generator per image, nothing else."""
    import torch

    n = len(requests)
    return pipe(
        prompt=[r.prompt for r in requests], negative_prompt=[r.negative_prompt for r in requests],
        image=[prepared.image] * n, mask_image=[prepared.mask_image] * n, control_image=[prepared.control_image] * n,
        height=prepared.size[1], width=prepared.size[0], strength=1.0, num_inference_steps=steps,
        guidance_scale=GUIDANCE, controlnet_conditioning_scale=CONTROL_SCALE, output_type="np",
        generator=[torch.Generator(pipe.device.type).manual_seed(r.seed) for r in requests],
    )


if __name__ == "__main__":
    sys.exit(main())
