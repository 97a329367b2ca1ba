"""Products in an object-store output: publishing a staged product folder, the remote cache test, withdrawals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from ops.atomic import write_bytes
from ops.cache import current_record
from ops.objectstore import Store, StoreError, open_store
from ops.paths import IMAGE_SUFFIXES, LAYERS, PRODUCTS, QUARANTINE, ProductPaths


def listed_files(record: dict[str, Any]) -> list[str]:
    """Every file a product record names, relative to its folder: the variants' images and format
    copies, the channel renditions and their product layers, the audit layers and thumbnails."""
    names: list[str | None] = [record.get("output"), record.get("product_layer"), record.get("matte"),
                               record.get("mask"), record.get("depth"), record.get("shadow")]
    names += list((record.get("thumbnails") or {}).values())
    for v in record.get("variants") or []:
        names += [v.get("output")] + [c.get("output") for c in v.get("format_copies") or []]
    names += [c.get("output") for c in record.get("format_copies") or []]
    for r in record.get("renditions") or []:
        names += [r.get("output"), r.get("product_layer")]
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and n))


def _folder(slug: str) -> str:
    return f"{PRODUCTS}/{slug}/"


def publish_product(store: Store, out_root: Path, slug: str, quarantined: list[str] | None = None) -> int:
    """Upload a product staged in the scratch folder `out_root`; returns the bytes uploaded.

    Order, so that a reader of the store never sees a product half-published: the held-back
    images of this staging (`quarantined`: paths relative to `out_root`) with their records,
    then every file the new record lists (each a verified whole-object upload, `Store.put`: the
    bytes that passed the pixel and credential checks), then the record; only then are the
    product's objects that the record no longer lists deleted (a variant now held back, a
    rendition dropped from the config, a withdrawn image). A failure stops the sequence before
    the record, so the store keeps the previous record (and the product is staged again by the
    next run, whose cache test reads that record).
    """
    paths = ProductPaths(out_root, slug)
    for rel in quarantined or []:
        image = out_root / rel
        if image.parent.parent.name != QUARANTINE or image.parent.name != slug:
            raise ValueError(f"{rel}: not in the quarantine folder of {slug}")
        store.put(f"{QUARANTINE}/{slug}/{image.name}", image.read_bytes())
        sidecar = image.with_suffix(".json")
        if sidecar.is_file():
            store.put(f"{QUARANTINE}/{slug}/{sidecar.name}", sidecar.read_bytes())
    record_bytes = paths.record.read_bytes()
    names = listed_files(json.loads(record_bytes))
    files = {_folder(slug) + name: (paths.folder / name).read_bytes() for name in names}
    store.put_all(files, _folder(slug))
    store.put(_folder(slug) + paths.record.name, record_bytes)
    keep = {*files, _folder(slug) + paths.record.name}
    store.delete(sorted(set(store.listing(_folder(slug))) - keep))
    return sum(map(len, files.values())) + len(record_bytes)


def withdraw_product(store: Store, slug: str) -> list[str]:
    """A reviewer's rejection on an object-store output: the product's published images (not its
    layers or record) are copied to `quarantine/<slug>/` (server-side) and then deleted from
    `products/<slug>/`; returns their names. Like `ops.review.withdraw` for a folder."""
    moved = []
    for rel in sorted(store.listing(_folder(slug))):
        name = rel[len(_folder(slug)):]
        if "/" in name or not name.startswith(slug) or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        store.copy(rel, f"{QUARANTINE}/{slug}/{name}")
        moved.append(name)
    store.delete(_folder(slug) + n for n in moved)
    return moved


def remote_record(store: Store, slug: str, key: str, present: Callable[[str], bool] | None = None) -> dict[str, Any] | None:
    """The cache test of `ops.cache.cached_record` against the store: the product's record when it
    was made with cache key `key` by the configured scene backend and every file it published is
    in the store; else None. One GET of the record and one listing of the product's folder
    (`present`, over names relative to the output URL, replaces the listing when the caller has
    one), never the images themselves: a worker with an empty scratch folder skips what another
    worker (or an earlier run) finished."""
    record = store.get_json(_folder(slug) + f"{slug}.json")
    if record is None:
        return None
    if present is None:
        have = store.listing(_folder(slug))
        present = have.__contains__
    return current_record(record, key, lambda name: present(_folder(slug) + name))


def upload_tree(store: Store, local: Path, prefix: str) -> int:
    """Upload every file under the local folder `local` to `prefix/...` (a run report); returns the count.
    `summary.json`, which tells the report is complete, goes last."""
    files = sorted((p for p in local.rglob("*") if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: (p.name == "summary.json", str(p)))
    for p in files:
        store.put(f"{prefix}/{p.relative_to(local).as_posix()}", p.read_bytes())
    return len(files)


class RemoteOutputs:
    """What a run's pre-pass knows of an object-store output: one listing of `products/`, taken
    when the run starts (a paged listing: about one request per 1,000 objects, not one per
    file per SKU)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.objects = store.listing(PRODUCTS + "/")

    def exists(self, rel: str) -> bool:
        """Whether the object `rel` (relative to the output URL) was there when the run started."""
        return rel in self.objects

    def record(self, slug: str, key: str) -> dict[str, Any] | None:
        """`remote_record` with the run's listing (one GET: the record)."""
        if f"{PRODUCTS}/{slug}/{slug}.json" not in self.objects:
            return None
        try:
            return remote_record(self.store, slug, key, self.exists)
        except StoreError:
            return None


