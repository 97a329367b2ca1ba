"""The embedded matte on the photos that trip it: real product cut-outs composited on rendered
seamless backdrops, with the failure each case family stages.

Every scene is drawn from a hand mask (tests/data/masks) applied to its photo, so the true matte
of the composite is known and nothing in a scene is derived from the matte's own thresholds or
references. Each case must end either with a good matte (IoU >= 0.95 against the composite's
mask and no stray part) or with a confidence below [matte] min_confidence and a reason that
names the failure; a confident bad matte is a miss and fails.

Families: a floor reflection (a faded, blurred, vertically mirrored copy of the product's lower
part below the contact line), a contact shadow on the seamless floor, a grey paper strip detached
from the product or lying against it, white specks of the sheet beside it, white lettering on a
dark strap, a thin handle (an arc 2-3 px wide), a white product on a white backdrop, and good
packshots on the same sweep (which must still pass). Near-threshold cases: faint reflections,
a faint paper strip, a small strip joined to the product (1.8% of the cut-out).

Blind spots (measured with these scenes, named in README "Checks and review"):
- paper joined to the product with a colour midway between the backdrop's and the product's
  (grey 160 against a black cap) stays as product and passes; a product part of the backdrop's
  colour reaching the outline is cut away like backdrop (review from about 1% of the cut-out);
- the mirror test needs the reflection to start faded at the contact line (at most 0.8 of the
  product's contrast in its first rows); no scene here breaks that (strengths up to 1.0 are
  caught, as the fade and blur at the line keep it under), but a mirror-like floor could; a
  blurred or coloured reflection that no longer mirrors is cut away as backdrop-coloured parts
  or as a soft shadow instead, not recognised as a reflection;
- a gap through the product as narrow as a letter stroke is filled as lettering;
- a product with no difference to the backdrop at all (white 236 on a 240 sweep) gives a
  near-empty cut-out with zero confidence.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ops.config import MatteConfig
from stages.matte.plain_backdrop import PlainBackdropMatte, PlainBackdropOptions

REPO = Path(__file__).resolve().parents[3]
IMAGES = REPO / "catalog" / "images"
MASKS = REPO / "tests" / "data" / "masks"
MIN_CONFIDENCE = MatteConfig().min_confidence
SIZE = (640, 512)  # canvas height, width


def cutout(number: str, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A product's pixels and alpha (float32) from its photo and hand mask, scaled to `height` px."""
    (mask_path,) = MASKS.glob(f"{number}_*.png")
    (photo,) = IMAGES.glob(f"{mask_path.stem}.*")
    rgb = np.asarray(Image.open(photo).convert("RGB")).astype(np.float32)
    alpha = np.asarray(Image.open(mask_path).convert("L")).astype(np.float32) / 255.0
    ys, xs = np.nonzero(alpha > 0.5)
    crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    rgb, alpha = rgb[crop], alpha[crop]
    size = (max(1, round(rgb.shape[1] * height / rgb.shape[0])), height)
    return (cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
            np.clip(cv2.resize(alpha, size, interpolation=cv2.INTER_AREA), 0.0, 1.0))


def sweep(tone=(246.0, 245.0, 243.0)) -> np.ndarray:
    """A seamless studio sweep: brighter at the top, a soft fall-off to the sides."""
    h, w = SIZE
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :, None]
    shade = 1.0 - 0.06 * y - 0.04 * x * x
    return np.float32(tone) * shade


