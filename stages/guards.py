"""The content checks a worker loads once and runs on every product: prompt safety before
generation, then NSFW, object expansion and halo on each composited variant.

Kept apart from `stages.product` so the per-product flow only calls `check_prompts` and
`variant_checks`; each check comes back as a CheckResult, so verdicts and records stay uniform.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.check import CheckResult
from stages.config import Config
from stages.fidelity import (
    backdrop_colour,
    expansion_check,
    expansion_heuristic,
    expansion_resegment,
    halo,
    measure_outline,
)
from stages.layout import Layout
from stages.matte import Matte, MatteBackend
from stages.nsfw import NsfwBackend, make_nsfw_backend, nsfw_check
from stages.outline import Outline
from stages.prompt_safety import PromptCheck, PromptGuard

# Matte backends that segment by what the object is (learned) rather than by a plain backdrop.
EMBEDDED_MATTES = {"studio"}


@dataclass
class Guards:
    cfg: Config
    prompts: PromptGuard
    nsfw: NsfwBackend

    @classmethod
    def build(cls, cfg: Config) -> Guards:
        nsfw_cfg = cfg.nsfw
        local = cfg.resolve(nsfw_cfg.transformers.model)  # a relative model folder resolves against config.toml
        if not Path(nsfw_cfg.transformers.model).is_absolute() and local.exists():
            nsfw_cfg = dataclasses.replace(nsfw_cfg, transformers=dataclasses.replace(
                nsfw_cfg.transformers, model=str(local.resolve())))
        return cls(cfg=cfg, prompts=PromptGuard(cfg.safety, cfg), nsfw=make_nsfw_backend(nsfw_cfg))

    def check_prompts(self, prompt: str, negative: str, title: str, category: str) -> PromptCheck:
        return self.prompts.check(prompt, negative, title, category)

    def expansion_method(self, matte_backend: str) -> str:
        mode = self.cfg.fidelity.expansion
        if mode == "auto":
            return "heuristic" if matte_backend in EMBEDDED_MATTES else "resegment"
        return mode

    def outline(self, layout: Layout) -> Outline:
        """The product's distance maps for `variant_checks`: measure once per layout, share across variants."""
        return measure_outline(layout, self.cfg.fidelity)

    def variant_checks(self, staged: np.ndarray, layout: Layout, source_rgb: np.ndarray, matte: Matte,
                       resegmenter: MatteBackend | None,
                       outline: Outline | None = None) -> tuple[list[CheckResult], dict[str, Any]]:
        """NSFW, expansion and halo on one composited variant; returns the checks and diagnostics."""
        cfg = self.cfg
        score = self.nsfw.score(staged)
        checks = [nsfw_check(score, cfg.nsfw, self.nsfw.label)]
        details: dict[str, Any] = {"nsfw": {"backend": self.nsfw.label, "score": round(score, 4)}}
        method = self.expansion_method(getattr(resegmenter, "name", "studio"))
        outline = outline or self.outline(layout)  # distance maps shared by both checks
        if method != "off":
            if method == "resegment" and resegmenter is not None:
                exp = expansion_resegment(staged, layout, cfg.fidelity, resegmenter.run(staged).alpha)
            else:
                exp = expansion_heuristic(staged, layout, cfg.fidelity, outline)
            checks.append(expansion_check(exp, cfg.fidelity))
            details["expansion"] = {"method": exp.method, "score": exp.score, "reach_px": exp.reach_px,
                                    "regions": exp.regions}
        # a photo with its own transparency has no backdrop to leave a fringe
        backdrop = None if matte.backend == "source-alpha" else backdrop_colour(source_rgb, matte.alpha, matte.details)
        checks.append(halo(staged, layout, backdrop, cfg.fidelity, outline))
        details["halo"] = {"source_backdrop_rgb": None if backdrop is None else [round(float(v), 1) for v in backdrop]}
        return checks, details
