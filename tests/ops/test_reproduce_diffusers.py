"""`stage reproduce` with a diffusion scene backend: on a CPU, in float32, with the same seed and the
same torch and diffusers, the image comes back bit for bit (tiny SD 1.5 / SDXL pipelines, offline)."""

from __future__ import annotations

import shutil

import pytest

from ops.catalog import read_catalog
from ops.config import load_config
from ops.context import RunContext
from ops.reproduce import IDENTICAL, reproduce
from ops.runner import process_row
from ops.workbench import Workbench
from tests.stages.scene import tiny_diffusers

PHOTO = "19_shoes_black-suede_white.jpg"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: toy tensors run on one thread


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_a_diffusers_image_reproduces_bit_for_bit_on_cpu(kind, tmp_path, images, dev_keys):
    models = getattr(tiny_diffusers, f"build_{kind}")(tmp_path / "models")
    table = f"diffusers_{kind}"
    (tmp_path / "config.toml").write_text(
        "[layout]\nwidth = 128\nheight = 128\n[renditions]\nactive = []\n"
        f'[scene]\nbackend = "diffusers-{kind}"\n'
        f'[scene.{table}]\nmodel = "{models["model"]}"\ncontrolnet = "{models["controlnet"]}"\nvae = ""\n'
        'steps = 2\nstrength = 1.0\ndtype = "float32"\ndevice = "cpu"\nmax_side = 0\nscheduler = "euler_a"\n',
        encoding="utf-8")
    shutil.copy(images / PHOTO, tmp_path / PHOTO)
    (tmp_path / "catalog.csv").write_text(f"sku,image,title,category,seed\nDIFF-1,{PHOTO},Shoes,shoes,11\n",
                                          encoding="utf-8")
    (row,) = read_catalog(tmp_path / "catalog.csv").rows
    done = process_row(Workbench.build(load_config(tmp_path / "config.toml")), row, RunContext(tmp_path / "out", "r1"))
    assert done.status == "ok", done.error
    result = reproduce(tmp_path / "out" / done.output, load_config(None))
    assert result.outcome == IDENTICAL, (result.line(), result.notes)
    assert result.pixels == 128 * 128 and not result.notes  # the scene settings (model, seed, scheduler) match
