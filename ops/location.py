"""Where a run's outputs go: a local folder, or an object-store URL staged through a local scratch folder."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from stages.errors import ConfigError

STORE_SCHEMES = ("s3", "gs", "file", "memory")  # what an output URL may name (file:// and memory:// for tests)


def is_url(out: str | os.PathLike[str] | None) -> bool:
    """Whether an output location is a URL (`scheme://...`) rather than a folder."""
    return out is not None and "://" in str(out)


def check_output_url(url: str) -> str:
    """The output URL normalised (no trailing '/'), or ConfigError naming what is wrong with it.

    Only s3://, gs:// (and file://, memory:// for tests) are accepted: other fsspec schemes
    (http, ftp, chained `simplecache::` URLs ...) either cannot hold objects safely or would
    write somewhere else than they seem to. Credentials, queries and fragments are refused: they
    would end up in records, logs and reports, and credentials belong in the environment.
    """
    if "::" in url:
        raise ConfigError(f"output URL {_shown(url)!r}: chained URLs are not an output location")
    p = urllib.parse.urlsplit(url)
    scheme = p.scheme.lower()
    if scheme not in STORE_SCHEMES:
        raise ConfigError(f"output URL {_shown(url)!r}: scheme {scheme!r} is not supported; "
                          f"use a folder or one of {', '.join(s + '://' for s in STORE_SCHEMES)}")
    if p.username or p.password or "@" in p.netloc:
        raise ConfigError(f"output URL {_shown(url)!r}: credentials do not belong in the URL; "
                          "set them in the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS)")
    if p.query or p.fragment:
        raise ConfigError(f"output URL {_shown(url)!r}: a query or fragment is not allowed")
    if scheme in ("s3", "gs") and not p.netloc:
        raise ConfigError(f"output URL {url!r}: no bucket (expected {scheme}://bucket/prefix)")
    parts = [s for s in p.path.split("/") if s]
    if any(s in (".", "..") for s in parts):
        raise ConfigError(f"output URL {url!r}: '.' and '..' are not allowed in the path")
    if scheme == "file":
        return "file://" + ("/" + "/".join(parts) if parts else "/")
    return f"{scheme}://{p.netloc}" + "".join("/" + s for s in parts)


def _shown(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((p.scheme, p.hostname or "", p.path, "", ""))


def scratch_root(url: str, scratch_dir: str = "") -> Path:
    """This worker's local scratch folder for the output URL `url`: `<base>/<hash of url>`.

    `base` is `[run].scratch_dir` when set, else `$XDG_CACHE_HOME/product-staging/scratch`
    (`~/.cache/...` without it). Products are staged there exactly as into a local output folder
    (atomic writes, pixel and credential checks on the written bytes) and then published to the
    store; the folder is a cache, safe to delete between runs: the store is the output.
    """
    if scratch_dir:
        base = Path(scratch_dir).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path("~").expanduser() / ".cache")
        base = Path(cache) / "product-staging" / "scratch"
    return (base / hashlib.sha256(url.encode()).hexdigest()[:16]).resolve()


@dataclass(frozen=True)
class StorageOptions:
    """[storage]: non-secret settings of an object-store output; credentials come from the environment."""

    # an S3-compatible server (MinIO, Ceph, R2 ...); "": AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS
    endpoint_url: str = ""
    region: str = ""  # "": AWS_DEFAULT_REGION or the profile's

    def check(self, where: str) -> None:
        if self.endpoint_url and not re.fullmatch(r"https?://[^\s/?#@]+(/[^\s?#@]*)?", self.endpoint_url):
            raise ConfigError(f"{where}.endpoint_url = {self.endpoint_url!r}: expected http(s)://host[:port], "
                              "without credentials")


@dataclass(frozen=True)
class OutputLocation:
    """A run's output: `root` is the local folder this process writes (the output folder itself, or
    the scratch folder of an object-store output); `url` the object-store URL, None for a folder."""

    root: Path
    url: str | None = None

    @property
    def name(self) -> str:
        """The location as messages, reports and run state name it: the URL, else the folder."""
        return self.url or str(self.root)


def output_location(out: str | os.PathLike[str] | None, output_dir: str, base_dir: str,
                    scratch_dir: str = "") -> OutputLocation:
    """Resolve `--out` (or the flow's `out`), else `[run].output_dir`, to an OutputLocation.

    A folder is made absolute (relative `output_dir` against the config file's folder `base_dir`);
    a URL is checked (`check_output_url`) and gets this worker's scratch folder (`scratch_root`,
    `scratch_dir` relative to `base_dir` too).
    """
    chosen = str(out) if out else output_dir
    if is_url(chosen):
        url = check_output_url(chosen)
        scratch = ""
        if scratch_dir:
            s = Path(scratch_dir).expanduser()
            scratch = str(s if s.is_absolute() else Path(base_dir) / s)
        return OutputLocation(scratch_root(url, scratch), url)
    p = Path(chosen).expanduser()
    if not out and not p.is_absolute():
        p = Path(base_dir) / p
    return OutputLocation(p.resolve())
