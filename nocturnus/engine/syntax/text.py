"""Statements written back as text that :func:`~nocturnus.engine.syntax.parse` reads
as the same statements (``nocturnus export``, constraint listings).

Constants are written bare when they read back as the same constant (``alice``,
``what-if``, ``3``), otherwise quoted: ``"b c"``, ``"500"`` (a string, not the number
500), ``"NOT"``. Explicit negation is ``NOT p``, negation as failure ``NAF p``, and
comparisons are infix (``?y > 3``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from nocturnus.engine.rules import BUILTIN_NAMES
from nocturnus.engine.syntax.lexer import MAX_INT, MIN_INT
from nocturnus.engine.syntax.parser import COMMANDS
from nocturnus.engine.syntax.statements import Atom, Restrict, Statement, Teach, Tell
from nocturnus.engine.terms import Const

_BARE = re.compile(r"[A-Za-z0-9_]+(?:[-.:/@][A-Za-z0-9_]+)*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_VARIABLE = re.compile(r"\?[A-Za-z0-9_]*")
_KEYWORDS = frozenset({"NOT", "NAF", "not", "AND", "FORALL", *COMMANDS})


def word(value: str) -> str:
    """``value`` bare when it reads back as this word, else as a quoted string."""
    if (
        _BARE.fullmatch(value)
        and not _NUMBER.fullmatch(value)
        and value not in _KEYWORDS
    ):
        return value
    return json.dumps(value, ensure_ascii=False)


def constant(value: Const) -> str:
    """An argument: ``?x``, a number as written, or a string bare or quoted."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a constant")
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise ValueError(f"{value} does not fit in 64 bits")
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if _VARIABLE.fullmatch(value):
        return value
    return word(value)


def atom(value: Atom, *, braced: bool = False) -> str:
    """``p(a, "b c")``, ``NOT p(a)``, ``NAF p(a)``, ``?y > 3``.

    ``braced``: for the inside of ``RESTRICT {…}``, where ``NOT`` means negation as
    failure, explicit negation is written ``-p(a)``.
    """
    if value.predicate in BUILTIN_NAMES and len(value.args) == 2:
        left, right = value.args
        return f"{constant(left)} {value.predicate} {constant(right)}"
    text = f"{word(value.predicate)}({', '.join(constant(a) for a in value.args)})"
    if value.negated:
        if not braced:
            return "NOT " + text
        return ("- " if text[0].isdigit() else "-") + text  # `-0a(…)` would be a number
    if value.naf:
        return "NAF " + text
    return text


def statement(value: Statement) -> str:
    """One fact, rule or constraint as a line ending in ``.``.

    :raises TypeError: a question, retraction or test (only knowledge is written back).
    """
    if isinstance(value, Tell):
        return atom(value.atom) + _annotations(value.scope, value.attributes) + "."
    if isinstance(value, Teach):
        body = ", ".join(atom(p) for p in value.premises)
        annotations = _annotations(value.scope, value.attributes)
        return f"{atom(value.head)} :- {body}{annotations}."
    if isinstance(value, Restrict):
        body = " AND ".join(atom(p, braced=True) for p in value.premises)
        return f"RESTRICT {{ {body} }}."
    raise TypeError(f"{type(value).__name__} statements are not written back as text")


def _annotations(scope: str | None, attributes: dict[str, Any]) -> str:
    text = f" @{word(scope)}" if scope is not None else ""
    if attributes:
        text += " " + json.dumps(
            attributes, ensure_ascii=False, separators=(", ", ": ")
        )
    return text
