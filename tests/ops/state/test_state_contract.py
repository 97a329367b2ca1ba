"""The same assertions against every run-state backend: ledger, run lock, review decisions, opening."""

from __future__ import annotations

import concurrent.futures
import os
import time

import pytest
import statekit
from statekit import start_holder, wait_ready

from ops.config import StateOptions
from ops.ledger import EVENT_COLUMNS, RUN_COLUMNS, Current
from ops.state import RunLockedError, open_state
from stages.errors import StagingError

backend, env, state = statekit.backend, statekit.env, statekit.state  # fixtures


def _result(sku: str, status: str = "ok", row: int = 1, **extra) -> dict:
    base = {"sku": sku, "row": row, "status": status, "verdict": "pass" if status == "ok" else None,
            "reasons": [], "record": f"products/{sku}/{sku}.json", "output": f"products/{sku}/{sku}.png",
            "error": None}
    return base | extra


def test_ledger_records_runs_events_and_current_outputs(state):
    assert not state.has_ledger()
    ledger = state.ledger
    ledger.start_run("run-1", flow_run_id="f-1", note="nightly")
    n = ledger.append("run-1", [
        _result("A-1", timings_ms={"matte": 12.5}, cost={"total": 0.002, "currency": "USD"}),
        _result("B-2", "failed", row=2, error="photo unreadable"),
        _result("C-3", "cached", row=3),  # nothing done: no event
        _result("D-4", "stopped", row=4),  # nothing written: no event
    ], keys={"A-1": "key-a1", "B-2": "key-b2"}, flow_run_id="f-1", note="nightly")
    assert n == 2
    assert state.has_ledger()
    ledger.end_run("run-1", "completed", cost=0.002, currency="USD")
    ledger.start_run("run-2")
    ledger.append("run-2", [_result("A-1", reasons=["soft shadow"], verdict="review", cache_key="key-a1b")])
    ledger.end_run("run-2", "stopped", reason="SIGTERM", not_done=3)
    with pytest.raises(ValueError, match="run state"):
        ledger.end_run("run-2", "exploded")

    runs = ledger.runs()
    assert [r["run_id"] for r in runs] == ["run-1", "run-2"]
    assert list(runs[0]) == list(RUN_COLUMNS)
    assert runs[0]["state"] == "completed" and runs[0]["cost"] == 0.002 and runs[0]["pid"] == os.getpid()
    assert (runs[1]["state"], runs[1]["reason"], runs[1]["not_done"]) == ("stopped", "SIGTERM", 3)
    assert runs[1]["ended_at"] >= runs[1]["started_at"]

    events = ledger.events()
    assert list(events[0]) == ["id", *EVENT_COLUMNS]
    assert [(e["run_id"], e["sku"], e["status"]) for e in events] == [
        ("run-1", "A-1", "ok"), ("run-1", "B-2", "failed"), ("run-2", "A-1", "ok")]
    first = events[0]
    assert (first["cache_key"], first["timings_ms"], first["cost"], first["currency"], first["note"]) == (
        "key-a1", '{"matte": 12.5}', 0.002, "USD", "nightly")
    assert events[1]["error"] == "photo unreadable" and events[1]["row"] == 2
    assert [e["sku"] for e in ledger.events(["run-2"])] == ["A-1"]
    assert ledger.events(["no-such-run"]) == []

    assert ledger.current() == {"A-1": Current("A-1", "key-a1b", "ok", "review", ["soft shadow"],
                                               "products/A-1/A-1.json", "products/A-1/A-1.png", "run-2")}
    assert ledger.current(["B-2"]) == {}
    assert ledger.current(["A-1", "B-2", "no-such-sku"]) == ledger.current()  # a run asks per chunk of rows
    assert ledger.current([]) == {}


