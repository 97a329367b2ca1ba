"""`stage doctor`'s checks of the configured backends, the model caches and the GPU."""

from __future__ import annotations

from typing import Any

from ops.doctor_row import Row
from stages import depth, matte, scene
from stages.check import nsfw
from stages.check.guards import expansion_method
from stages.matte.rembg import rembg_model_files
from stages.models import Requirement

STEPS = {"matte": matte.BACKENDS, "depth": depth.BACKENDS, "scene": scene.BACKENDS, "nsfw": nsfw.BACKENDS}


def configured(cfg: Any) -> list[tuple[str, str, bool]]:
    """(step, backend, is a fallback) for every backend the config may load."""
    out = []
    for step in STEPS:
        table = getattr(cfg, step)
        out.append((step, table.backend, False))
        if getattr(table, "escalate_to", ""):  # loaded with the backend: as needed as it
            out.append((step, table.escalate_to, False))
        out += [(step, name, True) for name in getattr(table, "fallback", ())]
    return out


def _found(r: Requirement) -> str:
    return r.found + (f" (revision {r.revision})" if r.revision else "")


def backend_rows(cfg: Any) -> list[Row]:
    """Each configured backend (and scene fallback): embedded, or each of its packages and models
    present or missing with the command that provides it. Nothing is loaded.

    A missing requirement of a configured backend is `missing` (the run cannot stage); of a
    fallback, a warning (it is needed only when the backend itself cannot load or runs out of memory)."""
    rows = []
    for step, name, fallback in configured(cfg):
        cls = STEPS[step][name]
        label = f"{step} {name}" + (" (fallback)" if fallback else "")
        requirements = getattr(cls, "requirements", None)
        if requirements is None:
            rows.append(Row("backends", label, "ok", "embedded: needs no weights"))
            continue
        found = requirements(getattr(cfg, step).options_for(name))
        packages = [r for r in found if r.role == "package"]
        if all(r.ok for r in packages):
            rows.append(Row("backends", label, "ok", "packages installed: " + ", ".join(r.ref for r in packages)))
        for r in found:
            if r.ok and r.role == "package":
                continue
            what = f"{label}: {r.role} {r.ref}"
            if r.ok:
                rows.append(Row("models", what, "ok", _found(r)))
            else:
                rows.append(Row("models" if r.role != "package" else "backends", what,
                                "warn" if fallback else "missing", r.why or r.problem, r.fix))
    in_use = {(step, name) for step, name, _ in configured(cfg)}
    for step, table in STEPS.items():
        others = [n for n in table if (step, n) not in in_use]
        if others:
            rows.append(Row("backends", f"{step}: not configured", "info", ", ".join(others)))
    return rows


def expansion_rows(cfg: Any) -> list[Row]:
    """Which object-expansion detector judges the scenes a trained model draws, and how far to
    trust it (see README, Object expansion, and `benchmarks/fidelity_eval.py`).

    The check runs only on drawn scenes, so with no trained scene backend in the chain it is
    information. Re-segmenting the composite with a learned matte finds grown product whatever its
    colour; the colour heuristic (what `auto` runs with the embedded matte) finds only growth
    coloured like the product's rim, and misses other colours, shadow-coloured growth below the
    product and colours close to the scene: a warning, with the setting that re-segments. An
    embedded matte asked to re-segment cuts out plain backdrops only, which a drawn scene is not."""
    name = "object expansion check"
    drawn = [n for n in (cfg.scene.backend, *cfg.scene.fallback) if scene.BACKENDS[n].trained]
    if not drawn:
        return [Row("checks", name, "info", "not judged: no configured scene backend is a trained model "
                                            f"({cfg.scene.backend}): nothing draws extra product")]
    second = matte.BACKENDS[cfg.matte.escalate_to] if cfg.matte.escalate_to else None
    seg = matte.segmenter(matte.BACKENDS[cfg.matte.backend], second)
    learned = seg.learned
    method = expansion_method(cfg.fidelity.expansion, learned)
    fix = ('[matte] backend = "rembg" (or escalate_to = "rembg") with [fidelity] expansion = "auto" '
           '(re-segments each drawn scene)')
    if method == "off":
        return [Row("checks", name, "warn", f"off: what {drawn[0]} draws beyond the product is not looked for",
                    '[fidelity] expansion = "auto"')]
    if method == "heuristic":
        return [Row("checks", name, "warn",
                    f"colour heuristic (matte {cfg.matte.backend}): finds grown product coloured like its rim, misses "
                    "other colours, shadow-coloured growth below it and colours close to the scene", fix)]
    if not learned:
        return [Row("checks", name, "warn", f"re-segments with the {seg.name} matte, which cuts out plain "
                                            "backdrops only: a drawn scene is not one", fix)]
    return [Row("checks", name, "ok", f"re-segments each drawn scene with the {seg.name} matte")]


