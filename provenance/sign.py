"""Content credentials (C2PA): sign each staged image in memory, the very last step before it is written."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import c2pa
from PIL import Image

from provenance.errors import SigningError
from provenance.keys import (
    default_keys_dir,
    dev_keys_in,
    load_certs,
    load_private_key,
    read_pem,
    same_public_key,
    signing_algorithm,
)

SETTINGS_LABEL = "org.product-staging.settings"
# C2PA 2.x dropped c2pa.training-mining; the CAWG assertion replaces it for v2 claims.
TRAINING_MINING_LABEL = "cawg.training-mining"
TRAINING_MINING_USES = ("cawg.ai_training", "cawg.ai_generative_training", "cawg.data_mining", "cawg.ai_inference")
# The SDK's default thumbnail has a 1024 px long edge: at 1024² it duplicates the whole image
# (+~120 KB, ~90 ms per sign). Its own 256 px thumbnails still cost ~20 ms (PNG) to ~25 ms (JPEG
# rendition) per sign, as it decodes the asset and every ingredient again; thumbnails the caller
# made once per image (`thumbnail=...`) cost nothing here (~4 ms per sign in all, ~18 KB).
DEFAULT_THUMBNAIL_PX = 256
_THUMB_ID, _INGREDIENT_THUMB_ID = "thumbnail.jpg", "ingredient-thumbnail.jpg"
_SOURCE_LABEL = "source"
_MASTER_LABEL = "master"


@dataclass(frozen=True)
class SignOptions:
    """[sign]: where the signing material comes from (environment variables, never the config itself)."""

    cert_chain_env: str = "STAGE_SIGN_CERT_CHAIN"  # names the PEM file (or holds the PEM text) of the chain
    private_key_env: str = "STAGE_SIGN_PRIVATE_KEY"
    tsa_url: str = ""  # optional RFC 3161 timestamp authority
    callback: str = ""  # "package.module:function" signing with a KMS/HSM key; the chain still comes from the env
    claim_generator: str = "product-staging"
    training_mining: Literal["allowed", "notAllowed", "constrained"] = "notAllowed"


@dataclass(frozen=True)
class SignerMaterial:
    chain_pem: bytes
    key_pem: bytes | None
    tsa_url: str | None
    is_dev: bool
    origin: str  # where the material came from, for logs; never the key itself

    def __repr__(self) -> str:  # keeps the key out of tracebacks and logs
        return f"SignerMaterial(origin={self.origin!r}, is_dev={self.is_dev}, tsa_url={self.tsa_url!r})"


def load_signer_material(cfg: SignOptions, env: Mapping[str, str] | None = None) -> SignerMaterial:
    """Production material from the two env vars, else the dev keys; half a configuration is an error.

    Secrets come only from the environment (PEM text or a path), never from config.toml; without
    them the development keys from `stage keys init` are used and the caller must warn loudly."""
    env = os.environ if env is None else env
    chain_val = env.get(cfg.cert_chain_env, "").strip()
    key_val = env.get(cfg.private_key_env, "").strip()
    tsa = cfg.tsa_url or None
    if cfg.callback:
        if not chain_val:
            raise SigningError(f"[sign].callback is set, so ${cfg.cert_chain_env} must name the certificate chain")
        chain, chain_origin = read_pem(cfg.cert_chain_env, chain_val)
        load_certs(chain, chain_origin)
        return SignerMaterial(chain, None, tsa, False, f"chain {chain_origin}, key via callback {cfg.callback}")
    if chain_val and key_val:
        chain, chain_origin = read_pem(cfg.cert_chain_env, chain_val)
        key, key_origin = read_pem(cfg.private_key_env, key_val)
        load_certs(chain, chain_origin)
        load_private_key(key, key_origin)
        return SignerMaterial(chain, key, tsa, False, f"chain {chain_origin}, key {key_origin}")
    if chain_val or key_val:
        present, missing = (
            (cfg.cert_chain_env, cfg.private_key_env) if chain_val else (cfg.private_key_env, cfg.cert_chain_env)
        )
        raise SigningError(f"${present} is set but ${missing} is not: set both, or neither to use the dev keys")
    keys = dev_keys_in(default_keys_dir())
    if not (keys.chain_pem.is_file() and keys.key_pem.is_file()):
        raise SigningError(
            f"no signing credentials: run `stage keys init` to create development keys in {keys.directory}, "
            f"or set ${cfg.cert_chain_env} and ${cfg.private_key_env} (PEM text or file paths)"
        )
    try:
        chain, key = keys.chain_pem.read_bytes(), keys.key_pem.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read development keys in {keys.directory}: {exc.strerror}") from None
    return SignerMaterial(chain, key, tsa, True, f"development keys in {keys.directory}")


def resolve_callback(spec: str) -> Callable[[bytes], bytes]:
    """Import the "module:function" named in [sign].callback; it returns a DER or raw r||s signature."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SigningError(f"[sign].callback = {spec!r}: expected 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SigningError(f"[sign].callback = {spec!r} cannot be imported: {exc}") from None
    if not callable(fn):
        raise SigningError(f"[sign].callback = {spec!r} is not callable")
    return fn


