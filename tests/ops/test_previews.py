"""Preview links: base_url + quoted path, presigned object-store URLs, file:// otherwise; [previews] checks."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

from ops.config import load_config
from ops.location import StorageOptions
from ops.previews import MAX_PRESIGN_S, PreviewError, preview_url
from s3_server import s3_server  # noqa: F401  (tests/ is on sys.path)
from stages.errors import ConfigError

THUMB = "products/SHOE 01 (black)-64cf0213cb/layers/after.jpg"


def test_local_folder_without_base_url_links_the_file(tmp_path):
    url = preview_url(THUMB, tmp_path)
    assert url.startswith("file://") and url.endswith("/layers/after.jpg")
    assert "%20" in url and "(" not in url  # quoted: safe inside Markdown's (...)
    assert urlsplit(url).path.startswith(str(tmp_path.resolve()))


def test_local_folder_with_base_url_links_the_served_path(tmp_path):
    for base in ("http://stage-box:8780/", "http://stage-box:8780"):
        assert preview_url(THUMB, tmp_path, base) == \
            "http://stage-box:8780/products/SHOE%2001%20%28black%29-64cf0213cb/layers/after.jpg"
    assert preview_url("runs/r1/report.html", tmp_path, "https://cdn.example/outputs/") == \
        "https://cdn.example/outputs/runs/r1/report.html"


@pytest.mark.parametrize("rel", ["../ledger.sqlite", "products/../../etc/passwd", "/etc/passwd", "", "a\\b.jpg"])
def test_paths_outside_the_output_location_are_refused(tmp_path, rel):
    with pytest.raises(ValueError):
        preview_url(rel, tmp_path, "http://stage-box:8780/")


def test_object_store_output_gets_a_presigned_sigv4_url(tmp_path, fake_aws):
    url = preview_url(THUMB, tmp_path, output_url="s3://shop-outputs/staging/nightly/", presign_s=7200)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.scheme == "https"
    key = "staging/nightly/products/SHOE%2001%20%28black%29-64cf0213cb/layers/after.jpg"
    # the object under the output prefix; the bucket in the host name or the path, as botocore addresses it
    assert parts.netloc + parts.path in {f"shop-outputs.s3.amazonaws.com/{key}",
                                         f"shop-outputs.s3.eu-west-1.amazonaws.com/{key}",
                                         f"s3.eu-west-1.amazonaws.com/shop-outputs/{key}"}, url
    assert query["X-Amz-Expires"] == ["7200"] and len(query["X-Amz-Signature"][0]) == 64
    assert query["X-Amz-Credential"][0].startswith("AKIAPREVIEWTEST00001/") and "/eu-west-1/s3/" in \
        query["X-Amz-Credential"][0]
    other = preview_url("runs/r1/report.html", tmp_path, output_url="s3://shop-outputs/staging/nightly",
                        presign_s=60)
    assert "/staging/nightly/runs/r1/report.html?" in other and "X-Amz-Expires=60" in other
    assert parse_qs(urlsplit(other).query)["X-Amz-Signature"] != query["X-Amz-Signature"]


def test_base_url_wins_over_presigning(tmp_path, fake_aws):
    """A bucket behind a CDN or a public bucket URL: plain links, no signature."""
    url = preview_url(THUMB, tmp_path, "https://images.example/nightly/", "s3://shop-outputs/nightly")
    assert url.startswith("https://images.example/nightly/products/") and "X-Amz" not in url


def test_object_store_without_credentials_says_why(tmp_path, fake_aws):
    fake_aws.delenv("AWS_ACCESS_KEY_ID")
    fake_aws.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(PreviewError, match=r"cannot presign s3:// links: NoCredentialsError"):
        preview_url(THUMB, tmp_path, output_url="s3://shop-outputs/nightly")
    with pytest.raises(PreviewError, match=r"cannot presign memory:// links"):
        preview_url(THUMB, tmp_path, output_url="memory://outputs")


@pytest.mark.parametrize("table,match", [
    ("base_url = 'stage-box:8780'", r"previews.base_url = 'stage-box:8780': expected an http:// or https:// URL"),
    ("base_url = 'ftp://stage-box/'", r"expected an http:// or https:// URL"),
    ("base_url = 'http://stage-box:8780/?x=1'", r"must not hold a query or fragment"),
    ("base_url = 'http://user:pw@stage-box/'", r"must not hold credentials"),
    ("base_url = 'http://stage box/'", r"contains white space"),
    ("presign_s = 0", r"previews.presign_s = 0: must be 1..604800 seconds"),
    (f"presign_s = {MAX_PRESIGN_S + 1}", r"must be 1..604800 seconds"),
])
def test_bad_previews_settings_fail_with_the_key_named(tmp_path, table, match):
    path = tmp_path / "config.toml"
    path.write_text(f"[previews]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_previews_settings_are_not_part_of_the_output_digest(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[previews]\nbase_url = 'http://stage-box:8780/'\npresign_s = 600\n", encoding="utf-8")
    cfg = load_config(path)
    assert (cfg.previews.base_url, cfg.previews.presign_s) == ("http://stage-box:8780/", 600)
    assert cfg.digest() == load_config(None).digest()  # changing where previews live regenerates nothing


def test_presigned_links_go_to_the_configured_store_and_open(tmp_path, s3_server, monkeypatch,  # noqa: F811
                                                             fresh_stores):
    """An S3-compatible store named by [storage] endpoint_url (MinIO, R2, Ceph): the link is signed
    for that store, not for AWS, and a plain HTTP GET of it returns the object."""
    bucket = s3_server.bucket()
    s3_server.client().put_object(Bucket=bucket, Key=f"nightly/{THUMB}", Body=b"after-thumbnail")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # the endpoint comes from the config only
    url = preview_url(THUMB, tmp_path, output_url=f"s3://{bucket}/nightly", presign_s=300,
                      storage=StorageOptions(endpoint_url=s3_server.endpoint, region="us-east-1"))
    assert url.startswith(s3_server.endpoint + "/") and "X-Amz-Signature=" in url, url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"after-thumbnail"
    unsigned = url.split("?", 1)[0]
    with pytest.raises(urllib.error.HTTPError) as refused:  # the signature is what opens it
        urllib.request.urlopen(unsigned, timeout=10)
    assert refused.value.code == 403
