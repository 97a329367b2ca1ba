"""`stage doctor`'s checks of this machine's signing material, services and output folder."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from ops.doctor_row import Row
from ops.location import StorageOptions
from provenance.errors import SigningError
from provenance.keys import load_certs, load_private_key, same_public_key
from provenance.sign import SignOptions, load_signer_material
from provenance.verify import VerifyOptions, load_trust_anchors

EXPIRY_WARN_DAYS = 30  # a signing certificate closer than this to its end is a warning
MIN_FREE_BYTES = 1 << 30  # less free space than this under the output folder is a warning
_GIB = float(1 << 30)


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def chain_problem(certs: list[x509.Certificate], now: dt.datetime) -> str:
    """Why a certificate chain (leaf first) cannot sign now; "" when every certificate is within its
    validity and each is issued by the next."""
    for i, cert in enumerate(certs):
        which = "the signing certificate" if i == 0 else f"chain certificate #{i} ({_cn(cert)!r})"
        if now < cert.not_valid_before_utc:
            return f"{which} is not valid yet: valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        if now > cert.not_valid_after_utc:
            return f"{which} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    for i, (cert, issuer) in enumerate(zip(certs, certs[1:], strict=False)):
        try:
            cert.verify_directly_issued_by(issuer)
        except Exception as exc:  # InvalidSignature, ValueError (names differ), TypeError (key types)
            return (f"certificate #{i} ({_cn(cert)!r}) is not issued by the next one in the chain "
                    f"({_cn(issuer)!r}): {type(exc).__name__}")
    return ""


def signing_rows(sign: SignOptions, env: Mapping[str, str] | None = None,
                 now: dt.datetime | None = None) -> list[Row]:
    """The signing chain a run would use: readable, each certificate valid now and issued by the next,
    the key matching the leaf, and days until the first certificate expires (under 30: a warning).

    A run signs every image, so a chain that cannot sign is a failure; the development keys work
    but are untrusted elsewhere, which is a warning."""
    now = now or dt.datetime.now(dt.timezone.utc)
    fix = (f"stage keys init  # development keys; production: set ${sign.cert_chain_env} and "
           f"${sign.private_key_env}")
    try:
        material = load_signer_material(sign, env)
        certs = load_certs(material.chain_pem, material.origin)
        if not certs:
            raise SigningError(f"{material.origin}: the certificate chain is empty")
        if material.key_pem is not None:
            key = load_private_key(material.key_pem, material.origin)
            if not same_public_key(key.public_key(), certs[0].public_key()):
                raise SigningError(f"{material.origin}: the private key does not belong to the signing certificate")
    except SigningError as exc:
        return [Row("signing", "signing chain", "fail", str(exc), fix)]
    problem = chain_problem(certs, now)
    if problem:
        return [Row("signing", "signing chain", "fail", f"{material.origin}: {problem}", fix)]
    ends = min(c.not_valid_after_utc for c in certs)
    days = (ends - now).days
    detail = (f"{material.origin}: {len(certs)} certificate(s), signer {_cn(certs[0])!r}, valid until "
              f"{ends:%Y-%m-%d} ({days} days)")
    rows = [Row("signing", "signing chain", "warn" if days < EXPIRY_WARN_DAYS else "ok",
                detail + (f": expires within {EXPIRY_WARN_DAYS} days" if days < EXPIRY_WARN_DAYS else ""),
                "renew the signing certificate" if days < EXPIRY_WARN_DAYS else "")]
    if material.is_dev:
        rows.append(Row("signing", "signing credentials", "warn",
                        "development keys: images signed with them are untrusted by every other verifier",
                        f"set ${sign.cert_chain_env} and ${sign.private_key_env} for production"))
    return rows


def trust_rows(verify: VerifyOptions, env: Mapping[str, str] | None = None,
               now: dt.datetime | None = None) -> list[Row]:
    """The roots a run checks its written images against (`load_trust_anchors`)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        pem, origin = load_trust_anchors(verify, env)
    except SigningError as exc:
        return [Row("signing", "trust anchors", "fail", str(exc), f"fix or unset ${verify.trust_anchors_env}")]
    if pem is None:
        return [Row("signing", "trust anchors", "warn", origin,
                    f"set ${verify.trust_anchors_env} to a PEM bundle of trusted roots (or `stage keys init`)")]
    certs = load_certs(pem.encode(), origin)
    expired = [c for c in certs if not c.not_valid_before_utc <= now <= c.not_valid_after_utc]
    if expired:
        names = ", ".join(repr(_cn(c)) for c in expired)
        return [Row("signing", "trust anchors", "warn", f"{origin}: {len(certs)} root(s); not valid now: {names}",
                    f"replace them in ${verify.trust_anchors_env}")]
    ends = min(c.not_valid_after_utc for c in certs)
    return [Row("signing", "trust anchors", "ok", f"{origin}: {len(certs)} root(s), first expiry {ends:%Y-%m-%d}")]


