"""Catalog CSV validation: the whole file is checked before any product is processed.

A bad row is reported (row number, SKU, reason) and skipped; only a file that cannot be read
at all, or that lacks a required column, stops the run.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from stages.errors import CatalogError

REQUIRED = ("sku", "image", "title", "category")
OPTIONAL = ("scene_prompt", "negative_prompt", "seed", "variants")
MAX_SKU_LEN = 128
MAX_TEXT_LEN = 2000
MAX_SEED = 2**32 - 1
MAX_FILE_BYTES = 200_000_000


@dataclass(frozen=True)
class CatalogRow:
    row: int  # 1-based line number in the CSV (the header is line 1)
    sku: str
    image: str  # absolute local path or http(s) URL
    title: str
    category: str
    scene_prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    variants: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RowError:
    row: int
    sku: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Catalog:
    path: str
    rows: list[CatalogRow]
    errors: list[RowError]
    warnings: list[str]


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _resolve_image(value: str, base: Path) -> str:
    parsed = urlparse(value)
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc:
            raise ValueError(f"image URL has no host: {value!r}")
        return value
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive
        raise ValueError(f"image must be a file path or an http(s) URL, not {parsed.scheme}:")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise ValueError(f"photo not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"photo is empty (0 bytes): {path}")
    return str(path.resolve())


def _parse_int(value: str, name: str, lo: int, hi: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a whole number") from None
    if not lo <= number <= hi:
        raise ValueError(f"{name} {number} is outside {lo}..{hi}")
    return number


def _read_frame(path: Path) -> pd.DataFrame:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CatalogError(f"catalog not found: {path}") from None
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise CatalogError(f"catalog {path} is {len(raw)} bytes, over the {MAX_FILE_BYTES} byte limit")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"catalog {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if not text.strip():
        raise CatalogError(f"catalog {path} is empty")
    try:
        return pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=False,
            quoting=csv.QUOTE_MINIMAL, on_bad_lines="error", engine="python",
        )
    except (pd.errors.ParserError, csv.Error) as exc:
        raise CatalogError(f"catalog {path} is not valid CSV: {exc}") from None


def read_catalog(path: str | Path, max_variants: int = 8) -> Catalog:
    """Parse and validate every row; images are checked for existence here, decoded later."""
    path = Path(path)
    frame = _read_frame(path)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise CatalogError(f"catalog {path} lacks required column(s) {missing}; found {list(frame.columns)}")
    warnings = []
    extra = [c for c in frame.columns if c not in REQUIRED + OPTIONAL]
    if extra:
        warnings.append(f"ignored unknown column(s) {extra}")
    base = path.resolve().parent
    rows: list[CatalogRow] = []
    errors: list[RowError] = []
    first_row_of: dict[str, int] = {}
    for idx, rec in enumerate(frame.to_dict("records")):
        line = idx + 2
        sku = str(rec.get("sku", "")).strip()
        try:
            if not sku:
                raise ValueError("SKU is empty")
            if len(sku) > MAX_SKU_LEN:
                raise ValueError(f"SKU is {len(sku)} characters, over {MAX_SKU_LEN}")
            if _has_control_chars(sku):
                raise ValueError("SKU contains control characters")
            if sku in first_row_of:
                raise ValueError(f"duplicate SKU (first seen on row {first_row_of[sku]})")
            first_row_of[sku] = line
            fields = {k: str(rec.get(k, "")).strip() for k in ("image", "title", "category", *OPTIONAL)}
            for name, value in fields.items():
                if len(value) > MAX_TEXT_LEN:
                    raise ValueError(f"{name} is {len(value)} characters, over {MAX_TEXT_LEN}")
                if _has_control_chars(value):
                    raise ValueError(f"{name} contains control characters")
            if not fields["image"]:
                raise ValueError("image is empty")
            for name in ("title", "category"):
                if not fields[name]:
                    raise ValueError(f"{name} is empty")
            image = _resolve_image(fields["image"], base)
            seed = _parse_int(fields["seed"], "seed", 0, MAX_SEED) if fields["seed"] else None
            variants = (
                _parse_int(fields["variants"], "variants", 1, max_variants) if fields["variants"] else 1
            )
        except ValueError as exc:
            errors.append(RowError(row=line, sku=sku, reason=str(exc)))
            continue
        rows.append(
            CatalogRow(
                row=line, sku=sku, image=image, title=fields["title"], category=fields["category"],
                scene_prompt=fields["scene_prompt"], negative_prompt=fields["negative_prompt"],
                seed=seed, variants=variants,
            )
        )
    if not rows and not errors:
        raise CatalogError(f"catalog {path} has a header but no rows")
    return Catalog(path=str(path.resolve()), rows=rows, errors=errors, warnings=warnings)
