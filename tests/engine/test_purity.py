"""The engine stays pure: no I/O, event loop, clock or sibling-package imports (rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import nocturnus.engine

FORBIDDEN = {"sanic", "sqlite3", "asyncio", "os", "time", "socket", "subprocess", "io"}
ENGINE = Path(nocturnus.engine.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_engine_imports_nothing_impure():
    modules = sorted(ENGINE.glob("*.py"))
    assert modules
    for path in modules:
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {name}"
            if top == "nocturnus":
                assert name.startswith("nocturnus.engine"), (
                    f"{path.name} imports {name}"
                )


def test_every_module_starts_with_future_annotations():
    for path in sorted(ENGINE.glob("*.py")):
        tree = ast.parse(path.read_text())
        body = tree.body[1:] if ast.get_docstring(tree) else tree.body
        first = body[0]
        assert isinstance(first, ast.ImportFrom) and first.module == "__future__", (
            path.name
        )
