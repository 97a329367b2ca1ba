"""Diffusion scene backends and the transformers depth backend, on tiny random-weight models.

The models have the real architectures at toy sizes (tests/stages/scene/tiny_diffusers.py), are saved
to a temp folder once per module and loaded through the production code (`from_pretrained`
on the configured paths), so loading, scheduler selection, inputs, seeding, batching, caching
and the recorded settings are all exercised without any download. Image quality is not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from ops.config import load_config
from provenance.iptc import COMPOSITE_TRAINED, composite_source_type
from stages.composite import composite
from stages.depth import preview_canvas
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.depth.transformers import TransformersDepth, TransformersDepthOptions
from stages.errors import ConfigError, ModelUnavailableError, StageError
from stages.layout import LayoutOptions, place_product
from stages.scene import SceneRequest
from stages.scene.diffusers_options import LoraOptions
from stages.scene.sd15 import DiffusersSd15Scene, Sd15Options
from stages.scene.sdxl import DiffusersSdxlScene
from tests.stages.scene import tiny_diffusers

CANVAS = 128
FAST = dict(steps=2, strength=1.0, dtype="float32", device="cpu", max_side=0, vae="", scheduler="euler",
            prompt_template="{prompt}")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: toy tensors run on one thread


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {"sdxl": tiny_diffusers.build_sdxl(root), "sd15": tiny_diffusers.build_sd15(root), "root": root}


BACKENDS = {"sdxl": DiffusersSdxlScene, "sd15": DiffusersSd15Scene}


def load(models, kind: str, **opts):
    """The `kind` backend loaded through its own `load` from the tiny models' folders."""
    options = {"model": models[kind]["model"], "controlnet": models[kind]["controlnet"], **FAST, **opts}
    backend = BACKENDS[kind]
    return backend.load(backend.Options(**options))


@pytest.fixture(scope="module")
def backends(models):
    """One backend per kind, shared by the tests that do not change its options."""
    return {kind: load(models, kind) for kind in ("sdxl", "sd15")}


