"""Catalogs as XLSX and Parquet, local or behind an fsspec URL: the same rows and per-row errors as the CSV."""

from __future__ import annotations

import csv
import datetime
import io
import zipfile
from pathlib import Path

import fsspec
import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ops.catalog_files as files
from ops.catalog import read_catalog, scan_catalog
from ops.errors import CatalogError

COLUMNS = ["sku", "image", "title", "category", "scene_prompt", "seed", "variants", "placement", "colour"]


def _hostile_rows(tmp_path: Path) -> list[list[str] | None]:
    """Rows every format can hold (None: an empty row); each bad one fails alone, with one reason."""
    (tmp_path / "photos" / "empty.jpg").write_bytes(b"")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.jpg").write_bytes(b"x")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "photos").symlink_to(tmp_path / "photos")
    ok = ["photos/shoe.jpg", "T", "C", "", "", "", "", ""]
    return [
        ["GOOD-1", *ok],
        ["../../etc/x", *ok],  # path-like and formula-like SKUs are data
        ["=HYPERLINK(\"http://evil.example\",\"x\")", "photos/shoe.jpg", "=1+1", "-C", "@A1", "", "", "", ""],
        None,
        ["", *ok],
        ["x" * 300, *ok],
        ["SHOE-01", *ok],
        ["ＳＨＯＥ-01", *ok],  # full-width look-alike
        ["SHOE-01\u200b", *ok],  # zero-width space
        ["\u202eSHOE", *ok],  # right-to-left override
        ["SHOE-01", *ok],  # exact duplicate
        ["BIG", "photos/shoe.jpg", "A" * 5000, "C", "", "", "", "", ""],
        ["TAB", "photos/shoe.jpg", "a\tb", "C", "", "", "", "", ""],
        ["NOTITLE", "photos/shoe.jpg", " ", "C", "", "", "", "", ""],
        ["MISS", "photos/nope.jpg", "T", "C", "", "", "", "", ""],
        ["EMPTY", "photos/empty.jpg", "T", "C", "", "", "", "", ""],
        ["DEV", "/dev/zero", "T", "C", "", "", "", "", ""],
        ["DIR", "photos", "T", "C", "", "", "", "", ""],
        ["TILDE", "~no-such-user-here/x.jpg", "T", "C", "", "", "", "", ""],
        ["FILEURL", "file:///etc/passwd", "T", "C", "", "", "", "", ""],
        ["FTP", "ftp://host/x.jpg", "T", "C", "", "", "", "", ""],
        ["CREDS", "https://u:p@example.com/x.jpg", "T", "C", "", "", "", "", ""],
        ["DOTS", "../outside/secret.jpg", "T", "C", "", "", "", "", ""],
        ["PASSWD", "/etc/passwd", "T", "C", "", "", "", "", ""],
        ["SEED", "photos/shoe.jpg", "T", "C", "", "12abc", "", "", ""],
        ["NEG", "photos/shoe.jpg", "T", "C", "", "-1", "", "", ""],
        ["VAR", "photos/shoe.jpg", "T", "C", "", "", "99", "", ""],
        ["PLACE", "photos/shoe.jpg", "T", "C", "", "", "", "no/such", ""],
        ["URL", "https://example.com/x.jpg", "T", "C", "blue wall", "42", "2", "floor", "red"],
        ["GOOD-2", *ok],
        ["LINES", "photos/shoe.jpg", "two\nlines", "C", "", "", "", "", ""],  # last: its CSV record takes 2 lines
    ]


