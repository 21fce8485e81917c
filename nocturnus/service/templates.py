"""Rule templates (``POST /assert/template``): named argument forms made into rules.

The original product's template types, each made from the predicates given for its
roles, over the same variables in every literal (``args: ["x", "y"]`` → ``p(?x, ?y)``):

- ``SYLLOGISM``, ``MODUS_PONENS`` (P, Q): ``Q :- P``
- ``MODUS_TOLLENS`` (P, Q): ``Q :- P`` and ``NOT P :- NOT Q``
- ``FACT_CHAIN``, ``HYPOTHETICAL_SYLLOGISM`` (two or more roles, in role-name order):
  each predicate from the one before
- ``DISJUNCTIVE_SYLLOGISM`` (P, Q): ``Q :- NOT P`` and ``P :- NOT Q``
- ``CONSTRUCTIVE_DILEMMA`` (P, Q, R, S): ``Q :- P`` and ``S :- R``
- ``DESTRUCTIVE_DILEMMA`` (P, Q, R, S): ``NOT P :- NOT Q`` and ``NOT R :- NOT S``
- ``CAUSAL_ARGUMENT`` (CAUSE, EFFECT): ``EFFECT :- CAUSE``
- ``DEFINITIONAL_ARGUMENT`` (FEATURE, CATEGORY): ``CATEGORY :- FEATURE``
- ``PRACTICAL_ARGUMENT`` (CONCLUSION, EVIDENCE, EXCEPTION):
  ``CONCLUSION :- EVIDENCE, NAF EXCEPTION``
- ``EVALUATIVE_ARGUMENT`` (EVALUATION, CRITERIA): ``EVALUATION :- CRITERIA``

``NOT`` is explicit negation (the negated fact must be stored), ``NAF`` negation as
failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from nocturnus.errors import ValidationError
from nocturnus.service.commands import TeachRule

# (head role, head negated, [(body role, negated, naf), ...]) per rule of each type
_Shape = tuple[str, bool, tuple[tuple[str, bool, bool], ...]]
_SHAPES: dict[str, tuple[_Shape, ...]] = {
    "SYLLOGISM": (("Q", False, (("P", False, False),)),),
    "MODUS_PONENS": (("Q", False, (("P", False, False),)),),
    "MODUS_TOLLENS": (
        ("Q", False, (("P", False, False),)),
        ("P", True, (("Q", True, False),)),
    ),
    "DISJUNCTIVE_SYLLOGISM": (
        ("Q", False, (("P", True, False),)),
        ("P", False, (("Q", True, False),)),
    ),
    "CONSTRUCTIVE_DILEMMA": (
        ("Q", False, (("P", False, False),)),
        ("S", False, (("R", False, False),)),
    ),
    "DESTRUCTIVE_DILEMMA": (
        ("P", True, (("Q", True, False),)),
        ("R", True, (("S", True, False),)),
    ),
    "CAUSAL_ARGUMENT": (("EFFECT", False, (("CAUSE", False, False),)),),
    "DEFINITIONAL_ARGUMENT": (("CATEGORY", False, (("FEATURE", False, False),)),),
    "PRACTICAL_ARGUMENT": (
        ("CONCLUSION", False, (("EVIDENCE", False, False), ("EXCEPTION", False, True))),
    ),
    "EVALUATIVE_ARGUMENT": (("EVALUATION", False, (("CRITERIA", False, False),)),),
}
CHAINS = ("FACT_CHAIN", "HYPOTHETICAL_SYLLOGISM")
TEMPLATE_TYPES = (*_SHAPES, *CHAINS)
ROLES = tuple(
    sorted(
        {chr(c) for c in range(ord("A"), ord("Z") + 1)}
        | {
            role
            for shapes in _SHAPES.values()
            for head, _, body in shapes
            for role in (head, *(b[0] for b in body))
        }
    )
)
"""Role names a template may be given: single letters (chains use any, in order) and
the named roles of the argument types."""


def expand(
    kind: str, roles: Mapping[str, Any], variables: Sequence[str], scope: str | None
) -> list[TeachRule]:
    """The rules of template ``kind`` over ``variables`` (``x`` or ``?x``).

    :raises ValidationError: an unknown type, a missing role, or a chain of fewer than
        two predicates.
    """
    args = [v if v.startswith("?") else "?" + v for v in variables]
    for role, predicate in roles.items():
        if not isinstance(predicate, str) or not 0 < len(predicate) <= 255:
            raise ValidationError(
                f"predicates.{role}: must be a predicate name of 1 to 255 characters",
                field=f"predicates.{role}",
            )

    def literal(role: str, negated: bool = False, naf: bool = False) -> dict[str, Any]:
        return {
            "predicate": roles[role],
            "args": list(args),
            "negated": negated,
            "naf": naf,
        }

    if kind in CHAINS:
        chain = sorted(roles)
        if len(chain) < 2:
            raise ValidationError(
                f"{kind}: needs at least two predicates, in role-name order",
                field="predicates",
            )
        return [
            TeachRule(head=literal(after), body=(literal(before),), scope=scope)
            for before, after in pairwise(chain)
        ]
    shapes = _SHAPES.get(kind)
    if shapes is None:
        raise ValidationError(f"type: unknown template {kind!r}", field="type")
    needed = sorted(
        {head for head, _, _ in shapes} | {r for _, _, b in shapes for r, _, _ in b}
    )
    missing = [role for role in needed if role not in roles]
    if missing:
        raise ValidationError(
            f"predicates: {kind} needs the roles {', '.join(needed)}; "
            f"missing {', '.join(missing)}",
            field="predicates",
        )
    return [
        TeachRule(
            head=literal(head, negated=negated),
            body=tuple(literal(role, negated=neg, naf=naf) for role, neg, naf in body),
            scope=scope,
        )
        for head, negated, body in shapes
    ]
