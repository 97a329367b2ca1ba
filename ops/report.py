"""Run summary (JSON + CSV) and an HTML report with before/after thumbnails."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import shlex
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ops.atomic import write_chunks
from ops.cost import RunCost, money
from ops.triage import Triage, grouped_reasons, photo_lines
from stages.errors import StagingError

# Cells starting with these are run as formulas by spreadsheet programs.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Shown as escapes in the CSV and HTML reports: controls, invisible format characters (bidi
# overrides could make a SKU read differently), lone surrogates, line and paragraph separators.
_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


class ReportError(StagingError):
    """Some report files could not be written; `written` holds the ones that were."""

    def __init__(self, message: str, written: dict[str, Path], failures: list[str]) -> None:
        super().__init__(message)
        self.written = written
        self.failures = failures


def printable(value: Any) -> str:
    """Text with every control or invisible character written as an escape (\\x00, \\u202e)."""
    text = "" if value is None else str(value)
    if all(unicodedata.category(ch) not in _HIDDEN for ch in text):
        return text
    return "".join(
        (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        if unicodedata.category(ch) in _HIDDEN else ch
        for ch in text
    )


def csv_safe(value: Any) -> str:
    text = printable(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def summarize(results: list[dict[str, Any]], catalog_errors: list[dict[str, Any]]) -> dict[str, Any]:
    status = Counter(r["status"] for r in results)
    verdicts = Counter(r["verdict"] for r in results if r.get("verdict"))
    cost, triage = RunCost(), Triage()
    for r in results:
        cost.add(r)
        triage.add(r)
    return {
        "rows": len(results) + len(catalog_errors),
        "processed": len(results),
        "invalid_rows": len(catalog_errors),
        "by_status": dict(status),
        "by_verdict": dict(verdicts),
        "failed": status.get("failed", 0) + status.get("rejected", 0) + len(catalog_errors),
        "cost": cost.summary(),
        **triage.summary(),
    }


Results = Sequence[dict[str, Any]] | Callable[[], Iterable[dict[str, Any]]]


def _rows(results: Results) -> Iterable[dict[str, Any]]:
    """Rows in row order: a list is sorted here; a callable (a result log) yields them in order itself."""
    return results() if callable(results) else sorted(results, key=lambda r: r["row"])


def write_run_report(run_dir: Path, out_root: Path, meta: dict[str, Any], results: Results,
                     catalog_errors: list[dict[str, Any]], summary: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write summary.json, summary.csv and report.html into the run folder; returns their paths.

    `results` is a list, or a callable giving the rows in row order each time it is called: the
    files are then written row by row, so a 50,000-SKU run never holds its report in memory.
    Each file is written on its own, summary.json first: when one cannot be written (disk
    full), the others still are, and ReportError names what failed and carries what was written.
    """
    if summary is None:
        results = sorted(results, key=lambda r: r["row"])  # type: ignore[arg-type]
        summary = summarize(results, catalog_errors)
    paths = {"json": run_dir / "summary.json", "csv": run_dir / "summary.csv", "html": run_dir / "report.html"}
    makers = {
        "json": lambda: write_chunks(paths["json"], _json(meta, summary, _rows(results), catalog_errors)),
        "csv": lambda: write_chunks(paths["csv"], _csv(_rows(results), catalog_errors)),
        "html": lambda: write_chunks(paths["html"], _html(run_dir, out_root, meta, summary, results,
                                                          catalog_errors)),
    }
    written: dict[str, Path] = {}
    failures: list[str] = []
    for kind, make in makers.items():
        try:
            make()
        except Exception as exc:  # one report file failing must not cost the others
            failures.append(f"{paths[kind].name}: {type(exc).__name__}: {exc}")
        else:
            written[kind] = paths[kind]
    if failures:
        raise ReportError("run report incomplete: " + "; ".join(failures), written, failures)
    return paths


def _json(meta: dict[str, Any], summary: dict[str, Any], results: Iterable[dict[str, Any]],
          catalog_errors: list[dict[str, Any]]) -> Iterator[str]:
    def dump(value: Any, indent: int) -> str:
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        return text.replace("\n", "\n" + " " * indent)

    head = {**meta, "summary": summary, "catalog_errors": catalog_errors}
    yield "{\n"
    for key in sorted(head):
        yield f"  {json.dumps(key)}: {dump(head[key], 2)},\n"
    yield '  "results": ['
    sep = "\n    "
    for r in results:
        yield sep + dump(r, 4)
        sep = ",\n    "
    yield "\n  ]\n}\n"


