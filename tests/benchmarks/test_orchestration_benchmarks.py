"""benchmarks/_common.py's header and key lines, and memory.py's photo server (the URL rows it measures)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from conftest import load_benchmark  # tests/ is on sys.path

mem = load_benchmark("memory")
C = mem.C


def test_presets_line_names_every_active_preset_with_its_canvas_formats_and_megapixels(tmp_path):
    from ops.config import load_config

    cfg = load_config(C.write_config(tmp_path / "on.toml", {"layout": {"width": 256, "height": 256}}))
    line = C.presets_line(cfg)
    for name in cfg.renditions.active:
        p = cfg.renditions.presets[name]
        assert f"{name} {p.width}x{p.height} {'+'.join(p.formats)}" in line
    mp = sum(cfg.renditions.presets[n].width * cfg.renditions.presets[n].height for n in cfg.renditions.active) / 1e6
    assert f"{mp:.2f} MP per SKU" in line and "0.066 MP master (256x256)" in line
    off = load_config(C.write_config(tmp_path / "off.toml", {"renditions": {"active": []}}))
    assert C.presets_line(off) == "channel presets: off ([renditions] active = [])"


def test_key_line_is_name_value_target_verdict():
    assert C.key_line("rss_growth_kib_per_sku", 0.153, 0.2) == "rss_growth_kib_per_sku=0.153 target<=0.200 PASS"
    assert C.key_line("rerun_to_full_ratio", 3.5, 3.0, "{:.2f}", "%") == "rerun_to_full_ratio=3.50% target<=3.00% FAIL"
    assert re.fullmatch(r"\w+=\d+\.\d{3} target<=\d+\.\d{3} (PASS|FAIL)", C.key_line("x", 1.0, 1.1))


def test_photo_server_serves_each_skus_url_through_the_pipelines_own_fetch(tmp_path):
    from ops.config import load_config
    from ops.sources import read_source

    cfg = load_config(C.write_config(tmp_path / "c.toml", {"load": {"allow_hosts": ["127.0.0.1"]}}))
    server = mem.PhotoServer()
    try:
        rows = server.url_rows(C.synthetic_rows(3))
        assert len({r["image"] for r in rows}) == 3 and all(r["sku"] in r["image"] for r in rows)
        for local, row in zip(C.synthetic_rows(3), rows, strict=True):
            data = read_source(row["image"], cfg.load)
            assert hashlib.sha256(data).digest() == hashlib.sha256(Path(local["image"]).read_bytes()).digest()
    finally:
        server.close()
