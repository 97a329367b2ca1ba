"""The outline measurements the fidelity checks share: distance maps, point reads, local means."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stages.check.outline import blur_at, colours_at, measure
from stages.masks import points


@pytest.fixture(scope="module")
def photo(images):
    rgb = cv2.cvtColor(cv2.imread(str(images / "27_hat_leather-cap_on-white-sheet.jpg")), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (600, 450), interpolation=cv2.INTER_AREA)


def _product_alpha(h: int, w: int, centre: tuple[int, int]) -> np.ndarray:
    """A soft-edged product shape: an ellipse with an anti-aliased rim and a thin strap."""
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, centre, (120, 80), 20, 0, 360, 255, -1, cv2.LINE_AA)
    cv2.line(alpha, centre, (centre[0] + 170, centre[1] - 30), 200, 3, cv2.LINE_AA)
    return cv2.GaussianBlur(alpha, (5, 5), 1.0)


@pytest.mark.parametrize("centre", [(300, 220), (110, 360)])  # the second touches the canvas edge
def test_distance_maps_over_the_region_equal_those_over_the_whole_canvas(centre):
    alpha = _product_alpha(450, 600, centre)
    outline = measure(alpha, 40.0)
    whole_out = cv2.distanceTransform(1 - (alpha > 0).view(np.uint8), cv2.DIST_L2, 5)
    whole_in = cv2.distanceTransform((alpha >= 128).view(np.uint8), cv2.DIST_L2, 5)
    assert outline.dist_out.size < alpha.size
    same = {"rtol": 0, "atol": 1e-4}  # float rounding of OpenCV's passes, far below a pixel
    np.testing.assert_allclose(outline.dist_out, whole_out[outline.roi], **same)
    np.testing.assert_allclose(outline.dist_in, whole_in[outline.roi], **same)
    canvas, local = outline.region(25.0)
    np.testing.assert_allclose(outline.dist_out[local], whole_out[canvas], **same)
    assert canvas[0].stop - canvas[0].start < outline.dist_out.shape[0]
    with pytest.raises(ValueError, match="beyond the measured"):
        outline.region(60.0)


def test_an_empty_matte_measures_the_whole_canvas():
    outline = measure(np.zeros((40, 50), np.uint8), 10.0)
    assert outline.box[2] == 0 and outline.dist_out.shape == (40, 50) and not outline.dist_in.any()


def test_colours_at_points_read_what_numpy_indexing_reads(photo):
    mask = np.zeros(photo.shape[:2], bool)
    mask[::7, 3::5] = True
    mask[100:140, 200:260] = True
    view = mask[10:400, 20:580]  # a view with row strides, as the checks pass them
    ys, xs = points(view)
    ref_y, ref_x = np.nonzero(view)
    region = photo[10:400, 20:580]
    np.testing.assert_array_equal(colours_at(region, ys, xs), region[ref_y, ref_x].astype(np.float32))


@pytest.mark.parametrize(("sigma", "p99"), [(2.0, 1e-3), (5.0, 1e-3), (7.0, 0.8), (9.0, 0.8), (24.0, 1.2),
                                            (60.0, 4.5)])
def test_blurred_means_read_at_points_match_the_full_resolution_blur(photo, sigma, p99):
    """The checks read local mean colours at chosen points from a reduced-resolution blur; they must
    agree with the exact full-resolution normalised convolution (narrow blurs are exact)."""
    rgb = photo
    h, w = rgb.shape[:2]
    shape = np.zeros((h, w), np.uint8)
    cv2.ellipse(shape, (w // 2, h // 2), (200, 140), 15, 0, 360, 1, -1)
    dist = cv2.distanceTransform(1 - shape, cv2.DIST_L2, 5)
    weight = (dist > 0) & (dist <= 3 * sigma + 5)  # a ring around the shape, like the scene band
    num = cv2.GaussianBlur(rgb.astype(np.float32) * weight[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(weight.astype(np.float32), (0, 0), sigma)
    ys, xs = np.nonzero(den > 0.2)
    exact = num[ys, xs] / den[ys, xs, None]
    colour, support = blur_at(rgb, weight, sigma, ys, xs)
    err = np.abs(colour - exact).max(axis=1)
    assert np.percentile(err, 99) <= p99 and np.median(err) <= max(1e-3, p99 / 5)
    assert np.percentile(np.abs(support - den[ys, xs]), 99) <= (1e-4 if p99 < 1e-2 else 0.1)
    if p99 < 1e-2:  # exact blurs read a few points together from a box around them alone: still exact
        near = (ys < h // 3) & (xs > w // 2)
        part, _ = blur_at(rgb, weight, sigma, ys[near], xs[near])
        assert near.sum() > 100 and np.abs(part - exact[near]).max() <= p99
