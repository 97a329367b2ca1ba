"""Crash-safe writes, stale temp clean-up, the output-folder lock and report escaping."""

from __future__ import annotations

import csv
import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops import atomic
from ops.atomic import WriteError, is_temp_name, remove_stale_temps, staged_file, write_bytes, write_files
from stages.errors import StagingError
from ops.report import ReportError, csv_safe, printable, write_run_report
from ops.runlock import RunLockedError, ensure_free, hold

ROOT = Path(__file__).resolve().parents[2]


def _no_temps(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if is_temp_name(p.name)]


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_writing_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "a" / "x.json"
    write_bytes(target, b"old")
    real_fdopen = os.fdopen

    class _Full(io.RawIOBase):
        def __init__(self, fd: int) -> None:
            self.fh = real_fdopen(fd, "wb")

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self) -> None:
            self.fh.close()
            super().close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: _Full(fd))
    with pytest.raises(WriteError) as info:
        write_bytes(target, b"new" * 1000)
    monkeypatch.undo()
    err = info.value
    assert isinstance(err, StagingError) and isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(target) in str(err) and "(ENOSPC)" in str(err)
    assert target.read_bytes() == b"old"
    assert _no_temps(tmp_path)


def test_failed_rename_and_failed_checks_publish_nothing(tmp_path, monkeypatch):
    target = tmp_path / "p" / "x.png"
    monkeypatch.setattr(atomic.os, "replace", _enospc)
    with pytest.raises(WriteError, match="No space left on device"), staged_file(target, b"data") as tmp:
        assert tmp.read_bytes() == b"data" and is_temp_name(tmp.name)
    monkeypatch.undo()
    with pytest.raises(ZeroDivisionError), staged_file(target, b"data"):
        1 / 0  # noqa: B018
    assert not target.exists() and _no_temps(tmp_path)
    with staged_file(target, b"good"):
        pass
    assert target.read_bytes() == b"good" and _no_temps(tmp_path)


def test_write_files_syncs_each_folder_once_after_its_files(tmp_path, monkeypatch):
    a, b = tmp_path / "layers" / "a.png", tmp_path / "layers" / "b.jpg"
    write_bytes(b, b"old")
    events: list[str] = []
    real_replace, real_fsync_dir = atomic.os.replace, atomic._fsync_dir
    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: (events.append(f"rename {Path(dst).name}"),
                                                               real_replace(src, dst))[1])
    monkeypatch.setattr(atomic, "_fsync_dir", lambda folder: (events.append(f"sync {folder.name}"),
                                                             real_fsync_dir(folder))[1])
    write_files({a: b"A", b: b"B", tmp_path / "record.json": b"{}"})
    assert events == ["rename a.png", "rename b.jpg", "rename record.json", "sync layers", f"sync {tmp_path.name}"]
    assert (a.read_bytes(), b.read_bytes()) == (b"A", b"B") and _no_temps(tmp_path)


def test_write_files_stops_at_a_failed_file_and_keeps_the_old_ones(tmp_path, monkeypatch):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    write_files({a: b"old-a", b: b"old-b"})
    real_replace = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: _enospc() if Path(dst) == b else real_replace(src, dst))
    with pytest.raises(WriteError, match=r"b\.png.*ENOSPC"):
        write_files({a: b"new-a", b: b"new-b"})
    assert (a.read_bytes(), b.read_bytes()) == (b"new-a", b"old-b") and _no_temps(tmp_path)


def test_remove_stale_temps_removes_only_old_temp_files(tmp_path):
    folder = tmp_path / "products" / "sku-1"
    (folder / "layers").mkdir(parents=True)
    old = time.time() - 3600
    stale = [folder / ".sku-1.png.ab12cd_9.tmp", folder / "layers" / ".matte.png.zz99yy00.tmp"]
    fresh = folder / ".sku-1.json.qqqqqqqq.tmp"  # a live writer's temp: newer than the run start
    keep = [folder / "sku-1.png", folder / "notes.tmp", folder / ".lock", folder / ".sku-1.png.short.tmp"]
    for p in [*stale, fresh, *keep]:
        p.write_bytes(b"x")
    for p in [*stale, *keep]:
        os.utime(p, (old, old))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".x.png.abcdefgh.tmp").write_bytes(b"x")
    os.utime(outside / ".x.png.abcdefgh.tmp", (old, old))
    (folder / "link").symlink_to(outside, target_is_directory=True)

    removed = remove_stale_temps(folder, time.time() - 60)
    assert sorted(removed) == sorted(stale)
    assert all(p.exists() for p in [fresh, *keep]) and not any(p.exists() for p in stale)
    assert (outside / ".x.png.abcdefgh.tmp").exists()  # links are not followed out of the folder
    assert remove_stale_temps(tmp_path / "missing", time.time()) == []


