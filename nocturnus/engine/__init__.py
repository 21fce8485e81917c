"""The pure inference engine: terms, facts, rules, analysis, evaluation and proofs.

Nothing here does I/O, reads the clock or imports other Nocturnus packages; the
service layer feeds it values and gets values back.
"""

from __future__ import annotations

from nocturnus.engine.analysis import ProgramError, check_program, check_rule
from nocturnus.engine.evaluate import Answer, Program, Reasoner
from nocturnus.engine.index import FactIndex
from nocturnus.engine.proofs import Proof
from nocturnus.engine.rules import BUILTIN_NAMES, Literal, Rule, compare
from nocturnus.engine.terms import Const, Var, numeric_value, parse_term, sort_key

__all__ = [
    "BUILTIN_NAMES",
    "Answer",
    "Const",
    "FactIndex",
    "Literal",
    "Program",
    "ProgramError",
    "Proof",
    "Reasoner",
    "Rule",
    "Var",
    "check_program",
    "check_rule",
    "compare",
    "numeric_value",
    "parse_term",
    "sort_key",
]
