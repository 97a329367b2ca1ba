from pathlib import Path

import pytest

import ops.catalog as catalog_module
from ops.catalog import read_catalog, scan_catalog
from ops.errors import CatalogError


def _write(tmp_path: Path, text: str, name: str = "cat.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_valid_rows_resolve_relative_paths_and_parse_optionals(tmp_path, photo):
    cat = read_catalog(_write(tmp_path, (
        "sku,image,title,category,scene_prompt,seed,variants\n"
        "A1,photos/shoe.jpg,Shoe,shoes,blue wall,42,3\n"
        f"A2,{photo},Shoe,shoes,,,\n"
        "A3,https://example.com/x.jpg,Shoe,shoes,,,\n"
    )))
    assert cat.errors == []
    a1, a2, a3 = cat.rows
    assert a1.image == str(photo.resolve()) and a1.seed == 42 and a1.variants == 3
    assert a1.scene_prompt == "blue wall" and a1.row == 2
    assert a2.image == str(photo.resolve()) and a2.seed is None and a2.variants == 1
    assert a3.image == "https://example.com/x.jpg"


def test_bad_rows_are_reported_with_row_sku_and_reason_and_others_kept(tmp_path, photo):
    (tmp_path / "photos" / "empty.jpg").write_bytes(b"")
    cat = read_catalog(_write(tmp_path, (
        "sku,image,title,category,seed,variants\n"
        "OK1,photos/shoe.jpg,Shoe,shoes,,\n"
        ",photos/shoe.jpg,No sku,shoes,,\n"
        "OK1,photos/shoe.jpg,Dup,shoes,,\n"
        "MISS,photos/nope.jpg,Missing,shoes,,\n"
        "SEED,photos/shoe.jpg,Bad seed,shoes,12abc,\n"
        "NEG,photos/shoe.jpg,Neg seed,shoes,-1,\n"
        "VAR,photos/shoe.jpg,Too many,shoes,,99\n"
        "EMPTY,photos/empty.jpg,Empty,shoes,,\n"
        "FTP,ftp://host/x.jpg,Ftp,shoes,,\n"
        "OK2,photos/shoe.jpg,Shoe,shoes,7,2\n"
    )), max_variants=8)
    assert [r.sku for r in cat.rows] == ["OK1", "OK2"]
    by_row = {e.row: e for e in cat.errors}
    assert by_row[3].reason == "SKU is empty"
    assert by_row[4].sku == "OK1" and "duplicate SKU (first seen on row 2)" in by_row[4].reason
    assert "photo not found" in by_row[5].reason and "nope.jpg" in by_row[5].reason
    assert "seed '12abc' is not a whole number" in by_row[6].reason
    assert "seed -1 is outside" in by_row[7].reason
    assert "variants 99 is outside 1..8" in by_row[8].reason
    assert "empty (0 bytes)" in by_row[9].reason
    assert "http(s) URL" in by_row[10].reason


def test_missing_required_column_stops_the_run(tmp_path):
    with pytest.raises(CatalogError, match=r"lacks required column\(s\) \['category'\]"):
        read_catalog(_write(tmp_path, "sku,image,title\nA,x.jpg,T\n"))


def test_bom_and_extra_columns_are_accepted(tmp_path, photo):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffSKU,Image,Title,Category,Colour\nA,photos/shoe.jpg,T,C,red\n".encode("utf-8"))
    cat = read_catalog(p)
    assert [r.sku for r in cat.rows] == ["A"]
    assert any("colour" in w for w in cat.warnings)


@pytest.mark.parametrize("content,match", [
    (b"", "is empty"),
    (b"sku,image,title,category\n", "no rows"),
    (b"sku,image,title,category\nA,\xff\xfe.jpg,T,C\n", r"not UTF-8 text \(byte 27\)"),
    (b"\n,,,\n\n", "is empty"),
    ("sku,image\n".encode("utf-16"), "UTF-16"),
])
@pytest.mark.parametrize("read", [read_catalog, scan_catalog])  # a run's scan reads a CSV as it goes
def test_unusable_files_are_refused_with_a_clear_error(tmp_path, content, match, read):
    p = tmp_path / "c.csv"
    p.write_bytes(content)
    with pytest.raises(CatalogError, match=match):
        read(p)


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="catalog not found"):
        read_catalog(tmp_path / "nope.csv")


def test_control_characters_in_sku_are_rejected(tmp_path, photo):
    cat = read_catalog(_write(tmp_path, 'sku,image,title,category\n"a\x07b",photos/shoe.jpg,T,C\n'))
    assert cat.rows == [] and "control characters" in cat.errors[0].reason


