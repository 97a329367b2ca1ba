"""The `stage` command with each product's staging made slower (`STAGE_TEST_SLOW_S` seconds more).

`python tests/flows/slow_stage.py run catalog.csv ...`: the tests of stopping a run need products
that are still in progress when a signal arrives. The staging itself is the real one.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import ops.runner  # noqa: E402
from flows.cli import main  # noqa: E402

_stage = ops.runner.stage


def slow_stage(*args, **kwargs):
    time.sleep(float(os.environ.get("STAGE_TEST_SLOW_S", "1")))
    return _stage(*args, **kwargs)


ops.runner.stage = slow_stage

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
