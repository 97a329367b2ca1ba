"""Test-wide environment: offline, and nothing written to the user's home or real config."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SESSION = Path(tempfile.mkdtemp(prefix="stage-tests-"))
# Set before any test module imports prefect, huggingface_hub or rembg.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["STAGE_KEYS_DIR"] = str(_SESSION / "keys")
os.environ["PREFECT_HOME"] = str(_SESSION / "prefect")
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["U2NET_HOME"] = str(_SESSION / "u2net")
for var in ("STAGE_SIGN_CERT_CHAIN", "STAGE_SIGN_PRIVATE_KEY", "STAGE_TRUST_ANCHORS", "PREFECT_API_URL"):
    os.environ.pop(var, None)

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "catalog" / "images"
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")


def load_benchmark(name: str) -> Any:
    """A script of benchmarks/ (not a package) imported as the module `name`, for its tests."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def one_torch_thread():
    """Toy-sized tensors: thread hand-offs cost more than they save (20x more on a busy machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def missing_tool(reason: str) -> None:
    """Skip a test whose outside tool (a browser, a database server) is missing; under CI (CI=true) fail it.

    CI installs these tools itself (.ci/run), so there a missing one is a broken set-up that must not
    turn green by skipping the very tests it claims to run.
    """
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def dev_keys():
    from provenance.keys import init_dev_keys

    return init_dev_keys()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def images() -> Path:
    return IMAGES


@pytest.fixture
def photo(tmp_path: Path, images: Path) -> Path:
    """A real product photo copied to tmp_path/photos/shoe.jpg, for catalogs that name it."""
    target = tmp_path / "photos" / "shoe.jpg"
    target.parent.mkdir()
    target.write_bytes((images / "19_shoes_black-suede_white.jpg").read_bytes())
    return target


@pytest.fixture(scope="session")
def write_catalog(images: Path):
    """`write_catalog(folder, header, *rows)`: folder/catalog.csv from CSV lines, with each row's
    photo (its `image` column, a file name in catalog/images) copied beside it."""

    def write(folder: Path, header: str, *rows: str) -> Path:
        column = header.split(",").index("image")
        for row in rows:
            name = row.split(",")[column]
            if (images / name).is_file():
                shutil.copy(images / name, folder / name)
        path = folder / "catalog.csv"
        path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        return path

    return write


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up early (a refused or timed-out fetch) is not an error here


@contextlib.contextmanager
def loopback_http(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve `handler` on 127.0.0.1 in a thread for the block; yields the port."""
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


_MARKED: dict[str, dict[str, str]] = {"server": {}, "models": {}}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember how the tests that need outside tools or real weights ended (see the summary below)."""
    for mark, seen in _MARKED.items():
        if mark in report.keywords and (report.when == "call" or report.outcome != "passed"):
            seen[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say how many of the `server` tests (Prefect server, workers, PostgreSQL, Chromium) and the
    `models` tests (real weights) ran and passed, so a run's output shows whether they were skipped."""
    for mark, seen in _MARKED.items():
        if not seen:
            continue
        counts: dict[str, int] = {}
        for outcome in seen.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        figures = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        terminalreporter.write_line(f"tests marked {mark}: {figures}")
        for nodeid, outcome in sorted(seen.items()):
            if mark == "server" and any(k in nodeid for k in ("postgres", "prefect_ui")):
                terminalreporter.write_line(f"  {outcome}: {nodeid}")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> Iterator[str]:
    """A plain postgresql:// URL (as psycopg takes it) of a throwaway cluster started once per test
    session (tests/pgcluster.py); skips the test without PostgreSQL, fails it under CI."""
    from pgcluster import postgres

    cluster = postgres(tmp_path_factory.mktemp("pg"), driver="")
    try:
        url = cluster.__enter__()
    except RuntimeError as exc:
        missing_tool(f"no PostgreSQL for the run-state tests: {exc}")
    yield url
    cluster.__exit__(None, None, None)


@pytest.fixture
def fresh_stores(monkeypatch):
    """No object store opened by an earlier test (`ops.objectstore.open_store` keeps one per process
    and settings, with the credentials and endpoint it first saw)."""
    monkeypatch.setattr("ops.objectstore._OPEN", {})


@pytest.fixture
def fake_aws(monkeypatch, tmp_path, fresh_stores):
    """Made-up AWS credentials in the environment only (no ~/.aws, no instance metadata); a fresh s3fs."""
    import s3fs
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPREVIEWTEST00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "preview-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    s3fs.S3FileSystem.clear_instance_cache()
    yield monkeypatch
    s3fs.S3FileSystem.clear_instance_cache()
