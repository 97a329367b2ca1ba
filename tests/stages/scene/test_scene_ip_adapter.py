"""IP-Adapter style references on the diffusers backends, with tiny locally built weights.

The adapter file and its CLIP image encoder are built to match the tiny UNets
(tests/stages/scene/tiny_diffusers.py), laid out like the h94/IP-Adapter repo, and loaded through the
configured path with `load_ip_adapter`, as downloaded weights would be.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from stages.errors import ModelUnavailableError
from stages.scene import ReferenceImage
from stages.scene.sd15 import DiffusersSd15Scene
from stages.scene.sdxl import DiffusersSdxlScene
from tests.stages.scene import tiny_diffusers

FAST = dict(steps=2, strength=1.0, dtype="float32", device="cpu", max_side=0, vae="", scheduler="euler",
            prompt_template="{prompt}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-ip")
    models = {"sd15": tiny_diffusers.build_sd15(root / "a"), "sdxl": tiny_diffusers.build_sdxl(root / "b")}
    models["sd15"]["ip"] = tiny_diffusers.build_ip_adapter(root / "a", models["sd15"]["model"])
    models["sdxl"]["ip"] = tiny_diffusers.build_ip_adapter(root / "b", models["sdxl"]["model"], "sdxl_models")
    yield models
    torch.set_num_threads(before)


def load(models, kind: str, adapter: bool = True, **opts):
    m = models[kind]
    ip = m["ip"]
    extra = dict(ip_adapter=ip["ip_adapter"], ip_adapter_subfolder=ip["subfolder"],
                 ip_adapter_weight_name=ip["weight_name"], ip_adapter_scale=1.0) if adapter else {}
    options = {"model": m["model"], "controlnet": m["controlnet"], **FAST, **extra, **opts}
    backend = DiffusersSdxlScene if kind == "sdxl" else DiffusersSd15Scene
    return backend.load(backend.Options(**options))


def reference(path: str) -> ReferenceImage:
    data = open(path, "rb").read()
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return ReferenceImage(rgb, hashlib.sha256(data).hexdigest(), path.rsplit("/", 1)[-1])


@pytest.fixture(scope="module")
def base_request():
    return tiny_diffusers.toy_request()


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_reference_image_steers_the_scene_and_reproduces(tiny, base_request, kind):
    from dataclasses import replace

    backend = load(tiny, kind)
    blue = reference("catalog/images/21_shoes_bark-sandals-with-laces_on-blue.jpg")
    plain = backend.generate(base_request)
    styled = backend.generate(replace(base_request, reference=blue))
    again = backend.generate(replace(base_request, reference=blue))
    assert np.array_equal(styled.rgb, again.rgb)  # same reference + seed: same scene
    assert np.abs(styled.rgb.astype(int) - plain.rgb.astype(int)).mean() > 1.0
    other = backend.generate(replace(base_request, reference=reference("catalog/images/19_shoes_black-suede_white.jpg")))
    assert not np.array_equal(other.rgb, styled.rgb)  # a different reference: a different look
    assert styled.settings["reference_image"] == {"name": blue.name, "sha256": blue.sha256, "applied": True}
    assert styled.settings["ip_adapter_scale"] == 1.0
    ip = styled.settings["ip_adapter"]
    assert ip["id"] == tiny[kind]["ip"]["ip_adapter"] and ip["weight_name"] == "ip-adapter_tiny.safetensors"
    assert plain.settings["reference_image"] is None and plain.settings["ip_adapter_scale"] == 0.0


def test_no_reference_with_adapter_loaded_matches_no_adapter(tiny, base_request):
    with_adapter = load(tiny, "sd15").generate(base_request)
    without = load(tiny, "sd15", adapter=False).generate(base_request)
    assert np.abs(with_adapter.rgb.astype(int) - without.rgb.astype(int)).max() <= 1
    assert without.settings["ip_adapter"] is None


def test_batch_splits_by_reference(tiny, base_request):
    from dataclasses import replace

    backend = load(tiny, "sd15", batch_size=4)
    blue = reference("catalog/images/21_shoes_bark-sandals-with-laces_on-blue.jpg")
    reqs = [replace(base_request, seed=3), replace(base_request, seed=4, reference=blue)]
    batch = backend.generate_many(reqs)
    alone = [backend.generate(r) for r in reqs]
    for b, a in zip(batch, alone, strict=True):
        assert np.abs(b.rgb.astype(int) - a.rgb.astype(int)).max() <= 2
    assert batch[0].settings["reference_image"] is None and batch[1].settings["reference_image"]["applied"]


def test_missing_adapter_weights_name_the_id_and_the_fix(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match=r"IP-Adapter acme/ip-adapter is not in the local Hugging Face "
                                                    r"cache and HF_HUB_OFFLINE is set.*hf download acme/ip-adapter"):
        load(tiny, "sd15", ip_adapter="acme/ip-adapter")
    folder = tmp_path / "ip"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "ip-adapter_tiny.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelUnavailableError, match=r"IP-Adapter .*ip \(local.*failed to load"):
        load(tiny, "sd15", ip_adapter=str(folder))


def test_image_encoder_named_apart_gives_the_same_result(tiny, base_request):
    from dataclasses import replace

    blue = replace(base_request, reference=reference("catalog/images/21_shoes_bark-sandals-with-laces_on-blue.jpg"))
    beside = load(tiny, "sd15").generate(blue)
    apart = load(tiny, "sd15", image_encoder=tiny["sd15"]["ip"]["image_encoder"]).generate(blue)
    assert np.array_equal(beside.rgb, apart.rgb)
    assert apart.settings["ip_adapter"]["image_encoder"]["source"] == "local"
