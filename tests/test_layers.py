"""The layers of the code base hold: import-linter's contracts (pyproject.toml) are kept, and
a back-edge or an import cycle breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("paddler", "control_plane", "agent")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The three packages and the contracts, copied where a test may break them."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_are_kept(tree_copy: Path) -> None:
    done = lint_imports(tree_copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "back_edge", "broken"),
    [
        ("control_plane/serving/balancer.py", "control_plane.state", "control plane layers"),
        ("control_plane/db/store.py", "control_plane.serving.fleet", "control plane layers"),
        ("control_plane/serving/relay.py", "agent.engine.model", "independent"),
        ("paddler/protocol/_messages.py", "control_plane.errors", "shared base"),
        ("agent/engine/decoder.py", "agent.runner", "agent layers"),
        ("control_plane/serving/jobs.py", "control_plane.serving.fleet", "no import cycles"),
    ],
)
def test_a_back_edge_breaks_a_contract(
    tree_copy: Path, module: str, back_edge: str, broken: str
) -> None:
    path = tree_copy / module
    path.write_text(path.read_text() + f"\nimport {back_edge}  # a back-edge\n")
    done = lint_imports(tree_copy)
    assert done.returncode != 0
    broken_lines = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(broken in line for line in broken_lines), done.stdout
    assert back_edge.rsplit(".", 1)[1] in done.stdout  # the edge is named (maybe relatively)
