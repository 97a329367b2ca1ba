"""What a photo URL in a catalog can make a worker reach: public addresses, and what
[load] allow_hosts opens. A real HTTP server on loopback stands in for an internal service."""

from __future__ import annotations

import http.server
import io
import ipaddress
import socket
from collections import Counter
from collections.abc import Iterator

import pytest
from PIL import Image

from ops import fetch as fetch_module
from ops.fetch import HostPolicy, fetch, refusal
from stages.errors import ConfigError, InputError
from stages.load import LoadOptions
from conftest import loopback_http  # tests/ is on sys.path

PNG = io.BytesIO()
Image.new("RGB", (80, 64), (0, 128, 255)).save(PNG, "PNG")


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: Counter[str] = Counter()
    hosts: list[str] = []
    redirect_to = ""

    def do_GET(self) -> None:  # noqa: N802
        self.hits[self.path] += 1
        self.hosts.append(self.headers.get("Host", ""))
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.end_headers()
            return
        body = PNG.getvalue()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    with loopback_http(_Handler) as port:
        yield port


@pytest.fixture(autouse=True)
def fresh_counts():
    _Handler.hits.clear()
    _Handler.hosts.clear()


@pytest.fixture
def names(monkeypatch):
    """A resolver that answers chosen names with chosen addresses (and the real one otherwise)."""
    table: dict[str, list[str]] = {}
    calls: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        calls.append(host)
        if host in table:
            answer = table[host].pop(0) if len(table[host]) > 1 else table[host][0]
            family = socket.AF_INET6 if ":" in answer else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (answer, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(fetch_module.socket, "getaddrinfo", getaddrinfo)
    return table, calls


def options(*allow: str) -> LoadOptions:
    return LoadOptions(allow_hosts=allow, url_timeout_s=5.0)


def test_loopback_is_refused_by_default_and_nothing_is_requested(server):
    with pytest.raises(InputError) as err:
        fetch(f"http://127.0.0.1:{server}/shoe.png", options())
    msg = str(err.value)
    assert "127.0.0.1 is a loopback address" in msg and "[load] allow_hosts" in msg
    assert sum(_Handler.hits.values()) == 0  # refused before connecting


@pytest.mark.parametrize("allow", ["127.0.0.1", "127.0.0.0/8", "localhost"])
def test_allow_hosts_opens_a_host_or_a_network(server, allow):
    host = "localhost" if allow == "localhost" else "127.0.0.1"
    assert fetch(f"http://{host}:{server}/shoe.png", options(allow)) == PNG.getvalue()
    assert _Handler.hits["/shoe.png"] == 1


def test_a_public_looking_name_that_resolves_to_loopback_is_refused(server, names):
    table, _ = names
    table["images.example-shop.com"] = ["127.0.0.1"]
    with pytest.raises(InputError, match=r"images.example-shop.com \(127.0.0.1\) is a loopback address"):
        fetch(f"http://images.example-shop.com:{server}/shoe.png", options())
    assert sum(_Handler.hits.values()) == 0
    # named in allow_hosts (an internal image server): fetched from the address it resolved to
    assert fetch(f"http://images.example-shop.com:{server}/shoe.png", options("*.example-shop.com")) == PNG.getvalue()
    assert _Handler.hosts == [f"images.example-shop.com:{server}"]


def test_a_redirect_to_an_internal_address_is_refused(server, names):
    table, _ = names
    table["cdn.partner.test"] = ["127.0.0.1"]
    _Handler.redirect_to = f"http://127.0.0.1:{server}/secret.png"
    with pytest.raises(InputError) as err:
        fetch(f"http://cdn.partner.test:{server}/redirect", options("cdn.partner.test"))
    msg = str(err.value)
    assert f"redirected to http://127.0.0.1:{server}/secret.png" in msg and "loopback" in msg
    assert _Handler.hits["/redirect"] == 1 and _Handler.hits["/secret.png"] == 0


def test_the_address_checked_is_the_address_connected_to(monkeypatch, names):
    """DNS rebinding: a name answers a public address first and loopback after. It is resolved once
    per hop, and the connection goes to the address that was checked (no traffic leaves: the
    connection attempt is stopped where it would be made)."""
    table, calls = names
    table["rebind.example"] = ["93.184.216.34", "127.0.0.1"]
    tried = []

    def create_connection(address, timeout=None, *args, **kwargs):
        tried.append(address)
        raise ConnectionRefusedError("stopped by the test")

    monkeypatch.setattr(fetch_module.socket, "create_connection", create_connection)
    with pytest.raises(InputError, match="could not fetch"):
        fetch("http://rebind.example/shoe.png", options())
    assert calls == ["rebind.example"] and tried == [("93.184.216.34", 80)]


@pytest.mark.parametrize("url,why", [
    ("http://[::1]:{port}/a.png", "loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/a.png", "loopback"),
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "link-local"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.1.2.3/a.png", "private"),
    ("http://100.64.0.7/a.png", "carrier-grade NAT"),
    ("http://0.0.0.0:{port}/a.png", "unspecified"),
    ("http://[64:ff9b::7f00:1]/a.png", "loopback"),
    ("http://2130706433:{port}/a.png", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://127.1:{port}/a.png", "loopback"),  # the short form
])
def test_internal_address_forms_are_refused(server, url, why):
    with pytest.raises(InputError, match=why):
        fetch(url.format(port=server), options())
    assert sum(_Handler.hits.values()) == 0


@pytest.mark.parametrize("address,refused", [
    ("127.0.0.1", True), ("10.0.0.1", True), ("172.16.5.4", True), ("192.168.1.1", True), ("169.254.169.254", True),
    ("100.64.0.1", True), ("224.0.0.251", True), ("0.0.0.0", True), ("240.0.0.1", True), ("::1", True),
    ("fe80::1", True), ("fc00::1", True), ("::ffff:10.0.0.1", True), ("ff02::1", True),
    ("93.184.216.34", False), ("2606:4700::6810:85e5", False), ("::ffff:93.184.216.34", False),
])
def test_refusal_by_address(address, refused):
    assert (refusal(ipaddress.ip_address(address)) is not None) is refused


def test_credentials_in_a_url_are_refused_and_never_shown():
    with pytest.raises(InputError) as err:
        fetch("http://shop:hunter2@images.example.com/a.png?token=abc", options())
    assert "credentials" in str(err.value) and "hunter2" not in str(err.value) and "abc" not in str(err.value)


def test_bad_allow_hosts_entries_are_named():
    with pytest.raises(ConfigError, match=r"load.allow_hosts\[1\] = 'http://x': expected a host name"):
        HostPolicy.parse(["10.0.0.0/8", "http://x"])
