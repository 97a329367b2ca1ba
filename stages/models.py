"""Where a learned backend's weights come from, which device it runs on, and what to say when they
cannot be had: one place for every backend's loading."""

from __future__ import annotations

import importlib.util
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.errors import ModelUnavailableError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as the hub client reads it, but at call time."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class ModelSource:
    role: str  # what the weights are for, e.g. "inpainting model"
    ref: str  # as configured: a path or a hub id
    revision: str | None  # as configured
    load_from: str  # what `from_pretrained` gets: a folder, a file, or the hub id
    kind: str  # local | hf-cache | hub
    commit: str | None = None  # the hub commit, when known

    @property
    def pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `from_pretrained` besides the source itself."""
        if self.kind == "hub":
            return {"revision": self.revision} if self.revision else {}
        return {"local_files_only": True}

    def record(self) -> dict[str, Any]:
        """JSON-simple provenance: the configured id or path and the revision that was loaded."""
        return {"id": self.ref, "revision": self.commit or self.revision, "source": self.kind}

    def after_download(self, marker: str) -> ModelSource:
        """The same source with the commit that a hub download put into the cache, when it can be read."""
        if self.kind != "hub":
            return self
        found = _cached_snapshot(self.ref, marker, self.revision)
        return ModelSource(self.role, self.ref, self.revision, self.load_from, "hub",
                           found.name if found is not None else None)


def download_command(ref: str, default_hub_id: str | None = None, filename: str = "") -> str:
    """The command that puts a model (or one file of it) into the Hugging Face cache: `ref` when it
    is a hub id, else the backend's default model (a local folder is filled from it)."""
    hub_id = ref if _HUB_ID.match(ref) and not Path(ref).expanduser().exists() else (default_hub_id or "<hub id>")
    return f"hf download {hub_id}" + (f" {filename}" if filename else "")


def download_advice(ref: str, setting: str, default_hub_id: str | None = None, filename: str = "") -> str:
    command = download_command(ref, default_hub_id, filename)
    return (
        f"Provide it as a local folder (set {setting} to its path), or download it once on a machine with "
        f"internet into the Hugging Face cache: `{command}` (older clients: "
        f"`huggingface-cli {command.removeprefix('hf ')}`) and copy the cache (HF_HOME) to this machine. "
        "With HF_HUB_OFFLINE=1 only the local cache is searched."
    )


@dataclass(frozen=True)
class Requirement:
    """One thing a backend needs before it can load (a package, a model's weights), found or not.

    Backends with weights list theirs in a `requirements(options)` classmethod that looks only at
    files and caches: nothing is imported, loaded or downloaded, so a machine can be checked in
    milliseconds (`stage doctor`) and a missing model is named before the first batch fails."""

    role: str  # what it is for, e.g. "inpainting model", "package"
    ref: str  # as configured: hub id, path, model or package name
    found: str = ""  # where it is; "" when missing
    revision: str | None = None  # the cached commit, when known
    problem: str = ""  # "" when present; else the message a run would fail with
    fix: str = ""  # the command that provides it
    why: str = ""  # the problem in a few words (without the advice the message ends with)

    @property
    def ok(self) -> bool:
        return not self.problem