def assertion_safe(value: Any) -> Any:
    """Numeric arrays become JSON text: c2pa-python 0.38 stores them as byte strings and loses values
    over 255 (`[1024, 1024]` reads back as `"AAA="`). Arrays of strings or objects survive as they are."""
    if isinstance(value, dict):
        return {str(k): assertion_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return json.dumps(list(value))
        return [assertion_safe(v) for v in value]
    return value


def _scrub(message: str, secret: bytes | None) -> str:
    """SDK messages should never hold key text; make sure of it before they reach a log."""
    for line in (secret or b"").decode(errors="ignore").splitlines():
        if len(line) > 16:
            message = message.replace(line, "<redacted>")
    return message


class ContentSigner:
    """Holds one SDK signer for a worker's lifetime; each image gets a fresh single-use Builder.

    Signing must be the very last write: any re-encode afterwards drops or breaks the manifest."""

    def __init__(
        self,
        material: SignerMaterial,
        cfg: SignOptions,
        *,
        version: str,
        sign_callback: Callable[[bytes], bytes] | None = None,
        thumbnail_px: int | None = DEFAULT_THUMBNAIL_PX,
    ) -> None:
        """`version`: the pipeline version, recorded as the claim generator's and the software agents'.
        `sign_callback` signs with a KMS/HSM key when `material.key_pem` is None; thumbnail_px None: none."""
        self.material, self.cfg, self.version = material, cfg, version
        certs = load_certs(material.chain_pem, material.origin)
        if not certs:
            raise SigningError(f"{material.origin}: the certificate chain is empty")
        alg = c2pa.C2paSigningAlg[signing_algorithm(certs[0].public_key())]
        if material.key_pem is not None:
            key = load_private_key(material.key_pem, material.origin)
            if not same_public_key(key.public_key(), certs[0].public_key()):
                raise SigningError(f"{material.origin}: the private key does not match the first certificate")
        elif sign_callback is None:
            raise SigningError(f"{material.origin}: no private key and no signing callback")
        self.thumbnail_px = thumbnail_px
        try:
            if material.key_pem is not None:
                info = c2pa.C2paSignerInfo(alg, material.chain_pem, material.key_pem, material.tsa_url)
                self._signer = c2pa.Signer.from_info(info)
            else:
                self._signer = c2pa.Signer.from_callback(sign_callback, alg, material.chain_pem.decode(), material.tsa_url)
            # the SDK's own thumbnails stay off: _sign embeds ours (see DEFAULT_THUMBNAIL_PX)
            no_thumbs = {"builder": {"thumbnail": {"enabled": False}}}
            self._context = c2pa.Context(settings=c2pa.Settings.from_dict(no_thumbs))
        except c2pa.C2paError as exc:
            msg = _scrub(str(exc), material.key_pem)
            raise SigningError(f"cannot create a signer from {material.origin}: {msg}") from None

    def _manifest(self, title: str, mime: str, actions: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
        use = self.cfg.training_mining
        return {
            "claim_generator_info": [{"name": self.cfg.claim_generator, "version": self.version}],
            "title": title,
            "format": mime,
            "assertions": [
                {"label": "c2pa.actions.v2", "data": {"actions": actions}},
                {"label": SETTINGS_LABEL, "data": assertion_safe(settings)},
                {"label": TRAINING_MINING_LABEL, "data": {"entries": {u: {"use": use} for u in TRAINING_MINING_USES}}},
            ],
        }

    def _thumbnail(self, given: bytes | None, image: bytes) -> bytes | None:
        """The caller's JPEG thumbnail, else one made from the encoded image; None when thumbnails are off."""
        if self.thumbnail_px is None:
            return None
        if given is not None:
            return given
        with Image.open(io.BytesIO(image)) as im:
            im.draft("RGB", (self.thumbnail_px, self.thumbnail_px))  # JPEG: decode at a reduced scale
            alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            shown = im.convert("RGBA" if alpha else "RGB")
        if alpha:  # a cut-out is shown on white
            shown = Image.alpha_composite(Image.new("RGBA", shown.size, (255, 255, 255, 255)), shown)
        shown.thumbnail((self.thumbnail_px, self.thumbnail_px), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        shown.convert("RGB").save(buf, format="JPEG", quality=82)
        return buf.getvalue()

    def _sign(self, manifest: dict[str, Any], mime: str, data: bytes, ingredient: dict[str, Any],
              ingredient_mime: str, ingredient_bytes: bytes, thumbnail: bytes | None,
              ingredient_thumbnail: bytes | None) -> bytes:
        out = io.BytesIO()
        try:
            thumbs = {_THUMB_ID: self._thumbnail(thumbnail, data),
                      _INGREDIENT_THUMB_ID: self._thumbnail(ingredient_thumbnail, ingredient_bytes)}
            if thumbs[_THUMB_ID] is not None:
                manifest = {**manifest, "thumbnail": {"format": "image/jpeg", "identifier": _THUMB_ID}}
                ingredient = {**ingredient, "thumbnail": {"format": "image/jpeg", "identifier": _INGREDIENT_THUMB_ID}}
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise SigningError(f"signing {manifest['title']!r}: cannot make a thumbnail: {exc}") from None
        try:
            with c2pa.Builder(manifest, context=self._context) as builder:
                for uri, thumb in thumbs.items():
                    if thumb is not None:
                        builder.add_resource(uri, io.BytesIO(thumb))
                builder.add_ingredient(ingredient, ingredient_mime, io.BytesIO(ingredient_bytes))
                builder.sign(self._signer, mime, io.BytesIO(data), out)
        except c2pa.C2paError as exc:
            msg = _scrub(str(exc), self.material.key_pem)
            raise SigningError(f"signing {manifest['title']!r} with {self.material.origin} failed: {msg}") from None
        return out.getvalue()

    def sign_png(
        self,
        png: bytes,
        *,
        title: str,
        source_bytes: bytes,
        source_mime: str,
        source_title: str,
        digital_source_type: str,
        settings: dict[str, Any],
        software_agent: str,
        thumbnail: bytes | None = None,
        source_thumbnail: bytes | None = None,
        mime: str = "image/png",
    ) -> bytes:
        """Return `png` with an embedded manifest: the pixel data is untouched, a caBX chunk is added.

        `mime` signs another format made straight from the source photo (a channel rendition's JPEG).

        `thumbnail` / `source_thumbnail`: JPEG thumbnails of the staged image and of the source photo;
        when not given they are made here from the encoded bytes.
        """
        if "source_sha256" in settings:
            raise SigningError("settings must not contain the reserved key 'source_sha256'")
        opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": [_SOURCE_LABEL]}}
        edited = {
            "action": "c2pa.edited",
            "digitalSourceType": digital_source_type,
            "softwareAgent": {"name": software_agent, "version": self.version},
        }
        # A photo without credentials gets no hash in its ingredient: record one here.
        sha256 = hashlib.sha256(source_bytes).hexdigest()
        manifest = self._manifest(title, mime, [opened, edited], {**settings, "source_sha256": sha256})
        ingredient = {"title": source_title, "relationship": "parentOf", "label": _SOURCE_LABEL}
        return self._sign(manifest, mime, png, ingredient, source_mime, source_bytes,
                          thumbnail, source_thumbnail)

    def sign_rendition(self, data: bytes, mime: str, *, title: str, master: bytes, master_title: str,
                       settings: dict[str, Any], software_agent: str, thumbnail: bytes | None = None,
                       master_thumbnail: bytes | None = None) -> bytes:
        """Sign a rendition (another format or size) with the signed master PNG as its parent ingredient.

        A rendition of the full canvas can pass the master's own thumbnail as both thumbnails.
        """
        opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": [_MASTER_LABEL]}}
        converted = {"action": "c2pa.converted", "softwareAgent": {"name": software_agent, "version": self.version}}
        master_sha = hashlib.sha256(master).hexdigest()
        manifest = self._manifest(title, mime, [opened, converted], {**settings, "master_sha256": master_sha})
        ingredient = {"title": master_title, "relationship": "parentOf", "label": _MASTER_LABEL}
        return self._sign(manifest, mime, data, ingredient, "image/png", master, thumbnail, master_thumbnail)

    def close(self) -> None:
        self._signer.close()
        self._context.close()
