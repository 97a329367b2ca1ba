"""The review queue grouped by check and photo problems by class: in the summary, report.html and
`stage review list`. Reasons are made by the code that writes them in a run, not typed here."""

from __future__ import annotations

import json

from ops.record import ChannelRendition
from ops.report import summarize, write_run_report
from ops.results_log import ResultLog
from ops.triage import Triage, grouped_reasons, order_groups, reason_check
from stages.check import CheckResult, verdict
from stages.selection import marginal


def _check(name: str, message: str, blocking: bool = False) -> CheckResult:
    return CheckResult(name, False, 0.0, "", message, blocking)


def _rendition(preset: str, fmt: str, checks: list[CheckResult], output: str | None = "x.jpg") -> ChannelRendition:
    return ChannelRendition(preset, fmt, output, [10, 10], None, {}, {}, [], checks, "review", [], {})


def test_every_reason_a_run_writes_maps_to_its_check():
    _, reasons = verdict([_check("matte_confidence", "low cut-out confidence: background not plain"),
                          _check("halo", "backdrop fringe on 40%: of the rim"), _check("nsfw", "score 0.6")])
    assert [reason_check(r) for r in reasons] == ["matte_confidence", "halo", "nsfw"]
    _, marginal_reasons = marginal("pass", [], 0.3, 0.5)
    assert [reason_check(r) for r in marginal_reasons] == ["quality"]
    fill = _rendition("marketplace", "jpeg", [_check("fill", "product spans 70.6% of the frame, below 85%")])
    webp = _rendition("marketplace", "webp", [_check("fill", "product spans 70.6% of the frame, below 85%")])
    gone = _rendition("banner", "png", [], output=None)
    assert {reason_check(r) for r in fill.problems() + webp.problems()} == {"rendition marketplace fill"}
    assert [reason_check(r) for r in gone.problems()] == ["rendition banner not published"]
    assert reason_check("rendition webp failed its checks and was not published") == "format copy webp not published"
    assert reason_check("something unforeseen") == "other"


def test_groups_are_ordered_by_severity_then_count():
    counts = {"rendition marketplace fill": 9, "halo": 2, "matte_confidence": 4, "nsfw": 1, "quality": 5,
              "stray_parts": 5, "a_new_check": 3}
    assert [g["check"] for g in order_groups(counts)] == [
        "nsfw",  # content safety first, even when rare
        "stray_parts", "matte_confidence", "a_new_check", "halo",  # the product itself; an unknown check sits here
        "rendition marketplace fill", "quality"]  # presentation last, most common first
    assert order_groups({"halo": 1})[0] == {"check": "halo", "skus": 1}


def _results():
    return [
        {"row": 2, "sku": "A", "status": "ok", "verdict": "review",
         "reasons": ["matte_confidence: low cut-out confidence", "halo: fringe on 30% of the rim",
                     "halo: fringe again"], "record": None, "output": None},
        {"row": 3, "sku": "B", "status": "ok", "verdict": "review", "reasons": ["halo: fringe on 50% of the rim"],
         "record": None, "output": None},
        {"row": 4, "sku": "C", "status": "ok", "verdict": "pass", "reasons": [], "record": None, "output": None,
         "photo_problems": [{"rendition": "marketplace", "rule": "min_fill", "measured": 0.7, "needed": 0.85,
                             "why": "photo too small: the product is 200x260 px in the photo", "formats": ["jpeg"]}]},
        {"row": 5, "sku": "D", "status": "cached", "verdict": "review",
         "reasons": ["rendition marketplace jpeg no_text: 1 text-like mark(s)"], "record": None, "output": None,
         "photo_problems": [{"rendition": "banner", "rule": "min_fill", "measured": 0.5, "needed": 0.6,
                             "why": "photo too small", "formats": ["png"]}]},
        {"row": 6, "sku": "E", "status": "rejected", "verdict": "reject", "reasons": ["nsfw: score 0.97"],
         "record": None, "output": None},
    ]


