"""The run's Prefect artifacts show the review queue by check and the photo problems by class."""

from __future__ import annotations

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
    assert "## Photo problems (renditions withheld, verdicts unchanged)\n\n- photo too small for marketplace: 2 SKUs" \
        in text
