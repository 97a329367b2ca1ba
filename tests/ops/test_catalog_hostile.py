"""Hostile catalog CSVs: every bad row is reported with its row, SKU and reason; the rest is kept."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ops.catalog import MAX_SKU_LEN, read_catalog
from ops.errors import CatalogError
from ops.paths import sku_slug

HEADER = "sku,image,title,category,scene_prompt,seed,variants"




def _write_bytes(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "cat.csv"
    p.write_bytes(data)
    return p


def _catalog(tmp_path: Path, lines: list[str], prefix: bytes = b"") -> Path:
    return _write_bytes(tmp_path, prefix + ("\n".join(lines) + "\n").encode("utf-8"))


def _errors(cat) -> dict[int, tuple[str, str]]:
    return {e.row: (e.sku, e.reason) for e in cat.errors}


def test_path_like_and_formula_skus_are_data_with_safe_unique_names(tmp_path, photo):
    skus = ["../../etc/x", "/abs/path", "..", "C:\\Windows\\x", "=HYPERLINK(\"http://evil.example\",\"x\")",
            "+1-2", "@SUM(A1)", "SHOE-01", "ЅНОЕ-01", "shoe-01", "a b"]  # the fifth-last is Cyrillic
    lines = [HEADER] + [f'"{s.replace(chr(34), chr(34) * 2)}",photos/shoe.jpg,T,C,,,' for s in skus]
    cat = read_catalog(_catalog(tmp_path, lines))
    assert cat.errors == []
    assert [r.sku for r in cat.rows] == skus  # kept exactly: a SKU is data
    slugs = [sku_slug(r.sku) for r in cat.rows]
    assert len(set(slugs)) == len(skus) and len({s.lower() for s in slugs}) == len(skus)
    for slug in slugs:
        assert "/" not in slug and "\\" not in slug and not slug.startswith(".")
        assert (tmp_path / "out" / slug).resolve().parent == (tmp_path / "out").resolve()


def test_bad_skus_are_reported_per_row(tmp_path, photo):
    lines = [HEADER,
             "GOOD-1,photos/shoe.jpg,T,C,,,",
             '"a\x00b",photos/shoe.jpg,T,C,,,',
             f"{'x' * 300},photos/shoe.jpg,T,C,,,",
             "SHOE-01,photos/shoe.jpg,T,C,,,",
             "ＳＨＯＥ-01,photos/shoe.jpg,T,C,,,",  # full-width look-alike of row 5
             "SHOE-01\u200b,photos/shoe.jpg,T,C,,,",  # zero-width space
             "\u202eSHOE,photos/shoe.jpg,T,C,,,",  # right-to-left override
             "SHOE-01,photos/shoe.jpg,T,C,,,",  # exact duplicate
             "GOOD-2,photos/shoe.jpg,T,C,,,"]
    cat = read_catalog(_catalog(tmp_path, lines))
    assert [r.sku for r in cat.rows] == ["GOOD-1", "SHOE-01", "GOOD-2"]
    err = _errors(cat)
    assert set(err) == {3, 4, 6, 7, 8, 9}
    assert "control characters (U+0000)" in err[3][1]
    assert err[4][1] == f"SKU is 300 characters, over {MAX_SKU_LEN}"
    assert err[4][0].startswith("x" * 80) and err[4][0].endswith("(300 characters)")  # shown cut short
    assert "same as 'SHOE-01' (row 5)" in err[6][1] and "NFKC" in err[6][1]
    assert "invisible" in err[7][1] and "U+200B" in err[7][1]
    assert "invisible" in err[8][1] and "U+202E" in err[8][1]
    assert "duplicate SKU (first seen on row 5)" in err[9][1]


def test_non_utf8_bytes_fail_only_their_row(tmp_path, photo):
    data = (HEADER + "\nOK1,photos/shoe.jpg,T,C,,,\n").encode() + b"CAFE,photos/shoe.jpg,Caf\xe9,C,,,\n"
    data += b"\xff\xfeX,photos/shoe.jpg,T,C,,,\n" + b"OK2,photos/shoe.jpg,T,C,,,\n"
    cat = read_catalog(_write_bytes(tmp_path, data))
    assert [r.sku for r in cat.rows] == ["OK1", "OK2"]
    err = _errors(cat)
    assert err[3] == ("CAFE", "title is not UTF-8 text (byte 0xe9); save the catalog as UTF-8")
    assert err[4][0] == "\\xff\\xfeX" and "sku is not UTF-8 text (byte 0xff)" in err[4][1]  # shown, still text
    err[4][0].encode("utf-8")  # no lone surrogates reach reports


def test_a_file_with_no_utf8_row_or_header_is_refused_whole(tmp_path):
    with pytest.raises(CatalogError, match=r"not UTF-8 text \(byte 0\); save it as UTF-8"):
        read_catalog(_write_bytes(tmp_path, b"\xef\xbb\xbf\xe9sku,image,title,category\nA,x.jpg,T,C\n"))
    with pytest.raises(CatalogError, match="is UTF-16 text"):
        read_catalog(_write_bytes(tmp_path, "sku,image,title,category\nA,x,T,C\n".encode("utf-16")))


def test_bom_extra_and_unnamed_columns_blank_lines_and_row_numbers(tmp_path, photo):
    lines = ["SKU,Image,Title,Category,Colour,",
             "A,photos/shoe.jpg,T,C,red,",
             "",
             ",,,,,",  # a spreadsheet's empty row
             '"B",photos/shoe.jpg,"two',
             'lines",C,blue,',
             "C,photos/shoe.jpg,T,C,green,"]
    cat = read_catalog(_catalog(tmp_path, lines, prefix=b"\xef\xbb\xbf"))
    assert [r.sku for r in cat.rows] == ["A", "C"]
    assert [r.row for r in cat.rows] == [2, 7]  # line numbers in the file, blank lines counted
    assert _errors(cat) == {5: ("B", "title contains control characters")}
    assert any("colour" in w for w in cat.warnings) and any("without a name" in w for w in cat.warnings)


def test_ragged_rows_are_reported_not_filled_in(tmp_path, photo):
    lines = [HEADER,
             "SHORT,photos/shoe.jpg,T",
             "LONG,photos/shoe.jpg,T,C,a prompt, with a comma,1,1",
             "TRAILING,photos/shoe.jpg,T,C,,,,,,",  # empty cells past the header: a spreadsheet export
             "OK,photos/shoe.jpg,T,C,,,"]
    cat = read_catalog(_catalog(tmp_path, lines))
    assert [r.sku for r in cat.rows] == ["TRAILING", "OK"]
    assert all(r.title == "T" and r.category == "C" for r in cat.rows)
    err = _errors(cat)
    assert "row has 3 fields but the header has 7" in err[2][1]
    assert "row has 8 fields but the header has 7" in err[3][1]


def test_huge_cells_fail_their_row_only(tmp_path, photo):
    big = "A" * 1_000_000
    lines = [HEADER, f"BIG,photos/shoe.jpg,{big},C,,,", f'"{big}",photos/shoe.jpg,T,C,,,',
             "OK,photos/shoe.jpg,T,C,,,"]
    limit = csv.field_size_limit()
    cat = read_catalog(_catalog(tmp_path, lines))
    assert csv.field_size_limit() == limit  # the module-wide limit is restored
    assert [r.sku for r in cat.rows] == ["OK"]
    err = _errors(cat)
    assert err[2] == ("BIG", "title is 1000000 characters, over 2000")
    assert "SKU is 1000000 characters" in err[3][1] and len(err[3][0]) < 120


def test_formula_text_in_fields_is_kept_verbatim(tmp_path, photo):
    cat = read_catalog(_catalog(tmp_path, [HEADER, 'F1,photos/shoe.jpg,"=HYPERLINK(""http://x"",""y"")",-C,@A1,,']))
    row = cat.rows[0]
    assert row.title == '=HYPERLINK("http://x","y")' and row.category == "-C" and row.scene_prompt == "@A1"


def test_unusable_image_paths_are_row_errors(tmp_path, photo):
    lines = [HEADER,
             f"LONG,photos/{'n' * 300}.jpg,T,C,,,",  # longer than a file name may be
             "DEV,/dev/zero,T,C,,,",
             "DIR,photos,T,C,,,",
             "TILDE,~no-such-user-here/x.jpg,T,C,,,",
             "FILE,file:///etc/passwd,T,C,,,",
             "OK,photos/shoe.jpg,T,C,,,"]
    cat = read_catalog(_catalog(tmp_path, lines))
    assert [r.sku for r in cat.rows] == ["OK"]
    err = _errors(cat)
    assert set(err) == {2, 3, 4, 5, 6}
    assert "cannot be accessed" in err[2][1] or "photo not found" in err[2][1]
    assert "photo not found: /dev/zero" in err[3][1]
    assert "http(s) URL" in err[6][1]


@pytest.mark.parametrize("content,match", [
    (b"\xef\xbb\xbf", "is empty"),
    (b"\n\n  \n", "is empty"),
    (b"sku,sku,image,title,category\nA,B,x,T,C\n", r"column\(s\) \['sku'\] more than once"),
    (b"sku,image,title\nA,x.jpg,T\n", r"lacks required column\(s\) \['category'\]"),
])
def test_unusable_files_stop_the_run_with_a_clear_error(tmp_path, content, match):
    with pytest.raises(CatalogError, match=match):
        read_catalog(_write_bytes(tmp_path, content))


def test_a_directory_is_not_a_catalog(tmp_path):
    with pytest.raises(CatalogError, match="is a directory"):
        read_catalog(tmp_path)