class Scene:
    """A canvas being composited: `img` (float RGB) and `mask` (the true product coverage)."""

    def __init__(self, tone=(246.0, 245.0, 243.0)):
        self.img = sweep(tone)
        self.mask = np.zeros(SIZE, np.float32)
        self.detail = np.zeros(SIZE, np.float32)  # the part a case is about (letters, a handle)

    def paste(self, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int, product: bool = True) -> None:
        h, w = alpha.shape
        roi = (slice(y, y + h), slice(x, x + w))
        a = alpha[..., None]
        self.img[roi] = rgb * a + self.img[roi] * (1.0 - a)
        if product:
            self.mask[roi] = np.maximum(self.mask[roi] * (1.0 - alpha), alpha)
        else:
            self.mask[roi] *= 1.0 - alpha

    def darken(self, amount: np.ndarray) -> None:
        """A shadow on the backdrop (under everything pasted later)."""
        self.img *= 1.0 - amount[..., None]

    def photo(self, seed: int = 0, noise: float = 2.0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.clip(np.round(self.img + rng.normal(0, noise, self.img.shape)), 0, 255).astype(np.uint8)


def product_on_floor(number="19", height=300, x=None, contact=470, scene=None):
    """Paste a product so its base sits on the contact line; returns (scene, rgb, alpha, x, y)."""
    scene = scene or Scene()
    rgb, alpha = cutout(number, height)
    x = (SIZE[1] - alpha.shape[1]) // 2 if x is None else x
    y = contact - height
    return scene, rgb, alpha, x, y


def reflection_scene(strength: float, number="19", blur=2.0, depth=0.5, tint=(1.0, 1.0, 1.0)):
    """A glossy floor: below the contact line, a vertically mirrored copy of the product's lower
    `depth` share, faded by `strength` and further with distance, blurred. `tint` recolours the
    product (a coloured product's reflection is no neutral darkening)."""
    scene, rgb, alpha, x, y = product_on_floor(number)
    rgb = np.clip(rgb * np.float32(tint), 0.0, 255.0)
    h = alpha.shape[0]
    n = int(h * depth)
    flip_rgb, flip_a = rgb[::-1][:n], alpha[::-1][:n]
    fade = strength * np.exp(-np.arange(n, dtype=np.float32) / (0.5 * n))[:, None]
    ra = cv2.GaussianBlur(flip_a * fade, (0, 0), blur)
    rr = cv2.GaussianBlur(flip_rgb, (0, 0), blur)
    scene.paste(rr, ra, x, y + h, product=False)
    scene.paste(rgb, alpha, x, y)
    return scene


def contact_shadow_scene(strength: float, number="19"):
    scene, rgb, alpha, x, y = product_on_floor(number)
    h, w = alpha.shape
    ell = np.zeros(SIZE, np.float32)
    cv2.ellipse(ell, (x + w // 2, y + h), (int(0.55 * w), int(0.05 * h) + 4), 0, 0, 360, 1.0, -1)
    scene.darken(strength * cv2.GaussianBlur(ell, (0, 0), 9))
    scene.paste(rgb, alpha, x, y)
    return scene


def paper_strip_scene(grey: float, number="27"):
    """A strip of grey backdrop paper lying detached beside the product."""
    scene, rgb, alpha, x, y = product_on_floor(number, height=260, x=60)
    scene.paste(rgb, alpha, x, y)
    strip = np.zeros((40, 120), np.float32)
    strip[4:-4, 4:-4] = 1.0
    strip = cv2.GaussianBlur(strip, (0, 0), 1.0)
    tone = np.full((40, 120, 3), grey, np.float32) * np.float32([1.0, 1.0, 0.99])
    scene.paste(tone, strip, 360, 420, product=False)
    return scene


def joined_strip_scene(grey: float, width: int = 120, height: int = 40, number="27"):
    """A strip of grey backdrop paper lying against the product's side, under its edge."""
    scene, rgb, alpha, x, y = product_on_floor(number, height=260, x=60)
    strip = np.zeros((height, width), np.float32)
    strip[3:-3, 3:-3] = 1.0
    strip = cv2.GaussianBlur(strip, (0, 0), 1.0)
    tone = np.full((height, width, 3), grey, np.float32) * np.float32([1.0, 1.0, 0.99])
    right = x + int(np.nonzero(alpha[-60:].max(axis=0) > 0.5)[0].max())
    scene.paste(tone, strip, right - 12, y + alpha.shape[0] - 60 - height // 2, product=False)
    scene.paste(rgb, alpha, x, y)
    return scene


def specks_scene(number="27"):
    """White specks and fluff of the sheet beside the product (brighter than the sheet)."""
    scene, rgb, alpha, x, y = product_on_floor(number, height=280, x=90)
    scene.paste(rgb, alpha, x, y)
    speck = np.zeros(SIZE, np.float32)
    rng = np.random.default_rng(7)
    for _ in range(6):
        cx, cy = int(rng.integers(380, 480)), int(rng.integers(300, 500))
        cv2.ellipse(speck, (cx, cy), (int(rng.integers(6, 14)), int(rng.integers(3, 6))),
                    float(rng.integers(0, 180)), 0, 360, 1.0, -1)
    speck = cv2.GaussianBlur(speck, (0, 0), 0.8)
    scene.paste(np.full(SIZE + (3,), 255.0, np.float32), speck, 0, 0, product=False)
    return scene


def lettering_scene():
    """A black strap across the product with white lettering of the backdrop's own colour."""
    scene, rgb, alpha, x, y = product_on_floor("32", height=330)
    scene.paste(rgb, alpha, x, y)
    strap = np.zeros(SIZE, np.float32)
    sy = y + 40
    strap[sy:sy + 44, x + 20:x + alpha.shape[1] - 20] = 1.0
    strap *= alpha_canvas(alpha, x, y) > 0.5
    scene.paste(np.full(SIZE + (3,), 25.0, np.float32), strap, 0, 0)
    text = np.zeros(SIZE, np.uint8)
    cv2.putText(text, "SPORT  CLUB", (x + 40, sy + 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 3, cv2.LINE_AA)
    letters = text.astype(np.float32) / 255.0 * strap
    scene.paste(np.full(SIZE + (3,), 246.0, np.float32), letters, 0, 0)
    scene.mask = np.maximum(scene.mask, letters)  # the letters are product
    scene.detail = letters
    return scene


def alpha_canvas(alpha, x, y):
    out = np.zeros(SIZE, np.float32)
    out[y:y + alpha.shape[0], x:x + alpha.shape[1]] = alpha
    return out


def handle_scene(width: int, number="27"):
    """A thin dark carrying handle: an arc `width` px thick rising from the product."""
    scene, rgb, alpha, x, y = product_on_floor(number, height=240)
    scene.paste(rgb, alpha, x, y)
    big = np.zeros((SIZE[0] * 4, SIZE[1] * 4), np.uint8)
    cx = (x + alpha.shape[1] // 2) * 4
    cv2.ellipse(big, (cx, (y + 20) * 4), (alpha.shape[1] * 4 // 3, 130 * 4), 0, 180, 360, 255, width * 4)
    arc = cv2.resize(big, SIZE[::-1], interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    arc *= 1.0 - alpha_canvas(alpha, x, y)
    scene.paste(np.full(SIZE + (3,), 40.0, np.float32), arc, 0, 0)
    scene.detail = arc
    return scene


def white_product_scene(tone: float, number="27"):
    """A white product (the cap's shading, lifted to near the backdrop) on a white sweep."""
    scene, rgb, alpha, x, y = product_on_floor(number, height=300)
    lum = rgb.mean(axis=2, keepdims=True)
    white = tone + (lum - lum.mean()) * 0.15
    scene.paste(np.repeat(white, 3, axis=2), alpha, x, y)
    return scene


# ------------------------------------------------------------------ judging


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def stray_parts(fg: np.ndarray, truth: np.ndarray) -> int:
    """Parts of the cut-out lying more than 6 px outside the true product and larger than 0.2%
    of it (the issue's definition of a stray part)."""
    far = fg & (cv2.distanceTransform((~truth).view(np.uint8), cv2.DIST_L2, 5) > 6)
    n, _, stats, _ = cv2.connectedComponentsWithStats(far.view(np.uint8), connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] > 0.002 * truth.sum()).sum())


def outcome(scene: Scene, seed: int = 0):
    """('good' | 'detected' | 'missed', matte, iou) for the scene's photo."""
    matte = PlainBackdropMatte(PlainBackdropOptions()).run(scene.photo(seed))
    fg, truth = matte.alpha > 127, scene.mask > 0.5
    score = iou(fg, truth)
    if matte.confidence < MIN_CONFIDENCE and matte.details["reasons"]:
        return "detected", matte, score
    if score >= 0.95 and stray_parts(fg, truth) == 0:
        return "good", matte, score
    return "missed", matte, score


# ------------------------------------------------------------------ the cases


def _reasons(matte) -> str:
    return " | ".join(matte.details["reasons"])


@pytest.mark.parametrize("strength,number", [(0.5, "19"), (0.45, "32")])
def test_floor_reflection_is_cut_away_and_sent_to_review(strength, number):
    """The duffel-bag case: a reflection kept as product with full confidence. Now the mirror
    image is found, cut away at the contact line, and the SKU goes to review."""
    result, matte, score = outcome(reflection_scene(strength, number))
    assert result == "detected", (score, _reasons(matte))
    assert "reflection" in _reasons(matte)
    assert score >= 0.95  # what is left is the product
    assert abs(matte.details["floor_reflection"]["contact_row"] - 470) <= 4
    assert json.loads(json.dumps(matte.details))["floor_reflection"] == matte.details["floor_reflection"]


@pytest.mark.parametrize("blur,tint", [(5, (3.0, 1.2, 0.6)), (10, (0.6, 1.4, 3.0)), (10, (1.0, 1.0, 1.0))])
def test_blurred_or_coloured_reflection_is_never_a_confident_bad_matte(blur, tint):
    """A glossier floor blurs the reflection beyond a mirror image; a coloured product's
    reflection is no neutral shadow. Either way it must not pass as product."""
    result, matte, score = outcome(reflection_scene(0.5, "32", blur=blur, tint=tint))
    assert result != "missed", (score, _reasons(matte))


@pytest.mark.parametrize("strength", [0.06, 0.15])
def test_faint_reflection_stays_out_of_the_cut_out(strength):
    """Near the backdrop threshold: a faint reflection is backdrop, the cut-out is good."""
    result, matte, score = outcome(reflection_scene(strength))
    assert result == "good", (score, _reasons(matte))


def test_reflection_of_a_rounded_product_is_never_a_confident_bad_matte():
    """A cap's reflection is mostly below the threshold; its bright rim survives as a thin arc."""
    result, matte, score = outcome(reflection_scene(0.3, number="28"))
    assert result != "missed", (score, _reasons(matte))


def test_soft_contact_shadow_is_backdrop():
    result, matte, score = outcome(contact_shadow_scene(0.5))
    assert result == "good", (score, _reasons(matte))


def test_dark_contact_shadow_is_never_a_confident_bad_matte():
    """A contact shadow darker than a cast shadow gets can be a dark product's part: cut away
    as backdrop-coloured, and the SKU goes to review."""
    result, matte, score = outcome(contact_shadow_scene(0.7))
    assert result != "missed", (score, _reasons(matte))


def test_detached_paper_strip_is_left_out_and_sent_to_review():
    result, matte, score = outcome(paper_strip_scene(200))
    assert result == "detected" and "backdrop colour" in _reasons(matte)
    assert score >= 0.95 and stray_parts(matte.alpha > 127, paper_strip_scene(200).mask > 0.5) == 0


@pytest.mark.parametrize("grey,width,height", [(200, 120, 40), (225, 120, 40), (200, 60, 24)])
def test_paper_joined_to_the_product_sends_it_to_review(grey, width, height):
    """Backdrop paper lying against the product makes one region with it: its colour gives it
    away, it is cut away, and the reason says where (the smallest strip, 1.8% of the cut-out,
    is near the bar)."""
    result, matte, score = outcome(joined_strip_scene(grey, width, height))
    assert result == "detected" and "joined to the product" in _reasons(matte), (score, _reasons(matte))
    assert score >= 0.95


def test_small_paper_piece_joined_to_the_product_is_cut_away():
    """Under the review bar (0.8% of the cut-out) the strip is cut away and the cut-out passes."""
    result, matte, score = outcome(joined_strip_scene(200, 40, 20))
    assert result == "good" and matte.details["joined_backdrop"] > 0, (score, _reasons(matte))


def test_faint_paper_strip_is_backdrop():
    result, matte, score = outcome(paper_strip_scene(225))
    assert result == "good", (score, _reasons(matte))


def test_specks_of_the_sheet_are_left_out():
    result, matte, score = outcome(specks_scene())
    assert result == "good", (score, _reasons(matte))


def test_white_lettering_on_a_dark_strap_is_product():
    scene = lettering_scene()
    result, matte, score = outcome(scene)
    assert result == "good", (score, _reasons(matte))
    letters = scene.detail > 0.5
    assert letters.sum() > 300
    assert (matte.alpha[letters] > 127).mean() > 0.9  # the edges of the strokes mix with the strap


@pytest.mark.parametrize("width", [2, 3])
def test_thin_handle_is_kept(width):
    scene = handle_scene(width)
    result, matte, score = outcome(scene)
    assert result == "good", (score, _reasons(matte))
    arc = scene.detail > 0.6
    assert arc.sum() > 200
    assert (matte.alpha[arc] > 127).mean() > 0.9


@pytest.mark.parametrize("tone", [225.0, 230.0])
def test_white_product_on_white_is_a_faint_cut_out_sent_to_review(tone):
    """Was an empty cut-out that failed the row; now a cut-out a reviewer can judge."""
    scene = white_product_scene(tone)
    result, matte, score = outcome(scene)
    assert result == "detected" and "contrast" in _reasons(matte)
    assert (matte.alpha > 127).sum() > 0.5 * (scene.mask > 0.5).sum()


@pytest.mark.parametrize("number", ["19", "20", "22", "28", "32"])
def test_good_packshots_on_a_sweep_still_pass(number):
    result, matte, score = outcome(reflection_scene(0.0, number))
    assert result == "good" and matte.confidence >= MIN_CONFIDENCE, (score, _reasons(matte))
    assert matte.details["floor_reflection"] is None and matte.details["backdrop_pieces"] < 0.005
