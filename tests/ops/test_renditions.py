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


@pytest.fixture(scope="module")
def again(run):
    """The first run's summary.json, and the result of the same catalog run again (nothing changed)."""
    from flows.nightly import nightly_catalog_run

    tmp, _ = run
    first = json.loads(next((tmp / "out" / "runs").glob("*/summary.json")).read_text())
    return first, nightly_catalog_run(catalog=str(tmp / "catalog.csv"), config=str(tmp / "config.toml"),
                                      out=str(tmp / "out"))


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
        # SHOE-1's photo is too small for the market preset's fill: that preset is withheld (see below)
        withheld = {e["preset"] for e in entries if e["verdict"] == "withheld"}
        assert withheld == ({"market"} if sku == "SHOE-1" else set())
        for e in (e for e in entries if e["preset"] not in withheld):
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
    assert market["scene"] == {}  # withheld (photo too small): never staged
    assert banner["scene"]["backend"] == "procedural" and banner["scene"]["colour_word"] == "pale blue"
    px = np.asarray(Image.open(folder / banner["output"]).convert("RGB"))
    layer = np.asarray(Image.open(folder / banner["product_layer"]))
    backdrop = px[layer[..., 3] == 0]
    assert backdrop.std(axis=0).max() > 2  # a generated sweep, not a flat fill
    # the master keeps its own canvas, the row's placement and its [write] format copy
    assert record["canvas"] == [384, 384] and (folder / record["format_copies"][0]["output"]).is_file()
    lfolder, loafer = _record(tmp, rows, "LOAFER-2")
    market = loafer["renditions"][2]
    assert market["scene"]["backend"] == "flat"
    px = np.asarray(Image.open(lfolder / market["output"]).convert("RGB"))
    layer = np.asarray(Image.open(lfolder / market["product_layer"]))
    assert (px[layer[..., 3] == 0] == 255).all()  # pure white around the product (lossless PNG)
    assert loafer["placement"]["mode"] == "thirds"  # the row's `placement` column
    assert loafer["renditions"][2]["placement"]["mode"] == "center"  # the preset's own placement


def test_a_photo_too_small_for_a_rule_withholds_the_rendition_without_review(run):
    tmp, rows = run
    folder, shoe = _record(tmp, rows, "SHOE-1")  # 333 px tall, max_scale 1.0: cannot fill 85% of 500 px
    market = [e for e in shoe["renditions"] if e["preset"] == "market"]
    assert [(e["format"], e["output"], e["verdict"], e["product_layer"]) for e in market] == [
        ("png", None, "withheld", None), ("jpeg", None, "withheld", None)]
    # nothing of the preset was written: no rendition in any format, no product layer, no temp file
    assert sorted(p.name for p in folder.iterdir() if ".market." in p.name) == []
    assert not (folder / "layers" / "market").exists() and not list(folder.rglob("*.tmp"))
    [problem] = shoe["photo_problems"]
    assert problem["rendition"] == "market" and problem["rule"] == "min_fill" and problem["needed"] == 0.85
    assert problem["formats"] == ["png", "jpeg"] and problem["measured"] < 0.85
    assert problem["why"].startswith("photo too small: the product is ")
    # not a review reason: the SKU keeps the verdict of its other checks
    assert not any("market" in r for r in shoe["reasons"]) and shoe["verdict"] == rows["SHOE-1"]["verdict"]
    assert rows["SHOE-1"]["photo_problems"] == shoe["photo_problems"]
    # large enough: every rule holds, the rendition is published and passes its own checks (the
    # SKU goes to review for the torn heel rim of its cut-out, not for the rendition)
    _, loafer = _record(tmp, rows, "LOAFER-2")
    assert loafer["photo_problems"] == [] and rows["LOAFER-2"]["verdict"] == loafer["verdict"] == "review"
    assert [r.split(":")[0] for r in loafer["reasons"]] == ["matte_confidence"]
    for e in loafer["renditions"]:
        if e["preset"] == "market":
            assert e["compliance"] and all(c["passed"] for c in e["compliance"]), e["compliance"]
            assert e["verdict"] == "pass" and e["output"]


