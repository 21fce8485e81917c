"""Answers in bulk: a goal's answers over scopes as interned rows, and pages of them.

An :class:`AnswerSet` keeps what the engine found as it found it (rows of interned
ids per scope, in answer order) plus, for answers that are stored facts, what the
scope stores for them. Nothing is built per answer until something asks for it:
the API renders the rows straight to JSON (``api/render.py``), and only callers
that need objects (proofs, aggregates) call :meth:`AnswerSet.answers`.

Paging is by position in answer order, which is total and deterministic: answers
sort by their arguments' constant order, then by scope. A cursor names the last
answer a page returned (its arguments and scope) and the query it belongs to, so
the same state and the same cursor give the same page, pages concatenate to the
whole answer, and after a change the next page simply starts after that answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from nocturnus.engine.proofs import Proof
from nocturnus.engine.table import Row
from nocturnus.engine.terms import Const, is_const, sort_key
from nocturnus.errors import ValidationError
from nocturnus.service.facts import FactKey, FactRecord, Stored, record_from


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer to a goal in one scope; ``record`` is set when it is a stored fact."""

    key: FactKey
    confidence: float | None
    record: FactRecord | None
    proof: Proof | None = None


@dataclass(frozen=True, slots=True)
class ScopeAnswers:
    """One scope's answers: interned rows in answer order and what renders them.

    ``values`` maps an id of ``rows`` to its constant (the scope's interner).
    ``confidences`` maps a row to its confidence (None: no row has one).
    ``stored`` gives per row what the scope stores for it (``facts.Stored``: read
    with ``facts.record_from`` or ``facts.plain_created``), or None for a derived
    answer; it is None as a whole when no answer is a stored fact.
    """

    scope: str
    rows: Sequence[Row]
    values: Sequence[Const]
    confidences: Mapping[Row, float | None] | None = None
    stored: Sequence[Stored | None] | None = None

    def args(self, i: int) -> tuple[Const, ...]:
        """The constants of answer ``i``."""
        values = self.values
        return tuple([values[v] for v in self.rows[i]])

    def confidence(self, i: int) -> float | None:
        """The confidence of answer ``i`` (None: the answer has none)."""
        confidences = self.confidences
        return None if confidences is None else confidences[self.rows[i]]

    def slice(self, indexes: Sequence[int]) -> ScopeAnswers:
        """The answers at ``indexes`` (in that order)."""
        rows = [self.rows[i] for i in indexes]
        stored = None if self.stored is None else [self.stored[i] for i in indexes]
        return ScopeAnswers(self.scope, rows, self.values, self.confidences, stored)

    def window(self, start: int, stop: int) -> ScopeAnswers:
        """The answers from ``start`` to ``stop`` (a list slice, no copy per row)."""
        stored = None if self.stored is None else self.stored[start:stop]
        rows = self.rows[start:stop]
        return ScopeAnswers(self.scope, rows, self.values, self.confidences, stored)


@dataclass(frozen=True, slots=True)
class AnswerSet:
    """A goal's answers in answer order, over one or more scopes (in scope order).

    ``order`` lists (part, row index) pairs when more than one part has rows:
    answers of several scopes interleave by their arguments. With one part, the
    part's rows are the order.
    """

    predicate: str
    negated: bool
    arity: int
    parts: tuple[ScopeAnswers, ...]
    order: Sequence[tuple[int, int]] | None = None

    def __len__(self) -> int:
        if self.order is not None:
            return len(self.order)
        return sum(len(part.rows) for part in self.parts)

    def entries(self) -> Iterator[tuple[ScopeAnswers, int]]:
        """(part, row index) of every answer, in answer order."""
        if self.order is None:
            for part in self.parts:
                for i in range(len(part.rows)):
                    yield part, i
            return
        parts = self.parts
        for p, i in self.order:
            yield parts[p], i

    def key(self, position: int) -> tuple[tuple[Any, ...], str]:
        """The order key of the answer at ``position``: argument keys, then scope."""
        part, i = self.locate(position)
        return tuple([sort_key(v) for v in part.args(i)]), part.scope

    def locate(self, position: int) -> tuple[ScopeAnswers, int]:
        """The part holding the answer at ``position`` and its index there."""
        if self.order is not None:
            p, i = self.order[position]
            return self.parts[p], i
        for part in self.parts:
            if position < len(part.rows):
                return part, position
            position -= len(part.rows)
        raise IndexError(position)

    def page(self, start: int, stop: int) -> AnswerSet:
        """The answers from ``start`` to ``stop`` in answer order."""
        if self.order is None:
            windows = []
            for part in self.parts:
                size = len(part.rows)
                if start < size and stop > 0:
                    windows.append(part.window(max(start, 0), min(stop, size)))
                start -= size
                stop -= size
            return AnswerSet(self.predicate, self.negated, self.arity, tuple(windows))
        picked = self.order[start:stop]
        chosen: dict[int, list[int]] = {}
        for p, i in picked:
            chosen.setdefault(p, []).append(i)
        kept = sorted(chosen)
        renumber = {p: n for n, p in enumerate(kept)}
        at: dict[int, int] = dict.fromkeys(kept, 0)
        order = []
        for p, _ in picked:
            order.append((renumber[p], at[p]))
            at[p] += 1
        parts = tuple(self.parts[p].slice(chosen[p]) for p in kept)
        merged = order if len(parts) > 1 else None
        return AnswerSet(self.predicate, self.negated, self.arity, parts, merged)

    def fact_key(self, part: ScopeAnswers, i: int) -> FactKey:
        """The key of answer ``i`` of ``part``, as a fact of that part's scope."""
        return FactKey(part.scope, self.predicate, self.negated, part.args(i))

    def answers(self) -> list[Answer]:
        """One :class:`Answer` per answer, in answer order (for proofs, aggregates)."""
        found = []
        for part, i in self.entries():
            key = self.fact_key(part, i)
            stored = None if part.stored is None else part.stored[i]
            record = None if stored is None else record_from(key, stored)
            found.append(Answer(key, part.confidence(i), record))
        return found

    def stored_keys(self) -> list[FactKey]:
        """The keys of the answers that are stored facts (their use is counted)."""
        keys = []
        for part in self.parts:
            if part.stored is None:
                continue
            for i, stored in enumerate(part.stored):
                if stored is not None:
                    keys.append(self.fact_key(part, i))
        return keys


