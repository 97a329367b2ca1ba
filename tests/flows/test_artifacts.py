"""The run's Prefect artifacts show the review queue by check and the photo problems by class, and link
thumbnails and the report so that the UI can load them ([previews])."""

from __future__ import annotations

import re

from flows import artifacts
from ops.report import summarize


def test_counts_and_report_artifacts_group_review_reasons_and_photo_problems(tmp_path, monkeypatch):
    made: dict[str, object] = {}
    monkeypatch.setattr(artifacts, "create_table_artifact", lambda rows, key, description: made.update({key: rows}))
    monkeypatch.setattr(artifacts, "create_markdown_artifact", lambda text, key, description: made.update({key: text}))
    problem = {"rendition": "marketplace", "rule": "min_fill", "measured": 0.7, "needed": 0.85,
               "why": "photo too small", "formats": ["jpeg"]}
    results = [
        {"row": 2, "sku": "A", "status": "ok", "verdict": "review", "reasons": ["halo: fringe on 30% of the rim"]},
        {"row": 3, "sku": "B", "status": "ok", "verdict": "pass", "reasons": [], "photo_problems": [problem]},
        {"row": 4, "sku": "C", "status": "cached", "verdict": "pass", "reasons": [], "photo_problems": [problem]},
        {"row": 5, "sku": "D", "status": "ok", "verdict": "review",
         "reasons": ["nsfw: score 0.6 in the review band", "halo: fringe on 40% of the rim"]},
    ]
    summary = summarize(results, [])
    attention = [r for r in results if r["verdict"] == "review"]
    artifacts.publish("r1", summary, attention, [], None, tmp_path,
                      {"wall_s": 1.0, "prepass_s": 0.1, "processed_rows": 4, "mean_ms": {}})
    counts = {row["outcome"]: row["count"] for row in made["staging-run-counts"]}
    assert counts["verdict:pass"] == 2 and counts["verdict:review"] == 2
    assert counts["review:nsfw"] == 1 and counts["review:halo"] == 2
    assert counts["photo problem: photo too small for marketplace"] == 2
    text = made["staging-run-report"]
    queue = text.index("## Review queue by check (most severe first)")
    assert text.index("nsfw: 1, halo: 2", queue) > queue  # the most severe first, even when less common
    assert text.index("`review-decisions/review` deployment", queue) > queue  # how a group is decided in the UI
    assert "## Photo problems (renditions withheld, verdicts unchanged)\n\n- photo too small for marketplace: 2 SKUs" \
        in text


def _run_report(tmp_path, monkeypatch, **previews) -> str:
    """The `staging-run-report` markdown of a run with one published product (a real thumbnail) and its report."""
    made: dict[str, object] = {}
    monkeypatch.setattr(artifacts, "create_table_artifact", lambda rows, key, description: None)
    monkeypatch.setattr(artifacts, "create_markdown_artifact", lambda text, key, description: made.update({key: text}))
    folder = tmp_path / "out" / "products" / "SHOE (1)-64cf0213cb"
    (folder / "layers").mkdir(parents=True)
    (folder / "layers" / "after.jpg").write_bytes(b"\xff\xd8\xff\xe0 thumbnail")
    report = tmp_path / "out" / "runs" / "r1" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<!doctype html>", encoding="utf-8")
    results = [{"row": 2, "sku": "SHOE (1)", "status": "ok", "verdict": "review", "reasons": ["halo: fringe"],
                "record": "products/SHOE (1)-64cf0213cb/SHOE (1)-64cf0213cb.json", "output": "x.png"}]
    artifacts.publish("r1", summarize(results, []), results, [], report, tmp_path / "out",
                      {"wall_s": 1.0, "prepass_s": 0.1, "processed_rows": 1, "mean_ms": {}}, **previews)
    return str(made["staging-run-report"])


def test_report_links_through_base_url_when_the_folder_is_served(tmp_path, monkeypatch):
    text = _run_report(tmp_path, monkeypatch, base_url="http://stage-box:8780/")
    assert "Report: [report.html](http://stage-box:8780/runs/r1/report.html)" in text
    assert "![SHOE \\(1\\)](http://stage-box:8780/products/SHOE%20%281%29-64cf0213cb/layers/after.jpg)" in text
    assert "file://" not in text and "Previews:" not in text


def test_without_base_url_the_links_are_files_and_the_report_says_how_to_preview(tmp_path, monkeypatch):
    text = _run_report(tmp_path, monkeypatch)
    assert f"(file://{tmp_path.resolve()}/out/runs/r1/report.html)" in text
    assert f"(file://{tmp_path.resolve()}/out/products/SHOE%20%281%29-64cf0213cb/layers/after.jpg)" in text
    assert text.count("Previews:") == 1 and "`stage serve-outputs`" in text and "[previews] base_url" in text


def test_object_store_output_links_are_presigned(tmp_path, fake_aws):
    import s3fs
    monkeypatch = fake_aws
    text = _run_report(tmp_path, monkeypatch, output_url="s3://shop/nightly", presign_s=3600)
    report, thumb = re.findall(r"\]\((https://[^)]+)\)", text)
    assert "/nightly/runs/r1/report.html?" in report and "/nightly/products/SHOE%20%281%29-64cf0213cb/layers/" \
        "after.jpg?" in thumb
    assert all("X-Amz-Signature=" in u and "X-Amz-Expires=3600" in u for u in (report, thumb))
    assert "(`s3://shop/nightly/runs/r1/report.html`)" in text and "Previews:" not in text
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setattr("ops.objectstore._OPEN", {})  # a new worker process: no store opened yet
    text = _run_report(tmp_path / "again", monkeypatch, output_url="s3://shop/nightly")
    assert "Report: `s3://shop/nightly/runs/r1/report.html`" in text and "](" not in text
    assert text.count("Previews: a link could not be made (cannot presign s3:// links: NoCredentialsError") == 1
    s3fs.S3FileSystem.clear_instance_cache()