def test_summary_counts_review_skus_per_check_and_photo_problems_per_class(tmp_path):
    s = summarize(_results(), [])
    assert s["by_verdict"] == {"review": 3, "pass": 1, "reject": 1}  # photo problems change no verdict
    # a SKU counts once per check, however many of its reasons come from it; rejects are not in the queue
    assert s["review_by_check"] == [{"check": "halo", "skus": 2}, {"check": "matte_confidence", "skus": 1},
                                    {"check": "rendition marketplace no_text", "skus": 1}]
    assert s["photo_problems"] == [
        {"rendition": "banner", "rule": "min_fill", "label": "photo too small for banner", "skus": 1},
        {"rendition": "marketplace", "rule": "min_fill", "label": "photo too small for marketplace", "skus": 1}]
    log = ResultLog(tmp_path / "log.jsonl")  # the streamed log of a real run gives the same figures
    log.append(_results())
    streamed = log.summary([])
    assert (streamed["review_by_check"], streamed["photo_problems"]) == (s["review_by_check"], s["photo_problems"])
    log.close()
    triage = Triage()
    triage.add({"row": 1, "sku": "X", "status": "ok", "verdict": "pass"})  # results from before: no such keys
    assert triage.summary() == {"review_by_check": [], "photo_problems": []}


def test_report_lists_the_review_queue_by_check_and_the_photo_problems(tmp_path):
    meta = {"run_id": "r1", "catalog": "c.csv", "started_at": "s", "finished_at": "f"}
    paths = write_run_report(tmp_path / "run", tmp_path, meta, _results(), [])
    html = paths["html"].read_text()
    queue = html[html.index("Review queue: 3 SKU(s), by check"):html.index("Photo problems: renditions withheld")]
    # groups in order, each with its SKUs and that check's reasons; the other checks as "also"
    halo, matte, text = (queue.index(f"{c}: {n} SKU(s)</h3>") for c, n in
                         (("halo", 2), ("matte_confidence", 1), ("rendition marketplace no_text", 1)))
    assert halo < matte < text
    halo_part = queue[halo:matte]
    assert "<td>A</td>" in halo_part and "<td>B</td>" in halo_part and "also: matte_confidence" in halo_part
    assert "halo: fringe on 30% of the rim; halo: fringe again" in halo_part and "low cut-out" not in halo_part
    # how to decide a group once a person has looked through it, quoted for a shell
    assert "<code>stage review approve --check halo</code>" in halo_part
    assert "<code>stage review approve --check &#x27;rendition marketplace no_text&#x27;</code>" in queue[text:]
    assert "<td>E</td>" not in queue  # a reject is not waiting for review
    photo = html[html.index("Photo problems: renditions withheld"):html.index("<h2>Products</h2>")]
    assert "photo too small for marketplace: 1 SKU<" in photo and "photo too small for banner: 1 SKU<" in photo
    assert "<td>C</td>" in photo and "200x260 px in the photo" in photo
    products = html[html.index("<h2>Products</h2>"):]
    assert "marketplace withheld: photo too small" in products  # beside the row's verdict, not as a reason
    csv_rows = paths["csv"].read_text().splitlines()
    assert csv_rows[0].endswith(",photo_problems") and "marketplace withheld: photo too small" in csv_rows[3]
    summary = json.loads(paths["json"].read_text())["summary"]
    assert summary["photo_problems"][1]["label"] == "photo too small for marketplace"


def test_report_without_review_or_photo_problems_has_neither_section(tmp_path):
    meta = {"run_id": "r1", "catalog": "c.csv", "started_at": "s", "finished_at": "f"}
    results = [{"row": 2, "sku": "A", "status": "ok", "verdict": "pass", "reasons": [], "record": None,
                "output": None}]
    html = write_run_report(tmp_path / "run", tmp_path, meta, results, [])["html"].read_text()
    assert "Review queue" not in html and "Photo problems" not in html and "<h2>Products</h2>" in html


def test_review_list_prints_the_queue_grouped_by_check():
    from flows.review_cli import grouped_lines

    items = [{"sku": r["sku"], "verdict": r["verdict"], "reasons": r["reasons"], "output": r["output"],
              "photo_problems": r.get("photo_problems") or [], "decision": None} for r in _results()]
    lines = grouped_lines(items, str)
    heads = [line for line in lines if line.startswith("# ")]
    assert heads == ["# nsfw: 1 SKU(s)", "# halo: 2 SKU(s)", "# matte_confidence: 1 SKU(s)",
                     "# rendition marketplace no_text: 1 SKU(s)", "# no review reason: 1 SKU(s)"]
    a_under_halo = lines[lines.index("# halo: 2 SKU(s)") + 1]
    assert a_under_halo.startswith("A\treview\t") and a_under_halo.endswith(
        "halo: fringe on 30% of the rim; halo: fringe again (also: matte_confidence)")
    assert lines[-1].startswith("C\tpass") and "[rendition withheld: photo too small for marketplace]" in lines[-1]
    assert grouped_reasons([]) == {}


