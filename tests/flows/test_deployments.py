"""Deployments on a real Prefect server: `stage deploy`, workers, reruns through the API, scale-out, the UI.

One SQLite-backed `prefect server` on loopback serves the module: `stage deploy` creates the
process work pool and the deployments of prefect.yaml, two process workers run the flow
runs; headless Chromium opens the UI, where the run report's thumbnails load from `stage
serve-outputs`. A PostgreSQL-backed server runs the same rerun, and the test reads the runs back from
PostgreSQL's own tables (skipped, with the reason, where a cluster cannot be started; failed
instead under CI=true). Marked `server`: `pytest -m server` selects them, CI runs them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from conftest import missing_tool  # tests/ is on sys.path
from prefect_server import free_port, postgres, prefect_server  # tests/flows is on sys.path (rootdir-less test folders)

pytestmark = pytest.mark.server

SCALE_OUT_SKUS = 80


def _catalog(tmp: Path, images: Path, n: int) -> Path:
    """`n` distinct SKUs cycling over the demo photos (copied into tmp)."""
    photos = sorted(images.glob("*.jpg"))
    (tmp / "photos").mkdir(parents=True, exist_ok=True)
    for p in photos:
        shutil.copy(p, tmp / "photos" / p.name)
    lines = ["sku,image,title,category,scene_prompt,seed,variants"]
    lines += [f"SKU-{i:04d},photos/{photos[i % len(photos)].name},Item {i},shoes,,{i},1" for i in range(n)]
    path = tmp / f"catalog-{n}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(tmp: Path) -> Path:
    path = tmp / "config.toml"
    path.write_text('[layout]\nwidth = 256\nheight = 256\n[run]\nbatch_size = 16\n[write]\nformat_copies = []\n',
                    encoding="utf-8")
    return path


def _ledger(out: Path) -> list[dict]:
    with sqlite3.connect(out / "ledger.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM events ORDER BY id")]


def _deploy(srv, pool_limit: int) -> None:
    check = srv.cli("-m", "flows.cli", "deploy", "--check")
    assert "agrees" in check.stdout
    srv.cli("-m", "flows.cli", "deploy", "--pool", "staging", "--pool-limit", str(pool_limit))


@pytest.fixture(scope="module")
def served(tmp_path_factory, images, dev_keys):
    tmp = tmp_path_factory.mktemp("served")
    with prefect_server(tmp) as srv:
        _deploy(srv, pool_limit=2)
        srv.worker("w1", "staging")
        srv.worker("w2", "staging")
        yield srv, tmp


def _rerun(srv, tmp: Path, catalog: Path, config: Path, out: Path) -> tuple[str, dict]:
    params = {"skus": ["SKU-0001", "SKU-0002", "NOT-IN-CATALOG"], "reason": "buyer wants a warmer backdrop",
              "catalog": str(catalog), "config": str(config), "out": str(out), "prompt": "warm terracotta wall",
              "seed": 4242, "variants": 2}
    run_id = srv.create_run("merchandiser-rerun", "rerun", params)
    runs = srv.wait([run_id], timeout=240)
    assert runs[run_id]["state_type"] == "COMPLETED", (runs[run_id]["state"], srv.procs.log("worker-w1"))
    return run_id, runs[run_id]


def _check_rerun(srv, run_id: str, out: Path) -> None:
    for sku in ("SKU-0001", "SKU-0002"):
        record = json.loads(next(out.glob(f"products/{sku}-*/{sku}-*.json")).read_text())
        assert record["sku"] == sku and record["prompt"] == "warm terracotta wall"
        assert [v["seed"] for v in record["variants"]] == [4242, 4243]  # overrides applied: seed and 2 variants
    summary = json.loads(next(p for p in out.glob("runs/*/summary.json")).read_text())
    assert summary["rerun"]["reason"] == "buyer wants a warmer backdrop"
    assert {r["sku"] for r in summary["results"]} == {"SKU-0001", "SKU-0002"}
    assert [e["sku"] for e in summary["catalog_errors"]] == ["NOT-IN-CATALOG"]
    assert "not in catalog" in summary["catalog_errors"][0]["reason"]
    events = _ledger(out)
    assert sorted(e["sku"] for e in events) == ["SKU-0001", "SKU-0002"]
    assert all(e["note"] == "rerun: buyer wants a warmer backdrop" and e["flow_run_id"] == run_id for e in events)
    keys = {a["key"] for a in srv.artifacts(run_id)}
    assert {"staging-progress", "staging-run-counts", "staging-run-failures", "staging-run-timings",
            "staging-run-report"} <= keys
    progress = next(a for a in srv.artifacts(run_id) if a["key"] == "staging-progress")
    assert progress["data"] == 100.0
    logs = srv.wait_for_logs(run_id, "row 4 SKU 'SKU-0002' ok", "'NOT-IN-CATALOG' cannot be rerun")
    assert "row 4 SKU 'SKU-0002' ok" in logs and "'NOT-IN-CATALOG' cannot be rerun" in logs, logs[-3000:]


def test_rerun_deployment_with_parameters_through_the_api(served, images):
    srv, tmp = served
    catalog, config, out = _catalog(tmp / "rerun", images, 5), _config(tmp / "rerun"), tmp / "rerun" / "out"
    run_id, _ = _rerun(srv, tmp, catalog, config, out)
    _check_rerun(srv, run_id, out)


def test_rerun_form_is_typed_and_bad_parameters_are_refused(served):
    srv, _ = served
    dep = srv.get(f"/deployments/{srv.deployment_id('merchandiser-rerun', 'rerun')}").json()
    props = dep["parameter_openapi_schema"]["properties"]
    assert props["skus"]["type"] == "array" and props["skus"]["items"]["type"] == "string"
    assert {"type": "integer"} in props["seed"]["anyOf"] and {"type": "string"} in props["prompt"]["anyOf"]
    assert "Why they are rerun" in props["reason"]["description"]
    assert set(dep["parameter_openapi_schema"]["required"]) == {"skus", "reason", "catalog"}
    assert dep["parameters"]["catalog"] == "catalog/demo.csv"  # prefect.yaml fills the form's catalog
    for field, value in (("skus", "SKU-0001"), ("seed", "not a number"), ("variants", 1.5)):
        params = {"skus": ["SKU-0001"], "reason": "x", field: value}
        bad = srv.http.post(f"/deployments/{dep['id']}/create_flow_run", json={"parameters": params})
        assert bad.status_code == 409 and f"field '{field}'" in bad.text, bad.text


def test_review_deployment_stores_decisions_through_the_api(served, images):
    """A merchandiser's decisions from the UI's form: stored in the output's run state, the SKU that
    cannot be decided named in the run's Failed state, each SKU's outcome in an artifact."""
    from ops.catalog import read_catalog
    from ops.config import load_config
    from ops.context import RunContext
    from ops.runner import process_row
    from ops.workbench import Workbench

    srv, tmp = served
    catalog, config, out = _catalog(tmp / "review", images, 2), _config(tmp / "review"), tmp / "review" / "out"
    bench = Workbench.build(load_config(config))
    for row in read_catalog(catalog).rows:  # staged here: the decisions need the SKUs' records
        assert process_row(bench, row, RunContext(out, "run-1")).status == "ok"
    dep = srv.get(f"/deployments/{srv.deployment_id('review-decisions', 'review')}").json()
    schema = dep["parameter_openapi_schema"]
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject", "reset"]
    assert set(schema["required"]) == {"decision", "reviewer"}  # the SKUs, or a check whose group to decide
    params = {"skus": ["SKU-0000", "SKU-0001", "GHOST"], "decision": "reject", "reviewer": "ana",
              "reason": "backdrop too dark", "config": str(config), "out": str(out)}
    run_id = srv.create_run("review-decisions", "review", params)
    run = srv.wait([run_id], timeout=120)[run_id]
    assert run["state_type"] == "FAILED" and "1 of 3 SKU(s) not decided: GHOST" in run["state"]["message"]
    decisions = json.loads((out / "review" / "state.json").read_text())["decisions"]
    assert sorted((e["sku"], e["decision"], e["by"], e["reason"]) for e in decisions.values()) == [
        ("SKU-0000", "rejected", "ana", "backdrop too dark"), ("SKU-0001", "rejected", "ana", "backdrop too dark")]
    [table] = [a for a in srv.artifacts(run_id) if a["key"] == "review-decisions"]
    assert [r["sku"] for r in json.loads(table["data"])] == ["SKU-0000", "SKU-0001", "GHOST"]


def test_nightly_schedule_comes_from_config(served, repo):
    srv, tmp = served
    dep = srv.get(f"/deployments/{srv.deployment_id('nightly-catalog-run', 'nightly')}").json()
    from ops.config import load_config

    cfg = load_config(repo / "config.toml")
    [sched] = dep["schedules"]
    assert (sched["schedule"]["cron"], sched["schedule"]["timezone"]) == (cfg.schedule.cron, cfg.schedule.timezone)
    # a prefect.yaml that disagrees with config.toml is refused before anything is deployed
    other = tmp / "other.toml"
    other.write_text('[schedule]\ncron = "30 4 * * *"\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    refused = srv.cli("-m", "flows.cli", "deploy", "--check", "--config", str(other), check=False)
    assert refused.returncode == 1 and "'30 4 * * *'" in refused.stderr and "make them agree" in refused.stderr


def test_two_workers_split_an_80_sku_run_and_each_sku_is_processed_once(served, images):
    srv, tmp = served
    catalog, config = _catalog(tmp / "scale", images, SCALE_OUT_SKUS), _config(tmp / "scale")
    out = tmp / "scale" / "out"
    ids = [srv.create_run("nightly-catalog-run", "nightly",
                          {"catalog": str(catalog), "config": str(config), "out": str(out), "shard": i, "shards": 2},
                          run_name=f"scale-shard-{i}") for i in range(2)]
    runs = srv.wait(ids, timeout=420)
    assert all(r["state_type"] == "COMPLETED" for r in runs.values()), {i: r["state"] for i, r in runs.items()}
    events = _ledger(out)
    per_sku = Counter(e["sku"] for e in events)
    assert len(per_sku) == SCALE_OUT_SKUS and set(per_sku.values()) == {1}, per_sku.most_common(3)
    assert all(e["status"] == "ok" for e in events)
    assert {e["worker"] for e in events} == {"w1", "w2"}  # both workers took a shard
    assert {e["flow_run_id"] for e in events} == set(ids)
    assert len(list(out.glob("products/*/*.json"))) == SCALE_OUT_SKUS
    # the same shards again: every SKU unchanged, skipped before any task, nothing new in the ledger
    again = [srv.create_run("nightly-catalog-run", "nightly",
                            {"catalog": str(catalog), "config": str(config), "out": str(out), "shard": i, "shards": 2})
             for i in range(2)]
    assert all(r["state_type"] == "COMPLETED" for r in srv.wait(again, timeout=240).values())
    assert len(_ledger(out)) == SCALE_OUT_SKUS


def test_prefect_ui_shows_the_run_and_its_artifacts(served, images, tmp_path):
    srv, tmp = served
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        missing_tool("Debian chromium is not installed (apt-get install chromium)")
    catalog, config, out = _catalog(tmp / "ui", images, 3), _config(tmp / "ui"), tmp / "ui" / "out"
    base_url = _serve_outputs(srv, out)  # the run's artifact links its thumbnails through it
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f'[previews]\nbase_url = "{base_url}"\n')
    run_id = srv.create_run("nightly-catalog-run", "nightly", {"catalog": str(catalog), "config": str(config),
                                                               "out": str(out)}, run_name="ui-check-run")
    assert srv.wait([run_id], timeout=240)[run_id]["state_type"] == "COMPLETED"
    ui = srv.url.removesuffix("/api")
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def browse(path: str, name: str) -> str:
        profile = tempfile.mkdtemp(dir=tmp_path)
        flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1400,900", "--virtual-time-budget=15000"]
        subprocess.run([*flags, f"--screenshot={shots / name}", ui + path], capture_output=True, timeout=120)
        dom = subprocess.run([*flags, "--dump-dom", ui + path], capture_output=True, text=True, timeout=120)
        (shots / f"{name}.html").write_text(dom.stdout)
        return dom.stdout

    page = browse(f"/runs/flow-run/{run_id}", "flow-run.png")
    assert "ui-check-run" in page and "Completed" in page and "stage-batch" in page, page[-2000:]
    assert "Artifacts" in page and "nightly-catalog-run" in page
    arts = {a["key"]: a["id"] for a in srv.artifacts(run_id)}
    report = browse(f"/artifacts/artifact/{arts['staging-run-report']}", "report-artifact.png")
    assert "staging-run-report" in report and "ui-check-run" in report and "Staging run" in report
    assert f'src="{base_url}products/' in report and "file://" not in report, report[-3000:]
    counts = browse(f"/artifacts/artifact/{arts['staging-run-counts']}", "counts-artifact.png")
    assert "staging-run-counts" in counts and "ui-check-run" in counts and "status:ok" in counts
    assert (shots / "flow-run.png").stat().st_size > 10_000
    # the thumbnails load in the UI's page: each <img> from serve-outputs decoded (naturalWidth > 0)
    thumbs = _loaded_images(chromium, ui + f"/artifacts/artifact/{arts['staging-run-report']}", base_url,
                            tempfile.mkdtemp(dir=tmp_path))
    assert len(thumbs) == 3 and all(w > 0 for _, w in thumbs), (thumbs, srv.procs.log("serve-outputs"))
    assert all(src.startswith(base_url) and src.endswith("/layers/after.jpg") for src, _ in thumbs), thumbs


def _serve_outputs(srv, out: Path) -> str:
    """`stage serve-outputs` on the run's output folder (a background process of the module); its base URL."""
    out.mkdir(parents=True)
    port = free_port()
    srv.procs.start("serve-outputs", [sys.executable, "-m", "flows.cli", "serve-outputs", "--out", str(out),
                                      "--port", str(port)], srv.env)
    deadline = time.monotonic() + 60
    while "read-only" not in srv.procs.log("serve-outputs"):
        assert time.monotonic() < deadline, srv.procs.log("serve-outputs")
        time.sleep(0.2)
    return f"http://127.0.0.1:{port}/"


