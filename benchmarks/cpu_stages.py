"""Per-stage CPU cost of one product image on one core, with the embedded backends.

Times each stage function directly (the same calls `stages.product.process_row` makes) on the
demo photos of catalog/demo.csv at the configured canvas (config.toml: 1024x1024), with
OpenCV/BLAS/OpenMP and the NSFW model's onnxruntime pinned to one thread. Then runs
`process_row` itself on the same photos and prints its own `timings_ms` as a cross-check.

The demo photos are small (400x534, coffee 600x400 is not in demo.csv): layout upscales each
product onto the canvas (up to [layout] max_scale = 2.0), so every stage after layout works
on canvas-sized arrays.

Key figure (last line): process_row's whole call per staged image, less its scene stage and the
channel renditions, in ms: the fastest of the rounds for each photo, median over the photos
(other jobs on a shared 2-core machine inflate single samples; the plain medians and thread-CPU
times are printed beside it). The channel renditions are whole images at their own sizes: the
line above it gives each one's cost without its scene, and that cost per megapixel.

    .venv/bin/python benchmarks/cpu_stages.py            # 5 rounds over the 10 demo photos (~1 min)
    .venv/bin/python benchmarks/cpu_stages.py --quick    # 1 round over 4 photos, smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.dont_write_bytecode = True  # run from a checkout: leave no __pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET_MS = 250.0
STAGES = ("load", "matte", "layout", "depth", "scene", "composite", "encode", "sign", "check", "write")
WRITE_PARTS = ("write.staged_png", "write.layers", "write.thumbnails", "write.record")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one round over 4 photos, smoke run (< 60 s)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds over the photos (default 5, quick 1)")
    ap.add_argument("--photos", type=int, default=None, help="how many demo photos (default all 10, quick 4)")
    ap.add_argument("--size", type=int, default=None, help="square canvas side (default: config.toml [layout])")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV/BLAS/OpenMP/onnxruntime threads (default 1: one core)")
    ap.add_argument("--no-cross-check", action="store_true", help="skip the process_row cross-check")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    with C.bench_root("bench-cpu-", keep=args.keep, threads=args.threads) as root:
        return run(args, rounds, root)


class _Timer:
    """Wall and thread-CPU milliseconds per named step (`with timer("matte"): ...`)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + (time.perf_counter() - w0) * 1000
            self.cpu[name] = self.cpu.get(name, 0.0) + (time.thread_time() - c0) * 1000

    def move(self, inner: str, outer: str) -> None:
        """`inner` ran inside `outer`: take it out of `outer`."""
        for d in (self.wall, self.cpu):
            d[outer] -= d[inner]


