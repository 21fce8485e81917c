"""A tiny text syntax for writing engine tests: ``anc(?x, ?y) :- parent(?x, ?z)``.

Numbers are written bare (``500``, ``2.5``), strings bare or double-quoted (``"500"``
is the string), ``NOT`` marks explicit negation and ``NAF`` negation as failure.
"""

from __future__ import annotations

import itertools
import re

from nocturnus.engine.rules import Literal, Rule
from nocturnus.engine.terms import Const, Var, parse_term

_ids = itertools.count(1)
_LITERAL = re.compile(r"\s*(NAF\s+)?(NOT\s+)?([^\s(]+)\((.*?)\)\s*")


def term(text: str) -> Var | Const:
    """Parse one argument."""
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?\d+\.\d*(e[+-]?\d+)?", text):
        return float(text)
    return parse_term(text)


def lit(text: str) -> Literal:
    """Parse one literal such as ``NAF NOT p(a, ?x)``."""
    match = _LITERAL.fullmatch(text)
    assert match, text
    naf, neg, predicate, args = match.groups()
    parts = [a for a in args.split(",")] if args.strip() else []
    return Literal(predicate, tuple(term(a) for a in parts), bool(neg), bool(naf))


def rule(
    text: str, confidence: float | None = None, rule_id: str | None = None
) -> Rule:
    """Parse ``head :- body, body`` into a Rule."""
    head, _, body = text.partition(":-")
    literals = (
        [lit(m.group(0)) for m in _LITERAL.finditer(body)] if body.strip() else []
    )
    return Rule(rule_id or f"r{next(_ids)}", lit(head), tuple(literals), confidence)
