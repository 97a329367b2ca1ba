"""Products published to S3 (a moto server on loopback): order, failures, withdrawals, the remote cache test."""

from __future__ import annotations

import json
import shutil

import pytest

from ops import objectstore
from ops.catalog import read_catalog
from ops.config import load_config
from ops.context import RunContext
from ops.objectstore import open_store
from ops.paths import sku_slug
from ops import runner
from ops.runner import process_row
from ops.state import open_state
from ops.store_products import listed_files, publish_product, remote_record, withdraw_product
from ops.workbench import Workbench
from provenance.verify import verify_file
from s3_server import s3_server  # noqa: F401  (tests/ is on sys.path)

PHOTO = "19_shoes_black-suede_white.jpg"



@pytest.fixture(autouse=True)
def files_state(monkeypatch):
    """The run state is not under test here: the files beside each scratch folder (a run on an
    object-store output keeps it in PostgreSQL: tests/flows/test_scale_out.py)."""
    monkeypatch.setattr(runner, "state_for", lambda ctx: open_state(str(ctx.out_root), ctx.state))

@pytest.fixture(scope="module")
def bench(repo, dev_keys):
    cfg = load_config(repo / "config.toml", {"layout": {"width": 256, "height": 256},
                                             "renditions": {"active": ["social"], "presets": {
                                                 "social": {"width": 128, "height": 160, "formats": ["jpeg"]}}}})
    return Workbench.build(cfg)


@pytest.fixture
def row(tmp_path, images):
    shutil.copy(images / PHOTO, tmp_path / PHOTO)
    (tmp_path / "catalog.csv").write_text(f"sku,image,title,category,variants\nSHOE-1,{PHOTO},Shoes,shoes,2\n")
    return read_catalog(tmp_path / "catalog.csv").rows[0]


@pytest.fixture
def url(s3_server):  # noqa: F811
    return f"s3://{s3_server.bucket()}/nightly"


def _puts(monkeypatch) -> list[tuple[str, str]]:
    """Record every upload and delete, in order."""
    calls: list[tuple[str, str]] = []
    put, put_all, delete = objectstore.Store.put, objectstore.Store.put_all, objectstore.Store.delete

    def traced_put(self, rel, data):
        put(self, rel, data)
        calls.append(("put", rel))

    def traced_put_all(self, files, folder):
        put_all(self, files, folder)
        calls.extend(("put", rel) for rel in files)

    def traced_delete(self, rels):
        rels = list(rels)
        delete(self, rels)
        calls.extend(("delete", r) for r in rels)

    monkeypatch.setattr(objectstore.Store, "put", traced_put)
    monkeypatch.setattr(objectstore.Store, "put_all", traced_put_all)
    monkeypatch.setattr(objectstore.Store, "delete", traced_delete)
    return calls


def test_the_record_goes_last_and_stale_objects_go_after_it(bench, row, url, tmp_path, monkeypatch, s3_server):  # noqa: F811
    slug = sku_slug(row.sku)
    store = open_store(url)
    store.put(f"products/{slug}/{slug}-v7.png", b"an image an older run made")  # no longer listed
    calls = _puts(monkeypatch)
    result = process_row(bench, row, RunContext(tmp_path / "scratch", "run-1", output_url=url))
    assert result.status == "ok", result.error
    record = json.loads(store.get(f"products/{slug}/{slug}.json"))
    names = listed_files(record)
    assert {f"{slug}.png", f"{slug}-v1.png", f"{slug}.jpg", "layers/product.png", "layers/social/product.png"} <= set(names)
    assert any(n.endswith(".social.jpg") for n in names)
    record_at = calls.index(("put", f"products/{slug}/{slug}.json"))
    assert {("put", f"products/{slug}/{n}") for n in names} <= set(calls[:record_at])
    assert calls[record_at + 1:] == [("delete", f"products/{slug}/{slug}-v7.png")]
    bucket, prefix = url[5:].split("/", 1)
    assert set(s3_server.keys(bucket, prefix)) == {f"{prefix}/products/{slug}/{n}" for n in [*names, f"{slug}.json"]}
    for name in (f"{slug}.png", f"{slug}.jpg"):  # what the store holds verifies as signed
        assert verify_file(tmp_path / name, None, store.get(f"products/{slug}/{name}")).ok