def test_ledger_remembers_source_digests(state):
    ledger = state.ledger
    assert ledger.source_digests() == {}
    ledger.remember_sources([("/photos/a.jpg", 10, 111, "aa"), ("/photos/b.jpg", 20, 222, "bb")])
    ledger.remember_sources([("/photos/a.jpg", 11, 333, "a2")])  # the photo changed: replaced
    ledger.remember_sources([])
    assert ledger.source_digests() == {"/photos/a.jpg": (11, 333, "a2"), "/photos/b.jpg": (20, 222, "bb")}
    assert ledger.source_digests(["/photos/b.jpg", "/photos/c.jpg"]) == {"/photos/b.jpg": (20, 222, "bb")}
    assert ledger.source_digests([]) == {}
    many = [f"/photos/{i}.jpg" for i in range(1200)]  # more than one statement's worth of parameters
    ledger.remember_sources([(p, i, i, f"h{i}") for i, p in enumerate(many)])
    assert ledger.source_digests(many + ["/photos/a.jpg"]) == {
        **{p: (i, i, f"h{i}") for i, p in enumerate(many)}, "/photos/a.jpg": (11, 333, "a2")}


def test_ledger_takes_appends_from_many_threads(state):
    """A run's batch tasks are threads sharing the process's state object."""
    state.ledger.start_run("run-t")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda i: state.ledger.append("run-t", [_result(f"T-{i}", row=i)]), range(40)))
    assert sum(counts) == 40
    assert {e["sku"] for e in state.ledger.events(["run-t"])} == {f"T-{i}" for i in range(40)}


def test_run_lock_is_exclusive_unless_shared(state):
    """Each `run_lock` takes the lock anew (its own connection or open file), as another process would."""
    with state.run_lock():
        with pytest.raises(RunLockedError, match=rf"in use by another run \(pid {os.getpid()}"):
            with state.run_lock():
                pass
        with pytest.raises(RunLockedError, match="in use by another run"):
            with state.run_lock(shared="rerun"):
                pass
        with pytest.raises(RunLockedError):
            state.ensure_free()
    state.ensure_free()  # released on exit
    with state.run_lock(shared="shard-0-of-2"), state.run_lock(shared="shard-1-of-2"), state.run_lock(shared="rerun"):
        with pytest.raises(RunLockedError, match="shard-0-of-2 of output .* is already running"):
            with state.run_lock(shared="shard-0-of-2"):
                pass
        with pytest.raises(RunLockedError, match="in use by another run"):
            state.ensure_free()  # a full run waits for the shards
    state.ensure_free()


def test_run_lock_of_a_killed_holder_is_released(state, env):
    holder = start_holder(state.location, env, """
        with state.run_lock():
            print("ready", flush=True)
            time.sleep(60)
    """)
    try:
        wait_ready(holder)
        with pytest.raises(RunLockedError, match=rf"pid {holder.pid}"):
            state.ensure_free()
    finally:
        holder.kill()
        holder.wait()
    for _ in range(50):  # the server notices the dropped connection within moments
        try:
            state.ensure_free()
            break
        except RunLockedError:
            time.sleep(0.1)
    else:
        pytest.fail("the run lock of a SIGKILLed holder was not released")


def test_review_decisions_round_trip(state):
    review = state.review
    assert review.all() == {} and review.get("shoe-1") is None
    entry = {"sku": "SHOE-1", "decision": "approved", "reason": "", "by": "merch", "reasons_then": ["soft"]}
    review.decide("shoe-1", entry)
    review.decide("cap-2", {"sku": "CAP-2", "decision": "rejected", "reason": "logo"})
    assert review.get("shoe-1") == entry
    review.decide("shoe-1", {**entry, "decision": "rejected", "reason": "colour"})  # replaced
    assert review.get("shoe-1")["decision"] == "rejected"
    assert set(review.all()) == {"shoe-1", "cap-2"}
    assert review.reset("shoe-1") and not review.reset("shoe-1")
    assert set(review.all()) == {"cap-2"}


