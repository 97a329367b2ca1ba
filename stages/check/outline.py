"""The placed product's outline, measured once for the fidelity checks, and the local colour
means those checks read around it."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h
Region = tuple[slice, slice]

VISIBLE_ALPHA = 128  # the visible silhouette: a soft matte's faint tail is mostly scene


def bbox(alpha: np.ndarray) -> Box:
    """x, y, w, h of the product's pixels (alpha > 0); w = 0 when there are none."""
    return cv2.boundingRect((alpha > 0).view(np.uint8))


def product_size(alpha: np.ndarray) -> float:
    """sqrt of the product's box area: the scale the checks' margins and limits are shares of."""
    _, _, w, h = bbox(alpha)
    return float(np.sqrt(w * h)) if w else 1.0


def outside_distance(alpha: np.ndarray) -> np.ndarray:
    """Distance of every pixel to the nearest product pixel (alpha > 0); 0 on the product."""
    return cv2.distanceTransform(1 - (alpha > 0).view(np.uint8), cv2.DIST_L2, 5)


def grown_box(box: Box, margin: float, shape: tuple[int, ...]) -> Region:
    """The box grown by `margin` on every side, within an image of `shape`; all of it when empty."""
    x, y, w, h = box
    if not w:
        return slice(0, shape[0]), slice(0, shape[1])
    m = int(np.ceil(margin))
    return slice(max(0, y - m), min(shape[0], y + h + m)), slice(max(0, x - m), min(shape[1], x + w + m))


def colours_at(rgb: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """N x 3 float32 colours of an HxWx3 image at the points: rgb[ys, xs], read from the flat
    pixels (about 3x faster)."""
    flat = np.ascontiguousarray(rgb).reshape(-1, 3)
    return np.take(flat, ys.astype(np.intp) * rgb.shape[1] + xs, axis=0).astype(np.float32)


@dataclass(frozen=True)
class Outline:
    size: float
    box: Box  # of alpha > 0, canvas pixels
    shape: tuple[int, int]  # canvas height, width
    roi: Region  # the canvas region the maps cover
    dist_out: np.ndarray  # in roi: distance to the nearest product pixel (alpha > 0); 0 on the product
    dist_in: np.ndarray  # in roi: distance from a visible product pixel to the nearest other one; 0 elsewhere

    def region(self, margin: float) -> tuple[Region, Region]:
        """(canvas slices, the same place in the maps) of the product's box grown by `margin`;
        `margin` must not exceed the one the outline was measured with."""
        canvas = grown_box(self.box, margin, self.shape)
        (ry, rx) = self.roi
        if canvas[0].start < ry.start or canvas[0].stop > ry.stop or canvas[1].start < rx.start \
                or canvas[1].stop > rx.stop:
            raise ValueError(f"margin {margin} reaches beyond the measured outline region")
        local = (slice(canvas[0].start - ry.start, canvas[0].stop - ry.start),
                 slice(canvas[1].start - rx.start, canvas[1].stop - rx.start))
        return canvas, local


def measure(alpha: np.ndarray, margin: float) -> Outline:
    """Distance maps of the product (HxW uint8 alpha, canvas space) within `margin` of its box.

    The expansion and halo checks judge pixels by their distance to the product's outline. The
    maps cost a few ms each at 1024², so they are computed once per layout over a region that
    covers both checks, and each check reads its own part (`Outline.region`). Every product pixel
    lies inside the region, so its distances equal those over the whole canvas."""
    box = bbox(alpha)
    roi = grown_box(box, margin, alpha.shape)
    a = alpha[roi]
    dist_out = outside_distance(a)
    dist_in = cv2.distanceTransform((a >= VISIBLE_ALPHA).view(np.uint8), cv2.DIST_L2, 5)
    return Outline(product_size(alpha), box, alpha.shape[:2], roi, dist_out, dist_in)


def blur_at(rgb: np.ndarray, weight: np.ndarray, sigma: float, ys: np.ndarray,
            xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian mean of `rgb` (uint8) over the pixels where `weight` (bool) is set, read at the
    points (ys, xs): normalised convolution; returns (N x 3 colours, N supports).

    Wide blurs run at reduced resolution (the means are smooth: an 80 px sigma at 1024 px costs a
    few ms instead of several hundred) and are read bilinearly at the points, never upsampled."""
    factor = 1 if sigma < 6 else int(min(8, sigma // 2))
    h, wd = weight.shape
    if factor == 1:  # narrow: in float, where 8-bit rounding would show at weakly supported points
        if ys.size == 0:
            return np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
        # only around the points: OpenCV's kernel for a float blur reaches 4 sigma, so the means
        # read at the points are the same as over the whole image
        r = int(np.ceil(4 * sigma)) + 1
        y0, y1 = max(0, int(ys.min()) - r), min(h, int(ys.max()) + r + 1)
        x0, x1 = max(0, int(xs.min()) - r), min(wd, int(xs.max()) + r + 1)
        box_rgb, box_w = rgb[y0:y1, x0:x1], weight[y0:y1, x0:x1]
        num = cv2.GaussianBlur(box_rgb.astype(np.float32) * box_w[..., None], (0, 0), sigma)[ys - y0, xs - x0]
        den = cv2.GaussianBlur(box_w.astype(np.float32), (0, 0), sigma)[ys - y0, xs - x0]
    else:
        # area means of 0/255 values: the blur that follows averages their rounding away
        mask = weight.view(np.uint8)
        masked = cv2.bitwise_and(rgb, rgb, mask=mask)
        mask255 = mask * np.uint8(255)
        # padded with unweighted pixels to whole cells: OpenCV's area resize is several times
        # faster at an integer factor
        ph, pw = -h % factor, -wd % factor
        if ph or pw:
            masked = cv2.copyMakeBorder(masked, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
            mask255 = cv2.copyMakeBorder(mask255, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
        small = ((wd + pw) // factor, (h + ph) // factor)
        num_s = cv2.resize(masked, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        den_s = cv2.resize(mask255, small, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        # the area means and the bilinear reads widen the kernel (variance factor²/12 + factor²/6)
        sigma_s = float(np.sqrt(sigma * sigma - factor * factor / 4.0)) / factor
        num_s = cv2.GaussianBlur(num_s, (0, 0), sigma_s)
        den_s = cv2.GaussianBlur(den_s, (0, 0), sigma_s)
        # pixel centres of the full-size grid in the small one
        mx = (xs.astype(np.float32) + 0.5) / factor - 0.5
        my = (ys.astype(np.float32) + 0.5) / factor - 0.5
        num, den = _sample(num_s, mx, my).reshape(-1, 3), _sample(den_s, mx, my).reshape(-1)
    return num / np.maximum(den, 1e-4)[:, None], den


_ROW = 1024  # cv2.remap maps are at most 32767 wide or high: points go in rows of this many


def _sample(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear reads of `img` at the points (mx, my), edge pixels repeated beyond the border."""
    n = mx.size
    if n == 0:
        return np.zeros((0, *img.shape[2:]), img.dtype)
    pad = -n % _ROW
    grid = [np.pad(m, (0, pad)).reshape(-1, _ROW) for m in (mx, my)]
    out = cv2.remap(img, grid[0], grid[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, *img.shape[2:])[:n]
