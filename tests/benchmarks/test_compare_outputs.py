"""benchmarks/compare_outputs.py: two output folders compared by decoded pixels and normalised records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import load_benchmark  # tests/ is on sys.path



co = load_benchmark("compare_outputs")

OLD_RECORD = {  # the layout of pipeline 0.1
    "sku": "A", "run_id": "r1", "created_at": "2026-12-01T00:00:00+00:00", "pipeline_version": "0.1.0",
    "config_digest": "aaaa", "cache_key": "k1", "output": "A.png", "timings_ms": {"load": 3.0},
    "renditions": [{"format": "jpeg", "output": "A.jpg", "checks": []}],
    "channel_renditions": [{"preset": "social", "scene": {"backend": "studio"}, "bytes": 100,
                            "timings_ms": {"stage": 1.0}}],
    "backends": {"matte": "studio", "scene": "studio"}, "matte_details": {"review": False, "reasons": []},
    "variants": [{"index": 0, "renditions": [{"format": "jpeg"}], "scene": {"seed": 1}}],
}
NEW_RECORD = {
    "sku": "A", "run_id": "r2", "created_at": "2026-12-03T00:00:00+00:00", "pipeline_version": "0.2.0",
    "config_digest": "bbbb", "cache_key": "k2", "output": "A.png", "timings_ms": {"load": 4.0},
    "format_copies": [{"format": "jpeg", "output": "A.jpg", "checks": []}],
    "renditions": [{"preset": "social", "scene": {"backend": "procedural"}, "bytes": 104,
                    "timings_ms": {"stage": 2.0}}],
    "backends": {"matte": "plain-backdrop", "scene": "procedural"}, "matte_details": {"reasons": []},
    "variants": [{"index": 0, "format_copies": [{"format": "jpeg"}], "scene": {"seed": 1}}],
}


def _folder(root: Path, record: dict, pixels: np.ndarray) -> Path:
    product = root / "products" / "A"
    product.mkdir(parents=True)
    Image.fromarray(pixels).save(product / "A.png")
    Image.fromarray(pixels).save(product / "A.jpg", quality=95)
    (product / "A.json").write_text(json.dumps(record), encoding="utf-8")
    return root


def test_renamed_records_and_equal_pixels_are_identical(tmp_path, capsys):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    old = _folder(tmp_path / "old", OLD_RECORD, pixels)
    new = _folder(tmp_path / "new", NEW_RECORD, pixels)
    assert co.main([str(old), str(new), "--renames", "pipeline-0.1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "identical_products=1/1"
    assert co.main([str(old), str(new)]) == 1  # without the renames the layouts differ


def test_one_changed_pixel_or_value_is_reported(tmp_path, capsys):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    old = _folder(tmp_path / "old", OLD_RECORD, pixels)
    changed = pixels.copy()
    changed[5, 7, 1] ^= 1
    new = _folder(tmp_path / "new", {**NEW_RECORD, "variants": [{**NEW_RECORD["variants"][0], "scene": {"seed": 2}}]},
                  changed)
    assert co.main([str(old), str(new), "--renames", "pipeline-0.1"]) == 1
    out = capsys.readouterr().out
    assert "A.png: 1 pixels differ (max 1)" in out
    assert "A.json.variants[0].scene.seed: 1 != 2" in out
    shutil.rmtree(new / "products" / "A")
    assert co.main([str(old), str(new)]) == 1
    assert "A: only in old" in capsys.readouterr().out