def _write_csv(path: Path, rows: list[list[str] | None]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for row in rows:
            out.writerow(row or [])
    return path


def _write_xlsx(path: Path, rows: list[list[str] | None], sheet: str = "Products", before: tuple[str, ...] = ()) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name in before:
        book.create_sheet(name)["A1"] = "not the catalog"
    ws = book.create_sheet(sheet)
    for r, row in enumerate([COLUMNS, *rows], 1):
        for c, value in enumerate(row or [], 1):
            if value != "":
                cell = ws.cell(row=r, column=c, value=value)
                cell.data_type = "s"  # text as typed, also when it starts with '='
    book.save(path)
    return path


def _write_parquet(path: Path, rows: list[list[str] | None]) -> Path:
    columns = list(zip(*[row or [None] * len(COLUMNS) for row in rows], strict=True))
    pq.write_table(pa.table({name: pa.array(col, pa.string()) for name, col in zip(COLUMNS, columns)}), path)
    return path


def _errors(cat) -> list[tuple[int, str, str]]:
    return [(e.row, e.sku, e.reason) for e in cat.errors]


def test_hostile_rows_fail_alike_in_csv_xlsx_and_parquet(tmp_path, photo):
    rows = _hostile_rows(tmp_path)
    folder = tmp_path / "cat"
    cats = {name: read_catalog(write(folder / f"c.{name}", rows), local_roots=[tmp_path / "photos"])
            for name, write in (("csv", _write_csv), ("xlsx", _write_xlsx), ("parquet", _write_parquet))}
    csv_cat = cats["csv"]
    assert [r.sku for r in csv_cat.rows] == ["GOOD-1", "../../etc/x", '=HYPERLINK("http://evil.example","x")',
                                             "SHOE-01", "URL", "GOOD-2"]
    assert len(csv_cat.errors) == 24
    url = next(r for r in csv_cat.rows if r.sku == "URL")
    assert (url.seed, url.variants, url.placement, url.scene_prompt) == (42, 2, "floor", "blue wall")
    assert csv_cat.rows[2].title == "=1+1" and csv_cat.rows[2].scene_prompt == "@A1"  # formula text kept verbatim
    reasons = {sku: reason for _, sku, reason in _errors(csv_cat)}
    assert reasons[""] == "SKU is empty" and "same as 'SHOE-01' (row 8)" in reasons["ＳＨＯＥ-01"]
    assert "U+200B" in reasons["SHOE-01\u200b"] and "U+202E" in reasons["\u202eSHOE"]
    assert "title is 5000 characters" in reasons["BIG"] and reasons["TAB"] == "title contains control characters"
    assert "outside the folders" in reasons["DOTS"] and "outside the folders" in reasons["PASSWD"]
    assert "http(s) URL" in reasons["FILEURL"] and "credentials" in reasons["CREDS"]
    for name in ("xlsx", "parquet"):
        cat = cats[name]
        assert [r.to_dict() for r in cat.rows] == [r.to_dict() for r in csv_cat.rows], name
        assert _errors(cat) == _errors(csv_cat), name
        assert _errors(cat)[-1] == (32, "LINES", "title contains control characters")  # 1-based record 31 + 1
        assert cat.warnings == csv_cat.warnings == ["ignored unknown column(s) ['colour']"]
    for name, cat in cats.items():  # a run's scan streams the same rows, with the same errors, in every format
        scan = scan_catalog(folder / f"c.{name}", local_roots=[tmp_path / "photos"])
        assert [r.to_dict() for r in scan.rows()] == [r.to_dict() for r in cat.rows], name
        assert scan.valid == len(cat.rows) and _errors(scan) == _errors(cat) and scan.warnings == cat.warnings, name
        assert [r.sku for r in scan.rows()] == [r.sku for r in cat.rows] and scan.late == [], name  # read again


def test_bytes_that_are_not_utf8_fail_their_row_in_parquet_as_in_csv(tmp_path, photo):
    cells = [[b"OK1", b"photos/shoe.jpg", b"T", b"C"], [b"CAFE", b"photos/shoe.jpg", b"Caf\xe9", b"C"],
             [b"\xff\xfeX", b"photos/shoe.jpg", b"T", b"C"], [b"OK2", b"photos/shoe.jpg", b"T", b"C"]]
    names = ["sku", "image", "title", "category"]
    (tmp_path / "c.csv").write_bytes(b"\n".join(b",".join(r) for r in [[n.encode() for n in names], *cells]) + b"\n")
    pq.write_table(pa.table({n: pa.array(col, pa.binary()) for n, col in zip(names, zip(*cells))}),
                   tmp_path / "c.parquet")
    from_csv, from_parquet = read_catalog(tmp_path / "c.csv"), read_catalog(tmp_path / "c.parquet")
    assert [r.sku for r in from_parquet.rows] == ["OK1", "OK2"]
    assert _errors(from_parquet) == _errors(from_csv)
    assert _errors(from_parquet)[0] == (3, "CAFE", "title is not UTF-8 text (byte 0xe9); save the catalog as UTF-8")


def test_demo_catalog_as_xlsx_and_parquet_gives_the_csvs_rows(tmp_path, repo):
    demo = repo / "catalog" / "demo.csv"
    (tmp_path / "images").symlink_to(repo / "catalog" / "images")
    roots = [repo / "catalog"]
    want = [r.to_dict() for r in read_catalog(demo, local_roots=roots).rows]
    assert len(want) == 10
    typed = pd.read_csv(demo)  # seeds and variants as numbers (floats, with gaps): as Excel and pandas store them
    assert typed["seed"].dtype == float
    typed.to_excel(tmp_path / "demo.xlsx", index=False, sheet_name="Catalog")
    typed.to_parquet(tmp_path / "demo.parquet", index=False)
    pd.read_csv(demo, dtype=str, keep_default_na=False).to_parquet(tmp_path / "text.parquet", index=False)
    for name in ("demo.xlsx", "demo.parquet", "text.parquet"):
        cat = read_catalog(tmp_path / name, local_roots=roots)
        assert cat.errors == [] and [r.to_dict() for r in cat.rows] == want, name
        assert cat.path == str((tmp_path / name).resolve())


def test_spreadsheet_cells_become_the_text_a_csv_would_hold(tmp_path, photo):
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["SKU", "Image", "Title", "Category", "Seed", "Variants"])
    ws.append([123, "photos/shoe.jpg", datetime.date(2024, 5, 1), "C", 42.0, 2])
    ws.append(["B", "photos/shoe.jpg", datetime.datetime(2024, 5, 1, 9, 30), True, 7.5, None])
    ws.append([])
    ws.append([])
    ws.append(["C", "photos/shoe.jpg", 0.25, "C"])  # fewer cells than the header: the rest are empty
    book.save(tmp_path / "c.xlsx")
    cat = read_catalog(tmp_path / "c.xlsx")
    first, last = cat.rows
    assert (first.sku, first.title, first.seed, first.variants) == ("123", "2024-05-01", 42, 2)
    assert (last.row, last.sku, last.title, last.seed) == (6, "C", "0.25", None)  # empty rows counted
    assert _errors(cat) == [(3, "B", "seed '7.5' is not a whole number")]
    assert files.cell_text(datetime.datetime(2024, 5, 1, 9, 30)) == "2024-05-01T09:30:00"
    assert files.cell_text(True) == "TRUE" and files.cell_text(float("nan")) == "" and files.cell_text(pd.NA) == ""


