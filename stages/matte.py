"""Matte stage: which pixels are the product, as a soft alpha plus how far to trust it.

Backends are chosen by name from `[matte] backend`. `studio` is embedded and needs no weights
(packshots on plain backdrops); `rembg` runs a segmentation model from local weights. A source
photo that already carries real transparency is used as is: the product's own cut-out beats any
estimate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stages.config import MatteConfig
from stages.errors import ConfigError, ModelUnavailableError, StageError
from stages.matte_studio import studio_matte
from stages.registry import Registry


@dataclass(frozen=True)
class Matte:
    alpha: np.ndarray  # HxW uint8, 255 = product, soft edges
    confidence: float  # 0..1: how far the backend trusts its own matte
    backend: str  # registry name that made it, e.g. "studio", "rembg:isnet-general-use", "source-alpha"
    details: dict[str, Any]  # JSON-able diagnostics; "reasons" says why confidence is low


class MatteBackend(Protocol):
    name: str

    def __init__(self, cfg: MatteConfig) -> None: ...  # loads models here, once per worker process

    def run(self, rgb: np.ndarray) -> Matte: ...  # rgb: HxWx3 uint8


matte_backends: Registry[MatteBackend] = Registry("matte")


def make_matte_backend(cfg: MatteConfig) -> MatteBackend:
    """Build the configured backend; an unknown name raises UnknownBackendError."""
    return matte_backends.get(cfg.backend)(cfg)


def compute_matte(backend: MatteBackend, rgb: np.ndarray, alpha: np.ndarray | None) -> Matte:
    """Matte for one photo. `alpha` is the source's own transparency, None when it has none
    (the caller passes None for an all-opaque channel, which carries no information)."""
    if alpha is not None:
        if alpha.shape != rgb.shape[:2]:
            raise StageError(f"alpha shape {alpha.shape} does not match image {rgb.shape[:2]}")
        a = np.ascontiguousarray(alpha, dtype=np.uint8)
        return Matte(
            alpha=a,
            confidence=1.0,
            backend="source-alpha",
            details={"coverage": round(float((a > 127).mean()), 4), "reasons": []},
        )
    return backend.run(rgb)


@matte_backends.register("studio")
class StudioMatte:
    """Embedded backdrop-difference matte for packshots on white or plain backdrops (no weights)."""

    name = "studio"

    def __init__(self, cfg: MatteConfig) -> None:
        self.cfg = cfg.studio

    def run(self, rgb: np.ndarray) -> Matte:
        alpha, confidence, details = studio_matte(_check_rgb(rgb), self.cfg)
        details["review"] = confidence < self.cfg.min_confidence
        return Matte(alpha, confidence, self.name, details)


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


def _rembg_advice(model: str, expected: Path, problem: str = "") -> str:
    problem = problem or f"has no weights at {expected}"
    return (
        f"rembg model {model!r} {problem}; rembg reads {model}.onnx from the folder named by "
        f"U2NET_HOME (expected file: {expected}). To provide it, run once on "
        f"a machine with internet access: U2NET_HOME={expected.parent} python -c "
        f"\"import rembg; rembg.new_session('{model}')\", or copy {model}.onnx into that folder."
    )


@matte_backends.register("rembg")
class RembgMatte:
    """Segmentation-model matte via rembg, for products on busy or coloured backgrounds.

    The default model is isnet-general-use because its weights may be used commercially;
    rembg's own default (bria-rmbg) is licensed for non-commercial use only. Weights are never
    downloaded during a run: they must already be on disk (see `_rembg_advice`).
    """

    name = "rembg"

    def __init__(self, cfg: MatteConfig) -> None:
        self.cfg = cfg.rembg
        model = self.cfg.model
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
        self._remove = rembg.remove
        try:
            self.session = rembg.new_session(model, providers=providers)
        except Exception as exc:
            problem = f"could not be loaded ({type(exc).__name__}: {exc})"
            raise ModelUnavailableError(_rembg_advice(model, weights, problem)) from exc
        self.providers = providers
        self.backend = f"rembg:{model}"

    def run(self, rgb: np.ndarray) -> Matte:
        rgb = _check_rgb(rgb)
        common = {"session": self.session, "post_process_mask": False}
        if self.cfg.alpha_matting:
            # rembg ignores alpha_matting when only_mask is set: take the refined cut-out's alpha
            out = np.asarray(self._remove(rgb, alpha_matting=True, **common))
            alpha = out[..., 3] if out.ndim == 3 else out
        else:
            alpha = np.asarray(self._remove(rgb, only_mask=True, alpha_matting=False, **common))
        alpha = np.ascontiguousarray(alpha, dtype=np.uint8)
        fg = alpha > 127
        # a confident segmentation is bimodal: few pixels sit far from both 0 and 255
        unsure = float(((alpha > 25) & (alpha < 230)).sum() / max(1, int(fg.sum())))
        coverage = float(fg.mean())
        confidence = float(np.clip(1.0 - unsure / 0.5, 0.0, 1.0))
        reasons = []
        if unsure > 0.1:
            reasons.append(f"soft mask: {unsure:.0%} of the product area is neither clearly in nor out")
        if not 0.01 <= coverage <= 0.9:
            confidence *= 0.3
            reasons.append(f"implausible product coverage {coverage:.1%}")
        details = {
            "model": self.cfg.model,
            "providers": self.providers,
            "alpha_matting": self.cfg.alpha_matting,
            "unsure_fraction": round(unsure, 4),
            "coverage": round(coverage, 4),
            "reasons": reasons,
        }
        return Matte(alpha, confidence, self.backend, details)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise StageError(f"matte expects an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
    return rgb
