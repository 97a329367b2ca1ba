"""How the run treats a failure: expected (the row fails with its reason) or a bug, and transient
(tried again) or not."""

from __future__ import annotations

import errno

from provenance.errors import SigningError
from stages.errors import StagingError


class TransientError(Exception):
    """Mixed into errors whose cause may pass (a network timeout, HTTP 503): the row is tried again."""


class CatalogError(StagingError):
    """The catalog file as a whole is unusable (missing columns, unreadable, empty)."""


# Raised on purpose, with a message fit for the run report; anything else is a bug and is logged.
EXPECTED: tuple[type[Exception], ...] = (StagingError, SigningError)

# Operating-system faults that another try can get past (a busy file, an interrupted call).
_TRANSIENT_TYPES = (BlockingIOError, InterruptedError, TimeoutError, ConnectionResetError,
                    ConnectionAbortedError, BrokenPipeError)
_TRANSIENT_ERRNO = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT}


def is_transient(exc: BaseException) -> bool:
    """Whether trying the row again may succeed, decided by the error's type (and an OS error's errno).

    Bad photos, signing or model errors, a full disk and bugs are not transient: they would fail
    the same way, and a rerun retries every failed row anyway (done rows are cached)."""
    if isinstance(exc, (TransientError, *_TRANSIENT_TYPES)):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNO
