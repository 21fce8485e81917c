"""The text syntax: facts, rules, questions and the original product's commands.

Pure: text in, statement values out (and back to text), no I/O. :func:`parse` reads a
script, :func:`parse_goal` one question; :mod:`.text` writes knowledge back as text.
Executing statements is the service layer's job (``nocturnus.service.script``).
"""

from __future__ import annotations

from nocturnus.engine.syntax.lexer import ParseError
from nocturnus.engine.syntax.parser import parse, parse_goal
from nocturnus.engine.syntax.statements import (
    Ask,
    Atom,
    Expectation,
    Restrict,
    Retract,
    Statement,
    Teach,
    Tell,
    Test,
)

__all__ = [
    "Ask",
    "Atom",
    "Expectation",
    "ParseError",
    "Restrict",
    "Retract",
    "Statement",
    "Teach",
    "Tell",
    "Test",
    "parse",
    "parse_goal",
]
