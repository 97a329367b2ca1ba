"""What a run shows in the Prefect UI: live progress, counts, failures, timings and a report link."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prefect.artifacts import (
    create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact,
)

from ops.cost import money
from ops.location import StorageOptions
from ops.paths import LAYERS, PRODUCTS
from ops.previews import SERVE_HINT, PreviewError, preview_url
from ops.report import printable
from ops.triage import photo_lines

THUMBNAILS = 6
PROGRESS_EVERY_S = 1.0


class Progress:
    """The `staging-progress` artifact: percent of the run's rows done, updated at most once a second."""

    def __init__(self, total: int, run_id: str) -> None:
        self.total = max(total, 1)
        self.run_id = run_id
        self.last = 0.0
        self.id = None
        try:
            self.id = create_progress_artifact(0.0, key="staging-progress", description=f"Run {run_id}: rows done")
        except Exception:  # no flow run context (a plain call in a test) or the API is away: no live progress
            self.id = None

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.id is None or (not final and now - self.last < PROGRESS_EVERY_S):
            return
        self.last = now
        try:
            update_progress_artifact(self.id, round(100.0 * min(done, self.total) / self.total, 1),
                                     description=f"Run {self.run_id}: {done} of {self.total} rows done")
        except Exception:  # progress is a convenience: never fail the run for it
            pass


class Links:
    """Preview links (`ops.previews.preview_url`) of files under the local root `out_root`, and what the
    report says about them once: how to get previews the UI can load, or why a link could not be made."""

    def __init__(self, out_root: Path, base_url: str = "", output_url: str | None = None,
                 presign_s: int = 86_400, storage: StorageOptions = StorageOptions()) -> None:
        self.out_root, self.base_url, self.output_url, self.presign_s = out_root, base_url, output_url, presign_s
        self.storage = storage  # [storage]: the store presigned links are made for
        self.problem: str | None = None

    def rel(self, path: Path) -> str:
        """`path` relative to the output location (ValueError for a path outside it)."""
        return path.resolve().relative_to(self.out_root.resolve()).as_posix()

    def url(self, path: Path) -> str | None:
        """The link to `path`, or None (the reason kept for `note`): the artifact shows the path instead."""
        try:
            url = preview_url(self.rel(path), self.out_root, self.base_url, self.output_url, self.presign_s,
                              self.storage)
        except (ValueError, PreviewError) as exc:
            self.problem = self.problem or str(exc)
            return None
        return re.sub(r"[ ()<>]", lambda m: quote(m.group()), url)  # safe inside Markdown's (...)

    def where(self, path: Path) -> str:
        """Where a person finds `path`: the local file, or the object in the store."""
        if self.output_url:
            with contextlib.suppress(ValueError):
                return self.output_url.rstrip("/") + "/" + self.rel(path)
        return str(path)

    def note(self) -> str | None:
        """The report's one line about previews (Markdown), when there is something to say."""
        if self.problem:
            return f"Previews: a link could not be made ({_md(self.problem)}); the paths are shown instead."
        if not self.base_url and not self.output_url:
            return f"Previews: these are file:// links, which the Prefect UI's page cannot load: {SERVE_HINT}."
        return None


def publish(run_id: str, summary: dict[str, Any], attention: list[dict[str, Any]], errors: list[dict[str, Any]],
            report: Path | None, out_root: Path, timings: dict[str, Any], base_url: str = "",
            presign_s: int = 86_400, output_url: str | None = None,
            storage: StorageOptions = StorageOptions()) -> None:
    """Create the run's table and markdown artifacts.

    Keys are fixed so that the UI's Artifacts page keeps one history per kind across runs:
    `staging-progress`, `staging-run-counts` (by status, verdict, review check and photo problem
    class), `staging-run-failures`, `staging-run-timings`, `staging-run-cost`, `staging-run-report`.
    Thumbnails and the report link go through `ops.previews.preview_url`: `[previews] base_url` +
    the path (a local folder that `stage serve-outputs` serves), presigned URLs for an object-store
    output (`output_url`, None for a local folder; signed for the store `storage`, the config's
    `[storage]`, names), else file:// URLs, which open only in a browser
    on a machine that sees the folder and never from the UI's http page (the report says so once).
    """
    counts = [{"outcome": f"status:{k}", "count": v} for k, v in sorted(summary["by_status"].items())]
    counts += [{"outcome": f"verdict:{k}", "count": v} for k, v in sorted(summary["by_verdict"].items())]
    counts.append({"outcome": "invalid rows", "count": summary["invalid_rows"]})
    counts += [{"outcome": f"review:{g['check']}", "count": g["skus"]} for g in summary.get("review_by_check") or []]
    counts += [{"outcome": f"photo problem: {p['label']}", "count": p["skus"]}
               for p in summary.get("photo_problems") or []]
    create_table_artifact(counts, key="staging-run-counts", description=f"Run {run_id}: products by outcome")
    bad = [{"row": e["row"], "sku": printable(e["sku"]), "status": "invalid", "reason": printable(e["reason"])}
           for e in errors[:200]]
    bad += [{"row": r["row"], "sku": printable(r["sku"]), "status": r["status"] if r["status"] != "ok" else "review",
             "reason": printable(r.get("error") or "; ".join(r.get("reasons") or []))} for r in attention]
    create_table_artifact(bad or [{"row": "", "sku": "", "status": "", "reason": "no failures"}],
                          key="staging-run-failures", description=f"Run {run_id}: failed, rejected and review rows")
    timing_rows = [{"what": "run wall time (s)", "value": timings["wall_s"]},
                   {"what": "pre-pass: unchanged rows found (s)", "value": timings["prepass_s"]},
                   {"what": "rows staged", "value": timings["processed_rows"]}]
    timing_rows += [{"what": f"mean {k} per staged row (ms)", "value": v} for k, v in timings["mean_ms"].items()]
    create_table_artifact(timing_rows, key="staging-run-timings", description=f"Run {run_id}: timings")
    if cost := summary.get("cost"):
        create_table_artifact(cost_rows(cost), key="staging-run-cost",
                              description=f"Run {run_id}: cost per run, per SKU and per stage ({cost['currency']})")
    links = Links(out_root, base_url, output_url, presign_s, storage)
    create_markdown_artifact(_markdown(run_id, summary, attention, report, links), key="staging-run-report",
                             description=f"Run {run_id}")