def _csv(results: Iterable[dict[str, Any]], catalog_errors: list[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)

    def flush() -> str:
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    writer.writerow(["row", "sku", "status", "verdict", "output", "reason", "photo_problems"])
    for e in catalog_errors:
        writer.writerow([e["row"], csv_safe(e["sku"]), "invalid", "", "", csv_safe(e["reason"]), ""])
    yield flush()
    for r in results:
        reason = r.get("error") or "; ".join(r.get("reasons") or [])
        writer.writerow([r["row"], csv_safe(r["sku"]), r["status"], r.get("verdict") or "",
                         csv_safe(r.get("output") or ""), csv_safe(reason), csv_safe(_withheld(r))])
        yield flush()


def _withheld(r: dict[str, Any]) -> str:
    """A row's photo problems in one line: `marketplace withheld: photo too small: ...`."""
    return "; ".join(f"{p.get('rendition')} withheld: {p.get('why')}" for p in r.get("photo_problems") or [])


def _img(run_dir: Path, out_root: Path, record_rel: str | None, thumb: str | None) -> str:
    if not record_rel or not thumb:
        return ""
    target = (out_root / record_rel).parent / thumb
    if not target.is_file():
        return ""
    src = html.escape(os.path.relpath(target, run_dir))
    return f'<img loading="lazy" src="{src}" alt="">'


def _marked(img: str, marks: dict[str, Any] | None, which: str) -> str:
    """A thumbnail with the row's `marks` (`ops.triage.review_marks`) on `which` image ("photo" or
    "canvas": boxes x0, y0, x1, y1 in that image's pixels) outlined over it: where the reasons say
    to look. A box is drawn at least 4% of the image's longer side, so a 7 px hook on a 1024 px
    canvas still shows on a thumbnail."""
    boxes = (marks or {}).get(which) or []
    w, h = (marks or {}).get(f"{which}_size") or (0, 0)
    if not img or not boxes or w <= 0 or h <= 0:
        return img
    least = 0.04 * max(w, h)
    rects = []
    for x0, y0, x1, y1 in boxes:
        bw, bh = max(x1 - x0, least), max(y1 - y0, least)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        rects.append(f'<rect x="{cx - bw / 2:.0f}" y="{cy - bh / 2:.0f}" width="{bw:.0f}" height="{bh:.0f}"/>')
    return (f'<span class="mark">{img}<svg viewBox="0 0 {w} {h}" preserveAspectRatio="none">'
            f'{"".join(rects)}</svg></span>')


# The HTML report lists rows grouped by verdict, worst first (failed rows have none), one pass
# over the rows per group so a streamed result log is never held in memory.
VERDICT_GROUPS = ("reject", None, "review", "pass")


def _stopped(meta: dict[str, Any], esc: Callable[[Any], str]) -> str:
    """The banner of a stopped run: why, when, and how many SKUs it did not do."""
    stop = meta.get("stop")
    if meta.get("state") != "stopped" or not stop:
        return ""
    abandoned = f" ({len(stop['abandoned'])} abandoned in progress)" if stop.get("abandoned") else ""
    return (f"<p class='stopped'><b>Stopped</b> ({esc(stop['reason'])}) at {esc(stop['requested_at'])}: "
            f"{len(stop['not_done'])} SKU(s) not done{abandoned}, marked <i>stopped</i> below. "
            "Run the same command again to stage them.</p>\n")


def _cost_table(cost: dict[str, Any] | None, esc: Callable[[Any], str]) -> str:
    """The "Cost and time per stage" table: each stage's time over the staged rows, its share of
    all stage time and its cost; then the run's cost and the cost per SKU (ops.cost)."""
    if not cost:
        return ""
    cur = cost["currency"]
    rows = "".join(f"<tr><td>{esc(s['stage'])}</td><td class='n'>{s['ms'] / 1000:.2f}</td>"
                   f"<td class='n'>{100 * s['share']:.1f}%</td><td class='n'>{esc(money(s['cost'], cur))}</td></tr>\n"
                   for s in cost["stages"])
    rows += "".join(f"<tr><td>API: {esc(name)}</td><td></td><td></td><td class='n'>{esc(money(v, cur))}</td></tr>\n"
                    for name, v in cost.get("api", {}).items())
    per = cost["per_sku"]
    return (f"<h2>Cost and time per stage</h2>\n<p>Run cost: <b>{esc(money(cost['total'], cur))}</b> for "
            f"{cost['priced_rows']} staged SKU(s) &middot; per SKU: median {esc(money(per['median'], cur))}, "
            f"p90 {esc(money(per['p90'], cur))}, mean {esc(money(per['mean'], cur))} &middot; "
            f"{cost['unpriced_rows']} row(s) not staged (unchanged, held or stopped) cost nothing</p>\n"
            "<table class='cost'><thead><tr><th>stage</th><th>time (s)</th><th>share</th><th>cost</th></tr></thead>"
            f"<tbody>\n{rows}</tbody></table>\n<h2>Products</h2>\n")


def _link(run_dir: Path, out_root: Path, output: str | None, inner: str) -> str:
    """`inner` (a thumbnail) as a link to the published image, when there is one."""
    if not inner or not output:
        return inner
    return f'<a href="{html.escape(os.path.relpath(out_root / output, run_dir))}">{inner}</a>'


def _review_queue(run_dir: Path, out_root: Path, summary: dict[str, Any], results: Results,
                  esc: Callable[[Any], str]) -> Iterator[str]:
    """The review queue grouped by the check behind each reason (`ops.triage`): the groups most
    severe first, then the most common; each lists its SKUs with that check's reasons, the others
    as `also`, and the thumbnails with the places the reasons name outlined (`_marked`). A SKU with
    reasons from two checks is in both groups. One pass over the rows per group, so a streamed
    result log is never held in memory."""
    groups = summary.get("review_by_check") or []
    if not groups:
        return
    total = summary.get("by_verdict", {}).get("review", 0)
    index = ", ".join(f"<a href='#review-{i}'>{esc(g['check'])}</a>: {g['skus']}" for i, g in enumerate(groups))
    yield (f"<h2>Review queue: {total} SKU(s), by check</h2>\n<p class='groups'>Most severe first, then the most "
           f"common: {index}</p>\n")
    for i, g in enumerate(groups):
        decide = f"stage review approve --check {shlex.quote(g['check'])}"
        yield (f"<h3 id='review-{i}'>{esc(g['check'])}: {g['skus']} SKU(s)</h3>\n<p class='decide'>Looked "
               f"through them all? <code>{esc(decide)}</code> (or <code>reject</code> with <code>--reason</code>; "
               "<code>--out</code> as the run's) decides the group's SKUs no one has decided yet; one SKU: "
               "<code>stage review approve SKU</code>.</p>\n<table class='queue'><thead><tr>"
               "<th>row</th><th>SKU</th><th>before</th><th>after</th><th>reason</th></tr></thead><tbody>\n")
        for r in _rows(results):
            if r.get("verdict") != "review":
                continue
            by_check = grouped_reasons(r.get("reasons") or [])
            if g["check"] not in by_check:
                continue
            also = [c for c in by_check if c != g["check"]]
            marks = r.get("marks")
            before = _marked(_img(run_dir, out_root, r.get("record"), "layers/before.jpg"), marks, "photo")
            after = _link(run_dir, out_root, r.get("output"), _marked(
                _img(run_dir, out_root, r.get("record"), "layers/after.jpg") if r.get("output") else "", marks,
                "canvas"))
            note = f"<br><small>also: {esc(', '.join(also))}</small>" if also else ""
            yield (f"<tr class='review'><td>{r['row']}</td><td>{esc(r['sku'])}</td><td>{before}</td><td>{after}</td>"
                   f"<td>{esc('; '.join(by_check[g['check']]))}{note}</td></tr>\n")
        yield "</tbody></table>\n"


def _photo_problems(summary: dict[str, Any], results: Results, esc: Callable[[Any], str]) -> Iterator[str]:
    """Renditions withheld because the source photo cannot meet a channel rule, by class, then per
    SKU: a photo to replace, not an image to review (the SKU keeps its own verdict)."""
    lines = photo_lines(summary)
    if not lines:
        return
    yield ("<h2>Photo problems: renditions withheld</h2>\n<p>These channel renditions were not made: the source "
           "photo cannot meet the channel's rule, so no review could fix them (a larger photo does). Each SKU "
           "keeps its own verdict and its other images.</p>\n<ul class='photo'>"
           + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>\n<table class='photo'><thead><tr>"
           "<th>row</th><th>SKU</th><th>rendition</th><th>rule</th><th>measured</th><th>needed</th><th>why</th>"
           "</tr></thead><tbody>\n")
    for r in _rows(results):
        for p in r.get("photo_problems") or []:
            yield (f"<tr><td>{r['row']}</td><td>{esc(r['sku'])}</td><td>{esc(p.get('rendition'))} "
                   f"{esc(', '.join(p.get('formats') or []))}</td><td>{esc(p.get('rule'))}</td>"
                   f"<td class='n'>{esc(_figure(p, 'measured'))}</td><td class='n'>{esc(_figure(p, 'needed'))}</td>"
                   f"<td>{esc(p.get('why'))}</td></tr>\n")
    yield "</tbody></table>\n"


def _figure(problem: dict[str, Any], key: str) -> str:
    """A photo problem's measured or needed value; a fill as a share of the frame (66.6%)."""
    value = problem.get(key)
    if problem.get("rule") == "min_fill" and isinstance(value, (int, float)):
        return f"{value:.1%}"
    return "" if value is None else str(value)


def _html(run_dir: Path, out_root: Path, meta: dict[str, Any], summary: dict[str, Any],
          results: Results, catalog_errors: list[dict[str, Any]]) -> Iterator[str]:
    def esc(value: Any) -> str:
        return html.escape(printable(value))

    counts = ", ".join(f"{esc(str(k))}: {v}" for k, v in sorted(summary["by_status"].items()))
    yield f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Staging run {esc(meta['run_id'])}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:4px 8px;vertical-align:top}} img{{max-width:160px}}
