"""Content credentials end to end: dev keys, signing, read-back, tampering and secret handling."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import zlib
from pathlib import Path

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from PIL import Image

from provenance.errors import SigningError
from provenance.iptc import COMPOSITE_SYNTHETIC as IPTC_COMPOSITE_SYNTHETIC
from provenance.keys import DEV_WARNING, default_keys_dir, init_dev_keys
from provenance.sign import SETTINGS_LABEL, ContentSigner, SignerMaterial, SignOptions, load_signer_material
from provenance.verify import VerifyOptions, load_trust_anchors, verify_file

VERSION = "9.9.9"  # what a caller passes as its pipeline version

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "catalog" / "images" / "19_shoes_black-suede_white.jpg"
CHAIN_ENV, KEY_ENV = SignOptions().cert_chain_env, SignOptions().private_key_env


@pytest.fixture
def keys(tmp_path, monkeypatch):
    for var in (CHAIN_ENV, KEY_ENV, VerifyOptions().trust_anchors_env):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STAGE_KEYS_DIR", str(tmp_path / "keys"))
    return init_dev_keys()


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _gradient(size: int = 256) -> np.ndarray:
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    return np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 90, np.uint8)], -1)


def _sign_with(signer: ContentSigner, png: bytes, title: str = "19_staged.png", seed: int = 1234) -> bytes:
    return signer.sign_png(
        png,
        title=title,
        source_bytes=SOURCE.read_bytes(),
        source_mime="image/jpeg",
        source_title=SOURCE.name,
        digital_source_type=IPTC_COMPOSITE_SYNTHETIC,
        settings={"seed": seed, "scene": "studio"},
        software_agent="product-staging test",
    )


def _sign(material: SignerMaterial, png: bytes) -> bytes:
    return _sign_with(ContentSigner(material, SignOptions(), version=VERSION), png)


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        out.append((png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _assemble(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d)) for t, d in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.fixture
def signed(keys, tmp_path) -> tuple[Path, bytes]:
    png = _png(_gradient())
    path = tmp_path / "signed.png"
    path.write_bytes(_sign(load_signer_material(SignOptions()), png))
    return path, png


def test_default_keys_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("STAGE_KEYS_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_keys_dir() == tmp_path / "xdg" / "product-staging" / "keys"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_keys_dir() == tmp_path / "home" / ".config" / "product-staging" / "keys"
    monkeypatch.setenv("STAGE_KEYS_DIR", str(tmp_path / "explicit"))
    assert default_keys_dir() == tmp_path / "explicit"


def test_init_dev_keys_modes_idempotence_and_extensions(keys):
    assert stat.S_IMODE(keys.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(keys.key_pem.stat().st_mode) == 0o600
    before = [p.read_bytes() for p in (keys.ca_pem, keys.chain_pem, keys.key_pem)]
    again = init_dev_keys()
    assert [p.read_bytes() for p in (again.ca_pem, again.chain_pem, again.key_pem)] == before
    assert init_dev_keys(force=True).key_pem.read_bytes() != before[2]
    assert "UNTRUSTED" in DEV_WARNING

    leaf, ca = x509.load_pem_x509_certificates(keys.chain_pem.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert leaf.issuer == ca.subject and "UNTRUSTED development" in leaf.subject.rfc4514_string()
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature is True
    eku = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku and ObjectIdentifier("1.3.6.1.5.5.7.3.36") in eku
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days <= 366


def test_signed_file_is_trusted_with_dev_ca_and_carries_the_manifest(signed):
    path, _ = signed
    anchors, description = load_trust_anchors(VerifyOptions())
    assert anchors is not None and "development CA" in description
    v = verify_file(path, anchors)
    assert (v.ok, v.trusted, v.state, v.failures) == (True, True, "Trusted", [])
    m = v.manifest
    assert m["title"] == "19_staged.png"
    assert m["claim_generator_info"][0]["name"] == SignOptions().claim_generator
    [ingredient] = m["ingredients"]
    assert (ingredient["title"], ingredient["relationship"]) == (SOURCE.name, "parentOf")
    assertions = {a["label"]: a["data"] for a in m["assertions"]}
    actions = assertions["c2pa.actions.v2"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited"]
    assert actions[0]["parameters"]["ingredients"]
    assert actions[1]["digitalSourceType"] == IPTC_COMPOSITE_SYNTHETIC
    assert assertions[SETTINGS_LABEL]["seed"] == 1234
    assert assertions[SETTINGS_LABEL]["source_sha256"] == hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    entries = assertions["cawg.training-mining"]["entries"]
    assert len(entries) == 4 and {e["use"] for e in entries.values()} == {"notAllowed"}


def test_without_anchors_valid_but_untrusted(signed):
    v = verify_file(signed[0])
    assert v.ok and not v.trusted and v.state == "Valid"
    assert any(f.startswith("signingCredential.untrusted") for f in v.failures)


def test_signing_leaves_pixels_untouched(signed):
    path, png = signed
    unsigned = np.asarray(Image.open(io.BytesIO(png)))
    assert np.array_equal(np.asarray(Image.open(path)), unsigned)


def test_flipped_idat_byte_is_invalid(signed):
    path, _ = signed
    chunks = _chunks(path.read_bytes())
    i = next(n for n, (t, _) in enumerate(chunks) if t == b"IDAT")
    data = bytearray(chunks[i][1])
    data[len(data) // 2] ^= 0x01
    raw = path.read_bytes()
    start = raw.index(bytes(chunks[i][1]))
    path.write_bytes(raw[:start] + bytes(data) + raw[start + len(data) :])
    v = verify_file(path, load_trust_anchors(VerifyOptions())[0])
    assert not v.ok and v.state == "Invalid"
    assert any("dataHash.mismatch" in f for f in v.failures)
    assert not verify_file(path).ok


def test_manifest_copied_onto_edited_pixels_is_invalid(signed):
    path, png = signed
    pixels = _gradient()
    pixels[10, 10] = 255 - pixels[10, 10]
    manifest_chunk = next(c for c in _chunks(path.read_bytes()) if c[0] == b"caBX")
    edited = _chunks(_png(pixels))
    path.write_bytes(_assemble(edited[:1] + [manifest_chunk] + edited[1:]))
    v = verify_file(path, load_trust_anchors(VerifyOptions())[0])
    assert not v.ok and any("dataHash.mismatch" in f for f in v.failures)


def test_resaved_by_pillow_has_no_manifest(signed):
    path, _ = signed
    Image.open(path).save(path.with_name("resaved.png"))
    v = verify_file(path.with_name("resaved.png"), load_trust_anchors(VerifyOptions())[0])
    assert (v.ok, v.state, v.failures, v.manifest) == (False, None, ["manifest not found"], None)


def test_unreadable_and_garbage_files_do_not_raise(keys, tmp_path):
    assert not verify_file(tmp_path / "missing.png").ok
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    v = verify_file(tmp_path / "junk.png")
    assert not v.ok and v.state is None and v.failures


def test_signer_from_another_ca_is_not_trusted(signed, tmp_path):
    other = init_dev_keys(tmp_path / "other")
    material = SignerMaterial(other.chain_pem.read_bytes(), other.key_pem.read_bytes(), None, True, "other")
    foreign = tmp_path / "foreign.png"
    foreign.write_bytes(_sign(material, _png(_gradient())))
    v = verify_file(foreign, load_trust_anchors(VerifyOptions())[0])
    assert not v.ok and not v.trusted
    assert verify_file(foreign, other.ca_pem.read_text()).trusted


def test_material_from_paths_and_inline_pem(keys):
    paths = {CHAIN_ENV: str(keys.chain_pem), KEY_ENV: str(keys.key_pem)}
    m = load_signer_material(SignOptions(), paths)
    assert not m.is_dev and m.key_pem == keys.key_pem.read_bytes() and str(keys.key_pem) in m.origin
    inline = {CHAIN_ENV: keys.chain_pem.read_text(), KEY_ENV: keys.key_pem.read_text()}
    m = load_signer_material(SignOptions(), inline)
    assert not m.is_dev and m.chain_pem.strip() == keys.chain_pem.read_bytes().strip()
    assert "BEGIN" not in m.origin and "BEGIN" not in repr(m)
    assert _sign(m, _png(_gradient(64)))
    dev = load_signer_material(SignOptions(), {})
    assert dev.is_dev and str(keys.directory) in dev.origin


def test_half_configured_material_names_the_missing_variable(keys):
    key_text = keys.key_pem.read_text()
    with pytest.raises(SigningError, match=CHAIN_ENV) as err:
        load_signer_material(SignOptions(), {KEY_ENV: key_text})
    assert "PRIVATE KEY" not in str(err.value) and key_text.splitlines()[1] not in str(err.value)
    with pytest.raises(SigningError, match=KEY_ENV):
        load_signer_material(SignOptions(), {CHAIN_ENV: str(keys.chain_pem)})


def test_bad_key_text_is_not_echoed(keys):
    secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETTOPSECRETTOPSECRET\n-----END PRIVATE KEY-----\n"
    with pytest.raises(SigningError) as err:
        load_signer_material(SignOptions(), {CHAIN_ENV: str(keys.chain_pem), KEY_ENV: secret})
    assert KEY_ENV in str(err.value) and "TOPSECRET" not in str(err.value)


def test_no_material_at_all_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("STAGE_KEYS_DIR", str(tmp_path / "empty"))
    with pytest.raises(SigningError, match="stage keys init"):
        load_signer_material(SignOptions(), {})
    assert load_trust_anchors(VerifyOptions(), {})[0] is None


def test_trust_anchors_from_env(keys, tmp_path):
    env = {VerifyOptions().trust_anchors_env: str(keys.ca_pem)}
    pem, description = load_trust_anchors(VerifyOptions(), env)
    assert pem == keys.ca_pem.read_text() and "development CA" not in description


def test_mismatched_chain_and_key_raise_signing_error(keys, tmp_path):
    other = init_dev_keys(tmp_path / "other")
    material = SignerMaterial(keys.chain_pem.read_bytes(), other.key_pem.read_bytes(), None, False, "mixed")
    with pytest.raises(SigningError, match="does not match"):
        ContentSigner(material, SignOptions(), version=VERSION)


def test_sdk_failure_becomes_signing_error(keys):
    signer = ContentSigner(load_signer_material(SignOptions(), {}), SignOptions(), version=VERSION)
    with pytest.raises(SigningError, match="19_staged.png"):
        _sign_with(signer, b"\x89PNG\r\n\x1a\n truncated")


def test_callback_signer_for_kms_keys(keys, tmp_path):
    key = serialization.load_pem_private_key(keys.key_pem.read_bytes(), password=None)
    calls = []

    def remote_sign(data: bytes) -> bytes:
        calls.append(len(data))
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    material = SignerMaterial(keys.chain_pem.read_bytes(), None, None, False, "kms:test")
    signer = ContentSigner(material, SignOptions(), version=VERSION, sign_callback=remote_sign, thumbnail_px=None)
    out = tmp_path / "kms.png"
    out.write_bytes(_sign_with(signer, _png(_gradient(64)), title="kms.png"))
    v = verify_file(out, keys.ca_pem.read_text())
    assert calls and v.ok and v.trusted and "thumbnail" not in v.manifest


def test_thumbnail_is_bounded(signed):
    path, _ = signed
    with c2pa.Reader("image/png", io.BytesIO(path.read_bytes())) as reader:
        buf = io.BytesIO()
        reader.resource_to_stream(reader.get_active_manifest()["thumbnail"]["identifier"], buf)
    assert max(Image.open(io.BytesIO(buf.getvalue())).size) <= 256


def test_bad_trust_anchors_raise(signed):
    with pytest.raises(SigningError, match="trust anchors"):
        verify_file(signed[0], "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_callback_named_in_config_signs_through_the_kms_path(keys, tmp_path, monkeypatch):
    from provenance.sign import resolve_callback

    module = tmp_path / "fake_kms_module.py"
    module.write_text(
        "import os\n"
        "from cryptography.hazmat.primitives import hashes, serialization\n"
        "from cryptography.hazmat.primitives.asymmetric import ec\n"
        "def sign(data: bytes) -> bytes:\n"
        "    key = serialization.load_pem_private_key(open(os.environ['KMS_KEY_FILE'], 'rb').read(), None)\n"
        "    return key.sign(data, ec.ECDSA(hashes.SHA256()))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KMS_KEY_FILE", str(keys.key_pem))
    cfg = SignOptions(callback="fake_kms_module:sign")
    material = load_signer_material(cfg, {"STAGE_SIGN_CERT_CHAIN": str(keys.chain_pem)})
    assert material.key_pem is None and not material.is_dev and "callback" in material.origin
    signer = ContentSigner(material, cfg, version=VERSION, sign_callback=resolve_callback(cfg.callback))
    out = tmp_path / "kms.png"
    out.write_bytes(_sign_with(signer, _png(_gradient(64)), title="kms.png"))
    assert verify_file(out, keys.ca_pem.read_text()).trusted
    with pytest.raises(SigningError, match="must name the certificate chain"):
        load_signer_material(cfg, {})
    with pytest.raises(SigningError, match="cannot be imported"):
        resolve_callback("no_such_module_xyz:sign")
    with pytest.raises(SigningError, match="expected 'package.module:function'"):
        resolve_callback("just_a_name")


def test_numeric_arrays_in_settings_read_back_intact(keys, tmp_path):
    import json

    signer = ContentSigner(load_signer_material(SignOptions(), {}), SignOptions(), version=VERSION)
    src = (Path(__file__).resolve().parents[2] / "catalog/images/19_shoes_black-suede_white.jpg").read_bytes()
    out = tmp_path / "arrays.png"
    out.write_bytes(signer.sign_png(
        _png(_gradient(64)), title="arrays.png", source_bytes=src, source_mime="image/jpeg", source_title="x.jpg",
        digital_source_type=IPTC_COMPOSITE_SYNTHETIC, software_agent="test",
        settings={"canvas": [1024, 768], "light": [0.5, 0.25], "tags": ["a", "b"], "nested": {"box": [0, 300]}},
    ))
    v = verify_file(out, keys.ca_pem.read_text())
    settings = next(a["data"] for a in v.manifest["assertions"] if a["label"] == "org.product-staging.settings")
    assert json.loads(settings["canvas"]) == [1024, 768] and json.loads(settings["light"]) == [0.5, 0.25]
    assert settings["tags"] == ["a", "b"] and json.loads(settings["nested"]["box"]) == [0, 300]


def test_stripped_metadata_is_reported(signed, keys, tmp_path):
    path, _ = signed
    data, pos, kept, removed = path.read_bytes(), 8, [], 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunk = data[pos : pos + 12 + length]
        if chunk[4:8] == b"caBX":  # the C2PA manifest store chunk
            removed += 1
        else:
            kept.append(chunk)
        pos += 12 + length
    assert removed == 1
    stripped = tmp_path / "stripped.png"
    stripped.write_bytes(data[:8] + b"".join(kept))
    assert np.array_equal(np.asarray(Image.open(stripped)), np.asarray(Image.open(path)))
    v = verify_file(stripped, keys.ca_pem.read_text())
    assert not v.ok and v.failures == ["manifest not found"]


def _resource(data: bytes, mime: str, ref: dict) -> bytes:
    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        buf = io.BytesIO()
        reader.resource_to_stream(ref["identifier"], buf)
    return buf.getvalue()


def test_caller_thumbnails_are_embedded_as_given_and_verify(keys, tmp_path):
    from stages.encode import encode_format, thumbnail_jpeg

    signer = ContentSigner(load_signer_material(SignOptions()), SignOptions(), version=VERSION)
    pixels = _gradient(512)
    thumb = thumbnail_jpeg(pixels, 256)
    source_thumb = thumbnail_jpeg(np.asarray(Image.open(SOURCE).convert("RGB")), 256)
    png = signer.sign_png(
        _png(pixels), title="given.png", source_bytes=SOURCE.read_bytes(), source_mime="image/jpeg",
        source_title=SOURCE.name, digital_source_type=IPTC_COMPOSITE_SYNTHETIC, settings={"seed": 1},
        software_agent="test", thumbnail=thumb, source_thumbnail=source_thumb,
    )
    (tmp_path / "given.png").write_bytes(png)
    v = verify_file(tmp_path / "given.png", keys.ca_pem.read_text())
    assert (v.ok, v.trusted, v.failures) == (True, True, [])
    assert _resource(png, "image/png", v.manifest["thumbnail"]) == thumb
    assert _resource(png, "image/png", v.manifest["ingredients"][0]["thumbnail"]) == source_thumb

    jpg = signer.sign_rendition(
        encode_format(pixels, "jpeg", 92), "image/jpeg", title="given jpeg", master=png, master_title="given.png",
        settings={"format": "jpeg"}, software_agent="test", thumbnail=thumb, master_thumbnail=thumb,
    )
    (tmp_path / "given.jpg").write_bytes(jpg)
    r = verify_file(tmp_path / "given.jpg", keys.ca_pem.read_text())
    assert (r.ok, r.trusted) == (True, True)
    assert _resource(jpg, "image/jpeg", r.manifest["thumbnail"]) == thumb
    [master] = r.manifest["ingredients"]
    assert master["title"] == "given.png" and _resource(jpg, "image/jpeg", master["thumbnail"]) == thumb


def test_thumbnails_are_made_when_not_given(signed):
    path, _ = signed
    data = path.read_bytes()
    with c2pa.Reader("image/png", io.BytesIO(data)) as reader:
        m = reader.get_active_manifest()
    claim = Image.open(io.BytesIO(_resource(data, "image/png", m["thumbnail"])))
    ingredient = Image.open(io.BytesIO(_resource(data, "image/png", m["ingredients"][0]["thumbnail"])))
    assert claim.size == (256, 256)  # of the 256² gradient
    src = Image.open(SOURCE)
    assert max(ingredient.size) == 256 and abs(ingredient.size[0] / ingredient.size[1] - src.size[0] / src.size[1]) < 0.02
