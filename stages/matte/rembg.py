"""`rembg`: a segmentation model's matte through rembg, from weights already on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.errors import ConfigError, ModelUnavailableError
from stages.matte.base import Matte, check_rgb
from stages.models import Requirement, package_requirement


@dataclass(frozen=True)
class RembgOptions:
    """[matte.rembg]"""

    model: str = "isnet-general-use"  # commercially usable; rembg's own default (bria) is non-commercial
    alpha_matting: bool = False

    def check(self, where: str) -> None:
        if not self.model.strip():
            raise ConfigError(f"{where}.model is empty: name a rembg model (e.g. isnet-general-use)")


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


class RembgMatte:
    """Segmentation-model matte via rembg, for products on busy or coloured backgrounds.

    The default model is isnet-general-use because its weights may be used commercially;
    rembg's own default (bria-rmbg) is licensed for non-commercial use only. Weights are never
    downloaded during a run: they must already be on disk (see `_rembg_advice`).
    """

    name = "rembg"
    Options = RembgOptions
    learned = True

    def __init__(self, options: RembgOptions, session: Any, remove: Any, providers: list[str]) -> None:
        self.options = options
        self.session = session
        self._remove = remove
        self.providers = providers
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
        try:
            session = rembg.new_session(model, providers=providers)
        except Exception as exc:
            problem = f"could not be loaded ({type(exc).__name__}: {exc})"
            raise ModelUnavailableError(_rembg_advice(model, weights, problem)) from exc
        return cls(options, session, rembg.remove, providers)

    def run(self, rgb: np.ndarray) -> Matte:
        rgb = check_rgb(rgb)
        common = {"session": self.session, "post_process_mask": False}
        if self.options.alpha_matting:
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
            "model": self.options.model,
            "providers": self.providers,
            "alpha_matting": self.options.alpha_matting,
            "unsure_fraction": round(unsure, 4),
            "coverage": round(coverage, 4),
            "reasons": reasons,
        }
        return Matte(alpha, confidence, self.backend, details)
