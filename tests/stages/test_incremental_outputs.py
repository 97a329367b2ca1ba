"""The pre-pass's view of a product's published files (stages.incremental.outputs_present)."""

from __future__ import annotations

from stages.config import load_config
from stages.incremental import outputs_present


def test_a_missing_channel_rendition_or_format_copy_makes_the_product_stale(repo, tmp_path):
    cfg = load_config(repo / "config.toml")
    assert cfg.renditions.active, "the repo config makes channel renditions"
    folder = tmp_path / "products" / "SKU-1-abc"
    folder.mkdir(parents=True)
    names = ["SKU-1-abc-v1.png"] + [f"SKU-1-abc-v1.{'jpg' if f == 'jpeg' else f}" for f in cfg.write.renditions]
    for preset in cfg.renditions.active:
        names += [f"SKU-1-abc.{preset}.{'jpg' if f == 'jpeg' else f}" for f in cfg.renditions.presets[preset].formats]
    for name in names:
        (folder / name).write_bytes(b"x")
    output = "products/SKU-1-abc/SKU-1-abc-v1.png"
    assert outputs_present(tmp_path, output, cfg)
    for name in names:
        (folder / name).rename(folder / (name + ".gone"))
        assert not outputs_present(tmp_path, output, cfg), f"{name} missing must be noticed"
        (folder / (name + ".gone")).rename(folder / name)
