"""A read-only HTTP server of the output folder (`stage serve-outputs`): images, records and run reports."""

from __future__ import annotations

import email.utils
import errno
import ipaddress
import os
import shutil
import socket
import stat
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from ops.paths import PRODUCTS, QUARANTINE

RUNS = "runs"
SERVED_FOLDERS = (PRODUCTS, RUNS, QUARANTINE)  # never the ledger, review state, locks or work files beside them
CONTENT_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".json": "application/json", ".html": "text/html; charset=utf-8", ".csv": "text/csv; charset=utf-8",
}
# report.html holds catalog text (escaped): even so no script may run, and it may load only images of this server
REPORT_CSP = ("default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
READ_TIMEOUT_S = 30


class Refused(Exception):
    """A request this server does not answer with a file: the status and why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def request_parts(target: str) -> list[str]:
    """The folder names and file name a request target asks for, or Refused.

    The target is percent-decoded once, then checked: no empty, `.` or `..` segment (so nothing
    climbs out, however it is encoded), no hidden name (`.lock`, `.work/`, `.sku-locks/`, temp
    files), only the products, runs and quarantine folders, only the file types a run publishes.
    A query (a cache buster, a signature) is ignored.
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        raise Refused(400, "the request target must be a path starting with '/'")
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise Refused(400, "the path is not UTF-8") from None
    if "\\" in decoded or any(ord(c) < 32 or ord(c) == 127 for c in decoded):
        raise Refused(400, "the path holds a backslash or a control character")
    parts = decoded[1:].split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise Refused(403, "paths with empty, '.' or '..' segments are not served (no folder listings)")
    if any(p.startswith(".") for p in parts):
        raise Refused(403, "hidden files and folders are not served")
    if parts[0] not in SERVED_FOLDERS or len(parts) < 2:
        raise Refused(403, f"only files under {', '.join(f'{f}/' for f in SERVED_FOLDERS)} are served")
    if os.path.splitext(parts[-1])[1].lower() not in CONTENT_TYPES:
        raise Refused(403, f"only {', '.join(sorted(CONTENT_TYPES))} files are served")
    return parts


def open_inside(root: Path, parts: list[str]) -> int:
    """A read-only descriptor of the regular file `root/<parts>`, opened one name at a time below
    `root` without following any symbolic link, so that no link leads out of the folder (a link
    swapped in while the request runs neither). FileNotFoundError for anything that is not a
    regular file; Refused for a link."""
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, nofollow | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        # O_NONBLOCK: a FIFO would otherwise block the thread; regular files ignore it
        file_fd = os.open(parts[-1], nofollow | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise Refused(403, "symbolic links are not followed") from None
        if exc.errno == errno.ENOTDIR:  # a link to a folder opened with O_DIRECTORY | O_NOFOLLOW, or a file
            raise FileNotFoundError(errno.ENOENT, "no such file") from None
        raise
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise FileNotFoundError(errno.ENOENT, "not a regular file")
    return file_fd


def loopback(host: str) -> bool:
    """Whether `host` (a bind address or a Host header's name) is this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name of a Host header, without its port (`[::1]:8780` -> `::1`)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Handler(BaseHTTPRequestHandler):
    server: OutputServer
    timeout = READ_TIMEOUT_S  # a client that stops sending does not hold a thread for ever

    def version_string(self) -> str:
        return "stage-serve-outputs"

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _read_only(self) -> None:
        self._refuse(Refused(405, "read-only: GET and HEAD only"), body=self.command != "HEAD")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _read_only

    def _serve(self, body: bool) -> None:
        try:
            if self.server.loopback_only and not loopback(_host_name(self.headers.get("Host", ""))):
                # a page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) reads nothing
                raise Refused(403, "this server answers only requests for a loopback name (localhost, 127.0.0.1)")
            parts = request_parts(self.path)
            try:
                fd = open_inside(self.server.root, parts)
            except OSError:  # missing, not a regular file, unreadable
                raise Refused(404, "no such file") from None
        except Refused as refused:
            self._refuse(refused, body)
            return
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            modified = email.utils.formatdate(int(info.st_mtime), usegmt=True)
            if self._unchanged_since(int(info.st_mtime)):
                self.send_response(304)
                self.send_header("Last-Modified", modified)
                self.end_headers()
                return
            suffix = os.path.splitext(parts[-1])[1].lower()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPES[suffix])
            self.send_header("Content-Length", str(info.st_size))
            self.send_header("Last-Modified", modified)
            self.send_header("Cache-Control", "no-cache")  # a rerun replaces a file under the same name
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            if suffix == ".html":
                self.send_header("Content-Security-Policy", REPORT_CSP)
            self.end_headers()
            if body:
                try:
                    shutil.copyfileobj(fh, self.wfile, 1 << 20)
                except (BrokenPipeError, ConnectionResetError):  # the browser went away: nothing to do
                    pass

    def _unchanged_since(self, mtime: int) -> bool:
        since = self.headers.get("If-Modified-Since")
        if not since:
            return False
        try:
            return mtime <= int(email.utils.parsedate_to_datetime(since).timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            return False

    def _refuse(self, refused: Refused, body: bool) -> None:
        text = f"{refused.status} {refused}\n".encode()
        self.send_response(refused.status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if refused.status == 405:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if body:
            self.wfile.write(text)


class OutputServer(ThreadingHTTPServer):
    """`ThreadingHTTPServer` of one output folder; `url` is the base URL for `[previews] base_url`."""

    daemon_threads = True

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 8780) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"output folder {self.root} does not exist (run `stage run` first)")
        self.loopback_only = loopback(host)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = socket.getfqdn()  # every address: name the machine as the network knows it
        name = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{name}:{port}/"

