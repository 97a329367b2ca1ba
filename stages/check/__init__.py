"""Checks: each gives a CheckResult, so verdicts and records stay uniform.

Blocking failures reject an image; other failures send it to a person (review).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    value: float
    limit: str
    message: str
    blocking: bool  # a blocking failure rejects the image; a non-blocking one sends it to review

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(checks: list[CheckResult]) -> tuple[str, list[str]]:
    """pass, review (a person should look) or reject (must not be published)."""
    reasons = [f"{c.name}: {c.message}" for c in checks if not c.passed]
    if any(c.blocking and not c.passed for c in checks):
        return "reject", reasons
    if reasons:
        return "review", reasons
    return "pass", []