def time_one(bench, row, out_root: Path) -> tuple[_Timer, dict]:
    """Every stage of process_row for one catalog row, each timed on its own (same calls, same order)."""
    import hashlib
    from datetime import UTC, datetime

    from stages import PIPELINE_VERSION
    from stages.atomic import staged_file, write_bytes, write_json
    from stages.check import CheckResult, decode_rgb, product_pixels
    from stages.composite import composite
    from stages.layout import place_product
    from stages.load import decode_image, mime_type, read_source
    from stages.matte import compute_matte
    from stages.naming import sku_slug
    from stages.product import variant_seed
    from stages.scene import SceneRequest
    from stages.sign import verify_file
    from stages.write import encode_png, thumbnail_jpeg, write_png, write_rgba

    cfg = bench.cfg
    tm = _Timer()
    with tm("load"):
        data = read_source(row.image, cfg.load)
        image = decode_image(data, cfg.load, name=row.image)
    with tm("matte"):
        matte = compute_matte(bench.matte, image.rgb, image.alpha)
    with tm("layout"):
        layout = place_product(image.rgb, matte.alpha, cfg.layout)
    with tm("depth"):
        depth = bench.depth.run(layout, cfg.layout.horizon)
    prompt = row.scene_prompt or cfg.scene.default_prompt
    negative = row.negative_prompt or cfg.scene.negative_prompt
    seed = variant_seed(row, 0)
    with tm("scene"):
        scene = bench.scene.generate(SceneRequest(layout, depth, prompt, negative, seed, cfg.layout.horizon))
    with tm("composite"):
        staged = composite(scene.rgb, layout)
    with tm("encode"):
        png = encode_png(staged, cfg.write.png_compress_level)
    settings = {
        "sku": row.sku, "variant": 0, "seed": seed, "prompt": prompt, "negative_prompt": negative,
        "backends": {"matte": matte.backend, "depth": depth.backend, "scene": scene.backend},
        "scene": scene.settings, "placement": layout.placement.to_dict(), "canvas": list(layout.size),
        "config_digest": cfg.digest(), "pipeline_version": PIPELINE_VERSION,
    }
    with tm("sign"):
        thumb = thumbnail_jpeg(staged, cfg.write.thumbnail_px)
        source_thumb = thumbnail_jpeg(image.rgb, cfg.write.thumbnail_px)
        signed = bench.signer.sign_png(
            png, title=f"{row.title} ({row.sku})", source_bytes=data, source_mime=mime_type(image.format),
            source_title=Path(row.image).name, digital_source_type=scene.digital_source_type,
            settings=settings, software_agent=f"product-staging {PIPELINE_VERSION} ({scene.backend})",
            thumbnail=thumb, source_thumbnail=source_thumb,
        )
    slug = sku_slug(row.sku)
    folder = out_root / "products" / slug
    with tm("write.staged_png"), staged_file(folder / f"{slug}.png", signed) as tmp:
        with tm("check"):
            px = product_pixels(decode_rgb(tmp.read_bytes()), layout, cfg.check)
            ver = verify_file(tmp, bench.trust_anchors)
    tm.move("check", "write.staged_png")
    checks = [px, CheckResult("c2pa", ver.ok, 1.0 if ver.ok else 0.0, "valid manifest", "", True)]
    for fmt in getattr(cfg.write, "renditions", ()):  # signed JPEG/WebP copies of the master, when configured
        from stages.check import rendition_pixels
        from stages.write import RENDITION_EXT, RENDITION_MIME, encode_rendition

        with tm(f"{fmt}.encode"):
            data_r = encode_rendition(staged, fmt, cfg.write.jpeg_quality)
        with tm(f"{fmt}.sign"):
            signed_r = bench.signer.sign_rendition(
                data_r, RENDITION_MIME[fmt], title=f"{row.title} ({row.sku}) {fmt}", master=signed,
                master_title=f"{slug}.png", settings={"sku": row.sku, "variant": 0, "format": fmt},
                software_agent=f"product-staging {PIPELINE_VERSION}",
                thumbnail=thumb, master_thumbnail=thumb,
            )
        with tm(f"{fmt}.write"), staged_file(folder / f"{slug}.{RENDITION_EXT[fmt]}", signed_r) as tmp:
            with tm(f"{fmt}.check"):
                px_r = rendition_pixels(decode_rgb(tmp.read_bytes()), layout, cfg.check, fmt == "webp")
                ver_r = verify_file(tmp, bench.trust_anchors)
        tm.move(f"{fmt}.check", f"{fmt}.write")
        checks += [px_r, CheckResult("c2pa", ver_r.ok, 1.0 if ver_r.ok else 0.0, "valid manifest", "", True)]
    layers = folder / "layers"
    with tm("write.layers"):
        write_png(layers / "matte.png", matte.alpha, cfg.write.png_compress_level)
        write_rgba(layers / "product.png", layout.product_rgb, layout.product_alpha, cfg.write.png_compress_level)
        write_png(layers / "mask.png", layout.mask, cfg.write.png_compress_level)
        write_png(layers / "depth.png", depth.depth, cfg.write.png_compress_level)
    with tm("write.thumbnails"):
        write_bytes(layers / "before.jpg", source_thumb)
        write_bytes(layers / "after.jpg", thumb)
    with tm("write.record"):
        write_json(folder / f"{slug}.json", {
            "sku": row.sku, "source_sha256": hashlib.sha256(data).hexdigest(), "output": f"{slug}.png",
            "placement": layout.placement.to_dict(), "checks": [c.to_dict() for c in checks],
            "matte_details": matte.details, "depth_details": depth.details, "scene": scene.settings,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        })
    for d in (tm.wall, tm.cpu):
        d["write"] = sum(d[k] for k in WRITE_PARTS)
    info = {"checks_ok": all(c.passed for c in checks), "scale": layout.placement.scale,
            "png_kb": len(png) / 1024, "signed_kb": len(signed) / 1024}
    return tm, info


def channel_costs(record_path: Path) -> list[tuple[str, float, float]]:
    """(preset, ms excluding its scene generator, megapixels) of each channel rendition in a record."""
    import json

    out: dict[str, tuple[float, float]] = {}
    for e in json.loads(record_path.read_text(encoding="utf-8")).get("channel_renditions") or []:
        t = e.get("timings_ms") or {}
        ms, mp = out.get(e["preset"], (t.get("stage", 0.0) - t.get("scene", 0.0), e["size"][0] * e["size"][1] / 1e6))
        out[e["preset"]] = (ms + t.get("encode_sign_publish", 0.0), mp)  # stage once, each format's publish
    return [(n, ms, mp) for n, (ms, mp) in out.items()]


