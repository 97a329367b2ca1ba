"""One run at a time per output folder: an exclusive `flock` on `<out>/.lock`.

The lock belongs to the open file, so the kernel releases it when the holder exits for any
reason (including SIGKILL): there is no stale lock to clean up. A second run does not wait:
it fails at once with `RunLockedError`, naming the holder's pid, host and start time, which
the holder writes into the lock file once it has the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from stages.config import Config
from stages.errors import StagingError

LOCK_NAME = ".lock"


class RunLockedError(StagingError):
    """Another run holds the output folder."""


def output_root(cfg: Config, out: str | os.PathLike[str] | None) -> Path:
    """The run's output folder: `out` when given, else `[run].output_dir` of the config."""
    return Path(out).resolve() if out else cfg.resolve(cfg.run.output_dir).resolve()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    if "pid" not in fields:
        return "a process that has not yet written its pid"
    where = f" on host {fields['host']}" if fields.get("host") else ""
    since = f", running since {fields['since']}" if fields.get("since") else ""
    return f"pid {fields['pid']}{where}{since}"


@contextlib.contextmanager
def hold(out_root: Path) -> Iterator[Path]:
    """Hold the output folder's lock for the block; raise RunLockedError at once if it is taken."""
    path = out_root / LOCK_NAME
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise StagingError(f"cannot create the lock file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StagingError(f"cannot lock {path}: {exc.strerror or exc}") from None
            raise RunLockedError(
                f"output folder {out_root} is in use by another run ({_holder(fd)}); "
                "wait for it to finish or choose another --out"
            ) from None
        since = datetime.now(UTC).isoformat(timespec="seconds")
        info = f"pid={os.getpid()} host={socket.gethostname()} since={since}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def ensure_free(out_root: Path) -> None:
    """Raise RunLockedError if another run holds the folder now (a quick check before a slow start)."""
    with hold(out_root):
        pass
