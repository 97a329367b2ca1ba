"""Reading a row's photo: local files and http(s) URLs, bounded, every failure named; transient ones marked."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ops.errors import is_transient
from ops.fetch import TransientInputError
from ops.sources import load_image, read_source
from stages.errors import InputError
from stages.load import LoadOptions

ROOT = Path(__file__).resolve().parents[2]
SHOE = ROOT / "catalog" / "images" / "19_shoes_black-suede_white.jpg"
# The test server listens on loopback: opened the way a deployment opens an internal image server.
CFG = LoadOptions(allow_hosts=("127.0.0.0/8",))


def cfg(**kw: object) -> LoadOptions:
    return dataclasses.replace(CFG, **kw)


# --- refused inputs ------------------------------------------------------------------------


def refused(source: str | Path, config: LoadOptions = CFG) -> str:
    with pytest.raises(InputError) as exc:
        load_image(str(source), config)
    msg = str(exc.value)
    assert str(source).split("?")[0] in msg  # every message names the photo
    return msg


def test_missing_file(tmp_path: Path) -> None:
    assert "photo not found" in refused(tmp_path / "nope.jpg")


def test_directory(tmp_path: Path) -> None:
    assert "directory" in refused(tmp_path)


def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "file is empty (0 bytes)" in refused(path)


def test_file_over_max_bytes(tmp_path: Path) -> None:
    assert "file is 15.1 kB, over the 10 kB limit" in refused(SHOE, cfg(max_bytes=10_000))


@pytest.mark.parametrize("source", ["file:///etc/passwd", "ftp://example.com/a.jpg", "data:image/png;base64,AAAA"])
def test_unsupported_url_schemes(source: str) -> None:
    with pytest.raises(InputError, match="unsupported URL scheme"):
        read_source(source, CFG)


# --- URLs ----------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    png = b""

    def do_GET(self) -> None:  # noqa: N802
        routes = {"/ok.png": ("image/png", self.png), "/page": ("text/html", b"<html>login</html>"),
                  "/octet": ("application/octet-stream", self.png)}
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        if self.path.startswith("/busy"):
            self.send_error(503)
            return
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/a.png")
            self.end_headers()
            return
        if self.path.startswith("/stream"):  # no Content-Length: the size is known only while reading
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(self.png * 4)
            return
        ctype, body = routes.get(self.path.split("?")[0], ("image/png", self.png))
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up early (timeouts, size limits) break the pipe on purpose


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    buf = io.BytesIO()
    Image.new("RGB", (80, 64), (0, 128, 255)).save(buf, "PNG")
    _Handler.png = buf.getvalue()
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_png_loads(server: str) -> None:
    img = load_image(f"{server}/ok.png", CFG)
    assert img.rgb.shape == (64, 80, 3) and tuple(img.rgb[0, 0]) == (0, 128, 255)
    assert img.sha256 == hashlib.sha256(_Handler.png).hexdigest()
    assert load_image(f"{server}/octet", CFG).format == "PNG"


def test_url_html_refused(server: str) -> None:
    assert "text/html, not an image" in refused(f"{server}/page")


def test_url_timeout(server: str) -> None:
    assert "timed out" in refused(f"{server}/slow", cfg(url_timeout_s=0.2))


def test_url_http_error(server: str) -> None:
    assert "HTTP 404" in refused(f"{server}/missing")


def test_failures_that_may_pass_are_transient_by_type(server: str, tmp_path: Path) -> None:
    """A retry is decided by the error's type: a timeout or HTTP 503 may pass, a 404 or a bad photo not."""
    for url, options in ((f"{server}/busy", CFG), (f"{server}/slow", cfg(url_timeout_s=0.2))):
        with pytest.raises(TransientInputError) as exc:
            read_source(url, options)
        assert is_transient(exc.value) and isinstance(exc.value, InputError)
    for source in (f"{server}/missing", str(tmp_path / "nope.jpg")):
        with pytest.raises(InputError) as exc:
            read_source(source, CFG)
        assert not is_transient(exc.value)
    closed = socket_port()
    with pytest.raises(TransientInputError, match="refused"):
        read_source(f"http://127.0.0.1:{closed}/a.png", CFG)


def socket_port() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_url_over_max_bytes(server: str) -> None:
    assert "over the 100 bytes limit" in refused(f"{server}/ok.png", cfg(max_bytes=100))


def test_url_stream_over_max_bytes_stops_reading(server: str) -> None:
    limit = len(_Handler.png) * 2
    assert "download is over the" in refused(f"{server}/stream", cfg(max_bytes=limit))


def test_url_redirect_to_other_scheme_refused(server: str) -> None:
    assert "redirected to a non-http URL" in refused(f"{server}/redirect")


def test_url_query_is_not_echoed(server: str) -> None:
    with pytest.raises(InputError) as exc:
        load_image(f"{server}/page?token=SECRET", CFG)
    assert "SECRET" not in str(exc.value)
