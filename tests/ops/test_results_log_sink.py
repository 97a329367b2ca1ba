"""ops.results_log.LogSink: batch tasks append to the run's log until the run closes the sink."""

from __future__ import annotations

from ops.results_log import LogSink, ResultLog


def _row(n: int, status: str = "ok") -> dict:
    return {"row": n, "sku": f"S{n}", "status": status, "verdict": "pass", "reasons": [], "timings_ms": {"load": 1.0}}


def test_sink_appends_to_the_log_until_closed(tmp_path):
    log = ResultLog(tmp_path / "run.jsonl")
    try:
        sink = LogSink(log)
        sink.append([_row(3), _row(2)])
        assert log.count == 2 and log.rows_seen() == {2, 3}
        sink.close()
        sink.append([_row(4)])  # e.g. a product an abandoned batch finished after the stop
        assert log.count == 2 and [r["row"] for r in log.rows()] == [2, 3]
    finally:
        log.close()