def package_requirement(module: str, install: str) -> Requirement:
    """Whether `module` is installed, found without importing it (torch alone takes seconds)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        why = f"the Python package {module!r} is not installed"
        return Requirement("package", module, problem=why, fix=install, why=why)
    return Requirement("package", module, found=spec.origin or module)


def source_requirement(role: str, ref: str, revision: str, marker: str, setting: str,
                       default_hub_id: str | None = None, filename: str = "") -> Requirement:
    """`resolve_source` as a Requirement: a local folder or cached snapshot is found, anything else
    (also a hub id a run would download first) is missing, with the `hf download` command
    (`filename`: the one file of the repo that is needed)."""
    fix = download_command(ref, default_hub_id, filename)
    advice = download_advice(ref.strip(), setting, default_hub_id)
    try:
        src = resolve_source(role, ref, revision, marker, setting, default_hub_id)
    except ModelUnavailableError as exc:
        return Requirement(role, ref, problem=str(exc), fix=fix, why=str(exc).replace(advice, "").strip())
    if src.kind == "hub":
        at = f"@{revision}" if revision else ""
        why = "not in the local Hugging Face cache: a run would download it first, and fails without network"
        return Requirement(role, ref, problem=(
            f"{role} {ref}{at} is {why}. {download_advice(ref, setting, default_hub_id, filename)}"), fix=fix,
            why=why)
    return Requirement(role, ref, src.load_from, src.commit or src.revision)


def _cached_snapshot(repo: str, marker: str, revision: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, marker, revision=revision or None)
    except Exception:  # a malformed cache or id: treat as not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


def resolve_source(role: str, ref: str, revision: str, marker: str | None, setting: str,
                   default_hub_id: str | None = None) -> ModelSource:
    """Find the weights for `ref` without loading them; ModelUnavailableError when they cannot be had.

    Resolved before any heavy library is imported, so a missing model fails in milliseconds with a
    message naming it and saying how to provide it. A hub id found in the local cache is loaded
    from its snapshot folder (no network at all) and recorded with the snapshot's commit hash.
    `marker` is a file every copy of the model has at its root (model_index.json, config.json):
    it tells a model folder from any folder, and finds the snapshot in the hub cache.
    """
    ref = ref.strip()
    advice = download_advice(ref, setting, default_hub_id)
    path = Path(ref).expanduser()
    if path.exists():
        if marker and path.is_dir() and not (path / marker).is_file():
            raise ModelUnavailableError(f"{role} folder {path} has no {marker}: not a model folder. {advice}")
        return ModelSource(role, ref, revision or None, str(path), "local")
    if path.is_absolute() or ref.startswith((".", "~")) or not _HUB_ID.match(ref):
        raise ModelUnavailableError(f"{role} {ref!r} not found (no such file or folder). {advice}")
    at = f"@{revision}" if revision else ""
    snapshot = _cached_snapshot(ref, marker, revision) if marker else None
    if snapshot is not None:
        return ModelSource(role, ref, revision or None, str(snapshot), "hf-cache",
                           snapshot.name if _COMMIT.match(snapshot.name) else None)
    if hub_offline():
        raise ModelUnavailableError(
            f"{role} {ref}{at} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, "
            f"so it cannot be downloaded. {advice}"
        )
    return ModelSource(role, ref, revision or None, ref, "hub")


@contextmanager
def quiet_loading(*libraries: str):
    """No per-file progress bars from `libraries` ("diffusers", "transformers") while weights load."""
    import importlib

    restore = []
    for lib in libraries:
        mod = importlib.import_module(f"{lib}.utils.logging")
        if mod.is_progress_bar_enabled():
            mod.disable_progress_bar()
            restore.append(mod)
    try:
        yield
    finally:
        for mod in restore:
            mod.enable_progress_bar()


def load_failure(source: ModelSource, exc: Exception, fix: str) -> ModelUnavailableError:
    """The error for weights that were found but failed to load: names the model, where it was read
    from, the library's reason and `fix` (which setting to change, what to download)."""
    at = f"@{source.revision}" if source.revision else ""
    offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
    return ModelUnavailableError(
        f"{source.role} {source.ref}{at} ({source.kind}: {source.load_from}) failed to load{offline}: "
        f"{type(exc).__name__}: {exc}. {fix}"
    )


def hub_hint(source: ModelSource, default_hub_id: str) -> str:
    """What to pass to `hf download` for a source: its own hub id, or the default for a local folder."""
    return source.ref if source.kind != "local" else default_hub_id


def choose_device(setting: str, where: str) -> str:
    """"cuda" or "cpu" for a backend's `device` setting (auto | cuda | cpu); `where` names its table.

    `auto` takes the GPU when torch sees one; asking for `cuda` without one fails at load time
    rather than running a diffusion model on the CPU for hours."""
    import torch

    available = torch.cuda.is_available()
    if setting == "cuda" and not available:
        raise ModelUnavailableError(f"[{where}] device = 'cuda' but no CUDA device is visible")
    return "cuda" if setting == "cuda" or (setting == "auto" and available) else "cpu"
