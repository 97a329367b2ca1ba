"""Links to the output location that a browser opens from the Prefect UI's http(s) page ([previews])."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from ops.location import StorageOptions
from stages.errors import ConfigError

MAX_PRESIGN_S = 604_800  # 7 days: the longest a SigV4 presigned S3 URL may live
SERVE_HINT = ('set [previews] base_url to the URL `stage serve-outputs` prints (a read-only web server of the '
              'output folder) for thumbnails and links that open in the Prefect UI')


@dataclass(frozen=True)
class PreviewOptions:
    """[previews]: how run artifacts link the output location's files (README: Previews in the Prefect UI)."""

    base_url: str = ""  # where the output location is served over http(s), e.g. by `stage serve-outputs`
    presign_s: int = 86_400  # lifetime of presigned object-store links (when base_url is empty)

    def check(self, where: str) -> None:
        problem = base_url_error(self.base_url)
        if problem:
            raise ConfigError(f"{where}.base_url = {self.base_url!r}: {problem}")
        if not 1 <= self.presign_s <= MAX_PRESIGN_S:
            raise ConfigError(f"{where}.presign_s = {self.presign_s}: must be 1..{MAX_PRESIGN_S} seconds")


class PreviewError(Exception):
    """A link could not be made (an object store without signing credentials, a missing fsspec package)."""


def base_url_error(base_url: str) -> str | None:
    """Why `base_url` cannot prefix preview links, or None: empty, or an http(s) URL without query or fragment."""
    if not base_url:
        return None
    if re.search(r"\s", base_url):
        return "contains white space"
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL such as 'http://stage-box:8780/'"
    if parts.query or parts.fragment or "?" in base_url or "#" in base_url:
        return "must not hold a query or fragment (file paths are appended to it)"
    if parts.username or parts.password:
        return "must not hold credentials"
    return None


def preview_url(rel: str, out_root: Path, base_url: str = "", output_url: str | None = None,
                presign_s: int = 86_400, storage: StorageOptions = StorageOptions()) -> str:
    """The link to `rel`, a file path relative to the output location, that the Prefect UI can open.

    - `base_url` set: `base_url` + the URL-quoted path, for a local folder served by `stage
      serve-outputs` (or any web server of the folder), or an object store behind a CDN or a public
      bucket URL.
    - an object-store output (`output_url`: `s3://bucket/prefix`, `gs://...`): a presigned GET URL
      that lives `presign_s` seconds, for the store `storage` (`[storage]` endpoint_url and region;
      empty: the AWS environment's) names, as the run's uploads reach it (`ops.objectstore.Store.signed_url`).
      Anyone holding the link can read that one object until it expires, and the link dies then.
    - else today's `file://` URL of the local file (`out_root` / `rel`): it opens only in a browser
      on a machine that sees the folder, and never from the UI's http page.

    A path that is absolute or climbs out with `..` raises ValueError: records name their files
    relative to the output location, so such a path is not one of its files.
    """
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts or "\\" in rel:
        raise ValueError(f"{rel!r} is not a path inside the output location")
    rel = path.as_posix()
    if base_url:
        return base_url.rstrip("/") + "/" + quote(rel, safe="/")
    if output_url:
        return presigned_url(output_url, rel, presign_s, storage)
    return "file://" + quote(str((out_root / rel).resolve()))


def presigned_url(output_url: str, rel: str, presign_s: int, storage: StorageOptions = StorageOptions()) -> str:
    """A presigned GET URL of `rel` under the object-store location `output_url`, signed for the
    same store (endpoint, region) the run uploads to: an S3-compatible store (MinIO, R2, Ceph)
    named by `[storage] endpoint_url` gets links to itself, not to AWS.

    Credentials come from the usual environment (AWS_* / GOOGLE_*). Signing happens locally, without a
    request to the store; PreviewError when the filesystem cannot sign (no credentials, no fsspec
    package for the scheme, a filesystem without signed URLs).
    """
    from ops.objectstore import store_for  # here: ops.config reads this module's options

    scheme = output_url.split("://", 1)[0].lower()
    try:
        return store_for(storage, output_url).signed_url(rel, presign_s)
    except Exception as exc:  # StagingError (no package), NotImplementedError, botocore's NoCredentialsError, ...
        raise PreviewError(f"cannot presign {scheme}:// links: {type(exc).__name__}: {exc}") from exc
