"""Shadow, harmonisation and reference images through a whole product run (studio backend)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ops.catalog import read_catalog
from ops.config import load_config
from ops.context import RunContext
from ops.runner import process_row
from ops.workbench import Workbench
from provenance.sign import SETTINGS_LABEL
from provenance.verify import verify_file

import tiny_onnx  # tests/ is on sys.path

PHOTO = "19_shoes_black-suede_white.jpg"
MOOD = "21_shoes_bark-sandals-with-laces_on-blue.jpg"


@pytest.fixture
def catalog(tmp_path, images):
    shutil.copy(images / PHOTO, tmp_path / PHOTO)
    shutil.copy(images / MOOD, tmp_path / "mood.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"this is not an image")
    (tmp_path / "catalog.csv").write_text(
        "sku,image,title,category,reference_image\n"
        f"OK-1,{PHOTO},Shoes,shoes,mood.jpg\n"
        f"BROKEN-2,{PHOTO},Shoes,shoes,broken.jpg\n"
        f"MISSING-3,{PHOTO},Shoes,shoes,nowhere.jpg\n"
        f"PLAIN-4,{PHOTO},Shoes,shoes,\n",
        encoding="utf-8",
    )
    return tmp_path


def test_catalog_validates_reference_paths(catalog):
    cat = read_catalog(catalog / "catalog.csv")
    by_sku = {r.sku: r for r in cat.rows}
    assert by_sku["OK-1"].reference_image == str((catalog / "mood.jpg").resolve())
    assert by_sku["PLAIN-4"].reference_image == ""
    [error] = cat.errors
    assert (error.row, error.sku) == (4, "MISSING-3") and "reference_image not found" in error.reason


def test_product_run_writes_the_shadow_layer_and_records_the_style(catalog, repo, dev_keys):
    cfg = load_config(repo / "config.toml", {"harmonize": {"enabled": True}, "layout": {"width": 384, "height": 384}})
    bench = Workbench.build(cfg)
    rows = {r.sku: r for r in read_catalog(catalog / "catalog.csv").rows}
    out = catalog / "out"
    ok = process_row(bench, rows["OK-1"], RunContext(out, "run-1"))
    assert ok.status == "ok", ok.error
    record = json.loads((out / ok.record).read_text())
    folder = (out / ok.record).parent
    shadow = np.asarray(Image.open(folder / record["shadow"]))
    layer = np.asarray(Image.open(folder / "layers" / "product.png"))
    alpha = layer[..., 3]
    assert shadow.shape == alpha.shape and shadow.max() > 100
    assert not shadow[alpha == 255].any()
    assert record["shadow_settings"]["intensity"] == cfg.shadow.intensity
    assert record["harmonize"]["light"] == "backdrop"
    mood_sha = hashlib.sha256((catalog / "mood.jpg").read_bytes()).hexdigest()
    assert record["reference_image"] == {"name": "mood.jpg", "sha256": mood_sha}
    manifest = verify_file(out / ok.output).manifest  # the signed settings name the reference and the shadow
    signed = {a["label"]: a["data"] for a in manifest["assertions"]}[SETTINGS_LABEL]
    assert signed["reference_image"]["sha256"] == mood_sha
    assert signed["shadow"]["azimuth"] == cfg.shadow.azimuth
    staged = np.asarray(Image.open(out / ok.output).convert("RGB"))
    assert np.array_equal(staged[alpha == 255], layer[..., :3][alpha == 255])  # product pixels untouched

    broken = process_row(bench, rows["BROKEN-2"], RunContext(out, "run-1"))
    assert broken.status == "failed" and broken.sku == "BROKEN-2" and broken.row == 3
    assert "reference image" in broken.error and "broken.jpg" in broken.error
    plain = process_row(bench, rows["PLAIN-4"], RunContext(out, "run-1"))
    assert plain.status == "ok", plain.error
    assert json.loads((out / plain.record).read_text())["reference_image"] is None


def test_config_reference_is_the_default_and_a_row_reference_wins(catalog, repo, images):
    from ops.sources import reference_for

    cfg = load_config(repo / "config.toml", {"scene": {"reference_image": f"catalog/images/{MOOD}"}})
    default = reference_for(cfg, "")
    assert default.sha256 == hashlib.sha256((images / MOOD).read_bytes()).hexdigest()
    own = reference_for(cfg, str(catalog / PHOTO))
    assert own.name == PHOTO and own.sha256 != default.sha256
    assert reference_for(load_config(repo / "config.toml"), "") is None


def test_a_new_reference_under_the_same_file_name_regenerates_the_product(catalog, repo, images, dev_keys):
    cfg = load_config(repo / "config.toml", {"layout": {"width": 256, "height": 256}, "renditions": {"active": []}})
    bench = Workbench.build(cfg)
    row = {r.sku: r for r in read_catalog(catalog / "catalog.csv").rows}["OK-1"]
    out = catalog / "out"
    assert process_row(bench, row, RunContext(out, "run-1")).status == "ok"
    assert process_row(bench, row, RunContext(out, "run-2")).status == "cached"
    shutil.copy(images / "28_hat_leather-newsboy-cap_on-white-sheet.jpg", catalog / "mood.jpg")  # the campaign's new moodboard
    again = process_row(bench, row, RunContext(out, "run-3"))
    assert again.status == "ok", "a replaced reference image must not be served from the cache"
    new_sha = hashlib.sha256((catalog / "mood.jpg").read_bytes()).hexdigest()
    assert json.loads((out / again.record).read_text())["reference_image"]["sha256"] == new_sha


def _learned_run(catalog, repo, photo: str, u2net_home, monkeypatch, matte: dict | None = None):
    """One product through the runner with the rembg matte (or the `[matte]` table `matte`) on the
    weights in `u2net_home`."""
    monkeypatch.setenv("U2NET_HOME", str(u2net_home))
    shutil.copy(repo / "catalog" / "images" / photo, catalog / photo)
    (catalog / "learned.csv").write_text(f"sku,image,title,category\nLEARNED-1,{photo},Thing,shoes\n")
    cfg = load_config(repo / "config.toml", {"matte": matte or {"backend": "rembg"},
                                             "layout": {"width": 512, "height": 512}, "renditions": {"active": []}})
    [row] = read_catalog(catalog / "learned.csv").rows
    result = process_row(Workbench.build(cfg), row, RunContext(catalog / "out", "run-1"))
    assert result.status == "ok", result.error
    record = json.loads((catalog / "out" / result.record).read_text())
    return result, record, {c["name"]: c for c in record["checks"]}


def test_an_uncertain_learned_cut_out_goes_to_review_not_reject(catalog, repo, tmp_path, monkeypatch, dev_keys):
    """A real (tiny) ONNX network that keys out white backdrops, given sneakers on a brown floor: its
    crisp cut-out holds the whole backdrop. The SKU is published for a person to judge, with the reason."""
    tiny_onnx.install(tmp_path / "u2net")
    result, record, checks = _learned_run(catalog, repo, "23_shoes_white-sneakers_on-brown.jpg", tmp_path / "u2net",
                                          monkeypatch)
    assert record["backends"]["matte"] == "rembg:isnet-general-use"
    assert result.verdict == "review" and record["verdict"] == "review"
    assert not checks["matte_confidence"]["passed"] and record["matte_confidence"] < 0.5
    assert any("low cut-out confidence" in r for r in record["reasons"]), record["reasons"]
    assert any("border" in r for r in record["matte_details"]["reasons"]), record["matte_details"]
    assert checks["product_pixels"]["passed"]  # what it calls product is published untouched


def test_a_cut_out_the_embedded_matte_is_unsure_of_is_made_again_by_the_backend_it_escalates_to(
        catalog, repo, tmp_path, monkeypatch, dev_keys):
    """`[matte] escalate_to = "rembg"`: shorts on a hanger before a white wall, which the embedded
    matte is unsure of, cut out again by a real (tiny) ONNX network that keys out white backdrops.
    The record says which backend made the cut-out, that it was escalated, and counts both calls."""
    tiny_onnx.install(tmp_path / "u2net")
    _, record, checks = _learned_run(catalog, repo, "31_apparel_shorts-on-hanger_white-wall.jpg", tmp_path / "u2net",
                                     monkeypatch, {"escalate_to": "rembg"})
    assert record["backends"]["matte"] == "rembg:isnet-general-use"
    esc = record["matte_details"]["escalation"]
    assert esc["from"] == "plain-backdrop" and esc["from_confidence"] < 0.5 <= esc["to_confidence"]
    assert round(record["matte_confidence"], 4) == esc["to_confidence"]
    assert record["cost"]["calls"]["plain-backdrop"] == 1 and record["cost"]["calls"]["rembg"] == 1
    assert checks["matte_confidence"]["passed"] and checks["product_pixels"]["passed"]


@pytest.mark.models
def test_learned_cut_out_with_isnet_publishes_the_product_untouched(catalog, repo, monkeypatch, dev_keys):
    """IS-Net's mask peaks at 254, not 255: the published product must still have an opaque core
    that covers the product, proven identical to the photo, and nothing rejects a good cut-out."""
    from models import weights_folder

    result, record, checks = _learned_run(catalog, repo, "22_shoes_strap-sandals_white.jpg",
                                          weights_folder("isnet-general-use.onnx"), monkeypatch)
    assert result.verdict == "pass", record["reasons"]
    # the procedural backdrop: expansion is not judged (test_rembg_isnet runs the re-segmenting check)
    assert checks["expansion"]["passed"] and checks["expansion"]["message"].startswith("not judged")
    alpha = np.asarray(Image.open((catalog / "out" / result.record).parent / "layers" / "product.png"))[..., 3]
    core = int((alpha == 255).sum())
    assert checks["product_pixels"]["passed"] and checks["product_pixels"]["message"].startswith(f"{core} opaque")
    assert core >= 0.9 * (alpha > 127).sum()
