"""`stage reproduce`: stage a published image again from its content credentials and compare the pixels."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ops.catalog import CatalogRow
from ops.config import Config, rebuild_config
from ops.context import RunContext
from ops.paths import image_name, variant_stem
from ops.runner import process_row
from ops.sources import read_source
from ops.workbench import Workbench
from provenance.errors import SigningError
from provenance.sign import SETTINGS_LABEL, assertion_safe
from provenance.verify import load_trust_anchors, verify_file
from stages.errors import StagingError
from stages.pipeline import PIPELINE_VERSION

IDENTICAL, DIFFERENT, REFUSED = "identical", "different", "refused"


@dataclass
class Reproduction:
    """What `stage reproduce` found for one image."""

    image: str
    outcome: str  # identical | different | refused (could not be staged again; `reason` says why)
    reason: str = ""
    pixels: int = 0  # pixels compared
    differing: int = 0  # pixels with any channel different
    max_diff: int = 0  # largest |difference| of one channel, in 8-bit levels
    mean_diff: float = 0.0  # mean |difference| over every channel of every pixel
    notes: list[str] = field(default_factory=list)  # recorded settings the new staging did not repeat
    staged: str | None = None  # the new master image, when its folder is kept

    def line(self) -> str:
        """The one-line verdict the command prints."""
        if self.outcome == IDENTICAL:
            return f"identical: {self.pixels} pixels, bit for bit"
        if self.outcome == DIFFERENT:
            figures = (f"{self.differing} of {self.pixels} pixels differ, max |diff| {self.max_diff}, "
                       f"mean |diff| {self.mean_diff:.4f}")
            return f"different: {self.reason or figures}"
        return f"could not reproduce: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Refused(Exception):
    """The image cannot be staged again; the message says why."""


def reproduce(image: Path, local: Config, *, source: str | None = None, reference: str | None = None,
              out: Path | None = None) -> Reproduction:
    """Stage the product of a published master image again and compare the new pixels with its own.

    Nothing recorded is trusted before the image's credentials are verified (a tampered image is
    refused). The settings assertion then gives the catalog row, the seed and the output-affecting
    configuration; the configuration must hash to the recorded `config_digest`, the pipeline version
    must be this one, and the source photo (from the product's record beside the image, or `source`)
    must have the recorded SHA-256. The variant is staged alone, with its recorded seed, through the
    same runner as a run (`ops.runner.process_row`) into `out` (default: a temporary folder, removed
    afterwards); machine-local settings (where photos may be read from, the [sign] table that signs
    the new image) come from `local`. Only a trusted signer's settings are used: they name models
    and files to load and would otherwise let any self-signed image choose them.
    """
    result = Reproduction(str(image), REFUSED)
    try:
        settings = _verified_settings(image, local)
        cfg = _config(settings, local)
        record = _record(image)
        row = _row(settings, record, cfg, image, source, reference)
        if out is not None:
            if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
                raise _Refused(f"{out} is not a new or empty folder: reproducing there could replace published "
                               "products")
            _stage_and_compare(image, cfg, row, settings, Path(out), result)
        else:
            with tempfile.TemporaryDirectory(prefix="stage-reproduce-") as tmp:
                _stage_and_compare(image, cfg, row, settings, Path(tmp), result)
    except _Refused as exc:
        result.outcome, result.reason = REFUSED, str(exc)
    return result


def _verified_settings(image: Path, local: Config) -> dict[str, Any]:
    """The settings assertion of a master image whose credentials verify."""
    try:
        data = image.read_bytes()
        anchors, _ = load_trust_anchors(local.verify)
    except OSError as exc:
        raise _Refused(f"cannot read {image}: {exc.strerror or exc}") from None
    except SigningError as exc:
        raise _Refused(f"trust anchors: {exc}") from None
    ver = verify_file(image, anchors, data)
    if ver.manifest is None or not ver.ok:
        raise _Refused("content credentials missing or invalid (" + ("; ".join(ver.failures) or ver.state or "?")
                       + "): the image may have been edited after signing")
    if not ver.trusted:  # its settings name code to import ([sign] callback) and files to read
        raise _Refused("the image's signer is not trusted (no trust anchors: set "
                       f"${local.verify.trust_anchors_env} or run `stage keys init`)")
    found = [a.get("data") for a in ver.manifest.get("assertions", []) if a.get("label") == SETTINGS_LABEL]
    if not found or not isinstance(found[0], dict):
        raise _Refused(f"the credentials hold no {SETTINGS_LABEL} assertion: not an image this pipeline made")
    settings = found[0]
    if "master_sha256" in settings:
        variant = settings.get("variant")
        stem = variant_stem(image.parent.name, variant if isinstance(variant, int) else 0)
        raise _Refused(f"{image.name} is a format copy of a master image: reproduce the master, "
                       f"{image.parent / image_name(stem, 'png')}")
    if "preset" in settings:
        raise _Refused(f"{image.name} is a channel rendition ({settings['preset']}): reproduce its product's master "
                       f"PNG image in {image.parent}")
    if settings.get("pipeline_version") != PIPELINE_VERSION:
        raise _Refused(f"pipeline version differs: the image was made by {settings.get('pipeline_version')!r}, "
                       f"this is {PIPELINE_VERSION!r}")
    if not isinstance(settings.get("config"), str) or not isinstance(settings.get("row"), dict):
        raise _Refused("the credentials do not record the configuration and the row (the image predates "
                       "`stage reproduce`): stage it again with `stage run --force` first")
    return settings


def _config(settings: dict[str, Any], local: Config) -> Config:
    """The recorded configuration, rebuilt and checked against the recorded digest."""
    try:
        cfg = rebuild_config(settings["config"], local)
    except StagingError as exc:
        raise _Refused(f"the configuration cannot be rebuilt: {exc}") from None
    if cfg.digest() != settings.get("config_digest"):
        raise _Refused(f"the configuration cannot be rebuilt: its digest is {cfg.digest()}, the credentials "
                       f"record {settings.get('config_digest')!r}")
    # Signing is this machine's: its keys, KMS callback and timestamp authority (they change no pixel).
    return dataclasses.replace(cfg, sign=local.sign)


def _record(image: Path) -> dict[str, Any]:
    """The product's JSON record beside the image (not signed: it only says where the source photo was)."""
    try:
        record = json.loads((image.parent / f"{image.parent.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _row(settings: dict[str, Any], record: dict[str, Any], cfg: Config, image: Path, source: str | None,
         reference: str | None) -> CatalogRow:
    """The catalog row that stages this variant alone: the recorded row with the variant's seed."""
    recorded = record.get("source")
    if source is None:
        if not isinstance(recorded, str) or not recorded:
            raise _Refused(f"no product record beside {image.name} names the source photo: give it with --source")
        source = recorded if "://" in recorded else str((image.parent / recorded).resolve())
    try:
        data = read_source(source, cfg.load)
    except StagingError as exc:
        raise _Refused(f"source photo missing: {exc} (give it with --source)") from None
    sha = hashlib.sha256(data).hexdigest()
    if sha != settings.get("source_sha256"):
        raise _Refused(f"source photo changed: {source} has SHA-256 {sha}, the credentials record "
                       f"{settings.get('source_sha256')}")
    fields = settings["row"]
    try:
        return CatalogRow(
            row=record.get("row") if isinstance(record.get("row"), int) else 0, sku=_str(settings.get("sku"), "sku"),
            image=source, title=_str(fields.get("title"), "row.title"),
            category=_str(fields.get("category"), "row.category"),
            scene_prompt=_str(fields.get("scene_prompt", ""), "row.scene_prompt"),
            negative_prompt=_str(fields.get("negative_prompt", ""), "row.negative_prompt"),
            seed=_int(settings.get("seed"), "seed"), variants=1,
            reference_image=_reference(settings.get("reference_image"), cfg, Path(source).parent, reference),
            placement=_str(fields.get("placement", ""), "row.placement"))
    except TypeError as exc:
        raise _Refused(f"the credentials' settings are malformed: {exc}") from None


def _reference(recorded: Any, cfg: Config, source_folder: Path, given: str | None) -> str:
    """The style reference the image was made with, found by its recorded SHA-256: `given`, else the
    config's [scene].reference_image, else a file of the recorded name beside the source photo."""
    if recorded is None:
        return ""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), str):
        raise _Refused(f"the credentials' reference_image is malformed: {recorded!r}")
    name = Path(str(recorded.get("name", ""))).name
    candidates = [Path(given)] if given else []
    if cfg.scene.reference_image:
        candidates.append(cfg.resolve(cfg.scene.reference_image))
    if name and "://" not in str(source_folder):
        candidates.append(source_folder / name)
    for path in candidates:
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() == recorded["sha256"]:
                return str(path.resolve())
        except OSError:
            continue
    tried = ", ".join(str(p) for p in candidates) or "none"
    raise _Refused(f"style reference {name!r} (SHA-256 {recorded['sha256']}) not found (tried: {tried}): "
                   "give it with --reference")


