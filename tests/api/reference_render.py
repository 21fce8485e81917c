"""The answer path as it was before bulk rendering (issue 17): the reference it must equal.

One object per answer all the way: the engine's answers decoded to constant tuples
and sorted by ``sort_key`` (the old ``Reasoner.solve``), a ``FactKey`` and an
``Answer`` per answer, a stored record looked up per answer (the old
``queries.ask`` / ``queries.match``), then two dicts per answer serialised by
orjson (the old ``/ask``, ``/infer`` and ``/query`` handlers). Kept here, out of the
package, so that ``test_render.py`` can compare the bulk renderer with it byte for
byte on random knowledge.
"""

from __future__ import annotations

from typing import Any

import orjson

from nocturnus.engine.evaluate import Program
from nocturnus.engine.index import sort_answers
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Const, Var, sort_key
from nocturnus.service.facts import FactKey, FactRecord
from nocturnus.service.projection import TenantState
from nocturnus.service.rulebook import Rulebook


class OldAnswer:
    def __init__(self, key: FactKey, confidence: float | None, record: FactRecord | None):
        self.key = key
        self.confidence = confidence
        self.record = record


def _solve(view: Any, program: Program, goal: Literal, min_confidence: float | None):
    """The old ``Reasoner.solve``: decode every row, then sort by ``sort_key``."""
    rows = view.reasoner._rows(program, goal, min_confidence)
    values = view.index.interner.values
    found = [(tuple(values[i] for i in row), conf) for row, conf in rows]
    if len(found) > 1:
        sort_answers(found, view.index.interner.has_floats)
    return found


def old_ask(
    state: TenantState,
    database_rules: Rulebook,
    goal: Literal,
    scope: str | None,
    *,
    min_confidence: float | None = None,
    limit: int | None = None,
) -> list[OldAnswer]:
    answers: list[OldAnswer] = []
    answered = 0
    arity = len(goal.args)
    for name in [scope] if scope is not None else state.scopes():
        view = state.views.get(name)
        if view is None:
            continue
        program = state.program_for(name, database_rules)
        found = _solve(view, program, goal, min_confidence)
        answered += bool(found)
        stored = view.index.relation((goal.predicate, goal.negated is True, arity))
        for args, conf in found:
            key = FactKey(name, goal.predicate, goal.negated, args)
            record = None if stored is None else state.visible(key)
            answers.append(OldAnswer(key, conf, record))
    if answered > 1:
        answers.sort(
            key=lambda a: (tuple(sort_key(v) for v in a.key.args), a.key.scope)
        )
    if limit is not None:
        answers = answers[:limit]
    return answers


def old_match(
    state: TenantState,
    predicate: str,
    negated: bool,
    pattern: tuple[Var | Const, ...],
    scope: str | None,
) -> list[FactRecord]:
    found: list[FactRecord] = []
    for name in [scope] if scope is not None else state.scopes():
        view = state.views.get(name)
        if view is None:
            continue
        for args in view.index.match(predicate, negated, pattern):
            record = state.record(FactKey(name, predicate, negated, args))
            if record is not None:
                found.append(record)
    found.sort(
        key=lambda r: (
            r.key.predicate,
            r.key.negated,
            tuple(sort_key(a) for a in r.key.args),
            r.key.scope,
        )
    )
    return found


def fact_atom(record: FactRecord) -> dict[str, Any]:
    key = record.key
    return {
        "predicate": key.predicate,
        "args": list(key.args),
        "negated": key.negated,
        "scope": key.scope,
        "confidence": record.confidence,
        "metadata": record.metadata,
        "createdAt": record.created_at,
        "validFrom": record.valid_from,
        "validUntil": record.valid_until,
        "ttl": record.ttl,
    }


def derived_atom(key: FactKey, confidence: float | None) -> dict[str, Any]:
    return {
        "predicate": key.predicate,
        "args": list(key.args),
        "negated": key.negated,
        "scope": key.scope,
        "confidence": confidence,
        "metadata": {},
        "createdAt": None,
        "validFrom": None,
        "validUntil": None,
        "ttl": None,
    }


def answer_atom(answer: OldAnswer) -> dict[str, Any]:
    if answer.record is not None:
        atom = fact_atom(answer.record)
        atom["confidence"] = answer.confidence
    else:
        atom = derived_atom(answer.key, answer.confidence)
    return atom


def binder(goal: Literal):
    positions: dict[str, int] = {}
    for position, term in enumerate(goal.args):
        if isinstance(term, Var) and not term.name.startswith("_"):
            positions.setdefault(term.name, position)
    named = tuple(positions.items())
    return lambda answer: {name: answer.key.args[at] for name, at in named}


def ask_body(goal: Literal, answers: list[OldAnswer]) -> bytes:
    """The old ``/ask`` response body."""
    bind = binder(goal)
    return orjson.dumps(
        {
            "results": [answer_atom(a) for a in answers],
            "bindings": [bind(a) for a in answers],
            "count": len(answers),
        }
    )


def infer_body(answers: list[OldAnswer]) -> bytes:
    """The old ``/infer`` response body (without proofs)."""
    return orjson.dumps([answer_atom(a) for a in answers])


def query_body(records: list[FactRecord]) -> bytes:
    """The old ``/query`` response body."""
    return orjson.dumps(
        {"results": [fact_atom(r) for r in records], "count": len(records)}
    )
