"""Real model weights for the tests marked `models`: a folder named by $STAGE_TEST_MODELS.

The weights are not part of the project (`.ci/run` points the variable at ../shared/models when
that folder exists); without them these tests skip and say why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "STAGE_TEST_MODELS"


def weights_folder(*files: str) -> Path:
    """The folder of real weights holding `files`, or skip the calling test with the reason."""
    value = os.environ.get(ENV, "")
    if not value:
        pytest.skip(f"${ENV} is not set: it names a folder of real model weights ({', '.join(files)})")
    folder = Path(value)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        pytest.skip(f"${ENV}={folder} has no {', '.join(missing)}")
    return folder
