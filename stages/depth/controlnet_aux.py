"""`controlnet-aux`: MiDaS or ZoeDepth through controlnet-aux, from a local folder or a Hugging Face repo id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from stages.depth.base import DepthMap, preview_canvas
from stages.errors import ModelUnavailableError, StageError
from stages.layout import Layout
from stages.models import Requirement, download_command, hub_offline, package_requirement, source_requirement

_DETECTORS = {
    # name: (controlnet_aux class name, default checkpoint file)
    "midas": ("MidasDetector", "dpt_hybrid-midas-501f0c75.pt"),
    "zoe": ("ZoeDetector", "ZoeD_M12_N.pt"),
}


@dataclass(frozen=True)
class ControlnetAuxOptions:
    """[depth.controlnet_aux]"""

    detector: Literal["midas", "zoe"] = "midas"
    model: str = "lllyasviel/Annotators"  # hub id or local folder holding the checkpoint
    filename: str = ""  # empty: the detector's default checkpoint name


class ControlnetAuxDepth:
    """MiDaS or ZoeDepth through controlnet-aux, from a local folder or a Hugging Face repo id."""

    name = "controlnet-aux"
    Options = ControlnetAuxOptions

    def __init__(self, detector: Any, label: str) -> None:
        self.detector = detector
        self.label = label

    @classmethod
    def requirements(cls, options: ControlnetAuxOptions) -> list[Requirement]:
        """The controlnet-aux package and the detector's checkpoint (a local folder or the HF cache)."""
        filename = options.filename or _DETECTORS[options.detector][1]
        return [package_requirement("controlnet_aux", "pip install controlnet-aux"),
                source_requirement(f"{options.detector} checkpoint", options.model, "", filename,
                                   "[depth.controlnet_aux].model", ControlnetAuxOptions().model, filename)]

    @classmethod
    def load(cls, options: ControlnetAuxOptions) -> ControlnetAuxDepth:
        class_name, default_file = _DETECTORS[options.detector]
        filename = options.filename or default_file
        label = f"controlnet-aux:{options.detector}:{options.model}/{filename}"
        hub_id = options.model if "/" in options.model else "lllyasviel/Annotators"
        advice = (
            f"Provide the {options.detector} checkpoint {filename!r}: download it once on a machine with internet "
            f"(`{download_command(hub_id, filename=filename)}`; older clients: `huggingface-cli download {hub_id} "
            f"{filename}`) into the Hugging Face cache, or copy the file "
            "into a folder and set [depth.controlnet_aux].model to it."
        )
        local = Path(options.model).expanduser()
        if local.is_dir():
            if not (local / filename).is_file():
                raise ModelUnavailableError(f"depth model file {local / filename} not found. {advice}")
        elif local.is_absolute() or options.model.startswith("."):
            raise ModelUnavailableError(f"depth model folder {options.model} not found. {advice}")
        else:
            _ensure_cached(options.model, filename, advice)
        try:
            import controlnet_aux

            detector_cls = getattr(controlnet_aux, class_name)
            detector = detector_cls.from_pretrained(str(local) if local.is_dir() else options.model, filename=filename)
        except Exception as exc:  # torch/timm raise many types on a bad checkpoint
            raise ModelUnavailableError(f"depth model {label} failed to load: {exc}. {advice}") from exc
        return cls(detector, label)

    def run(self, layout: Layout, horizon: float) -> DepthMap:
        H, W = layout.product_alpha.shape
        image = preview_canvas(layout)
        res = min(1024, max(H, W))
        try:
            out = self.detector(image, detect_resolution=res, image_resolution=res, output_type="np")
        except Exception as exc:
            raise StageError(f"{self.label} failed: {exc}") from exc
        out = np.asarray(out)
        if out.ndim == 3:
            out = out[..., 0]
        out = cv2.resize(out.astype(np.uint8), (W, H), interpolation=cv2.INTER_LINEAR)
        return DepthMap(out, self.label, {"detect_resolution": res})


def _ensure_cached(repo: str, filename: str, advice: str) -> None:
    """Resolve the hub file first: a clear error beats controlnet-aux's fallback downloaders."""
    from huggingface_hub import hf_hub_download

    offline = hub_offline()
    try:
        hf_hub_download(repo, filename, local_files_only=offline)
    except Exception as exc:
        raise ModelUnavailableError(
            f"depth model {repo}/{filename} is not available"
            f"{' (HF_HUB_OFFLINE is set, so only the local cache was searched)' if offline else ''}: "
            f"{type(exc).__name__}. {advice}"
        ) from exc
