"""Hanger check on real cut-outs: the hand-masked garment of the catalog (black shorts on a quilt)
with hangers drawn onto photo and mask by other means than the check's geometry (polylines and
ellipse arcs of a hook of a given thickness and height, a bar with clips of a given overhang), from
0.75 x the check's limits (must pass) to 1.25 x and more (must be found); clean cases (the garment as it is, upside down, shoes and
sandals with straps, the cup with its handle, caps with the category gate off and on); and the two
tuning photos shot on hangers (31, 34) staged end to end with the embedded matte."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from stages.check.fidelity import FidelityOptions
from stages.check.guards import ContentChecks
from stages.check.hangers import HangerOptions, find_hangers, hanger_check, hangs
from stages.check.nsfw.opennsfw import OpenNsfw, OpennsfwOptions
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.errors import ConfigError
from stages.layout import LayoutOptions, place_product
from stages.matte.plain_backdrop import PlainBackdropMatte, PlainBackdropOptions
from stages.pipeline import Brief, Parts, Photo, StepOptions, stage
from stages.scene.chain import SceneChain
from stages.scene.procedural import ProceduralOptions, ProceduralScene

from conftest import REPO  # tests/ is on sys.path

CFG = HangerOptions()
IMAGES = REPO / "catalog" / "images"
MASKS = REPO / "tests" / "data" / "masks"
SHORTS = "32_apparel_black-shorts_on-white-quilt"
METAL, PLASTIC = (176, 176, 182), (24, 24, 26)


def _read(stem: str) -> tuple[np.ndarray, np.ndarray]:
    rgb = cv2.cvtColor(cv2.imread(str(next(IMAGES.glob(f"{stem}.*")))), cv2.COLOR_BGR2RGB)
    return rgb, cv2.imread(str(MASKS / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def shorts():
    return _read(SHORTS)


def _box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    return cv2.boundingRect((alpha > 127).view(np.uint8))


def _paint(rgb: np.ndarray, alpha: np.ndarray, layer: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Anti-aliased `layer` (0..255) painted over photo and mask in place: the matte kept it."""
    a = layer.astype(np.float32)[..., None] / 255.0
    rgb[:] = np.rint(rgb * (1 - a) + np.array(colour, np.float32) * a).astype(np.uint8)
    np.maximum(alpha, layer, out=alpha)


