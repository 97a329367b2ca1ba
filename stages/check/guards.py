"""The content checks a worker loads once and runs on every composited variant: NSFW, object
expansion and halo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stages.check import CheckResult
from stages.check.fidelity import (
    FidelityOptions, backdrop_colour, expansion_check, expansion_heuristic, expansion_resegment, halo, measure_outline,
)
from stages.check.nsfw import NsfwBackend, nsfw_check
from stages.check.outline import Outline
from stages.layout import Layout
from stages.matte import Matte, MatteBackend


def expansion_method(setting: str, learned_matte: bool) -> str:
    """`[fidelity] expansion` made concrete: `auto` re-segments the composite with a learned matte
    backend and judges colours (heuristic) with an embedded one."""
    if setting == "auto":
        return "resegment" if learned_matte else "heuristic"
    return setting


@dataclass
class ContentChecks:
    nsfw: NsfwBackend
    nsfw_threshold: float
    nsfw_review_threshold: float
    fidelity: FidelityOptions
    matte: MatteBackend  # re-segments the final image when the expansion method is `resegment`

    @property
    def expansion(self) -> str:
        return expansion_method(self.fidelity.expansion, self.matte.learned)

    def outline(self, layout: Layout) -> Outline:
        """The product's distance maps for `run`: measure once per layout, share across variants."""
        return measure_outline(layout, self.fidelity)

    def run(self, staged: np.ndarray, layout: Layout, source_rgb: np.ndarray, matte: Matte,
            outline: Outline | None = None) -> tuple[list[CheckResult], dict[str, Any]]:
        """NSFW, expansion and halo on one composited variant; returns the checks and diagnostics."""
        cfg = self.fidelity
        score = self.nsfw.score(staged)
        checks = [nsfw_check(score, self.nsfw_threshold, self.nsfw_review_threshold, self.nsfw.label)]
        details: dict[str, Any] = {"nsfw": {"backend": self.nsfw.label, "score": round(score, 4)}}
        method = self.expansion
        outline = outline or self.outline(layout)  # distance maps shared by both checks
        if method != "off":
            if method == "resegment":
                exp = expansion_resegment(staged, layout, cfg, self.matte.run(staged).alpha)
            else:
                exp = expansion_heuristic(staged, layout, cfg, outline)
            checks.append(expansion_check(exp, cfg))
            details["expansion"] = {"method": exp.method, "score": exp.score, "reach_px": exp.reach_px,
                                    "regions": exp.regions}
        # a photo with its own transparency has no backdrop to leave a fringe
        backdrop = None if matte.backend == "source-alpha" else backdrop_colour(source_rgb, matte.alpha, matte.details)
        checks.append(halo(staged, layout, backdrop, cfg, outline))
        details["halo"] = {"source_backdrop_rgb": None if backdrop is None else [round(float(v), 1) for v in backdrop]}
        return checks, details
