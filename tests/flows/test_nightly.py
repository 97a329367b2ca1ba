"""The nightly flow end to end, in Prefect's ephemeral mode, on real product photos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTOS = {
    "SHOE-01": "19_shoes_black-suede_white.jpg",
    "HAT-02": "27_hat_leather-cap_on-white-sheet.jpg",
    "SANDAL-03": "22_shoes_strap-sandals_white.jpg",
}


def _catalog(tmp: Path, images: Path) -> Path:
    (tmp / "photos").mkdir(parents=True)
    for name in PHOTOS.values():
        shutil.copy(images / name, tmp / "photos" / name)
    good = (images / "19_shoes_black-suede_white.jpg").read_bytes()
    (tmp / "photos" / "corrupt.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    lines = ["sku,image,title,category,scene_prompt,seed,variants"]
    lines += [f"{sku},photos/{name},Title {sku},shoes,sage green wall,{i},1" for i, (sku, name) in enumerate(PHOTOS.items())]
    lines[-1] = lines[-1][: -len(",1")] + ",2"  # SANDAL-03 asks for two variants
    lines.append("BROKEN-04,photos/corrupt.jpg,Broken,shoes,,,")
    lines.append("MISSING-05,photos/nope.jpg,Missing,shoes,,,")
    lines.append('"<script>alert(1)</script>",photos/nope.jpg,Evil,shoes,,,')
    (tmp / "catalog.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp / "config.toml").write_text(
        "[layout]\nwidth = 512\nheight = 512\n[write]\nformat_copies = [\"jpeg\", \"webp\"]\n", encoding="utf-8"
    )
    return tmp / "catalog.csv"


@pytest.fixture(scope="module")
def run(tmp_path_factory, images, dev_keys):
    from flows.nightly import nightly_catalog_run

    tmp = tmp_path_factory.mktemp("nightly")
    catalog = _catalog(tmp, images)
    result = nightly_catalog_run(catalog=str(catalog), config=str(tmp / "config.toml"), out=str(tmp / "out"))
    return tmp, result


def _by_sku(result):
    return {r["sku"]: r for r in result["results"]}


def test_good_rows_are_published_and_bad_rows_reported(run):
    tmp, result = run
    rows = _by_sku(result)
    for sku in PHOTOS:
        assert rows[sku]["status"] == "ok", rows[sku]
    assert rows["BROKEN-04"]["status"] == "failed"
    assert "corrupt.jpg" in rows["BROKEN-04"]["error"] and "InputError" in rows["BROKEN-04"]["error"]
    invalid = {e["sku"]: e for e in result["catalog_errors"]}
    assert invalid["MISSING-05"]["row"] == 6 and "photo not found" in invalid["MISSING-05"]["reason"]
    assert result["summary"]["failed"] == 3


def test_published_product_pixels_are_identical_to_the_product_layer(run):
    tmp, result = run
    out = tmp / "out"
    for sku in PHOTOS:
        record_path = out / _by_sku(result)[sku]["record"]
        record = json.loads(record_path.read_text())
        folder = record_path.parent
        staged = np.asarray(Image.open(folder / record["output"]).convert("RGB"))
        layer = np.asarray(Image.open(folder / record["product_layer"]))
        assert layer.shape == (512, 512, 4)
        core = layer[..., 3] == 255
        assert core.sum() > 2000
        assert np.array_equal(staged[core], layer[..., :3][core])
        # ...and they are the source photo's own pixels, moved and scaled as the placement says.
        p = record["placement"]
        src = np.asarray(Image.open(folder / record["source"]).convert("RGB"))
        x0, y0, x1, y1 = p["source_box"]
        resized = np.asarray(Image.fromarray(src[y0:y1, x0:x1]).resize((p["width"], p["height"])))
        placed = staged[p["y"] : p["y"] + p["height"], p["x"] : p["x"] + p["width"]].astype(int)
        inner = core[p["y"] : p["y"] + p["height"], p["x"] : p["x"] + p["width"]]
        assert np.abs(placed[inner] - resized[inner]).mean() < 12  # same photo, different resampler


def test_record_has_the_documented_fields(run):
    tmp, result = run
    record_path = tmp / "out" / _by_sku(result)["SANDAL-03"]["record"]
    record = json.loads(record_path.read_text())
    for key in ("sku", "source", "source_sha256", "output", "product_layer", "placement", "backends", "seed",
                "timings_ms", "checks", "verdict"):
        assert key in record, key
    folder = record_path.parent
    import hashlib
    assert hashlib.sha256((folder / record["source"]).read_bytes()).hexdigest() == record["source_sha256"]
    assert record["backends"]["matte"] == "plain-backdrop" and record["backends"]["scene"] == "procedural"
    assert set(record["placement"]) >= {"scale", "x", "y"}
    assert [v["seed"] for v in record["variants"]] == [2, 3]  # the row's seed, then seed + 1
    assert record["seed"] == next(v["seed"] for v in record["variants"] if v["output"] == record["output"])
    assert all((folder / v["output"]).is_file() for v in record["variants"])
    assert {c["name"] for c in record["checks"]} >= {"product_pixels", "c2pa", "framing"}
    for layer in ("matte", "mask", "depth", "product_layer"):
        assert (folder / record[layer]).is_file()
    assert not list(folder.rglob("*.tmp"))


def test_outputs_carry_valid_content_credentials(run):
    from provenance.verify import verify_file

    tmp, result = run
    anchors = Path(__import__("os").environ["STAGE_KEYS_DIR"], "ca.pem").read_text()
    for sku in PHOTOS:
        ver = verify_file(tmp / "out" / _by_sku(result)[sku]["output"], anchors)
        assert ver.ok and ver.trusted, ver.failures


def test_format_copies_are_signed_with_the_master_as_ingredient(run):
    from provenance.verify import verify_file

    tmp, result = run
    anchors = Path(__import__("os").environ["STAGE_KEYS_DIR"], "ca.pem").read_text()
    record_path = tmp / "out" / _by_sku(result)["HAT-02"]["record"]
    record = json.loads(record_path.read_text())
    folder = record_path.parent
    assert [r["format"] for r in record["format_copies"]] == ["jpeg", "webp"]
    layer = np.asarray(Image.open(folder / record["product_layer"]))
    core = layer[..., 3] == 255
    for rendition in record["format_copies"]:
        path = folder / rendition["output"]
        ver = verify_file(path, anchors)
        assert ver.ok and ver.trusted, ver.failures
        ingredient = ver.manifest["ingredients"][0]
        assert ingredient["relationship"] == "parentOf" and ingredient["title"] == record["output"]
        actions = [a["action"] for a in ver.manifest["assertions"][0]["data"]["actions"]]
        assert actions == ["c2pa.opened", "c2pa.converted"]
        px = np.asarray(Image.open(path).convert("RGB")).astype(int)
        diff = np.abs(px[core] - layer[..., :3][core].astype(int))
        if rendition["format"] == "webp":
            assert diff.max() == 0
        else:
            assert 0 < diff.mean() <= 4.0


def test_run_report_lists_every_row_and_escapes_content(run):
    tmp, result = run
    run_dir = Path(result["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["summary"]["rows"] == 6
    csv_text = (run_dir / "summary.csv").read_text()
    assert "BROKEN-04" in csv_text and "MISSING-05" in csv_text
    html = (run_dir / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert html.count("<img") >= 3 * 2  # before and after per published product


def test_second_run_skips_unchanged_products_and_force_regenerates(run):
    from flows.nightly import nightly_catalog_run

    tmp, first = run
    again = nightly_catalog_run(catalog=str(tmp / "catalog.csv"), config=str(tmp / "config.toml"), out=str(tmp / "out"))
    assert {r["sku"]: r["status"] for r in again["results"] if r["sku"] in PHOTOS} == {s: "cached" for s in PHOTOS}
    forced = nightly_catalog_run(catalog=str(tmp / "catalog.csv"), config=str(tmp / "config.toml"),
                                 out=str(tmp / "out"), force=True)
    assert all(r["status"] == "ok" for r in forced["results"] if r["sku"] in PHOTOS)


def _stage(*args, cwd):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_exit_codes_and_verify(run, repo):
    tmp, _ = run
    out = tmp / "cli-out"
    partial = _stage("run", str(tmp / "catalog.csv"), "--config", str(tmp / "config.toml"), "--out", str(out),
                     "--quiet", cwd=tmp)
    assert partial.returncode == 3, partial.stderr
    assert "BROKEN-04" in partial.stderr and "MISSING-05" in partial.stderr
    good = tmp / "good.csv"
    good.write_text("\n".join((tmp / "catalog.csv").read_text().splitlines()[:2]) + "\n")
    ok = _stage("run", str(good), "--config", str(tmp / "config.toml"), "--out", str(out), "--quiet", cwd=tmp)
    assert ok.returncode == 0, ok.stderr
    failed = _stage("run", str(tmp / "nope.csv"), "--out", str(out), cwd=tmp)
    assert failed.returncode == 1 and "catalog not found" in failed.stderr
    outputs = sorted(out.glob("products/*/*.png"))
    assert outputs
    verified = _stage("verify", *map(str, outputs), cwd=tmp)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    tampered = tmp / "tampered.png"
    Image.open(outputs[0]).save(tampered)  # re-encoding strips the manifest
    assert _stage("verify", str(tampered), cwd=tmp).returncode == 1


def test_the_run_reads_its_catalog_a_chunk_at_a_time(tmp_path, images, dev_keys, monkeypatch):
    """The flow holds a chunk of the catalog's rows, not all of them: when the first product is
    staged, only the first chunk has been parsed for the run (after the whole file was checked).
    Before each chunk is read, the heap's free pages go back to the system."""
    import flows.nightly as nightly
    import ops.catalog as catalog_module
    from ops.runner import RowResult

    n, chunk = 150, 50
    (tmp_path / "photos").mkdir()
    shutil.copy(images / PHOTOS["SHOE-01"], tmp_path / "photos" / "shoe.jpg")
    rows = "".join(f"S-{i},photos/shoe.jpg,Shoe {i},shoes\n" for i in range(n))
    (tmp_path / "catalog.csv").write_text("sku,image,title,category\n" + rows + "S-0,photos/shoe.jpg,dup,shoes\n",
                                          encoding="utf-8")
    # 2 batches of 20 in flight (2 x workers) take less than a chunk: the run reads no further until one ends
    (tmp_path / "config.toml").write_text("[run]\nbatch_size = 20\nworkers = 1\n", encoding="utf-8")
    parsed, at_first_product = [], []
    parse = catalog_module._RowParser.row
    monkeypatch.setattr(catalog_module._RowParser, "row", lambda self, *a: parsed.append(1) or parse(self, *a))
    monkeypatch.setattr(nightly, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(nightly, "shared_workbench", lambda *a: None)
    released = []  # rows parsed when the heap's free pages were released
    monkeypatch.setattr(nightly, "release_free_pages", lambda: released.append(len(parsed)) or True)

    def staged(bench, row, ctx):  # the per-product work is not what this test is about
        at_first_product.append(len(parsed))
        return RowResult(row.row, row.sku, "cached", verdict="pass")

    monkeypatch.setattr(nightly, "process_row", staged)
    result = nightly.nightly_catalog_run(catalog=str(tmp_path / "catalog.csv"), config=str(tmp_path / "config.toml"),
                                         out=str(tmp_path / "out"))
    assert result["summary"]["by_status"] == {"cached": n} and result["summary"]["invalid_rows"] == 1
    assert [e["row"] for e in result["catalog_errors"]] == [n + 2]
    assert len(parsed) == 2 * n + 1  # checked once (every row), then read once for the run (the bad row skipped)
    assert at_first_product[0] <= n + 1 + chunk  # the check, then one chunk: the run did not read every row first
    # after the check, before each of the 3 chunks and before the read that finds the catalog's end
    assert released == [n + 1, n + 1 + chunk, n + 1 + 2 * chunk, 2 * n + 1]
    assert [r["row"] for r in result["results"]] == list(range(2, n + 2))
