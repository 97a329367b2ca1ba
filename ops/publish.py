"""Publishing a signed file: written beside its final name, checked as written, renamed only if it passes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ops.atomic import staged_file
from provenance.verify import verify_file
from stages.check import CheckResult
from stages.check.pixels import decode_rgb
from stages.pipeline import Timer, untimed


@dataclass
class Published:
    ok: bool  # renamed into place
    checks: list[CheckResult] = field(default_factory=list)
    pixels: np.ndarray | None = None  # the file as a reader decodes it


class _Unpublished(Exception):
    """Internal signal: the staged file failed a blocking check and must not be renamed into place."""


def publish(path: Path, data: bytes, pixel_check: Callable[[np.ndarray], CheckResult], trust_anchors: str | None,
            timer: Timer = untimed) -> Published:
    """Write `data` beside `path`, check the written bytes (the product pixels, the content
    credentials) and rename it into place only if all pass: a file that fails is never visible
    under its published name."""
    out = Published(False)
    try:
        with timer("write"), staged_file(path, data) as tmp:
            with timer("check"):
                written = tmp.read_bytes()  # what a reader of the published file will get
                out.pixels = decode_rgb(written)
                out.checks.append(pixel_check(out.pixels))
                ver = verify_file(tmp, trust_anchors, written)
                out.checks.append(CheckResult(
                    "c2pa", ver.ok, 1.0 if ver.ok else 0.0, "valid manifest",
                    "content credentials verify" if ver.ok else "; ".join(ver.failures), True,
                ))
            if not all(c.passed for c in out.checks):
                raise _Unpublished
    except _Unpublished:
        return out
    out.ok = True
    return out
