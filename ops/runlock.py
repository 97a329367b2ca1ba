"""One run at a time per output folder: a `flock` on `<out>/.lock`, and a lock per SKU."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ops.config import Config
from stages.errors import StagingError

LOCK_NAME = ".lock"
SKU_LOCKS_NAME = ".sku-locks"


class RunLockedError(StagingError):
    """Another run holds the output folder."""


def output_root(cfg: Config, out: str | os.PathLike[str] | None) -> Path:
    """The run's local output folder: `out` when given, else `[run].output_dir` of the config (for an
    object-store URL, this worker's scratch folder: `ops.location`)."""
    return cfg.output_location(out).root


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


def _lock_fd(path: Path, what: str) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise StagingError(f"cannot create the {what} file {path}: {exc.strerror or exc}") from None


def _try_flock(fd: int, path: Path, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StagingError(f"cannot lock {path}: {exc.strerror or exc}") from None
        return False
    return True


def _stamp(fd: int, extra: str = "") -> None:
    since = datetime.now(UTC).isoformat(timespec="seconds")
    info = f"pid={os.getpid()} host={socket.gethostname()} since={since}{extra}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)


@contextlib.contextmanager
def hold(out_root: Path, shared: str | None = None) -> Iterator[Path]:
    """Hold the output folder's lock for the block; raise RunLockedError at once if it is taken.

    `shared` names a run that may run beside others of its kind (e.g. "shard-1-of-2", "rerun"):
    the folder lock is then held shared, and `<out>/.lock-<shared>` exclusively, so that the
    same shard cannot run twice. Such runs must also lock each SKU they process (`SkuLocks`).

    The lock belongs to the open file, so the kernel releases it when the holder exits for any
    reason (including SIGKILL): there is no stale lock to clean up. A second run does not wait:
    it fails at once with `RunLockedError`, naming the holder's pid, host and start time, which
    the holder writes into the lock file once it has the lock. Runs that may share a folder (the
    shards of one catalog on several workers, a rerun of a few SKUs) hold the folder lock shared:
    a full run is refused while they run and they are refused while it runs; `SkuLocks` keeps
    them off each other's SKUs.
    """
    path = out_root / LOCK_NAME
    fd = _lock_fd(path, "lock")
    own_fd = -1
    try:
        if not _try_flock(fd, path, fcntl.LOCK_SH if shared else fcntl.LOCK_EX):
            raise RunLockedError(
                f"output folder {out_root} is in use by another run ({_holder(fd)}); "
                "wait for it to finish or choose another --out"
            )
        if shared is None:
            _stamp(fd)
        else:
            own = out_root / f"{LOCK_NAME}-{shared}"
            own_fd = _lock_fd(own, "lock")
            if not _try_flock(own_fd, own, fcntl.LOCK_EX):
                raise RunLockedError(f"{shared} of output folder {out_root} is already running ({_holder(own_fd)})")
            _stamp(own_fd)
        yield path
    finally:
        if own_fd >= 0:
            os.close(own_fd)
        os.close(fd)  # releases the lock


class SkuLocks:
    """Per-SKU exclusive locks between processes: a byte-range lock on one file per output folder.

    POSIX record locks belong to the process, and closing any descriptor of the file drops
    them all, so one descriptor per folder is kept open for the life of the process; threads
    of one run never contend (a run holds each SKU once).
    """

    _fds: dict[str, int] = {}
    _guard = threading.Lock()

    def __init__(self, out_root: Path) -> None:
        path = (Path(out_root) / SKU_LOCKS_NAME).resolve()
        with self._guard:
            if str(path) not in self._fds:
                self._fds[str(path)] = _lock_fd(path, "SKU lock")
            self.fd = self._fds[str(path)]

    @staticmethod
    def _offset(sku: str) -> int:
        return int.from_bytes(hashlib.sha256(sku.encode("utf-8", "surrogateescape")).digest()[:7], "big")

    @contextlib.contextmanager
    def hold(self, sku: str) -> Iterator[bool]:
        """Yield True while this process holds `sku`; False (nothing held) when another process has it."""
        offset = self._offset(sku)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, offset)


def ensure_free(out_root: Path) -> None:
    """Raise RunLockedError if another run holds the folder now (a quick check before a slow start)."""
    with hold(out_root):
        pass
