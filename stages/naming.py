"""Safe, unique file names for SKUs: a SKU is data, never a path."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 48


def sku_slug(sku: str) -> str:
    """Readable prefix plus a hash of the exact SKU.

    The hash keeps names unique when two SKUs fold to the same prefix (case, look-alike
    characters, truncation) and on case-insensitive file systems.
    """
    folded = unicodedata.normalize("NFKD", sku).encode("ascii", "ignore").decode("ascii")
    stem = _UNSAFE.sub("-", folded).strip("-._")[:MAX_STEM].rstrip("-._") or "sku"
    digest = hashlib.sha256(sku.encode("utf-8")).hexdigest()[:10]
    return f"{stem}-{digest}"