def test_local_photos_stay_inside_the_catalogs_folder_and_the_configured_roots(tmp_path, photo):
    """A supplier's catalog cannot make a worker read files from elsewhere on its disk: paths are
    resolved (links, '..') first, and the reason names the row, the path and the setting."""
    outside = tmp_path / "other-client"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(photo.read_bytes())
    shared = tmp_path / "photo-share"
    shared.mkdir()
    (shared / "ok.jpg").write_bytes(photo.read_bytes())
    folder = tmp_path / "supplier"
    (folder / "photos").mkdir(parents=True)
    (folder / "photos" / "shoe.jpg").write_bytes(photo.read_bytes())
    (folder / "photos" / "link.jpg").symlink_to(outside / "secret.jpg")
    text = ("sku,image,title,category,reference_image\n"
            "OK,photos/shoe.jpg,T,C,\n"
            "LINK,photos/link.jpg,T,C,\n"
            "DOTS,../other-client/secret.jpg,T,C,\n"
            f"ABS,{outside / 'secret.jpg'},T,C,\n"
            "PASSWD,/etc/passwd,T,C,\n"
            f"SHARE,{shared / 'ok.jpg'},T,C,\n"
            f"REF,photos/shoe.jpg,T,C,{outside / 'secret.jpg'}\n")
    cat = read_catalog(_write(folder, text))
    assert [r.sku for r in cat.rows] == ["OK"]
    reasons = {e.sku: e.reason for e in cat.errors}
    assert set(reasons) == {"LINK", "DOTS", "ABS", "PASSWD", "SHARE", "REF"}
    assert f"resolves to {outside / 'secret.jpg'}" in reasons["LINK"]
    for sku in ("LINK", "DOTS", "ABS", "PASSWD", "SHARE"):
        assert "outside the folders a catalog may read" in reasons[sku] and "[load] local_roots" in reasons[sku]
    assert reasons["REF"].startswith("reference_image")
    allowed = read_catalog(_write(folder, text), local_roots=[shared])
    assert {r.sku for r in allowed.rows} == {"OK", "SHARE"}
    assert allowed.rows[1].image == str(shared / "ok.jpg")


def test_credentials_in_a_photo_url_refuse_the_row_without_showing_them(tmp_path):
    cat = read_catalog(_write(tmp_path, "sku,image,title,category\n"
                                        "A,https://shop:hunter2@img.example.com/a.jpg?sig=XYZ,T,C\n"))
    [error] = cat.errors
    assert "carries credentials" in error.reason and "hunter2" not in error.reason and "XYZ" not in error.reason


def test_scan_keeps_no_row_and_streams_them_a_chunk_at_a_time(tmp_path, photo, monkeypatch):
    """A run's catalog is checked whole, then its rows are parsed again as they are consumed."""
    lines = [f"S{i},photos/shoe.jpg,Shoe {i},shoes,,{i},\n" for i in range(5000)]
    lines[10] = "S9,photos/shoe.jpg,dup,shoes,,,\n"  # duplicate of row 11's SKU
    lines[4000] = "S4000,photos/shoe.jpg,,shoes,,,\n"  # no title
    path = _write(tmp_path, "sku,image,title,category,scene_prompt,seed,variants\n" + "".join(lines))
    scan = scan_catalog(path, keep=lambda r: r.seed % 2 == 0)
    assert scan.valid == 2498 and [(e.row, e.reason) for e in scan.errors] == [
        (12, "duplicate SKU (first seen on row 11)"), (4002, "title is empty")]
    parsed = []
    parse = catalog_module._RowParser.row
    monkeypatch.setattr(catalog_module._RowParser, "row", lambda self, *a: parsed.append(1) or parse(self, *a))
    rows = scan.rows()
    first = [next(rows) for _ in range(3)]
    assert [(r.row, r.sku) for r in first] == [(2, "S0"), (4, "S2"), (6, "S4")]
    assert len(parsed) <= 10  # parsed as they are consumed, not all at once
    rest = list(rows)
    assert len(first) + len(rest) == 2498 and len(parsed) == 4998  # every valid row parsed once; bad ones skipped
    assert all(r.seed % 2 == 0 for r in rest) and "S4000" not in {r.sku for r in rest}
    assert [r.to_dict() for r in scan.rows()] == [r.to_dict() for r in read_catalog(path).rows if r.seed % 2 == 0]


def test_scan_reports_rows_that_went_bad_and_refuses_a_changed_file(tmp_path, photo):
    other = photo.with_name("other.jpg")
    other.write_bytes(photo.read_bytes())
    path = _write(tmp_path, "sku,image,title,category\nA,photos/shoe.jpg,T,C\nB,photos/other.jpg,T,C\n")
    scan = scan_catalog(path)
    assert scan.valid == 2 and scan.errors == []
    other.unlink()  # gone between the check and the run's read
    assert [r.sku for r in scan.rows()] == ["A"]
    assert [(e.row, e.sku) for e in scan.late] == [(3, "B")] and "not found" in scan.late[0].reason
    path.write_text("sku,image,title,category\nA,photos/shoe.jpg,T,C\nC,photos/shoe.jpg,T,C\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="changed while the run was reading it"):
        list(scan.rows())
