"""Is a product's output current? Its cache key, and the one test of a record and its files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from ops.catalog import CatalogRow
from ops.config import Config
from ops.paths import channel_name, image_name
from stages.pipeline import PIPELINE_VERSION


def cache_key(row: CatalogRow, source_sha256: str, config_digest: str, reference_sha256: str = "") -> str:
    """Hash of everything that makes the output: a new photo or style reference under the same
    file name changes it as surely as a changed row, config or pipeline version."""
    fields = {k: v for k, v in row.to_dict().items() if k not in ("row", "image", "reference_image")}
    blob = json.dumps([fields, source_sha256, reference_sha256, config_digest, PIPELINE_VERSION], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def published_files(record: dict[str, Any]) -> list[str]:
    """Every file a record says its product published: the master, its format copies, its channel renditions."""
    return [record["output"]] + [
        r["output"] for r in (record.get("format_copies") or []) + (record.get("renditions") or []) if r.get("output")
    ]


def cached_record(record_path: Path, key: str) -> dict[str, Any] | None:
    """The product's record when it was made with cache key `key` by the configured scene backend
    and every file it published is still there; else None."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return current_record(record, key, lambda name: (record_path.parent / name).is_file())


def current_record(record: Any, key: str, present: Callable[[str], bool]) -> dict[str, Any] | None:
    """`record` when it was made with cache key `key` by the configured scene backend and every file
    it published is `present` (names relative to the record's folder); else None."""
    if not isinstance(record, dict) or record.get("cache_key") != key or not record.get("output"):
        return None
    if record.get("scene_fallback"):  # made by a fallback backend: try the configured one again
        return None
    if not all(present(name) for name in published_files(record)):
        return None
    return record


def outputs_present(out_root: Path, output: str, cfg: Config, exists: Callable[[str], bool] | None = None) -> bool:
    """Whether every file a passed product publishes is still there: the master, its format copies
    and each active channel rendition (names follow from the config, so nothing is read).
    `exists` tests a name relative to the output root (default: a file under `out_root`)."""
    master = PurePosixPath(output)
    folder = master.parent
    names = [master.name] + [image_name(master.stem, f) for f in cfg.write.format_copies]
    for name in cfg.renditions.active:
        names += [channel_name(folder.name, name, f) for f in cfg.renditions.presets[name].formats]
    exists = exists or (lambda rel: (out_root / rel).is_file())
    return all(exists(str(folder / n)) for n in names)
