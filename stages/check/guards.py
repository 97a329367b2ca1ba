"""The content checks a worker loads once and runs on every composited variant: NSFW, object
expansion, halo, the cut-out's leftovers and a hanger left on a garment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stages.check import CheckResult
from stages.check.fidelity import (
    FidelityOptions, backdrop_colour, expansion_check, expansion_heuristic, expansion_not_judged, expansion_resegment, halo,
    measure_outline,
)
from stages.check.hangers import Hangers, find_hangers, hanger_check
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


@dataclass(frozen=True)
class LayoutMeasures:
    """What the checks measure once per layout and share across its variants: none of it depends
    on the scene. The product's distance maps, the source backdrop's colour (None for a photo with
    its own transparency: it had no backdrop to leave a fringe), the cut-out's leftovers (None
    when that check is off) and the thin parts a hanger left (None when that check is off)."""

    outline: Outline
    backdrop: np.ndarray | None
    leftovers: Leftovers | None
    hangers: Hangers | None = None


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

    def measure(self, layout: Layout, source_rgb: np.ndarray, matte: Matte, category: str = "") -> LayoutMeasures:
        """The per-layout measures for `run`: measure once per layout, share across variants.
        `category`: the row's category, which gates the hanger check (garments only)."""
        cfg = self.fidelity
        outline = measure_outline(layout, cfg)
        backdrop = None if matte.backend == "source-alpha" else backdrop_colour(source_rgb, matte.alpha, matte.details)
        found = None
        if cfg.leftovers.enabled:
            found = find_leftovers(layout.product_rgb, layout.product_alpha, layout.placement, outline, source_rgb,
                                   matte.alpha, backdrop, cfg.leftovers, matte.mixed_edge)
        hangers = find_hangers(layout.product_alpha, category, cfg.hangers) if cfg.hangers.enabled else None
        return LayoutMeasures(outline, backdrop, found, hangers)

    def run(self, staged: np.ndarray, layout: Layout, source_rgb: np.ndarray, matte: Matte,
            measures: LayoutMeasures | None = None, category: str = "",
            generated: bool = True) -> tuple[list[CheckResult], dict[str, Any]]:
        """NSFW, expansion, halo, leftovers and hangers on one composited variant; returns the checks
        and diagnostics.

        `generated`: the scene was drawn by a trained model. Object expansion is what such a model
        does (more product drawn out of the outline), so it is judged only then: around a procedural
        or flat backdrop every pixel outside the product layer is the backdrop's own, and a finding
        there could only be a false alarm (a backdrop tone that happens to match the product's).
        The other checks judge the product, its cut-out or the whole image, and always run."""
        cfg = self.fidelity
        m = measures or self.measure(layout, source_rgb, matte, category)
        score = self.nsfw.score(staged)
        checks = [nsfw_check(score, self.nsfw_threshold, self.nsfw_review_threshold, self.nsfw.label)]
        details: dict[str, Any] = {"nsfw": {"backend": self.nsfw.label, "score": round(score, 4)}}
        method = self.expansion
        if method != "off":
            if not generated:
                checks.append(expansion_not_judged(cfg))
                details["expansion"] = {"method": method, "judged": False}
            else:
                exp = (expansion_resegment(staged, layout, cfg, self.matte.run(staged).alpha) if method == "resegment"
                       else expansion_heuristic(staged, layout, cfg, m.outline))
                checks.append(expansion_check(exp, cfg))
                details["expansion"] = {"method": exp.method, "score": exp.score, "reach_px": exp.reach_px,
                                        "regions": exp.regions}
        checks.append(halo(staged, layout, m.backdrop, cfg, m.outline))
        details["halo"] = {"source_backdrop_rgb": None if m.backdrop is None else
                           [round(float(v), 1) for v in m.backdrop]}
        if m.leftovers is not None:
            checks += leftover_checks(m.leftovers, cfg.leftovers)
            details["leftovers"] = m.leftovers.details()
        if m.hangers is not None:
            checks.append(hanger_check(m.hangers, cfg.hangers))
            details["hangers"] = m.hangers.details()
        return checks, details
