"""Keys and certificates: development signing material, and the PEM checks every signer needs."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from provenance.errors import SigningError

DEV_WARNING = (
    "WARNING: signing with DEVELOPMENT credentials (`stage keys init`). They are UNTRUSTED by every "
    "C2PA verifier; do NOT publish images signed with them. Set the production certificate chain "
    "and private key environment variables for real output."
)

CA_FILE = "ca.pem"
CHAIN_FILE = "signer-chain.pem"
KEY_FILE = "signer-key.pem"

# C2PA requires emailProtection here; documentSigning is the purpose-built EKU, added alongside.
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
LEAF_DAYS = 365
CA_DAYS = 5 * 365
_CURVE_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True)
class DevKeys:
    directory: Path
    ca_pem: Path
    chain_pem: Path
    key_pem: Path


def default_keys_dir() -> Path:
    """$STAGE_KEYS_DIR, else the XDG config folder: per user, never inside a checkout."""
    explicit = os.environ.get("STAGE_KEYS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "product-staging" / "keys"


def dev_keys_in(directory: Path) -> DevKeys:
    return DevKeys(directory, directory / CA_FILE, directory / CHAIN_FILE, directory / KEY_FILE)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "product-staging UNTRUSTED development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, signer: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "encipher_only", "decipher_only"),
        False,
    )
    return x509.KeyUsage(digital_signature=signer, key_cert_sign=not signer, crl_sign=not signer, **flags)


def _issue(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None,
    now: dt.datetime,
) -> x509.Certificate:
    """A CA when `issuer` is None (self-signed), else an end-entity signer issued by it."""
    days = CA_DAYS if issuer is None else LEAF_DAYS
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(subject) if issuer is None else issuer[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=0 if issuer is None else None), critical=True)
        .add_extension(_key_usage(signer=issuer is not None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        return builder.sign(key, hashes.SHA256())
    ca_ski = issuer[1].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING])
    builder = builder.add_extension(eku, critical=False).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
    )
    return builder.sign(issuer[0], hashes.SHA256())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (temp file, fsync, rename) with `mode` from the first byte: a key file is
    created 0600, never readable by others, even briefly."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def init_dev_keys(directory: Path | None = None, *, force: bool = False) -> DevKeys:
    """Make the dev CA and signer once; later calls return the same files so signatures stay stable.

    Content credentials need a certificate chain even on a laptop. The development keys let the
    pipeline sign and verify end to end without a real CA, but no public verifier trusts them:
    images signed with them must never be published. They live in the user's config folder so that
    no key ever lands in the repository or in a build artifact.
    """
    keys = dev_keys_in(Path(directory) if directory is not None else default_keys_dir())
    if not force and all(p.is_file() for p in (keys.ca_pem, keys.chain_pem, keys.key_pem)):
        return keys
    keys.directory.mkdir(parents=True, exist_ok=True)
    os.chmod(keys.directory, 0o700)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _issue("UNTRUSTED development root CA", ca_key, None, now)
    leaf = _issue("UNTRUSTED development signer", leaf_key, (ca_key, ca), now)
    pem = serialization.Encoding.PEM
    _write(keys.key_pem, leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
           0o600)
    _write(keys.chain_pem, leaf.public_bytes(pem) + ca.public_bytes(pem), 0o644)
    # ca.pem last: verifiers look only for it, so its presence means the whole set is written.
    _write(keys.ca_pem, ca.public_bytes(pem), 0o644)
    return keys


def read_pem(var: str, value: str) -> tuple[bytes, str]:
    """An env value is PEM text or a path to a PEM file; returns the bytes and a loggable origin."""
    value = value.strip()
    if value.startswith("-----BEGIN"):
        return value.encode() + b"\n", f"${var} (inline PEM)"
    path = Path(value).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"${var} names {path}, which cannot be read: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        raise SigningError(f"${var} names {path}, which is not a PEM file")
    return data, f"${var} ({path})"


def load_certs(chain: bytes, where: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(chain)
    except ValueError:
        raise SigningError(f"{where}: not a PEM certificate chain") from None


def load_private_key(key: bytes, where: str) -> Any:
    """Parse a PEM key; errors name where it came from, never its content."""
    try:
        return serialization.load_pem_private_key(key, password=None)
    except TypeError:
        raise SigningError(f"{where}: the private key is encrypted; provide it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"{where}: not a PEM private key") from None


def same_public_key(a: Any, b: Any) -> bool:
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*spki) == b.public_bytes(*spki)


def signing_algorithm(public_key: Any) -> str:
    """The COSE algorithm follows from the leaf's key type, so production keys need no extra setting."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in _CURVE_ALG:
        return _CURVE_ALG[public_key.curve.name]
    if isinstance(public_key, rsa.RSAPublicKey):
        return "PS256"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ED25519"
    raise SigningError(f"unsupported signing key type: {type(public_key).__name__}")
