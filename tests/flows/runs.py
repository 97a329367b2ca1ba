"""A `stage run` in its own process, slowed down, with a marker that finds what it leaves in the process table."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
SLOW_STAGE = HERE / "slow_stage.py"
PHOTOS = sorted(p.name for p in (HERE.parent.parent / "catalog" / "images").glob("*.jpg"))


def marked(mark: str) -> list[int]:
    """Pids of live processes whose environment carries `mark` (started by the run, at any depth)."""
    needle = f"STAGE_TEST_RUN_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat[stat.rindex(")") + 2] != "Z":  # a zombie has ended; its parent reaps it
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


PROC_TABLE = Path("/proc/self/environ").exists()  # `marked` reads Linux's process table


def no_process_left(mark: str, within_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while (left := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def ledger_rows(out: Path, query: str) -> list[tuple]:
    if not (out / "ledger.sqlite").is_file():
        return []
    with sqlite3.connect(out / "ledger.sqlite", timeout=30) as db:
        return list(db.execute(query))


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


class Run:
    """One `stage run` of `skus` products in `tmp`, in its own session, with a process marker."""

    def __init__(self, tmp: Path, images: Path, skus: int, stop_timeout_s: float = 60.0) -> None:
        self.tmp, self.out, self.mark = tmp, tmp / "out", uuid.uuid4().hex
        (tmp / "photos").mkdir(parents=True, exist_ok=True)
        for name in PHOTOS:
            shutil.copy(images / name, tmp / "photos" / name)
        lines = ["sku,image,title,category"]
        lines += [f"STOP-{i:03d},photos/{PHOTOS[i % len(PHOTOS)]},Item {i},shoes" for i in range(skus)]
        (tmp / "catalog.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.skus = [f"STOP-{i:03d}" for i in range(skus)]
        (tmp / "config.toml").write_text(
            f"[layout]\nwidth = 256\nheight = 256\n[run]\nbatch_size = 2\nworkers = 2\n"
            f"stop_timeout_s = {stop_timeout_s}\n[write]\nformat_copies = []\n", encoding="utf-8")
        self.proc: subprocess.Popen | None = None

    def env(self, slow_s: float, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**(base or os.environ), "COLUMNS": "1000", "STAGE_TEST_SLOW_S": str(slow_s),
                "STAGE_TEST_RUN_MARK": self.mark}

    def argv(self) -> list[str]:
        return ["run", "catalog.csv", "--config", "config.toml", "--out", "out", "--quiet"]

    def start(self, slow_s: float, base_env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start the run; `base_env` instead of this process's environment (e.g. a Prefect server's)."""
        self.log = (self.tmp / "run.log").open("w")
        self.proc = subprocess.Popen([sys.executable, str(SLOW_STAGE), *self.argv()], cwd=self.tmp, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env(slow_s, base_env), start_new_session=True)
        return self.proc

    def text(self) -> str:
        return (self.tmp / "run.log").read_text(errors="replace")[-4000:]

    def done(self) -> list[str]:
        """SKUs in the ledger (each is recorded the moment it is done)."""
        return [r[0] for r in ledger_rows(self.out, "SELECT sku FROM events")]

    def wait_until(self, what: str, ready, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"the run ended before {what}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout} s:\n{self.text()}"
            time.sleep(0.1)

    def started_staging(self) -> bool:
        return bool(ledger_rows(self.out, "SELECT run_id FROM runs WHERE state = 'running'"))

    def finish(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()

    def summary(self) -> dict:
        return json.loads(next(self.out.glob("runs/*/summary.json")).read_text())

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        for pid in marked(self.mark):
            os.kill(pid, signal.SIGKILL)


