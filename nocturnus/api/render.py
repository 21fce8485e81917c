"""Domain results as the JSON shapes of API.md (shared by REST and MCP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from nocturnus.engine.proofs import Proof
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.service.facts import FactKey, FactRecord
from nocturnus.service.queries import Answer
from nocturnus.service.rulebook import RuleRecord


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
    """An inferred atom: never stored, so it has no time attributes or metadata."""
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


def answer_atom(answer: Answer, *, upstream_steps: bool = False) -> dict[str, Any]:
    """A stored fact keeps its attributes; a derived one has no time attributes.

    ``upstream_steps``: proof nodes also carry the upstream SDK's fields (``/infer``).
    """
    if answer.record is not None:
        atom = fact_atom(answer.record)
        atom["confidence"] = answer.confidence
    else:
        atom = derived_atom(answer.key, answer.confidence)
    if answer.proof is not None:
        atom["proof"] = proof_tree(answer.proof, answer.key.scope, upstream_steps=upstream_steps)
    return atom


def literal_atom(literal: Literal, scope: str | None) -> dict[str, Any]:
    return {
        "predicate": literal.predicate,
        "args": [f"?{a.name}" if isinstance(a, Var) else a for a in literal.args],
        "negated": literal.negated,
        "scope": scope,
    }


def proof_tree(proof: Proof, scope: str, *, upstream_steps: bool = False) -> orjson.Fragment:
    """The proof as nested JSON, built without recursion.

    Proofs over recursive rules can be thousands of levels deep (a chain of 20 000
    ancestors), beyond both Python's recursion limit and orjson's nesting limit, so the
    nodes are serialised one by one from an explicit stack and spliced into the answer as
    an already-encoded fragment. ``upstream_steps`` renders the upstream SDK's node
    (``step`` with ``bodyProofs``, ``substitution``) in place of ``children``.
    """
    parts: list[bytes] = []
    stack: list[Proof | bytes] = [proof]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            parts.append(item)
            continue
        node = _proof_node(item, scope)
        if upstream_steps:  # children nest in the step, as the SDK's ProofStep reads them
            step = orjson.dumps(upstream_step(node))[:-1]
            parts.append(
                orjson.dumps(node)[:-1]
                + b',"substitution":{},"step":'
                + step
                + b',"bodyProofs":['
            )
            stack.append(b"]}}")
        else:
            parts.append(orjson.dumps(node)[:-1] + b',"children":[')
            stack.append(b"]}")
        for i in range(len(item.children) - 1, -1, -1):
            stack.append(item.children[i])
            if i:
                stack.append(b",")
    return orjson.Fragment(b"".join(parts))


def _proof_node(proof: Proof, scope: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "goal": literal_atom(proof.goal, scope),
        "type": proof.type,
        "confidence": proof.confidence,
    }
    if proof.goal.naf:
        node["goal"]["naf"] = True
    if proof.rule is not None:
        node["rule"] = proof.rule.text()
        node["ruleId"] = proof.rule.id
    return node


UPSTREAM_STEP_TYPES = {"fact": "fact_match", "rule": "rule_application"}


def upstream_step(node: dict[str, Any]) -> dict[str, Any]:
    """The upstream SDK's ``step`` for one rendered proof node, without its body proofs.

    The published ``nocturnusai`` SDK validates ``/infer?proof=true`` nodes as
    ``{goal, step: {type, fact?, rule?, bodyProofs}, substitution}``: :func:`proof_tree`
    appends the node's sub-proofs as ``bodyProofs`` (instead of ``children``, never
    both, so the answer stays linear in size). ``naf`` and ``builtin`` steps keep their
    own names.
    """
    step: dict[str, Any] = {"type": UPSTREAM_STEP_TYPES.get(node["type"], node["type"])}
    if node["type"] == "fact":
        step["fact"] = node["goal"]
    if "rule" in node:
        step["rule"] = node["rule"]
    return step


def bindings(goal: Literal, answer: Answer) -> dict[str, Any]:
    """Each named variable of the goal mapped to its value in ``answer``."""
    return binder(goal)(answer)


def binder(goal: Literal) -> Callable[[Answer], dict[str, Any]]:
    """:func:`bindings` for many answers of one goal: variable positions found once."""
    positions: dict[str, int] = {}
    for position, term in enumerate(goal.args):
        if isinstance(term, Var) and not term.name.startswith("_"):
            positions.setdefault(term.name, position)
    if len(positions) == 1:
        ((name, at),) = positions.items()
        return lambda answer: {name: answer.key.args[at]}
    named = tuple(positions.items())
    return lambda answer: {name: answer.key.args[at] for name, at in named}


def rule_info(record: RuleRecord) -> dict[str, Any]:
    rule = record.rule
    return {
        "id": rule.id,
        "text": rule.text(),
        "head": literal_atom(rule.head, None),
        "body": [{**literal_atom(b, None), "naf": b.naf} for b in rule.body],
        "scope": record.scope,
        "confidence": rule.confidence,
        "level": record.level,
        "createdAt": record.created_at,
    }