def test_a_failed_upload_publishes_no_record_and_keeps_the_old_one(bench, row, url, tmp_path, monkeypatch):
    slug = sku_slug(row.sku)
    first = process_row(bench, row, RunContext(tmp_path / "a", "run-1", output_url=url))
    assert first.status == "ok", first.error
    store = open_store(url)
    old_record = store.get(f"products/{slug}/{slug}.json")
    calls = _puts(monkeypatch)
    pipe = store.fs.pipe

    def dropping(files, **kw):  # the second half of the images never arrives
        names = sorted(files)
        pipe({n: files[n] for n in names[: len(names) // 2]}, **kw)
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(store.fs, "pipe", dropping)
    again = process_row(bench, row.__class__(**{**row.to_dict(), "seed": 99}),
                        RunContext(tmp_path / "b", "run-2", output_url=url))
    assert again.status == "failed" and again.transient and "ConnectionResetError" in again.error, again
    assert store.get(f"products/{slug}/{slug}.json") == old_record  # readers still see the previous product
    assert calls == []  # nothing after the failed upload: no record, no deletion
    # the retry on the same worker uploads what was staged instead of staging it again
    monkeypatch.setattr(store.fs, "pipe", pipe)
    retry = process_row(bench, row.__class__(**{**row.to_dict(), "seed": 99}),
                        RunContext(tmp_path / "b", "run-2", output_url=url))
    assert retry.status == "ok" and retry.output == again_output(tmp_path / "b", slug), retry
    assert "upload" in retry.timings_ms and "matte" not in retry.timings_ms and "scene" not in retry.timings_ms
    published = json.loads(store.get(f"products/{slug}/{slug}.json"))
    assert published == json.loads((tmp_path / "b" / "products" / slug / f"{slug}.json").read_bytes())
    assert published["seed"] != json.loads(old_record)["seed"] and retry.cost == published["cost"]
    record_at = calls.index(("put", f"products/{slug}/{slug}.json"))  # the record after every file it lists
    assert {("put", f"products/{slug}/{n}") for n in listed_files(published)} <= set(calls[:record_at])
    assert remote_record(store, slug, published["cache_key"]) is not None


def again_output(scratch, slug):
    return f"products/{slug}/" + json.loads((scratch / "products" / slug / f"{slug}.json").read_bytes())["output"]


def test_an_empty_scratch_folder_is_a_cache_hit_from_the_store(bench, row, url, tmp_path, monkeypatch):
    done = process_row(bench, row, RunContext(tmp_path / "worker-1", "run-1", output_url=url))
    assert done.status == "ok", done.error
    calls = _puts(monkeypatch)
    other = process_row(bench, row, RunContext(tmp_path / "worker-2", "run-2", output_url=url))
    assert other.status == "cached" and other.output == done.output and other.record == done.record
    assert calls == [] and not (tmp_path / "worker-2" / "products").exists()
    assert "store_check" in other.timings_ms
    # an object the record lists that is gone from the store: not current, staged again
    slug = sku_slug(row.sku)
    store = open_store(url)
    record = json.loads(store.get(f"products/{slug}/{slug}.json"))
    key = record["cache_key"]
    assert remote_record(store, slug, key) is not None
    store.delete([f"products/{slug}/{record['format_copies'][0]['output']}"])
    assert remote_record(store, slug, key) is None
    assert remote_record(store, slug, "another key") is None


def test_a_withdrawal_moves_the_images_and_keeps_record_and_layers(bench, row, url, tmp_path):
    assert process_row(bench, row, RunContext(tmp_path / "w", "run-1", output_url=url)).status == "ok"
    slug, store = sku_slug(row.sku), open_store(url)
    before = store.listing(f"products/{slug}/")
    moved = withdraw_product(store, slug)
    assert f"{slug}.png" in moved and f"{slug}-v1.png" in moved and f"{slug}.jpg" in moved
    after = store.listing(f"products/{slug}/")
    assert set(after) == {r for r in before if r.split("/", 2)[2] not in moved}
    assert f"products/{slug}/{slug}.json" in after and f"products/{slug}/layers/product.png" in after
    assert {f"quarantine/{slug}/{n}" for n in moved} == set(store.listing(f"quarantine/{slug}/"))


def test_publishing_refuses_a_quarantine_path_of_another_product(tmp_path, url):
    with pytest.raises(ValueError, match="not in the quarantine folder"):
        publish_product(open_store(url), tmp_path, "a-1", ["quarantine/b-2/b-2.png"])
