"""The content checks a worker loads once and runs on every composited variant: NSFW, object
expansion, halo and the cut-out's leftovers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stages.check import CheckResult
from stages.check.fidelity import (
    FidelityOptions, backdrop_colour, expansion_check, expansion_heuristic, expansion_resegment, halo, measure_outline,
)
from stages.check.leftovers import Leftovers, find_leftovers, leftover_checks
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
    # the leftovers of the last layout judged: (layout, matte, found), the same for all its variants
    _last: tuple[Layout, Matte, Leftovers] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def expansion(self) -> str:
        return expansion_method(self.fidelity.expansion, self.matte.learned)

    def outline(self, layout: Layout) -> Outline:
        """The product's distance maps for `run`: measure once per layout, share across variants."""
        return measure_outline(layout, self.fidelity)

    def run(self, staged: np.ndarray, layout: Layout, source_rgb: np.ndarray, matte: Matte,
            outline: Outline | None = None) -> tuple[list[CheckResult], dict[str, Any]]:
        """NSFW, expansion, halo and leftovers on one composited variant; returns the checks and diagnostics."""
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
        if cfg.leftovers.enabled:
            found = self.leftovers(layout, source_rgb, matte, backdrop, outline)
            checks += leftover_checks(found, cfg.leftovers)
            details["leftovers"] = found.details()
        return checks, details

    def leftovers(self, layout: Layout, source_rgb: np.ndarray, matte: Matte, backdrop: np.ndarray | None,
                  outline: Outline) -> Leftovers:
        """What the cut-out left on the product layer: it depends on the layout and the matte, not on
        the scene, so it is found once for all the variants of a layout."""
        last = self._last
        if last is not None and last[0] is layout and last[1] is matte:
            return last[2]
        found = find_leftovers(layout.product_rgb, layout.product_alpha, layout.placement, outline, source_rgb,
                               matte.alpha, backdrop, self.fidelity.leftovers)
        self._last = (layout, matte, found)
        return found