def test_a_hanger_left_on_a_garment_is_grouped_with_the_product_itself():
    """The hanger check's reason, as the check writes it, groups as `hanger`, in the product tier:
    before presentation (framing), after content (nsfw)."""
    from stages.check.hangers import HangerOptions, Hangers, ThinPart, hanger_check

    found = Hangers(True, "", [ThinPart("hook", 500, 90, (480, 90, 40, 80), 6.0, 0.12, 0.0)], (300, 170, 400, 600))
    _, reasons = verdict([hanger_check(found, HangerOptions())])
    assert [reason_check(r) for r in reasons] == ["hanger"]
    order = [g["check"] for g in order_groups({"framing": 9, "hanger": 1, "nsfw": 1})]
    assert order == ["nsfw", "hanger", "framing"]


def test_the_review_queue_outlines_where_the_reasons_say_to_look(tmp_path, write_catalog, repo, dev_keys):
    """Staged for real: the beige loafers (their cut-out's torn heel rim and the backdrop cut away
    between the shoes, boxes on the photo) and the light shirt on a hanger (a stray part, kept
    backdrop and hooks, boxes on the canvas); a passing SKU's thumbnails carry no marks. The
    marks travel in the row's result, so the report reads no record."""
    import re

    from ops.catalog import read_catalog
    from ops.config import load_config
    from ops.context import RunContext
    from ops.runner import process_row
    from ops.triage import review_marks
    from ops.workbench import Workbench

    write_catalog(tmp_path, "sku,image,title,category",
                  "LOAF-1,20_shoes_beige-loafers_on-beige-floor.jpg,Loafers,shoes",
                  "SHIRT-2,34_apparel_light-shirt-on-hanger_white-wall.jpg,Shirt,apparel",
                  "SHOE-3,19_shoes_black-suede_white.jpg,Shoes,shoes")
    (tmp_path / "config.toml").write_text((repo / "config.toml").read_text(encoding="utf-8"), encoding="utf-8")
    cfg = load_config(tmp_path / "config.toml", {"renditions": {"active": []}})
    bench, out = Workbench.build(cfg), tmp_path / "out"
    results = [process_row(bench, r, RunContext(out, "run-1")).to_dict()
               for r in read_catalog(tmp_path / "catalog.csv").rows]
    assert [r["verdict"] for r in results] == ["review", "review", "pass"]
    records = [json.loads((out / r["record"]).read_text()) for r in results]
    assert [r["marks"] for r in results] == [review_marks(rec) for rec in records]  # carried in the result
    loafers, shirt, shoes = (r["marks"] for r in results)
    where = records[0]["matte_details"]["where"]
    assert sorted(where) == ["joined_backdrop", "ragged_edge"]
    assert loafers == {"photo": [where["joined_backdrop"], where["ragged_edge"]], "photo_size": [400, 534],
                       "canvas": [], "canvas_size": [1024, 1024]}
    x0, y0, x1, y1 = where["ragged_edge"]  # the left shoe's heel, in the photo's pixels
    assert 60 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 120
    leftovers = records[1]["variants"][0]["guards"]["leftovers"]
    hooks = records[1]["variants"][0]["guards"]["hangers"]["parts"]
    assert len(shirt["canvas"]) == len(leftovers["strays"]) + len(leftovers["regions"]) + len(hooks) >= 3
    x, y, w, h = leftovers["strays"][0]["box"]
    assert [x, y, x + w, y + h] in shirt["canvas"]
    assert shoes is None  # a pass has nothing to mark
    again = process_row(bench, read_catalog(tmp_path / "catalog.csv").rows[0], RunContext(out, "run-2"))
    assert again.status == "cached" and again.marks == loafers  # an unchanged SKU keeps its marks

    meta = {"run_id": "r1", "catalog": "c.csv", "started_at": "s", "finished_at": "f"}
    html = write_run_report(tmp_path / "run", out, meta, results, [])["html"].read_text()
    queue = html[html.index("Review queue"):html.index("<h2>Products</h2>")]
    svgs = re.findall(r'<svg viewBox="0 0 (\d+) (\d+)"[^>]*>(.*?)</svg>', queue)
    # the loafers' photo (400 x 534) with its two boxes; the shirt's canvas (1024 x 1024) with its parts
    assert ("400", "534") in [(w, h) for w, h, _ in svgs] and ("1024", "1024") in [(w, h) for w, h, _ in svgs]
    photo_rects = next(r for w, h, r in svgs if (w, h) == ("400", "534"))
    assert photo_rects.count("<rect") == 2
    assert "<svg" not in html[html.index("<h2>Products</h2>"):]  # the full product list stays plain
