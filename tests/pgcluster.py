"""A throwaway PostgreSQL cluster on loopback for the tests (Prefect's database, the run state)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).is_file():
            return str(root / name)
    return None


@contextlib.contextmanager
def postgres(tmp: Path, driver: str = "asyncpg") -> Iterator[str]:
    """Yield a `postgresql+<driver>` URL of a fresh cluster (driver "": a plain postgresql:// URL, as
    psycopg takes it); raise RuntimeError (the reason) when none can start."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL's initdb/pg_ctl are not installed")
    try:
        __import__(driver or "psycopg")
    except ImportError:
        raise RuntimeError(f"{driver or 'psycopg'} is not installed (pip install -e '.[dev]')") from None
    data = Path(tempfile.mkdtemp(prefix="pg-", dir=tmp))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as an unprivileged user
        import pwd

        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL")
        pw = pwd.getpwnam(user)
        os.chown(data, pw.pw_uid, pw.pw_gid)
        for parent in [tmp, *tmp.parents]:  # the cluster user must reach its folder
            with contextlib.suppress(OSError):
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
        run_as = ["runuser", "-u", user, "--"] if shutil.which("runuser") else []
        if not run_as:
            raise RuntimeError("running as root and `runuser` is missing")
    port = free_port()
    pgdata = data / "db"
    steps = [
        [*run_as, initdb, "-D", str(pgdata), "-U", "prefect", "--auth=trust", "-E", "UTF8", "--no-sync"],
        [*run_as, pg_ctl, "-D", str(pgdata), "-l", str(data / "pg.log"), "-w", "-t", "60", "-o",
         f"-h 127.0.0.1 -p {port} -k {data} -F", "start"],
    ]
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = (data / "pg.log").read_text(errors="replace")[-1500:] if (data / "pg.log").is_file() else ""
            raise RuntimeError(f"{Path(argv[len(run_as)]).name} failed: {proc.stderr.strip()[-1500:]} {log}")
    try:
        created = subprocess.run([*run_as, _pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(port),
                                  "-U", "prefect", "prefect"], capture_output=True, text=True, timeout=60)
        if created.returncode != 0:
            raise RuntimeError(f"createdb failed: {created.stderr.strip()}")
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        yield f"{scheme}://prefect@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(pgdata), "-m", "immediate", "-w", "stop"], capture_output=True,
                       timeout=60)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