tr.failed,tr.reject,tr.rejected{{background:#fde8e8}} tr.review{{background:#fff6db}}
tr.stopped{{background:#eef1f5}} td.n{{text-align:right}} p.stopped{{background:#fff6db;padding:8px}}
table.queue,table.photo{{margin-bottom:1em}} td small{{color:#666}} ul.photo li{{font-weight:600}}
span.mark{{position:relative;display:inline-block;line-height:0}}
span.mark svg{{position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none}}
span.mark rect{{fill:none;stroke:#e00000;stroke-width:2px;vector-effect:non-scaling-stroke}}
</style></head><body>
<h1>Staging run {esc(meta['run_id'])}</h1>
<p>Catalog: {esc(str(meta['catalog']))}<br>Started: {esc(meta['started_at'])} &middot;
Finished: {esc(meta.get('finished_at', ''))}<br>Rows: {summary['rows']} &middot; {counts}
&middot; invalid: {summary['invalid_rows']}<br>Verdicts: {", ".join(
    f"{k}: {summary['by_verdict'].get(k, 0)}" for k in ("pass", "review", "reject"))}</p>
{_stopped(meta, esc)}"""
    yield from _review_queue(run_dir, out_root, summary, results, esc)
    yield from _photo_problems(summary, results, esc)
    yield f"""{_cost_table(summary.get("cost"), esc) or "<h2>Products</h2>"}<table><thead><tr><th>row</th><th>SKU</th><th>result</th><th>before</th><th>after</th><th>reason</th></tr></thead>
<tbody>
"""
    for e in catalog_errors:
        yield (f"<tr class='failed'><td>{e['row']}</td><td>{esc(e['sku'])}</td><td>invalid</td>"
                    f"<td></td><td></td><td>{esc(e['reason'])}</td></tr>\n")
    for r in (r for group in VERDICT_GROUPS for r in _rows(results)
              if r.get("verdict") == group or (group is None and r.get("verdict") not in VERDICT_GROUPS)):
        reason = esc(r.get("error") or "; ".join(r.get("reasons") or []))
        if withheld := _withheld(r):
            reason += f"{'<br>' if reason else ''}<small>{esc(withheld)}</small>"
        before = _img(run_dir, out_root, r.get("record"), "layers/before.jpg")
        after = _img(run_dir, out_root, r.get("record"), "layers/after.jpg") if r.get("output") else ""
        cls = esc(r.get("verdict") or r["status"])
        yield (f"<tr class='{cls}'><td>{r['row']}</td><td>{esc(r['sku'])}</td>"
                    f"<td>{esc(r['status'])} {esc(r.get('verdict') or '')}</td><td>{before}</td><td>{after}</td>"
                    f"<td>{reason}</td></tr>\n")
    yield "</tbody></table></body></html>\n"
