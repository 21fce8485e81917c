"""Literals, rules, their text forms and the comparison built-ins.

These are plain immutable values: the API layer builds them from JSON, analysis checks
them, evaluation compiles them. Nothing here knows about storage or evaluation order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from nocturnus.engine.terms import Const, Var, numeric_value

BUILTIN_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "lt": "lt",
        "gt": "gt",
        "le": "le",
        "ge": "ge",
        "eq": "eq",
        "neq": "neq",
        "<": "lt",
        ">": "gt",
        "<=": "le",
        ">=": "ge",
        "=": "eq",
        "!=": "neq",
    }
)
"""Accepted spellings of the comparison built-ins, mapped to their canonical name."""


def format_term(term: Var | Const) -> str:
    """Render one argument: variables as ``?x``, numbers exactly, strings as they are."""
    if isinstance(term, Var):
        return term.text()
    if isinstance(term, str):
        return term
    return repr(term)


@dataclass(frozen=True, slots=True)
class Literal:
    """An atom used as a fact pattern, a rule head, a body literal or a goal.

    ``negated`` selects the relation of explicitly negated facts (classical negation:
    ``NOT p(a)`` is a fact of its own). ``naf`` is negation as failure and only makes
    sense in a rule body: the literal holds when the atom cannot be derived.
    """

    predicate: str
    args: tuple[Var | Const, ...]
    negated: bool = False
    naf: bool = False

    @property
    def arity(self) -> int:
        """The number of arguments."""
        return len(self.args)

    @property
    def is_builtin(self) -> bool:
        """Whether the predicate names a comparison built-in."""
        return self.predicate in BUILTIN_NAMES

    @property
    def variables(self) -> tuple[Var, ...]:
        """The variables of the literal in order of first occurrence."""
        seen: dict[Var, None] = {}
        for arg in self.args:
            if isinstance(arg, Var):
                seen[arg] = None
        return tuple(seen)

    @property
    def is_ground(self) -> bool:
        """Whether no argument is a variable."""
        return not any(isinstance(arg, Var) for arg in self.args)

    def text(self) -> str:
        """Render as ``parent(alice, ?y)``, ``NOT p(a)`` or ``NAF p(a)``."""
        atom = f"{self.predicate}({', '.join(format_term(a) for a in self.args)})"
        if self.negated:
            atom = "NOT " + atom
        if self.naf:
            atom = "NAF " + atom
        return atom


@dataclass(frozen=True, slots=True)
class Rule:
    """A Horn rule ``head :- body`` with an optional certainty.

    ``confidence`` multiplies into the confidence of everything the rule derives;
    ``None`` means the rule adds no uncertainty of its own.
    """

    id: str
    head: Literal
    body: tuple[Literal, ...]
    confidence: float | None = None

    def text(self) -> str:
        """Render as ``grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)``."""
        head = self.head.text()
        if not self.body:
            return head
        return f"{head} :- {', '.join(lit.text() for lit in self.body)}"


def compare(name: str, left: Const, right: Const) -> bool:
    """Evaluate the built-in ``name`` (any accepted spelling) on two constants.

    Numbers and numeric strings compare by numeric value, so ``"500" = 500`` holds.
    When neither side is numeric, ``eq``/``neq`` compare exactly and the orderings
    compare the strings by code point. When exactly one side is numeric the values are
    of different kinds: ``eq`` and every ordering are false and ``neq`` is true.

    :raises KeyError: if ``name`` is not a built-in.
    """
    return compare_numbers(
        BUILTIN_NAMES[name], left, right, numeric_value(left), numeric_value(right)
    )


def compare_numbers(
    op: str, left: Const, right: Const, left_num: float | None, right_num: float | None
) -> bool:
    """Evaluate canonical built-in ``op`` given both values and their numeric meaning.

    Split out of :func:`compare` so evaluation can pass numeric values it already
    computed once per interned constant.
    """
    if left_num is not None and right_num is not None:
        a: float | str = left_num
        b: float | str = right_num
    elif left_num is None and right_num is None:
        if op == "eq":
            return left == right
        if op == "neq":
            return left != right
        a, b = str(left), str(right)
    else:
        return op == "neq"
    if op == "lt":
        return a < b  # type: ignore[operator]  # numbers compare with numbers (checked above)
    if op == "gt":
        return a > b  # type: ignore[operator]  # numbers compare with numbers (checked above)
    if op == "le":
        return a <= b  # type: ignore[operator]  # numbers compare with numbers (checked above)
    if op == "ge":
        return a >= b  # type: ignore[operator]  # numbers compare with numbers (checked above)
    if op == "eq":
        return a == b
    return a != b
