"""Configuration: `config.toml` parsed once into frozen dataclasses, validated when it is read."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, Literal

from ops.cost import CostOptions
from ops.fetch import HostPolicy
from ops.location import OutputLocation, StorageOptions, check_output_url, is_url, output_location
from ops.previews import PreviewOptions
from ops.schedule import schedule_error
from ops.tables import build, check_tables, merge_tables
from provenance.sign import SignOptions
from provenance.verify import VerifyOptions
from stages import depth, matte, scene
from stages.check import nsfw
from stages.check.compliance import ComplianceRules
from stages.check.fidelity import FidelityOptions
from stages.check.pixels import CheckOptions
from stages.check.prompt_safety import SafetyOptions
from stages.errors import ConfigError
from stages.harmonize import HarmonizeOptions
from stages.layout import LayoutOptions, placement_names
from stages.load import LoadOptions
from stages.pipeline import StepOptions
from stages.registry import lookup, options_key
from stages.shadow import ShadowOptions

DEFAULT_FILE = "config.toml"


@dataclass(frozen=True)
class RunOptions:
    """[run]"""

    output_dir: str = "outputs"  # relative paths resolve against the config file's folder
    batch_size: int = 32  # SKUs per Prefect task: keeps orchestration overhead low on large catalogs
    workers: int = 2  # concurrent batch tasks in one flow run
    max_variants: int = 8  # upper bound for a row's `variants`
    stop_timeout_s: float = 60.0  # after a stop request, how long products in progress may take to finish
    # an object-store output's local staging folder ("": $XDG_CACHE_HOME/product-staging/scratch); a
    # folder per output URL is made inside it (ops.location.scratch_root)
    scratch_dir: str = ""

    def check(self, where: str) -> None:
        if not 0 <= self.stop_timeout_s <= 3600:
            raise ConfigError(f"{where}.stop_timeout_s = {self.stop_timeout_s}: must be 0..3600 seconds")
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size = {self.batch_size}: must be >= 1")
        if self.workers < 1:
            raise ConfigError(f"{where}.workers = {self.workers}: must be >= 1")
        if not 1 <= self.max_variants <= 64:
            raise ConfigError(f"{where}.max_variants = {self.max_variants}: must be 1..64")
        if is_url(self.output_dir):
            try:
                check_output_url(self.output_dir)
            except ConfigError as exc:
                raise ConfigError(f"{where}.output_dir: {exc}") from None


@dataclass(frozen=True)
class StateOptions:
    """[state]: where run state lives (ledger, locks, claims, review decisions; README: Run state)."""

    database_url_env: str = "STAGE_DATABASE_URL"  # env var with a PostgreSQL URL; unset: files beside the output
    claim_lease_s: float = 60.0  # a worker's claim on a SKU lapses this long after its last heartbeat

    def check(self, where: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.database_url_env):
            raise ConfigError(f"{where}.database_url_env = {self.database_url_env!r}: must name an environment "
                              "variable (letters, digits, '_'); the URL itself never goes in the config")
        if not 5 <= self.claim_lease_s <= 3600:
            raise ConfigError(f"{where}.claim_lease_s = {self.claim_lease_s}: must be 5..3600 seconds")


@dataclass(frozen=True)
class ScheduleOptions:
    """[schedule]: when the `nightly` deployment runs (prefect.yaml must agree: `stage deploy --check`)."""

    cron: str = "0 2 * * *"
    timezone: str = "UTC"

    def check(self, where: str) -> None:
        problem = schedule_error(self.cron, self.timezone)
        if problem:
            raise ConfigError(f"{where}: {problem}")


@dataclass(frozen=True)
class WriteOptions:
    """[write]: how the master image and its format copies are encoded."""

    png_compress_level: int = 1  # 1-3: ISA-L (fast); 4-9: zlib, smaller and several times slower
    thumbnail_px: int = 256
    format_copies: tuple[Literal["jpeg", "webp"], ...] = ("jpeg",)  # signed copies of the master PNG
    jpeg_quality: int = 92  # WebP copies are lossless

    def check(self, where: str) -> None:
        if not 50 <= self.jpeg_quality <= 100:
            raise ConfigError(f"{where}.jpeg_quality = {self.jpeg_quality}: must be 50..100")
        if len(set(self.format_copies)) != len(self.format_copies):
            raise ConfigError(f"{where}.format_copies = {list(self.format_copies)}: duplicates")
        if not 0 <= self.png_compress_level <= 9:
            raise ConfigError(f"{where}.png_compress_level = {self.png_compress_level}: must be 0..9")


@dataclass(frozen=True)
class RenditionPreset:
    """A channel rendition ([renditions.presets.<name>]): the product staged again at the preset's size."""

    width: int = 1024
    height: int = 1024
    formats: tuple[Literal["png", "jpeg", "webp"], ...] = ("png",)
    placement: str = ""  # a placement mode or [layout.presets] name; "": the row's / [layout] placement
    background: str = ""  # "#ffffff": a flat colour and no scene; "": the scene backend makes one
    compliance: ComplianceRules = field(default_factory=ComplianceRules)