def _stage_and_compare(image: Path, cfg: Config, row: CatalogRow, settings: dict[str, Any], out: Path,
                       result: Reproduction) -> None:
    try:
        bench = Workbench.build(cfg)
    except Exception as exc:  # a missing model, unusable signing keys, a library error: one line, no traceback
        raise _Refused(f"the backends cannot be loaded: {type(exc).__name__}: {exc}") from None
    done = process_row(bench, row, RunContext(out.resolve(), f"reproduce-{uuid.uuid4().hex[:12]}", force=True))
    if done.output is None:
        why = done.error or "; ".join(done.reasons) or done.status
        raise _Refused(f"staging again did not publish an image ({done.status}: {why})")
    staged = out.resolve() / done.output
    result.staged = str(staged)
    try:
        new_record = json.loads((out.resolve() / done.record).read_text(encoding="utf-8")) if done.record else {}
    except (OSError, ValueError):
        new_record = {}
    scene = (new_record.get("variants") or [{}])[0].get("scene")
    if scene is not None and assertion_safe(scene) != settings.get("scene"):
        was = settings.get("scene") or {}
        changed = sorted(k for k in set(was) | set(assertion_safe(scene)) if was.get(k) != assertion_safe(scene).get(k))
        result.notes.append(f"scene settings differ from the recorded ones: {', '.join(changed)}")
    compare_pixels(image.read_bytes(), staged.read_bytes(), result)


def compare_pixels(published: bytes, staged: bytes, result: Reproduction) -> None:
    """Fill `result` with the decoded pixels' comparison (the credentials chunk is not pixel data)."""
    with Image.open(io.BytesIO(published)) as a, Image.open(io.BytesIO(staged)) as b:
        if a.size != b.size or a.mode != b.mode:
            result.outcome = DIFFERENT
            result.reason = f"the published image is {a.size[0]}x{a.size[1]} {a.mode}, the new one " \
                            f"{b.size[0]}x{b.size[1]} {b.mode}"
            return
        old, new = np.asarray(a), np.asarray(b)
    diff = np.abs(old.astype(np.int16) - new.astype(np.int16))
    per_pixel = diff.reshape(diff.shape[0], diff.shape[1], -1).max(axis=2)
    result.pixels = int(per_pixel.size)
    result.differing = int(np.count_nonzero(per_pixel))
    result.max_diff = int(diff.max()) if diff.size else 0
    result.mean_diff = float(diff.mean()) if diff.size else 0.0
    result.outcome = IDENTICAL if result.differing == 0 else DIFFERENT


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} = {value!r}: expected text")
    return value


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} = {value!r}: expected a whole number")
    return value
