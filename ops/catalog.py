"""Catalog validation: the whole file is checked before any product is processed; a run then streams the rows."""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import urlparse

from ops.catalog_files import CatalogFile, load_catalog_file
from ops.errors import CatalogError
from ops.fetch import shown

REQUIRED = ("sku", "image", "title", "category")
OPTIONAL = ("scene_prompt", "negative_prompt", "seed", "variants", "reference_image", "placement")
MAX_SKU_LEN = 128
MAX_TEXT_LEN = 2000
MAX_SEED = 2**32 - 1
SHOWN_SKU_LEN = 80  # a SKU quoted in an error is cut to this many characters
# Characters that have no business in a SKU: controls, format characters (zero-width, bidi
# overrides), undecodable bytes, private-use and unassigned code points, line separators.
_BAD_SKU_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}

@dataclass(frozen=True, slots=True)
class CatalogRow:
    row: int  # the row the user sees: CSV line, spreadsheet row, Parquet record + 1 (the header is row 1)
    sku: str
    image: str  # absolute local path or http(s) URL
    title: str
    category: str
    scene_prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    variants: int = 1
    reference_image: str = ""  # absolute local path of a style reference, or empty
    placement: str = ""  # a placement mode or [layout.presets] name (checked against the config per row)

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


@dataclass(frozen=True)
class CatalogScan:
    """A checked catalog without its rows: errors, warnings, how many rows are valid, and `rows()`.

    `rows()` reads the file again and yields the valid rows one at a time (the same rows, in
    order, that `read_catalog` lists), so a run holds a chunk of rows, not the catalog."""

    path: str
    errors: list[RowError]
    warnings: list[str]
    valid: int  # valid rows that `rows()` yields (those `keep` accepted)
    reread: Callable[[list[RowError]], Iterator[CatalogRow]] = field(compare=False, repr=False)
    # rows that were valid when checked but not when read again (a photo deleted since): `rows()` adds them
    late: list[RowError] = field(default_factory=list, compare=False)

    def rows(self) -> Iterator[CatalogRow]:
        return self.reread(self.late)


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _codepoints(chars: list[str]) -> str:
    return ", ".join(dict.fromkeys(f"U+{ord(ch):04X}" for ch in chars))


def _undecodable(text: str) -> bytes:
    """The raw bytes that were not UTF-8 (kept as lone surrogates by the decoder)."""
    return bytes(ord(ch) - 0xDC00 for ch in text if 0xDC80 <= ord(ch) <= 0xDCFF)


def shown_sku(sku: str) -> str:
    """A SKU as it may appear in messages and reports: valid text, bounded length."""
    text = sku.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if len(text) > SHOWN_SKU_LEN:
        text = f"{text[:SHOWN_SKU_LEN]}… ({len(text)} characters)"
    return text


def _check_sku(sku: str) -> None:
    if not sku:
        raise ValueError("SKU is empty")
    if len(sku) > MAX_SKU_LEN:
        raise ValueError(f"SKU is {len(sku)} characters, over {MAX_SKU_LEN}")
    controls = [ch for ch in sku if unicodedata.category(ch) == "Cc"]
    if controls:
        raise ValueError(f"SKU contains control characters ({_codepoints(controls)})")
    hidden = [ch for ch in sku if unicodedata.category(ch) in _BAD_SKU_CATEGORIES]
    if hidden:
        raise ValueError(f"SKU contains invisible or non-printing characters ({_codepoints(hidden)})")


def _inside(path: Path, what: str, value: str, base: Path | None, roots: Sequence[Path]) -> str:
    """`path` resolved (symlinks and '..' followed), when it lies under one of `roots`; else why not.

    Catalogs come from suppliers: a row must not make a worker read a file from another client's
    folder or the system (a link in the catalog's folder pointing outside it counts as outside)."""
    real = path.resolve()
    if not any(real.is_relative_to(root) for root in roots):
        via = f" (it resolves to {real})" if real != path.absolute() else ""
        if base is None:
            allowed = "[load] local_roots (the catalog is not on this machine)"
        else:
            allowed = f"the catalog's own folder{' and [load] local_roots' if len(roots) > 1 else ''}"
        raise ValueError(f"{what} {value!r}{via} is outside the folders a catalog may read: {allowed}; add its "
                         "folder to [load] local_roots to allow it")
    return str(real)


