from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ops.config import MatteConfig
from stages.errors import ConfigError, ModelUnavailableError, UnknownBackendError
from stages.matte import BACKENDS, Escalation, Matte, compute_matte, load_matte_backend, segmenter
from stages.matte.plain_backdrop import PlainBackdropMatte, PlainBackdropOptions
from stages.matte.rembg import RembgMatte, RembgOptions, mask_to_alpha

import tiny_onnx  # tests/ is on sys.path

MASKS = Path(__file__).resolve().parents[2] / "data" / "masks"  # hand-made reference masks

SS = 4  # supersampling factor: shapes are drawn large and averaged down, as a lens would


def _plain(**options) -> PlainBackdropMatte:
    return PlainBackdropMatte.load(PlainBackdropOptions(**options))


def _bag_coverage(size: int, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage in [0,1] of a rounded bag body with a ring handle, and the handle's hole."""
    big = size * SS
    m = np.zeros((big, big), np.uint8)
    hole = np.zeros((big, big), np.uint8)
    x, y, s = int(cx * big), int(cy * big), big / 256
    body = (int(x - 70 * s), int(y - 20 * s), int(140 * s), int(95 * s))
    r = int(22 * s)
    bx, by, bw, bh = body
    cv2.rectangle(m, (bx + r, by), (bx + bw - r, by + bh), 1, -1)
    cv2.rectangle(m, (bx, by + r), (bx + bw, by + bh - r), 1, -1)
    for px, py in ((bx + r, by + r), (bx + bw - r, by + r), (bx + r, by + bh - r), (bx + bw - r, by + bh - r)):
        cv2.circle(m, (px, py), r, 1, -1)
    # handle: a thick ring above the body; its inside must stay transparent
    cv2.ellipse(m, (x, by), (int(45 * s), int(50 * s)), 0, 180, 360, 1, int(12 * s))
    cv2.ellipse(hole, (x, by - int(2 * s)), (int(36 * s), int(41 * s)), 0, 180, 360, 1, -1)
    hole &= 1 - m
    down = lambda a: cv2.resize(a.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)  # noqa: E731
    return down(m), down(hole) > 0.99


def _packshot(size=256, cx=0.5, cy=0.55, shadow=0.0, background=None, seed=0):
    """A dark product on a white backdrop with a left-to-right gradient, optional soft shadow, noise.

    Returns (rgb uint8, true coverage in [0,1], hole mask, shadow mask).
    """
    rng = np.random.default_rng(seed)
    cov, hole = _bag_coverage(size, cx, cy)
    if background is None:
        ramp = np.linspace(212.0, 250.0, size, dtype=np.float32)[None, :, None]
        background = np.broadcast_to(ramp * np.float32([1.0, 0.99, 0.97]), (size, size, 3)).copy()
    bg = background.astype(np.float32)
    dark = np.zeros((size, size), np.float32)
    if shadow:
        ell = np.zeros((size, size), np.float32)
        center = (int(cx * size), int((cy + 0.2) * size))
        cv2.ellipse(ell, center, (int(0.36 * size), int(0.06 * size)), 0, 0, 360, 1.0, -1)
        dark = cv2.GaussianBlur(ell, (0, 0), 0.025 * size) * shadow
        bg *= 1.0 - dark[..., None]
    fg = np.float32([58, 40, 34]) + rng.normal(0, 6, (size, size, 1)).astype(np.float32)
    img = fg * cov[..., None] + bg * (1.0 - cov[..., None])
    img += rng.normal(0, 2.0, img.shape)
    shadow_zone = (dark > 0.2 * max(shadow, 1e-6)) & (cov == 0) if shadow else np.zeros_like(hole)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), cov, hole, shadow_zone


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_synthetic_packshot_on_gradient_backdrop():
    rgb, cov, hole, _ = _packshot()
    matte = _plain().run(rgb)
    assert isinstance(matte, Matte) and matte.backend == "plain-backdrop"
    assert matte.alpha.shape == rgb.shape[:2] and matte.alpha.dtype == np.uint8
    assert _iou(matte.alpha > 127, cov > 0.5) >= 0.97
    assert matte.confidence >= 0.7, matte.details["reasons"]
    # background seen through the handle stays background
    inner = cv2.erode(hole.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert inner.sum() > 300 and (matte.alpha[inner] == 0).mean() > 0.99
    # edges are soft where the drawn edge is: partially covered pixels get partial alpha
    mixed = (cov > 0.2) & (cov < 0.8)
    partial = (matte.alpha[mixed] > 0) & (matte.alpha[mixed] < 255)
    assert partial.mean() > 0.5
    assert np.abs(matte.alpha[mixed] / 255.0 - cov[mixed]).mean() < 0.2
    # the gradient is backdrop, not product
    assert (matte.alpha[:, :8] == 0).all() and (matte.alpha[:, -8:] == 0).all()


def test_details_are_json_able():
    import json

    rgb, *_ = _packshot()
    matte = _plain().run(rgb)
    decoded = json.loads(json.dumps(matte.details))
    assert decoded["reasons"] == [] and 0 < decoded["coverage"] < 1


@pytest.mark.parametrize("policy", ["remove", "keep"])
def test_cast_shadow_policy(policy):
    rgb, cov, _, zone = _packshot(shadow=0.45)
    assert zone.sum() > 500
    matte = _plain(shadows=policy).run(rgb)
    in_shadow = matte.alpha[zone]
    if policy == "remove":
        assert (in_shadow == 0).mean() > 0.9
        assert _iou(matte.alpha > 127, cov > 0.5) >= 0.95
        assert matte.mixed_edge  # its soft edge mixes product and backdrop: the layout unmixes it
    else:
        assert (in_shadow > 0).mean() > 0.5 and in_shadow.mean() > 60
        # the product itself is still fully there
        assert (matte.alpha[cov > 0.99] == 255).mean() > 0.99
        assert not matte.mixed_edge  # the kept shadow is translucent on purpose: not unmixed


def test_grey_product_is_not_mistaken_for_a_shadow():
    """A light grey, neutral product darkens the backdrop like a shadow would; its sharp outline
    is what keeps it."""
    size = 256
    rng = np.random.default_rng(5)
    cov, hole = _bag_coverage(size, 0.5, 0.55)
    fg = np.float32([215, 215, 212]) + rng.normal(0, 3, (size, size, 1)).astype(np.float32)
    img = fg * cov[..., None] + np.float32(245) * (1 - cov[..., None]) + rng.normal(0, 2, (size, size, 3))
    rgb = np.clip(np.round(img), 0, 255).astype(np.uint8)
    matte = _plain(shadows="remove").run(rgb)
    assert _iou(matte.alpha > 127, cov > 0.5) >= 0.97
    assert (matte.alpha[hole] == 0).mean() > 0.95


def _halo_packshot(size=256, strength=0.35, width=1.5, seed=2):
    """A dark product whose contact shadow darkens the backdrop right along its outline, fading
    over a few pixels (as under a shoe or a cap on a sheet). Returns (rgb, coverage, halo ring)."""
    rng = np.random.default_rng(seed)
    cov, hole = _bag_coverage(size, 0.5, 0.55)
    outside = cv2.distanceTransform((cov < 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    dark = strength * np.exp(-np.maximum(outside - 0.5, 0) / width) * (cov < 0.5)
    bg = np.float32([236, 234, 230]) * (1 - dark[..., None])
    fg = np.float32([58, 40, 34]) + rng.normal(0, 6, (size, size, 1)).astype(np.float32)
    img = fg * cov[..., None] + bg * (1 - cov[..., None]) + rng.normal(0, 2.0, (size, size, 3))
    ring = (outside >= 1.5) & (outside <= 4) & ~hole
    return np.clip(np.round(img), 0, 255).astype(np.uint8), cov, ring


def test_contact_shadow_halo_is_backdrop():
    """The darkened rim of backdrop around a product is a shadow, not product: the outline must
    stay on the product's own edge instead of growing into the halo."""
    rgb, cov, ring = _halo_packshot()
    matte = _plain().run(rgb)
    fg = matte.alpha > 127
    assert ring.sum() > 500
    assert fg[ring].mean() < 0.05
    assert _iou(fg, cov > 0.5) >= 0.97
    assert (matte.alpha[cov > 0.99] == 255).mean() > 0.99


def _wood(size=256, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    warp = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 12) * 40
    grain = np.sin((x + warp) / 3.5) * 0.5 + np.sin((x + warp * 0.5) / 11.0) * 0.5
    tone = 0.5 + 0.5 * grain + rng.normal(0, 0.05, (size, size))
    light, dark = np.float32([196, 140, 92]), np.float32([120, 72, 40])
    return dark + (light - dark) * tone[..., None]


def test_textured_backdrop_has_low_confidence():
    rgb, *_ = _packshot(background=_wood())
    matte = _plain().run(rgb)
    assert matte.confidence < MatteConfig().min_confidence  # the SKU goes to review
    assert any("backdrop" in r for r in matte.details["reasons"])


@pytest.mark.parametrize(
    "name", ["15_kitchen_coffee-cup_on-wood.png", "23_shoes_white-sneakers_on-brown.jpg"]
)
def test_real_textured_photos_go_to_review(images, name):
    rgb = np.asarray(Image.open(images / name).convert("RGB"))
    matte = _plain().run(rgb)
    assert matte.confidence < MatteConfig().min_confidence, matte.details
    assert matte.details["reasons"]


# (file, points known to lie on the product as (row, col), trusted); the loafers' heel rim comes
# out torn by the grainy floor, which sends them to review (tests/stages/matte/test_ragged.py)
PLAIN = [
    ("19_shoes_black-suede_white.jpg", [(300, 125), (300, 255)], True),
    ("20_shoes_beige-loafers_on-beige-floor.jpg", [(300, 120), (300, 300)], False),
    ("27_hat_leather-cap_on-white-sheet.jpg", [(260, 180)], True),
    ("28_hat_leather-newsboy-cap_on-white-sheet.jpg", [(250, 200)], True),
    ("32_apparel_black-shorts_on-white-quilt.jpg", [(230, 200)], True),
]


@pytest.mark.parametrize("name,points,trusted", PLAIN)
def test_real_plain_backdrop_photos(images, name, points, trusted):
    rgb = np.asarray(Image.open(images / name).convert("RGB"))
    matte = _plain().run(rgb)
    assert (matte.confidence >= 0.5) == trusted, matte.details["reasons"]
    coverage = (matte.alpha > 127).mean()
    assert 0.05 <= coverage <= 0.80
    a = matte.alpha
    assert a[0, 0] == a[0, -1] == a[-1, 0] == a[-1, -1] == 0
    for y, x in points:
        assert (a[y - 3 : y + 4, x - 3 : x + 4] == 255).all(), (y, x)
    # one solid product, not confetti: the largest blob holds nearly all of it
    n, lab, stats, _ = cv2.connectedComponentsWithStats((a > 127).astype(np.uint8))
    areas = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1]
    assert areas[:2].sum() >= 0.97 * areas.sum()


def test_product_cut_by_the_frame_lowers_confidence():
    backend = _plain()
    centred = backend.run(_packshot()[0])
    rgb, cov, _, _ = _packshot(cx=0.2, cy=0.93)  # body runs off the left and bottom edges
    assert (cov[-1] > 0.5).mean() > 0.3
    cut = backend.run(rgb)
    assert cut.confidence < centred.confidence - 0.3
    assert any("frame" in r for r in cut.details["reasons"])


def test_blank_photo_is_not_confident():
    rng = np.random.default_rng(3)
    rgb = np.clip(240 + rng.normal(0, 2, (128, 128, 3)), 0, 255).astype(np.uint8)
    matte = _plain().run(rgb)
    assert (matte.alpha == 0).all()
    assert matte.confidence < 0.5


def test_source_alpha_is_used_as_is():
    rgb, cov, *_ = _packshot(size=96)
    alpha = np.round(cov * 255).astype(np.uint8)

    class Exploding:
        name = "boom"

        def run(self, rgb):
            raise AssertionError("backend must not run when the source has alpha")

    matte = compute_matte(Exploding(), rgb, alpha)
    assert matte.backend == "source-alpha" and matte.confidence == 1.0
    assert np.array_equal(matte.alpha, alpha)
    assert compute_matte(_plain(), rgb, None).backend == "plain-backdrop"


def test_unknown_backend_is_refused():
    with pytest.raises(UnknownBackendError, match="nope"):
        load_matte_backend("nope", PlainBackdropOptions())
    assert {"plain-backdrop", "rembg"} <= set(BACKENDS)


def test_rembg_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as err:
        load_matte_backend("rembg", RembgOptions(model="isnet-general-use"))
    msg = str(err.value)
    assert "isnet-general-use" in msg and "U2NET_HOME" in msg
    assert str(tmp_path / "isnet-general-use.onnx") in msg
    assert "new_session" in msg


def _rembg(**kw) -> RembgMatte:
    return RembgMatte.load(RembgOptions(**kw))


def test_rembg_unreadable_weights_are_reported_with_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    (tmp_path / "isnet-general-use.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelUnavailableError) as err:
        _rembg()
    msg = str(err.value)
    assert "could not be loaded" in msg and "U2NET_HOME" in msg and "isnet-general-use" in msg


@pytest.mark.parametrize("alpha_matting", [False, True])
def test_rembg_runs_a_real_onnx_network_from_u2net_home(tmp_path, monkeypatch, images, alpha_matting):
    """The whole learned path with nothing stood in for: rembg finds a (tiny) ONNX network under
    U2NET_HOME, onnxruntime runs it on a real photo, and the backend turns its mask into a matte."""
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    tiny_onnx.install(tmp_path)
    name = "19_shoes_black-suede_white"
    rgb = np.asarray(Image.open(images / f"{name}.jpg").convert("RGB"))
    hand = np.asarray(Image.open(MASKS / f"{name}.png").convert("L")) > 127
    backend = _rembg(alpha_matting=alpha_matting)
    assert backend.providers[-1] == "CPUExecutionProvider"
    matte = compute_matte(backend, rgb, None)
    assert matte.backend == "rembg:isnet-general-use" and matte.details["model"] == "isnet-general-use"
    assert matte.alpha.shape == rgb.shape[:2] and matte.alpha.dtype == np.uint8
    fg = matte.alpha > 127
    assert (fg & hand).sum() / (fg | hand).sum() > 0.9  # the network's mask, scaled back onto the photo
    assert (matte.alpha[hand] == 255).mean() > 0.8  # the product's inside is opaque
    assert matte.confidence > 0.5
    # a plain grey card: the network finds nothing plausible and the backend says so
    card = np.full((300, 400, 3), 128, np.uint8)
    card[100:200, 150:250] = 120
    assert backend.run(card).confidence < 0.5


def test_rembg_mask_levels_become_an_opaque_product_with_soft_edges():
    """rembg's masks peak at 254 inside a product: those levels are wholly product, the faint
    ones wholly backdrop, the edge ramp stays soft."""
    mask = np.array([0, 10, 25, 26, 127, 229, 230, 254, 255], np.uint8)
    alpha = mask_to_alpha(mask, clear_below=25, opaque_from=230)
    assert list(alpha[[0, 1, 2]]) == [0, 0, 0] and list(alpha[[6, 7, 8]]) == [255, 255, 255]
    assert 0 < alpha[3] < alpha[4] < alpha[5] < 255 and np.all(np.diff(alpha.astype(int)) >= 0)
    with pytest.raises(ConfigError, match="clear_below"):
        RembgOptions(clear_below=200, opaque_from=100).check("matte.rembg")


def _fixed_size_net(side: int) -> bytes:
    """An ONNX network exported like rembg's IS-Net: a fixed 1x3xSxS input and an upsampling step whose
    target size is a constant baked in at export (pool to S/2, resize back to S, add the input)."""
    import onnx
    from onnx import TensorProto, helper

    def const(name: str, values: list[int]) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64,
                                                                                  [len(values)], values))

    nodes = [
        helper.make_node("MaxPool", ["input"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Shape", ["pooled"], ["shape"]), const("zero", [0]), const("two", [2]),
        helper.make_node("Slice", ["shape", "zero", "two", "zero"], ["nc"]), const("target", [side, side]),
        helper.make_node("Concat", ["nc", "target"], ["sizes"], axis=0),
        helper.make_node("Resize", ["pooled", "", "", "sizes"], ["up"], mode="nearest"),
        helper.make_node("Add", ["up", "input"], ["sum"]),
        const("one", [1]), helper.make_node("ReduceSum", ["sum", "one"], ["output"], keepdims=1),
    ]
    graph = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             [1, 3, side, side])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, side, side])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def test_a_fixed_size_network_is_rewritten_to_run_at_another_size():
    """The baked upsampling size is scaled with the input: the rewritten network runs at 96 (and at a
    batch of 2) and computes what the original computes, pixel for pixel, on a 64 input scaled up."""
    import onnxruntime as ort

    from stages.matte.rembg_sized import resize_graph

    data = _fixed_size_net(64)
    with pytest.raises(Exception, match="dimensions"):  # as exported: 64 only
        ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": np.zeros((1, 3, 96, 96),
                                                                                                   np.float32)})
    resized, side = resize_graph(data, 96)
    assert side == 64
    x = np.random.default_rng(0).random((2, 3, 96, 96), dtype=np.float32)
    out = ort.InferenceSession(resized, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert out.shape == (2, 1, 96, 96)
    pooled = x.reshape(2, 3, 48, 2, 48, 2).max(axis=(3, 5))
    expected = (pooled.repeat(2, axis=2).repeat(2, axis=3) + x).sum(axis=1, keepdims=True)
    assert np.allclose(out, expected, atol=1e-5)
    assert resize_graph(tiny_onnx.white_keyer(), 96) == (tiny_onnx.white_keyer(), None)  # symbolic already


@pytest.mark.parametrize("edge_refine", ["none", "guided"])
def test_rembg_at_another_inference_size_with_edge_refinement(tmp_path, monkeypatch, images, edge_refine):
    """inference_size runs the model in its own session at that size with rembg's IS-Net pre- and
    post-processing; edge_refine snaps the upsampled mask to the photo's edges; both are recorded."""
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    tiny_onnx.install(tmp_path)
    name = "19_shoes_black-suede_white"
    rgb = np.asarray(Image.open(images / f"{name}.jpg").convert("RGB"))
    rgb = cv2.resize(rgb, (rgb.shape[1] * 3, rgb.shape[0] * 3), interpolation=cv2.INTER_CUBIC)  # a 1.9 MP photo
    hand = cv2.resize(np.asarray(Image.open(MASKS / f"{name}.png").convert("L")), rgb.shape[1::-1],
                      interpolation=cv2.INTER_NEAREST) > 127
    native = _rembg().run(rgb)
    backend = _rembg(inference_size=256, edge_refine=edge_refine)
    assert backend.session is None and backend.size == 256
    matte = backend.run(rgb)
    assert matte.details["inference_size"] == 256 and matte.details["edge_refine"] == edge_refine
    assert matte.alpha.shape == rgb.shape[:2]
    fg, ref = matte.alpha > 127, native.alpha > 127
    assert (fg & hand).sum() / (fg | hand).sum() > 0.9
    assert (fg & ref).sum() / (fg | ref).sum() > 0.95  # close to the network's full-size answer
    if edge_refine == "guided":  # the refinement ran: the edges moved, the product stayed
        plain = _rembg(inference_size=256).run(rgb)
        assert not np.array_equal(matte.alpha, plain.alpha)
        # rembg's alpha matting refines the sized mask too (a soft band at the edge, the inside kept)
        matted = _rembg(inference_size=256, edge_refine=edge_refine, alpha_matting=True).run(rgb)
        fg = matted.alpha > 127
        assert (fg & hand).sum() / (fg | hand).sum() > 0.9 and not np.array_equal(matted.alpha, matte.alpha)


def test_rembg_size_options_are_validated(tmp_path, monkeypatch):
    for bad, match in [({"inference_size": 500}, "multiple of 32"), ({"inference_size": 128}, "256..2048"),
                       ({"edge_refine": "sharp"}, "none or guided")]:
        with pytest.raises(ConfigError, match=match):
            RembgOptions(**bad).check("matte.rembg")
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    tiny_onnx.install(tmp_path, "u2net")
    with pytest.raises(ConfigError, match="IS-Net"):
        _rembg(model="u2net", inference_size=512)


def test_rembg_confidence_of_a_ghostly_mask_is_zero_with_a_share_within_the_cut_out():
    """A mask that is mostly half-grey (the network unsure of the whole product) has no confidence,
    and its unsure share is a share of the cut-out, never over 100%; a crisp mask keeps its confidence."""
    from stages.matte.rembg import mask_confidence

    ghost = np.zeros((200, 200), np.uint8)
    ghost[40:160, 40:160] = 90  # unsure everywhere ...
    ghost[90:110, 90:110] = 255  # ... but a small opaque core
    confidence, measures, reasons = mask_confidence(ghost, 10, 245)
    assert confidence == 0.0 and 0.9 < measures["unsure_fraction"] <= 1.0
    assert any("soft mask: 97% of the cut-out" in r for r in reasons), reasons
    crisp = np.zeros((200, 200), np.uint8)
    crisp[40:160, 40:160] = 255
    crisp[40:160, 39] = 128  # a one-pixel soft edge
    confidence, measures, reasons = mask_confidence(crisp, 10, 245)
    assert confidence > 0.9 and measures["unsure_fraction"] < 0.01 and not reasons


def _escalating(tmp_path, monkeypatch) -> Escalation:
    """The embedded backend's unsure cut-outs made again by rembg on a real (tiny) ONNX network
    that keys out white backdrops (tests/tiny_onnx.py), as `[matte] escalate_to = "rembg"` loads it."""
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    tiny_onnx.install(tmp_path)
    return Escalation(load_matte_backend("rembg", RembgOptions()), 0.5)


def _photo(images, name: str) -> np.ndarray:
    return np.asarray(Image.open(next(images.glob(f"{name}.*"))).convert("RGB"))


def test_a_cut_out_the_backend_is_sure_of_is_not_made_again(images, tmp_path, monkeypatch):
    rgb = _photo(images, "19_shoes_black-suede_white")
    matte = compute_matte(_plain(), rgb, None, _escalating(tmp_path, monkeypatch))
    assert matte.backend == "plain-backdrop" and matte.confidence >= 0.5
    assert "escalation" not in matte.details


def test_an_unsure_cut_out_is_made_again_and_the_surer_one_is_used(images, tmp_path, monkeypatch):
    """Shorts on a hanger before a white wall: the embedded matte finds detached pieces of the wall's
    colour and is unsure; the white keyer cuts the shorts out with confidence."""
    rgb = _photo(images, "31_apparel_shorts-on-hanger_white-wall")
    first = compute_matte(_plain(), rgb, None)
    matte = compute_matte(_plain(), rgb, None, _escalating(tmp_path, monkeypatch))
    assert first.confidence < 0.5 <= matte.confidence
    assert matte.backend == "rembg:isnet-general-use"
    assert matte.details["escalation"] == {"from": "plain-backdrop", "from_confidence": round(first.confidence, 4),
                                           "to": "rembg:isnet-general-use", "to_confidence": round(matte.confidence, 4),
                                           "used": "rembg:isnet-general-use"}


def test_when_the_second_backend_is_no_surer_the_first_cut_out_stays_and_says_so(images, tmp_path, monkeypatch):
    """Beige loafers on a beige floor: the white keyer finds nothing it trusts either. The embedded
    cut-out stays, and its reasons tell the reviewer the other backend was tried and why it failed."""
    rgb = _photo(images, "20_shoes_beige-loafers_on-beige-floor")
    first = compute_matte(_plain(), rgb, None)
    matte = compute_matte(_plain(), rgb, None, _escalating(tmp_path, monkeypatch))
    assert matte.backend == "plain-backdrop" and np.array_equal(matte.alpha, first.alpha)
    assert matte.confidence == first.confidence < 0.5
    esc = matte.details["escalation"]
    assert esc["used"] == "plain-backdrop" and esc["to_confidence"] <= esc["from_confidence"]
    assert matte.details["reasons"][: len(first.details["reasons"])] == first.details["reasons"]
    assert matte.details["reasons"][-1].startswith("rembg:isnet-general-use was tried too (confidence")


def test_the_expansion_check_re_segments_with_whichever_backend_is_learned():
    plain, rembg = BACKENDS["plain-backdrop"], BACKENDS["rembg"]
    assert segmenter(plain, rembg) is rembg and segmenter(plain, None) is plain
    assert segmenter(rembg, plain) is rembg and segmenter(rembg, None) is rembg