def test_the_run_summary_counts_photo_problems_as_their_own_class(again):
    from flows.launch import summarize

    first, second = again
    assert {r["sku"]: r["status"] for r in second["results"]}["SHOE-1"] == "cached"  # unchanged: not staged again
    for s in (first["summary"], second["summary"]):
        assert s["photo_problems"] == [{"rendition": "market", "rule": "min_fill",
                                        "label": "photo too small for market", "skus": 1}]
        assert not any(g["check"].startswith("rendition market") for g in s["review_by_check"])
    cached = {r["sku"]: r for r in second["results"]}["SHOE-1"]
    assert cached["photo_problems"] == {r["sku"]: r for r in first["results"]}["SHOE-1"]["photo_problems"]
    html = Path(second["report"]).read_text()
    assert "Photo problems: renditions withheld" in html and "photo too small for market: 1 SKU" in html
    lines: list[str] = []
    summarize(second, lines.append)
    assert any(line.startswith("photo problems") and "photo too small for market: 1 SKU" in line for line in lines)


def test_an_approved_sku_keeps_its_photo_problems_in_later_summaries(run, again):
    from flows.nightly import nightly_catalog_run
    from ops import review

    tmp, _ = run
    review.decide(tmp / "out", "SHOE-1", "approved", by="merch")
    try:
        third = nightly_catalog_run(catalog=str(tmp / "catalog.csv"), config=str(tmp / "config.toml"),
                                    out=str(tmp / "out"))
    finally:
        review.reset(tmp / "out", "SHOE-1")
    shoe = {r["sku"]: r for r in third["results"]}["SHOE-1"]
    assert shoe["status"] == "cached" and shoe["reasons"][0].startswith("review: approved by merch")
    assert shoe["photo_problems"] and shoe["photo_problems"][0]["rendition"] == "market"
    assert third["summary"]["photo_problems"][0]["skus"] == 1


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

    def measure(self, layout, source_rgb, matte, category=""):
        return None

    def run(self, pixels, layout, source_rgb, matte, measures=None, category="", generated=True):
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


