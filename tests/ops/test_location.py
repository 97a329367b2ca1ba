"""Output locations: folders, object-store URLs and their scratch folders."""

from __future__ import annotations

import pytest

from ops.config import load_config
from ops.location import check_output_url, output_location, scratch_root
from stages.errors import ConfigError


def test_a_folder_is_a_folder(tmp_path):
    where = output_location(str(tmp_path / "out"), "outputs", str(tmp_path))
    assert where.root == (tmp_path / "out").resolve() and where.url is None and where.name == str(where.root)
    default = output_location(None, "outputs", str(tmp_path))
    assert default.root == (tmp_path / "outputs").resolve()


def test_a_url_gets_a_scratch_folder_per_url(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a = output_location("s3://bucket/nightly/", "outputs", str(tmp_path))
    b = output_location("s3://bucket/other", "outputs", str(tmp_path))
    assert a.url == "s3://bucket/nightly" and a.name == "s3://bucket/nightly"
    assert a.root.parent == (tmp_path / "cache" / "product-staging" / "scratch").resolve()
    assert a.root != b.root and a.root == scratch_root("s3://bucket/nightly")
    chosen = output_location("gs://bucket/x", "outputs", str(tmp_path), scratch_dir="scratch")
    assert chosen.root.parent == (tmp_path / "scratch").resolve()


@pytest.mark.parametrize(("url", "problem"), [
    ("http://example.com/out", "scheme 'http' is not supported"),
    ("az://container/out", "scheme 'az' is not supported"),
    ("simplecache::s3://bucket/out", "chained"),
    ("s3://AKIA:secret@bucket/out", "credentials"),
    ("s3://bucket/out?versionId=1", "query"),
    ("s3:///out", "no bucket"),
    ("s3://bucket/a/../b", "'..'"),
])
def test_bad_output_urls_are_refused_with_the_reason(url, problem):
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace("?", r"\?")) as err:
        check_output_url(url)
    assert "secret" not in str(err.value)


def test_the_config_may_name_a_url_and_a_bad_one_fails_to_load(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[run]\noutput_dir = "s3://bucket/prefix"\n[storage]\nendpoint_url = "http://127.0.0.1:9000"\n')
    cfg = load_config(good)
    assert cfg.output_location(None).url == "s3://bucket/prefix"
    assert cfg.output_location(str(tmp_path / "here")).url is None  # --out wins
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\noutput_dir = "ftp://host/out"\n')
    with pytest.raises(ConfigError, match=r"run.output_dir: .*'ftp' is not supported"):
        load_config(bad)
    creds = tmp_path / "creds.toml"
    creds.write_text('[storage]\nendpoint_url = "http://user:pw@minio:9000"\n')
    with pytest.raises(ConfigError, match="storage.endpoint_url"):
        load_config(creds)