@pytest.fixture(scope="module")
def layout():
    rgb = np.zeros((160, 120, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = 200, np.arange(120, dtype=np.uint8)[None, :]
    alpha = np.zeros((160, 120), np.uint8)
    cv2.ellipse(alpha, (60, 80), (45, 70), 0, 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5)  # a soft edge, as a real matte has
    return place_product(rgb, alpha, LayoutOptions(width=CANVAS, height=CANVAS))


def request(layout, seed=1, prompt="sage green wall", negative="text, watermark"):
    depth = GeometricDepth(GeometricOptions()).run(layout, 0.62)
    return SceneRequest(layout, depth, prompt, negative, seed, 0.62)


class Recorder:
    """Stands in for a loaded pipeline: records each call's keyword arguments, then delegates."""

    def __init__(self, pipe, fail_when=None, error=None):
        self._pipe, self.calls, self._fail_when, self._error = pipe, [], fail_when, error

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        if self._fail_when is not None and self._fail_when(kwargs):
            import torch

            raise self._error or torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self._pipe(**kwargs)

    def __getattr__(self, name):
        return getattr(self._pipe, name)


# ----------------------------------------------------------------------------------------------
# Registration and configuration


def test_registered_without_importing_torch(repo):
    code = (
        "import sys, stages.scene, stages.depth, ops.runner\n"
        "from stages.scene import BACKENDS as scene\nfrom stages.depth import BACKENDS as depth\n"
        "assert {'diffusers-sdxl', 'diffusers-sd15'} <= set(scene)\n"
        "assert 'transformers' in depth\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_repo_config_has_the_real_defaults(repo):
    cfg = load_config(repo / "config.toml")
    assert cfg.scene.diffusers_sdxl.model == "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
    assert cfg.scene.diffusers_sdxl.controlnet == "diffusers/controlnet-depth-sdxl-1.0"
    assert cfg.scene.diffusers_sdxl.vae == "madebyollin/sdxl-vae-fp16-fix"
    assert cfg.scene.diffusers_sd15.controlnet == "lllyasviel/control_v11f1p_sd15_depth"
    assert cfg.depth.transformers.model == "depth-anything/Depth-Anything-V2-Small-hf"
    from stages.scene.diffusers_options import SCHEDULERS, SchedulerName

    assert set(SCHEDULERS) == set(SchedulerName.__args__)


@pytest.mark.parametrize("table,match", [
    ({"scheduler": "lms"}, r"scene.diffusers_sdxl.scheduler = 'lms': must be one of"),
    ({"steps": 4, "strength": 0.2}, r"strength = 0.2 with steps = 4 leaves no denoising step"),
    ({"dtype": "float8"}, r"scene.diffusers_sdxl.dtype = 'float8': must be one of"),
    ({"prompt_template": "{product} on a table"}, r"unknown field\(s\) \['product'\]"),
    ({"loras": [{"path": "x.safetensors", "scale": "high"}]}, r"loras\[0\].scale = 'high': expected float"),
    ({"model": ""}, r"scene.diffusers_sdxl.model is empty"),
    ({"guidance_end": 0.0}, r"scene.diffusers_sdxl.guidance_end = 0.0: must be in \(0, 1\]"),
])
def test_bad_diffusers_options_are_config_errors(table, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, {"scene": {"diffusers_sdxl": table}})


def test_options_built_in_code_are_checked_too(models):
    with pytest.raises(ConfigError, match="must be one of"):
        load(models, "sd15", scheduler="lms")
    with pytest.raises(ConfigError, match="leaves no denoising step"):
        load(models, "sd15", steps=3, strength=0.3)


# ----------------------------------------------------------------------------------------------
# Missing weights


def test_missing_local_folder_names_it_and_the_fix(models, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelUnavailableError) as info:
        load(models, "sdxl", model=str(missing))
    msg = str(info.value)
    assert str(missing) in msg and "hf download diffusers/stable-diffusion-xl-1.0-inpainting-0.1" in msg
    assert "huggingface-cli download" in msg
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(ModelUnavailableError, match=r"depth ControlNet folder .*empty has no config.json"):
        load(models, "sd15", controlnet=str(not_a_model))


def test_offline_hub_id_fails_at_once(models, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match=r"acme/sdxl-inpaint@v2 is not in the local Hugging Face cache"
                                                    r" and HF_HUB_OFFLINE is set"):
        load(models, "sdxl", model="acme/sdxl-inpaint", revision="v2")
    with pytest.raises(ModelUnavailableError, match="lllyasviel/control_v11f1p_sd15_depth"):
        DiffusersSd15Scene.load(Sd15Options(model=models["sd15"]["model"]))  # the real ControlNet id, not cached here
    assert time.perf_counter() - t0 < 10


def test_hub_id_in_the_cache_loads_from_its_snapshot_and_records_the_commit(models, tmp_path, monkeypatch):
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny--sd15-controlnet"
    shutil.copytree(models["sd15"]["controlnet"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    backend = load(models, "sd15", controlnet="tiny/sd15-controlnet")
    scene = backend.generate(request(backend_layout()))
    assert scene.settings["controlnet"] == {"id": "tiny/sd15-controlnet", "revision": commit, "source": "hf-cache"}
    assert scene.settings["model"] == {"id": models["sd15"]["model"], "revision": None, "source": "local"}


def backend_layout():
    rgb = np.full((80, 60, 3), 30, np.uint8)
    alpha = np.zeros((80, 60), np.uint8)
    alpha[10:70, 10:50] = 255
    return place_product(rgb, alpha, LayoutOptions(width=64, height=64))


def test_lora_problems_are_reported(models, tmp_path):
    missing = tmp_path / "style.safetensors"
    with pytest.raises(ModelUnavailableError, match=r"LoRA #0 .*style.safetensors.* not found"):
        load(models, "sd15", loras=(LoraOptions(path=str(missing)),))
    from diffusers.utils import is_peft_available

    if not is_peft_available():
        missing.write_bytes(b"")
        with pytest.raises(ModelUnavailableError, match=r"needs the `peft` package"):
            load(models, "sd15", loras=(LoraOptions(path=str(missing), scale=0.7),))


# ----------------------------------------------------------------------------------------------
# Generation


@pytest.mark.parametrize("kind", ["sdxl", "sd15"])
def test_scene_is_a_canvas_rgb_with_reproducible_settings(backends, models, layout, kind):
    backend = backends[kind]
    scene = backend.generate(request(layout, seed=42))
    assert scene.rgb.shape == (CANVAS, CANVAS, 3) and scene.rgb.dtype == np.uint8
    assert scene.backend == f"diffusers-{kind}" and scene.trained
    assert composite_source_type(scene.trained) == COMPOSITE_TRAINED
    s = scene.settings
    assert s["model"] == {"id": models[kind]["model"], "revision": None, "source": "local"}
    assert s["controlnet"]["id"] == models[kind]["controlnet"] and s["vae"] is None
    assert (s["scheduler"], s["steps"], s["strength"], s["seed"]) == ("euler", 2, 1.0, 42)
    assert s["prompt"] == "sage green wall" and s["negative_prompt"] == "text, watermark"
    assert s["resolution"] == [CANVAS, CANVAS] and s["dtype"] == "float32" and s["generator_device"] == "cpu"
    assert json.loads(json.dumps(s)) == s  # JSON-simple: it goes into a C2PA assertion


@pytest.mark.parametrize("kind", ["sdxl", "sd15"])
def test_same_seed_same_image_different_seed_differs(backends, layout, kind):
    backend = backends[kind]
    a = backend.generate(request(layout, seed=7)).rgb
    b = backend.generate(request(layout, seed=7)).rgb
    c = backend.generate(request(layout, seed=8)).rgb
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


def test_pipeline_gets_the_layout_mask_unchanged_and_the_product_survives(backends, layout):
    backend = backends["sdxl"]
    recorder = Recorder(backend.pipe)
    backend.pipe = recorder
    try:
        req = request(layout, seed=3)
        scene = backend.generate(req)
    finally:
        backend.pipe = recorder._pipe
    (call,) = recorder.calls
    assert np.array_equal(np.asarray(call["mask_image"][0]), layout.mask)  # 255 = generate, untouched
    assert set(np.unique(layout.mask)) == {0, 255} and (layout.mask == 255).mean() > 0.5
    assert np.array_equal(np.asarray(call["image"][0]), preview_canvas(layout, 128))
    control = np.asarray(call["control_image"][0])
    assert control.shape == (CANVAS, CANVAS, 3) and np.array_equal(control[..., 1], req.depth.depth)
    assert (call["height"], call["width"], call["num_inference_steps"]) == (CANVAS, CANVAS, 2)
    assert call["generator"][0].initial_seed() == 3
    # The generated pixels under the product differ from it (VAE round trip, random weights) ...
    core = layout.product_alpha == 255
    assert not np.array_equal(scene.rgb[core], layout.product_rgb[core])
    # ... and the composite puts every opaque product pixel back exactly.
    staged = composite(scene.rgb, layout)
    assert np.array_equal(staged[core], layout.product_rgb[core])
    assert np.array_equal(staged[layout.product_alpha == 0], scene.rgb[layout.product_alpha == 0])


def test_max_side_generates_smaller_and_returns_the_canvas(models, layout):
    backend = load(models, "sd15", max_side=64)
    prepared = backend.prepare(request(layout))
    assert prepared.size == (64, 64) and prepared.canvas == (CANVAS, CANVAS)
    small = np.asarray(prepared.mask_image)
    # Shrinking never drops a generate pixel: every 2x2 cell with one is generated.
    cells = layout.mask.reshape(64, 2, 64, 2).max(axis=(1, 3))
    assert np.array_equal(small, cells)
    scene = backend.generate(request(layout))
    assert scene.rgb.shape == (CANVAS, CANVAS, 3) and scene.settings["resolution"] == [64, 64]
    assert scene.settings["canvas"] == [CANVAS, CANVAS]


@pytest.mark.parametrize("name,cls,karras", [
    ("dpmpp_2m_karras", "DPMSolverMultistepScheduler", True),
    ("euler_a", "EulerAncestralDiscreteScheduler", None),
    ("ddim", "DDIMScheduler", None),
    ("unipc", "UniPCMultistepScheduler", None),
])
def test_scheduler_is_chosen_by_name(models, layout, name, cls, karras):
    backend = load(models, "sd15", scheduler=name)
    assert type(backend.pipe.scheduler).__name__ == cls
    if karras is not None:
        assert backend.pipe.scheduler.config.use_karras_sigmas is karras
    scene = backend.generate(request(layout, seed=5))
    assert scene.settings["scheduler"] == name and scene.rgb.shape == (CANVAS, CANVAS, 3)


def test_cached_prompt_embeddings_give_the_stock_pipeline_image(backends, layout):
    """The embeddings path (cached per prompt) and diffusers' own prompt path draw the same image."""
    import torch

    backend = backends["sdxl"]
    req = request(layout, seed=11, prompt="walnut table, window light", negative="blurry")
    misses = backend.embed_misses
    first = backend.generate(req).rgb
    hits = backend.embed_hits
    again = backend.generate(req).rgb
    assert backend.embed_misses == misses + 1 and backend.embed_hits == hits + 1
    assert np.array_equal(first, again)
    p = backend.prepare(req)
    o = backend.options
    stock = backend.pipe(
        prompt="walnut table, window light", negative_prompt="blurry", image=p.image, mask_image=p.mask_image,
        control_image=p.control_image, height=CANVAS, width=CANVAS, strength=o.strength,
        num_inference_steps=o.steps, guidance_scale=o.guidance_scale,
        controlnet_conditioning_scale=o.controlnet_conditioning_scale,
        generator=torch.Generator("cpu").manual_seed(11), output_type="np",
    ).images[0]
    stock = np.clip(np.rint(stock * 255), 0, 255).astype(np.uint8)
    assert np.abs(stock.astype(int) - first.astype(int)).max() <= 1


def test_prompt_template_is_applied_and_recorded(models, layout):
    backend = load(models, "sd15", prompt_template="{prompt}, product photography")
    scene = backend.generate(request(layout, prompt="oak shelf"))
    assert scene.settings["prompt"] == "oak shelf, product photography"
    assert scene.settings["scene_prompt"] == "oak shelf"


def test_batch_gives_each_seed_its_own_image_in_one_call(models, layout):
    backend = load(models, "sd15", batch_size=2)
    reqs = [request(layout, seed=s) for s in (21, 22, 23)]
    singles = [backend.generate(r).rgb for r in reqs]
    recorder = Recorder(backend.pipe)
    backend.pipe = recorder
    batched = backend.generate_many(reqs)
    assert [len(c["image"]) for c in recorder.calls] == [2, 1]
    assert [s.settings["seed"] for s in batched] == [21, 22, 23]
    for one, many in zip(singles, batched, strict=True):
        assert np.abs(one.astype(int) - many.rgb.astype(int)).max() <= 2


def test_out_of_memory_halves_the_batch_then_gives_up_with_a_stage_error(models, layout):
    backend = load(models, "sd15", batch_size=2)
    reqs = [request(layout, seed=s) for s in (31, 32)]
    recorder = Recorder(backend.pipe, fail_when=lambda kw: len(kw["image"]) > 1)
    backend.pipe = recorder
    scenes = backend.generate_many(reqs)
    assert [len(c["image"]) for c in recorder.calls] == [2, 1, 1] and len(scenes) == 2
    assert backend._batch == 1  # later calls start at the size that fitted
    backend.pipe = Recorder(recorder._pipe, fail_when=lambda kw: True)
    from stages.scene import SceneOutOfMemory

    with pytest.raises(SceneOutOfMemory, match="out of memory at 128x128, one image per call, with no lighter mode"):
        backend.generate(reqs[0])


def test_a_library_error_fails_the_product_naming_the_backend(backends, layout):
    backend = backends["sd15"]
    original = backend.pipe
    backend.pipe = Recorder(original, fail_when=lambda kw: True, error=ValueError("bad control image"))
    try:
        with pytest.raises(StageError, match=r"diffusers-sd15 failed: ValueError: bad control image"):
            backend.generate(request(layout))
    finally:
        backend.pipe = original


def test_speed_options_keep_the_image(backends, models, layout):
    fast = load(models, "sdxl", fuse_qkv=True, channels_last=True)
    assert type(fast.pipe.unet.attn_processors["mid_block.attentions.0.transformer_blocks.0.attn1.processor"]
                ).__name__ == "FusedAttnProcessor2_0"
    scene = fast.generate(request(layout, seed=9))
    plain = backends["sdxl"].generate(request(layout, seed=9))
    assert scene.settings["speedups"] == ["fuse_qkv", "channels_last"]
    assert np.abs(scene.rgb.astype(int) - plain.rgb.astype(int)).max() <= 2  # same maths, other kernels
    with pytest.raises(ConfigError, match="fuse_qkv does not combine with loras"):
        load(models, "sdxl", fuse_qkv=True, loras=(LoraOptions(path="x"),))


@pytest.mark.parametrize("kind", ["sdxl", "sd15"])
def test_guidance_end_runs_the_late_steps_on_the_conditional_half_only(backends, models, layout, kind):
    """guidance_end = 0.5 of 4 steps: the UNet and the ControlNet see the doubled batch (unconditional +
    conditional) for steps 1-2 and the conditional half alone for steps 3-4; the image stays a
    reproducible scene that differs from full guidance, and the setting is recorded."""
    opts = {**FAST, "steps": 4}
    cut = load(models, kind, **opts, guidance_end=0.5)
    full = load(models, kind, **opts)
    batches: dict[str, list[int]] = {"unet": [], "controlnet": []}
    for name in batches:
        getattr(cut.pipe, name).conv_in.register_forward_pre_hook(
            lambda m, args, name=name: batches[name].append(int(args[0].shape[0])))
    scene = cut.generate(request(layout, seed=4))
    assert batches == {"unet": [2, 2, 1, 1], "controlnet": [2, 2, 1, 1]}
    assert scene.settings["guidance_end"] == 0.5 and "guidance_end" not in full.generate(request(layout)).settings
    again = cut.generate(request(layout, seed=4))
    assert np.array_equal(scene.rgb, again.rgb) and batches["unet"][4:] == [2, 2, 1, 1]  # switched back per call
    assert not np.array_equal(scene.rgb, full.generate(request(layout, seed=4)).rgb)
    assert cut._guidance is not None and load(models, kind, **opts, guidance_end=0.5, guidance_scale=1.0
                                              )._guidance is None  # no guidance to stop


def test_vae_override_is_loaded_and_recorded(models, layout):
    backend = load(models, "sdxl", vae=models["sdxl"]["vae"])
    scene = backend.generate(request(layout))
    assert scene.settings["vae"] == {"id": models["sdxl"]["vae"], "revision": None, "source": "local"}


# ----------------------------------------------------------------------------------------------
# Depth through transformers


@pytest.fixture(scope="module")
def depth_model(models):
    return tiny_diffusers.build_depth_anything(models["root"])


def test_transformers_depth_from_a_local_folder(depth_model, layout):
    options = TransformersDepthOptions(model=depth_model, device="cpu")
    d = TransformersDepth.load(options).run(layout, 0.62)
    assert d.depth.shape == (CANVAS, CANVAS) and d.depth.dtype == np.uint8
    assert d.depth.min() == 0 and d.depth.max() == 255
    assert d.backend == f"transformers:{depth_model}" and d.details["values"] == "disparity"
    flipped = TransformersDepth.load(replace(options, values="distance"))
    f = flipped.run(layout, 0.62)
    assert np.abs(f.depth.astype(int) - (255 - d.depth.astype(int))).max() <= 1
    assert f.details["values"] == "distance"


def test_depth_scaling_puts_near_at_255():
    from stages.depth.transformers import to_near_uint8

    disparity = np.array([[1.0, 2.0], [3.0, 5.0]])
    near, lo, hi = to_near_uint8(disparity, distance=False)
    assert near.tolist() == [[0, 64], [128, 255]] and (lo, hi) == (1.0, 5.0)
    far, _, _ = to_near_uint8(disparity, distance=True)  # metres: the largest value is the farthest
    assert far.tolist() == [[255, 191], [128, 0]]
    assert to_near_uint8(np.ones((2, 2)), distance=False)[0].tolist() == [[0, 0], [0, 0]]


def test_transformers_depth_missing_model_fails_at_once(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match=r"depth-anything/Depth-Anything-V2-Small-hf is not in the local"
                                                    r" Hugging Face cache"):
        TransformersDepth.load(TransformersDepthOptions())
    with pytest.raises(ModelUnavailableError, match="no-depth"):
        TransformersDepth.load(TransformersDepthOptions(model=str(tmp_path / "no-depth")))
    assert time.perf_counter() - t0 < 10


# ----------------------------------------------------------------------------------------------
# End to end: the nightly flow with the SD 1.5 backend


def test_nightly_flow_stages_a_real_photo_with_the_diffusion_backend(models, write_catalog, dev_keys, tmp_path):
    from flows.nightly import nightly_catalog_run
    from provenance.verify import verify_file

    write_catalog(tmp_path, "sku,image,title,category,scene_prompt,seed,variants",
                  "SHOE-DIFF-01,19_shoes_black-suede_white.jpg,Black suede shoes,shoes,warm oak floor,5,1")
    sd15 = models["sd15"]
    (tmp_path / "config.toml").write_text(
        "[layout]\nwidth = 256\nheight = 256\n\n"
        '[scene]\nbackend = "diffusers-sd15"\n\n'
        f'[scene.diffusers_sd15]\nmodel = "{sd15["model"]}"\ncontrolnet = "{sd15["controlnet"]}"\n'
        'steps = 2\nstrength = 1.0\ndtype = "float32"\ndevice = "cpu"\nmax_side = 0\nscheduler = "unipc"\n'
        'prompt_template = "{prompt}, product photography"\n',
        encoding="utf-8")
    result = nightly_catalog_run(catalog=str(tmp_path / "catalog.csv"), config=str(tmp_path / "config.toml"),
                                 out=str(tmp_path / "out"))
    (row,) = result["results"]
    assert row["status"] == "ok", row
    record_path = tmp_path / "out" / row["record"]
    record = json.loads(record_path.read_text())
    assert record["backends"]["scene"] == "diffusers-sd15"
    settings = record["variants"][0]["scene"]
    assert settings["model"]["id"] == sd15["model"] and settings["scheduler"] == "unipc" and settings["seed"] == 5
    assert settings["prompt"] == "warm oak floor, product photography"
    anchors = (Path(__import__("os").environ["STAGE_KEYS_DIR"]) / "ca.pem").read_text()
    ver = verify_file(record_path.parent / record["output"], anchors)
    assert ver.ok and ver.trusted, ver.failures
    assert {c["name"]: c["passed"] for c in record["checks"]}["product_pixels"] is True


def test_relative_model_folders_resolve_against_the_config_file(models, tmp_path):
    from ops.workbench import with_model_paths

    shutil.copytree(models["sd15"]["controlnet"], tmp_path / "weights" / "cn")
    (tmp_path / "config.toml").write_text(
        '[scene.diffusers_sd15]\ncontrolnet = "weights/cn"\nloras = [{ path = "weights/none.safetensors" }]\n'
        '[depth.transformers]\nmodel = "weights/cn"\n', encoding="utf-8")
    cfg = with_model_paths(load_config(tmp_path / "config.toml"))
    assert cfg.scene.diffusers_sd15.controlnet == str(tmp_path / "weights" / "cn")
    assert cfg.depth.transformers.model == str(tmp_path / "weights" / "cn")
    assert cfg.scene.diffusers_sd15.loras[0].path == "weights/none.safetensors"  # missing: left as written
    assert cfg.scene.diffusers_sd15.model == "stable-diffusion-v1-5/stable-diffusion-inpainting"  # a hub id
