"""Reliability of the nightly flow: hostile inputs, injected faults, a killed run, concurrent runs.

Inputs are generated here (nothing binary is committed). Faults are injected with monkeypatch
on the real functions inside real flow runs; the crash test kills a real `stage run` process.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import io
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ops.atomic import is_temp_name
from ops.paths import sku_slug
from conftest import loopback_http  # tests/ is on sys.path
from runs import PROC_TABLE, no_process_left  # tests/flows is on sys.path

SHOE = "19_shoes_black-suede_white.jpg"
PHOTOS = ["19_shoes_black-suede_white.jpg", "27_hat_leather-cap_on-white-sheet.jpg",
          "22_shoes_strap-sandals_white.jpg", "20_shoes_beige-loafers_on-beige-floor.jpg",
          "28_hat_leather-newsboy-cap_on-white-sheet.jpg", "26_apparel_black-dress_on-white-sheet.jpg"]
HEADER = "sku,image,title,category,scene_prompt,seed,variants"


# --- hostile photos, built on the fly -------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(w: int, h: int) -> bytes:
    """A valid PNG header that claims w x h pixels, with almost no pixel data: tiny file, huge image."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


def cmyk_icc() -> bytes:
    """A minimal ICC v2 CMYK output profile: a 2-point A2B0 lut of a plain subtractive ink model."""
    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    d50 = (0.9642, 1.0, 0.8249)
    prim = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))
    clut: list[int] = []
    for c, m, y, k in itertools.product((0, 1), repeat=4):
        rgb = [(1 - v) * (1 - k) for v in (c, m, y)]
        clut += [min(65535, round(sum(p[i] * v for p, v in zip(prim, rgb)) * 32768)) for i in range(3)]
    ident = struct.pack(">2H", 0, 65535)
    a2b0 = (b"mft2\0\0\0\0" + bytes([4, 3, 2, 0]) + b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
            + struct.pack(">HH", 2, 2) + ident * 4 + struct.pack(f">{len(clut)}H", *clut) + ident * 3)
    desc = b"cmyk test\0"
    tags = {b"desc": b"desc\0\0\0\0" + struct.pack(">I", len(desc)) + desc + b"\0" * 79,
            b"wtpt": b"XYZ \0\0\0\0" + b"".join(s15(c) for c in d50), b"cprt": b"text\0\0\0\0none\0",
            b"A2B0": a2b0}
    offset = 128 + 4 + 12 * len(tags)
    table = body = b""
    for sig, data in tags.items():
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"lcms" + struct.pack(">I", 0x02100000) + b"prtr"
              + b"CMYK" + b"XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
              + b"".join(s15(c) for c in d50) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + body


def psd() -> bytes:
    """A minimal Photoshop file (3 x 64 x 64, RGB): a real format, but not on the allowlist."""
    return (b"8BPS" + struct.pack(">H", 1) + b"\0" * 6 + struct.pack(">HIIHH", 3, 64, 64, 8, 3)
            + struct.pack(">I", 0) * 3 + struct.pack(">H", 0) + b"\0" * (64 * 64 * 3))