def test_review_decisions_are_stored_and_forgotten_as_a_group(state):
    review = state.review
    review.decide("hat-9", {"sku": "HAT-9", "decision": "rejected", "reason": "logo"})
    review.decide_all({f"sku-{i}": {"sku": f"SKU-{i}", "decision": "approved"} for i in range(40)}
                      | {"hat-9": {"sku": "HAT-9", "decision": "approved"}})
    assert len(review.all()) == 41 and review.get("hat-9")["decision"] == "approved"
    review.decide_all({})
    assert review.reset_all(["sku-3", "nope", "sku-3", "sku-7"]) == ["sku-3", "sku-7"]
    assert len(review.all()) == 39 and review.get("sku-3") is None
    assert review.reset_all([]) == []


def test_locations_are_kept_apart(state, env, tmp_path):
    other = open_state(str((tmp_path / "elsewhere").resolve()), StateOptions(), env)
    state.ledger.start_run("run-1")
    state.ledger.append("run-1", [_result("A-1")])
    state.review.decide("a-1", {"sku": "A-1", "decision": "approved"})
    assert other.ledger.runs() == [] and other.ledger.current() == {} and other.review.all() == {}
    with state.run_lock():
        other.ensure_free()


def test_open_state_picks_the_backend_and_keeps_one_per_location(tmp_path, monkeypatch):
    where = str(tmp_path / "out")
    monkeypatch.delenv("STAGE_DATABASE_URL", raising=False)
    assert open_state(where).backend == "files"
    assert open_state(where) is open_state(where)
    with pytest.raises(StagingError, match="needs PostgreSQL; set STAGE_DATABASE_URL"):
        open_state("s3://bucket/staged")
    with pytest.raises(StagingError, match="set MY_DB"):
        open_state("s3://bucket/staged", StateOptions(database_url_env="MY_DB"))
    pytest.importorskip("psycopg")
    pg = open_state(where, environ={"STAGE_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db"})
    assert pg.backend == "postgres" and "secret" not in pg.describe()
    with pytest.raises(StagingError, match="cannot reach the run-state database postgresql://u@127.0.0.1:1/db"):
        pg.check()


def test_postgres_state_tables_are_prefixed(postgres_url, tmp_path):
    pytest.importorskip("psycopg")
    import psycopg

    open_state(str(tmp_path), environ={"STAGE_DATABASE_URL": postgres_url}).ledger.runs()
    with psycopg.connect(postgres_url) as db:
        tables = {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'stage_%'")}
    assert tables == {"stage_events", "stage_runs", "stage_sources", "stage_claims", "stage_review"}


def test_review_commands_keep_decisions_in_the_state(state, tmp_path):
    """`stage review` approve/reject/reset go through the location's state (no file with PostgreSQL)."""
    from ops import review
    from ops.paths import ProductPaths

    out = tmp_path / "out"
    paths = ProductPaths.of(out, "SHOE-1")
    paths.folder.mkdir(parents=True)
    (paths.folder / "SHOE-1.png").write_bytes(b"png")
    paths.record.write_text('{"sku": "SHOE-1", "verdict": "review", "reasons": ["cropped: runs off"], '
                            '"output": "SHOE-1.png", "source_sha256": "s1", "row_digest": "r1"}')
    entry = review.decide(out, "SHOE-1", "approved", by="merch", state=state)
    assert state.review.get(paths.slug) == entry and entry["verdict_then"] == "review"
    assert [i["decision"]["decision"] for i in review.queue(out, ("review",), state=state)] == ["approved"]
    assert (out / "review" / "state.json").is_file() == (state.backend == "files")
    assert review.reset(out, "SHOE-1", state=state) and not review.reset(out, "SHOE-1", state=state)
    assert review.queue(out, ("review",), state=state)[0]["decision"] is None


@pytest.mark.parametrize(("table", "message"), [
    ({"database_url_env": "postgresql://u:p@h/db"}, "must name an environment variable"),
    ({"claim_lease_s": 1}, r"claim_lease_s = 1\.0: must be 5\.\.3600"),
])
def test_state_config_is_checked(table, message):
    from ops.config import load_config
    from stages.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(None, {"state": table})
