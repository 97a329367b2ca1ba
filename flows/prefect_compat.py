"""Work-around for a client/server mismatch in the pinned Prefect 3.8.8 + FastAPI 0.154."""

from __future__ import annotations

import functools
import sys
from typing import Any


def patch_worker_filter() -> None:
    from prefect.client.orchestration._work_pools.client import WorkPoolAsyncClient, WorkPoolClient

    for cls in (WorkPoolAsyncClient, WorkPoolClient):
        original = cls.read_workers_for_work_pool
        if getattr(original, "_staging_patched", False):
            continue

        @functools.wraps(original)
        def fixed(self: Any, work_pool_name: str, worker_filter: Any = None, offset: int | None = None,
                  limit: int | None = None, _original: Any = original) -> Any:
            return _original(self, work_pool_name, worker_filter, offset if offset is not None else 0,
                             limit if limit is not None else 200)

        fixed._staging_patched = True  # type: ignore[attr-defined]
        cls.read_workers_for_work_pool = fixed  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    """`python -m flows.prefect_compat deploy ...`: Prefect's CLI with the fix applied.

    `PrefectClient.read_workers_for_work_pool` sends `"limit": null, "offset": null`, which the
    server (under this FastAPI) refuses with 422. `prefect deploy` and `Flow.deploy` call it after
    creating each deployment (only to print a hint), so `prefect deploy --all` stops after the
    first deployment. `stage deploy` runs Prefect's own `deploy` command with the client sending
    explicit values instead; nothing else changes.
    """
    patch_worker_filter()
    from prefect.cli import app

    sys.argv = ["prefect", *argv]
    return app()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
