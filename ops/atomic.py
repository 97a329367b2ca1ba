"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one.

Every file is written under a hidden temp name beside its target (`.<name>.<random>.tmp`),
flushed to disk and renamed into place. A process killed mid-write leaves at most such a temp
file behind, never a partial file under a published name; `remove_stale_temps` clears them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from stages.errors import StageError

# mkstemp(prefix=".<name>.", suffix=".tmp") names: 8 random characters from [a-z0-9_].
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


class WriteError(StageError, OSError):
    """A file could not be written (disk full, permissions, I/O error); nothing was published.

    Also an OSError, so callers that handle file-system errors keep working.
    """


def _write_error(path: Path, exc: OSError) -> WriteError:
    code = errno.errorcode.get(exc.errno or 0, "")
    detail = exc.strerror or str(exc)
    return WriteError(exc.errno, f"cannot write {path}: {detail}" + (f" ({code})" if code else ""))


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable across a power cut; best effort (not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp makes owner-only files; published outputs get the usual mode (0644 under umask 022)
# so that a web server or a sync job running as another user can read them.
FILE_MODE = 0o666 & ~_current_umask()


def _temp_beside(path: Path, data: bytes) -> str:
    """Write `data` to a new temp file beside `path`, flushed to disk; returns its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def write_bytes(path: Path, data: bytes) -> None:
    _replace_with(path, data)
    _fsync_dir(path.parent)


def _replace_with(path: Path, data: bytes) -> None:
    """The atomic part of write_bytes: the file is durable, its rename not yet."""
    tmp = None
    try:
        tmp = _temp_beside(path, data)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, WriteError):
            raise
        raise _write_error(path, exc) from exc
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def write_files(files: Mapping[Path, bytes]) -> None:
    """write_bytes for several files, each replaced atomically, with one directory sync per folder
    after the last rename (not one per file): when this returns, all of them are durable."""
    for path, data in files.items():
        _replace_with(path, data)
    for folder in dict.fromkeys(path.parent for path in files):
        _fsync_dir(folder)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def staged_file(path: Path, data: bytes) -> Iterator[Path]:
    """Write `data` beside `path` under a temp name and yield that temp path for checks.

    The file is renamed into place only when the block finishes without an error, so a file
    that fails its checks is never visible under its published name.
    """
    try:
        tmp = _temp_beside(path, data)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(path, exc) from exc
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def is_temp_name(name: str) -> bool:
    """True for the names this module gives its temp files."""
    return bool(TEMP_NAME.match(name))


def remove_stale_temps(folder: Path, older_than: float) -> list[Path]:
    """Delete temp files under `folder` last modified before `older_than` (a time.time() value).

    Temps are left only by a writer that was killed; a live writer's temp is newer than the
    run that owns the folder, so passing that run's start time never removes one in use.
    Returns what was removed; a folder that does not exist has none.
    """
    removed: list[Path] = []
    for parent, _dirs, files in os.walk(folder):  # does not follow links out of the folder
        for name in files:
            if not is_temp_name(name):
                continue
            entry = Path(parent, name)
            try:
                st = entry.lstat()
                if stat.S_ISREG(st.st_mode) and st.st_mtime < older_than:
                    entry.unlink()
                    removed.append(entry)
            except FileNotFoundError:
                continue
    return removed


def write_chunks(path: Path, chunks: Iterable[str]) -> None:
    """Like write_text, for text made piece by piece (a large report is never held whole in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise _write_error(path, exc) from exc
        raise
    _fsync_dir(path.parent)
