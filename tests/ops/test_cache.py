"""Is a product's output current: the pre-pass's view of its files and the batch task's test of its record."""

from __future__ import annotations

from ops.cache import outputs_present
from ops.config import load_config


def test_a_missing_channel_rendition_or_format_copy_makes_the_product_stale(repo, tmp_path):
    cfg = load_config(repo / "config.toml")
    assert cfg.renditions.active, "the repo config makes channel renditions"
    folder = tmp_path / "products" / "SKU-1-abc"
    folder.mkdir(parents=True)
    names = ["SKU-1-abc-v1.png"] + [f"SKU-1-abc-v1.{'jpg' if f == 'jpeg' else f}" for f in cfg.write.format_copies]
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


def test_a_product_missing_a_published_file_is_not_served_from_the_cache(repo, images, tmp_path, dev_keys):
    import shutil

    from ops.catalog import read_catalog
    from ops.context import RunContext
    from ops.runner import process_row
    from ops.workbench import Workbench

    shutil.copy(images / "19_shoes_black-suede_white.jpg", tmp_path / "shoe.jpg")
    (tmp_path / "catalog.csv").write_text("sku,image,title,category\nSHOE-1,shoe.jpg,Shoes,shoes\n", encoding="utf-8")
    (row,) = read_catalog(tmp_path / "catalog.csv").rows
    cfg = load_config(repo / "config.toml", {"layout": {"width": 256, "height": 256}, "renditions": {"active": []},
                                             "write": {"format_copies": ["jpeg"]}})
    bench, out = Workbench.build(cfg), tmp_path / "out"
    first = process_row(bench, row, RunContext(out, "run-1"))
    assert first.status == "ok", first.error
    copy = (out / first.output).with_suffix(".jpg")
    assert process_row(bench, row, RunContext(out, "run-2")).status == "cached"
    copy.unlink()  # the JPEG copy of the master, listed in the record's format_copies
    again = process_row(bench, row, RunContext(out, "run-3"))
    assert again.status == "ok" and copy.is_file()
