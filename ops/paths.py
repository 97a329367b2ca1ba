"""Every name in the output folder, built here and nowhere else: a SKU is data, never a path."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from stages.formats import EXTENSION

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 48
PRODUCTS = "products"
QUARANTINE = "quarantine"
LAYERS = "layers"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what a product publishes (withdrawn on a rejection)


def sku_slug(sku: str) -> str:
    """Readable prefix plus a hash of the exact SKU.

    The hash keeps names unique when two SKUs fold to the same prefix (case, look-alike
    characters, truncation) and on case-insensitive file systems.
    """
    folded = unicodedata.normalize("NFKD", sku).encode("ascii", "ignore").decode("ascii")
    stem = _UNSAFE.sub("-", folded).strip("-._")[:MAX_STEM].rstrip("-._") or "sku"
    digest = hashlib.sha256(sku.encode("utf-8")).hexdigest()[:10]
    return f"{stem}-{digest}"


def variant_stem(slug: str, variant: int) -> str:
    """The file stem of a variant's images: the slug for the first, `<slug>-v<n>` for the others."""
    return slug if variant == 0 else f"{slug}-v{variant}"


def image_name(stem: str, fmt: str) -> str:
    """A master image (`png`) or one of its format copies: <stem>.<ext>."""
    return f"{stem}.{EXTENSION[fmt]}"


def channel_name(stem: str, preset: str, fmt: str) -> str:
    """A channel rendition: <stem>.<preset>.<ext>."""
    return f"{stem}.{preset}.{EXTENSION[fmt]}"


def channel_layer(preset: str) -> str:
    """A channel rendition's product layer, relative to the product folder."""
    return f"{LAYERS}/{preset}/product.png"


@dataclass(frozen=True)
class ProductPaths:
    """Where one SKU's files live under the output folder."""

    out_root: Path
    slug: str

    @classmethod
    def of(cls, out_root: Path, sku: str) -> ProductPaths:
        return cls(out_root, sku_slug(sku))

    @property
    def folder(self) -> Path:
        return self.out_root / PRODUCTS / self.slug

    @property
    def record(self) -> Path:
        return self.folder / f"{self.slug}.json"

    @property
    def layers(self) -> Path:
        return self.folder / LAYERS

    @property
    def quarantine(self) -> Path:
        return self.out_root / QUARANTINE / self.slug

    def rel(self, path: Path) -> str:
        """`path` relative to the output folder, as results and the ledger name files."""
        return os.path.relpath(path, self.out_root)


def record_path(out_root: Path, slug: str) -> Path:
    return ProductPaths(out_root, slug).record
