"""`stage serve-outputs`: images, records and reports read-only; nothing else, nothing outside the folder."""

from __future__ import annotations

import http.client
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ops.preview_server import OutputServer, Refused, request_parts

SLUG = "SHOE-BLK-SUEDE-01-64cf0213cb"
THUMB = f"products/{SLUG}/layers/after.jpg"


@pytest.fixture
def out(tmp_path: Path, images: Path) -> Path:
    """An output folder as a run leaves it, plus what must never be served and links out of it."""
    root = tmp_path / "out"
    layers = root / "products" / SLUG / "layers"
    layers.mkdir(parents=True)
    with Image.open(images / "19_shoes_black-suede_white.jpg") as im:
        im.thumbnail((256, 256))
        im.convert("RGB").save(layers / "after.jpg", quality=85)
    (root / "products" / SLUG / f"{SLUG}.json").write_text('{"sku": "SHOE-BLK-SUEDE-01"}', encoding="utf-8")
    (root / "runs" / "r1").mkdir(parents=True)
    (root / "runs" / "r1" / "report.html").write_text("<!doctype html><h1>run r1</h1>", encoding="utf-8")
    (root / "ledger.sqlite").write_bytes(b"SQLite format 3\x00")
    (root / "products" / "ledger.sqlite").write_bytes(b"SQLite format 3\x00")
    (root / ".lock").write_text("pid=1", encoding="utf-8")
    (root / ".work").mkdir()
    (root / ".work" / "r1.json").write_text("{}", encoding="utf-8")
    (root / "products" / SLUG / f".{SLUG}.json.123.tmp.json").write_text("{}", encoding="utf-8")
    (root / "review").mkdir()
    (root / "review" / "state.json").write_text("{}", encoding="utf-8")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"key": "do not serve"}', encoding="utf-8")
    (outside / "secret.jpg").write_bytes((layers / "after.jpg").read_bytes())
    (root / "products" / SLUG / "leak.json").symlink_to(outside / "secret.json")
    (root / "products" / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "runs" / "r1" / "fifo.json").parent.mkdir(exist_ok=True)
    os.mkfifo(root / "runs" / "r1" / "fifo.json")
    return root


@pytest.fixture
def served(out: Path) -> Iterator[OutputServer]:
    server = OutputServer(out, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _ask(server: OutputServer, target: str, method: str = "GET", host: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One raw request (the target sent as given, not normalised by a client library)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host or f"127.0.0.1:{server.server_address[1]}")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_serves_a_thumbnail_as_jpeg(served, out):
    status, headers, body = _ask(served, "/" + THUMB)
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert body == (out / THUMB).read_bytes() and int(headers["content-length"]) == len(body)
    with Image.open(io.BytesIO(body)) as im:
        assert im.format == "JPEG" and max(im.size) == 256
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = _ask(served, "/" + THUMB, "HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) == (out / THUMB).stat().st_size
    status, _, body = _ask(served, "/" + THUMB, headers={"If-Modified-Since": headers["last-modified"]})
    assert status == 304 and body == b""
    status, _, _ = _ask(served, f"/{THUMB}?X-Amz-Signature=ignored")  # a query is not part of the path
    assert status == 200


def test_serves_records_and_run_reports_with_their_types(served):
    status, headers, body = _ask(served, f"/products/{SLUG}/{SLUG}.json")
    assert status == 200 and headers["content-type"] == "application/json" and b"SHOE-BLK-SUEDE-01" in body
    status, headers, body = _ask(served, "/runs/r1/report.html")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8" and b"run r1" in body
    assert "script-src" not in headers["content-security-policy"] and "default-src 'none'" in \
        headers["content-security-policy"]  # no script runs in a report, whatever a catalog put in it


@pytest.mark.parametrize("target,status", [
    ("/products/../ledger.sqlite", 403),
    ("/products/%2e%2e/ledger.sqlite", 403),
    ("/products/%2E%2E/%2E%2E/outside/secret.json", 403),
    ("/products%2f..%2fledger.sqlite", 403),
    ("/products/..%5c..%5coutside%5csecret.json", 400),
    ("/%2Fetc%2Fpasswd", 403),
    ("//etc/passwd", 403),
    ("/etc/passwd", 403),
    ("http://127.0.0.1/products/x.json", 400),
    (f"/products/{SLUG}/leak.json", 403),  # a link to a file outside the folder
    ("/products/elsewhere/secret.jpg", 404),  # a link to a folder outside it
    ("/ledger.sqlite", 403),
    ("/products/ledger.sqlite", 403),
    ("/.lock", 403),
    ("/.work/r1.json", 403),
    ("/products/%2ework/x.json", 403),
    (f"/products/{SLUG}/.{SLUG}.json.123.tmp.json", 403),
    ("/review/state.json", 403),
    ("/", 403),
    ("/products/", 403),
    (f"/products/{SLUG}/layers", 403),
    ("/runs/r1/fifo.json", 404),
    ("/products/nope/after.jpg", 404),
    ("/products/%ff.jpg", 400),
    ("/products/a%00.jpg", 400),
])
def test_refuses_what_is_not_an_output_file(served, target, status):
    got, _, body = _ask(served, target)
    assert got == status, body
    assert b"do not serve" not in body and b"SQLite" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_read_only(served, out, method):
    status, headers, _ = _ask(served, "/" + THUMB, method)
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert (out / THUMB).is_file()


def test_a_loopback_server_answers_only_loopback_names(served):
    """A web page whose own name resolves to 127.0.0.1 (DNS rebinding) cannot read the outputs."""
    assert _ask(served, "/" + THUMB, host="attacker.example:8780")[0] == 403
    assert _ask(served, "/" + THUMB, host=f"localhost:{served.server_address[1]}")[0] == 200


@pytest.mark.parametrize("target", ["/products/a.png", f"/runs/r1/{'x' * 10}.csv", "/quarantine/s/s.webp"])
def test_request_parts_keep_output_files(target):
    assert request_parts(target) == target[1:].split("/")


@pytest.mark.parametrize("target", ["/products/a.sqlite", "/products/a.pem", "/products/key", "/runs/r1/x.jsonl",
                                    "/runs", "/products/a/../b.png", "/products/./b.png"])
def test_request_parts_refuse_other_names(target):
    with pytest.raises(Refused):
        request_parts(target)


def test_stage_serve_outputs_prints_its_url_and_stops_on_sigterm(out, repo):
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve-outputs", "--out", str(out), "--port", "0",
                             "--config", str(repo / "config.toml")], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        first = proc.stdout.readline()
        hint = proc.stdout.readline()
        assert first.startswith(f"serving {out} read-only") and "http://127.0.0.1:" in first, first
        url = first.rsplit(" ", 1)[1].strip()
        assert f'[previews] base_url = "{url}"' in hint
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/" + THUMB)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "image/jpeg" and len(resp.read()) > 1000
        conn.close()
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(timeout=10) == 0 and time.monotonic() - t0 < 5
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stage_serve_outputs_refuses_a_missing_folder_and_an_object_store(tmp_path, repo):
    from flows.cli import main

    assert main(["serve-outputs", "--out", str(tmp_path / "nope"), "--port", "0"]) == 1
    assert main(["serve-outputs", "--out", "s3://bucket/prefix", "--port", "0"]) == 1
