"""What staging one product used that costs money: which steps ran on the GPU, how many backend calls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ops.record import ChannelRendition
from stages.pipeline import Parts, Staging


def device_of(backend: Any) -> str:
    """"cuda" or "cpu": where a loaded backend runs.

    A torch backend names its device (`device`: "cuda", "cuda:0" or a torch.device); an
    onnxruntime one its execution providers, the first of which it uses; the embedded backends
    have neither and run on the CPU."""
    device = getattr(backend, "device", None)
    if device is not None:
        return "cuda" if str(getattr(device, "type", device)).startswith("cuda") else "cpu"
    providers = list(getattr(backend, "providers", None) or [])
    return "cuda" if providers[:1] == ["CUDAExecutionProvider"] else "cpu"


@dataclass(frozen=True)
class Usage:
    """`devices`: steps that ran on the GPU in full; `shares_ms`: the GPU part of a step that ran
    there only in part (`channels`: its scenes); `calls`: calls per backend name."""

    devices: Mapping[str, str] = field(default_factory=dict)
    shares_ms: Mapping[str, float] = field(default_factory=dict)
    calls: Mapping[str, int] = field(default_factory=dict)

    def gpu_ms(self, timings_ms: Mapping[str, float]) -> dict[str, float]:
        """Milliseconds of each step spent on the GPU, given the steps' recorded times."""
        out = {step: ms for step, ms in timings_ms.items() if self.devices.get(step) == "cuda"}
        out.update({step: min(ms, timings_ms.get(step, 0.0)) for step, ms in self.shares_ms.items() if ms > 0})
        return out


def product_usage(parts: Parts, staging: Staging, channels: Iterable[ChannelRendition] = ()) -> Usage:
    """Where the master's steps ran and which backends were called, read from the loaded backends
    and what they made.

    matte, depth and check run where their model runs (a photo's own transparency needs no
    model); scene where the scenes say they were made (a fallback may run elsewhere than the
    configured backend). Channel renditions re-stage the product: their scenes' time (recorded
    per preset) is the GPU share of `channels`, the rest of it is CPU work. Calls: one matte per
    product (two when it was escalated), one depth map per staging (the master and each preset
    with a generated scene), one scene per variant and per such preset.
    """
    devices: dict[str, str] = {}
    calls: Counter[str] = Counter()
    if staging.matte.backend != "source-alpha":
        devices["matte"] = device_of(parts.matte)
        calls[parts.matte.name] += 1
        if parts.matte_escalation and "escalation" in staging.matte.details:  # made again: most of the time there
            devices["matte"] = device_of(parts.matte_escalation.backend)
            calls[parts.matte_escalation.backend.name] += 1
    devices["depth"] = device_of(parts.depth)
    calls[parts.depth.name] += 1
    devices["check"] = device_of(parts.checks.nsfw)
    if any(v.scene.settings.get("device") == "cuda" for v in staging.variants):
        devices["scene"] = "cuda"
    calls.update(v.scene.backend for v in staging.variants)
    presets: dict[str, ChannelRendition] = {}
    for c in channels:  # one entry per format; the preset was staged once
        presets.setdefault(c.preset, c)
    gpu_share = 0.0
    for c in presets.values():
        if c.photo_problems or c.scene.get("backend") == "flat":  # withheld: never staged; flat: no model
            continue
        calls[parts.depth.name] += 1
        calls[c.scene["backend"]] += 1
        if c.scene.get("device") == "cuda":
            gpu_share += float(c.timings_ms.get("scene", 0.0))
    return Usage({k: v for k, v in devices.items() if v == "cuda"}, {"channels": gpu_share} if gpu_share else {},
                 dict(calls))