def hf_cache_rows() -> list[Row]:
    """What the Hugging Face cache holds: each repo with its cached revisions (read from disk only)."""
    try:
        from huggingface_hub import constants, scan_cache_dir
    except ImportError:
        return [Row("models", "Hugging Face cache", "info", "huggingface_hub is not installed")]
    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)  # the folder the backends' lookups read
    except Exception as exc:  # CacheNotFound, a malformed cache folder
        why = "no cache folder yet" if type(exc).__name__ == "CacheNotFound" else f"{type(exc).__name__}: {exc}"
        return [Row("models", "Hugging Face cache", "info", f"{constants.HF_HUB_CACHE}: {why}")]
    rows = [Row("models", "Hugging Face cache", "info",
                f"{constants.HF_HUB_CACHE}: {len(info.repos)} repo(s), {info.size_on_disk / 1e9:.1f} GB")]
    for repo in sorted(info.repos, key=lambda r: (r.repo_type, r.repo_id)):
        revisions = []
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            refs = f" ({', '.join(sorted(rev.refs))})" if rev.refs else ""
            revisions.append(f"{rev.commit_hash[:12]}{refs}")
        rows.append(Row("models", f"hf cache: {repo.repo_id}", "info",
                        f"{repo.repo_type}, {repo.size_on_disk / 1e9:.2f} GB, revisions {', '.join(revisions)}"))
    for warning in info.warnings[:3]:
        rows.append(Row("models", "Hugging Face cache", "warn", str(warning)))
    return rows


def u2net_rows() -> list[Row]:
    """The rembg models on disk ($U2NET_HOME, default ~/.u2net)."""
    folder, files = rembg_model_files()
    if not files:
        return [Row("models", "rembg models", "info", f"none in {folder} ($U2NET_HOME)")]
    return [Row("models", f"rembg model {f.stem}", "info", f"{f} ({f.stat().st_size / 1e6:.0f} MB)") for f in files]


def _device_settings(cfg: Any) -> list[tuple[str, str]]:
    """([table], device setting) of every configured backend that has a `device` setting."""
    out = []
    for step, name, _ in configured(cfg):
        options = getattr(cfg, step).options_for(name)
        if hasattr(options, "device"):
            out.append((f"{step}.{name.replace('-', '_')}", options.device))
    return out


def probe_cuda() -> tuple[bool, str]:
    """(usable, what was found): torch's view of the GPU, with a one-element allocation to prove it
    works. Never raises: a broken driver is a finding, not a crash."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed"
    try:
        import torch

        if not torch.cuda.is_available():
            built = torch.version.cuda
            return False, ("no CUDA device visible" if built else "torch is built without CUDA") + \
                f" (torch {torch.__version__})"
        names = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            names.append(f"cuda:{i} {torch.cuda.get_device_name(i)}, {total / 2**30:.1f} GiB "
                         f"({free / 2**30:.1f} free)")
        torch.zeros(1, device="cuda").add_(1).item()
        return True, "; ".join(names) + f"; CUDA {torch.version.cuda}, torch {torch.__version__}"
    except Exception as exc:
        return False, f"CUDA is not usable: {type(exc).__name__}: {exc}"


def gpu_rows(cfg: Any, probe: Any = probe_cuda) -> list[Row]:
    """The GPU, judged against the configured backends' `device` settings: a backend set to
    `cuda` without a usable GPU fails; one on `auto` runs on the CPU (a warning for the diffusion
    scene, which takes hours per image there); otherwise the GPU is only information."""
    usable, detail = probe()
    if usable:
        return [Row("gpu", "GPU", "ok", detail)]
    devices = _device_settings(cfg)
    need = [where for where, device in devices if device == "cuda"]
    if need:
        return [Row("gpu", "GPU", "fail", f"{detail}; device = \"cuda\" in {', '.join(f'[{w}]' for w in need)}",
                    "run on a machine with a CUDA GPU, or set device = \"auto\" there")]
    slow = [where for where, device in devices if device == "auto" and where.startswith("scene.")]
    if slow:
        return [Row("gpu", "GPU", "warn", f"{detail}: [{slow[0]}] would run on the CPU (hours per image)",
                    "run on a machine with a CUDA GPU")]
    return [Row("gpu", "GPU", "info", f"{detail}: every configured backend runs on the CPU")]
