"""An untrusted catalog through the nightly flow: rows that reach for internal addresses or for
files outside the allowed folders fail with their reason, the rest of the batch is staged, and
[load] allow_hosts / local_roots open exactly what a deployment names."""

from __future__ import annotations

import http.server
import shutil
from collections import Counter

import pytest

from conftest import loopback_http  # tests/ is on sys.path

SHOE = "19_shoes_black-suede_white.jpg"


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: Counter[str] = Counter()
    photo = b""

    def do_GET(self) -> None:  # noqa: N802
        self.hits[self.path] += 1
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.photo)))
        self.end_headers()
        self.wfile.write(self.photo)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def internal(images):
    """An 'internal service' on loopback that would hand out a photo to anyone who asks."""
    _Handler.photo = (images / SHOE).read_bytes()
    with loopback_http(_Handler) as port:
        yield port


def _setup(tmp_path, images, port):
    folder, outside, share = tmp_path / "supplier", tmp_path / "other-client", tmp_path / "photo-share"
    for d in (folder / "photos", outside, share):
        d.mkdir(parents=True)
    for d in (folder / "photos", outside, share):
        shutil.copy(images / SHOE, d / SHOE)
    (folder / "photos" / "link.jpg").symlink_to(outside / SHOE)
    rows = [("OK-1", f"photos/{SHOE}"), ("LINK-2", "photos/link.jpg"), ("ABS-3", str(outside / SHOE)),
            ("SHARE-4", str(share / SHOE)), ("LOOP-5", f"http://127.0.0.1:{port}/shoe.jpg"),
            ("V6-6", f"http://[::1]:{port}/shoe.jpg"), ("META-7", "http://169.254.169.254/latest/meta-data/")]
    catalog = folder / "catalog.csv"
    catalog.write_text("sku,image,title,category\n" + "".join(f"{s},{i},T,shoes\n" for s, i in rows), encoding="utf-8")
    return catalog, share


def _config(path, **load):
    lines = ["[layout]", "width = 256", "height = 256", "[renditions]", "active = []", "[load]"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in load.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_a_hostile_catalog_reaches_nothing_it_may_not_and_the_rest_is_staged(tmp_path, images, internal, dev_keys):
    from flows.nightly import nightly_catalog_run

    catalog, share = _setup(tmp_path, images, internal)
    _Handler.hits.clear()
    result = nightly_catalog_run(catalog=str(catalog), config=_config(tmp_path / "strict.toml"),
                                 out=str(tmp_path / "out"))
    invalid = {e["sku"]: e["reason"] for e in result["catalog_errors"]}
    rows = {r["sku"]: r for r in result["results"]}
    assert set(invalid) == {"LINK-2", "ABS-3", "SHARE-4"}
    assert all("outside the folders a catalog may read" in r and "[load] local_roots" in r for r in invalid.values())
    assert rows["OK-1"]["status"] == "ok"
    for sku, why in (("LOOP-5", "loopback"), ("V6-6", "loopback"), ("META-7", "link-local")):
        assert rows[sku]["status"] == "failed" and why in rows[sku]["error"], rows[sku]
        assert "[load] allow_hosts" in rows[sku]["error"]
    assert sum(_Handler.hits.values()) == 0  # no request reached the internal service
    assert (tmp_path / "out" / rows["OK-1"]["output"]).is_file()

    opened = _config(tmp_path / "open.toml", allow_hosts=["127.0.0.1"], local_roots=[str(share)])
    again = nightly_catalog_run(catalog=str(catalog), config=opened, out=str(tmp_path / "out2"))
    rows = {r["sku"]: r for r in again["results"]}
    assert {e["sku"] for e in again["catalog_errors"]} == {"LINK-2", "ABS-3"}
    assert rows["SHARE-4"]["status"] == "ok" and rows["LOOP-5"]["status"] == "ok"
    assert _Handler.hits["/shoe.jpg"] == 1
    assert rows["V6-6"]["status"] == "failed" and rows["META-7"]["status"] == "failed"  # still closed