def _default_presets() -> dict[str, RenditionPreset]:
    marketplace = ComplianceRules(background="#ffffff", background_tolerance=3, background_share=0.995,
                                  max_background_std=2.0, min_fill=0.85, min_side=1000, no_text=True)
    return {
        "web": RenditionPreset(2048, 2048, ("png", "jpeg"), "center"),  # web shop
        "social": RenditionPreset(1080, 1350, ("jpeg",), ""),  # 4:5 feed post
        "banner": RenditionPreset(1920, 1080, ("jpeg", "webp"), "copy-space"),  # 16:9 with room for copy
        # marketplace main image: pure white, product fills >= 85%; zoom needs >= 1000 px
        "marketplace": RenditionPreset(1000, 1000, ("jpeg",), "packshot", "#ffffff", marketplace),
    }


@dataclass(frozen=True)
class RenditionsOptions:
    """[renditions]: the channel renditions staged for every product."""

    active: tuple[str, ...] = ("social", "marketplace")
    presets: dict[str, RenditionPreset] = field(default_factory=_default_presets)


class _Step:
    """A step's table: `backend`, the step's own settings, and one options table per backend."""

    backend: str

    def options_for(self, backend: str) -> Any:
        return getattr(self, options_key(backend))

    @property
    def options(self) -> Any:
        """The chosen backend's options."""
        return self.options_for(self.backend)


def _step_table(name: str, backends: Mapping[str, type], default: str, *own: tuple[str, Any, Any]) -> type:
    """[<step>] with a field per backend ([<step>.<backend>]): a backend added to the step's table
    gets its options table here without another line."""
    fields: list[tuple[str, Any, Any]] = [("backend", str, field(default=default)),
                                          *((n, t, field(default=d)) for n, t, d in own)]
    fields += [(options_key(b), cls.Options, field(default_factory=cls.Options)) for b, cls in backends.items()]
    return make_dataclass(name, fields, bases=(_Step,), frozen=True)


MatteConfig = _step_table("MatteConfig", matte.BACKENDS, "plain-backdrop",
                          ("min_confidence", float, 0.5),  # below this the SKU goes to review
                          ("escalate_to", str, ""))  # a backend that cuts out again what `backend` is unsure of
DepthConfig = _step_table("DepthConfig", depth.BACKENDS, "geometric")
SceneConfig = _step_table(
    "SceneConfig", scene.BACKENDS, "procedural",
    ("fallback", tuple[str, ...], ()),  # tried in order when `backend` cannot load or runs out of memory
    ("default_prompt", str, "clean studio backdrop, soft light"),
    ("negative_prompt", str, "text, watermark, logo, people"),
    ("reference_image", str, ""),  # style reference for rows without their own (relative to the config file)
)
NsfwConfig = _step_table("NsfwConfig", nsfw.BACKENDS, "opennsfw",
                         ("threshold", float, 0.5),  # at or above: quarantined, never published
                         ("review_threshold", float, 0.3))  # at or above (below threshold): sent to review

# The tables that change pixels or provenance: their hash keys caches and records.
OUTPUT_AFFECTING = ("load", "matte", "layout", "depth", "scene", "shadow", "harmonize", "check", "safety", "nsfw",
                    "fidelity", "sign", "write", "renditions")


