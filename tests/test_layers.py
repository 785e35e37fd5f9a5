"""The package layers: stmg at the bottom, envs and agents beside each other above it, runner on top.

An import that crosses a layer the wrong way (for example ``agents`` importing ``envs``) would tie
the learner to our own games; only the runner may know both. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level packages it must never import
FORBIDDEN = {
    "stmg": {"envs", "agents", "runner"},
    "envs": {"agents", "runner"},
    "agents": {"envs", "runner"},
}


def imported_packages(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_the_checker_sees_imports_inside_functions() -> None:
    source = "import os\ndef f():\n    from envs.matrix import MatrixGame\n    import envs\n"
    assert imported_packages(source) == [(1, "os"), (3, "envs"), (4, "envs")]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_crosses_a_layer_the_wrong_way(package: str) -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in imported_packages(path.read_text())
        if name in FORBIDDEN[package]
    ]
    assert not offences, f"{package} must not import {sorted(FORBIDDEN[package])}: {offences}"
