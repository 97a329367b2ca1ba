"""One row of `stage doctor`'s table: what was checked, its status, what was found, how to fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "info", "warn", "missing", "fail"]
PROBLEMS = ("missing", "fail")  # the configured pipeline cannot run: `stage doctor` exits 1


@dataclass(frozen=True)
class Row:
    area: str  # backends | models | checks | gpu | signing | prefect | output | state
    name: str  # what was checked, e.g. "scene diffusers-sdxl: inpainting model"
    status: Status
    detail: str  # what was found, or why it is a problem
    fix: str = ""  # the command (or setting) that fixes a problem

    @property
    def problem(self) -> bool:
        return self.status in PROBLEMS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
