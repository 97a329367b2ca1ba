"""`stage verify` on object URLs (an S3 server on loopback): one image, or every signed image under a prefix."""

from __future__ import annotations

import json
import shutil

import pytest

from flows.cli import main
from ops.catalog import read_catalog
from ops.config import load_config
from ops.context import RunContext
from ops.objectstore import open_store
from ops import runner
from ops.runner import process_row
from ops.state import open_state
from ops.workbench import Workbench
from s3_server import s3_server  # noqa: F401  (tests/ is on sys.path)

PHOTO = "19_shoes_black-suede_white.jpg"



@pytest.fixture(scope="module")
def published(s3_server, repo, dev_keys, images, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("verify")
    shutil.copy(images / PHOTO, tmp / PHOTO)
    (tmp / "catalog.csv").write_text(f"sku,image,title,category\nSHOE-1,{PHOTO},Shoes,shoes\n")
    cfg = load_config(repo / "config.toml", {"layout": {"width": 256, "height": 256}, "renditions": {"active": []}})
    url = f"s3://{s3_server.bucket()}/nightly"
    row = read_catalog(tmp / "catalog.csv").rows[0]
    with pytest.MonkeyPatch.context() as mp:  # the run state is not under test: files beside the scratch folder
        mp.setattr(runner, "state_for", lambda ctx: open_state(str(ctx.out_root), ctx.state))
        done = process_row(Workbench.build(cfg), row, RunContext(tmp / "scratch", "run-1", output_url=url))
    assert done.status == "ok", done.error
    return url, done, tmp / "catalog.csv"


def test_verify_every_signed_image_under_a_prefix(published, capsys, dev_keys):
    url, done, catalog = published
    assert main(["verify", f"{url}/products/", "--trust-anchors", str(dev_keys.ca_pem), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    paths = sorted(r["path"] for r in results)
    assert paths == sorted([f"{url}/{done.output}", f"{url}/{done.output[:-4]}.jpg"])  # no audit layers
    assert all(r["ok"] and r["trusted"] for r in results)


def test_verify_names_what_is_wrong_with_a_url(published, capsys, dev_keys):
    url, done, catalog = published
    store = open_store(url)
    store.put("products/fake/fake.png", b"\x89PNG\r\n\x1a\n not really")
    code = main(["verify", f"{url}/{done.output}", f"{url}/products/fake/fake.png", f"{url}/empty/",
                 "ftp://host/x.png", "--trust-anchors", str(dev_keys.ca_pem)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].startswith(f"OK  {url}/{done.output}")
    assert out[1].startswith(f"FAIL  {url}/products/fake/fake.png")
    assert out[2] == f"FAIL  {url}/empty  (None; no images under this URL)"
    assert out[3].startswith("FAIL  ftp://host/x.png") and "not supported" in out[3]


@pytest.mark.server
def test_review_on_an_object_store_output(published, postgres_url, repo, tmp_path, monkeypatch, capsys):
    """Records come from the store into an empty scratch folder, decisions go to PostgreSQL, and the
    next staging of a rejected SKU withdraws its images from the store."""
    url, done, catalog = published
    monkeypatch.setenv("STAGE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a reviewer's machine: nothing staged here
    config = str(repo / "config.toml")
    assert main(["review", "list", "--verdict", "all", "--json", "--out", url, "--config", config]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["sku"] == "SHOE-1" and item["output"] == done.output.split("/")[-1]
    assert main(["review", "reject", "SHOE-1", "--reason", "wrong colour", "--out", url, "--config", config]) == 0
    assert "SHOE-1: rejected" in capsys.readouterr().out
    store, slug = open_store(url), done.record.split("/")[1]
    images = {f"products/{slug}/{done.output.split('/')[-1]}", f"products/{slug}/{slug}.jpg"}
    assert images <= set(store.listing(f"products/{slug}/"))  # withdrawn by the next staging, not before

    cfg = load_config(repo / "config.toml", {"layout": {"width": 256, "height": 256}, "renditions": {"active": []}})
    row = read_catalog(catalog).rows[0]
    again = process_row(Workbench.build(cfg), row, RunContext(tmp_path / "worker", "run-2", output_url=url))
    assert again.status == "rejected" and "wrong colour" in again.reasons[0]
    left = set(store.listing(f"products/{slug}/"))
    assert not images & left and f"products/{slug}/{slug}.json" in left
    assert {f"quarantine/{slug}/{n.split('/')[-1]}" for n in images} == set(store.listing(f"quarantine/{slug}/"))
