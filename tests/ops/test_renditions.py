"""Channel renditions end to end through the nightly flow: two presets per SKU, each re-laid out
from the source photo, signed, verified, and pixel-identical to its own product layer."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ops.catalog import read_catalog
from provenance.sign import SETTINGS_LABEL
from provenance.verify import verify_file

PHOTOS = {
    "SHOE-1": ("19_shoes_black-suede_white.jpg", ""),
    "LOAFER-2": ("20_shoes_beige-loafers_on-beige-floor.jpg", "thirds"),
}
CONFIG = """
[layout]
width = 384
height = 384
max_scale = 1.0

[layout.presets.packshot]
placement = "center"
margin = 0.05

[write]
format_copies = ["jpeg"]

[renditions]
active = ["banner", "market"]

[renditions.presets.banner]
width = 640
height = 360
formats = ["png", "jpeg"]
placement = "thirds"

[renditions.presets.market]
width = 500
height = 500
formats = ["png", "jpeg"]
placement = "packshot"
background = "#ffffff"

[renditions.presets.market.compliance]
background = "#ffffff"
max_background_std = 2.0
min_fill = 0.85
min_side = 500
no_text = true
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, images, dev_keys):
    from flows.nightly import nightly_catalog_run

    tmp = tmp_path_factory.mktemp("renditions")
    (tmp / "photos").mkdir()
    lines = ["sku,image,title,category,scene_prompt,placement"]
    for sku, (name, placement) in PHOTOS.items():
        shutil.copy(images / name, tmp / "photos" / name)
        lines.append(f"{sku},photos/{name},Title {sku},shoes,pale blue backdrop,{placement}")
    lines.append(f"BAD-3,photos/{PHOTOS['SHOE-1'][0]},Bad,shoes,,diagonal")
    (tmp / "catalog.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp / "config.toml").write_text(CONFIG, encoding="utf-8")
    result = nightly_catalog_run(catalog=str(tmp / "catalog.csv"), config=str(tmp / "config.toml"),
                                 out=str(tmp / "out"))
    return tmp, {r["sku"]: r for r in result["results"]}


def _record(tmp, rows, sku):
    path = tmp / "out" / rows[sku]["record"]
    return path.parent, json.loads(path.read_text())


def test_each_sku_gets_both_presets_signed_verified_and_pixel_identical(run):
    tmp, rows = run
    anchors = Path(os.environ["STAGE_KEYS_DIR"], "ca.pem").read_text()
    for sku, (photo, _) in PHOTOS.items():
        assert rows[sku]["status"] == "ok", rows[sku]
        folder, record = _record(tmp, rows, sku)
        entries = record["renditions"]
        assert [(e["preset"], e["format"]) for e in entries] == [
            ("banner", "png"), ("banner", "jpeg"), ("market", "png"), ("market", "jpeg")]
        source = np.asarray(Image.open(folder / record["source"]).convert("RGB"))
        for e in entries:
            path = folder / e["output"]
            assert path.name == f"{folder.name}.{e['preset']}.{'png' if e['format'] == 'png' else 'jpg'}"
            ver = verify_file(path, anchors)
            assert ver.ok and ver.trusted, ver.failures
            ingredient = ver.manifest["ingredients"][0]
            assert ingredient["relationship"] == "parentOf" and ingredient["title"] == photo  # the source photo
            signed = {a["label"]: a["data"] for a in ver.manifest["assertions"]}[SETTINGS_LABEL]
            assert signed["preset"] == e["preset"] and signed["format"] == e["format"]

            px = np.asarray(Image.open(path).convert("RGB"))
            layer = np.asarray(Image.open(folder / e["product_layer"]))
            assert e["product_layer"] == f"layers/{e['preset']}/product.png"
            assert px.shape[:2] == layer.shape[:2] == (e["size"][1], e["size"][0])
            core = layer[..., 3] == 255
            assert core.sum() > 2000
            diff = np.abs(px[core].astype(int) - layer[..., :3][core].astype(int))
            if e["format"] == "png":
                assert diff.max() == 0  # lossless: the product pixels exactly
            else:
                assert diff.mean() <= 4.0
            # the layer is the source photo at this preset's own scale, placed where the record says
            p = e["placement"]
            x0, y0, x1, y1 = p["source_box"]
            resized = np.asarray(Image.fromarray(source[y0:y1, x0:x1]).resize((p["width"], p["height"])))
            box = (slice(p["y"], p["y"] + p["height"]), slice(p["x"], p["x"] + p["width"]))
            inner = core[box]
            assert np.abs(layer[..., :3][box][inner].astype(int) - resized[inner]).mean() < 12
            assert p["scale"] <= 1.0  # [layout] max_scale holds for every preset


def test_each_preset_is_laid_out_and_staged_for_its_own_canvas(run):
    tmp, rows = run
    folder, record = _record(tmp, rows, "SHOE-1")
    banner, market = record["renditions"][0], record["renditions"][2]
    assert banner["placement"]["mode"] == "thirds"
    cx = banner["placement"]["x"] + banner["placement"]["width"] / 2
    assert abs(cx - 640 / 3) <= 1  # on the left third line of the 16:9 canvas, not the master squashed
    assert market["placement"]["preset"] == "packshot" and market["placement"]["mode"] == "center"
    assert market["scene"]["backend"] == "flat"
    assert banner["scene"]["backend"] == "procedural" and banner["scene"]["colour_word"] == "pale blue"
    px = np.asarray(Image.open(folder / banner["output"]).convert("RGB"))
    layer = np.asarray(Image.open(folder / banner["product_layer"]))
    backdrop = px[layer[..., 3] == 0]
    assert backdrop.std(axis=0).max() > 2  # a generated sweep, not a flat fill
    px = np.asarray(Image.open(folder / market["output"]).convert("RGB"))
    layer = np.asarray(Image.open(folder / market["product_layer"]))
    assert (px[layer[..., 3] == 0] == 255).all()  # pure white around the product (lossless PNG)
    # the master keeps its own canvas, the row's placement and its [write] format copy
    assert record["canvas"] == [384, 384] and (folder / record["format_copies"][0]["output"]).is_file()
    _, loafer = _record(tmp, rows, "LOAFER-2")
    assert loafer["placement"]["mode"] == "thirds"  # the row's `placement` column
    assert loafer["renditions"][2]["placement"]["mode"] == "center"  # the preset's own placement


def test_a_compliance_failure_sends_the_product_to_review_with_the_reason(run):
    tmp, rows = run
    _, shoe = _record(tmp, rows, "SHOE-1")  # 333 px tall, max_scale 1.0: cannot fill 85% of 500 px
    market = {e["format"]: e for e in shoe["renditions"] if e["preset"] == "market"}
    fill = {c["name"]: c for c in market["jpeg"]["compliance"]}["fill"]
    assert not fill["passed"] and fill["value"] < 0.85 and not fill["blocking"]
    assert market["jpeg"]["verdict"] == "review" and market["jpeg"]["output"]  # published, for review
    assert shoe["verdict"] == "review"
    assert any(r.startswith("rendition market jpeg fill: product spans") for r in shoe["reasons"])
    _, loafer = _record(tmp, rows, "LOAFER-2")  # large enough: every rule holds
    for e in loafer["renditions"]:
        if e["preset"] == "market":
            assert e["compliance"] and all(c["passed"] for c in e["compliance"]), e["compliance"]
            assert e["verdict"] == "pass"


def test_bad_placement_fails_only_its_row_naming_row_sku_and_value(run):
    tmp, rows = run
    bad = rows["BAD-3"]
    assert bad["status"] == "failed"
    assert "row 4" in bad["error"] and "'BAD-3'" in bad["error"] and "'diagonal'" in bad["error"]
    assert all(rows[sku]["status"] == "ok" for sku in PHOTOS)


def test_catalog_rejects_a_placement_that_is_not_a_name(tmp_path, photo):
    (tmp_path / "c.csv").write_text(
        "sku,image,title,category,placement\nA,photos/shoe.jpg,T,shoes,Center\nB,photos/shoe.jpg,T,shoes,../x\n",
        encoding="utf-8")
    cat = read_catalog(tmp_path / "c.csv")
    assert [r.placement for r in cat.rows] == ["center"]
    [error] = cat.errors
    assert (error.row, error.sku) == (3, "B") and "placement '../x' is not a placement name" in error.reason


def test_a_missing_rendition_is_made_again_on_the_next_run(run):
    from ops.config import load_config
    from ops.context import RunContext
    from ops.runner import process_row
    from ops.workbench import Workbench

    tmp, rows = run
    bench = Workbench.build(load_config(tmp / "config.toml"))
    catalog = {r.sku: r for r in read_catalog(tmp / "catalog.csv").rows}
    out = tmp / "out"
    assert process_row(bench, catalog["LOAFER-2"], RunContext(out, "run-2")).status == "cached"
    folder, record = _record(tmp, rows, "LOAFER-2")
    gone = folder / record["renditions"][1]["output"]
    gone.unlink()
    again = process_row(bench, catalog["LOAFER-2"], RunContext(out, "run-2"))
    assert again.status == "ok" and gone.is_file()
    assert verify_file(gone).ok


class _Verdict:
    """Stands in for the content checks: one fixed result, and what it was asked to judge."""

    def __init__(self, result):
        self.result, self.seen = result, []

    def outline(self, layout):
        return None

    def run(self, pixels, layout, source_rgb, matte, outline=None):
        self.seen.append(pixels.shape)
        return [self.result], {}


class _Trained:
    """The procedural backdrop, labelled as a trained model's output."""

    def __init__(self, inner):
        self.inner = inner

    def generate_many(self, requests):
        return [dataclasses.replace(s, backend="trained", trained=True) for s in self.inner.generate_many(requests)]


def test_scenes_from_a_trained_model_pass_the_content_checks_before_publishing(tmp_path, images, dev_keys):
    from ops.catalog import CatalogRow
    from ops.config import load_config
    from ops.paths import ProductPaths
    from ops.renditions import SourcePhoto, render_channels
    from ops.workbench import Workbench
    from stages.check import CheckResult
    from stages.encode import thumbnail_jpeg
    from stages.load import decode_image
    from stages.matte import compute_matte
    from stages.pipeline import Brief

    cfg = load_config(None, {"renditions": {"active": ["shop"], "presets": {
        "shop": {"width": 320, "height": 400, "formats": ["png", "webp"]}}}})
    bench = Workbench.build(cfg)
    procedural = bench.parts.scene
    data = (images / "19_shoes_black-suede_white.jpg").read_bytes()
    image = decode_image(data, cfg.load)
    source = SourcePhoto(image, data, "image/jpeg", "shoe.jpg", thumbnail_jpeg(image.rgb, 64))
    matte = compute_matte(bench.parts.matte, image.rgb, None)
    row = CatalogRow(1, "S-1", "shoe.jpg", "Shoe", "shoes")
    paths = ProductPaths(tmp_path, "s-1")

    def channels(generator, result):
        bench.parts.scene, bench.parts.checks = generator, _Verdict(result)
        entries = render_channels(bench, source, matte, Brief("sage green wall"), 7, row, paths)
        return entries, bench.parts.checks.seen

    nsfw = CheckResult("nsfw", False, 0.93, "< 0.5", "nsfw score 0.93", True)
    halo = CheckResult("halo", False, 0.4, "<= 0.25", "backdrop fringe on 40% of the rim", False)
    blocked, seen = channels(_Trained(procedural), nsfw)
    assert seen == [(400, 320, 3)]
    assert [e.output for e in blocked] == [None, None] and not list(paths.folder.glob("s-1.shop.*"))
    assert all(e.verdict == "reject" for e in blocked)
    assert "rendition shop png failed its checks and was not published" in blocked[0].problems()

    flagged, _ = channels(_Trained(procedural), halo)
    assert all(e.output and e.verdict == "review" for e in flagged)
    assert "rendition shop webp halo: backdrop fringe on 40% of the rim" in flagged[1].problems()
    assert verify_file(paths.folder / "s-1.shop.webp").ok

    clean, seen = channels(procedural, nsfw)  # a procedural backdrop: nothing generated to judge
    assert seen == [] and all(e.verdict == "pass" for e in clean)