def cost_rows(cost: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's cost table: the run, its SKUs (median, p90), then each stage's time, share and cost."""
    cur, per = cost["currency"], cost["per_sku"]
    rows = [{"what": "run", "time_s": "", "share": "", "cost": money(cost["total"], cur)},
            {"what": f"per SKU, median of {cost['priced_rows']}", "time_s": "", "share": "",
             "cost": money(per["median"], cur)},
            {"what": "per SKU, p90", "time_s": "", "share": "", "cost": money(per["p90"], cur)}]
    rows += [{"what": f"stage {s['stage']}", "time_s": round(s["ms"] / 1000, 2), "share": f"{100 * s['share']:.1f}%",
              "cost": money(s["cost"], cur)} for s in cost["stages"]]
    return rows


def _markdown(run_id: str, summary: dict[str, Any], attention: list[dict[str, Any]], report: Path | None,
              links: Links) -> str:
    lines = [f"# Staging run {_md(run_id)}", ""]
    thumbs = []
    for r in _thumbnail_rows(links.out_root, attention):
        if url := links.url(r["thumb"]):
            thumbs.append(f"![{_md(r['sku'])}]({url})")
    if report and (url := links.url(report)):
        lines.append(f"Report: [{_md(report.name)}]({url}) (`{_md(links.where(report))}`)")
    elif report:
        lines.append(f"Report: `{_md(links.where(report))}`")
    else:
        lines.append("Report: not written (see the run's logs)")
    if note := links.note():
        lines += ["", note]
    counts = ", ".join(f"{_md(k)} {v}" for k, v in sorted(summary["by_status"].items()))
    lines += ["", f"Rows: {summary['rows']} ({counts}; invalid {summary['invalid_rows']})", ""]
    if cost := summary.get("cost"):
        lines += [f"Cost: {money(cost['total'], cost['currency'])} for {cost['priced_rows']} staged SKU(s); per SKU "
                  f"median {money(cost['per_sku']['median'], cost['currency'])}, "
                  f"p90 {money(cost['per_sku']['p90'], cost['currency'])}", ""]
    if groups := summary.get("review_by_check"):
        lines += ["## Review queue by check (most severe first)", "",
                  ", ".join(f"{_md(g['check'])}: {g['skus']}" for g in groups), "",
                  "Looked through a group in the report? A run of the `review-decisions/review` deployment "
                  "with its check (or the SKUs) approves or rejects it.", ""]
    if photo := photo_lines(summary):
        lines += ["## Photo problems (renditions withheld, verdicts unchanged)", ""]
        lines += [f"- {_md(line)}" for line in photo] + [""]
    if thumbs:
        lines += ["## Thumbnails", "", " ".join(thumbs), ""]
    if attention:
        lines += ["## Needs attention", "", "| row | SKU | status | reason |", "|---|---|---|---|"]
        lines += [f"| {r['row']} | {_md(r['sku'])} | {_md(r['status'])} {_md(r.get('verdict') or '')} | "
                  f"{_md(r.get('error') or '; '.join(r.get('reasons') or []))} |" for r in attention[:50]]
    return "\n".join(lines) + "\n"


def _thumbnail_rows(out_root: Path, attention: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A few after-thumbnails: review rows first, then any published products of the folder."""
    picked: list[dict[str, Any]] = []
    for r in attention:
        if r.get("record") and r.get("output"):
            thumb = (out_root / r["record"]).parent / LAYERS / "after.jpg"
            if thumb.is_file():
                picked.append({"sku": r["sku"], "thumb": thumb})
    if len(picked) < THUMBNAILS:
        products = out_root / PRODUCTS
        entries = itertools.islice(os.scandir(products), THUMBNAILS * 4) if products.is_dir() else []
        for entry in entries:  # not a listing of the whole folder: it may hold 50,000 products
            folder = Path(entry.path)
            thumb = folder / LAYERS / "after.jpg"
            if thumb.is_file() and all(p["thumb"] != thumb for p in picked):
                picked.append({"sku": folder.name, "thumb": thumb})
            if len(picked) >= THUMBNAILS:
                break
    return picked[:THUMBNAILS]


def _md(text: str) -> str:
    """Catalog text inside Markdown: escaped, so it cannot add markup, links or table cells."""
    escaped = re.sub(r"([\\`*_{}\[\]<>()#+!|~])", r"\\\1", printable(text))
    return escaped.replace("\n", " ")