def test_parquet_integers_stay_exact_and_nulls_are_empty(tmp_path, photo):
    pq.write_table(pa.table({"sku": pa.array([2**62 + 1, None, 7], pa.int64()), "image": ["photos/shoe.jpg"] * 3,
                             "title": ["T"] * 3, "category": ["C"] * 3, "seed": pa.array([None, 1, 5], pa.int64())}),
                   tmp_path / "c.pq")
    cat = read_catalog(tmp_path / "c.pq")
    assert [(r.row, r.sku, r.seed) for r in cat.rows] == [(2, str(2**62 + 1), None), (4, "7", 5)]
    assert _errors(cat) == [(3, "", "SKU is empty")]


def test_sheet_option_picks_a_worksheet_and_names_the_sheets_when_unknown(tmp_path, photo):
    path = _write_xlsx(tmp_path / "book.xlsx", [["A", *["photos/shoe.jpg", "T", "C"], "", "", "", "", ""]],
                       sheet="Spring", before=("Notes",))
    with pytest.raises(CatalogError, match="lacks required column"):  # the first sheet is the default
        read_catalog(path)
    assert [r.sku for r in read_catalog(path, sheet="Spring").rows] == ["A"]
    with pytest.raises(CatalogError, match=r"book.xlsx has no worksheet 'Autumn'; its worksheets: \['Notes', 'Spring'\]"):
        read_catalog(path, sheet="Autumn")
    (tmp_path / "c.csv").write_text("sku,image,title,category\nA,photos/shoe.jpg,T,C\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"c.csv is a CSV file: a sheet \('Spring'\) applies only to XLSX"):
        read_catalog(tmp_path / "c.csv", sheet="Spring")


def test_unreadable_workbooks_and_parquet_files_are_refused_naming_the_file(tmp_path, photo):
    (tmp_path / "c.xlsx").write_text("sku,image,title,category\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"c.xlsx is not an XLSX workbook"):
        read_catalog(tmp_path / "c.xlsx")
    (tmp_path / "c.parquet").write_bytes(b"PAR1 not really PAR1")
    with pytest.raises(CatalogError, match=r"c.parquet is not a readable Parquet file"):
        read_catalog(tmp_path / "c.parquet")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(CatalogError, match=r"old-style .xls workbook: save it as .xlsx"):
        read_catalog(tmp_path / "old.xls")
    empty = openpyxl.Workbook()
    empty.save(tmp_path / "empty.xlsx")
    with pytest.raises(CatalogError, match="empty.xlsx is empty"):
        read_catalog(tmp_path / "empty.xlsx")
    # a workbook under another suffix is still read as one
    _write_xlsx(tmp_path / "export.dat", [["A", "photos/shoe.jpg", "T", "C", "", "", "", "", ""]])
    assert [r.sku for r in read_catalog(tmp_path / "export.dat").rows] == ["A"]


def test_size_limits_hold_for_every_format_before_parsing(tmp_path, photo, monkeypatch):
    rows = [["A", "photos/shoe.jpg", "T", "C", "", "", "", "", ""]] * 1 + [["B", "photos/shoe.jpg", "T", "C",
                                                                          "", "", "", "", ""]]
    xlsx, parquet = _write_xlsx(tmp_path / "c.xlsx", rows), _write_parquet(tmp_path / "c.parquet", rows)
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    for path in (xlsx, parquet):
        with pytest.raises(CatalogError, match="byte limit"):
            read_catalog(path)
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 200_000_000)
    monkeypatch.setattr(files, "MAX_RECORDS", 1)
    for path in (xlsx, parquet):
        with pytest.raises(CatalogError, match="over 1"):
            read_catalog(path)
    monkeypatch.setattr(files, "MAX_RECORDS", 1_000_000)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b"<" * 5_000_000)  # packs to a few kilobytes
    (tmp_path / "bomb.xlsx").write_bytes(bomb.getvalue())
    monkeypatch.setattr(files, "MAX_UNPACKED_BYTES", 1_000_000)
    with pytest.raises(CatalogError, match=r"bomb.xlsx unpacks to 5000000 bytes, over the 1000000 byte limit"):
        read_catalog(tmp_path / "bomb.xlsx")