def run(args: argparse.Namespace, rounds: int, root: Path) -> int:
    from stages.catalog import read_catalog
    from stages.config import load_config
    from stages.product import Workbench, process_row

    overrides: dict = {"nsfw": {"threads": args.threads}}  # onnxruntime defaults to one thread per core
    if args.size:
        overrides["layout"] = {"width": args.size, "height": args.size}
    cfg_path = C.write_config(root / "config.toml", overrides)
    cfg = load_config(cfg_path)
    n_photos = args.photos or (4 if args.quick else len(C.demo_templates()))
    rows = read_catalog(C.write_catalog(root / "photos.csv", C.synthetic_rows(n_photos)), cfg.run.max_variants).rows
    bench = Workbench.build(cfg)

    print(C.machine_line())
    print(f"canvas {cfg.layout.width}x{cfg.layout.height}, threads {args.threads}, {len(rows)} demo photos x "
          f"{rounds} round(s); backends matte={cfg.matte.backend} depth={cfg.depth.backend} "
          f"scene={cfg.scene.backend}; png_compress_level={cfg.write.png_compress_level}")

    time_one(bench, rows[0], root / "warmup")  # lazy imports, SDK contexts, allocator warm-up

    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    totals_wall: list[float] = []
    totals_cpu: list[float] = []
    totals_no_rend: list[float] = []
    best_stage: dict[str, dict[int, float]] = {}  # stage -> photo -> fastest round
    best_total: dict[int, float] = {}
    best_total_no_rend: dict[int, float] = {}
    infos = []
    pr_stage: dict[str, list[float]] = {}
    pr_wall: list[float] = []
    pr_cpu: list[float] = []
    pr_best: dict[int, float] = {}  # photo -> fastest process_row call less its scene stage
    pr_master: dict[int, float] = {}  # the same, less the channel renditions too: one staged image
    statuses: dict[str, int] = {}
    chan: dict[str, dict[int, float]] = {}  # channel preset -> photo -> fastest ms excl. its scene
    chan_mp: dict[str, float] = {}
    for r in range(rounds):
        for p, row in enumerate(rows):
            # direct timing and process_row back to back on the same photo, so machine noise hits both
            tm, info = time_one(bench, row, root / "out-direct" / f"r{r}")
            for k in tm.wall:
                wall.setdefault(k, []).append(tm.wall[k])
                cpu.setdefault(k, []).append(tm.cpu[k])
                best = best_stage.setdefault(k, {})
                best[p] = min(best.get(p, float("inf")), tm.wall[k])
            top = [k for k in tm.wall if k not in WRITE_PARTS and k != "scene"]
            totals_wall.append(sum(tm.wall[k] for k in top))
            totals_cpu.append(sum(tm.cpu[k] for k in top))
            totals_no_rend.append(sum(tm.wall[k] for k in top if k in STAGES))
            best_total[p] = min(best_total.get(p, float("inf")), totals_wall[-1])
            best_total_no_rend[p] = min(best_total_no_rend.get(p, float("inf")), totals_no_rend[-1])
            infos.append(info)
            if args.no_cross_check:
                continue
            w0, c0 = time.perf_counter(), time.thread_time()
            res = process_row(bench, row, root / "out-process-row" / f"r{r}", "bench")
            pr_wall.append((time.perf_counter() - w0) * 1000)
            pr_cpu.append((time.thread_time() - c0) * 1000)
            call = pr_wall[-1] - res.timings_ms.get("scene", 0.0)  # this call, less its scene stage
            pr_best[p] = min(pr_best.get(p, float("inf")), call)
            pr_master[p] = min(pr_master.get(p, float("inf")), call - res.timings_ms.get("channels", 0.0))
            statuses[res.status] = statuses.get(res.status, 0) + 1
            for name, ms, mp in channel_costs(root / "out-process-row" / f"r{r}" / res.record) if res.record else ():
                chan.setdefault(name, {})[p] = min(chan.get(name, {}).get(p, float("inf")), ms)
                chan_mp[name] = mp
            for k, v in res.timings_ms.items():
                pr_stage.setdefault(k, []).append(v)

    med = {k: C.median(v) for k, v in wall.items()}
    med_cpu = {k: C.median(v) for k, v in cpu.items()}
    med_best = {k: C.median(list(v.values())) for k, v in best_stage.items()}
    renditions = [k for k in wall if k not in STAGES and k not in WRITE_PARTS]
    order = [*STAGES[:-1], *renditions, "write", *WRITE_PARTS]
    top = [k for k in order if k not in WRITE_PARTS]
    sum_all = sum(med[k] for k in top)
    print()
    print(f"Per-stage time, ms per image, {len(rows)} photos x {rounds} round(s). 'best' = fastest round per photo, "
          "median over photos (the machine-noise-resistant figure); 'med'/'p90' over every sample; 'cpu' = thread "
          "CPU time.\nsign = 2 JPEG thumbnails (staged image, source photo: embedded in the manifests, written as "
          "layers/after.jpg, before.jpg) + signing; check = decode + product_pixels + verify_file;\nwrite = staged "
          "PNG + 4 layer PNGs + 2 thumbnails + record JSON, each fsync'd"
          + ("; <fmt>.* = the signed renditions of [write] renditions" if renditions else ""))
    body = []
    for k in order:
        label = ("  " + k) if k in WRITE_PARTS else k
        body.append((label, med_best[k], med[k], C.percentile(wall[k], 0.9), med_cpu[k],
                     f"{100 * med_best[k] / sum(med_best[j] for j in top):.0f}%"))

    def sums(keys: list[str]) -> tuple:
        return (sum(med_best[k] for k in keys), sum(med[k] for k in keys), None, sum(med_cpu[k] for k in keys), "")

    body.append(("sum, all stages", *sums(top)))
    body.append(("sum, excl. scene", *sums([k for k in top if k != "scene"])))
    if renditions:
        body.append(("  of which renditions", *sums(renditions)))
    print(C.table(("stage", "best", "wall med", "wall p90", "cpu med", "share"), body))
    scales = sorted(i["scale"] for i in infos)
    print(f"layout scale (product px per source px): min {scales[0]:.2f}, median {C.median(scales):.2f}, "
          f"max {scales[-1]:.2f}; staged PNG median {C.median([i['png_kb'] for i in infos]):.0f} KiB, signed "
          f"{C.median([i['signed_kb'] for i in infos]):.0f} KiB; checks passed "
          f"{sum(i['checks_ok'] for i in infos)}/{len(infos)}")

    if pr_wall:
        print()
        print("Cross-check: process_row's own timings_ms, median ms (same photos, fresh output folder, nothing "
              "cached). Its 'load' also hashes the source and looks up the cache; its encode/sign/check add up "
              "the master and the renditions; its 'write' encloses every check.")
        fmts = sorted({k.split(".")[0] for k in renditions})

        def direct(k: str) -> float | None:
            if k not in med:
                return None
            v = med[k] + sum(med.get(f"{f}.{k}", 0.0) for f in fmts)
            if k == "write":
                v += med["check"] + sum(med[f"{f}.check"] for f in fmts)
            return v

        keys = list(pr_stage) + [s for s in STAGES if s not in pr_stage]
        cmp = [(k, direct(k), C.median(pr_stage.get(k, []))) for k in keys]
        cmp.append(("whole call (wall)", sum_all, C.median(pr_wall)))
        cmp.append(("whole call (thread cpu)", sum(med_cpu[k] for k in top), C.median(pr_cpu)))
        print(C.table(("stage", "direct", "process_row"), cmp))
        print(f"process_row statuses: {statuses}")
        untimed = [k for k in pr_stage if k not in STAGES]
        if untimed:
            print(f"NOTE: process_row runs stages this script does not time on their own: {', '.join(untimed)} "
                  "(and 'check' may hold more than the pixel and C2PA checks): the direct total below leaves "
                  "them out; see the process_row line.")

    total = C.median(list(best_total.values()))
    print()
    if renditions:
        print(f"per-image total excl. scene and renditions: best {C.median(list(best_total_no_rend.values())):.1f} ms, "
              f"wall median {C.median(totals_no_rend):.1f} ms")
    print(f"per-image total excl. scene: best {total:.1f} ms, wall median {C.median(totals_wall):.1f} ms "
          f"(p90 {C.percentile(totals_wall, 0.9):.1f}), thread-cpu median {C.median(totals_cpu):.1f} ms; "
          f"target <= {TARGET_MS:.0f} ms")
    if pr_best:
        print(f"process_row per-image total excl. its 'scene' stage (whole call, fastest round per photo, median "
              f"over photos): {C.median(list(pr_best.values())):.1f} ms")
    if chan:  # each one is a staged image of its own, at its own size
        per = {n: C.median(list(v.values())) for n, v in chan.items()}
        per_mp = sum(per.values()) / sum(chan_mp[n] for n in per)
        print("channel renditions ([renditions] active), each staged again at its size, excl. its scene: "
              + ", ".join(f"{n} {chan_mp[n]:.2f} MP {per[n]:.1f} ms" for n in per)
              + f"; {per_mp:.1f} ms per megapixel = {per_mp * 1024 * 1024 / 1e6:.1f} ms per 1024² image")
    if pr_master:  # the pipeline as it runs: every check on the master, no channel renditions
        key = C.median(list(pr_master.values()))
        print(f"process_row per staged image excl. scene and channel renditions: {key:.1f} ms "
              f"(the stages above: {total:.1f} ms)")
        print(f"total_ms_per_image_excl_scene={key:.1f} target<={TARGET_MS:.0f} {C.verdict(key, TARGET_MS)}")
    else:
        print(f"total_ms_per_image_excl_scene={total:.1f} target<={TARGET_MS:.0f} {C.verdict(total, TARGET_MS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
