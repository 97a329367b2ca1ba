"""Reading content credentials back: a file's manifest, its validity and whether its signer is trusted."""

from __future__ import annotations

import functools
import io
import json
import mimetypes
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa

from provenance.errors import SigningError
from provenance.keys import default_keys_dir, dev_keys_in, load_certs, read_pem

UNTRUSTED_CODE = "signingCredential.untrusted"


@dataclass(frozen=True)
class VerifyOptions:
    """[verify]"""

    trust_anchors_env: str = "STAGE_TRUST_ANCHORS"  # PEM bundle of trusted roots; falls back to the dev CA


@dataclass(frozen=True)
class Verification:
    path: str
    ok: bool
    state: str | None
    failures: list[str]  # "code: explanation"
    trusted: bool
    manifest: dict[str, Any] | None  # the active manifest as the SDK reports it


@functools.lru_cache(maxsize=4)
def _read_context(trust_anchors_pem: str | None) -> c2pa.Context:
    """Cached: parsing the anchors costs more than reading a file. Reading never touches the network."""
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors_pem:
        load_certs(trust_anchors_pem.encode(), "the trust anchors")
        settings["trust"] = {"user_anchors": trust_anchors_pem}
    try:
        return c2pa.Context(settings=c2pa.Settings.from_dict(settings))
    except c2pa.C2paError as exc:
        raise SigningError(f"the trust anchors are not a usable PEM bundle: {exc}") from None


def verify_file(path: Path, trust_anchors_pem: str | None = None, data: bytes | None = None) -> Verification:
    """Read one file's credentials; a bad or unsigned file gives ok=False, never an exception.

    `data`: the file's bytes when the caller has just read them (its type still comes from `path`).
    Bad trust anchors are a configuration error and raise SigningError.
    """
    where, context = str(path), _read_context(trust_anchors_pem)
    try:
        data = Path(path).read_bytes() if data is None else data
    except OSError as exc:
        return Verification(where, False, None, [f"unreadable: {exc.strerror}"], False, None)
    try:
        with c2pa.Reader(mimetypes.guess_type(where)[0], io.BytesIO(data), context=context) as reader:
            state, manifest = reader.get_validation_state(), reader.get_active_manifest()
            results = reader.get_validation_results()
            raw = (
                (results.get("activeManifest") or {}).get("failure")
                if results is not None
                else json.loads(reader.json()).get("validation_status")
            ) or []
    except c2pa.C2paError.ManifestNotFound:
        return Verification(where, False, None, ["manifest not found"], False, None)
    except (c2pa.C2paError, KeyError, ValueError) as exc:
        return Verification(where, False, None, [f"unreadable credentials: {exc}"], False, None)
    codes = [str(f.get("code", "")) for f in raw]
    failures = [f"{f.get('code', '?')}: {f.get('explanation', '')}" for f in raw]
    trusted = state == "Trusted"
    if trust_anchors_pem:
        ok = trusted or (state == "Valid" and not codes)
    else:
        ok = state in ("Valid", "Trusted") and all(c == UNTRUSTED_CODE for c in codes)
    return Verification(where, ok, state, failures, trusted, manifest)


def load_trust_anchors(cfg: VerifyOptions, env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """Roots to trust: the configured bundle, else the dev CA (so dev runs verify end to end), else none."""
    env = os.environ if env is None else env
    value = env.get(cfg.trust_anchors_env, "").strip()
    if value:
        pem, origin = read_pem(cfg.trust_anchors_env, value)
        load_certs(pem, origin)
        return pem.decode(), f"trust anchors from {origin}"
    ca = dev_keys_in(default_keys_dir()).ca_pem
    if ca.is_file():
        return ca.read_text(encoding="utf-8"), f"development CA {ca} (UNTRUSTED outside this machine)"
    return None, "no trust anchors: signatures are checked, signers are not"
