"""What provenance raises on purpose."""

from __future__ import annotations


class SigningError(Exception):
    """Content credentials could not be made or read back, or the signing material is unusable."""
