"""Whole-object uploads to S3 (a moto server on loopback): verified, and never partial under a published name."""

from __future__ import annotations

import pytest

from ops.objectstore import StoreError, UploadMismatch, open_store
from s3_server import s3_server  # noqa: F401  (tests/ is on sys.path)


@pytest.fixture
def store(s3_server):  # noqa: F811
    bucket = s3_server.bucket()
    return open_store(f"s3://{bucket}/out"), s3_server, bucket


def test_an_upload_is_verified_and_readable(store):
    st, srv, bucket = store
    data = b"\x89PNG" + bytes(range(256)) * 40
    st.put("products/a/a.png", data)
    assert srv.keys(bucket) == {"out/products/a/a.png": len(data)}
    assert st.get("products/a/a.png") == data
    assert st.listing("products/") == {"products/a/a.png": len(data)}
    assert st.get("products/b/b.json") is None and st.get_json("products/b/b.json") is None


def test_the_endpoint_comes_from_the_environment_or_the_config(s3_server, monkeypatch):  # noqa: F811
    bucket = s3_server.bucket()
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    configured = open_store(f"s3://{bucket}/cfg", endpoint_url=s3_server.endpoint, region="us-east-1")
    configured.put("x.txt", b"x")
    assert s3_server.keys(bucket) == {"cfg/x.txt": 1}


def test_a_failed_upload_leaves_no_object_under_the_final_name(store, monkeypatch):
    st, srv, bucket = store

    def broken(path, data, **kw):  # the connection drops before the request completes
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(st.fs, "pipe_file", broken)
    with pytest.raises(StoreError, match="connection reset"):
        st.put("products/a/a.png", b"data")
    assert srv.keys(bucket) == {}


def test_stored_bytes_that_differ_from_the_local_ones_are_removed(store, monkeypatch):
    st, srv, bucket = store
    real = st.fs.pipe_file

    def corrupting(path, data, **kw):  # a proxy or a bug changes the body; the store keeps what it got
        kw.pop("ContentMD5", None)
        return real(path, data[:-1] + b"!", **kw)

    monkeypatch.setattr(st.fs, "pipe_file", corrupting)
    with pytest.raises(UploadMismatch, match="ETag .* is not the MD5"):
        st.put("products/a/a.png", b"the checked bytes")
    assert srv.keys(bucket) == {}


def test_several_uploads_are_checked_and_bad_ones_removed(store, monkeypatch):
    st, srv, bucket = store
    files = {"products/a/a.png": b"png bytes", "products/a/layers/m.png": b"mask", "products/a/a.jpg": b"jpeg"}
    st.put_all(files, "products/a/")
    assert st.listing("products/a/") == {k: len(v) for k, v in files.items()}
    real = st.fs.pipe

    def corrupting(paths, **kw):
        return real({k: (v + b"?" if k.endswith(".jpg") else v) for k, v in paths.items()}, **kw)

    monkeypatch.setattr(st.fs, "pipe", corrupting)
    with pytest.raises(UploadMismatch, match="b.jpg: ETag .* is not the MD5 of the bytes sent"):
        st.put_all({"products/b/b.png": b"png", "products/b/b.jpg": b"jpeg"}, "products/b/")
    assert st.listing("products/b/") == {"products/b/b.png": 3}

    def no_etags(paths, **kw):  # a store whose responses say nothing: checked from one listing instead
        real({k: (v + b"?" if k.endswith(".jpg") else v) for k, v in paths.items()}, **kw)
        return [None] * len(paths)

    monkeypatch.setattr(st.fs, "pipe", no_etags)
    with pytest.raises(UploadMismatch, match="c.jpg: 5 bytes stored, 4 sent"):
        st.put_all({"products/c/c.png": b"png", "products/c/c.jpg": b"jpeg"}, "products/c/")
    assert st.listing("products/c/") == {"products/c/c.png": 3}


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_local_and_memory_stores_for_tests(scheme, tmp_path):
    url = f"file://{tmp_path}/out" if scheme == "file" else f"memory://bucket-{tmp_path.name}/out"
    st = open_store(url)
    st.put_all({"products/a/a.png": b"png", "products/a/layers/m.png": b"mask"}, "products/a/")
    st.put("products/a/a.json", b"{}")
    assert st.listing("products/") == {"products/a/a.png": 3, "products/a/layers/m.png": 4, "products/a/a.json": 2}
    assert st.get_json("products/a/a.json") == {} and st.get("products/a/none.png") is None
    st.delete(["products/a/a.png"])
    assert "products/a/a.png" not in st.listing("products/")
    if scheme == "file":  # written through a temp file renamed into place: nothing else left beside it
        assert sorted(p.name for p in (tmp_path / "out" / "products" / "a").iterdir()) == ["a.json", "layers"]
