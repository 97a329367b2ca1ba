"""Best-of-N: ranking, quality score, and a product run whose generator extends the product in
some variants: the clean variant must be selected and the others kept in the record."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from ops.catalog import read_catalog
from ops.config import load_config
from ops.context import RunContext
from stages.check import CheckResult
from stages.layout import place_product
from stages.scene.chain import SceneChain
from stages.scene.procedural import ProceduralOptions, ProceduralScene
from stages.selection import image_quality, marginal, rank_key, select


@dataclass
class _V:
    index: int
    checks: list[CheckResult]
    score: float
    published: bool


def _v(index, checks, score, output=True):
    return _V(index, [CheckResult(n, p, 0.0, "", "", b) for n, p, b in checks], score, output)


def test_ranking_blocking_then_review_then_quality():
    ok = ("c2pa", True, True)
    variants = [
        _v(0, [ok, ("product_pixels", False, True)], 0.99, output=False),  # rejected
        _v(1, [ok, ("expansion", False, False)], 0.95),  # review
        _v(2, [ok], 0.60),
        _v(3, [ok], 0.80),
    ]
    assert select(variants) == 3
    assert [v.index for v in sorted(variants, key=rank_key)] == [3, 2, 1, 0]
    # equal scores: the lower index wins (stable)
    assert select([_v(0, [ok], 0.5), _v(1, [ok], 0.5)]) == 0
    # nothing published: still a defined primary (the least bad)
    assert select([_v(0, [("nsfw", False, True)], 0.1, False), _v(1, [ok], 0.1, False)]) == 1


def test_marginal_quality_goes_to_review():
    assert marginal("pass", [], 0.9, 0.5) == ("pass", [])
    v, reasons = marginal("pass", [], 0.2, 0.5)
    assert v == "review" and "marginal" in reasons[0]
    assert marginal("reject", ["x"], 0.2, 0.5) == ("reject", ["x"])


def test_image_quality_flags_blank_and_clipped_scenes(images, repo):
    from ops.sources import load_image
    from stages.matte import load_matte_backend

    cfg = load_config(repo / "config.toml", {"layout": {"width": 256, "height": 256}})
    img = load_image(str(images / "19_shoes_black-suede_white.jpg"), cfg.load)
    matte = load_matte_backend(cfg.matte.backend, cfg.matte.options)
    layout = place_product(img.rgb, matte.run(img.rgb).alpha, cfg.layout)
    rng = np.random.default_rng(0)
    textured = np.clip(rng.normal(150, 20, (256, 256, 3)), 0, 255).astype(np.uint8)
    blank = np.full((256, 256, 3), 200, np.uint8)
    blown = np.full((256, 256, 3), 255, np.uint8)
    q_ok, q_blank, q_blown = (image_quality(x, layout) for x in (textured, blank, blown))
    assert q_ok == {"exposure": 1.0, "detail": 1.0}
    assert q_blank["detail"] < 0.1 and q_blank["exposure"] == 1.0
    assert q_blown["exposure"] == 0.0
    # the definition, in plain numpy, on real photos: a low-contrast one (detail) and one with
    # blown and crushed patches (exposure)
    photo = cv2.resize(load_image(str(images / "20_shoes_beige-loafers_on-beige-floor.jpg"), cfg.load).rgb,
                       (256, 256), interpolation=cv2.INTER_AREA)
    flat = (128 + (photo.astype(np.float32) - 128) * 0.08).round().astype(np.uint8)
    patched = photo.copy()
    patched[:20, :60] = 255
    patched[-16:, -50:] = 0
    scene = layout.product_alpha == 0
    for x in (flat, patched):
        px = x[scene].astype(np.float64)
        lum = px @ np.array([0.299, 0.587, 0.114])
        clipped = ((px.max(1) >= 254) & (px.min(1) >= 250)).mean() + (px.max(1) <= 2).mean()
        assert image_quality(x, layout) == pytest.approx(
            {"exposure": max(0.0, 1 - clipped / 0.2), "detail": min(1.0, lum.std() / 4.0)}, abs=0.01)
    assert image_quality(flat, layout)["detail"] < 1.0 and image_quality(patched, layout)["exposure"] < 1.0


class ExtendingScene(ProceduralScene):
    """The procedural backdrop, plus (for odd seeds) a strap of the product's colour drawn out of the
    product's top edge: a trained generator that 'draws more product' in some variants (its scenes
    say trained, so the expansion check judges them)."""

    name = "test-extending"

    def generate(self, request):
        scene = dataclasses.replace(super().generate(request), trained=True)
        if request.seed % 2 == 0:
            return scene
        layout = request.layout
        rgb = scene.rgb.copy()
        p = layout.placement
        core = layout.product_alpha == 255
        colour = np.median(layout.product_rgb[core], axis=0)
        x = p.x + p.width // 2
        top = int(np.nonzero(layout.product_alpha[:, x] >= 128)[0].min())
        length, width = max(8, p.height // 8), max(3, p.width // 25)
        cv2.line(rgb, (x, top + 2), (x, top - length), [int(c) for c in colour], thickness=width)
        return dataclasses.replace(scene, rgb=rgb, settings={**scene.settings, "test_extension": True})


def test_best_of_n_picks_the_clean_variant_and_keeps_the_others(tmp_path, images, repo, dev_keys):
    from ops.runner import process_row
    from ops.workbench import Workbench

    shutil.copy(images / "27_hat_leather-cap_on-white-sheet.jpg", tmp_path / "cap.jpg")
    (tmp_path / "c.csv").write_text("sku,image,title,category,scene_prompt,seed,variants\n"
                                    "CAP-1,cap.jpg,Cap,hats,sage green wall,11,3\n", encoding="utf-8")
    [row] = read_catalog(tmp_path / "c.csv").rows
    cfg = load_config(repo / "config.toml", {"layout": {"width": 320, "height": 320}})
    bench = Workbench.build(cfg)
    bench.parts.scene = SceneChain(["procedural"], lambda name: ExtendingScene(ProceduralOptions()))
    res = process_row(bench, row, RunContext(tmp_path / "out", "run-1"))
    assert res.status == "ok", res
    rec = json.loads((tmp_path / "out" / res.record).read_text())
    assert len(rec["variants"]) == 3
    by_index = {v["index"]: v for v in rec["variants"]}
    # seeds 11, 12, 13: variants 0 and 2 were extended, variant 1 is clean
    for i in (0, 2):
        exp = next(c for c in by_index[i]["checks"] if c["name"] == "expansion")
        assert not exp["passed"], exp
        assert by_index[i]["verdict"] != "pass"
        assert by_index[i]["quality"]["parts"]["expansion"] < 1.0
    clean = by_index[1]
    assert next(c for c in clean["checks"] if c["name"] == "expansion")["passed"]
    assert rec["selected_variant"] == 1 and rec["output"] == clean["output"]
    assert res.output.endswith(clean["output"])
    assert all((tmp_path / "out" / res.record).parent.joinpath(v["output"]).is_file() for v in rec["variants"])
    assert rec["verdict"] == clean["verdict"]


def test_the_procedural_backdrop_is_not_judged_for_expansion(tmp_path, images, repo, dev_keys):
    """The same extended scenes, not marked as a trained model's: no generator drew them, so the
    expansion check does not judge them (it says so) and the variants pass it."""
    from ops.runner import process_row
    from ops.workbench import Workbench

    class Untrained(ExtendingScene):
        def generate(self, request):
            return dataclasses.replace(super().generate(request), trained=False)

    shutil.copy(images / "27_hat_leather-cap_on-white-sheet.jpg", tmp_path / "cap.jpg")
    (tmp_path / "c.csv").write_text("sku,image,title,category,scene_prompt,seed,variants\n"
                                    "CAP-1,cap.jpg,Cap,hats,sage green wall,11,1\n", encoding="utf-8")
    [row] = read_catalog(tmp_path / "c.csv").rows
    bench = Workbench.build(load_config(repo / "config.toml", {"layout": {"width": 320, "height": 320}}))
    bench.parts.scene = SceneChain(["procedural"], lambda name: Untrained(ProceduralOptions()))
    res = process_row(bench, row, RunContext(tmp_path / "out", "run-1"))
    rec = json.loads((tmp_path / "out" / res.record).read_text())
    [variant] = rec["variants"]
    exp = next(c for c in variant["checks"] if c["name"] == "expansion")
    assert exp["passed"] and exp["message"].startswith("not judged: the scene was not drawn by a trained model"), exp
    assert {c["name"] for c in variant["checks"]} >= {"nsfw", "halo", "stray_parts", "rim_spill"}
