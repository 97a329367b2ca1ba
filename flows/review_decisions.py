"""Reviewer decisions from the Prefect UI: approve or reject SKUs of the review queue, or forget the decisions."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Failed, State

from flows.nightly import config_for, flow_run_id
from ops import review
from ops.report import printable

Decision = Literal["approve", "reject", "reset"]
WHAT = {"approve": "approved: nightly runs keep its output as it is until its photo or row changes",
        "reject": "rejected: the next run withdraws its images until its photo or row changes",
        "reset": "decision forgotten: the next run stages it again"}


@flow(name="review-decisions")
def review_decisions(decision: Decision, reviewer: str, skus: list[str] | None = None, check: str | None = None,
                     reason: str = "", config: str | None = "config.toml",
                     out: str | None = None) -> dict[str, Any] | State:
    """Approve or reject SKUs of the review queue, or forget the decisions about them.

    Started from the Prefect UI (the `review` deployment: its typed parameters render as a form),
    the counterpart of `stage review approve|reject|reset` for a merchandiser who works from a
    run's artifacts (`staging-run-failures` lists the SKUs in review, with their reasons, and the
    run report shows them). The decisions go to the output location's run state, where the next
    runs read them, all in one write. A SKU that cannot be decided (no record, nothing published
    to approve) does not hold up the others: the flow run then ends Failed, naming it. The
    `review-decisions` table artifact lists what became of each SKU.

    Args:
        decision: approve (nightly runs keep the output as it is), reject (the next run withdraws it) or reset (forget the decision: the next run stages the SKU again).
        reviewer: Who decides (kept with each decision and shown in the run summary).
        skus: SKUs to decide about, exactly as in the catalog.
        check: To approve or reject a whole group of the review queue as well: every SKU waiting for review with a reason from this check (e.g. cropped, as `stage review list` and the run's artifacts name the groups) that no one has decided about yet.
        reason: Why; needed to reject (shown in the run summary), e.g. "logo visible on the wall".
        config: Path of config.toml (None: built-in defaults).
        out: Output folder or object-store URL; defaults to [run].output_dir of the config.
    """
    logger = get_run_logger()
    wanted = list(dict.fromkeys(s.strip() for s in skus or [] if s.strip()))
    group = (check or "").strip()
    if not wanted and not group:
        raise ValueError("skus: name at least one SKU, or a check whose group to decide")
    if not reviewer.strip():
        raise ValueError("reviewer: say who decides (it is kept with each decision)")
    done = review.apply_decision(config_for(config), out, decision, wanted, group, reason, reviewer.strip())
    if group:
        logger.info("%d SKU(s) with a reason from %s and no decision yet, or named", len(done.skus), printable(group))
    if decision == "reset":
        outcome = {sku: WHAT["reset"] if sku in done.forgotten else "no decision to forget" for sku in done.skus}
    else:
        outcome = ({e["sku"]: WHAT[decision] for e in done.stored}
                   | {sku: f"not decided: {exc}" for sku, exc in done.refused})
    for sku in done.skus:
        logger.info("SKU %r %s", printable(sku), outcome[sku])
    try:
        about = f"{decision} by {printable(reviewer)} in {done.output}"
        about += f": {printable(reason)}" if reason.strip() else ""
        create_table_artifact([{"sku": printable(s), "outcome": outcome[s]} for s in done.skus],
                              key="review-decisions", description=about)
    except Exception as exc:  # the decisions are stored; the table is a convenience
        logger.warning("could not create the review-decisions artifact: %s: %s", type(exc).__name__, exc)
    result = {"decision": decision, "reviewer": reviewer.strip(), "reason": reason.strip(), "output": done.output,
              "flow_run_id": flow_run_id(), "outcome": outcome}
    if done.refused:
        return Failed(message=f"{len(done.refused)} of {len(done.skus)} SKU(s) not decided: "
                              + "; ".join(f"{printable(s)}: {exc}" for s, exc in done.refused), data=result)
    return result