def _local_file(value: str, what: str, base: Path | None, roots: Sequence[Path]) -> str:
    """A local file named by a row, relative to the catalog or absolute, inside the allowed folders.

    A catalog read from a URL has no folder on this machine: a relative path in it names nothing
    that may be read (resolving it against the URL would let a row reach what the catalog's own
    storage holds), so such a row fails, asking for an absolute path or an http(s) URL."""
    try:
        path = Path(value).expanduser()
        if base is None and not path.is_absolute():
            raise ValueError(f"{what} {value!r} is a relative path, but the catalog is not on this machine: give "
                             "an absolute path inside [load] local_roots, or an http(s) URL")
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ValueError(f"{what} not found: {path}")
        real = _inside(path, what, value, base, roots)
        if Path(real).stat().st_size == 0:
            raise ValueError(f"{what} is empty (0 bytes): {path}")
        return real
    except RuntimeError:  # "~user" with no such user
        raise ValueError(f"{what} path cannot be resolved: {value}") from None
    except OSError as exc:  # name too long, permission denied on a parent folder, ...
        raise ValueError(f"{what} cannot be accessed: {value} ({exc.strerror or exc})") from None


def _resolve_reference(value: str, base: Path | None, roots: Sequence[Path]) -> str:
    """A style reference: a local file, relative to the catalog or absolute (decoded later)."""
    if "://" in value:
        raise ValueError(f"reference_image must be a local file path, not a URL: {shown(value)!r}")
    return _local_file(value, "reference_image", base, roots)


def _resolve_image(value: str, base: Path | None, roots: Sequence[Path]) -> str:
    parsed = urlparse(value)
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise ValueError(f"image URL has no host: {shown(value)!r}")
        if parsed.username is not None or parsed.password is not None:
            raise ValueError(f"image URL {shown(value)!r} carries credentials (user:password@): put them in the "
                             "image server's configuration, never in a catalog")
        return value
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive
        raise ValueError(f"image must be a file path or an http(s) URL, not {parsed.scheme}:")
    return _local_file(value, "photo", base, roots)