@pytest.fixture
def memory_fs():
    fs = fsspec.filesystem("memory")
    yield fs
    fs.rm("/catalogs", recursive=True)


def test_catalog_from_an_fsspec_url_reads_absolute_paths_only_inside_local_roots(tmp_path, photo, memory_fs):
    rows = [["ABS", str(photo), "T", "C", "", "", "", "", ""],
            ["REL", "photos/shoe.jpg", "T", "C", "", "", "", "", ""],
            ["WEB", "https://example.com/x.jpg", "T", "C", "", "", "", "", ""]]
    for name, write in (("c.csv", _write_csv), ("c.xlsx", _write_xlsx), ("c.parquet", _write_parquet)):
        memory_fs.pipe(f"/catalogs/{name}", write(tmp_path / name, rows).read_bytes())
        url = f"memory://catalogs/{name}"
        cat = read_catalog(url, local_roots=[tmp_path / "photos"])
        assert cat.path == url and [r.sku for r in cat.rows] == ["ABS", "WEB"]
        assert _errors(cat) == [(3, "REL", "photo 'photos/shoe.jpg' is a relative path, but the catalog is not on "
                                           "this machine: give an absolute path inside [load] local_roots, or an "
                                           "http(s) URL")]
        scan = scan_catalog(url, local_roots=[tmp_path / "photos"])  # read again from a spool or the kept bytes
        memory_fs.rm(f"/catalogs/{name}")
        assert [r.to_dict() for r in scan.rows()] == [r.to_dict() for r in cat.rows] and _errors(scan) == _errors(cat)
        memory_fs.pipe(f"/catalogs/{name}", (tmp_path / name).read_bytes())
        outside = read_catalog(url)  # no local_roots: no local file may be read
        assert [r.sku for r in outside.rows] == ["WEB"]
        assert "outside the folders a catalog may read: [load] local_roots (the catalog is not on this machine)" \
            in outside.errors[0].reason


def test_catalog_urls_that_cannot_be_read_are_clear_errors(tmp_path, photo, memory_fs, monkeypatch):
    with pytest.raises(CatalogError, match="catalog not found: memory://catalogs/nope.csv"):
        read_catalog("memory://catalogs/nope.csv")
    with pytest.raises(CatalogError, match=r"https://example.com/c.csv: http\(s\) catalogs and chained URLs are not"):
        read_catalog("https://user:secret@example.com/c.csv?token=abc")
    with pytest.raises(CatalogError, match="chained URLs are not read"):  # fsspec's http client, under a cache
        read_catalog("simplecache::http://169.254.169.254/latest/c.csv")
    with pytest.raises(CatalogError, match="cannot read catalog nosuchfs://x/c.csv"):
        read_catalog("nosuchfs://x/c.csv")
    memory_fs.pipe("/catalogs/big.csv", b"sku,image,title,category\n" + b"x" * 200)
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    with pytest.raises(CatalogError, match="big.csv is over the 100 byte limit"):
        read_catalog("memory://catalogs/big.csv")
    local = _write_csv(tmp_path / "local.csv", [["A", "photos/shoe.jpg", "T", "C", "", "", "", "", ""]])
    cat = read_catalog(local.as_uri())  # a file:// URL is a local catalog: its folder resolves relative paths
    assert [r.sku for r in cat.rows] == ["A"] and cat.path == str(local.resolve())
