"""The internal, interned form of rules that evaluation, magic sets and proofs share.

User rules speak in constants and named relations; evaluation wants interned ids and
relation keys it can look up directly, including the synthetic relations the magic-set
rewrite introduces. Lowering a :class:`~nocturnus.engine.rules.Rule` to an
:class:`IRule` happens once per program and fact partition.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from nocturnus.engine.rules import BUILTIN_NAMES, Rule
from nocturnus.engine.terms import Interner, Var

POSITIVE = 0
"""A body step that must match a row (positive or explicitly negated relation)."""
ABSENT = 1
"""A negation-as-failure step: no row may match."""
COMPARE = 2
"""A comparison built-in."""

RelKey = Hashable
"""A relation: ``(predicate, negated, arity)`` for user relations, longer tuples for
the adorned and magic relations of the magic-set rewrite."""

Arg = Var | int
"""An argument after interning: a variable or the id of a constant."""


def adorned_key(rel: tuple[str, bool, int], bound: tuple[int, ...]) -> RelKey:
    """Key of the part of ``rel`` demanded with values at positions ``bound``."""
    return ("adorned", rel, bound)


def magic_key(rel: tuple[str, bool, int], bound: tuple[int, ...]) -> RelKey:
    """Key of the demand (magic) relation holding the requested bound values."""
    return ("magic", rel, bound)


def stored_key(rel: tuple[str, bool, int]) -> RelKey:
    """Key of a derived relation's stored facts alone (without what rules derive)."""
    return ("stored", rel)


def is_magic(rel: RelKey) -> bool:
    """Whether ``rel`` is a demand relation of the magic-set rewrite."""
    return isinstance(rel, tuple) and len(rel) == 3 and rel[0] == "magic"


def user_relation(rel: RelKey) -> tuple[str, bool, int]:
    """The user relation a (possibly adorned or stored-only) key stands for."""
    if isinstance(rel, tuple) and rel and rel[0] in ("adorned", "stored"):
        return rel[1]  # type: ignore[no-any-return]  # an adorned key holds its user relation
    return rel  # type: ignore[return-value]  # not adorned: a user relation


@dataclass(frozen=True, slots=True)
class Step:
    """One body literal in interned form.

    ``rel`` is the relation read (for :data:`COMPARE`, the canonical operator name).
    ``weight_order`` is the literal's position in the user's body when its confidence
    multiplies into the result, or ``None`` for steps that add none (demand lookups,
    NAF, comparisons). Products are taken in that order so every evaluation strategy
    rounds the same way. ``position`` is the literal's place in the user's body
    (``None`` for steps the rewrite adds), which proofs use to show premises in the
    user's order whatever the join order was.
    """

    kind: int
    rel: RelKey
    args: tuple[Arg, ...]
    weight_order: int | None = None
    position: int | None = None

    @property
    def variables(self) -> set[Var]:
        """The variables this step mentions."""
        return {a for a in self.args if isinstance(a, Var)}


@dataclass(frozen=True, slots=True)
class IRule:
    """A rule in interned form: head relation and arguments, body steps, certainty.

    ``origin`` points back at the user's rule (``None`` for rules the magic-set rewrite
    invents purely to compute demand).
    """

    head: RelKey
    head_args: tuple[Arg, ...]
    body: tuple[Step, ...]
    confidence: float | None
    origin: Rule | None


def lower_rule(rule: Rule, interner: Interner) -> IRule:
    """Translate a checked rule to interned form, interning its constants."""

    def arg(term: object) -> Arg:
        if isinstance(term, Var):
            return term
        return interner.intern(term)  # type: ignore[arg-type]  # not a Var: a constant

    steps: list[Step] = []
    for position, literal in enumerate(rule.body):
        args = tuple(arg(t) for t in literal.args)
        if literal.is_builtin:
            op = BUILTIN_NAMES[literal.predicate]
            steps.append(Step(COMPARE, op, args, None, position))
            continue
        rel = (literal.predicate, literal.negated, len(args))
        if literal.naf:
            steps.append(Step(ABSENT, rel, args, None, position))
        else:
            steps.append(Step(POSITIVE, rel, args, position, position))
    head = rule.head
    return IRule(
        head=(head.predicate, head.negated, len(head.args)),
        head_args=tuple(arg(t) for t in head.args),
        body=tuple(steps),
        confidence=rule.confidence,
        origin=rule,
    )
