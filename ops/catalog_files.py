"""Reading a catalog file (CSV, XLSX or Parquet; a local path or an fsspec URL) into numbered records of text."""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import math
import numbers
import os
import re
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from ops.errors import CatalogError
from ops.fetch import shown

MAX_FILE_BYTES = 200_000_000  # the file as stored, every format
MAX_UNPACKED_BYTES = 1_000_000_000  # what an XLSX unzips to, or a Parquet file decompresses to
MAX_RECORDS = 1_000_000  # data rows of an XLSX sheet or a Parquet file
MAX_COLUMNS = 100  # XLSX cells right of this column, and Parquet files with more columns, are refused or ignored
FORMATS = {".csv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".parquet": "parquet", ".pq": "parquet"}
_NAMES = {"csv": "CSV file", "xlsx": "XLSX workbook", "parquet": "Parquet file"}
_ZIP_MAGIC, _PARQUET_MAGIC = b"PK\x03\x04", b"PAR1"
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_FIELD_LIMIT_LOCK = threading.Lock()

Record = tuple[int, list[str]]  # (row number as the user sees it, cells as text)


@dataclass(frozen=True)
class CatalogFile:
    """A catalog's records, the first being the header, and where relative paths in it point."""

    name: str  # for messages: the path as given, or the URL without credentials or query
    location: str  # recorded in reports: the resolved local path, or the URL as shown
    base: Path | None  # the catalog's folder, or None for a catalog that is not on the local disk
    kind: str  # "csv", "xlsx" or "parquet"
    records: list[Record] | Iterator[Record]  # with `stream`, a CSV's records as they are read
    bad_byte: int | None = None  # CSV: offset of the first byte that is not UTF-8, if any
    # the same records read again, one at a time, without holding them all (`stream=True`)
    reread: Callable[[], Iterator[Record]] | None = field(default=None, compare=False, repr=False)

    def not_utf8(self) -> CatalogError:
        where = f" (byte {self.bad_byte})" if self.bad_byte is not None else ""
        return CatalogError(f"catalog {self.name} is not UTF-8 text{where}; save it as UTF-8")


def load_catalog_file(source: str | Path, sheet: str | None = None, stream: bool = False) -> CatalogFile:
    """The records of a catalog, read by the reader its suffix names (by its first bytes for other suffixes).

    `source` is a local path, a file:// URL, or any other URL fsspec reads (s3://, gs://, memory://,
    ... with the filesystem package installed). http(s) and chained URLs are refused: fsspec's http
    client would bypass the address rules photo fetches obey. Every format is limited to
    MAX_FILE_BYTES, checked before parsing; `sheet` picks an XLSX worksheet (default: the first).

    With `stream`, the file's `reread()` gives the same records again one at a time, so a run can
    go through a large catalog without holding it (see `_rereader`).
    """
    name, location, base, data = _read_source(source)
    kind = _kind(name, data)
    if sheet is not None and kind != "xlsx":
        raise CatalogError(f"catalog {name} is a {_NAMES[kind]}: a sheet ({sheet!r}) applies only to XLSX workbooks")
    bad_byte = None
    reread = _rereader(kind, name, location if base is not None else None, data, sheet) if stream else None
    if kind == "csv":
        text = _csv_text(data, name)
        if match := _UNDECODABLE.search(text):
            bad_byte = len(text[:match.start()].encode("utf-8", "surrogateescape"))
        if reread is not None:  # checked as read again: the text and its records are not all held at once
            return CatalogFile(name, location, base, kind, reread(), bad_byte, reread)
        records = list(_csv_iter(_lines(text), name, len(text) + 1))
    elif kind == "xlsx":
        records = list(_xlsx_iter(data, name, sheet))
    else:
        records = list(_parquet_iter(data, name))
    if kind != "csv":  # a table has no ragged rows: missing cells at a row's end are empty cells
        records = list(_padded(records))
    if not records:
        raise CatalogError(f"catalog {name} is empty")
    return CatalogFile(name, location, base, kind, records, bad_byte, reread)


def _padded(records: Iterable[Record]) -> Iterator[Record]:
    """Every record as wide as the first (the header)."""
    width = None
    for n, cells in records:
        width = len(cells) if width is None else width
        yield n, cells + [""] * (width - len(cells))


def _rereader(kind: str, name: str, local: str | None, data: bytes, sheet: str | None) -> Callable[[], Iterator[Record]]:
    """A function that reads the records again, one at a time, through the same parser.

    A local CSV is read again from its file (the bytes are not kept; a file changed since it was
    checked fails the read, naming it); a CSV from a URL is spooled to an unnamed temporary file
    once; a workbook or Parquet file, compressed, is kept as bytes and parsed again row by row.
    """
    if kind == "xlsx":
        return lambda: _padded(_xlsx_iter(data, name, sheet))
    if kind == "parquet":
        return lambda: _padded(_parquet_iter(data, name))
    if local is not None:
        st = os.stat(local)

        def from_file() -> Iterator[Record]:
            now = os.stat(local)
            if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise CatalogError(f"catalog {name} changed while the run was reading it; run again")
            with open(local, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
                yield from _csv_iter(fh, name, MAX_FILE_BYTES + 1)
        return from_file
    spool = tempfile.TemporaryFile()
    spool.write(data)

    def from_spool() -> Iterator[Record]:
        spool.seek(0)
        fh = io.TextIOWrapper(spool, encoding="utf-8-sig", errors="surrogateescape", newline="")
        try:
            yield from _csv_iter(fh, name, MAX_FILE_BYTES + 1)
        finally:
            fh.detach()  # the spool stays open for the next read
    return from_spool


def _read_source(source: str | Path) -> tuple[str, str, Path | None, bytes]:
    """(name, location, folder, bytes) of a local file or an fsspec URL, no more than MAX_FILE_BYTES."""
    text = str(source)
    parts = urlsplit(text) if isinstance(source, str) else None
    scheme = parts.scheme.lower() if parts else ""
    if parts and scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise CatalogError(f"catalog {shown(text)}: a file:// URL must name a file on this machine")
        source, scheme = Path(unquote(parts.path)), ""
    if len(scheme) > 1 and not Path(text).exists():  # one letter is a Windows drive; "a:b.csv" may be a file
        return shown(text), shown(text), None, _read_url(text)
    path = Path(source)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise CatalogError(f"catalog {path} is a directory, not a catalog file")
        if size > MAX_FILE_BYTES:
            raise CatalogError(f"catalog {path} is {size} bytes, over the {MAX_FILE_BYTES} byte limit")
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # a file that grew since stat, or a device
    except FileNotFoundError:
        raise CatalogError(f"catalog not found: {path}") from None
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CatalogError(f"catalog {path} is over the {MAX_FILE_BYTES} byte limit")
    return str(path), str(path.resolve()), path.resolve().parent, data


def _read_url(url: str) -> bytes:
    name = shown(url)
    if urlsplit(url).scheme.lower() in ("http", "https") or "::" in url:  # a chain ("simplecache::http://") too
        raise CatalogError(f"catalog {name}: http(s) catalogs and chained URLs are not read (download the file "
                           "first, or keep it in object storage: s3://, gs://, ...)")
    import fsspec

    try:
        with fsspec.open(url, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise CatalogError(f"catalog not found: {name}") from None
    except ImportError as exc:  # the filesystem's package (s3fs, gcsfs, ...) is not installed
        raise CatalogError(f"catalog {name} cannot be read: {exc}") from None
    except Exception as exc:  # no such protocol, no credentials, access denied, network failure, ... (per backend)
        raise CatalogError(f"cannot read catalog {name}: {type(exc).__name__}: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CatalogError(f"catalog {name} is over the {MAX_FILE_BYTES} byte limit")
    return data


def _kind(name: str, data: bytes) -> str:
    suffix = PurePosixPath(urlsplit(name).path if "://" in name else name).suffix.lower()
    if suffix == ".xls":
        raise CatalogError(f"catalog {name} is an old-style .xls workbook: save it as .xlsx")
    if suffix in FORMATS:
        return FORMATS[suffix]
    if data.startswith(_ZIP_MAGIC):
        return "xlsx"
    if data.startswith(_PARQUET_MAGIC) and data.endswith(_PARQUET_MAGIC):
        return "parquet"
    return "csv"


def _csv_text(raw: bytes, name: str) -> str:
    """The file as text; bytes that are not UTF-8 survive as lone surrogates and are reported per row."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CatalogError(f"catalog {name} is UTF-16 text; save it as UTF-8")
    text = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8", "surrogateescape")
    if not text.strip():
        raise CatalogError(f"catalog {name} is empty")
    return text


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lines(text: str) -> Iterator[str]:
    """The lines of `text` with their endings, split where io.StringIO(text, newline="") splits them
    (\n, \r, \r\n), one at a time: StringIO would first copy the whole file at 4 bytes a character."""
    return (m.group() for m in _LINE.finditer(text))


def _csv_iter(lines: Iterable[str], name: str, limit: int, chunk: int = 1000) -> Iterator[Record]:
    """(first line number, fields) of every non-blank record, read `chunk` records at a time.

    The csv module refuses fields over 128 KiB; a huge cell must be one bad row, not a bad
    file, so the module-wide limit is raised to `limit` while a chunk is parsed, then restored
    (between chunks, while the caller works on the records, other readers have the module).
    """
    reader = csv.reader(lines, quoting=csv.QUOTE_MINIMAL)
    line, done = 1, False
    while not done:
        got: list[Record] = []
        with _FIELD_LIMIT_LOCK:
            old = csv.field_size_limit()
            csv.field_size_limit(max(old, limit))
            try:
                for fields in reader:
                    start, line = line, reader.line_num + 1
                    if any(f.strip() for f in fields):
                        got.append((start, fields))
                        if len(got) >= chunk:
                            break
                else:
                    done = True
            except csv.Error as exc:
                raise CatalogError(f"catalog {name} is not valid CSV (line {reader.line_num}): {exc}") from None
            finally:
                csv.field_size_limit(old)
        yield from got


def cell_text(value: object) -> str:
    """A spreadsheet or Parquet cell as the text a CSV of it would hold.

    Excel stores every number as a float and pandas turns nullable integers into floats, so a
    seed of 42 or a SKU typed as 00123 arrives as 42.0 or 123.0: whole numbers become whole-number
    text. Dates become ISO text (a midnight date-time its date alone), booleans TRUE/FALSE as Excel
    shows them, bytes are decoded like a CSV's (bytes that are not UTF-8 fail their row), and
    empty cells and nulls become "".
    """
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "surrogateescape")
    if _is_null(value):
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "TRUE" if value else "FALSE"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, datetime.datetime):
        midnight = value.time() == datetime.time() and value.tzinfo is None
        return value.date().isoformat() if midnight else value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _is_null(value: object) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if type(value).__module__.startswith("pandas"):  # pd.NA, pd.NaT
        import pandas as pd

        return bool(pd.isna(value)) if pd.api.types.is_scalar(value) else False
    return False


def _row_cells(values: tuple | list) -> list[str]:
    cells = [cell_text(v) for v in values]
    while cells and cells[-1] == "":
        cells.pop()
    return cells


def _check_zip(data: bytes, name: str) -> None:
    """Refuse a workbook that unzips to more than MAX_UNPACKED_BYTES (a zip bomb) before parsing it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CatalogError(f"catalog {name} is not an XLSX workbook ({exc})") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise CatalogError(f"catalog {name} unpacks to {unpacked} bytes, over the {MAX_UNPACKED_BYTES} byte limit")


def _xlsx_iter(data: bytes, name: str, sheet: str | None) -> Iterator[Record]:
    """(spreadsheet row number, cells) of every non-empty row of `sheet` (default: the first worksheet).

    The workbook is streamed (openpyxl read-only mode) and formulas give the values Excel last
    computed, as the user sees them. Cells right of column MAX_COLUMNS are not read, and a sheet
    with more than MAX_RECORDS rows is refused, so a hostile file cannot exhaust memory.
    """
    import openpyxl

    _check_zip(data, name)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # a parser fed a hostile file raises anything; the file is then unreadable
        raise CatalogError(f"catalog {name} is not a readable XLSX workbook ({type(exc).__name__}: {exc})") from None
    try:
        worksheets = {ws.title: ws for ws in book.worksheets}
        if sheet is None:
            if not worksheets:
                raise CatalogError(f"catalog {name} has no worksheet")
            ws = book.worksheets[0]
        elif sheet not in worksheets:
            raise CatalogError(f"catalog {name} has no worksheet {sheet!r}; its worksheets: {list(worksheets)}")
        else:
            ws = worksheets[sheet]
        rows = enumerate(ws.iter_rows(min_row=1, max_col=MAX_COLUMNS, values_only=True), 1)
        while True:
            try:
                number, values = next(rows)
            except StopIteration:
                return
            except Exception as exc:  # broken XML or zip member inside the workbook
                raise CatalogError(f"catalog {name} is not a readable XLSX workbook ({type(exc).__name__}: "
                                   f"{exc})") from None
            if number > MAX_RECORDS + 1:
                raise CatalogError(f"catalog {name} sheet {ws.title!r} has over {MAX_RECORDS} rows")
            cells = _row_cells(values)
            if any(c.strip() for c in cells):
                yield number, cells
    finally:
        book.close()


def _parquet_iter(data: bytes, name: str) -> Iterator[Record]:
    """The column names (row 1), then (n + 1, cells) for the n-th record (1-based) of a Parquet file.

    Parquet has no lines: record n is numbered n + 1, the row it has in the CSV or spreadsheet
    made from the file (header on row 1). Sizes come from the file's footer and are checked
    before anything is decompressed. Read one row group at a time through pandas with nullable
    types (as pandas.read_parquet's numpy_nullable backend), so integers stay exact (a 64-bit
    SKU number is not rounded through a float) and nulls become "".
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        meta = file.metadata
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        names = meta.schema.to_arrow_schema().names
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not Parquet
        raise CatalogError(f"catalog {name} is not a readable Parquet file ({exc})") from None
    if meta.num_rows > MAX_RECORDS:
        raise CatalogError(f"catalog {name} has {meta.num_rows} records, over {MAX_RECORDS}")
    if len(names) > MAX_COLUMNS:
        raise CatalogError(f"catalog {name} has {len(names)} columns, over {MAX_COLUMNS}")
    if unpacked > MAX_UNPACKED_BYTES:
        raise CatalogError(f"catalog {name} decompresses to {unpacked} bytes, over the {MAX_UNPACKED_BYTES} byte limit")
    yield 1, [str(n) for n in names]
    number = 1
    for group in range(meta.num_row_groups):
        try:
            frame = file.read_row_group(group).to_pandas(types_mapper=_nullable_types())
        except Exception as exc:
            raise CatalogError(f"catalog {name} is not a readable Parquet file ({exc})") from None
        for values in frame.astype(object).itertuples(index=False, name=None):
            number += 1
            cells = _row_cells(values)
            if any(c.strip() for c in cells):
                yield number, cells


def _nullable_types() -> Callable:
    """Arrow type -> pandas nullable dtype, as pandas.read_parquet(dtype_backend="numpy_nullable") maps them."""
    from pandas.io._util import _arrow_dtype_mapping

    return _arrow_dtype_mapping().get
