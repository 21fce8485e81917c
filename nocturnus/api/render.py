"""Domain results as the JSON shapes of API.md (shared by REST and MCP)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import orjson

from nocturnus.engine.order import PairRuns
from nocturnus.engine.proofs import Proof
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.service.answers import Answer, AnswerSet, ScopeAnswers
from nocturnus.service.facts import FactKey, FactRecord, plain_created, record_from
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
# distinct constant is encoded once by orjson, and the answers' text is laid out as a
# list of pieces (constant snippets and those encodings) by C-level iteration over
# columns, then joined once. Runs of binary rows sharing their first constant (a
# closure's rows, ``PairRuns``) render one join per run. Nothing is built per answer
# but the pieces' list slots. The bytes are exactly what orjson makes of the
# per-answer dicts above (tests/api/test_render.py holds the two together).

Slot = int | bytes
"""A row template's item: constant bytes, or the position of an argument."""

_COMMA = b","


class BulkAnswers:
    """The JSON of one answer set's answers, in answer order, as pieces to join."""

    def __init__(self, answers: AnswerSet) -> None:
        self.answers = answers
        self._encodings: dict[int, dict[int, bytes]] = {}
        self._confidences: dict[float, bytes] = {}

    def __len__(self) -> int:
        return len(self.answers)

    # -- the arrays ---------------------------------------------------------------

    def atoms(self, out: list[bytes]) -> None:
        """Append the answers as a JSON array of Atoms (``results`` of ``/ask``)."""
        self._array(out, self._atom_template, self._mixed_atoms)

    def bindings(self, goal: Literal, out: list[bytes]) -> None:
        """Append each answer's bindings of the goal's named variables (an array)."""
        positions = named_positions(goal)
        template: list[Slot] = []
        for n, (name, position) in enumerate(positions.items()):
            key = (b"{" if n == 0 else b",") + orjson.dumps(name) + b":"
            template += [key, position]
        template.append(b"}" if positions else b"{}")
        self._array(out, lambda p, part: template, None)

    def args(self, out: list[bytes]) -> None:
        """Append each answer's arguments as a JSON array (the ``args`` shape)."""
        arity = self.answers.arity
        template: list[Slot] = [b"["]
        for position in range(arity):
            template += [position, _COMMA]
        if arity:
            template.pop()
        template.append(b"]")
        self._array(out, lambda p, part: template, None)

    def scopes(self, out: list[bytes]) -> None:
        """Append each answer's scope (an array parallel to :meth:`args`)."""
        self._array(out, lambda p, part: [orjson.dumps(part.scope)], None)

    # -- layout ------------------------------------------------------------------

    def _array(
        self,
        out: list[bytes],
        template_of: Callable[[int, ScopeAnswers], list[Slot]],
        mixed: Callable[[int, ScopeAnswers], list[bytes]] | None,
    ) -> None:
        """Append a JSON array with one text per answer, made by the parts' templates.

        A part whose answers differ in kind (stored facts among derived ones) is
        rendered answer by answer through ``mixed``; so are answers of several
        scopes that interleave.
        """
        out.append(b"[")
        parts = self.answers.parts
        order = self.answers.order
        if order is not None:
            texts = [
                self._texts(p, part, template_of(p, part), mixed)
                for p, part in enumerate(parts)
            ]
            out.append(b",".join([texts[p][i] for p, i in order]))
            out.append(b"]")
            return
        first = True
        for p, part in enumerate(parts):
            if not part.rows:
                continue
            if not first:
                out.append(_COMMA)
            first = False
            if mixed is not None and part.stored is not None:
                out.append(b",".join(mixed(p, part)))
                continue
            template = self._filled(template_of(p, part), part)
            rows = part.rows
            if isinstance(rows, PairRuns) and _runs_fit(template):
                self._runs(out, p, part, rows, template)
            else:
                self._flat(out, p, part, template)
        out.append(b"]")

    def _filled(self, template: list[Slot], part: ScopeAnswers) -> list[Slot]:
        """``template`` with the confidence slot resolved (``null`` when none)."""
        if _CONFIDENCE not in template or part.confidences is not None:
            return template
        merged: list[Slot] = []
        for item in template:
            item = b"null" if item == _CONFIDENCE else item
            if isinstance(item, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] = merged[-1] + item
            else:
                merged.append(item)
        return merged

    def _streams(
        self, p: int, part: ScopeAnswers, template: list[Slot]
    ) -> list[Iterable[bytes]]:
        """One iterable per template item over the part's rows, in answer order."""
        streams: list[Iterable[bytes]] = []
        size = len(part.rows)
        for item in template:
            if isinstance(item, bytes):
                streams.append(repeat(item, size))
            elif item == _CONFIDENCE:
                confidences = part.confidences
                assert confidences is not None
                values = map(confidences.__getitem__, part.rows)
                streams.append(map(self._confidence, values))
            else:
                streams.append(self._column(p, part, item))
        return streams

    def _flat(
        self, out: list[bytes], p: int, part: ScopeAnswers, template: list[Slot]
    ) -> None:
        """Append the part's answers as pieces, a comma between two answers."""
        start = len(out)
        streams = self._streams(p, part, template)
        out.extend(chain.from_iterable(zip(repeat(_COMMA), *streams)))
        del out[start]

    def _texts(
        self,
        p: int,
        part: ScopeAnswers,
        template: list[Slot],
        mixed: Callable[[int, ScopeAnswers], list[bytes]] | None,
    ) -> list[bytes]:
        """One text per answer of the part (for interleaving scopes)."""
        if mixed is not None and part.stored is not None:
            return mixed(p, part)
        template = self._filled(template, part)
        return list(map(b"".join, zip(*self._streams(p, part, template))))

    def _runs(
        self,
        out: list[bytes],
        p: int,
        part: ScopeAnswers,
        rows: PairRuns,
        template: list[Slot],
    ) -> None:
        """Append binary answers run by run: one join over each run's partners.

        The template is ``A [first] B [second] C`` (either argument may be absent):
        within a run the text before the partner is the same for every answer.
        """
        get = self._encoded(p, part).__getitem__
        before: list[Slot] = []
        after = template
        varies = 1 in template
        if varies:
            at = template.index(1)
            before, after = template[:at], template[at + 1 :]
        elif 0 in template:
            before, after = template, []
        tail = _constants(after)
        if 0 in before:  # the prefix holds the run's first constant
            at = before.index(0)
            lead = _constants(before[:at])
            trail = _constants(before[at + 1 :])
            prefixes: Iterable[bytes] = (
                lead + get(first) + trail for first, _ in rows.runs
            )
        else:
            prefixes = repeat(_constants(before))
        extend = out.extend
        separator = tail + _COMMA
        for prefix, (_, partners) in zip(prefixes, rows.runs):
            if varies:
                extend(
                    (prefix, (separator + prefix).join(map(get, partners)), separator)
                )
            else:
                extend((_COMMA.join(repeat(prefix + tail, len(partners))), _COMMA))
        if varies:
            out[-1] = tail  # the last run ends without a comma
            return
        out.pop()  # the comma after the last run

    # -- encodings ---------------------------------------------------------------

    def _encoded(self, p: int, part: ScopeAnswers) -> dict[int, bytes]:
        """Each distinct constant id of the part's rows, encoded once."""
        encoded = self._encodings.get(p)
        if encoded is None:
            rows = part.rows
            ids: set[int] = set()
            if isinstance(rows, PairRuns):
                for first, partners in rows.runs:
                    ids.add(first)
                    ids.update(partners)
            else:
                for position in range(self.answers.arity):
                    ids.update(map(itemgetter(position), rows))
            values = part.values
            dumps = orjson.dumps
            encoded = self._encodings[p] = {i: dumps(values[i]) for i in ids}
        return encoded

    def _column(self, p: int, part: ScopeAnswers, position: int) -> Iterable[bytes]:
        get = self._encoded(p, part).__getitem__
        return map(get, map(itemgetter(position), part.rows))

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

    # -- atoms -------------------------------------------------------------------

    def _atom_head(self, part: ScopeAnswers) -> tuple[bytes, bytes]:
        """The constant text of an Atom before its args, and from its args to its
        confidence."""
        answers = self.answers
        head = b'{"predicate":' + orjson.dumps(answers.predicate) + b',"args":['
        mid = (
            b'],"negated":'
            + (b"true" if answers.negated else b"false")
            + b',"scope":'
            + orjson.dumps(part.scope)
            + b',"confidence":'
        )
        return head, mid

    def _atom_template(self, p: int, part: ScopeAnswers) -> list[Slot]:
        head, mid = self._atom_head(part)
        template: list[Slot] = [head]
        for position in range(self.answers.arity):
            template += [position, _COMMA]
        if self.answers.arity:
            template.pop()
        template += [mid, _CONFIDENCE, _DERIVED_TAIL]
        return template

    def _mixed_atoms(self, p: int, part: ScopeAnswers) -> list[bytes]:
        """One Atom text per answer of a part holding stored facts."""
        head, mid = self._atom_head(part)
        stored_rows = part.stored
        assert stored_rows is not None
        arity = self.answers.arity
        get = self._encoded(p, part).__getitem__
        texts: list[bytes] = []
        for i, (row, stored) in enumerate(zip(part.rows, stored_rows, strict=True)):
            confidence = self._confidence(part.confidence(i))
            created_at = None if stored is None else plain_created(stored)
            if stored is None or created_at is not None:
                args = _COMMA.join([get(row[position]) for position in range(arity)])
                if created_at is None:
                    tail = _DERIVED_TAIL
                else:
                    created = str(created_at).encode()
                    tail = (
                        b',"metadata":{},"createdAt":'
                        + created
                        + b',"validFrom":'
                        + created
                        + b',"validUntil":null,"ttl":null}'
                    )
                texts.append(b"".join((head, args, mid, confidence, tail)))
            else:
                key = FactKey(part.scope, self.answers.predicate, self.answers.negated,
                              part.args(i))
                atom = fact_atom(record_from(key, stored))
                atom["confidence"] = part.confidence(i)
                texts.append(orjson.dumps(atom))
        return texts


_CONFIDENCE = -1
"""The template slot of an answer's confidence."""

_DERIVED_TAIL = (
    b',"metadata":{},"createdAt":null,"validFrom":null,"validUntil":null,"ttl":null}'
)


def _constants(items: list[Slot]) -> bytes:
    """The constant pieces of part of a template, joined."""
    return b"".join([item for item in items if isinstance(item, bytes)])


def _runs_fit(template: list[Slot]) -> bool:
    """Whether a template renders run by run: positions 0 then 1, each at most once."""
    slots = [item for item in template if not isinstance(item, bytes)]
    return slots in ([], [0], [1], [0, 1])
