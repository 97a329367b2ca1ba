"""The shape of the code: imports go one way (flows -> ops -> {provenance, stages}) with no cycles,
modules stay small, and the per-product runner reads as short steps."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("stages", "ops", "provenance", "flows")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("module,line,broken", [
    ("stages/layout.py", "import ops.paths", "Layers: flows -> ops -> provenance | stages BROKEN"),
    ("stages/scene/base.py", "import provenance.iptc", "Image steps and provenance are independent BROKEN"),
    ("ops/paths.py", "import flows.nightly", "Layers: flows -> ops -> provenance | stages BROKEN"),
    ("stages/layout.py", "import stages.pipeline", "No import cycles between sibling modules BROKEN"),
])
def test_an_upward_import_or_a_cycle_breaks_a_contract(tmp_path, module, line, broken):
    """The contracts are not vacuous: one added import in a copy of the tree makes `make test` fail."""
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a", encoding="utf-8") as fh:
        fh.write(f"\n{line}  # noqa: E402,F401\n")
    done = _lint(tmp_path)
    assert done.returncode != 0 and broken in done.stdout, done.stdout


def _modules(*packages: str) -> list[Path]:
    return sorted(p for name in packages for p in (REPO / name).rglob("*.py"))


def test_no_module_of_the_library_is_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in _modules("stages", "ops", "provenance")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, long


def test_the_per_product_runner_reads_as_short_steps():
    tree = ast.parse((REPO / "ops" / "runner.py").read_text(encoding="utf-8"))
    lengths = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert lengths and max(lengths.values()) < 60, lengths
