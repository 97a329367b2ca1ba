"""An IS-Net model run at another input side than the one it was exported at, and edge refinement of
its upsampled mask at the photo's full resolution (the `inference_size` and `edge_refine` options)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stages.errors import ConfigError, ModelUnavailableError

GUIDED_EPS = 1e-3  # guided filter regulariser: edges weaker than ~0.03 grey levels (of 1) are smoothed over
GUIDED_WORK_SIDE = 1536  # the guided filter's coefficients are computed at most this long a side, then upsampled


def model_side(model: Any) -> int | None:
    """The fixed square input side of an onnx ModelProto, None when its height/width are symbolic."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ConfigError(f"the model's input has {len(dims)} dimensions, expected 4 (batch, rgb, height, width)")
    h, w = dims[2], dims[3]
    if h.HasField("dim_value") and w.HasField("dim_value"):
        if h.dim_value != w.dim_value:
            raise ConfigError(f"the model's input is {w.dim_value}x{h.dim_value}, expected a square")
        return int(h.dim_value)
    return None


def resize_graph(data: bytes, size: int) -> tuple[bytes, int | None]:
    """The ONNX model in `data` rewritten to take a `size` x `size` input (any batch), and its own side.

    IS-Net as exported for rembg takes 1x3x1024x1024 only: its input is fixed, and every upsampling
    step (`Resize`) gets its target size from a constant baked in at export (e.g. 32x32 where a
    decoder stage meets the encoder stage it concatenates with). The network itself is fully
    convolutional, so the rewrite frees the batch axis, sets the spatial input to `size` and scales
    each baked constant c to ceil(c * size / side): a stride-2 convolution or ceil-mode pooling maps
    n to ceil(n / 2), so the stage that had c = side / 2^k pixels has ceil(size / 2^k) at the new
    size. A model whose input is symbolic already comes back unchanged. Needs the `onnx` package.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise ModelUnavailableError(f"matte.rembg.inference_size needs the `onnx` package (pip install onnx): {exc}"
                                    ) from exc
    model = onnx.load_from_string(data)
    side = model_side(model)
    if side is None:
        return data, None
    graph = model.graph
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param = "batch"
        for i in range(2, len(dims)):
            if value in graph.input:
                dims[i].dim_value = size
            else:
                dims[i].dim_param = ("height", "width")[i - 2] if i < 4 else f"d{i}"
    producers = {out: node for node in graph.node for out in node.output}
    scaled = set()
    for node in graph.node:
        if node.op_type != "Resize":
            continue
        sizes = producers.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        consts = [producers.get(i) for i in sizes.input] if sizes is not None and sizes.op_type == "Concat" else []
        consts = [c for c in consts if c is not None and c.op_type == "Constant"]
        if not consts:
            raise ConfigError(f"the model's {node.name} does not take its output size from a constant: "
                              f"it cannot run at {size}; leave matte.rembg.inference_size at {side}")
        for const in consts:
            if const.name in scaled:
                continue
            attr = const.attribute[0]
            old = numpy_helper.to_array(attr.t)
            new = np.array([math.ceil(int(c) * size / side) for c in old.ravel()], dtype=old.dtype).reshape(old.shape)
            attr.t.CopyFrom(numpy_helper.from_array(new, attr.t.name))
            scaled.add(const.name)
    del graph.value_info[:]  # shapes inferred at the old size
    return model.SerializeToString(), side


def open_session(weights: Path, size: int, providers: list[str]) -> tuple[Any, int]:
    """An onnxruntime session of `weights` at input side `size`, and the side it was exported at
    (`size` when its input is symbolic). Threads as rembg sets them: OMP_NUM_THREADS when set."""
    import onnxruntime as ort

    data, side = resize_graph(weights.read_bytes(), size)
    opts = ort.SessionOptions()
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        opts.intra_op_num_threads = opts.inter_op_num_threads = int(threads)
    return ort.InferenceSession(data, sess_options=opts, providers=providers), side or size


def isnet_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """rembg's IS-Net pre-processing at `size`: Lanczos to size x size, scaled by the image's
    maximum, minus 0.5; 1x3xHxW float32."""
    from PIL import Image

    im = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32)
    im = im / max(float(im.max()), 1e-6) - 0.5
    return np.ascontiguousarray(im.transpose(2, 0, 1)[None])


def isnet_mask(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """rembg's IS-Net post-processing: the first output min-max normalised to 0..255 (truncated),
    Lanczos-resized to the photo (`shape` = (H, W)); uint8."""
    from PIL import Image

    p = pred.astype(np.float32)
    lo, hi = float(p.min()), float(p.max())
    p = (p - lo) / max(hi - lo, 1e-12)
    mask = Image.fromarray((p * 255).astype(np.uint8), mode="L")
    return np.asarray(mask.resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def predict(session: Any, rgb: np.ndarray, size: int) -> np.ndarray:
    """The model's mask of `rgb` at inference side `size`, at the photo's resolution (uint8)."""
    name = session.get_inputs()[0].name
    out = session.run([session.get_outputs()[0].name], {name: isnet_input(rgb, size)})[0]
    return isnet_mask(out[0, 0], rgb.shape[:2])


def guided_refine(mask: np.ndarray, rgb: np.ndarray, inference_size: int, eps: float = GUIDED_EPS) -> np.ndarray:
    """The upsampled mask snapped to the photo's own edges by a guided filter (He et al.), uint8.

    A mask inferred at `inference_size` and scaled up to the photo is soft over about
    photo_side / inference_size pixels; the filter, guided by the photo's luminance with a radius of
    twice that, takes each window's mask as a linear function of the luminance, so the edge lands
    where the photo's edge is. On photos over `GUIDED_WORK_SIDE` a side its coefficients are
    computed on a shrunk copy and upsampled (the "fast guided filter"), which keeps a 12 MP photo
    to a fraction of a second.
    """
    H, W = mask.shape
    side = max(H, W)
    radius = max(2, round(2 * side / inference_size))
    s = max(1.0, side / GUIDED_WORK_SIDE)
    guide = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    p = mask.astype(np.float32) / 255.0
    if s > 1:
        w, h = max(1, round(W / s)), max(1, round(H / s))
        g, q = cv2.resize(guide, (w, h), interpolation=cv2.INTER_AREA), cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA)
    else:
        g, q = guide, p
    r = max(1, round(radius / s))

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)

    mean_g, mean_q = box(g), box(q)
    var_g = box(g * g) - mean_g * mean_g
    cov = box(g * q) - mean_g * mean_q
    a = cov / (var_g + eps)
    b = mean_q - a * mean_g
    a, b = box(a), box(b)
    if s > 1:
        a = cv2.resize(a, (W, H), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, (W, H), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint((a * guide + b) * 255.0), 0, 255).astype(np.uint8)