def signed_objects(url: str, endpoint_url: str = "", region: str = "") -> list[tuple[str, bytes | None, str]]:
    """The signed images at an object URL (`stage verify s3://...`): the object itself when `url`
    names an image, else every image under the prefix `url` except the unsigned audit layers
    (`layers/`). Each as (its URL, its bytes or None, why it could not be read)."""
    store = open_store(url, endpoint_url, region)
    if PurePosixPath(store.root).suffix.lower() in IMAGE_SUFFIXES:
        names = [store.root]
    else:
        try:
            found = store.fs.find(store.root, detail=False)
        except FileNotFoundError:
            found = []
        except Exception as exc:
            return [(store.url, None, f"cannot list: {type(exc).__name__}: {exc}")]
        cut = len(store.root) + 1
        names = [n for n in sorted(found) if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES
                 and f"/{LAYERS}/" not in "/" + n[cut:]]
        if not names:
            return [(store.url, None, "no images under this URL")]
    out: list[tuple[str, bytes | None, str]] = []
    for name in names:
        shown = f"{store.scheme}://{name}"
        try:
            out.append((shown, store.fs.cat_file(name), ""))
        except Exception as exc:
            out.append((shown, None, f"unreadable: {type(exc).__name__}: {exc}"))
    return out


def mirror_records(store: Store, out_root: Path, slugs: list[str] | None = None, with_output: bool = False) -> int:
    """Bring the store's product records into the scratch folder `out_root`, for the commands that
    read records (`stage review` on an object-store output); returns how many were copied.

    `slugs`: only these products (default: every product, by one listing and concurrent reads);
    a scratch record whose product has no record in the store any more is removed. `with_output`:
    also the image each record names as its output (an approval checks it exists).
    """
    listing = store.listing(PRODUCTS + "/") if slugs is None else None
    if slugs is None:
        assert listing is not None
        slugs = sorted({rel.split("/")[1] for rel in listing
                        if rel.count("/") == 2 and rel.endswith(".json") and rel.split("/")[2] == rel.split("/")[1] + ".json"})
        local = out_root / PRODUCTS
        for stale in (local.glob("*/*.json") if local.is_dir() else []):
            if stale.stem == stale.parent.name and stale.stem not in slugs:
                stale.unlink(missing_ok=True)
    wanted = {slug: f"{PRODUCTS}/{slug}/{slug}.json" for slug in slugs}
    try:
        got = store.fs.cat([store.path(rel) for rel in wanted.values()], on_error="return")
    except Exception as exc:
        raise StoreError(f"reading records under {store.url} failed: {type(exc).__name__}: {exc}") from exc
    copied = 0
    for slug, rel in wanted.items():
        data = got.get(store.path(rel))
        paths = ProductPaths(out_root, slug)
        if not isinstance(data, bytes):
            paths.record.unlink(missing_ok=True)  # not in the store (any more)
            continue
        write_bytes(paths.record, data)
        copied += 1
        if with_output:
            try:
                output = json.loads(data).get("output")
            except (ValueError, AttributeError):
                output = None
            if output and (image := store.get(f"{PRODUCTS}/{slug}/{output}")) is not None:
                write_bytes(paths.folder / output, image)
    return copied