@dataclass(frozen=True)
class Config:
    run: RunOptions = field(default_factory=RunOptions)
    load: LoadOptions = field(default_factory=LoadOptions)
    matte: MatteConfig = field(default_factory=MatteConfig)  # type: ignore[valid-type]
    layout: LayoutOptions = field(default_factory=LayoutOptions)
    depth: DepthConfig = field(default_factory=DepthConfig)  # type: ignore[valid-type]
    scene: SceneConfig = field(default_factory=SceneConfig)  # type: ignore[valid-type]
    shadow: ShadowOptions = field(default_factory=ShadowOptions)
    harmonize: HarmonizeOptions = field(default_factory=HarmonizeOptions)
    check: CheckOptions = field(default_factory=CheckOptions)
    safety: SafetyOptions = field(default_factory=SafetyOptions)
    nsfw: NsfwConfig = field(default_factory=NsfwConfig)  # type: ignore[valid-type]
    fidelity: FidelityOptions = field(default_factory=FidelityOptions)
    sign: SignOptions = field(default_factory=SignOptions)
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    write: WriteOptions = field(default_factory=WriteOptions)
    renditions: RenditionsOptions = field(default_factory=RenditionsOptions)
    schedule: ScheduleOptions = field(default_factory=ScheduleOptions)
    storage: StorageOptions = field(default_factory=StorageOptions)
    cost: CostOptions = field(default_factory=CostOptions)  # prices only: never part of the digest
    previews: PreviewOptions = field(default_factory=PreviewOptions)  # links in the run artifacts: not in the digest
    state: StateOptions = field(default_factory=StateOptions)  # where run state lives: never part of the digest
    base_dir: str = "."  # the config file's folder: relative paths in the config resolve against it
    path: str = ""  # the file read; "" = the built-in defaults

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def origin(self) -> str:
        """Which configuration this is, as `stage run` reports it."""
        return self.path or "built-in defaults (no config file)"

    def output_location(self, out: str | os.PathLike[str] | None) -> OutputLocation:
        """Where a run writes: `out` (--out, the flow's `out`) when given, else `[run].output_dir`;
        a folder, or an object-store URL with this worker's scratch folder (`ops.location`)."""
        return output_location(out, self.run.output_dir, self.base_dir, self.run.scratch_dir)

    def local_roots(self) -> list[Path]:
        """The folders besides a catalog's own that its rows may read photos from."""
        return [self.resolve(r) for r in self.load.local_roots]

    def steps(self) -> StepOptions:
        return StepOptions(self.layout, self.shadow, self.harmonize)

    def output_affecting(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("allow_hosts", "local_roots"):  # where photos may come from, not what is made of them
            del d["load"][key]
        return {k: d[k] for k in OUTPUT_AFFECTING}

    def output_json(self) -> str:
        """The output-affecting tables as canonical JSON: what `digest` hashes, and what each image's
        credentials record so that `stage reproduce` can rebuild this configuration and check it."""
        text = self.__dict__.get("_output_json")  # frozen: computed once per instance
        if text is None:
            text = json.dumps(self.output_affecting(), sort_keys=True, default=str)
            object.__setattr__(self, "_output_json", text)
        return text

    def digest(self) -> str:
        """Hash of what makes the outputs (cache keys and records name it)."""
        return self.__dict__.get("_digest") or self._store("_digest", output_digest(self.output_json()))

    def fingerprint(self) -> str:
        """Hash of every setting: two configs with the same fingerprint run the same way."""
        return self._memo("_fingerprint", lambda: dataclasses.asdict(self))

    def _memo(self, name: str, tables: Any) -> str:
        memo = self.__dict__.get(name)  # frozen: computed once per instance (cache keys call it per row)
        if memo is None:
            memo = self._store(name, output_digest(json.dumps(tables(), sort_keys=True, default=str)))
        return memo

    def _store(self, name: str, value: str) -> str:
        object.__setattr__(self, name, value)
        return value


def output_digest(output_json: str) -> str:
    """The config digest of `Config.output_json()` text (16 hex digits)."""
    return hashlib.sha256(output_json.encode()).hexdigest()[:16]


def _validate(cfg: Config) -> None:
    """Each table's own checks, then what spans tables: backends, fallbacks, files, presets."""
    check_tables(cfg, "")
    for step, table in (("matte", matte.BACKENDS), ("depth", depth.BACKENDS), ("scene", scene.BACKENDS),
                        ("nsfw", nsfw.BACKENDS)):
        lookup(table, step, getattr(cfg, step).backend)
    if cfg.matte.escalate_to:
        lookup(matte.BACKENDS, "matte.escalate_to", cfg.matte.escalate_to)
        if cfg.matte.escalate_to == cfg.matte.backend:
            raise ConfigError(f"matte.escalate_to = {cfg.matte.escalate_to!r}: the same backend as matte.backend")
    chain = [cfg.scene.backend, *cfg.scene.fallback]
    if len(set(chain)) != len(chain):
        raise ConfigError(f"scene.fallback = {list(cfg.scene.fallback)}: repeats a backend "
                          f"(scene.backend = {cfg.scene.backend!r})")
    for name in cfg.scene.fallback:
        lookup(scene.BACKENDS, "scene", name)
    HostPolicy.parse(cfg.load.allow_hosts)
    for i, root in enumerate(cfg.local_roots()):
        if not root.is_dir():
            raise ConfigError(f"load.local_roots[{i}] = {cfg.load.local_roots[i]!r}: no such folder ({root})")
    ref = cfg.scene.reference_image
    if ref and not cfg.resolve(ref).is_file():
        raise ConfigError(f"scene.reference_image = {ref!r}: no such file ({cfg.resolve(ref)})")
    n = cfg.nsfw
    if not 0 < n.threshold <= 1:
        raise ConfigError(f"nsfw.threshold = {n.threshold}: must be in (0, 1]")
    if not 0 < n.review_threshold <= n.threshold:
        raise ConfigError(f"nsfw.review_threshold = {n.review_threshold}: must be in (0, nsfw.threshold = "
                          f"{n.threshold}]")
    known = sorted({*matte.BACKENDS, *depth.BACKENDS, *scene.BACKENDS, *nsfw.BACKENDS})
    for name in cfg.cost.api_per_call:
        if name not in known:
            raise ConfigError(f"cost.api_per_call.{name}: not a backend name; known: {known}")
    problem = _renditions_error(cfg.renditions, placement_names(cfg.layout))
    if problem:
        raise ConfigError(problem)


_PRESET_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


def _renditions_error(r: RenditionsOptions, placements: list[str]) -> str | None:
    """The first bad channel preset setting, named; None when every preset is usable."""
    if len(set(r.active)) != len(r.active):
        return f"renditions.active = {list(r.active)}: names a preset twice"
    for name in r.active:
        if name not in r.presets:
            return (f"renditions.active names {name!r}, which has no [renditions.presets.{name}] table; "
                    f"known: {sorted(r.presets)}")
    for name, p in r.presets.items():
        where = f"renditions.presets.{name}"
        if not _PRESET_NAME.fullmatch(name):
            return f"[{where}]: preset names are lower-case letters, digits, '-' and '_' (it names files)"
        if not (64 <= p.width <= 8192 and 64 <= p.height <= 8192):
            return f"{where}: {p.width}x{p.height} must be 64..8192 on each side"
        if not p.formats or len(set(p.formats)) != len(p.formats):
            return f"{where}.formats = {list(p.formats)}: name each of png, jpeg, webp at most once, at least one"
        if p.placement and p.placement not in placements:
            return f"{where}.placement = {p.placement!r}: must be one of {placements}"
        if p.background and not re.fullmatch(r"#?[0-9a-fA-F]{6}", p.background):
            return f"{where}.background = {p.background!r}: expected a colour like '#ffffff'"
    return None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a config file (None: the built-in defaults); `overrides` are nested tables
    merged on top (per-run values).

    The defaults are the dataclasses' own (each step's options live beside the step that uses them);
    the repository's `config.toml` lists the same values with their comments, and a test keeps the
    two equal. A typo or a wrong type fails the run before the first image is touched, naming the
    table, the key and the bad value.
    """
    data: dict[str, Any] = {}
    base, origin = Path(".").resolve(), ""
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {p} is a directory") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        base, origin = p.resolve().parent, str(p.resolve())
    merge_tables(data, overrides or {})
    for key in ("base_dir", "path"):
        data.pop(key, None)
    cfg = dataclasses.replace(build(Config, data, ""), base_dir=str(base), path=origin)
    _validate(cfg)
    return cfg


def default_config_path(folder: Path | None = None) -> str | None:
    """`config.toml` in `folder` (the working directory) when there is one; None means the built-in defaults."""
    candidate = (folder or Path(".")) / DEFAULT_FILE
    return str(candidate) if candidate.is_file() else None


def rebuild_config(output_json: str, local: Config) -> Config:
    """The configuration an image was made with, from the `Config.output_json()` text its credentials
    record, validated like a file's.

    Only the output-affecting tables come from the record; what is machine-local comes from `local`
    (this machine's config): where photos may be read from ([load] allow_hosts and local_roots), the
    [run], [verify], [schedule] and [state] tables, and the folder relative paths resolve against. The digest
    of the result is that of the text, so the caller can compare it with the recorded digest.
    """
    try:
        tables = json.loads(output_json)
    except ValueError as exc:
        raise ConfigError(f"the recorded configuration is not valid JSON: {exc}") from None
    if not isinstance(tables, dict) or not all(isinstance(tables.get(k), dict) for k in OUTPUT_AFFECTING):
        raise ConfigError(f"the recorded configuration must hold the tables {list(OUTPUT_AFFECTING)}")
    unknown = sorted(set(tables) - set(OUTPUT_AFFECTING))
    if unknown:
        raise ConfigError(f"the recorded configuration has unknown table(s) {unknown}")
    tables["load"] = {**tables["load"], "allow_hosts": list(local.load.allow_hosts),
                      "local_roots": list(local.load.local_roots)}
    cfg = dataclasses.replace(build(Config, tables, ""), run=local.run, verify=local.verify, schedule=local.schedule,
                              state=local.state, base_dir=local.base_dir, path=local.path)
    _validate(cfg)
    return cfg