def _http_get(url: str, timeout_s: float) -> tuple[int | None, str]:
    """(HTTP status, "") or (None, why it could not be reached)."""
    import httpx

    try:
        response = httpx.get(url, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return response.status_code, ""


def tsa_rows(tsa_url: str, timeout_s: float) -> list[Row]:
    """The RFC 3161 timestamp server: signing fails at once when it is configured and unreachable."""
    if not tsa_url:
        return [Row("signing", "timestamp server", "info",
                    "none configured ([sign] tsa_url): signatures turn invalid when the signing certificate expires")]
    status, why = _http_get(tsa_url, timeout_s)
    if status is None:
        return [Row("signing", "timestamp server", "fail", f"{tsa_url} unreachable ({why}); signing would fail",
                    "check [sign] tsa_url and the network, or set tsa_url = \"\"")]
    return [Row("signing", "timestamp server", "ok", f"{tsa_url} answers (HTTP {status})")]


def prefect_rows(env: Mapping[str, str] | None, timeout_s: float) -> list[Row]:
    """The Prefect API: GET <PREFECT_API_URL>/health, or the note that `stage run` starts its own."""
    env = os.environ if env is None else env
    url = env.get("PREFECT_API_URL", "").strip()
    if not url:
        return [Row("prefect", "Prefect API", "info", "none set: stage run starts a local API server per run")]
    health = url.rstrip("/") + "/health"
    status, why = _http_get(health, timeout_s)
    fix = "start it (`prefect server start`) or unset PREFECT_API_URL"
    if status is None:
        return [Row("prefect", "Prefect API", "fail", f"PREFECT_API_URL={url}: unreachable ({why})", fix)]
    if status != 200:
        return [Row("prefect", "Prefect API", "fail", f"PREFECT_API_URL={url}: {health} answered HTTP {status}", fix)]
    return [Row("prefect", "Prefect API", "ok", f"PREFECT_API_URL={url} answers")]


def output_rows(root: Path) -> list[Row]:
    """Whether a run can write under `root` (or create it) and how much space is free there.

    Probed by creating and removing a temp file in `root` or its nearest existing parent, which
    also catches read-only mounts and ACLs that mode bits do not show."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    fix = f"choose another folder (--out or [run] output_dir) or make {existing} writable"
    if not existing.is_dir():
        return [Row("output", "output folder", "fail", f"{root}: {existing} is not a folder", fix)]
    try:
        fd, probe = tempfile.mkstemp(prefix=".stage-doctor-", suffix=".tmp", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return [Row("output", "output folder", "fail", f"{root}: cannot write in {existing} ({exc.strerror})", fix)]
    free = shutil.disk_usage(existing).free
    where = str(root) if existing == root else f"{root} (created by the first run, in {existing})"
    if free < MIN_FREE_BYTES:
        return [Row("output", "output folder", "warn", f"{where}: writable, only {free / _GIB:.2f} GiB free",
                    "free space or choose another folder")]
    return [Row("output", "output folder", "ok", f"{where}: writable, {free / _GIB:.1f} GiB free")]


def store_rows(url: str | None, storage: StorageOptions, timeout_s: float) -> list[Row]:
    """Whether a run can publish to the object-store output `url` with this machine's credentials
    and `[storage]` settings: a probe object written (and checked, as uploads are), read back and
    deleted under the output prefix. The local folder a URL output has is its scratch folder
    (`output_rows`); this is the check of where the outputs go. No answer within `timeout_s` (a
    wrong endpoint, a firewall) is a failure too."""
    if not url:
        return []
    from ops.objectstore import store_for

    fix = ("check the bucket and prefix, the credentials in the environment (AWS_* or ~/.aws for s3://, "
           "GOOGLE_APPLICATION_CREDENTIALS for gs://) and [storage] endpoint_url and region")
    probe = f".stage-doctor-{secrets.token_hex(4)}.tmp"
    result: list[Row] = []

    def attempt() -> None:
        try:
            store = store_for(storage, url)
            store.put(probe, b"stage doctor probe\n")  # checked against the store's MD5, as every upload
            back = store.get(probe)
            store.delete([probe])
        except Exception as exc:  # StagingError (no fsspec package), StoreError, credentials, network
            result.append(Row("output", "object store", "fail", f"{url}: cannot publish there: "
                              f"{type(exc).__name__}: {exc}", fix))
            return
        if back != b"stage doctor probe\n":
            result.append(Row("output", "object store", "fail", f"{url}: an object written there reads back "
                              "different", fix))
        else:
            where = f" at {storage.endpoint_url}" if storage.endpoint_url else ""
            result.append(Row("output", "object store", "ok", f"{url}{where}: writable (an object written, "
                              "read back and deleted)"))

    worker = threading.Thread(target=attempt, name="stage-doctor-store", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive() or not result:
        return [Row("output", "object store", "fail", f"{url}: no answer within {timeout_s:g} s", fix)]
    return result
