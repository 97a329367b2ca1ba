"""`rembg`: a segmentation model's matte through rembg, from weights already on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from stages.errors import ConfigError, ModelUnavailableError
from stages.matte.base import Matte, check_rgb
from stages.models import Requirement, package_requirement


@dataclass(frozen=True)
class RembgOptions:
    """[matte.rembg]"""

    model: str = "isnet-general-use"  # commercially usable; rembg's own default (bria) is non-commercial
    alpha_matting: bool = False
    opaque_from: int = 230  # mask level at and above which a pixel is wholly product (alpha 255)
    clear_below: int = 25  # mask level at and below which a pixel is wholly backdrop (alpha 0)
    inference_size: int = 0  # side of the square an IS-Net model sees; 0: its own (1024)
    edge_refine: Literal["none", "guided"] = "none"  # guided: snap the upsampled mask to the photo's edges

    def check(self, where: str) -> None:
        if not self.model.strip():
            raise ConfigError(f"{where}.model is empty: name a rembg model (e.g. isnet-general-use)")
        if self.inference_size and not (256 <= self.inference_size <= 2048 and self.inference_size % 32 == 0):
            raise ConfigError(f"{where}.inference_size = {self.inference_size}: must be 0 (the model's own) or "
                              "a multiple of 32 in 256..2048")
        if self.edge_refine not in ("none", "guided"):
            raise ConfigError(f"{where}.edge_refine = {self.edge_refine!r}: must be none or guided")
        if not 0 <= self.clear_below < self.opaque_from <= 255:
            raise ConfigError(f"{where}: need 0 <= clear_below ({self.clear_below}) < opaque_from "
                              f"({self.opaque_from}) <= 255")


def mask_to_alpha(mask: np.ndarray, clear_below: int, opaque_from: int) -> np.ndarray:
    """A segmentation model's mask as an alpha matte: levels >= `opaque_from` become 255, levels
    <= `clear_below` become 0, the ones between are stretched linearly.

    rembg min-max normalises the network's output and resizes it with a Lanczos filter, so the
    inside of a product sits at 230-254, seldom at 255 (IS-Net: 254 on almost every product pixel,
    255 on a handful). Taken as it is, that alpha would blend the scene into every product pixel
    (by up to 10%) and leave the product with no opaque core for the pixel check to prove.
    """
    lut = np.clip((np.arange(256, dtype=np.float32) - clear_below) * 255.0 / (opaque_from - clear_below), 0, 255)
    return np.round(lut).astype(np.uint8)[mask]


def _rembg_weight_paths(model: str) -> list[Path]:
    """Where rembg looks for `<model>.onnx`, in its own order.

    U2NET_HOME, when set, is the folder for both layouts; otherwise the current layout lives
    under REMBG_HOME (or XDG_DATA_HOME/rembg, ~/.rembg) and the older flat one in ~/.u2net.
    """
    fname = f"{model}.onnx"
    u2net_home = os.environ.get("U2NET_HOME")
    if u2net_home:
        home = Path(u2net_home).expanduser()
        return [home / "models" / model / fname, home / fname]
    xdg = os.environ.get("XDG_DATA_HOME")
    rembg_home = os.environ.get("REMBG_HOME") or (os.path.join(xdg, "rembg") if xdg else "~/.rembg")
    legacy = Path(xdg or "~").expanduser() / ".u2net"
    return [Path(rembg_home).expanduser() / "models" / model / fname, legacy / fname]


def rembg_fetch_command(model: str, folder: Path) -> str:
    """The command that downloads `model` into `folder` (run where there is internet, then copy)."""
    return f"U2NET_HOME={folder} python -c \"import rembg; rembg.new_session('{model}')\""


def _rembg_advice(model: str, expected: Path, problem: str = "") -> str:
    problem = problem or f"has no weights at {expected}"
    return (
        f"rembg model {model!r} {problem}; rembg reads {model}.onnx from the folder named by "
        f"U2NET_HOME (expected file: {expected}). To provide it, run once on "
        f"a machine with internet access: {rembg_fetch_command(model, expected.parent)}, "
        f"or copy {model}.onnx into that folder."
    )


def rembg_model_files() -> tuple[Path, list[Path]]:
    """(the folder rembg reads flat `<model>.onnx` files from, every .onnx model file it can find
    in either layout)."""
    current, flat = (p.parent for p in _rembg_weight_paths("_"))
    files = sorted(flat.glob("*.onnx")) if flat.is_dir() else []
    models = current.parent
    if models.is_dir():
        files += sorted(f for f in models.glob("*/*.onnx") if f.stem == f.parent.name)
    return flat, files


BORDER_PX = 2  # width of the photo's border strip that `mask_confidence` reads
BORDER_OK = 0.25  # share of that strip a product may cover (one whole side of a square photo)
BORDER_BAD = 0.5  # share from which the cut-out is taken to hold the backdrop itself


def mask_confidence(mask: np.ndarray, clear_below: int, opaque_from: int) -> tuple[float, dict[str, float], list[str]]:
    """How far a segmentation model's mask can be trusted, in 0..1, with its measures and reasons.

    A network always answers, and its answer is as crisp when it keeps the backdrop as when it
    finds the product, so crispness alone is not enough. Three signs, each able to pull the
    confidence under the review threshold:
    - unsure share: mask levels strictly between `clear_below` and `opaque_from`, as a share of
      the cut-out's extent (every level above `clear_below`), so it stays within 0..1 when most of
      a ghostly mask is unsure; a confident segmentation is bimodal (IS-Net: 2-5% on clean packshots);
    - coverage: a product filling under 1% or over 90% of the photo is no product cut-out;
    - border: the share of the photo's border strip (`BORDER_PX` wide) the cut-out covers. A
      product may run off one side (a cropped sleeve, a shoe on the bottom edge): up to
      `BORDER_OK` costs nothing; from there the confidence falls to 0 at `BORDER_BAD`, where the
      cut-out runs along half the photo's edge, which only a backdrop does.
    """
    fg = mask > 127
    kept = mask > clear_below
    unsure = float((kept & (mask < opaque_from)).sum() / max(1, int(kept.sum())))
    coverage = float(fg.mean())
    b = BORDER_PX
    strip = np.concatenate([fg[:b].ravel(), fg[-b:].ravel(), fg[b:-b, :b].ravel(), fg[b:-b, -b:].ravel()])
    border = float(strip.mean()) if strip.size else 0.0
    confidence = float(np.clip(1.0 - unsure / 0.5, 0.0, 1.0))
    reasons = []
    if unsure > 0.1:
        reasons.append(f"soft mask: {unsure:.0%} of the cut-out is neither clearly in nor out")
    if not 0.01 <= coverage <= 0.9:
        confidence *= 0.3
        reasons.append(f"implausible product coverage {coverage:.1%}")
    if border > BORDER_OK:
        confidence *= float(np.clip((BORDER_BAD - border) / (BORDER_BAD - BORDER_OK), 0.0, 1.0))
        reasons.append(f"the cut-out runs along {border:.0%} of the photo's border: it may hold the backdrop")
    measures = {"unsure_fraction": round(unsure, 4), "coverage": round(coverage, 4), "border_share": round(border, 4)}
    return confidence, measures, reasons


class RembgMatte:
    """Segmentation-model matte via rembg, for products on busy or coloured backgrounds.

    The default model is isnet-general-use because its weights may be used commercially;
    rembg's own default (bria-rmbg) is licensed for non-commercial use only. Weights are never
    downloaded during a run: they must already be on disk (see `_rembg_advice`).
    """

    name = "rembg"
    Options = RembgOptions
    learned = True

    def __init__(self, options: RembgOptions, session: Any, remove: Any, providers: list[str],
                 sized: Any = None, size: int = 0) -> None:
        self.options = options
        self.session = session  # rembg's session (None when the model runs at another size: `sized`)
        self._remove = remove
        self.providers = providers
        self.sized = sized  # onnxruntime session at `size` (rembg_sized), or None: rembg's own pipeline
        self.size = size
        self.backend = f"rembg:{options.model}"

    @classmethod
    def requirements(cls, options: RembgOptions) -> list[Requirement]:
        """The rembg package and the model's .onnx file, looked for where `load` looks."""
        paths = _rembg_weight_paths(options.model)
        weights = next((p for p in paths if p.is_file()), None)
        found = (Requirement("rembg model", options.model, str(weights)) if weights is not None else
                 Requirement("rembg model", options.model, problem=_rembg_advice(options.model, paths[-1]),
                             fix=rembg_fetch_command(options.model, paths[-1].parent),
                             why=f"no {options.model}.onnx in {' or '.join(str(p.parent) for p in paths)}"))
        return [package_requirement("rembg", "pip install 'rembg[cpu]'  # or rembg[gpu]"),
                package_requirement("onnxruntime", "pip install onnxruntime  # or onnxruntime-gpu"), found]

    @classmethod
    def load(cls, options: RembgOptions) -> RembgMatte:
        """Find the model's weights, then open an onnxruntime session (CUDA when available)."""
        model = options.model
        paths = _rembg_weight_paths(model)
        weights = next((p for p in paths if p.is_file()), None)
        if weights is None:
            raise ModelUnavailableError(_rembg_advice(model, paths[-1]))
        # imported here: only this backend needs them, and rembg's first import compiles
        # numba code for about a minute
        try:
            import onnxruntime
            import rembg
            from rembg.sessions import sessions_class
        except ImportError as exc:
            raise ModelUnavailableError(
                f"the rembg backend needs `pip install rembg[cpu]` (or rembg[gpu]): {exc}"
            ) from exc
        session_cls = next((c for c in sessions_class if c.name() == model), None)
        if session_cls is None:
            known = sorted(c.name() for c in sessions_class)
            raise ConfigError(f"matte.rembg.model = {model!r}: unknown to rembg; known: {known}")
        if hasattr(session_cls, "is_local") and not session_cls.is_local():
            raise ConfigError(f"matte.rembg.model = {model!r} sends images to a remote service")
        available = onnxruntime.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        if options.inference_size or options.edge_refine != "none":
            return cls._load_sized(options, weights, providers, rembg.remove)
        try:
            session = rembg.new_session(model, providers=providers)
        except Exception as exc:
            problem = f"could not be loaded ({type(exc).__name__}: {exc})"
            raise ModelUnavailableError(_rembg_advice(model, weights, problem)) from exc
        return cls(options, session, rembg.remove, providers)

    @classmethod
    def _load_sized(cls, options: RembgOptions, weights: Path, providers: list[str], remove: Any) -> RembgMatte:
        """The model in its own onnxruntime session at `inference_size`, with rembg's IS-Net pre- and
        post-processing (stages.matte.rembg_sized): only IS-Net models normalise that way."""
        from stages.matte import rembg_sized

        if not options.model.startswith("isnet"):
            raise ConfigError(f"matte.rembg.inference_size and edge_refine apply to IS-Net models (isnet-*), "
                              f"not {options.model!r}")
        try:
            sized, side = rembg_sized.open_session(weights, options.inference_size or 1024, providers)
        except (ConfigError, ModelUnavailableError):
            raise
        except Exception as exc:
            problem = f"could not be loaded ({type(exc).__name__}: {exc})"
            raise ModelUnavailableError(_rembg_advice(options.model, weights, problem)) from exc
        return cls(options, None, remove, providers, sized, options.inference_size or side)

    def _mask(self, rgb: np.ndarray) -> np.ndarray:
        """The model's mask of the photo (uint8, the photo's size), before `mask_to_alpha`."""
        if self.sized is not None:
            from stages.matte import rembg_sized

            mask = rembg_sized.predict(self.sized, rgb, self.size)
            if self.options.edge_refine == "guided":
                mask = rembg_sized.guided_refine(mask, rgb, self.size)
            if self.options.alpha_matting:  # rembg's own refinement, with the thresholds `remove` uses
                from PIL import Image
                from rembg.bg import alpha_matting_cutout

                cut = alpha_matting_cutout(Image.fromarray(rgb), Image.fromarray(mask), 240, 10, 10)
                mask = np.asarray(cut)[..., 3]
            return np.ascontiguousarray(mask, dtype=np.uint8)
        common = {"session": self.session, "post_process_mask": False}
        if self.options.alpha_matting:
            # rembg ignores alpha_matting when only_mask is set: take the refined cut-out's alpha
            out = np.asarray(self._remove(rgb, alpha_matting=True, **common))
            alpha = out[..., 3] if out.ndim == 3 else out
        else:
            alpha = np.asarray(self._remove(rgb, only_mask=True, alpha_matting=False, **common))
        return np.ascontiguousarray(alpha, dtype=np.uint8)

    def run(self, rgb: np.ndarray) -> Matte:
        mask = self._mask(check_rgb(rgb))
        o = self.options
        confidence, measures, reasons = mask_confidence(mask, o.clear_below, o.opaque_from)
        details = {
            "model": o.model,
            "providers": self.providers,
            "alpha_matting": o.alpha_matting,
            **({"inference_size": self.size, "edge_refine": o.edge_refine} if self.sized is not None else {}),
            **measures,
            "reasons": reasons,
        }
        alpha = mask_to_alpha(mask, o.clear_below, o.opaque_from)
        return Matte(alpha, confidence, self.backend, details)