def with_hook(rgb, alpha, rise: float, thick: float, at: float = 0.5, over: str = "highest"):
    """A wire hook standing on the garment's top edge at `at` of its waistband (its extent 5% of the
    garment's height below its top): a stem and a half-ellipse arc, `thick` x the garment's width
    thick, its tip `rise` x the garment's height above the highest point of the garment under it
    (it rises at least that much above the garment everywhere under it) or, `over="lowest"`, above
    the lowest (it rises at most that much anywhere: the waistband's top slopes under the arc)."""
    rgb, alpha = rgb.copy(), alpha.copy()
    x, y, w, h = _box(alpha)
    t = max(1, round(thick * w))
    cols = np.nonzero(alpha[y + round(0.05 * h)] > 127)[0]
    base_x = round(cols.min() + at * (cols.max() - cols.min()))
    r = max(3, round(0.05 * w), min(2 * t, round(0.08 * w)))  # the arc's radius across
    span = slice(base_x - t, base_x + 2 * r + t + 1)
    tops = np.argmax(alpha[:, span] > 127, axis=0)  # the garment's top edge under the hook
    top = int(tops.min() if over == "highest" else tops.max())
    tip = top - round(rise * h)  # the hook's highest pixel row
    arc_h = max(2, min(r, (top - tip) // 2))
    layer = np.zeros(alpha.shape, np.uint8)
    centre = (base_x + r, tip + t // 2 + arc_h)
    cv2.ellipse(layer, centre, (r, arc_h), 0, 180, 360, 255, t, cv2.LINE_AA)
    bottom = int(np.argmax(alpha[:, base_x] > 127)) + 6  # into the garment: the hook is joined to it
    cv2.polylines(layer, [np.array([[base_x, centre[1]], [base_x, bottom]], np.int32)], False, 255, t, cv2.LINE_AA)
    cv2.line(layer, (base_x + 2 * r, centre[1]), (base_x + 2 * r, centre[1] + arc_h // 2), 255, t, cv2.LINE_AA)
    _paint(rgb, alpha, layer, METAL)
    return rgb, alpha


def with_bar(rgb, alpha, overhang: float, thick: float, clips: bool = True, at: float = 0.0):
    """A hanger's bar lying along the garment's top edge (a line fitted to the top edge over the
    middle of the waistband, the waistband's ends taken 5% of the garment's height below its top),
    reaching `overhang` x the waistband's width past each end, `thick` x the garment's width thick,
    with a clip over each end of the waistband. `at` > 0 moves it that share of the garment's
    height down (a strap across the garment, not a hanger)."""
    rgb, alpha = rgb.copy(), alpha.copy()
    x, y, w, h = _box(alpha)
    t = max(1, round(thick * w))
    cols = np.nonzero(alpha[y + round(0.05 * h)] > 127)[0]
    xl, xr = int(cols.min()), int(cols.max())
    mid = np.arange(xl + (xr - xl) // 5, xr - (xr - xl) // 5)
    slope, icpt = np.polyfit(mid, np.argmax(alpha[:, mid] > 127, axis=0), 1)
    o = overhang * (xr - xl + 1)
    drop = t / 2 + at * h  # the bar's centre line below the top edge

    def on_edge(px: float) -> tuple[int, int]:
        return round(px), round(slope * px + icpt + drop)

    layer = np.zeros(alpha.shape, np.uint8)
    cv2.line(layer, on_edge(xl - o), on_edge(xr + o), 255, t, cv2.LINE_AA)
    if clips:
        cw, ch = round(0.06 * (xr - xl)), round(0.1 * h)
        for cx in (xl + round(0.1 * (xr - xl)), xr - round(0.1 * (xr - xl)) - cw):
            _, cy = on_edge(cx + cw / 2)
            cv2.rectangle(layer, (cx, cy - ch // 3), (cx + cw, cy + 2 * ch // 3), 255, -1, cv2.LINE_AA)
    _paint(rgb, alpha, layer, PLASTIC)
    return rgb, alpha


def hook_pixels(rgb, alpha, rise, thick, at, placement, canvas):
    """The canvas pixels the drawn hook added to the product layer."""
    opts = LayoutOptions(width=canvas, height=canvas)
    plain = place_product(rgb, alpha, opts, placement).product_alpha >= 128
    return (place_product(*with_hook(rgb, alpha, rise, thick, at), opts, placement).product_alpha >= 128) & ~plain


def judged(rgb, alpha, category: str = "apparel", placement: str = "", canvas: int = 1024, cfg=CFG):
    layout = place_product(rgb, alpha, LayoutOptions(width=canvas, height=canvas), placement)
    found = find_hangers(layout.product_alpha, category, cfg)
    return found, hanger_check(found, cfg)


PLACEMENTS = [("", 1024), ("packshot", 1024), ("thirds", 768)]


@pytest.mark.parametrize("flip", [False, True], ids=["upright", "upside-down"])
@pytest.mark.parametrize("placement,canvas", PLACEMENTS)
def test_the_hand_masked_garment_as_it_is_passes(shorts, flip, placement, canvas):
    rgb, alpha = shorts
    if flip:  # its legs up: thick parts rising above the waistband are the garment
        rgb, alpha = rgb[::-1].copy(), alpha[::-1].copy()
    found, check = judged(rgb, alpha, placement=placement, canvas=canvas)
    assert found.judged and check.passed and not found.parts, check.message


@pytest.mark.parametrize("placement,canvas", PLACEMENTS)
@pytest.mark.parametrize("at", [0.3, 0.5, 0.7])
def test_a_hook_rising_above_the_garment_is_found(shorts, placement, canvas, at):
    rgb, alpha = shorts
    for rise, thick in ((1.25 * CFG.rise, 0.015), (2.0 * CFG.rise, 0.025), (0.3, 0.01), (0.2, 0.8 * CFG.thin_width)):
        found, check = judged(*with_hook(rgb, alpha, rise, thick, at), placement=placement, canvas=canvas)
        assert not check.passed, (rise, thick, check.message)
        [hook] = found.parts
        assert hook.kind == "hook" and hook.rise > CFG.rise and "hanger or hook?" in check.message, check.message
        ys, xs = np.nonzero(hook_pixels(rgb, alpha, rise, thick, at, placement, canvas))
        assert abs(hook.y - ys.min()) <= 3, (hook, ys.min())  # where: its tip


@pytest.mark.parametrize("at", [0.3, 0.5, 0.7])
def test_a_short_stub_or_a_thick_post_is_not_a_hook(shorts, at):
    rgb, alpha = shorts
    for rise, thick in ((0.75 * CFG.rise, 0.015), (0.2, 1.2 * CFG.thin_width), (0.3, 2.0 * CFG.thin_width)):
        found, check = judged(*with_hook(rgb, alpha, rise, thick, at, over="lowest"))
        assert check.passed, (rise, thick, check.message)


@pytest.mark.parametrize("placement,canvas", PLACEMENTS)
def test_a_bar_reaching_past_the_sides_is_found_with_or_without_clips(shorts, placement, canvas):
    rgb, alpha = shorts
    for overhang, thick, clips in ((1.25 * CFG.reach, 0.015, True), (1.25 * CFG.reach, 0.03, False),
                                   (2.0 * CFG.reach, 0.02, True), (0.1, 0.02, False), (0.1, 0.8 * CFG.thin_width, True)):
        found, check = judged(*with_bar(rgb, alpha, overhang, thick, clips), placement=placement, canvas=canvas)
        # past the waistband's left end, which is higher, it is a bar; past the right end it also rises
        # above the garment's sloping side there, and is named a hook
        assert not check.passed and "hanger" in check.message, (overhang, thick, clips, check.message)


def test_a_short_bar_a_thick_band_or_a_strap_lower_down_is_not_flagged(shorts):
    rgb, alpha = shorts
    for overhang, thick, at in ((0.75 * CFG.reach, 0.015, 0.0), (0.75 * CFG.reach, 0.03, 0.0), (0.0, 0.03, 0.0),
                                (0.1, 1.2 * CFG.thin_width, 0.0), (0.1, 0.02, 0.5)):
        found, check = judged(*with_bar(rgb, alpha, overhang, thick, clips=False, at=at))
        assert check.passed, (overhang, thick, at, check.message)


def test_the_reason_says_what_and_where_and_sends_to_review(shorts):
    found, check = judged(*with_hook(*shorts, 0.2, 0.015))
    [hook] = found.parts
    assert not check.passed and not check.blocking and check.name == "hanger"
    assert check.message.startswith("thin part above the product, hanger or hook?")
    assert f"up to ({hook.x}, {hook.y}) of the canvas" in check.message
    assert 0.1 < hook.rise < 0.3 and found.details()["parts"][0]["kind"] == "hook"
    blocking = dataclasses.replace(CFG, blocking=True)
    assert hanger_check(found, blocking).blocking


@pytest.mark.parametrize("stem,category", [("19_shoes_black-suede_white", "shoes"),
                                           ("22_shoes_strap-sandals_white", "shoes"),
                                           ("20_shoes_beige-loafers_on-beige-floor", "Shoes > Loafers"),
                                           ("15_kitchen_coffee-cup_on-wood", "kitchen"),
                                           ("27_hat_leather-cap_on-white-sheet", "hats"),
                                           ("28_hat_leather-newsboy-cap_on-white-sheet", "hats")])
def test_other_categories_are_not_judged(stem, category):
    found, check = judged(*_read(stem), category=category)
    assert not found.judged and check.passed and "not one where garments hang" in check.message


@pytest.mark.parametrize("stem", ["27_hat_leather-cap_on-white-sheet", "28_hat_leather-newsboy-cap_on-white-sheet",
                                  "19_shoes_black-suede_white", "22_shoes_strap-sandals_white"])
def test_caps_and_shoes_pass_when_their_category_is_judged(stem):
    """With the gate on for hats and shoes, the upright caps and the shoes (a sandal's straps lie
    along it, not above it) have no thin part above them."""
    cfg = dataclasses.replace(CFG, categories=(*CFG.categories, "hats", "shoes"))
    found, check = judged(*_read(stem), category="hats" if "hat" in stem else "shoes", cfg=cfg)
    assert found.judged and check.passed, check.message


def test_the_category_gate_matches_words_of_the_category():
    cats = CFG.categories
    for category in ("apparel", "Apparel > T-Shirts", "Women's Dresses", "SHORTS", "outwear/coat", "hoodie"):
        assert hangs(category, cats), category
    for category in ("", "product", "shoes", "Bags > Totes", "laptop", "hats", "shirtless-mugs", "kitchen"):
        assert not hangs(category, cats), category


def test_options_are_validated():
    with pytest.raises(ConfigError, match="rise"):
        HangerOptions(rise=0.0).check("fidelity.hangers")
    with pytest.raises(ConfigError, match="categories"):
        HangerOptions(categories=("Dress",)).check("fidelity.hangers")
    with pytest.raises(ConfigError, match="top_band"):
        HangerOptions(top_band=1.5).check("fidelity.hangers")
    HangerOptions().check("fidelity.hangers")


def test_off_is_not_judged(shorts):
    found, check = judged(*with_hook(*shorts, 0.2, 0.015), cfg=dataclasses.replace(CFG, enabled=False))
    assert not found.judged and check.passed


@pytest.fixture(scope="module")
def embedded_parts():
    matte = PlainBackdropMatte(PlainBackdropOptions())
    checks = ContentChecks(OpenNsfw.load(OpennsfwOptions(threads=1)), 0.5, 0.3, FidelityOptions(expansion="off"), matte)
    scene = SceneChain(["procedural"], lambda name: ProceduralScene(ProceduralOptions()))
    return Parts(matte, GeometricDepth(GeometricOptions()), scene, checks,
                 StepOptions(layout=LayoutOptions(width=512, height=512)))


def test_the_tuning_photo_on_a_hanger_is_not_passed_with_the_embedded_matte(embedded_parts):
    """31: shorts on a black bar with clips. The embedded matte keeps the bar; the check names it.
    As `shoes`, the same cut-out is not judged for hangers."""
    rgb = cv2.cvtColor(cv2.imread(str(IMAGES / "31_apparel_shorts-on-hanger_white-wall.jpg")), cv2.COLOR_BGR2RGB)
    [v] = stage(embedded_parts, Photo(rgb), Brief("sage green wall", category="apparel"), [1]).variants
    hanger = next(c for c in v.checks if c.name == "hanger")
    assert not hanger.passed and "bar" in hanger.message, hanger
    assert v.details["hangers"]["judged"] and v.details["hangers"]["parts"]
    [v] = stage(embedded_parts, Photo(rgb), Brief("sage green wall", category="shoes"), [1]).variants
    hanger = next(c for c in v.checks if c.name == "hanger")
    assert hanger.passed and not v.details["hangers"]["judged"]


@pytest.mark.models
def test_the_tuning_photos_on_hangers_are_flagged_with_isnet():
    """rembg with the real IS-Net keeps the hanger on both tuning photos: 31's bar (with clips), 34's
    hook above the collar. Each is named; as `bags`, neither is judged."""
    from models import weights_folder
    from stages.matte.rembg import RembgMatte, RembgOptions

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("U2NET_HOME", str(weights_folder("isnet-general-use.onnx")))
        isnet = RembgMatte.load(RembgOptions())
        for name, kind in (("31_apparel_shorts-on-hanger_white-wall.jpg", "bar"),
                           ("34_apparel_light-shirt-on-hanger_white-wall.jpg", "hook")):
            rgb = cv2.cvtColor(cv2.imread(str(IMAGES / name)), cv2.COLOR_BGR2RGB)
            alpha = isnet.run(rgb).alpha
            found, check = judged(rgb, alpha)
            assert not check.passed and found.parts[0].kind == kind, (name, check.message)
            assert not judged(rgb, alpha, category="bags")[0].judged