def _loaded_images(chromium: str, url: str, prefix: str, profile: str, timeout: float = 120) -> list[tuple[str, int]]:
    """(src, naturalWidth) of the images from `prefix` on the page, once each has loaded or failed.

    Headless Chromium driven over its DevTools protocol: the page runs in real time and the script
    reads what the browser decoded, which --dump-dom (markup only) cannot show.
    """
    from websockets.sync.client import connect

    port = free_port()
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                             "--no-first-run", "--disable-background-networking", "--disable-component-update",
                             "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,900",
                             f"--remote-debugging-port={port}", "--remote-allow-origins=*", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    script = (f"JSON.stringify([...document.images].filter(i => i.src.startsWith({json.dumps(prefix)}))"
              ".map(i => [i.src, i.complete, i.naturalWidth]))")
    try:
        deadline = time.monotonic() + timeout
        page = None
        while page is None:
            assert time.monotonic() < deadline, "Chromium's DevTools endpoint did not answer"
            try:
                page = httpx.put(f"http://127.0.0.1:{port}/json/new?{url}", timeout=5).json()
            except httpx.HTTPError:
                time.sleep(0.5)
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            for n in itertools.count(1):
                ws.send(json.dumps({"id": n, "method": "Runtime.evaluate",
                                    "params": {"expression": script, "returnByValue": True}}))
                reply = json.loads(ws.recv(timeout=30))
                while reply.get("id") != n:  # events of the page in between
                    reply = json.loads(ws.recv(timeout=30))
                images = json.loads(reply["result"]["result"]["value"])
                if (images and all(done for _, done, _ in images)) or time.monotonic() > deadline:
                    return [(src, width) for src, _, width in images]
                time.sleep(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    raise AssertionError("unreachable")


def test_postgres_backed_server_runs_the_same_rerun(tmp_path, images, dev_keys):
    try:
        pg = postgres(tmp_path)
        url = pg.__enter__()
    except RuntimeError as exc:
        missing_tool(f"PostgreSQL cannot be started here: {exc}")
    try:
        with prefect_server(tmp_path / "srv", database_url=url) as srv:
            _deploy(srv, pool_limit=1)
            srv.worker("w1", "staging")
            catalog, config, out = _catalog(tmp_path / "rr", images, 5), _config(tmp_path / "rr"), tmp_path / "rr" / "out"
            run_id, _ = _rerun(srv, tmp_path, catalog, config, out)
            _check_rerun(srv, run_id, out)
            stored = _pg_flow_runs(url)
            assert stored.get(run_id) == ("merchandiser-rerun", "COMPLETED"), stored  # in PostgreSQL, not a SQLite file
            assert not list((tmp_path / "srv").rglob("*.db")), "the server kept a SQLite database beside PostgreSQL"
    finally:
        pg.__exit__(None, None, None)


def _pg_flow_runs(url: str) -> dict[str, tuple[str, str]]:
    """Flow run id -> (flow name, state type), read from the server's PostgreSQL tables directly."""
    import asyncio

    import asyncpg

    async def read() -> list:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return await conn.fetch("SELECT fr.id::text AS id, f.name AS flow, fr.state_type::text AS state "
                                    "FROM flow_run fr JOIN flow f ON f.id = fr.flow_id")
        finally:
            await conn.close()

    return {r["id"]: (r["flow"], r["state"]) for r in asyncio.run(read())}


def _done(out: Path) -> int:
    """Products the ledger has (each is recorded the moment it is done); 0 before it exists."""
    try:
        return len(_ledger(out)) if (out / "ledger.sqlite").is_file() else 0
    except sqlite3.OperationalError:  # created, tables not yet
        return 0


def _cancel(srv, flow_run_id: str) -> None:
    """What the UI's Cancel button does: the run goes to Cancelling."""
    r = srv._patient("POST", f"/flow_runs/{flow_run_id}/set_state", read_only=False, json={
        "state": {"type": "CANCELLING", "name": "Cancelling", "message": "cancelled by an operator"}, "force": True})
    assert r.status_code in (200, 201), r.text


def test_cancelling_a_deployment_run_stops_it_and_the_worker_takes_the_next_run(served, images):
    srv, tmp = served
    skus = 400
    catalog, config, out = _catalog(tmp / "cancel", images, skus), _config(tmp / "cancel"), tmp / "cancel" / "out"
    run_id = srv.create_run("nightly-catalog-run", "nightly", {"catalog": str(catalog), "config": str(config),
                                                               "out": str(out)}, run_name="cancel-me")
    deadline = time.monotonic() + 240
    while _done(out) < 4:
        assert srv.get(f"/flow_runs/{run_id}").json()["state_type"] in ("SCHEDULED", "PENDING", "RUNNING")
        assert time.monotonic() < deadline, srv.procs.log("worker-w1") + srv.procs.log("worker-w2")
        time.sleep(0.5)
    _cancel(srv, run_id)
    run = srv.wait([run_id], timeout=120)[run_id]
    assert run["state_type"] == "CANCELLED", (run["state"], srv.procs.log("worker-w1"), srv.procs.log("worker-w2"))
    summary = json.loads(next(out.glob("runs/*/summary.json")).read_text())
    done = {e["sku"] for e in _ledger(out)}
    assert summary["state"] == "stopped" and summary["stop"]["not_done"]
    assert "cancelled in Prefect" in summary["stop"]["reason"]  # the worker's SIGTERM is known as a cancel
    assert set(summary["stop"]["not_done"]) == {f"SKU-{i:04d}" for i in range(skus)} - done
    assert summary["stop"]["abandoned"] == []  # products in progress finished within the bound
    with sqlite3.connect(out / "ledger.sqlite") as db:
        assert [r[0] for r in db.execute("SELECT state FROM runs")] == ["stopped"]
    assert all(p.poll() is None for p in srv.procs.procs)  # server and both workers still up
    _, _ = _rerun(srv, tmp, catalog, config, tmp / "cancel" / "after")  # and the next run is taken and completes


def test_cancelling_a_command_line_run_in_prefect_stops_it(served, images, tmp_path):
    """`stage run` against a server has no worker to signal it: the run watches its own state."""
    from flows.exitcodes import EXIT_STOPPED
    from runs import Run, ledger_rows, no_process_left

    srv, _ = served
    r = Run(tmp_path, images, 24)
    try:
        r.start(slow_s=1.5, base_env=srv.env)
        r.wait_until("two finished products", lambda: len(r.done()) >= 2)
        flow_run_id = ledger_rows(r.out, "SELECT flow_run_id FROM runs")[0][0]
        _cancel(srv, flow_run_id)
        assert r.finish(timeout=90) == EXIT_STOPPED, r.text()
        assert srv.get(f"/flow_runs/{flow_run_id}").json()["state_type"] == "CANCELLED"
        summary = r.summary()
        assert summary["stop"]["reason"] == "cancelled in Prefect" and summary["stop"]["not_done"]
        assert no_process_left(r.mark) == []
    finally:
        r.cleanup()


def test_stage_serve_serves_both_flows_on_one_machine(served, images):
    """Last in this module: `stage serve` takes over the deployment names that prefect.yaml defined."""
    srv, tmp = served
    catalog, config, out = _catalog(tmp / "serve", images, 2), _config(tmp / "serve"), tmp / "serve" / "out"
    for flow, name in (("merchandiser-rerun", "rerun"), ("nightly-catalog-run", "nightly")):
        srv._patient("DELETE", f"/deployments/{srv.deployment_id(flow, name)}", read_only=False).raise_for_status()
    srv.procs.start("serve", [sys.executable, "-m", "flows.cli", "serve", "--catalog", str(catalog), "--config",
                              str(config), "--limit", "1"], {**srv.env, "STAGE_WORKER": "served"})
    deadline = time.monotonic() + 180
    while True:  # serve() re-creates both deployments without a work pool
        dep = srv.get("/deployments/name/merchandiser-rerun/rerun").json()
        if dep.get("parameters", {}).get("catalog") == str(catalog):
            assert dep["work_pool_name"] is None  # served by the `stage serve` process itself
            break
        assert time.monotonic() < deadline, srv.procs.log("serve")
        time.sleep(1)
    nightly = srv.get("/deployments/name/nightly-catalog-run/nightly").json()
    from ops.config import load_config

    want = load_config(config).schedule
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in nightly["schedules"]] == [(want.cron, want.timezone)]
    run_id = srv.create_run("merchandiser-rerun", "rerun", {"skus": ["SKU-0001"], "reason": "served", "out": str(out)})
    assert srv.wait([run_id], timeout=240)[run_id]["state_type"] == "COMPLETED", srv.procs.log("serve")
    assert [(e["sku"], e["worker"]) for e in _ledger(out)] == [("SKU-0001", "served")]