def test_only_a_rule_the_photo_cannot_meet_withholds_a_rendition(tmp_path, images, dev_keys):
    """Small canvases, a real photo at two sizes: the 400 px original, and the same photo at half
    size, whose product (about 125x165 px) cannot span 85% of 300 px without enlarging (max_scale 1)."""
    import io

    from ops.catalog import CatalogRow
    from ops.config import load_config
    from ops.paths import ProductPaths
    from ops.record import photo_problems
    from ops.renditions import SourcePhoto, render_channels
    from ops.workbench import Workbench
    from stages.encode import thumbnail_jpeg
    from stages.load import decode_image
    from stages.matte import compute_matte
    from stages.pipeline import Brief

    white = {"background": "#ffffff", "formats": ["jpeg", "png"], "width": 300, "height": 300}
    rules = {"background": "#ffffff", "min_fill": 0.85}
    cfg = load_config(None, {
        "layout": {"max_scale": 1.0, "presets": {"packshot": {"placement": "center", "margin": 0.05},
                                                 "roomy": {"placement": "center", "margin": 0.2}}},
        "renditions": {"active": ["market", "roomy"], "presets": {
            "market": {**white, "placement": "packshot", "compliance": rules},
            "roomy": {**white, "placement": "roomy", "compliance": rules}}}})  # 20% margins: 60% at most
    bench = Workbench.build(cfg)
    original = Image.open(images / "19_shoes_black-suede_white.jpg")
    buf = io.BytesIO()
    original.resize((original.width // 2, original.height // 2), Image.LANCZOS).save(buf, "JPEG", quality=95)
    row = CatalogRow(1, "S-1", "shoe.jpg", "Shoe", "shoes")

    def channels(data, slug):
        image = decode_image(data, cfg.load)
        source = SourcePhoto(image, data, "image/jpeg", "shoe.jpg", thumbnail_jpeg(image.rgb, 64))
        matte = compute_matte(bench.parts.matte, image.rgb, None)
        paths = ProductPaths(tmp_path, slug)
        return render_channels(bench, source, matte, Brief("white"), 7, row, paths), paths.folder

    # an earlier run published a market rendition of this SKU (say, from a larger photo)
    small_folder = tmp_path / "products" / "small"
    (small_folder / "layers" / "market").mkdir(parents=True)
    for name in ("small.market.jpg", "small.market.png", "layers/market/product.png"):
        (small_folder / name).write_bytes(b"old")

    small, folder = channels(buf.getvalue(), "small")
    by = {(e.preset, e.format): e for e in small}
    for fmt in ("jpeg", "png"):  # market: withheld, and the earlier files are gone
        e = by["market", fmt]
        assert (e.output, e.verdict, e.product_layer, e.problems()) == (None, "withheld", None, [])
        assert e.reasons[0].startswith("photo too small:") and e.photo_problems[0].rule == "min_fill"
    assert not list(folder.glob("small.market.*")) and not (folder / "layers" / "market").exists()
    [p] = photo_problems(small)
    assert (p["rendition"], p["rule"], p["formats"], p["needed"]) == ("market", "min_fill", ["jpeg", "png"], 0.85)
    assert p["measured"] < 0.85
    # roomy: the margins, not the photo, keep it under 85% (a larger photo would not help): published, review
    for fmt in ("jpeg", "png"):
        e = by["roomy", fmt]
        assert e.output and e.verdict == "review" and not e.photo_problems
        assert any(r.startswith(f"rendition roomy {fmt} fill: product spans") for r in e.problems())
    assert (folder / "small.roomy.jpg").is_file()

    big, folder = channels((images / "19_shoes_black-suede_white.jpg").read_bytes(), "big")
    by = {(e.preset, e.format): e for e in big}
    assert photo_problems(big) == []
    for fmt in ("jpeg", "png"):  # the original photo is big enough: published and compliant
        assert by["market", fmt].verdict == "pass" and (folder / by["market", fmt].output).is_file()
        assert by["roomy", fmt].verdict == "review" and not by["roomy", fmt].photo_problems
    assert verify_file(folder / "big.market.jpg").ok


def test_presets_laid_out_from_the_masters_crop_match_fresh_layouts(tmp_path, images, dev_keys):
    """The channel presets start from the master's product crop (stages.pipeline.matte_crop): every
    preset's layout, product layer and published pixels are those of laying it out from the photo."""
    from ops.catalog import CatalogRow
    from ops.config import load_config
    from ops.paths import ProductPaths, channel_layer
    from ops.renditions import SourcePhoto, render_channels
    from ops.workbench import Workbench
    from stages.check.pixels import decode_rgb
    from stages.encode import thumbnail_jpeg
    from stages.load import decode_image
    from stages.matte import compute_matte
    from stages.pipeline import Brief, matte_crop

    cfg = load_config(None, {"renditions": {"active": ["tall", "white"], "presets": {
        "tall": {"width": 240, "height": 300, "formats": ["png"]},
        "white": {"width": 256, "height": 256, "formats": ["png"], "placement": "packshot", "background": "#ffffff"}}}})
    bench = Workbench.build(cfg)
    data = (images / "19_shoes_black-suede_white.jpg").read_bytes()
    image = decode_image(data, cfg.load)
    source = SourcePhoto(image, data, "image/jpeg", "shoe.jpg", thumbnail_jpeg(image.rgb, 64))
    matte = compute_matte(bench.parts.matte, image.rgb, None)
    row = CatalogRow(1, "S-1", "shoe.jpg", "Shoe", "shoes")
    made = {}
    for name, crop in (("fresh", None), ("shared", matte_crop(image.rgb, matte, bench.parts.options.layout))):
        paths = ProductPaths(tmp_path / name, "s-1")
        entries = render_channels(bench, source, matte, Brief("sage green wall"), 7, row, paths, crop)
        assert [e.output for e in entries] == ["s-1.tall.png", "s-1.white.png"]
        made[name] = [(e.placement, e.verdict, decode_rgb((paths.folder / e.output).read_bytes()),
                       (paths.folder / channel_layer(e.preset)).read_bytes()) for e in entries]
    for fresh, shared in zip(made["fresh"], made["shared"], strict=True):
        assert fresh[:2] == shared[:2] and np.array_equal(fresh[2], shared[2]) and fresh[3] == shared[3]
