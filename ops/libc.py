"""The C library of this process (Linux), for the calls Python's standard library does not wrap."""

from __future__ import annotations

import ctypes
import sys
from functools import cache
from typing import Any


@cache
def libc() -> Any:
    """This process's C library (ctypes, errno kept), or None off Linux or where it cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
