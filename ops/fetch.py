"""Fetching a photo over http(s), only from the addresses a catalog may reach: public ones, and
those `[load] allow_hosts` opens."""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from ops.errors import TransientError
from stages.errors import ConfigError, InputError
from stages.load import LoadOptions

_CHUNK = 1 << 16
MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
# Servers often label images generically; the decoder decides what the bytes really are.
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
# HTTP answers that mean "not now" rather than "never": the row is tried again once.
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TransientInputError(InputError, TransientError):
    """A photo could not be fetched for a reason that may pass: the row is tried again."""


def shown(url: str) -> str:
    """A URL as it may appear in messages, logs and records: no credentials, no query (it often
    carries an access token), no fragment."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{p.port}" if _port(p) is not None else "")
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))


def _port(p: urllib.parse.SplitResult) -> int | None:
    try:
        return p.port
    except ValueError:
        return None


def refusal(address: Address) -> str | None:
    """Why a catalog may not make a worker connect to `address`, or None for a public address.

    A worker runs next to cloud instance metadata (169.254.169.254), internal services and other
    clients' data; a URL in a supplier's catalog must not reach any of them. IPv4 addresses
    written inside IPv6 ones (::ffff:127.0.0.1, 64:ff9b::a00:1) are judged as the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
                                        if address in _NAT64 else None)
        if inner is not None:
            return refusal(inner)
    for test, why in ((address.is_unspecified, "an unspecified address"), (address.is_loopback, "a loopback address"),
                      (address.is_link_local, "a link-local address (where cloud instance metadata lives)"),
                      (address.is_multicast, "a multicast address"), (address in _CGNAT, "a carrier-grade NAT address"),
                      (address.is_private, "a private address"), (address.is_reserved, "a reserved address"),
                      (not address.is_global, "not a public address")):
        if test:
            return why
    return None


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts a photo URL may reach: public addresses, plus the names and networks of
    `[load] allow_hosts` (an internal image server, a CDN on a private network)."""

    names: frozenset[str]  # exact host names, or ".suffix" for a name and its subdomains ("*.example.com")
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: Sequence[str], where: str = "load.allow_hosts") -> HostPolicy:
        names, networks = set(), []
        for i, entry in enumerate(entries):
            text = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            name = text[2:] if text.startswith("*.") else text
            if not name or not all(part and part.replace("-", "").isalnum() for part in name.split(".")):
                raise ConfigError(f"{where}[{i}] = {entry!r}: expected a host name, '*.domain', an IP address or "
                                  "a CIDR range like '10.20.0.0/16'")
            names.add("." + name if text.startswith("*.") else name)
        return cls(frozenset(names), tuple(networks))

    def _named(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.names or any(n.startswith(".") and (host.endswith(n) or host == n[1:]) for n in self.names)

    def address(self, host: str, port: int) -> str:
        """The address to connect to for `host`, resolved once here (so a second lookup cannot
        answer differently), or InputError naming the address and the setting that would allow it."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            kind = TransientInputError if exc.errno == socket.EAI_AGAIN else InputError
            raise kind(f"cannot resolve host {host!r} ({exc.strerror})") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses:
            raise InputError(f"host {host!r} has no address")
        if self._named(host):
            return str(addresses[0])
        for address in addresses:
            why = refusal(address)
            if why and not any(address in net for net in self.networks):
                _refuse(host, address, why)
        return str(addresses[0])


def _refuse(host: str, address: Address, why: str) -> NoReturn:
    shown_host = host if host == str(address) else f"{host} ({address})"
    raise InputError(f"refused: {shown_host} is {why}; a catalog may only reach public addresses "
                     f"unless [load] allow_hosts names the host or its network")


@functools.lru_cache(maxsize=16)
def _policy(entries: tuple[str, ...]) -> HostPolicy:
    return HostPolicy.parse(entries)