def _parse_int(value: str, name: str, lo: int, hi: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a whole number") from None
    if not lo <= number <= hi:
        raise ValueError(f"{name} {number} is outside {lo}..{hi}")
    return number


def _check_placement(value: str) -> str:
    """A placement name (the config decides which exist, per row, in stages.layout)."""
    name = value.strip().lower()
    if name and not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", name):
        raise ValueError(f"placement {value!r} is not a placement name (letters, digits, '-' and '_')")
    return name


def _header(fields: list[str], file: CatalogFile) -> list[str]:
    path = file.name
    names = [f.strip().lower() for f in fields]
    if _undecodable("".join(names)):
        raise file.not_utf8()
    known = [n for n in names if n in REQUIRED + OPTIONAL]
    twice = sorted({n for n in known if known.count(n) > 1})
    if twice:
        raise CatalogError(f"catalog {path} has column(s) {twice} more than once")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise CatalogError(f"catalog {path} lacks required column(s) {missing}; found {names}")
    return names


def read_catalog(path: str | Path, max_variants: int = 8, local_roots: Sequence[str | Path] = (),
                 sheet: str | None = None) -> Catalog:
    """Parse and validate every row; images are checked for existence here, decoded later.

    `path` is a CSV, XLSX or Parquet file, local or an fsspec URL (ops.catalog_files reads it;
    `sheet` picks a workbook's worksheet); every format goes through the same row checks, and
    rows are numbered as the user sees them. Local photos and references must lie under the
    catalog's own folder or one of `local_roots` ([load] local_roots, resolved against the
    config file); a catalog that is not on this machine has no folder, only `local_roots`.

    A bad row is reported (row number, SKU, reason) and skipped; only a file that cannot be read
    at all, or that lacks a required column, stops the run. Catalogs come from merchants and
    spreadsheets, so every cell is treated as hostile: bytes that are not UTF-8, ragged rows,
    huge cells, control or invisible characters and SKUs that differ only by Unicode look-alike
    forms are reported per row instead of stopping the run or reaching a file name.
    """
    rows: list[CatalogRow] = []
    file, _, errors, warnings = _check(path, max_variants, local_roots, sheet, rows.append)
    return Catalog(path=file.location, rows=rows, errors=errors, warnings=warnings)


def scan_catalog(path: str | Path, max_variants: int = 8, local_roots: Sequence[str | Path] = (),
                 sheet: str | None = None, keep: Callable[[CatalogRow], bool] | None = None) -> CatalogScan:
    """`read_catalog`'s checks and errors, keeping no valid row: `rows()` streams them afterwards.

    The checks need the whole file (a duplicate SKU may come last), so the file is checked once,
    holding only the errors and the SKUs seen so far (dropped when the check ends), and read again
    by `rows()`, which parses each row with the same checks and skips the rows found bad (by row
    number; a local file changed in between fails that read). A 50,000-row catalog's rows would
    otherwise stay in memory for the whole run. `keep` picks rows (a shard's): the others are
    neither counted nor yielded.
    """
    valid = 0

    def count(row: CatalogRow) -> None:
        nonlocal valid
        valid += keep is None or keep(row)

    file, columns, errors, warnings = _check(path, max_variants, local_roots, sheet, count, stream=True)
    bad = frozenset(e.row for e in errors)
    base, roots, reread = file.base, _roots(file.base, local_roots), file.reread
    assert reread is not None

    def rows(late: list[RowError]) -> Iterator[CatalogRow]:  # holds the file's name and folder, not its records
        parse = _RowParser(columns, base, roots, max_variants, unique=False)
        for line, cells in itertools.islice(reread(), 1, None):
            if line in bad:
                continue
            try:
                row = parse.row(line, cells)
            except ValueError as exc:
                late.append(RowError(row=line, sku=shown_sku(parse.sku), reason=str(exc)))
                continue
            if keep is None or keep(row):
                yield row

    return CatalogScan(path=file.location, errors=errors, warnings=warnings, valid=valid, reread=rows)


def _roots(base: Path | None, local_roots: Sequence[str | Path]) -> list[Path]:
    return [*([base] if base else []), *(Path(r).expanduser().resolve() for r in local_roots)]


def _check(path: str | Path, max_variants: int, local_roots: Sequence[str | Path], sheet: str | None,
           valid: Callable[[CatalogRow], None],
           stream: bool = False) -> tuple[CatalogFile, list[str], list[RowError], list[str]]:
    """Check every row, handing each valid one to `valid`: (the file, its columns, the bad rows, warnings)."""
    file = load_catalog_file(path, sheet, stream)
    records = iter(file.records)
    if (first := next(records, None)) is None:  # a streamed CSV of blank lines only
        raise CatalogError(f"catalog {file.name} is empty")
    columns = _header(first[1], file)
    warnings = []
    extra = [c for c in columns if c and c not in REQUIRED + OPTIONAL]
    if extra:
        warnings.append(f"ignored unknown column(s) {extra}")
    if "" in columns:
        warnings.append(f"ignored {columns.count('')} column(s) without a name")
    parse = _RowParser(columns, file.base, _roots(file.base, local_roots), max_variants)
    errors: list[RowError] = []
    good = 0
    for line, cells in records:
        try:
            row = parse.row(line, cells)
        except ValueError as exc:
            errors.append(RowError(row=line, sku=shown_sku(parse.sku), reason=str(exc)))
            continue
        good += 1
        valid(row)
    if not good and not errors:
        raise CatalogError(f"catalog {file.name} has a header but no rows")
    if not good and parse.undecodable_rows == len(errors):  # no row is UTF-8: the file is in another encoding
        raise file.not_utf8()
    return file, columns, errors, warnings


class _RowParser:
    """Turns a catalog's records into rows one by one, remembering the SKUs seen so far."""

    def __init__(self, columns: list[str], base: Path | None, roots: list[Path], max_variants: int,
                 unique: bool = True) -> None:
        self.columns, self.base, self.roots, self.max_variants = columns, base, roots, max_variants
        self.unique = unique  # False: the rows were checked for duplicates before (`scan_catalog`)
        self.first_row_of: dict[str, int] = {}
        self.first_form_of: dict[str, tuple[str, int]] = {}  # NFKC form -> (SKU, row)
        self.undecodable_rows = 0
        self.sku = ""  # of the row being parsed, for its error

    def row(self, line: int, cells: list[str]) -> CatalogRow:
        """The row on `line`; ValueError saying what is wrong with it."""
        columns = self.columns
        rec = {name: cells[i] for i, name in enumerate(columns) if name and i < len(cells)}
        extra_cells = cells[len(columns):]  # empty ones are tolerated: spreadsheets add them
        self.sku = sku = rec.get("sku", "").strip()
        named = [(name, _undecodable(value)) for name, value in rec.items()]
        bad_bytes = [(n, b) for n, b in named + [("an extra field", _undecodable("".join(extra_cells)))] if b]
        if bad_bytes:
            self.undecodable_rows += 1
            name, raw = bad_bytes[0]
            raise ValueError(f"{name} is not UTF-8 text (byte 0x{raw[0]:02x}); save the catalog as UTF-8")
        if len(cells) < len(columns) or any(c.strip() for c in extra_cells):
            raise ValueError(f"row has {len(cells)} fields but the header has {len(columns)} "
                             "(a missing field, or an unquoted comma in a value?)")
        self._unique(sku, line)
        fields = {k: rec.get(k, "").strip() for k in ("image", "title", "category", *OPTIONAL)}
        for name, value in fields.items():
            if len(value) > MAX_TEXT_LEN:
                raise ValueError(f"{name} is {len(value)} characters, over {MAX_TEXT_LEN}")
            if _has_control_chars(value):
                raise ValueError(f"{name} contains control characters")
        for name in ("image", "title", "category"):
            if not fields[name]:
                raise ValueError(f"{name} is empty")
        return CatalogRow(
            row=line, sku=sku, image=_resolve_image(fields["image"], self.base, self.roots), title=fields["title"],
            category=fields["category"], scene_prompt=fields["scene_prompt"],
            negative_prompt=fields["negative_prompt"],
            seed=_parse_int(fields["seed"], "seed", 0, MAX_SEED) if fields["seed"] else None,
            variants=_parse_int(fields["variants"], "variants", 1, self.max_variants) if fields["variants"] else 1,
            reference_image=(_resolve_reference(fields["reference_image"], self.base, self.roots)
                             if fields["reference_image"] else ""),
            placement=_check_placement(fields["placement"]),
        )

    def _unique(self, sku: str, line: int) -> None:
        """A valid SKU not seen before, also not as a Unicode look-alike of one."""
        _check_sku(sku)
        if not self.unique:
            return
        if sku in self.first_row_of:
            raise ValueError(f"duplicate SKU (first seen on row {self.first_row_of[sku]})")
        self.first_row_of[sku] = line
        form = unicodedata.normalize("NFKC", sku)
        if form in self.first_form_of:
            other, other_row = self.first_form_of[form]
            raise ValueError(f"duplicate SKU: same as {other!r} (row {other_row}) after Unicode "
                             "normalisation (NFKC); look-alike SKUs are ambiguous")
        self.first_form_of[form] = (sku, line)