def merge(
    predicate: str, negated: bool, arity: int, parts: Sequence[ScopeAnswers]
) -> AnswerSet:
    """The answers of several scopes (each in answer order, scopes sorted) as one set.

    Answers with equal arguments in two scopes come in scope order. Only when more
    than one scope has answers is an order built, from ranks of the constants over
    all scopes (each scope has its own ids).
    """
    answered = tuple(part for part in parts if part.rows)
    if len(answered) < 2:
        return AnswerSet(predicate, negated, arity, answered)
    keyed: list[tuple[Any, int, int]] = []
    for p, part in enumerate(answered):
        values = part.values
        ids = {i for row in part.rows for i in row}
        keyed.extend((sort_key(values[i]), p, i) for i in ids)
    keyed.sort(key=lambda item: item[0])
    ranks: list[dict[int, int]] = [{} for _ in answered]
    rank = -1
    previous: object = None
    for key, p, i in keyed:
        if rank < 0 or key != previous:
            rank += 1
            previous = key
        ranks[p][i] = rank
    entries = [
        (tuple([ranks[p][i] for i in row]), p, n)
        for p, part in enumerate(answered)
        for n, row in enumerate(part.rows)
    ]
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    order = [(p, n) for _, p, n in entries]
    return AnswerSet(predicate, negated, arity, answered, order)


# -- pages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after the answer ``args`` in ``scope``.

    ``ties`` counts the answers up to and including that one whose order key is
    equal to its key (distinct constants can tie: ``0.0`` and ``-0.0``), so a
    page boundary between tied answers is exact too. ``query`` fingerprints the
    question the cursor belongs to.
    """

    query: str
    args: tuple[Const, ...]
    scope: str
    ties: int = 1

    def encode(self) -> str:
        """The cursor as the opaque text a client sends back (see :meth:`decode`)."""
        body = orjson.dumps([self.query, list(self.args), self.scope, self.ties])
        return base64.urlsafe_b64encode(body).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """:raises ValidationError: not a cursor this server issued."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            query, args, scope, ties = orjson.loads(raw)
        except (binascii.Error, ValueError, TypeError):
            raise ValidationError(
                "cursor: not a cursor this server issued", field="cursor"
            ) from None
        if not (
            isinstance(query, str)
            and isinstance(args, list)
            and all(is_const(a) for a in args)
            and isinstance(scope, str)
            and type(ties) is int
            and ties >= 1
        ):
            raise ValidationError(
                "cursor: not a cursor this server issued", field="cursor"
            )
        return cls(query, tuple(args), scope, ties)


def fingerprint(*parts: Any) -> str:
    """A short stable digest of a question (what a cursor must be used with)."""
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of an answer set and the cursor of the next (None: the last page)."""

    answers: AnswerSet
    next_cursor: str | None


def page(
    answers: AnswerSet, query: str, limit: int | None, cursor: str | None
) -> Page:
    """The page of ``answers`` that ``limit`` and ``cursor`` select.

    :raises ValidationError: the cursor is malformed or belongs to another question.
    """
    start = 0
    if cursor is not None:
        after = Cursor.decode(cursor)
        if after.query != query:
            raise ValidationError(
                "cursor: it belongs to another question (predicate, args, scope or "
                "minConfidence differ)",
                field="cursor",
            )
        if len(after.args) != answers.arity:
            raise ValidationError("cursor: its answer has another arity", field="cursor")
        start = _after(answers, after)
    total = len(answers)
    stop = total if limit is None else min(total, start + limit)
    if start == 0 and stop == total:
        return Page(answers, None)
    selected = answers.page(start, stop)
    if stop >= total or stop <= start:
        return Page(selected, None)
    last_key = answers.key(stop - 1)
    ties = 1
    while stop - 1 - ties >= 0 and answers.key(stop - 1 - ties) == last_key:
        ties += 1
    part, i = answers.locate(stop - 1)
    following = Cursor(query, part.args(i), part.scope, ties)
    return Page(selected, following.encode())


def _after(answers: AnswerSet, cursor: Cursor) -> int:
    """The position just after the cursor's answer (binary search on order keys)."""
    target = (tuple([sort_key(v) for v in cursor.args]), cursor.scope)
    low, high = 0, len(answers)
    while low < high:
        middle = (low + high) // 2
        if answers.key(middle) < target:
            low = middle + 1
        else:
            high = middle
    position = low
    while (
        position < len(answers)
        and position - low < cursor.ties
        and answers.key(position) == target
    ):
        position += 1
    return position
