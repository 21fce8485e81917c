"""Domain results as the JSON shapes of API.md (shared by REST and MCP)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import orjson

from nocturnus.engine.proofs import Proof
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.service.answers import Answer, AnswerSet, ScopeAnswers
from nocturnus.service.facts import FactKey, FactRecord
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


def named_positions(goal: Literal) -> dict[str, int]:
    """Each named variable of ``goal`` and the first position holding it."""
    positions: dict[str, int] = {}
    for position, term in enumerate(goal.args):
        if isinstance(term, Var) and not term.name.startswith("_"):
            positions.setdefault(term.name, position)
    return positions


def binder(goal: Literal) -> Callable[[Answer], dict[str, Any]]:
    """:func:`bindings` for many answers of one goal: variable positions found once."""
    positions = named_positions(goal)
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


# -- answers in bulk (issue 17) --------------------------------------------------------
#
# A large answer is rendered from the engine's interned rows straight to bytes: each
# distinct constant is encoded once by orjson, and an answer's text is put together
# from those encodings and constant pieces by C-level joins over columns, never
# through an object or a dict per answer. The bytes are exactly what orjson makes of
# the per-answer dicts above (tests/api/test_render.py holds the two together).


class BulkAnswers:
    """The JSON texts of one answer set's answers, in answer order, made lazily."""

    def __init__(self, answers: AnswerSet) -> None:
        self.answers = answers
        self._encodings: list[dict[int, bytes]] = []
        self._confidences: dict[float, bytes] = {}

    def __len__(self) -> int:
        return len(self.answers)

    def _texts(self, per_part: Callable[[int, ScopeAnswers], Sequence[bytes]]) -> bytes:
        """A JSON array of one text per answer, the parts interleaved in answer order."""
        parts = self.answers.parts
        texts = [per_part(p, part) for p, part in enumerate(parts)]
        if not texts:
            return b"[]"
        order = self.answers.order
        if order is None:
            joined = b",".join(texts[0]) if len(texts) == 1 else b",".join(
                [b",".join(t) for t in texts if t]
            )
        else:
            joined = b",".join([texts[p][i] for p, i in order])
        return b"[" + joined + b"]"

    def _encoded(self, p: int, part: ScopeAnswers) -> dict[int, bytes]:
        """Each distinct constant id of the part's rows, encoded once."""
        while len(self._encodings) <= p:
            self._encodings.append({})
        encoded = self._encodings[p]
        if not encoded and part.rows:
            ids: set[int] = set()
            for position in range(self.answers.arity):
                ids.update(map(itemgetter(position), part.rows))
            values = part.values
            dumps = orjson.dumps
            encoded.update({i: dumps(values[i]) for i in ids})
        return encoded

    def _column(self, p: int, part: ScopeAnswers, position: int) -> Iterable[bytes]:
        return map(self._encoded(p, part).__getitem__, map(itemgetter(position), part.rows))

    def _args(self, p: int, part: ScopeAnswers) -> Iterable[bytes]:
        """Each answer's arguments as the inside of a JSON array."""
        arity = self.answers.arity
        if arity == 0:
            return repeat(b"", len(part.rows))
        if arity == 1:
            return self._column(p, part, 0)
        columns = [self._column(p, part, position) for position in range(arity)]
        return map(b",".join, zip(*columns))

    def _confidence(self, value: float | None) -> bytes:
        """``value`` encoded; nonzero floats once each (equal ones encode alike).

        Ints, ``0.0`` and ``-0.0`` are encoded each time: as dict keys they
        equal floats whose text differs.
        """
        if value is None:
            return b"null"
        if type(value) is float and value:
            found = self._confidences.get(value)
            if found is None:
                found = self._confidences[value] = orjson.dumps(value)
            return found
        return orjson.dumps(value)

    def atoms(self) -> bytes:
        """The answers as a JSON array of Atoms (``results`` of ``/ask``)."""
        return self._texts(self._atoms)

    def _atoms(self, p: int, part: ScopeAnswers) -> Sequence[bytes]:
        answers = self.answers
        head = (
            b'{"predicate":' + orjson.dumps(answers.predicate) + b',"args":['
        )
        mid = (
            b'],"negated":'
            + (b"true" if answers.negated else b"false")
            + b',"scope":'
            + orjson.dumps(part.scope)
            + b',"confidence":'
        )
        derived = b',"metadata":{},"createdAt":null,"validFrom":null,"validUntil":null,"ttl":null}'
        args = self._args(p, part)
        if part.confidences is None:
            confidences: Iterable[bytes] = repeat(b"null")
        else:
            confidences = map(
                self._confidence, map(part.confidences.__getitem__, part.rows)
            )
        if part.stored is None:
            return list(
                map(
                    b"".join,
                    zip(repeat(head), args, repeat(mid), confidences, repeat(derived)),
                )
            )
        texts: list[bytes] = []
        for i, (arg_text, confidence, stored) in enumerate(
            zip(args, confidences, part.stored)
        ):
            if stored is None:
                texts.append(head + arg_text + mid + confidence + derived)
            elif type(stored) is int:
                created = str(stored).encode()
                texts.append(
                    b"".join(
                        (
                            head,
                            arg_text,
                            mid,
                            confidence,
                            b',"metadata":{},"createdAt":',
                            created,
                            b',"validFrom":',
                            created,
                            b',"validUntil":null,"ttl":null}',
                        )
                    )
                )
            else:
                atom = fact_atom(stored)  # type: ignore[arg-type]
                atom["confidence"] = part.confidence(i)
                texts.append(orjson.dumps(atom))
        return texts

    def bindings(self, goal: Literal) -> bytes:
        """Each answer's bindings of the goal's named variables, as a JSON array."""
        positions = named_positions(goal)
        if not positions:
            return b"[" + b",".join(repeat(b"{}", len(self))) + b"]"
        keys = [b"," + orjson.dumps(name) + b":" for name in positions]
        keys[0] = b"{" + keys[0][1:]

        def per_part(p: int, part: ScopeAnswers) -> Sequence[bytes]:
            pieces: list[Iterable[bytes]] = []
            for key, position in zip(keys, positions.values(), strict=True):
                pieces.append(repeat(key))
                pieces.append(self._column(p, part, position))
            pieces.append(repeat(b"}"))
            return list(map(b"".join, zip(*pieces)))

        return self._texts(per_part)

    def args(self) -> bytes:
        """Each answer's arguments as a JSON array (the compact ``args`` shape)."""
        return self._texts(
            lambda p, part: list(
                map(b"".join, zip(repeat(b"["), self._args(p, part), repeat(b"]")))
            )
        )

    def scopes(self) -> bytes:
        """Each answer's scope, as a JSON array parallel to :meth:`args`."""
        return self._texts(
            lambda p, part: list(repeat(orjson.dumps(part.scope), len(part.rows)))
        )