def hostile_photos(folder: Path, images: Path) -> dict[str, Path]:
    """name -> path; odd-but-valid photos load, hostile ones are refused."""
    folder.mkdir(parents=True, exist_ok=True)
    src = Image.open(images / SHOE)
    src.load()
    good = (images / SHOE).read_bytes()
    files: dict[str, bytes] = {"good.jpg": good, "zero.jpg": b"", "truncated.jpg": good[: len(good) // 3],
                               "text-named.jpg": b"sku,image\nnot,an image\n",
                               "bomb.png": png_claiming(100_000, 100_000), "huge-20k.png": png_claiming(20_000, 20_000),
                               "vector.svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
                                             b'width="512" height="512"><rect width="512" height="512"/></svg>',
                               "print.eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 512 512\nshowpage\n",
                               "layers.psd": psd()}

    def encoded(im: Image.Image, **params: object) -> bytes:
        buf = io.BytesIO()
        im.save(buf, **params)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; the loader turns it upright
    frames = [src.convert("P"), src.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("P")]
    files |= {
        "png-named.jpg": encoded(src, format="PNG"),
        "cmyk-icc.jpg": encoded(src.convert("CMYK"), format="JPEG", icc_profile=cmyk_icc(), quality=92),
        "grey16.png": encoded(Image.fromarray(np.asarray(src.convert("L")).astype(np.uint16) * 257), format="PNG"),
        "grey.jpg": encoded(src.convert("L"), format="JPEG"),
        "palette-transparent.png": encoded(src.convert("P", palette=Image.Palette.ADAPTIVE), format="PNG",
                                           transparency=0),
        "animated.gif": encoded(frames[0], format="GIF", save_all=True, append_images=frames[1:], duration=100),
        "exif-rotated.jpg": encoded(src.transpose(Image.Transpose.ROTATE_90), format="JPEG", exif=exif),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


# --- a local web server for photo URLs ------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    photo = b""
    hits: Counter[str] = Counter()
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802
        with self.lock:
            self.hits[self.path] += 1
            first = self.hits[self.path] == 1
        if self.path.startswith("/slow"):
            time.sleep(2.5)  # longer than the client's timeout
        if self.path.startswith("/flaky") and first:
            self.send_error(503, "busy")
            return
        ctype, body = ("text/html", b"<html><body>Please log in</body></html>") if self.path.startswith("/page") \
            else ("image/jpeg", self.photo)
        try:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web(images: Path) -> Iterator[tuple[str, Counter[str]]]:
    _Handler.photo = (images / SHOE).read_bytes()
    with loopback_http(_Handler) as port:
        yield f"http://127.0.0.1:{port}", _Handler.hits


# --- helpers --------------------------------------------------------------------------------------


def _config(path: Path, size: int = 256, batch_size: int = 8, workers: int = 2, url_timeout_s: float = 0.5) -> Path:
    path.write_text(f"[run]\nbatch_size = {batch_size}\nworkers = {workers}\n"
                    f"[load]\nurl_timeout_s = {url_timeout_s}\n"
                    'allow_hosts = ["127.0.0.1"]\n'  # the test's photo server, as an internal image server is opened
                    f"[layout]\nwidth = {size}\nheight = {size}\n",
                    encoding="utf-8")
    return path


def _csv_cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _write_catalog(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [HEADER] + [f"{_csv_cell(sku)},{_csv_cell(image)},Title,shoes,,," for sku, image in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _by_sku(result: dict) -> dict[str, dict]:
    return {r["sku"]: r for r in result["results"]}


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temp_name(p.name)]


def _anchors() -> str:
    return Path(os.environ["STAGE_KEYS_DIR"], "ca.pem").read_text()


def _published(record_path: Path) -> list[Path]:
    """Every image a record says was published: the variants and their renditions."""
    record = json.loads(record_path.read_text())
    names = [record["output"]] if record.get("output") else []
    for v in record.get("variants") or []:
        names.append(v.get("output"))
        names += [r.get("output") for r in v.get("format_copies") or []]
    names += [r.get("output") for r in record.get("renditions") or []]
    return sorted({record_path.parent / n for n in names if n})


def _stage_cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "1000"}  # no wrapping of long lines in the summary
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def nightly(monkeypatch):
    """flows.nightly with a fresh per-process backend cache and a short retry pause."""
    from flows import nightly as module
    from ops.workbench import forget_workbenches

    forget_workbenches()
    monkeypatch.setattr(module, "RETRY_DELAY_S", 0.05)
    yield module
    forget_workbenches()


# --- fault injection, in-process --------------------------------------------------------------------

FAULTS = {
    "GOOD-1": PHOTOS[0], "GOOD-2": PHOTOS[1], "SIGN-FAIL": PHOTOS[2], "DISK-FULL-PNG": PHOTOS[3],
    "DISK-FULL-RECORD": PHOTOS[4], "STAGE-BUG": "crop.jpg", "EAGAIN-ONCE": PHOTOS[5],
    "URL-FLAKY": "/flaky/1.jpg", "URL-HTML": "/page", "URL-SLOW": "/slow.jpg",
}
CROP = (397, 531)  # the STAGE-BUG photo's size: no other photo has it


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, images, dev_keys, web):
    """One flow run with a fault injected for several SKUs; then a clean rerun of the same catalog."""
    import ops.atomic
    import stages.pipeline
    from flows import nightly
    from ops.workbench import forget_workbenches
    from provenance.errors import SigningError
    from provenance.sign import ContentSigner

    base, hits = web
    tmp = tmp_path_factory.mktemp("faults")
    (tmp / "photos").mkdir()
    for name in PHOTOS:
        shutil.copy(images / name, tmp / "photos" / name)
    Image.open(images / SHOE).crop((0, 0, *CROP)).save(tmp / "photos" / "crop.jpg", quality=95)
    rows = [(sku, base + src if src.startswith("/") else f"photos/{src}") for sku, src in FAULTS.items()]
    catalog = _write_catalog(tmp / "catalog.csv", rows)
    config = _config(tmp / "config.toml", batch_size=3, workers=2)
    calls: Counter[str] = Counter()
    real_sign, real_replace, real_place = (ContentSigner.sign_png, ops.atomic.os.replace,
                                           stages.pipeline.place_product)

    def sign_png(self, png, *, title, **kw):
        if "(SIGN-FAIL)" in title:
            calls["sign:SIGN-FAIL"] += 1
            raise SigningError(f"signing {title!r} failed: injected signer outage")
        return real_sign(self, png, title=title, **kw)

    def replace(src, dst):
        name = Path(dst).name
        for sku, suffix, err in (("DISK-FULL-PNG", ".png", errno.ENOSPC), ("DISK-FULL-RECORD", ".json", errno.ENOSPC),
                                 ("EAGAIN-ONCE", ".png", errno.EAGAIN)):
            if name == sku_slug(sku) + suffix:
                calls[f"replace:{sku}"] += 1
                if err == errno.ENOSPC or calls[f"replace:{sku}"] == 1:
                    raise OSError(err, os.strerror(err))
        return real_replace(src, dst)

    def place_product(rgb, alpha, cfg, *args, **kwargs):
        if rgb.shape[:2] == (CROP[1], CROP[0]):
            calls["place:STAGE-BUG"] += 1
            raise RuntimeError("injected bug in layout")
        return real_place(rgb, alpha, cfg, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        forget_workbenches()
        mp.setattr(nightly, "RETRY_DELAY_S", 0.05)
        mp.setattr(ContentSigner, "sign_png", sign_png)
        mp.setattr(ops.atomic.os, "replace", replace)
        mp.setattr(stages.pipeline, "place_product", place_product)
        first = nightly.nightly_catalog_run(catalog=str(catalog), config=str(config), out=str(tmp / "out"))
    first_hits = Counter(hits)
    first_files = sorted(str(f.relative_to(tmp / "out")) for f in (tmp / "out").rglob("*") if f.is_file())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nightly, "RETRY_DELAY_S", 0.05)
        again = nightly.nightly_catalog_run(catalog=str(catalog), config=str(config), out=str(tmp / "out"))
    return tmp, first, again, calls, first_hits, first_files


def test_each_fault_fails_only_its_row_with_a_reason(faulty):
    tmp, first, _, _, _, _ = faulty
    rows = _by_sku(first)
    status = {sku: r["status"] for sku, r in rows.items()}
    assert status == {"GOOD-1": "ok", "GOOD-2": "ok", "EAGAIN-ONCE": "ok", "URL-FLAKY": "ok",
                      "SIGN-FAIL": "failed", "DISK-FULL-PNG": "failed", "DISK-FULL-RECORD": "failed",
                      "STAGE-BUG": "failed", "URL-HTML": "failed", "URL-SLOW": "failed"}
    err = {sku: r["error"] for sku, r in rows.items()}
    assert err["SIGN-FAIL"].startswith("SigningError: ") and "injected signer outage" in err["SIGN-FAIL"]
    slug = sku_slug("DISK-FULL-PNG")
    assert err["DISK-FULL-PNG"].startswith("WriteError: ") and f"{slug}.png" in err["DISK-FULL-PNG"]
    assert "No space left on device (ENOSPC)" in err["DISK-FULL-PNG"]
    assert f"{sku_slug('DISK-FULL-RECORD')}.json" in err["DISK-FULL-RECORD"] and "ENOSPC" in err["DISK-FULL-RECORD"]
    assert err["STAGE-BUG"] == "internal error: RuntimeError: injected bug in layout"
    assert err["URL-HTML"].startswith("InputError: ") and "text/html, not an image" in err["URL-HTML"]
    # a timeout is transient by its type: tried twice (below), then reported as such
    assert err["URL-SLOW"].startswith("TransientInputError: ") and "timed out after 0.5 s" in err["URL-SLOW"]
    assert first["summary"]["failed"] == 6 and first["report_errors"] == []


def test_only_transient_faults_are_retried(faulty):
    _, first, _, calls, hits, _ = faulty
    attempts = {sku: r["attempts"] for sku, r in _by_sku(first).items()}
    # transient: an interrupted write (EAGAIN), a 503, a timeout -> tried twice
    assert attempts["EAGAIN-ONCE"] == 2 and calls["replace:EAGAIN-ONCE"] == 2
    assert attempts["URL-FLAKY"] == 2 and hits["/flaky/1.jpg"] == 2
    assert attempts["URL-SLOW"] == 2 and hits["/slow.jpg"] == 2
    # permanent: signing, a full disk, a bug, a page that is not an image -> tried once
    for sku in ("GOOD-1", "GOOD-2", "SIGN-FAIL", "DISK-FULL-PNG", "DISK-FULL-RECORD", "STAGE-BUG", "URL-HTML"):
        assert attempts[sku] == 1, sku
    assert calls["sign:SIGN-FAIL"] == 1 and calls["replace:DISK-FULL-PNG"] == 1
    assert calls["replace:DISK-FULL-RECORD"] == 1 and calls["place:STAGE-BUG"] == 1 and hits["/page"] == 1


def test_failed_rows_leave_no_partial_or_temp_files(faulty):
    *_, files = faulty  # what the faulty run left behind
    for sku in ("SIGN-FAIL", "DISK-FULL-PNG", "STAGE-BUG"):
        slug = sku_slug(sku)
        assert not [f for f in files if f.startswith(f"products/{slug}/") and f.endswith((".png", ".json"))], sku
    # the record is written last: without it the product counts as not done, even if its image was published
    slug = sku_slug("DISK-FULL-RECORD")
    assert f"products/{slug}/{slug}.json" not in files
    for sku in ("GOOD-1", "EAGAIN-ONCE"):
        assert f"products/{sku_slug(sku)}/{sku_slug(sku)}.json" in files
    assert not [f for f in files if is_temp_name(Path(f).name)]


def test_the_run_summary_lists_every_failure(faulty):
    _, first, _, _, _, _ = faulty
    summary = json.loads((Path(first["run_dir"]) / "summary.json").read_text())
    failed = {r["sku"]: r["error"] for r in summary["results"] if r["status"] == "failed"}
    assert set(failed) == {"SIGN-FAIL", "DISK-FULL-PNG", "DISK-FULL-RECORD", "STAGE-BUG", "URL-HTML", "URL-SLOW"}
    assert all(failed.values())
    csv_text = (Path(first["run_dir"]) / "summary.csv").read_text()
    assert all(sku in csv_text for sku in failed) and "ENOSPC" in csv_text


def test_a_clean_rerun_redoes_only_what_failed(faulty):
    tmp, first, again, _, _, _ = faulty
    status = {sku: r["status"] for sku, r in _by_sku(again).items()}
    assert status == {"GOOD-1": "cached", "GOOD-2": "cached", "EAGAIN-ONCE": "cached", "URL-FLAKY": "cached",
                      "SIGN-FAIL": "ok", "DISK-FULL-PNG": "ok", "DISK-FULL-RECORD": "ok", "STAGE-BUG": "ok",
                      "URL-HTML": "failed", "URL-SLOW": "failed"}
    from provenance.verify import verify_file

    for r in again["results"]:
        if r["status"] in ("ok", "cached"):
            for path in _published(tmp / "out" / r["record"]):
                ver = verify_file(path, _anchors())
                assert ver.ok and ver.trusted, (path, ver.failures)


def test_a_model_that_cannot_load_fails_every_row_once_and_the_summary_is_written(
        tmp_path, images, dev_keys, nightly, monkeypatch, capsys):
    import ops.workbench
    from flows import cli
    from stages.errors import ModelUnavailableError

    loads = []

    def unavailable(name, options):
        loads.append(name)
        raise ModelUnavailableError("matte model 'isnet-general-use' not found at /models/isnet.onnx; "
                                    "copy the .onnx file there")

    monkeypatch.setattr(ops.workbench, "load_matte_backend", unavailable)
    (tmp_path / "photos").mkdir()
    shutil.copy(images / SHOE, tmp_path / "photos" / SHOE)
    rows = [(f"M-{i}", f"photos/{SHOE}") for i in range(4)]
    catalog = _write_catalog(tmp_path / "catalog.csv", rows + [("M-bad", "photos/nope.jpg")])
    config = _config(tmp_path / "config.toml", batch_size=2, workers=2)
    code = cli.main(["run", str(catalog), "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == cli.EXIT_PARTIAL
    assert len(loads) == 1  # two batches, one attempt: a missing model is not transient
    for sku, _ in rows:
        assert f"SKU '{sku}': failed: ModelUnavailableError: matte model 'isnet-general-use' not found" in err
    summary = json.loads(next((tmp_path / "out" / "runs").glob("*/summary.json")).read_text())
    assert summary["summary"]["by_status"] == {"failed": 4} and summary["summary"]["invalid_rows"] == 1
    assert all(r["attempts"] == 1 and "ModelUnavailableError" in r["error"] for r in summary["results"])


def test_a_full_disk_while_writing_the_report_still_gives_the_summary(tmp_path, images, dev_keys, nightly,
                                                                       monkeypatch, capsys):
    import ops.atomic
    from flows import cli

    real_replace = ops.atomic.os.replace

    def replace(src, dst):
        if Path(dst).parent.parent.name == "runs":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(ops.atomic.os, "replace", replace)
    (tmp_path / "photos").mkdir()
    shutil.copy(images / SHOE, tmp_path / "photos" / SHOE)
    catalog = _write_catalog(tmp_path / "catalog.csv", [("OK-1", f"photos/{SHOE}"), ("GONE", "photos/nope.jpg")])
    config = _config(tmp_path / "config.toml")
    code = cli.main(["run", str(catalog), "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == cli.EXIT_RUN_FAILED
    assert "row 3 SKU 'GONE': invalid: photo not found" in err  # the summary is printed
    for name in ("summary.json", "summary.csv", "report.html"):
        assert f"report file not written: {name}: WriteError" in err
    assert "run report in" in err and "is incomplete" in err
    run_dirs = list((tmp_path / "out" / "runs").iterdir())
    assert [p.name for d in run_dirs for p in d.iterdir()] == []  # nothing half-written
    assert list((tmp_path / "out" / "products").glob(f"{sku_slug('OK-1')}/*.json"))  # the product itself is fine


def test_a_crashing_batch_fails_its_rows_and_the_run_goes_on(tmp_path, images, dev_keys, nightly, monkeypatch):
    real_sweep = nightly.remove_stale_temps

    def sweep(folder, older_than):
        if folder.name.startswith("CRASH-"):
            raise MemoryError("injected crash outside the per-row guard")
        return real_sweep(folder, older_than)

    monkeypatch.setattr(nightly, "remove_stale_temps", sweep)
    (tmp_path / "photos").mkdir()
    shutil.copy(images / SHOE, tmp_path / "photos" / SHOE)
    catalog = _write_catalog(tmp_path / "catalog.csv", [("CRASH", f"photos/{SHOE}"), ("FINE", f"photos/{SHOE}")])
    result = nightly.nightly_catalog_run(catalog=str(catalog), config=str(_config(tmp_path / "c.toml", batch_size=1)),
                                         out=str(tmp_path / "out"))
    rows = _by_sku(result)
    assert rows["FINE"]["status"] == "ok"
    assert rows["CRASH"]["status"] == "failed"
    assert rows["CRASH"]["error"] == "batch task failed: MemoryError: injected crash outside the per-row guard"
    assert (Path(result["run_dir"]) / "summary.json").is_file()


def test_a_second_run_on_a_locked_output_folder_fails_at_once(tmp_path, images, dev_keys, nightly, capsys):
    from flows import cli
    from ops.runlock import RunLockedError, hold

    (tmp_path / "photos").mkdir()
    shutil.copy(images / SHOE, tmp_path / "photos" / SHOE)
    catalog = _write_catalog(tmp_path / "catalog.csv", [("L-1", f"photos/{SHOE}")])
    out = tmp_path / "out"
    with hold(out):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
            nightly.nightly_catalog_run(catalog=str(catalog), config=None, out=str(out))
        t0 = time.monotonic()
        code = cli.main(["run", str(catalog), "--out", str(out), "--quiet"])
        assert time.monotonic() - t0 < 5
    err = " ".join(capsys.readouterr().err.split())
    assert code == cli.EXIT_RUN_FAILED and f"in use by another run (pid {os.getpid()} on host" in err
    assert not (out / "products").exists() and not (out / "runs").exists()


# --- hostile catalog through `stage run` --------------------------------------------------------------


def _tree(folder: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and skip not in p.parents}


def test_stage_run_on_a_hostile_catalog_exits_3_and_reports_every_bad_row(tmp_path, images, dev_keys, web):
    base, hits = web
    files = hostile_photos(tmp_path / "photos", images)
    good = "photos/good.jpg"
    ok_rows = [  # (sku, image): valid rows, however odd
        ("SHOE-01", good), ("=HYPERLINK(\"http://evil.example/x\",\"click\")", good), ("../../etc/x", good),
        ("/abs/path", good), ("ЅНОЕ-01", good),  # Cyrillic look-alike: a different SKU, a different folder
        *[(f"IMG-{name}", f"photos/{name}") for name in ("png-named.jpg", "cmyk-icc.jpg", "grey16.png", "grey.jpg",
                                                         "palette-transparent.png", "animated.gif", "exif-rotated.jpg")],
    ]
    failing = {  # sku -> (image, what the reason must say): rows that reach the loader and fail there
        "IMG-truncated": ("photos/truncated.jpg", "truncated"), "IMG-text": ("photos/text-named.jpg", "not a supported"),
        "IMG-bomb": ("photos/bomb.png", "100000x100000"), "IMG-20k": ("photos/huge-20k.png", "20000x20000"),
        "IMG-svg": ("photos/vector.svg", "(SVG)"), "IMG-eps": ("photos/print.eps", "(EPS)"),
        "IMG-psd": ("photos/layers.psd", "(PSD)"), "URL-html": (f"{base}/page", "text/html, not an image"),
        "URL-timeout": (f"{base}/slow-cli.jpg", "timed out after 1 s"),
    }
    assert set(files) >= {Path(i).name for _, i in ok_rows if i.startswith("photos/")}
    lines = ["\ufeff" + HEADER + ",colour"]  # BOM, and an unknown column
    lines += [f"{_csv_cell(s)},{_csv_cell(i)},Title,shoes,,,,red" for s, i in ok_rows]
    lines += [f"{_csv_cell(s)},{_csv_cell(i)},Title,shoes,,,,red" for s, (i, _) in failing.items()]
    invalid = {  # csv line -> what the reason must say: rows refused while reading the catalog
        "zero": ('ZERO,photos/zero.jpg,Title,shoes,,,,', "photo is empty (0 bytes)"),
        "nul": ('"a\x00b",photos/good.jpg,Title,shoes,,,,', "control characters"),
        "long": (f"{'L' * 300},photos/good.jpg,Title,shoes,,,,", "SKU is 300 characters"),
        "wide": ("ＳＨＯＥ-01,photos/good.jpg,Title,shoes,,,,", "NFKC"),
        "zwsp": ("SHOE-01\u200b,photos/good.jpg,Title,shoes,,,,", "U+200B"),
        "dup": ("SHOE-01,photos/good.jpg,Again,shoes,,,,", "duplicate SKU (first seen on row 2)"),
        "short": ("SHORT,photos/good.jpg,Title", "row has 3 fields but the header has 8"),
        "long-row": ("LONGROW,photos/good.jpg,Title,shoes,a,1,1,red,extra", "row has 9 fields"),
        "huge": (f"HUGE,photos/good.jpg,{'T' * 1_000_000},shoes,,,,", "title is 1000000 characters"),
        "script": ('"<script>alert(1)</script>",photos/nope.jpg,Title,shoes,,,,', "photo not found"),
        "formula-missing": ('"=1+2",photos/nope.jpg,Title,shoes,,,,', "photo not found"),
    }
    lines += [line for line, _ in invalid.values()]
    first_invalid = len(lines) - len(invalid) + 1  # csv line of the first invalid row
    data = ("\n".join(lines) + "\n").encode("utf-8")
    data += b"LATIN1,photos/good.jpg,Caf\xe9,shoes,,,,\n"  # not UTF-8
    (tmp_path / "catalog.csv").write_bytes(data)
    _config(tmp_path / "config.toml", url_timeout_s=1.0)
    before = _tree(tmp_path, tmp_path / "out")

    run = _stage_cli("run", "catalog.csv", "--config", "config.toml", "--out", "out", "--quiet", cwd=tmp_path)
    err = " ".join(run.stderr.split())
    assert run.returncode == 3, run.stderr[-3000:]

    summary = json.loads(next((tmp_path / "out" / "runs").glob("*/summary.json")).read_text())
    results = {r["sku"]: r for r in summary["results"]}
    invalid_rows = {e["row"]: e for e in summary["catalog_errors"]}
    # every good row is staged, every bad one is listed once with its row, SKU and reason
    assert {s: results[s]["status"] for s, _ in ok_rows} == {s: "ok" for s, _ in ok_rows}
    for sku, (image, why) in failing.items():
        r = results[sku]
        assert r["status"] == "failed" and why in r["error"], (sku, r)
        assert f"row {r['row']} SKU '{sku}': failed: " in err, sku
    assert results["URL-timeout"]["attempts"] == 2 and results["URL-html"]["attempts"] == 1
    assert hits["/slow-cli.jpg"] == 2 and hits["/page"] >= 1
    expected_rows = list(range(first_invalid, first_invalid + len(invalid))) + [first_invalid + len(invalid)]
    assert sorted(invalid_rows) == expected_rows
    for row, (_, why) in zip(expected_rows, invalid.values(), strict=False):
        assert why in invalid_rows[row]["reason"], (row, invalid_rows[row])
        assert f"row {row} SKU " in err and why in err
    assert "not UTF-8 text (byte 0xe9)" in invalid_rows[expected_rows[-1]]["reason"]
    assert summary["summary"]["failed"] == len(failing) + len(invalid) + 1
    assert summary["summary"]["rows"] == len(ok_rows) + len(failing) + len(invalid) + 1

    # nothing is written outside the output folder; SKUs map to safe, unique folders inside it
    assert _tree(tmp_path, tmp_path / "out") == before
    assert not Path("/abs/path").exists() and not (tmp_path / "etc").exists()
    out = (tmp_path / "out").resolve()
    assert all(out in p.resolve().parents for p in out.rglob("*"))
    folders = {Path(results[s]["record"]).parent.name for s, _ in ok_rows}
    assert len(folders) == len(ok_rows)
    for s, _ in ok_rows:
        record = json.loads((out / results[s]["record"]).read_text())
        assert record["sku"] == s and Path(results[s]["record"]).parts[0] == "products"
    assert not _temps(out)

    # reports escape what the catalog sent
    run_dir = next((tmp_path / "out" / "runs").iterdir())
    csv_text = (run_dir / "summary.csv").read_text()
    assert "'=HYPERLINK" in csv_text and "'=1+2" in csv_text and "\n=HYPERLINK" not in csv_text
    assert ",=" not in csv_text.replace('"', "")
    html = (run_dir / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\x00" not in html and "a\\x00b" in html


# --- a killed run, a concurrent run, and the rerun -------------------------------------------------------


def test_a_killed_run_reruns_cleanly_and_a_concurrent_run_is_refused(tmp_path, images, dev_keys):
    from provenance.verify import verify_file

    (tmp_path / "photos").mkdir()
    for name in PHOTOS:
        shutil.copy(images / name, tmp_path / "photos" / name)
    skus = [f"CRASH-{i:02d}" for i in range(12)]
    _write_catalog(tmp_path / "catalog.csv", [(sku, f"photos/{PHOTOS[i % len(PHOTOS)]}") for i, sku in enumerate(skus)])
    _config(tmp_path / "config.toml", size=384, batch_size=4, workers=1)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "flows.cli", "run", "catalog.csv", "--config", "config.toml", "--out", "out",
            "--quiet"]
    log = (tmp_path / "first.log").open("w")
    mark = uuid.uuid4().hex  # in the environment of every process the run starts (runs.marked)
    first = subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, "COLUMNS": "1000", "STAGE_TEST_RUN_MARK": mark})
    try:
        deadline = time.monotonic() + 180
        while len(list(out.glob("products/*/*.json"))) < 2:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first run made no progress"
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)  # frozen mid-run, still holding the folder's lock

        concurrent = _stage_cli("run", "catalog.csv", "--config", "config.toml", "--out", "out", "--quiet",
                                cwd=tmp_path, timeout=60)
        msg = " ".join(concurrent.stderr.split())
        assert concurrent.returncode == 1, concurrent.stderr
        assert f"is in use by another run (pid {first.pid} on host" in msg
    finally:
        first.kill()  # SIGKILL, to the run's process alone: nothing it started may outlive it
        first.wait(30)
        log.close()
        left = no_process_left(mark) if PROC_TABLE else []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL
    assert left == [], "the killed run's API server is still running"

    done = {json.loads(p.read_text())["sku"]: p for p in out.glob("products/*/*.json")}
    assert 2 <= len(done) < len(skus), "the kill must land mid-run"
    mtimes = {sku: (p.stat().st_mtime_ns, [q.stat().st_mtime_ns for q in _published(p)]) for sku, p in done.items()}
    # temp files as a killed writer leaves them, in a finished and an unfinished product's folder
    old = time.time() - 120
    finished = next(iter(done.values())).parent
    unfinished = out / "products" / sku_slug(next(s for s in skus if s not in done))
    planted = [finished / f".{finished.name}.png.k1ll3d00.tmp", finished / "layers" / ".depth.png.k1ll3d00.tmp",
               unfinished / f".{unfinished.name}.json.k1ll3d00.tmp", out / "runs" / "killed" / ".summary.json.k1ll3d00.tmp"]
    for p in planted:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\x89PNG partial")
        os.utime(p, (old, old))

    rerun = _stage_cli("run", "catalog.csv", "--config", "config.toml", "--out", "out", "--quiet", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(next(out.glob("runs/*/summary.json")).read_text())
    status = {r["sku"]: r["status"] for r in summary["results"]}
    assert status == {sku: "cached" if sku in done else "ok" for sku in skus}
    for sku, p in done.items():  # finished before the kill: not regenerated
        assert (p.stat().st_mtime_ns, [q.stat().st_mtime_ns for q in _published(p)]) == mtimes[sku]
    assert not any(p.exists() for p in planted) and not _temps(out)
    anchors = _anchors()
    records = list(out.glob("products/*/*.json"))
    assert len(records) == len(skus)
    for record in records:
        outputs = _published(record)
        assert outputs and all(p.is_file() for p in outputs)
        for path in outputs:
            ver = verify_file(path, anchors)
            assert ver.ok and ver.trusted, (path, ver.failures)
    for path in out.glob("products/**/*"):  # every visible file is whole
        if path.is_file() and not path.name.startswith("."):
            if path.suffix == ".json":
                json.loads(path.read_text())
            else:
                Image.open(path).load()
