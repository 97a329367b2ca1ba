"""Cost per image through a real run (record, ledger, report) and `stage report` exports."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from flows.artifacts import cost_rows
from flows.cli import main
from flows.exitcodes import EXIT_OK, EXIT_USAGE

# The events table of a ledger made before cost was recorded: a run must add the new columns.
OLD_LEDGER = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, run_id TEXT NOT NULL,
    flow_run_id TEXT, worker TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL, sku TEXT NOT NULL, row INTEGER,
    cache_key TEXT, status TEXT NOT NULL, verdict TEXT, reasons TEXT, record TEXT, output TEXT, error TEXT,
    note TEXT);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, flow_run_id TEXT, worker TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL,
    started_at TEXT NOT NULL, ended_at TEXT, state TEXT NOT NULL, reason TEXT, not_done INTEGER, note TEXT);
INSERT INTO runs VALUES ('old-run', NULL, NULL, 'h', 1, '2020-01-01T00:00:00.000+00:00', '2020-01-01T00:01:00.000+00:00',
    'completed', NULL, 0, NULL);
INSERT INTO events (at, run_id, host, pid, sku, row, status, reasons) VALUES
    ('2020-01-01T00:00:30.000+00:00', 'old-run', 'h', 1, 'OLD-1', 2, 'ok', '[]');
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, write_catalog, dev_keys):
    from flows.nightly import nightly_catalog_run

    tmp = tmp_path_factory.mktemp("cost")
    (tmp / "broken.jpg").write_bytes(b"\xff\xd8\xff not a whole JPEG")  # fails when decoded: a failed row
    catalog = write_catalog(tmp, "sku,image,title,category,seed,variants",
                            "SHOE-1,19_shoes_black-suede_white.jpg,Shoes,shoes,1,2",
                            "=HAT-2,27_hat_leather-cap_on-white-sheet.jpg,Cap,hats,2,1",
                            "BROKEN-3,broken.jpg,Broken,shoes,,")
    (tmp / "config.toml").write_text(
        "[layout]\nwidth = 256\nheight = 256\n[renditions]\nactive = []\n"
        "[cost]\ncurrency = \"EUR\"\ngpu_per_hour = 2.0\ncpu_core_per_hour = 36.0\n", encoding="utf-8")
    out = tmp / "out"
    out.mkdir()
    with sqlite3.connect(out / "ledger.sqlite") as db:
        db.executescript(OLD_LEDGER)
    result = nightly_catalog_run(catalog=str(catalog), config=str(tmp / "config.toml"), out=str(out))
    return out, result


def _events(out: Path, run_id: str) -> list[dict]:
    with sqlite3.connect(out / "ledger.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM events WHERE run_id = ? ORDER BY row", (run_id,))]


def test_cost_is_in_the_record_the_ledger_and_the_report(run):
    out, result = run
    rows = {r["sku"]: r for r in result["results"]}
    shoe = rows["SHOE-1"]
    assert shoe["status"] == "ok" and shoe["cost"]["currency"] == "EUR"
    # every stage ran on the CPU: 36 EUR per core-hour is 1e-5 EUR per millisecond
    assert shoe["cost"]["total"] == pytest.approx(sum(shoe["timings_ms"].values()) * 1e-5, rel=1e-4)
    assert set(shoe["cost"]["devices"].values()) == {"cpu"}
    record = json.loads((out / shoe["record"]).read_text())
    assert record["cost"]["currency"] == "EUR" and set(record["cost"]["stages"]) == set(record["timings_ms"])
    assert record["cost"]["total"] == pytest.approx(sum(record["cost"]["stages"].values()), abs=1e-7)
    assert record["cost"]["calls"] == {"plain-backdrop": 1, "geometric": 1, "procedural": 2}  # two variants

    events = {e["sku"]: e for e in _events(out, result["run_id"])}
    assert events["SHOE-1"]["cost"] == shoe["cost"]["total"] and events["SHOE-1"]["currency"] == "EUR"
    assert json.loads(events["SHOE-1"]["timings_ms"]) == shoe["timings_ms"]
    assert events["BROKEN-3"]["status"] == "failed" and events["BROKEN-3"]["cost"] is None

    cost = result["summary"]["cost"]
    staged = [r["cost"]["total"] for r in result["results"] if r.get("cost")]
    assert cost["total"] == pytest.approx(sum(staged)) and cost["priced_rows"] == 2
    assert cost["per_sku"]["median"] == pytest.approx(sum(staged) / 2)
    assert abs(sum(s["share"] for s in cost["stages"]) - 1) < 1e-3
    with sqlite3.connect(out / "ledger.sqlite") as db:
        assert db.execute("SELECT cost, currency FROM runs WHERE run_id = ?", (result["run_id"],)).fetchone() == (
            pytest.approx(cost["total"]), "EUR")
        assert db.execute("SELECT cost FROM events WHERE run_id = 'old-run'").fetchone() == (None,)  # migrated
    page = Path(result["report"]).read_text()
    assert "Cost and time per stage" in page and "EUR" in page and "<td>scene</td>" in page
    assert [r["what"] for r in cost_rows(cost)][:3] == ["run", "per SKU, median of 2", "per SKU, p90"]


def test_stage_report_exports_the_ledger_rows_as_csv_and_parquet(run, tmp_path, capsys):
    out, result = run
    events = _events(out, result["run_id"])
    csv_file, parquet_file = tmp_path / "rows.csv", tmp_path / "x" / "rows.parquet"
    assert main(["report", result["run_id"], "--out", str(out), "--format", "csv", "--output", str(csv_file)]) == 0
    assert main(["report", "latest", "--out", str(out), "--format", "parquet", "--output", str(parquet_file)]) == 0
    line = capsys.readouterr().err
    assert f"run {result['run_id']} (completed" in line and "EUR" in line and "3 product row(s) written" in line
    for frame in (pd.read_csv(csv_file), pd.read_parquet(parquet_file)):
        assert len(frame) == len(events) == 3
        assert [str(s).lstrip("'") for s in frame["sku"]] == [e["sku"] for e in events]
        assert list(frame["status"]) == [e["status"] for e in events]
        assert frame["cost"].fillna(-1).tolist() == pytest.approx([e["cost"] if e["cost"] is not None else -1
                                                                    for e in events])
        assert {"scene_ms", "sign_ms", "write_ms"} <= set(frame.columns)
        assert frame.loc[frame["sku"].astype(str).str.endswith("SHOE-1"), "scene_ms"].item() > 0
    assert pd.read_csv(csv_file)["sku"].tolist()[1] == "'=HAT-2"  # never a spreadsheet formula
    assert pd.read_parquet(parquet_file)["sku"].tolist()[1] == "=HAT-2"  # Parquet keeps the value as it is


def test_stage_report_table_and_errors(run, capsys):
    out, result = run
    assert main(["report", "latest", "--out", str(out)]) == EXIT_OK
    shown = capsys.readouterr().out
    assert shown.startswith(f"run {result['run_id']} (completed") and "SHOE-1" in shown and "failed" in shown
    assert main(["report", "no-such-run", "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no-such-run" in err and result["run_id"] in err and "old-run" in err
    assert main(["report", "latest", "--out", str(out), "--format", "parquet"]) == EXIT_USAGE
    assert "--output" in capsys.readouterr().err
    empty = out.parent / "empty"
    assert main(["report", "latest", "--out", str(empty)]) == EXIT_USAGE
    assert "no ledger" in capsys.readouterr().err and not (empty / "ledger.sqlite").exists()


def test_the_run_summary_line_says_what_the_run_cost():
    from flows.launch import cost_line

    cost = {"currency": "USD", "total": 12.5, "priced_rows": 1000, "per_sku": {"median": 0.0118, "p90": 0.02}}
    assert cost_line(cost) == "cost: 12.50 USD for 1000 staged SKU(s); per SKU: median 0.0118 USD, p90 0.0200 USD"
    assert cost_line({**cost, "total": 0.0, "priced_rows": 0}) == "cost: 0.00 USD (no product was staged)"