class _Pinned(http.client.HTTPConnection):
    """HTTP to an address resolved and checked beforehand; the Host header keeps the name."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    """HTTPS to an address resolved and checked beforehand; the certificate is verified for the name."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch(url: str, cfg: LoadOptions) -> bytes:
    """The body of an http(s) photo URL, bounded by `cfg.max_bytes` and `cfg.url_timeout_s`.

    Every hop (the URL and each redirect, at most MAX_REDIRECTS) is resolved once, its address
    checked against the host policy, and the connection made to that very address, so a name that
    answers differently the second time (DNS rebinding) cannot switch it. A URL with credentials
    in it is refused; messages never show credentials or query strings."""
    name = shown(url)
    deadline = time.monotonic() + cfg.url_timeout_s
    policy = _policy(tuple(cfg.allow_hosts))
    hop = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            conn, resp = _request(hop, policy, cfg.url_timeout_s)
            try:
                if resp.status in _REDIRECTS and resp.getheader("Location"):
                    hop = _redirect(hop, resp.getheader("Location", ""), name)
                    continue
                return _body(resp, name, cfg, deadline)
            finally:
                conn.close()
        raise InputError(f"{name}: more than {MAX_REDIRECTS} redirects")
    except InputError as exc:
        if str(exc).startswith(name):
            raise
        via = f"redirected to {shown(hop)}, " if hop != url else ""
        raise type(exc)(f"{name}: {via}{exc}") from None
    except TimeoutError:
        raise TransientInputError(f"{name}: timed out after {cfg.url_timeout_s:g} s") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, bad TLS or framing
        passing = isinstance(exc, ConnectionError) and not isinstance(exc, ssl.SSLError)
        raise (TransientInputError if passing else InputError)(f"{name}: could not fetch ({exc})") from None


def _request(url: str, policy: HostPolicy, timeout: float) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    p = urllib.parse.urlsplit(url)
    if p.scheme.lower() not in ("http", "https"):
        raise InputError(f"unsupported URL scheme '{p.scheme}:'")
    if p.username is not None or p.password is not None:
        raise InputError("the URL carries credentials (user:password@): put them in the image server's "
                         "configuration, never in a catalog")
    if not p.hostname:
        raise InputError("the URL has no host")
    port = _port(p) or (443 if p.scheme.lower() == "https" else 80)
    address = policy.address(p.hostname, port)
    kind = _PinnedTLS if p.scheme.lower() == "https" else _Pinned
    conn = kind(p.hostname, address, port, timeout)
    target = urllib.parse.urlunsplit(("", "", p.path or "/", p.query, ""))
    try:
        conn.request("GET", target, headers={"User-Agent": "product-staging/1", "Accept": "image/*"})
        return conn, conn.getresponse()
    except BaseException:
        conn.close()
        raise


def _redirect(url: str, location: str, name: str) -> str:
    target = urllib.parse.urljoin(url, location)
    if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
        raise InputError(f"{name}: redirected to a non-http URL ({shown(target)})")
    return target


def _body(resp: http.client.HTTPResponse, name: str, cfg: LoadOptions, deadline: float) -> bytes:
    if not 200 <= resp.status < 300:
        kind = TransientInputError if resp.status in _RETRY_STATUS else InputError
        raise kind(f"{name}: server answered HTTP {resp.status} {resp.reason}")
    ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if ctype not in _GENERIC_TYPES and not ctype.startswith("image/"):
        raise InputError(f"{name}: server sent {ctype}, not an image")
    length = resp.getheader("Content-Length")
    if length and length.isdigit() and int(length) > cfg.max_bytes:
        raise InputError(f"{name}: download is {shown_size(int(length))}, over the {shown_size(cfg.max_bytes)} limit")
    buf = bytearray()
    while chunk := resp.read(_CHUNK):
        buf += chunk
        if len(buf) > cfg.max_bytes:
            raise InputError(f"{name}: download is over the {shown_size(cfg.max_bytes)} limit")
        if time.monotonic() > deadline:
            raise TimeoutError
    return bytes(buf)


def shown_size(n: int) -> str:
    """A byte count as people read it: 15.1 kB, 50 MB."""
    for scale, unit in ((1e6, "MB"), (1e3, "kB")):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
