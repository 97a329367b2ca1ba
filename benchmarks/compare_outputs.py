"""Compare two output folders product by product: decoded pixels of every image, and records.

Used to show that a change of code did not change what the pipeline makes: run the same catalog
with the old and the new code into two folders, then

    .venv/bin/python benchmarks/compare_outputs.py OLD_OUT NEW_OUT [--renames pipeline-0.1]

Every image under `products/` (staged images, format copies, channel renditions, layers,
thumbnails) is decoded and compared pixel for pixel; the file names in each product folder must
match. Records are compared after dropping what differs between any two runs (run id,
timestamps, timings) and what follows from the version and the config's layout (the pipeline
version, the config digest and cache keys hashed from them, signed file sizes), after applying a named set
of renames to the old record (`RENAMES`). Everything that still differs is listed. Exit code 0
when nothing differs. The last line is `identical_products=N/M`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# Keys dropped anywhere in a record: they differ between any two runs of the same inputs.
RUN_KEYS = ("run_id", "created_at", "timings_ms", "cost")  # cost: priced from timings_ms
# What follows from the pipeline version and the config's layout: hashes of them, and the size of a
# signed file (its manifest names the version and the backends).
DERIVED: list[tuple[str, ...]] = [("pipeline_version",), ("config_digest",), ("cache_key",),
                                  ("renditions", "*", "bytes")]


def _backend(old: str, new: str):
    return lambda v: new if v == old else v


# Named sets of renames from an older record layout to the current one: (path, action). A path is
# a tuple of keys, "*" for every item of a list; the action renames the key ("key": new name),
# maps the value (a function) or deletes it (None).
RENAMES: dict[str, list[tuple[tuple[str, ...], Any]]] = {
    "pipeline-0.1": [
        (("renditions",), "format_copies"),  # [write] renditions -> format_copies
        (("variants", "*", "renditions"), "format_copies"),
        (("channel_renditions",), "renditions"),  # channel renditions are `renditions`
        (("backends", "matte"), _backend("studio", "plain-backdrop")),
        (("backends", "scene"), _backend("studio", "procedural")),
        (("renditions", "*", "scene", "backend"), _backend("studio", "procedural")),
        (("matte_details", "review"), None),  # the same as the matte_confidence check: not repeated
    ],
}


def _apply(obj: Any, path: tuple[str, ...], action: Any) -> None:
    if not path or obj is None:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for item in obj if isinstance(obj, list) else ():
            _apply(item, rest, action)
        return
    if not isinstance(obj, dict) or head not in obj:
        return
    if rest:
        _apply(obj[head], rest, action)
    elif action is None:
        del obj[head]
    elif isinstance(action, str):
        obj[action] = obj.pop(head)
    else:
        obj[head] = action(obj[head])


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in RUN_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def normalise(record: dict[str, Any], renames: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """The record without run-specific and derived keys, with `renames` applied (in order)."""
    out = copy.deepcopy(record)
    for path, action in renames:
        _apply(out, path, action)
    for path in DERIVED:
        _apply(out, path, None)
    return _strip(out)


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Every path where two JSON values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{where}.{k}: only in new ({json.dumps(b[k])[:120]})")
            elif k not in b:
                out.append(f"{where}.{k}: only in old ({json.dumps(a[k])[:120]})")
            else:
                out += differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"]


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA", "PA") else im.mode))


def compare_product(old: Path, new: Path, renames: list[tuple[tuple[str, ...], Any]]) -> tuple[int, list[str]]:
    """(images compared, differences) for one product folder."""
    problems: list[str] = []
    old_files = {p.relative_to(old) for p in old.rglob("*") if p.is_file()}
    new_files = {p.relative_to(new) for p in new.rglob("*") if p.is_file()}
    for rel in sorted(old_files ^ new_files):
        problems.append(f"{rel}: only in {'old' if rel in old_files else 'new'}")
    images = 0
    for rel in sorted(old_files & new_files):
        if rel.suffix.lower() in IMAGE_SUFFIXES:
            images += 1
            a, b = decoded(old / rel), decoded(new / rel)
            if a.shape != b.shape:
                problems.append(f"{rel}: {a.shape} != {b.shape}")
            elif not np.array_equal(a, b):
                diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
                problems.append(f"{rel}: {int((diff.max(axis=-1) if diff.ndim == 3 else diff).astype(bool).sum())} "
                                f"pixels differ (max {int(diff.max())})")
    record = Path(f"{old.name}.json")
    if record in old_files and record in new_files:
        a = normalise(json.loads((old / record).read_text(encoding="utf-8")), renames)
        b = normalise(json.loads((new / record).read_text(encoding="utf-8")), [])
        problems += [f"{record}{d}" for d in differences(a, b)]
    return images, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path, help="output folder made by the old code")
    ap.add_argument("new", type=Path, help="output folder made by the new code")
    ap.add_argument("--renames", choices=sorted(RENAMES), help="record layout the old folder was written in")
    args = ap.parse_args(argv)
    renames = RENAMES[args.renames] if args.renames else []
    old_products = {p.name: p for p in (args.old / "products").iterdir() if p.is_dir()}
    new_products = {p.name: p for p in (args.new / "products").iterdir() if p.is_dir()}
    same, images, total = 0, 0, len(set(old_products) | set(new_products))
    for name in sorted(set(old_products) | set(new_products)):
        if name not in old_products or name not in new_products:
            print(f"{name}: only in {'old' if name in old_products else 'new'}")
            continue
        n, problems = compare_product(old_products[name], new_products[name], renames)
        images += n
        same += not problems
        print(f"{name}: {n} images, " + ("identical" if not problems else f"{len(problems)} difference(s)"))
        for line in problems:
            print(f"  {line}")
    dropped = [*RUN_KEYS, *(".".join(p) for p in DERIVED)]
    print(f"{images} images decoded and compared; records compared without {', '.join(dropped)}"
          + (f", with the {args.renames} renames ({len(renames)})" if renames else ""))
    print(f"identical_products={same}/{total}")
    return 0 if same == total else 1


if __name__ == "__main__":
    sys.exit(main())
