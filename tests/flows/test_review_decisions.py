"""The review flow: decisions from the Prefect UI land in the run state where the next runs read them."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client

from flows.review_decisions import review_decisions
from ops import review
from ops.catalog import read_catalog
from ops.config import load_config
from ops.context import RunContext


@pytest.fixture(scope="module")
def staged(tmp_path_factory, write_catalog, repo, dev_keys):
    from ops.runner import process_row
    from ops.workbench import Workbench

    tmp = tmp_path_factory.mktemp("review-flow")
    write_catalog(tmp, "sku,image,title,category,scene_prompt,seed",
                  "SHOE-1,19_shoes_black-suede_white.jpg,Shoes,shoes,warm sand backdrop,1",
                  "CAP-2,27_hat_leather-cap_on-white-sheet.jpg,Cap,hats,warm sand backdrop,2",
                  "DRESS-3,26_apparel_black-dress_on-white-sheet.jpg,Dress,dresses,warm sand backdrop,3")
    config = tmp / "config.toml"
    config.write_text('[layout]\nwidth = 256\nheight = 256\n[renditions]\nactive = []\n', encoding="utf-8")
    bench = Workbench.build(load_config(config))
    out = tmp / "out"
    rows = read_catalog(tmp / "catalog.csv").rows
    done = {r.sku: process_row(bench, r, RunContext(out, "run-1")) for r in rows}
    assert all(d.status == "ok" for d in done.values())
    assert done["DRESS-3"].verdict == "review" and done["DRESS-3"].reasons[0].startswith("cropped: ")  # the photo cuts it
    return out, config, [r for r in rows if r.sku != "DRESS-3"], bench


def _decisions(out):
    return {e["sku"]: (e["decision"], e["by"], e["reason"]) for e in review.load_state(out).values()}


def test_the_flow_stores_decisions_that_the_next_run_keeps(staged):
    from ops.runner import process_row

    out, config, rows, bench = staged
    args = {"config": str(config), "out": str(out), "reviewer": "ana"}
    done = review_decisions(skus=["SHOE-1", "SHOE-1"], decision="approve", **args)
    assert done["outcome"] == {"SHOE-1": "approved: nightly runs keep its output as it is until its photo or row "
                                         "changes"}
    state = review_decisions(skus=["CAP-2", "GHOST"], decision="reject", reason="logo on the wall",
                             return_state=True, **args)
    assert state.is_failed() and "1 of 2 SKU(s) not decided: GHOST: SKU 'GHOST' has no record" in state.message
    assert _decisions(out) == {"SHOE-1": ("approved", "ana", ""), "CAP-2": ("rejected", "ana", "logo on the wall")}
    run_id = str(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        [table] = client.request("POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}
                                 ).json()
    assert table["key"] == "review-decisions"
    assert "reject by ana" in table["description"] and "logo on the wall" in table["description"]
    assert {r["sku"]: r["outcome"][:12] for r in json.loads(table["data"])} == {"CAP-2": "rejected: th",
                                                                             "GHOST": "not decided:"}

    again = {r.sku: process_row(bench, r, RunContext(out, "run-2", force=True)) for r in rows}
    assert again["SHOE-1"].status == "cached" and "approved by ana" in again["SHOE-1"].reasons[0]
    assert again["CAP-2"].status == "rejected" and "logo on the wall" in again["CAP-2"].reasons[0]

    forgot = review_decisions(skus=["CAP-2", "SHOE-1", "GHOST"], decision="reset", **args)
    assert forgot["outcome"]["GHOST"] == "no decision to forget" and _decisions(out) == {}


def test_a_group_of_the_queue_is_decided_by_its_check_from_the_ui_and_the_command_line(staged, capsys):
    """Only the SKUs of the group that no one has decided about yet: a reviewer's earlier decision
    about one of them stands."""
    from flows.cli import main

    out, config, _, _ = staged
    where = ["--config", str(config), "--out", str(out)]
    args = {"config": str(config), "out": str(out), "reviewer": "ana"}
    review_decisions(skus=["DRESS-3"], decision="reject", reason="hem cut off", **args)
    assert main(["review", "approve", "--check", "cropped", *where]) == 0  # DRESS-3 is decided already
    assert "no SKU waiting for review with a reason from cropped is undecided" in capsys.readouterr().err
    review_decisions(skus=["DRESS-3"], decision="reset", **args)
    done = review_decisions(decision="approve", check="cropped", **args)
    assert list(done["outcome"]) == ["DRESS-3"] and _decisions(out)["DRESS-3"] == ("approved", "ana", "")
    review_decisions(skus=["DRESS-3"], decision="reset", **args)
    assert main(["review", "reject", "SHOE-1", "--check", "cropped", "--reason", "too dark", *where]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["SHOE-1", "DRESS-3"]
    assert {s: d[0] for s, d in _decisions(out).items()} == {"SHOE-1": "rejected", "DRESS-3": "rejected"}
    assert main(["review", "reset", "SHOE-1", "DRESS-3", *where]) == 0
    with pytest.raises(Exception, match="a group is approved or rejected"):
        review_decisions(decision="reset", check="cropped", **args)


@pytest.mark.parametrize("bad, match", [
    ({"skus": [" "]}, "at least one SKU, or a check"),
    ({"reviewer": " "}, "who decides"),
    ({"decision": "reject"}, "a rejection needs a reason"),
    ({"decision": "maybe"}, "decision"),
])
def test_bad_parameters_are_refused_before_anything_is_decided(staged, bad, match):
    out, config, _, _ = staged
    args = {"skus": ["SHOE-1"], "decision": "approve", "reviewer": "ana", "config": str(config), "out": str(out)}
    before = _decisions(out)
    with pytest.raises(Exception, match=match):
        review_decisions(**{**args, **bad})
    assert _decisions(out) == before
