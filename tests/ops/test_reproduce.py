"""`stage reproduce`: a published image staged again from its credentials alone, bit for bit, and
every reason it cannot be (source changed, image tampered, version or config not rebuildable)."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from ops import reproduce as reproduce_module
from ops.catalog import read_catalog
from ops.config import load_config, rebuild_config
from ops.context import RunContext
from ops.reproduce import DIFFERENT, IDENTICAL, REFUSED, Reproduction, compare_pixels, reproduce
from ops.runner import process_row
from ops.workbench import Workbench
from provenance.sign import SETTINGS_LABEL
from provenance.verify import verify_file
from stages.errors import ConfigError

PHOTO = "19_shoes_black-suede_white.jpg"
CONFIG = """
[layout]
width = 192
height = 192

[write]
format_copies = ["jpeg"]

[renditions]
active = []
"""


@pytest.fixture(scope="module")
def staged(tmp_path_factory, images, dev_keys):
    """One product with two variants staged and published into out/, as a run leaves it."""
    root = tmp_path_factory.mktemp("reproduce")
    shutil.copy(images / PHOTO, root / PHOTO)
    (root / "config.toml").write_text(CONFIG, encoding="utf-8")
    (root / "catalog.csv").write_text("sku,image,title,category,scene_prompt,variants\n"
                                      f"SHOE-1,{PHOTO},Black suede shoes,shoes,pale blue wall,2\n", encoding="utf-8")
    cfg = load_config(root / "config.toml")
    (row,) = read_catalog(root / "catalog.csv").rows
    done = process_row(Workbench.build(cfg), row, RunContext(root / "out", "run-1"))
    assert done.status == "ok", done.error
    return root, root / "out" / done.output


@pytest.fixture
def copy(staged, tmp_path):
    """A copy of the staged tree (photo, config, outputs) that a test may change."""
    root, master = staged
    shutil.copytree(root, tmp_path / "t")
    return tmp_path / "t", tmp_path / "t" / master.relative_to(root)


def test_the_master_and_another_variant_reproduce_bit_for_bit(staged):
    root, master = staged
    local = load_config(None)  # every output setting comes from the credentials, not from a config file
    result = reproduce(master, local)
    assert result.outcome == IDENTICAL, result.line()
    assert (result.pixels, result.differing, result.max_diff) == (192 * 192, 0, 0) and not result.notes
    assert result.line() == f"identical: {192 * 192} pixels, bit for bit"
    second = master.with_name(f"{master.stem}-v1.png")
    assert reproduce(second, local).outcome == IDENTICAL
    a, b = (np.asarray(Image.open(p)) for p in (master, second))
    assert not np.array_equal(a, b)  # two seeds: the comparison is not vacuous


def test_credentials_record_the_row_and_the_config_that_hashes_to_the_digest(staged):
    _, master = staged
    settings = {a["label"]: a["data"] for a in verify_file(master).manifest["assertions"]}[SETTINGS_LABEL]
    assert settings["row"] == {"sku": "SHOE-1", "title": "Black suede shoes", "category": "shoes",
                               "scene_prompt": "pale blue wall", "negative_prompt": "", "seed": None,
                               "variants": 2, "placement": ""}
    cfg = rebuild_config(settings["config"], load_config(None))
    assert cfg.digest() == settings["config_digest"] and cfg.layout.width == 192
    assert "allow_hosts" not in json.loads(settings["config"])["load"]  # machine-local: not recorded


def test_kept_output_folder(staged, tmp_path):
    _, master = staged
    result = reproduce(master, load_config(None), out=tmp_path / "again")
    assert result.outcome == IDENTICAL and result.staged and (tmp_path / "again").is_dir()
    assert np.array_equal(np.asarray(Image.open(result.staged)), np.asarray(Image.open(master)))
    again = reproduce(master, load_config(None), out=tmp_path / "again")  # never into a folder holding products
    assert again.outcome == REFUSED and "not a new or empty folder" in again.reason


def test_a_changed_source_photo_is_refused(copy):
    root, master = copy
    rgb = np.asarray(Image.open(root / PHOTO).convert("RGB")).copy()
    rgb[0, 0] ^= 1  # one pixel, one level
    Image.fromarray(rgb).save(root / PHOTO, format="JPEG", quality=95)
    result = reproduce(master, load_config(None))
    assert result.outcome == REFUSED and result.reason.startswith("source photo changed")
    assert result.line().startswith("could not reproduce: source photo changed")


def test_a_missing_source_is_refused_and_source_overrides_the_record(copy, images):
    root, master = copy
    (root / PHOTO).rename(root / "moved.jpg")
    result = reproduce(master, load_config(None))
    assert result.outcome == REFUSED and "source photo missing" in result.reason and "--source" in result.reason
    assert reproduce(master, load_config(None), source=str(root / "moved.jpg")).outcome == IDENTICAL
    other = reproduce(master, load_config(None), source=str(images / "20_shoes_beige-loafers_on-beige-floor.jpg"))
    assert other.outcome == REFUSED and "source photo changed" in other.reason


def _splice_idat(signed: bytes, pixels: np.ndarray) -> bytes:
    """`signed` with its image data replaced by that of `pixels`, every other chunk (the credentials) kept."""
    def chunks(data: bytes):
        pos = 8
        while pos < len(data):
            (n,) = struct.unpack(">I", data[pos:pos + 4])
            yield data[pos + 4:pos + 8], data[pos:pos + 12 + n]
            pos += 12 + n

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    new_idat = b"".join(c for kind, c in chunks(buf.getvalue()) if kind == b"IDAT")
    out, done = [signed[:8]], False
    for kind, chunk in chunks(signed):
        if kind == b"IDAT":
            if not done:
                out.append(new_idat)
                done = True
        else:
            out.append(chunk)
    return b"".join(out)


def test_a_tampered_or_unsigned_image_is_refused(copy):
    root, master = copy
    pixels = np.asarray(Image.open(master)).copy()
    pixels[5, 5] = 255 - pixels[5, 5]
    master.write_bytes(_splice_idat(master.read_bytes(), pixels))
    assert Image.open(master).getpixel((5, 5)) == tuple(int(v) for v in pixels[5, 5])  # still a readable PNG
    result = reproduce(master, load_config(None))
    assert result.outcome == REFUSED and "content credentials missing or invalid" in result.reason
    plain = root / "plain.png"
    Image.fromarray(pixels).save(plain)
    result = reproduce(plain, load_config(None))
    assert result.outcome == REFUSED and "manifest not found" in result.reason


def test_an_untrusted_signer_is_refused(staged, tmp_path, monkeypatch):
    from provenance.keys import init_dev_keys

    other = init_dev_keys(tmp_path / "other-ca")
    monkeypatch.setenv("STAGE_TRUST_ANCHORS", str(other.ca_pem))  # another organisation's roots
    result = reproduce(staged[1], load_config(None))
    assert result.outcome == REFUSED and "signingCredential.untrusted" in result.reason
    monkeypatch.delenv("STAGE_TRUST_ANCHORS")
    monkeypatch.setattr(reproduce_module, "load_trust_anchors", lambda cfg: (None, "none"))
    result = reproduce(staged[1], load_config(None))  # the signature checks out, its signer is anyone
    assert result.outcome == REFUSED and "signer is not trusted" in result.reason


def test_a_format_copy_points_at_its_master(staged):
    _, master = staged
    result = reproduce(master.with_suffix(".jpg"), load_config(None))
    assert result.outcome == REFUSED and "format copy" in result.reason and str(master) in result.reason


def test_another_pipeline_version_is_refused(staged, monkeypatch):
    monkeypatch.setattr(reproduce_module, "PIPELINE_VERSION", "99.0.0")
    result = reproduce(staged[1], load_config(None))
    assert result.outcome == REFUSED and "pipeline version differs" in result.reason and "99.0.0" in result.reason


def test_a_config_that_does_not_hash_to_the_digest_is_refused(staged, monkeypatch):
    real = reproduce_module.rebuild_config

    def drifted(text, local):  # e.g. a default that changed since: same keys, another value
        cfg = real(text, local)
        return dataclasses.replace(cfg, shadow=dataclasses.replace(cfg.shadow, intensity=0.9))

    monkeypatch.setattr(reproduce_module, "rebuild_config", drifted)
    result = reproduce(staged[1], load_config(None))
    assert result.outcome == REFUSED and "configuration cannot be rebuilt: its digest is" in result.reason


def test_a_pipeline_that_stages_differently_reports_the_pixel_difference(staged, monkeypatch):
    build = Workbench.build

    def changed(cfg):  # the same recorded settings, a step that now behaves differently
        return build(dataclasses.replace(cfg, shadow=dataclasses.replace(cfg.shadow, intensity=0.9)))

    monkeypatch.setattr(reproduce_module.Workbench, "build", changed)
    result = reproduce(staged[1], load_config(None))
    assert result.outcome == DIFFERENT, result.line()
    assert 0 < result.differing < result.pixels and result.max_diff > 0 and result.mean_diff > 0
    assert result.line().startswith(f"different: {result.differing} of {192 * 192} pixels differ, max |diff| ")


def test_compare_pixels_figures():
    a = np.zeros((4, 5, 3), np.uint8)
    b = a.copy()
    b[0, 0] = (7, 0, 0)
    b[3, 4] = (1, 2, 3)

    def png(x):
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="PNG")
        return buf.getvalue()

    r = Reproduction("x", REFUSED)
    compare_pixels(png(a), png(b), r)
    assert (r.outcome, r.pixels, r.differing, r.max_diff) == (DIFFERENT, 20, 2, 7)
    assert r.mean_diff == pytest.approx(13 / 60)
    r = Reproduction("x", REFUSED)
    compare_pixels(png(a), png(a[:3]), r)
    assert r.outcome == DIFFERENT and "5x4" in r.reason and "5x3" in r.reason


def test_rebuild_config_round_trips_and_rejects_a_bad_record(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[layout]\nplacement = "thirds"\nbox = [0.1, 0.1, 0.9, 0.9]\n[layout.presets.tall]\nplacement = "center"\n'
        '[write]\nformat_copies = ["webp", "jpeg"]\n[load]\nallow_hosts = ["images.internal"]\n', encoding="utf-8")
    cfg = load_config(tmp_path / "config.toml")
    local = load_config(None)
    again = rebuild_config(cfg.output_json(), local)
    assert again.digest() == cfg.digest() and again.layout.presets["tall"].placement == "center"
    assert again.load.allow_hosts == () and again.base_dir == local.base_dir  # machine-local: from `local`
    with pytest.raises(ConfigError, match="not valid JSON"):
        rebuild_config("{", local)
    tables = json.loads(cfg.output_json())
    tables["layout"]["width"] = "wide"
    with pytest.raises(ConfigError, match="layout.width"):
        rebuild_config(json.dumps(tables), local)
    del tables["layout"]
    with pytest.raises(ConfigError, match="must hold the tables"):
        rebuild_config(json.dumps(tables), local)
