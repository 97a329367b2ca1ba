"""A nightly run from an XLSX catalog's named worksheet: the rows stage and bad rows keep their spreadsheet row."""

from __future__ import annotations

import shutil

import openpyxl


def test_nightly_run_stages_a_workbook_sheet(tmp_path, images, dev_keys):
    from flows.nightly import nightly_catalog_run

    photo = "19_shoes_black-suede_white.jpg"
    (tmp_path / "photos").mkdir()
    shutil.copy(images / photo, tmp_path / "photos" / photo)
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active["A1"] = "catalog for spring"
    ws = book.create_sheet("Spring")
    ws.append(["SKU", "Image", "Title", "Category", "Seed"])
    ws.append(["XL-01", f"photos/{photo}", "Black suede shoes", "shoes", 42.0])  # a number cell, as Excel keeps it
    for column, value in enumerate(["XL-02", "photos/nope.jpg", "Missing", "shoes"], 1):  # after 2 empty rows
        ws.cell(row=5, column=column, value=value)
    book.save(tmp_path / "catalog.xlsx")
    (tmp_path / "config.toml").write_text("[layout]\nwidth = 256\nheight = 256\n[write]\nformat_copies = []\n",
                                          encoding="utf-8")
    result = nightly_catalog_run(catalog=str(tmp_path / "catalog.xlsx"), config=str(tmp_path / "config.toml"),
                                 out=str(tmp_path / "out"), sheet="Spring")
    assert [(r["sku"], r["status"]) for r in result["results"]] == [("XL-01", "ok")]
    [error] = result["catalog_errors"]
    assert (error["row"], error["sku"]) == (5, "XL-02") and "photo not found" in error["reason"]
    record = next((tmp_path / "out" / "products").glob("*/*.json"))
    assert '"seed": 42' in record.read_text(encoding="utf-8")
