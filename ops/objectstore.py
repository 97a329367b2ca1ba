"""An object-store output (fsspec: s3fs, gcsfs): whole-object uploads verified against the local bytes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.atomic import write_bytes
from ops.errors import TransientError
from ops.location import StorageOptions, check_output_url
from stages.errors import StagingError

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


class StoreError(StagingError, TransientError):
    """An upload, listing or read on the object store failed (the row is tried again once)."""


class UploadMismatch(StagingError):
    """What the store holds after an upload is not the bytes sent: the object was deleted again."""


def _rel_ok(rel: str) -> str:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in ("", ".", ".."):
        raise ValueError(f"not a relative object name: {rel!r}")
    return rel


@dataclass(frozen=True)
class Store:
    """The objects under one output URL, named by their path relative to it (`products/<slug>/...`)."""

    fs: Any  # an fsspec filesystem
    root: str  # the filesystem path of the output URL (bucket/prefix)
    url: str
    scheme: str

    def path(self, rel: str) -> str:
        return f"{self.root}/{_rel_ok(rel)}" if self.root else _rel_ok(rel)

    def put(self, rel: str, data: bytes) -> None:
        """Upload `data` as the whole object `rel` in one request, then check what the store holds.

        One PUT: the object appears with all its bytes or not at all (S3 and GCS make an object
        visible only when its upload completed), so no temp name is ever used for a published
        one. S3 gets the body's MD5 (`Content-MD5`): a body damaged on the way is refused by
        the server. After the upload its size and checksum (S3 ETag, GCS md5Hash; a read-back
        where the store gives no MD5, e.g. SSE-KMS) are compared with the local bytes, which are
        the ones that passed the pixel and credential checks; on a mismatch the object is
        deleted and `UploadMismatch` raised.
        """
        md5 = hashlib.md5(data)
        extra = {"ContentMD5": base64.b64encode(md5.digest()).decode()} if self.scheme == "s3" else {}
        target = self.path(rel)
        try:
            if self.scheme == "file":  # a local "store" (tests): a temp file renamed into place
                write_bytes(Path(target), data)
                response = None
            else:
                response = self.fs.pipe_file(target, data, **extra)
        except FileNotFoundError as exc:  # the upload itself: no such bucket (not worth a retry)
            raise StagingError(f"upload of {self.url}/{rel} failed: the store answered 'not found' "
                               f"(no such bucket there?): {exc}") from exc
        except Exception as exc:
            raise StoreError(f"upload of {self.url}/{rel} failed: {type(exc).__name__}: {exc}") from exc
        try:
            info = _from_response(response, len(data)) or self._info(target)
        except FileNotFoundError:
            info = None
        except Exception as exc:
            raise StoreError(f"upload of {self.url}/{rel} failed: {type(exc).__name__}: {exc}") from exc
        problem = self._mismatch(target, info, data, md5.hexdigest())
        if problem:
            try:
                self.fs.rm_file(target)
            except Exception:  # noqa: S110 - the mismatch is the error to report
                pass
            raise UploadMismatch(f"upload of {self.url}/{rel}: {problem}; the object was removed")

    def put_all(self, files: dict[str, bytes], folder: str) -> None:
        """Upload several objects of one folder at once (concurrent whole-object PUTs), then check
        them all against the local bytes from one listing of `folder` (size and ETag/md5Hash, or a
        read-back where the store gives no MD5), as `put` does one by one; the objects that do
        not match are deleted and `UploadMismatch` raised."""
        if not files:
            return
        if self.scheme == "file" or len(files) == 1:
            for rel, data in files.items():
                self.put(rel, data)
            return
        try:
            responses = self.fs.pipe({self.path(rel): data for rel, data in files.items()})
            infos = [_from_response(r, len(d)) for r, d in zip(responses or [], files.values(), strict=False)]
            if len(infos) == len(files) and all(infos):  # S3: each PUT's ETag, the MD5 of what it stored
                found = {self.path(rel): info for rel, info in zip(files, infos, strict=True)}
            else:
                self.fs.invalidate_cache(self.path(folder.rstrip("/")))
                found = self.fs.find(self.path(folder.rstrip("/")), detail=True)
        except Exception as exc:
            raise StoreError(f"upload to {self.url}/{folder} failed: {type(exc).__name__}: {exc}") from exc
        bad = {}
        for rel, data in files.items():
            target = self.path(rel)
            problem = self._mismatch(target, found.get(target), data, hashlib.md5(data).hexdigest())
            if problem:
                bad[target] = f"{rel}: {problem}"
        if bad:
            try:
                self.fs.rm(list(bad))
            except Exception:  # noqa: S110 - the mismatch is the error to report
                pass
            raise UploadMismatch(f"upload to {self.url}: {'; '.join(bad.values())}; removed")

    def _info(self, target: str) -> dict[str, Any]:
        self.fs.invalidate_cache(target)
        return self.fs.info(target)

    def _mismatch(self, target: str, info: dict[str, Any] | None, data: bytes, md5_hex: str) -> str | None:
        if info is None:
            return "no object after the upload"
        if info.get("size") != len(data):
            return f"{info.get('size')} bytes stored, {len(data)} sent"
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"').lower()
        if self.scheme == "s3" and _MD5_HEX.fullmatch(etag):
            return None if etag == md5_hex else f"ETag {etag} is not the MD5 of the bytes sent ({md5_hex})"
        if self.scheme == "gs" and info.get("md5Hash"):
            sent = base64.b64encode(bytes.fromhex(md5_hex)).decode()
            return None if info["md5Hash"] == sent else "md5Hash differs from the bytes sent"
        back = self.fs.cat_file(target)  # no MD5 from the store: compare the bytes themselves
        return None if hashlib.sha256(back).digest() == hashlib.sha256(data).digest() else "stored bytes differ"

    def signed_url(self, rel: str, seconds: int) -> str:
        """A presigned GET URL of the object `rel`, valid `seconds` (fsspec `sign`, made locally
        without a request: S3 signs with SigV4 at the store's endpoint and region). Raises what
        the filesystem raises when it cannot sign (no credentials, a filesystem without signed URLs)."""
        return str(self.fs.sign(self.path(rel), expiration=seconds))

    def get(self, rel: str) -> bytes | None:
        """The object's bytes; None when there is none."""
        try:
            return self.fs.cat_file(self.path(rel))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StoreError(f"read of {self.url}/{rel} failed: {type(exc).__name__}: {exc}") from exc

    def get_json(self, rel: str) -> dict[str, Any] | None:
        """A JSON object's content; None when it is missing or not a JSON object."""
        data = self.get(rel)
        try:
            obj = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None

    def listing(self, prefix: str) -> dict[str, int]:
        """Every object under `prefix` (a folder, relative): relative name -> size. One listing
        (paged by the store), not a request per object."""
        base = self.path(prefix.rstrip("/"))
        try:
            self.fs.invalidate_cache(base)
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise StoreError(f"listing of {self.url}/{prefix} failed: {type(exc).__name__}: {exc}") from exc
        cut = len(self.root) + 1 if self.root else 0
        return {name[cut:]: int(info.get("size") or 0) for name, info in found.items()
                if info.get("type", "file") == "file"}

    def delete(self, rels: Iterable[str]) -> None:
        paths = [self.path(r) for r in rels]
        if not paths:
            return
        try:
            self.fs.rm(paths)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise StoreError(f"delete under {self.url} failed: {type(exc).__name__}: {exc}") from exc

    def copy(self, src: str, dst: str) -> None:
        """A server-side copy of one object (S3 CopyObject, GCS rewrite): the copy appears whole."""
        try:
            self.fs.copy(self.path(src), self.path(dst))
        except Exception as exc:
            raise StoreError(f"copy of {self.url}/{src} failed: {type(exc).__name__}: {exc}") from exc


def _from_response(response: Any, size: int) -> dict[str, Any] | None:
    """What an S3 PutObject response tells of the stored object: its ETag, the MD5 of the body the
    server received and stored (single-part), in place of a HEAD request; None otherwise."""
    if isinstance(response, dict) and _MD5_HEX.fullmatch(str(response.get("ETag", "")).strip('"').lower()):
        return {"size": size, "ETag": response["ETag"]}
    return None


_OPEN: dict[tuple[str, str, str], Store] = {}
_GUARD = threading.Lock()


def open_store(url: str, endpoint_url: str = "", region: str = "") -> Store:
    """The Store of an output URL, one per process and settings (`[storage]` of the config).

    Credentials come from the filesystem's usual environment (AWS_* and ~/.aws for s3://,
    GOOGLE_APPLICATION_CREDENTIALS for gs://); with no `endpoint_url` botocore also reads
    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL. Listings are never cached: other workers write
    the same prefix.
    """
    url = check_output_url(url)
    key = (url, endpoint_url, region)
    with _GUARD:
        if key not in _OPEN:
            _OPEN[key] = _connect(url, endpoint_url, region)
        return _OPEN[key]


def store_for(storage: StorageOptions, url: str) -> Store:
    """`open_store` with the config's `[storage]` settings."""
    return open_store(url, storage.endpoint_url, storage.region)


def _connect(url: str, endpoint_url: str, region: str) -> Store:
    import fsspec

    scheme = urllib.parse.urlsplit(url).scheme
    opts: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
    if scheme == "s3":
        opts["config_kwargs"] = {"signature_version": "s3v4"}  # presigned links: the only one newer regions take
        if endpoint_url:
            opts["endpoint_url"] = endpoint_url
        if region:
            opts["client_kwargs"] = {"region_name": region}
    elif scheme == "gs" and endpoint_url:
        opts["endpoint_url"] = endpoint_url
    elif scheme in ("file", "memory"):
        opts = {"auto_mkdir": True} if scheme == "file" else {}
    try:
        fs = fsspec.filesystem(scheme, **opts)
    except ImportError as exc:
        package = {"s3": "s3fs", "gs": "gcsfs"}.get(scheme, scheme)
        raise StagingError(f"output URL {url}: the package {package} is not installed ({exc})") from None
    root = fs._strip_protocol(url).rstrip("/")
    return Store(fs, root, url, scheme)