def test_second_holder_fails_at_once_naming_the_first(tmp_path):
    out = tmp_path / "out"
    with hold(out) as lock:
        assert lock == out / ".lock"
        t0 = time.monotonic()
        with pytest.raises(RunLockedError) as info:
            ensure_free(out)
        assert time.monotonic() - t0 < 1
        msg = str(info.value)
        assert f"pid {os.getpid()}" in msg and str(out) in msg and "in use by another run" in msg
    ensure_free(out)  # released on exit
    with hold(out):
        pass


def test_lock_of_a_killed_run_is_released(tmp_path):
    out = tmp_path / "out"
    code = ("import sys, time; from pathlib import Path; from ops.runlock import hold\n"
            "with hold(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} on host "):
            ensure_free(out)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    ensure_free(out)  # no stale lock after SIGKILL


def test_report_text_is_escaped_for_csv_and_html(tmp_path):
    assert printable("a\x00b\u202ec\u200bd\x1b[31m") == "a\\x00b\\u202ec\\u200bd\\x1b[31m"
    assert printable("ЅНОЕ ＳＨＯＥ é") == "ЅНОЕ ＳＨＯＥ é"  # visible characters are kept
    for cell in ("=HYPERLINK(\"http://evil\",\"x\")", "+1", "-1", "@SUM(A1)"):
        assert csv_safe(cell) == "'" + cell
    assert csv_safe("\tx").startswith("\\x09")
    errors = [{"row": 2, "sku": "<script>alert(1)</script>", "reason": "photo not found: <b>x</b>"},
              {"row": 3, "sku": "a\x00b", "reason": "SKU contains control characters (U+0000)"}]
    results = [{"row": 4, "sku": '=HYPERLINK("http://evil","x")', "status": "failed", "error": "bad\u202eevil",
                "record": None, "output": None}]
    meta = {"run_id": "r<1>", "catalog": "c.csv", "started_at": "s", "finished_at": "f"}
    paths = write_run_report(tmp_path / "run", tmp_path, meta, results, errors)
    html_text = paths["html"].read_text()
    assert "<script>" not in html_text and "&lt;script&gt;" in html_text and "<b>x" not in html_text
    assert "\x00" not in html_text and "\u202e" not in html_text and "a\\x00b" in html_text
    rows = list(csv.reader(io.StringIO(paths["csv"].read_text())))
    assert rows[3][1] == "'=HYPERLINK(\"http://evil\",\"x\")" and rows[3][5] == "bad\\u202eevil"
    assert rows[2][1] == "a\\x00b"


def test_report_files_are_written_independently(tmp_path, monkeypatch):
    real = atomic.os.replace

    def full_for_html(src, dst):
        if Path(dst).name == "report.html":
            _enospc()
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", full_for_html)
    meta = {"run_id": "r", "catalog": "c.csv", "started_at": "s", "finished_at": "f"}
    with pytest.raises(ReportError) as info:
        write_run_report(tmp_path / "run", tmp_path, meta, [], [{"row": 2, "sku": "A", "reason": "r"}])
    assert set(info.value.written) == {"json", "csv"} and "report.html" in info.value.failures[0]
    assert "ENOSPC" in str(info.value)
    assert (tmp_path / "run" / "summary.json").is_file() and (tmp_path / "run" / "summary.csv").is_file()
    assert not (tmp_path / "run" / "report.html").exists() and _no_temps(tmp_path)


def test_published_files_are_readable_by_others_under_the_usual_umask(tmp_path):
    import stat

    from ops.atomic import FILE_MODE, write_bytes

    target = tmp_path / "out.png"
    write_bytes(target, b"data")
    mode = stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == FILE_MODE == 0o666 & ~umask  # not mkstemp's owner-only 0600
