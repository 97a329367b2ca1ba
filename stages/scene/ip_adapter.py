"""IP-Adapter for the diffusers scene backends: a reference image (a brand moodboard shot) steers the look."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stages.errors import ModelUnavailableError
from stages.models import ModelSource, load_failure, resolve_source
from stages.scene.base import SceneRequest

NEUTRAL = 128  # grey of the stand-in image for requests without a reference
_NEUTRAL_SIDE = 224


def weights_path(o: Any) -> str:
    sub = o.ip_adapter_subfolder.strip("/")
    return f"{sub}/{o.ip_adapter_weight_name}" if sub else o.ip_adapter_weight_name


def resolve(o: Any, where: str) -> tuple[ModelSource | None, ModelSource | None]:
    """The adapter's and the image encoder's sources, or (None, None) when no adapter is configured.

    Resolved before torch is imported, like the other models: a missing file fails at once.
    """
    if not o.ip_adapter:
        return None, None
    ip = resolve_source("IP-Adapter", o.ip_adapter, "", weights_path(o), f"[{where}].ip_adapter")
    sub = o.ip_adapter_subfolder.strip("/")
    if ip.kind == "hf-cache" and sub:  # the cache lookup found the weights' folder: go up to the snapshot
        root = Path(ip.load_from)
        for _ in sub.split("/"):
            root = root.parent
        commit = root.name if re.fullmatch(r"[0-9a-f]{40}", root.name) else None
        ip = ModelSource(ip.role, ip.ref, ip.revision, str(root), ip.kind, commit)
    encoder = None
    if o.image_encoder:
        encoder = resolve_source("IP-Adapter image encoder", o.image_encoder, "", "config.json",
                                 f"[{where}].image_encoder")
    return ip, encoder


def load(pipe: Any, o: Any, ip: ModelSource, encoder: ModelSource | None, dtype: Any,
         where: str) -> None:
    """Load the image encoder (when configured apart) and the adapter weights into `pipe`, once per backend."""
    folder: str | None = "image_encoder"
    try:
        if encoder is not None:
            from transformers import CLIPVisionModelWithProjection

            enc = CLIPVisionModelWithProjection.from_pretrained(encoder.load_from, dtype=dtype,
                                                                **encoder.pretrained_kwargs)
            pipe.register_modules(image_encoder=enc)
            folder = None  # already there: diffusers must not look beside the weights
        pipe.load_ip_adapter(ip.load_from, subfolder=o.ip_adapter_subfolder or None,
                             weight_name=o.ip_adapter_weight_name, image_encoder_folder=folder,
                             **ip.pretrained_kwargs)
    except Exception as exc:  # hub, file-format and shape errors all mean: these weights cannot be used
        raise load_failure(ip, exc, (
            f"Set [{where}].ip_adapter to a folder holding {weights_path(o)} (and "
            f"{o.ip_adapter_subfolder or '.'}/image_encoder, or set image_encoder), or download the hub repo once "
            f"(`hf download {ip.ref if ip.kind != 'local' else 'h94/IP-Adapter'}`).")) from exc
    if getattr(pipe, "image_encoder", None) is None:
        raise ModelUnavailableError(
            f"IP-Adapter {ip.ref}: no image encoder was loaded; set [{where}].image_encoder"
        )


def record(o: Any, ip: ModelSource | None, encoder: ModelSource | None) -> dict[str, Any]:
    return {
        **(ip.record() if ip else {}), "subfolder": o.ip_adapter_subfolder or None,
        "weight_name": o.ip_adapter_weight_name, "scale": o.ip_adapter_scale,
        "image_encoder": encoder.record() if encoder else "image_encoder beside the weights",
    }


def reference_key(request: SceneRequest) -> str | None:
    ref = getattr(request, "reference", None)
    return ref.sha256 if ref is not None else None


def call_inputs(pipe: Any, o: Any, request: SceneRequest,
                loaded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pipeline keyword arguments for one call (all its requests share a reference) and what to record.

    Requests without a reference still run on a pipeline with the adapter loaded: diffusers'
    IP-Adapter attention then needs image embeddings all the same, so the call gets a neutral grey
    image at scale 0, and at scale 0 diffusers skips the image branch of every attention layer:
    the result is what the pipeline without the adapter makes."""
    from PIL import Image

    ref = getattr(request, "reference", None)
    if not loaded:
        info = {"reference_image": {**ref.record(), "applied": False}} if ref is not None else {}
        return {}, info
    if ref is None:
        pipe.set_ip_adapter_scale(0.0)
        image = Image.new("RGB", (_NEUTRAL_SIDE, _NEUTRAL_SIDE), (NEUTRAL,) * 3)
        return {"ip_adapter_image": image}, {"reference_image": None, "ip_adapter_scale": 0.0}
    pipe.set_ip_adapter_scale(o.ip_adapter_scale)
    return ({"ip_adapter_image": Image.fromarray(ref.rgb, "RGB")},
            {"reference_image": {**ref.record(), "applied": True}, "ip_adapter_scale": o.ip_adapter_scale})
