"""Dependencies point downward only: api → service → engine, store (STYLE rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nocturnus"
FORBIDDEN = {
    "engine": {"nocturnus.store", "nocturnus.service", "nocturnus.api", "nocturnus.cli"},
    "store": {"nocturnus.engine", "nocturnus.service", "nocturnus.api", "nocturnus.cli"},
    "service": {"nocturnus.api", "nocturnus.cli", "sanic"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_downward(layer: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in imported_modules(path):
            if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN[layer]):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert offenders == []
