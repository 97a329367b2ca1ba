"""A worker's loaded backends, built once per process and reused for every product."""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from ops.config import Config
from provenance.sign import ContentSigner, SignerMaterial, load_signer_material, resolve_callback
from provenance.verify import load_trust_anchors
from stages.check.guards import ContentChecks
from stages.check.nsfw import load_nsfw_backend
from stages.check.prompt_safety import PromptGuard
from stages.depth import load_depth_backend
from stages.errors import ConfigError
from stages.matte import Escalation, load_matte_backend, segmenter
from stages.pipeline import PIPELINE_VERSION, Parts
from stages.scene import load_scene_backend
from stages.scene.chain import SceneChain

log = logging.getLogger("ops.workbench")


@dataclass
class Workbench:
    """Building one is the expensive part: models, the signer, the trust anchors."""

    cfg: Config
    parts: Parts  # what `stages.pipeline.stage` runs
    prompts: PromptGuard
    signer: ContentSigner
    signer_material: SignerMaterial
    trust_anchors: str | None

    @classmethod
    def build(cls, cfg: Config) -> Workbench:
        material = load_signer_material(cfg.sign)
        if material.is_dev:
            log.warning("signing with development credentials from %s: outputs are NOT trusted", material.origin)
        anchors, _ = load_trust_anchors(cfg.verify)
        parts = load_parts(cfg)
        callback = resolve_callback(cfg.sign.callback) if cfg.sign.callback else None
        signer = ContentSigner(material, cfg.sign, version=PIPELINE_VERSION, sign_callback=callback)
        return cls(cfg, parts, PromptGuard(cfg.safety.max_prompt_chars, blocklist_terms(cfg)), signer, material,
                   anchors)


def load_parts(cfg: Config) -> Parts:
    """The configured backends, loaded, with the step settings: what `stages.pipeline.stage` runs.
    Scene fallbacks load only when first needed."""
    models = with_model_paths(cfg)  # relative model folders resolve against config.toml
    matte = load_matte_backend(cfg.matte.backend, cfg.matte.options)
    escalation = None
    if cfg.matte.escalate_to:
        second = load_matte_backend(cfg.matte.escalate_to, cfg.matte.options_for(cfg.matte.escalate_to))
        escalation = Escalation(second, cfg.matte.min_confidence)
    nsfw = load_nsfw_backend(cfg.nsfw.backend, models.nsfw.options)
    checks = ContentChecks(nsfw, cfg.nsfw.threshold, cfg.nsfw.review_threshold, cfg.fidelity,
                           segmenter(matte, escalation.backend if escalation else None))
    scene = SceneChain((cfg.scene.backend, *cfg.scene.fallback),
                       lambda name: load_scene_backend(name, models.scene.options_for(name)))
    return Parts(matte, load_depth_backend(cfg.depth.backend, models.depth.options), scene, checks, cfg.steps(),
                 escalation)


def blocklist_terms(cfg: Config) -> list[str]:
    """[safety] blocklist plus the terms of blocklist_file (one a line, '#' comments)."""
    terms = list(cfg.safety.blocklist)
    if cfg.safety.blocklist_file:
        path = cfg.resolve(cfg.safety.blocklist_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"safety.blocklist_file = {cfg.safety.blocklist_file!r}: cannot read {path}: "
                              f"{exc}") from None
        terms += [ln.split("#", 1)[0].strip() for ln in lines]
    return terms


# Model settings that may name a local folder (relative to config.toml) rather than a hub id.
_MODEL_KEYS = ("model", "controlnet", "vae", "ip_adapter", "image_encoder")


def with_model_paths(cfg: Config) -> Config:
    """`cfg` with the learned backends' relative model paths made absolute against its folder.

    A value is changed only when it names something that exists relative to the config file,
    so hub ids ("owner/name") pass through untouched."""
    base = Path(cfg.base_dir)

    def fix(ref: str) -> str:
        p = Path(ref).expanduser()
        if not ref or p.is_absolute():
            return ref
        return str((base / p).resolve()) if (base / p).exists() else ref

    def fixed(options: object) -> object:
        if not dataclasses.is_dataclass(options):
            return options
        changes = {k: fix(getattr(options, k)) for k in _MODEL_KEYS if isinstance(getattr(options, k, None), str)}
        if hasattr(options, "loras"):
            changes["loras"] = tuple(dataclasses.replace(lora, path=fix(lora.path)) for lora in options.loras)
        return dataclasses.replace(options, **changes)

    def step(table: object) -> object:
        names = [f.name for f in dataclasses.fields(table) if dataclasses.is_dataclass(getattr(table, f.name))]
        return dataclasses.replace(table, **{n: fixed(getattr(table, n)) for n in names})

    return dataclasses.replace(cfg, scene=step(cfg.scene), depth=step(cfg.depth), nsfw=step(cfg.nsfw))


# Per worker process: backends load once and serve every batch task of every run.
_BENCHES: dict[str, Workbench] = {}
_LOCK = threading.Lock()
# Backends that failed to load, per (run id, config): the run's other batches fail the same way
# without loading again (a missing model is not transient); the next run tries afresh.
_FAILURES: dict[tuple[str, str], str] = {}


class BenchUnavailable(Exception):
    """The backends already failed to load in this run; the message is the original error."""


def shared_workbench(cfg: Config, run_id: str = "") -> Workbench:
    """This process's workbench for `cfg`, built on first use."""
    key = cfg.fingerprint()  # every setting: [load] allow_hosts changes no output but what a worker may reach
    with _LOCK:
        if key not in _BENCHES:
            failed = _FAILURES.get((run_id, key))
            if failed is not None:
                raise BenchUnavailable(failed)
            try:
                _BENCHES[key] = Workbench.build(cfg)
            except Exception as exc:
                for old in [k for k in _FAILURES if k[0] != run_id]:
                    del _FAILURES[old]
                _FAILURES[(run_id, key)] = f"{type(exc).__name__}: {exc}"
                raise
        return _BENCHES[key]


def forget_workbenches() -> None:
    """Drop this process's workbenches and load failures (a test or a benchmark starting afresh)."""
    with _LOCK:
        _BENCHES.clear()
        _FAILURES.clear()

