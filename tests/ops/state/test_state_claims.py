"""SKU claims between processes: one holder per SKU, a dead holder's claim taken once it lapses."""

from __future__ import annotations

import signal
import time

import pytest
import statekit
from statekit import LEASE_S, start_holder, wait_ready

HOLD_SKU = """
    with state.claims.hold(sys.argv[2]) as mine:
        print("ready" if mine else "refused", flush=True)
        time.sleep(60)
"""

backend, env, state = statekit.backend, statekit.env, statekit.state  # fixtures


def _holder(state, env, sku):
    proc = start_holder(state.location, env, HOLD_SKU.replace("sys.argv[2]", repr(sku)))
    wait_ready(proc)
    return proc


def test_one_process_holds_a_sku_and_releases_it(state):
    with state.claims.hold("SHOE-1") as mine, state.claims.hold("CAP-2") as other:
        assert mine and other
    with state.claims.hold("SHOE-1") as again:
        assert again  # released on exit


def test_two_processes_contend_for_one_sku(state, env):
    holder = _holder(state, env, "SHOE-1")
    try:
        time.sleep(2.5 * LEASE_S)  # longer than the lease: the holder's heartbeat keeps its claim
        with state.claims.hold("SHOE-1") as mine:
            assert not mine
        start = time.monotonic()
        with state.claims.hold_waiting("SHOE-1") as mine:
            assert not mine  # a live holder keeps it however long one waits ...
        assert time.monotonic() - start >= state.claims.lapse_s  # ... after waiting out a dead holder's lease
        with state.claims.hold("CAP-2") as mine:
            assert mine  # other SKUs are free
    finally:
        holder.terminate()
        holder.wait()


def test_a_killed_holders_claim_is_taken_after_its_lease(state, env, backend):
    """A SIGKILLed worker never releases its claim: the lease lapses (PostgreSQL), the kernel drops the lock
    (files). `hold_waiting`, what a run uses, waits it out instead of failing the SKU."""
    holder = _holder(state, env, "SHOE-1")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    killed = time.monotonic()
    with state.claims.hold_waiting("SHOE-1") as mine:
        taken = time.monotonic() - killed
        assert mine, "the claim of a SIGKILLed holder was never taken"
    if backend == "postgres":  # a lease: not before it lapses (the kernel drops a flock at once)
        assert state.claims.lapse_s == LEASE_S and taken <= LEASE_S + 1.5
    else:
        assert state.claims.lapse_s == 0 and taken < 1.0


@pytest.mark.server
def test_postgres_claim_rows_are_removed_on_release(postgres_url, tmp_path):
    import psycopg

    from ops.config import StateOptions
    from ops.state import open_state

    st = open_state(str(tmp_path), StateOptions(claim_lease_s=LEASE_S), {"STAGE_DATABASE_URL": postgres_url})
    with st.claims.hold("ROW-1") as mine:
        assert mine
        with psycopg.connect(postgres_url) as db:
            held = db.execute("SELECT host, pid, expires_at > now() FROM stage_claims WHERE location = %s AND sku = %s",
                              (str(tmp_path), "ROW-1")).fetchall()
        assert len(held) == 1 and held[0][2]
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM stage_claims WHERE location = %s", (str(tmp_path),)).fetchone()[0] == 0
