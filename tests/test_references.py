"""Docstrings and comments name only things that exist (issue 20).

A rename that leaves ``events.FIELD_READERS`` or :meth:`ScopeFacts.rows` behind in a
comment sends the next reader looking for code that is gone. This test reads every
docstring and comment of the package and resolves each reference it can judge:

- a Sphinx role (``:func:``, ``:meth:``, ``:class:``, ``:data:``, ``:attr:``,
  ``:mod:``): the name must be defined in the package;
- a file name in double backquotes, ``codec.py``: the package must have that file;
- a dotted name in double backquotes whose first part is one of our classes
  (``ScopeFacts.tell``), or a module path (``store.record.build_record``), or a
  module's name followed by a name that reads as a definition (``events.EVENT_TYPES``,
  ``replay.fold()``): each further part must exist there.

A lower-case attribute after a name that is also a common variable (``app.ctx``,
``record.body``) is not judged, nor is a logger's name (``nocturnus.access``), nor is
anything outside the package.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1] / "nocturnus"

ROLE = re.compile(r":(?:func|meth|class|data|attr|mod|exc):`~?\.?([A-Za-z_][\w.]*)`")
DOTTED = re.compile(r"``([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(\(\))?``")
MISSING = object()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Index:
    """Every module and class of the package, imported, plus instance attributes."""

    def __init__(self) -> None:
        self.modules: dict[str, list[ModuleType]] = {}  # by every dotted suffix
        self.classes: dict[str, list[type]] = {}
        self.instance_attrs: dict[str, set[str]] = {}  # self.x = ... per class name
        self.names: set[str] = set()
        self.files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
        for path in sorted(PACKAGE.rglob("*.py")):
            if path.name == "__main__.py":
                continue
            full = module_name(path)
            module = importlib.import_module(full)
            parts = full.split(".")
            for i in range(len(parts)):
                self.modules.setdefault(".".join(parts[i:]), []).append(module)
            self.names.update(vars(module))
            self.names.add(parts[-1])
            for name, obj in vars(module).items():
                if inspect.isclass(obj) and obj.__module__ == full:
                    self.classes.setdefault(name, []).append(obj)
                    self.names.update(dir(obj))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    attrs = self.instance_attrs.setdefault(node.name, set())
                    for sub in ast.walk(node):
                        if (
                            isinstance(sub, ast.Attribute)
                            and isinstance(sub.ctx, ast.Store)
                            and isinstance(sub.value, ast.Name)
                            and sub.value.id == "self"
                        ):
                            attrs.add(sub.attr)
            self.names.update(*self.instance_attrs.values())

    def member(self, owner: Any, name: str) -> Any:
        value = getattr(owner, name, MISSING)
        if value is MISSING and inspect.isclass(owner):
            for klass in owner.__mro__:
                if name in self.instance_attrs.get(klass.__name__, ()):
                    return None  # an instance attribute: exists, no further parts
        return value

    def walk(self, owner: Any, rest: list[str]) -> bool:
        for name in rest:
            if owner is None:
                return True  # past an instance attribute: not judged
            owner = self.member(owner, name)
            if owner is MISSING:
                return False
        return True

    def resolves(self, dotted: str, called: bool = False) -> bool | None:
        """True/False for a reference we can judge; None when we cannot."""
        parts = dotted.split(".")
        if parts[-1] == "py":
            path = "/".join(parts[:-1]) + ".py"
            return any(f == path or f.endswith("/" + path) for f in self.files)
        if parts[0] == "nocturnus" and len(parts) == 2:
            return None  # a logger's name (``nocturnus.access``) as often as a module
        classes = self.classes.get(parts[0])
        if classes is not None:
            return any(self.walk(c, parts[1:]) for c in classes)
        for cut in range(len(parts) - 1, 0, -1):  # the longest module prefix first
            modules = self.modules.get(".".join(parts[:cut]))
            if modules is None:
                continue
            head = parts[cut]
            package = any(hasattr(m, "__path__") for m in modules)
            definition = called or head[:1].isupper() or cut > 1 or package
            if not definition:
                return None  # ``app.ctx``: maybe a variable named like the module
            return any(self.walk(m, parts[cut:]) for m in modules)
        return None


def texts(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every docstring and comment of a module, each once."""
    source = path.read_text()
    seen: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if (  # docstrings, attribute docstrings
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            seen.add((node.lineno, node.value.value))
    yield from sorted(seen)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield (token.start[0], token.string)


def stale_references(index: Index) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE)
        for line, text in texts(path):
            text = " ".join(text.split())  # a reference may wrap over two lines
            for match in ROLE.finditer(text):
                name = match.group(1)
                known = index.resolves(name) if "." in name else name in index.names
                if known is False:
                    found.append(f"{where}:{line} {match.group(0)}")
            for match in DOTTED.finditer(text):
                if index.resolves(match.group(1), bool(match.group(2))) is False:
                    found.append(f"{where}:{line} {match.group(0)}")
    return found


def test_docstrings_and_comments_name_what_exists() -> None:
    assert stale_references(Index()) == []


def test_the_checker_finds_stale_names() -> None:
    index = Index()
    assert index.resolves("events.FIELD_READERS") is False
    assert index.resolves("ScopeFacts.rows") is False
    assert index.resolves("service.tenant.apply") is False
    assert index.resolves("tenant.py") is False
    assert index.resolves("replay.gc_paused", called=True) is False
    assert index.resolves("service.codec.EventCodec.decode") is True
    assert index.resolves("ScopeFacts.tell") is True
    assert index.resolves("FactKey._replace") is True  # inherited from NamedTuple
    assert index.resolves("codec.py") is True
    assert index.resolves("orjson.dumps") is None
    assert index.resolves("app.ctx") is None
