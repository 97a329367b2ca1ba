"""The scene fallback chain: missing weights and out-of-memory move to the next backend.

The diffusion backends are real (tiny local models or unreachable hub ids through the
production loader); out of memory cannot happen on a CPU, so it is injected into the
pipeline call, the way a CUDA OutOfMemoryError reaches the backend on a GPU worker.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ops.config import load_config
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.errors import ConfigError, ModelUnavailableError, StageError, UnknownBackendError
from stages.layout import LayoutOptions, place_product
from stages.scene import SceneRequest, load_scene_backend
from stages.scene.chain import SceneChain, fallback_of
from stages.scene.procedural import ProceduralOptions
from stages.scene.sd15 import Sd15Options
from stages.scene.sdxl import SdxlOptions
from tests.stages.scene import tiny_diffusers

MISSING_SDXL = SdxlOptions(model="nobody-here/missing-sdxl-inpaint", controlnet="nobody-here/missing-cn",
                           vae="", device="cpu", dtype="float32")
MISSING_SD15 = Sd15Options(model="nobody-here/missing-sd15-inpaint", controlnet="nobody-here/missing-cn15",
                           device="cpu", dtype="float32")


def chain(*names, calls=None, **options) -> SceneChain:
    """A chain over `names`, each backend loaded with `options[<table>]` (procedural's defaults otherwise)."""
    def load(name):
        if calls is not None:
            calls.append(name)
        return load_scene_backend(name, options.get(name.replace("-", "_"), ProceduralOptions()))

    return SceneChain(names, load)


@pytest.fixture(scope="module")
def request_():
    rgb = np.full((120, 90, 3), (40, 90, 160), np.uint8)
    alpha = np.zeros((120, 90), np.uint8)
    cv2.ellipse(alpha, (45, 60), (35, 50), 0, 0, 360, 255, -1)
    layout = place_product(rgb, cv2.GaussianBlur(alpha, (0, 0), 1.2), LayoutOptions(width=128, height=128))
    depth = GeometricDepth(GeometricOptions()).run(layout, 0.62)
    return SceneRequest(layout, depth, "sage green wall", "text", 7, 0.62)


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_diffusers.build_sd15(tmp_path_factory.mktemp("tiny-sd15"))
    torch.set_num_threads(before)


def sd15_config(models, **extra) -> Sd15Options:
    return Sd15Options(model=models["model"], controlnet=models["controlnet"], steps=2, strength=1.0,
                       dtype="float32", device="cpu", max_side=0, scheduler="euler", **extra)


class Failing:
    """Stands in for a loaded pipeline: raises `error` on the first `times` calls, then delegates."""

    def __init__(self, pipe, error, times=1):
        self._pipe, self._error, self.left, self.calls = pipe, error, times, 0

    def __call__(self, **kwargs):
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise self._error
        return self._pipe(**kwargs)

    def __getattr__(self, name):
        return getattr(self._pipe, name)


def test_unknown_backend_in_the_chain_fails_before_any_model_loads():
    with pytest.raises(UnknownBackendError, match="unknown scene backend 'diffusers-sd3'"):
        chain("procedural", "diffusers-sd3")


def test_config_rejects_a_chain_that_repeats_a_backend():
    with pytest.raises(ConfigError, match=r"scene.fallback = \['procedural'\]: repeats a backend"):
        load_config(None, {"scene": {"backend": "procedural", "fallback": ["procedural"]}})
    cfg = load_config(None, {"scene": {"backend": "diffusers-sdxl", "fallback": ["diffusers-sd15", "procedural"]}})
    assert cfg.scene.fallback == ("diffusers-sd15", "procedural")


def test_missing_weights_fall_back_to_the_next_backend_and_say_why(request_):
    scenes = chain("diffusers-sdxl", "procedural", diffusers_sdxl=MISSING_SDXL)
    assert scenes.active == "procedural" and "nobody-here/missing-sdxl-inpaint" in scenes.unavailable["diffusers-sdxl"]
    scene = scenes.generate(request_)
    assert scene.backend == "procedural" and scene.rgb.shape == (128, 128, 3)
    note = fallback_of(scene)
    assert note["wanted"] == "diffusers-sdxl" and note["used"] == "procedural"
    assert "nobody-here/missing-sdxl-inpaint" in note["reasons"][0]


def test_no_loadable_backend_names_every_model(request_):
    with pytest.raises(ModelUnavailableError) as err:
        chain("diffusers-sdxl", "diffusers-sd15", diffusers_sdxl=MISSING_SDXL, diffusers_sd15=MISSING_SD15)
    assert "nobody-here/missing-sdxl-inpaint" in str(err.value) and "nobody-here/missing-sd15-inpaint" in str(err.value)


def test_the_configured_backend_loads_fallbacks_only_when_needed(sd15, request_):
    calls = []
    scene = chain("diffusers-sd15", "procedural", calls=calls, diffusers_sd15=sd15_config(sd15)).generate(request_)
    assert calls == ["diffusers-sd15"] and scene.backend == "diffusers-sd15" and fallback_of(scene) is None


def test_out_of_memory_on_one_product_falls_back_for_that_product_only(sd15, request_):
    import torch

    scenes = chain("diffusers-sd15", "procedural", diffusers_sd15=sd15_config(sd15))
    backend = scenes._loaded["diffusers-sd15"]
    backend.pipe = Failing(backend.pipe, torch.OutOfMemoryError("CUDA out of memory (injected)"))
    first = scenes.generate(request_)
    assert first.backend == "procedural"
    assert "diffusers-sd15: diffusers-sd15: out of memory at 128x128" in fallback_of(first)["reasons"][0]
    second = scenes.generate(request_)  # the next product tries the configured backend again
    assert second.backend == "diffusers-sd15" and fallback_of(second) is None and backend.pipe.calls == 2


def test_other_errors_fail_the_product_instead_of_hiding_behind_a_fallback(sd15, request_):
    scenes = chain("diffusers-sd15", "procedural", diffusers_sd15=sd15_config(sd15))
    backend = scenes._loaded["diffusers-sd15"]
    backend.pipe = Failing(backend.pipe, ValueError("bad control image"))
    with pytest.raises(StageError, match="diffusers-sd15 failed: ValueError: bad control image"):
        scenes.generate(request_)


def test_every_backend_out_of_memory_fails_the_product_with_each_reason(sd15, request_):
    import torch

    scenes = chain("diffusers-sd15", diffusers_sd15=sd15_config(sd15))
    backend = scenes._loaded["diffusers-sd15"]
    backend.pipe = Failing(backend.pipe, torch.OutOfMemoryError("CUDA out of memory (injected)"))
    with pytest.raises(StageError, match="every scene backend failed: diffusers-sd15: .*out of memory"):
        scenes.generate(request_)


def test_flow_publishes_fallback_outputs_for_review_and_retries_them_next_run(write_catalog, dev_keys, tmp_path):
    from flows.nightly import nightly_catalog_run
    from provenance.verify import verify_file

    write_catalog(tmp_path, "sku,image,title,category", "SHOE-FB-1,19_shoes_black-suede_white.jpg,Black suede shoes,shoes")
    (tmp_path / "config.toml").write_text(
        "[layout]\nwidth = 256\nheight = 256\n\n"
        '[scene]\nbackend = "diffusers-sdxl"\nfallback = ["procedural"]\n\n'
        '[scene.diffusers_sdxl]\nmodel = "nobody-here/missing-sdxl-inpaint"\ncontrolnet = "nobody-here/missing-cn"\n',
        encoding="utf-8")
    args = dict(catalog=str(tmp_path / "catalog.csv"), config=str(tmp_path / "config.toml"), out=str(tmp_path / "out"))
    (row,) = nightly_catalog_run(**args)["results"]
    assert row["status"] == "ok" and row["verdict"] == "review", row
    assert any("fallback backend procedural" in r and "nobody-here/missing-sdxl-inpaint" in r for r in row["reasons"])
    record = json.loads((tmp_path / "out" / row["record"]).read_text())
    assert record["backends"]["scene"] == "procedural"
    assert record["scene_fallback"]["wanted"] == "diffusers-sdxl" and record["scene_fallback"]["used"] == "procedural"
    ver = verify_file(tmp_path / "out" / row["output"], dev_keys.ca_pem.read_text())
    assert ver.ok and ver.trusted, ver.failures
    settings = next(a["data"] for a in ver.manifest["assertions"] if a["label"] == "org.product-staging.settings")
    assert settings["scene"]["fallback"]["used"] == "procedural", "the credentials say which backend made the scene"
    (again,) = nightly_catalog_run(**args)["results"]
    assert again["status"] == "ok", "a fallback output is made again, not served from the cache"
