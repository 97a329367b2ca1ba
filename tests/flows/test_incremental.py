"""Incremental runs, the ledger, shards, per-SKU locks and reruns, in Prefect's ephemeral mode."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

PHOTOS = ["19_shoes_black-suede_white.jpg", "27_hat_leather-cap_on-white-sheet.jpg", "22_shoes_strap-sandals_white.jpg"]


def _setup(tmp: Path, images: Path, n: int = 6, prompt_of: dict[int, str] | None = None) -> tuple[Path, Path]:
    (tmp / "photos").mkdir(parents=True, exist_ok=True)
    for i in range(n):  # one photo file per SKU, so that one can be edited alone
        target = tmp / "photos" / f"p{i}.jpg"
        if not target.exists():
            shutil.copy(images / PHOTOS[i % len(PHOTOS)], target)
    lines = ["sku,image,title,category,scene_prompt,seed,variants"]
    lines += [f"INC-{i},photos/p{i}.jpg,Item {i},shoes,{(prompt_of or {}).get(i, '')},{i},1" for i in range(n)]
    (tmp / "catalog.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if not (tmp / "config.toml").exists():
        (tmp / "config.toml").write_text('[layout]\nwidth = 192\nheight = 192\n[run]\nbatch_size = 2\n'
                                         '[write]\nformat_copies = []\n', encoding="utf-8")
    return tmp / "catalog.csv", tmp / "config.toml"


def _events(out: Path) -> list[dict]:
    with sqlite3.connect(out / "ledger.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM events ORDER BY id")]


def _run(catalog: Path, config: Path, out: Path, **kw):
    from flows.nightly import nightly_catalog_run

    return nightly_catalog_run(catalog=str(catalog), config=str(config), out=str(out), **kw)


def test_only_changed_rows_are_staged_and_the_ledger_records_each_once(tmp_path, images, dev_keys, monkeypatch):
    from flows import nightly

    catalog, config = _setup(tmp_path, images)
    out = tmp_path / "out"
    first = _run(catalog, config, out)
    assert first["summary"]["by_status"] == {"ok": 6}
    events = _events(out)
    assert sorted(e["sku"] for e in events) == [f"INC-{i}" for i in range(6)]
    assert all(len(e["cache_key"]) == 64 and e["run_id"] == first["run_id"] for e in events)

    submitted: list[list[str]] = []
    real_submit = nightly.stage_batch.submit

    def spy(rows, *a, **k):
        submitted.append([r["sku"] for r in rows])
        return real_submit(rows, *a, **k)

    monkeypatch.setattr(nightly.stage_batch, "submit", spy)
    same = _run(catalog, config, out)
    assert same["summary"]["by_status"] == {"cached": 6} and submitted == []  # skipped before any task
    assert len(_events(out)) == 6

    # a changed prompt, a photo whose bytes changed, a deleted output: exactly those three are redone
    _setup(tmp_path, images, prompt_of={1: "sage green wall"})
    shutil.copy(images / PHOTOS[1], tmp_path / "photos" / "p3.jpg")  # p3 held PHOTOS[0]
    record = json.loads(next(out.glob("products/INC-5-*/INC-5-*.json")).read_text())
    (next(out.glob("products/INC-5-*")) / record["output"]).unlink()
    again = _run(catalog, config, out)
    redone = {r["sku"] for r in again["results"] if r["status"] != "cached"}
    assert redone == {"INC-1", "INC-3", "INC-5"}
    assert sorted(s for batch in submitted for s in batch) == ["INC-1", "INC-3", "INC-5"]
    current = __import__("ops.ledger", fromlist=["Ledger"]).Ledger(out).current()
    assert current["INC-1"].run_id == again["run_id"] and current["INC-0"].run_id == first["run_id"]

    forced = _run(catalog, config, out, force=True)
    assert forced["summary"]["by_status"] == {"ok": 6}


def test_outputs_waiting_for_review_are_skipped_unless_decided_or_made_by_a_fallback(tmp_path, images, dev_keys,
                                                                                      monkeypatch):
    from flows import nightly
    from ops import review

    catalog, config = _setup(tmp_path, images, n=3)
    with config.open("a", encoding="utf-8") as fh:
        fh.write("[fidelity]\nreview_quality = 0.99999\n")  # every output is marginal: review
    out = tmp_path / "out"
    first = _run(catalog, config, out)
    assert first["summary"]["by_verdict"] == {"review": 3}
    submitted: list[str] = []
    real_submit = nightly.stage_batch.submit
    monkeypatch.setattr(nightly.stage_batch, "submit",
                        lambda rows, *a, **k: (submitted.extend(r["sku"] for r in rows), real_submit(rows, *a, **k))[1])
    same = _run(catalog, config, out)
    assert same["summary"]["by_status"] == {"cached": 3} and submitted == []  # skipped before any task
    assert {r["verdict"] for r in same["results"]} == {"review"}

    review.decide(out, "INC-0", "approved", by="tester")  # applied by the pre-pass itself
    review.decide(out, "INC-1", "rejected", reason="wrong colour", by="tester")  # its batch task withdraws it
    record_path = next(out.glob("products/INC-2-*/INC-2-*.json"))  # as if a fallback backend had made it
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["scene_fallback"] = {"wanted": "diffusers-sd15", "used": "procedural", "reasons": ["out of memory"]}
    record_path.write_text(json.dumps(record), encoding="utf-8")
    again = _run(catalog, config, out)
    by = {r["sku"]: r for r in again["results"]}
    assert sorted(submitted) == ["INC-1", "INC-2"]
    assert (by["INC-0"]["status"], by["INC-0"]["verdict"]) == ("cached", "pass")
    assert "approved by tester" in by["INC-0"]["reasons"][0]
    assert (by["INC-1"]["status"], by["INC-1"]["verdict"]) == ("rejected", "reject")
    assert not list(out.glob("products/INC-1-*/*.png"))
    assert by["INC-2"]["status"] == "ok"
    assert not json.loads(record_path.read_text(encoding="utf-8")).get("scene_fallback")


def test_shards_split_a_catalog_and_the_folder_locks_keep_runs_apart(tmp_path, images, dev_keys):
    from flows.nightly import shard_of
    from ops.runlock import RunLockedError, hold

    catalog, config = _setup(tmp_path, images, n=8)
    out = tmp_path / "out"
    with hold(out, shared="shard-1-of-2"):
        with pytest.raises(RunLockedError, match="in use by another run"):
            _run(catalog, config, out)  # a full run is refused while a shard runs
        with pytest.raises(RunLockedError, match="shard-1-of-2 of output folder .* is already running"):
            _run(catalog, config, out, shard=1, shards=2)
        zero = _run(catalog, config, out, shard=0, shards=2)  # another shard may run beside it
    one = _run(catalog, config, out, shard=1, shards=2)
    skus = {f"INC-{i}" for i in range(8)}
    got0, got1 = {r["sku"] for r in zero["results"]}, {r["sku"] for r in one["results"]}
    assert got0 | got1 == skus and not got0 & got1 and got0 and got1
    assert all(shard_of(s, 2) == 0 for s in got0)
    assert sorted(e["sku"] for e in _events(out)) == sorted(skus)
    with pytest.raises(ValueError, match="shard = 2, shards = 2"):
        _run(catalog, config, out, shard=2, shards=2)


def test_a_sku_held_by_another_process_is_not_written(tmp_path, images, dev_keys):
    from ops.runlock import SKU_LOCKS_NAME, SkuLocks

    catalog, config = _setup(tmp_path, images, n=2)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from ops.runlock import SkuLocks\n"
        "with SkuLocks(Path(sys.argv[1])).hold('INC-1') as mine:\n"
        "    assert mine; print('held', flush=True); time.sleep(120)\n"), str(out)],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with SkuLocks(out).hold("INC-1") as mine:  # this process's own lock on the same SKU is refused too
            assert mine is False
        result = _run(catalog, config, out, shard=0, shards=1)
    finally:
        holder.kill()
        holder.wait()
    by = {r["sku"]: r for r in result["results"]}
    assert by["INC-0"]["status"] == "ok"
    assert by["INC-1"]["status"] == "failed" and "being processed by another run" in by["INC-1"]["error"]
    assert not list(out.glob("products/INC-1-*/*.png")) and (out / SKU_LOCKS_NAME).is_file()


def test_rerun_applies_overrides_reports_unknown_skus_and_refuses_bad_values(tmp_path, images, dev_keys):
    from flows.rerun import rerun_skus

    catalog, config = _setup(tmp_path, images, n=3)
    out = tmp_path / "out"
    _run(catalog, config, out)
    before = {e["sku"] for e in _events(out)}
    result = rerun_skus(skus=["INC-2", "GHOST"], reason="new season", catalog=str(catalog), config=str(config),
                        out=str(out), prompt="deep navy wall", seed=99, variants=2)
    assert [r["sku"] for r in result["results"]] == ["INC-2"] and result["results"][0]["status"] == "ok"
    assert result["catalog_errors"] == [{"row": 0, "sku": "GHOST", "reason": f"SKU not in catalog {catalog}"}]
    assert result["summary"]["failed"] == 1
    record = json.loads(next(out.glob("products/INC-2-*/INC-2-*.json")).read_text())
    assert record["prompt"] == "deep navy wall" and [v["seed"] for v in record["variants"]] == [99, 100]
    last = _events(out)[-1]
    assert last["sku"] == "INC-2" and last["note"] == "rerun: new season" and before == {"INC-0", "INC-1", "INC-2"}
    for bad, match in (({"variants": 0}, "variants = 0"), ({"seed": -1}, "seed = -1"), ({"prompt": " "}, "prompt"),
                       ({"skus": []}, "at least one SKU"), ({"reason": ""}, "say why")):
        args = {"skus": ["INC-2"], "reason": "x", "catalog": str(catalog), "config": str(config), "out": str(out)}
        with pytest.raises(ValueError, match=match):
            rerun_skus(**{**args, **bad})


def test_result_log_keeps_rows_needing_attention_when_a_run_is_large(tmp_path, monkeypatch):
    from ops import results_log
    from ops.report import write_run_report

    monkeypatch.setattr(results_log, "RETURNED_ROWS", 5)
    log = results_log.ResultLog(tmp_path / "r.jsonl")
    rows = [{"row": 100 - i, "sku": f"S{i}", "status": "cached", "verdict": "pass"} for i in range(20)]
    rows[7] = {"row": 93, "sku": "S7", "status": "failed", "error": "boom"}
    rows[15] = {"row": 85, "sku": "S15", "status": "ok", "verdict": "review", "reasons": ["low matte confidence"]}
    log.append(rows[:10])
    log.append(rows[10:])
    kept = log.returned()
    assert not log.complete and len(kept) == 5 and {"S7", "S15"} <= {r["sku"] for r in kept}
    assert log.summary([])["by_status"] == {"cached": 18, "failed": 1, "ok": 1}
    assert [r["row"] for r in log.rows()] == sorted(r["row"] for r in rows)  # read back in row order
    paths = write_run_report(tmp_path / "run", tmp_path, {"run_id": "r", "catalog": "c", "started_at": "s"},
                             log.rows, [], summary=log.summary([]))
    summary = json.loads(paths["json"].read_text())
    assert [r["row"] for r in summary["results"]] == list(range(81, 101)) and summary["summary"]["processed"] == 20
    log.close()
    assert not (tmp_path / "r.jsonl").exists()
