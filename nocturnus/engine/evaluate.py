"""Answering goals: checked programs, goal-directed evaluation, caching, proofs.

:class:`Program` is a checked, stratified rule set; :class:`Reasoner` answers goals
over one :class:`~nocturnus.engine.index.FactIndex`, running the semi-naive fixpoint
of :mod:`nocturnus.engine.fixpoint` on what each goal needs. Confidence is tracked
(max-product, see there) only when some relevant fact or rule carries one.

Bound goals go through the magic-set rewrite (:mod:`nocturnus.engine.magic`); unbound
ones, and relations under NAF, are evaluated completely. Results are cached in the
FactIndex's ``cache``, which the index empties on every change, and keyed by the
program's content, so a cached answer is never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import is_not, itemgetter
from typing import Any

from nocturnus.engine.analysis import ProgramError, check_program
from nocturnus.engine.budget import Budget
from nocturnus.engine.collector import collector_paused
from nocturnus.engine.fixpoint import EMPTY, Evaluation, RowLimitExceeded, Source
from nocturnus.engine.grouped import GroupedTable
from nocturnus.engine.index import FactIndex, Relation
from nocturnus.engine.ir import (
    COMPARE,
    POSITIVE,
    IRule,
    RelKey,
    lower_rule,
    user_relation,
)
from nocturnus.engine.joins import comparison
from nocturnus.engine.magic import MagicProgram, rewrite
from nocturnus.engine.order import sort_pairs, sort_rows
from nocturnus.engine.prepared import Plans, PreparedGoal, placeholders, rule_constants
from nocturnus.engine.proofs import Proof, ProofBuilder, ProofSource
from nocturnus.engine.rules import Literal, Rule
from nocturnus.engine.schedule import schedule
from nocturnus.engine.table import Row, Table
from nocturnus.engine.terms import Const, Interner, Var, const_key

_NONES = repeat(None)
_MAGIC_RESULTS_KEPT = 64  # distinct bound goals cached per program and fact version


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer to a goal: its arguments with variables filled, and confidence."""

    args: tuple[Const, ...]
    confidence: float | None


@dataclass(frozen=True, slots=True)
class Matches:
    """The answers to a goal as interned rows, in answer order (bulk form).

    ``confidences`` maps each row to its confidence; None when no row has one.
    Rows are tuples of ids of the reasoner's interner: a caller renders them
    without building a constant tuple per answer.
    """

    rows: Sequence[Row]
    confidences: Mapping[Row, float | None] | None


class Program:
    """An immutable, checked, stratified rule set. ``Program(rules)`` raises ProgramError.

    Checking happens once here so that every later evaluation can assume range
    restriction and stratification.
    """

    __slots__ = ("by_head", "has_confidence", "key", "rules")

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        check_program(self.rules)
        self.by_head: dict[tuple[str, bool, int], list[Rule]] = {}
        for rule in self.rules:
            head = rule.head
            key = (head.predicate, head.negated, len(head.args))
            self.by_head.setdefault(key, []).append(rule)
        self.has_confidence = any(r.confidence is not None for r in self.rules)
        self.key = tuple(_rule_key(rule) for rule in self.rules)

    def __repr__(self) -> str:
        return f"Program({len(self.rules)} rules)"


def _rule_key(rule: Rule) -> tuple[Any, ...]:
    """Identify a rule by content, keeping 500, 500.0 and "500" apart."""

    def literal(lit: Literal) -> tuple[Any, ...]:
        args = tuple(
            ("v", a.name) if isinstance(a, Var) else ("c", const_key(a))
            for a in lit.args
        )
        return (lit.predicate, lit.negated, lit.naf, args)

    return (
        rule.id,
        literal(rule.head),
        tuple(literal(b) for b in rule.body),
        rule.confidence,
    )


@dataclass(frozen=True, slots=True)
class Lowered:
    """A program's rules in interned form (over one interner) and their constants.

    Read only: every evaluation of the program over that interner shares them.
    """

    interner: Interner
    rules: dict[RelKey, list[IRule]]
    constants: frozenset[int]

    @classmethod
    def of(cls, program: Program, interner: Interner) -> Lowered:
        rules: dict[RelKey, list[IRule]] = {
            rel: [lower_rule(rule, interner) for rule in group]
            for rel, group in program.by_head.items()
        }
        return cls(interner, rules, rule_constants(rules))


class _State:
    """What one program has computed over one version of one FactIndex."""

    __slots__ = (
        "answers",
        "complete",
        "constants",
        "has_confidence",
        "key",
        "rules",
    )

    def __init__(self, program: Program, lowered: Lowered) -> None:
        self.key = program.key
        self.rules = lowered.rules
        self.constants = lowered.constants
        self.has_confidence = program.has_confidence
        self.complete: dict[RelKey, Table] = {}
        self.answers: dict[Any, Table] = {}


class Reasoner:
    """Answers goals over one FactIndex.

    Evaluated relations are cached per (program content, ``facts.version``) inside
    ``facts.cache``, which the index clears on every effective change; so a Reasoner
    is cheap to create per request and never serves stale answers.

    ``observe``, if set, is told the strategy each evaluated component's plan comes
    from (the differential tests count them). ``budget``, if set, bounds every
    evaluation this reasoner runs (:mod:`~nocturnus.engine.budget`): a request makes
    a reasoner of its own to carry its budget.

    :raises BudgetExceeded: from any question, past the budget; nothing of the
        stopped evaluation is cached.
    """

    def __init__(
        self,
        facts: FactIndex,
        observe: Callable[[str], None] | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.facts = facts
        self.observe = observe
        self.budget = budget

    def solve(
        self,
        program: Program,
        goal: Literal,
        *,
        min_confidence: float | None = None,
        limit: int | None = None,
    ) -> list[Answer]:
        """Return every distinct answer to ``goal``, sorted by :func:`sort_key`.

        ``goal.negated`` asks the relation of negated facts. Answers below
        ``min_confidence`` are dropped (``None`` counts as 1.0); ``limit`` keeps the
        first answers of the sorted list.

        :raises ProgramError: if the goal is a built-in or uses negation as failure.
        """
        found = self.matches(program, goal, min_confidence=min_confidence)
        rows = found.rows if limit is None else found.rows[: max(limit, 0)]
        decode = self.facts.interner.decode
        confidences = found.confidences
        # Building tens of thousands of answers would wake the collector every few
        # hundred allocations, each time re-scanning the answers built so far.
        with collector_paused():
            if confidences is None:
                return [_answer(decode(row), None) for row in rows]
            return [_answer(decode(row), confidences[row]) for row in rows]

    def matches(
        self,
        program: Program,
        goal: Literal,
        *,
        min_confidence: float | None = None,
        plans: Plans | None = None,
    ) -> Matches:
        """Every distinct answer to ``goal`` as interned rows, in answer order.

        What :meth:`solve` answers, without a constant tuple or an object per
        answer: a large answer is rendered straight from these rows. ``plans``
        keeps prepared plans across writes (:mod:`~nocturnus.engine.prepared`).

        :raises ProgramError: as :meth:`solve`.
        """
        with collector_paused():
            found = self._evaluate(program, goal, plans)
            if found is None:
                return Matches([], None)
            source, pattern, bound = found
            interner = self.facts.interner
            if (
                isinstance(source, GroupedTable)
                and not bound
                and len(set(pattern)) == 2
                and next(iter(source.by)) == 0
            ):
                # A grouped table holds no confidence: none is below any minimum.
                return Matches(sort_pairs(source.by[0], interner), None)
            rows = source.rows
            candidates = _match(source, pattern, bound)
            if min_confidence is not None:
                candidates = [
                    row
                    for row in candidates
                    if (1.0 if (conf := rows[row]) is None else conf) >= min_confidence
                ]
            ordered = sort_rows(candidates, len(pattern), interner)
            if isinstance(source, Relation):
                annotated = source.annotated > 0
            else:
                annotated = any(map(is_not, map(rows.__getitem__, ordered), _NONES))
            return Matches(ordered, rows if annotated else None)

    def count(
        self, program: Program, goal: Literal, *, min_confidence: float | None = None
    ) -> int:
        """Return how many distinct answers ``goal`` has, without building them.

        :raises ProgramError: as :meth:`solve`.
        """
        if min_confidence is not None:
            return len(self._rows(program, goal, min_confidence))
        found = self._evaluate(program, goal)
        if found is None:
            return 0
        source, pattern, bound = found
        if not bound and len(set(pattern)) == len(pattern):
            return len(source)  # no tuples needed (a grouped closure stays grouped)
        return len(_match(source, pattern, bound))

    def explain(self, program: Program, fact: Literal) -> Proof | None:
        """Return a best-confidence proof tree of a ground fact, or None if underivable.

        Runs a goal-directed evaluation of exactly this fact (the magic-set rewrite
        with every argument bound, recording ranks), so its cost follows what the
        proof needs rather than the size of the derived relations.

        :raises ProgramError: if the fact is not ground, is a built-in or uses NAF.
        """
        return self.explain_all(program, [fact])[0]

    def explain_all(
        self, program: Program, facts: Sequence[Literal]
    ) -> list[Proof | None]:
        """Proofs of several ground facts of one relation (``withProof`` answers).

        The first fact is proved alone, as :meth:`explain` does; then the next 2,
        4, 8, ... together, by one evaluation of the rewrite seeded with all of the
        batch: demand they share is derived once (the 812 answers of
        ``anc(?x, n19999)`` all demand the same rows) and sub-proofs they share are
        built once (:class:`~nocturnus.engine.proofs.ProofBuilder`). A batch of n may
        derive (n + 2) / 2 times the rows the first fact cost alone (about half
        what its facts would cost alone, for large n); past that their demands are not
        shared, the batch is abandoned and every remaining fact is proved alone, so the
        detour costs at most one fact's evaluation.

        :raises ProgramError: if a fact is not ground, is a built-in or uses NAF,
            or the facts are not all of one relation.
        """
        if not facts:
            return []
        first = facts[0]
        rel = (first.predicate, first.negated, len(first.args))
        for fact in facts:
            _check_goal(fact)
            if not fact.is_ground:
                raise ProgramError(f"explain needs a ground fact, got {fact.text()}")
            if (fact.predicate, fact.negated, len(fact.args)) != rel:
                raise ProgramError("explain_all needs facts of one relation")
        state = self._state(program)
        lookup_all = self.facts.interner.lookup_all
        rows = [lookup_all(fact.args) for fact in facts]  # type: ignore[arg-type]  # a stored fact's args are constants
        if rel not in state.rules:
            stored = self.facts.relation(rel)
            return [
                Proof(fact, "fact", None, (), stored.rows[row])
                if stored is not None and row is not None and row in stored.rows
                else None
                for fact, row in zip(facts, rows, strict=True)
            ]
        with collector_paused():  # proof trees are many small, acyclic objects
            proofs = self._prove_batches(state, rel, rows)
        return [None if row is None else proofs[row] for row in rows]

    def _prove_batches(
        self, state: _State, rel: tuple[str, bool, int], rows: list[Row | None]
    ) -> dict[Row, Proof | None]:
        """Proofs of ``rows``: the first alone, then growing batches (explain_all)."""
        pending = list(dict.fromkeys(row for row in rows if row is not None))
        proofs: dict[Row, Proof | None] = {}
        size, cost, shared = 1, 0, True
        while pending:
            batch, pending = pending[:size], pending[size:]
            try:
                budget = None if len(batch) == 1 else cost * (len(batch) + 2) // 2 + 64
                prove, derived = self._prover(state, rel, batch, max_rows=budget)
            except RowLimitExceeded:  # no sharing: one evaluation per fact
                pending = batch + pending
                shared = False
                size = 1
                continue
            for row in batch:
                proofs[row] = prove(row)
            if len(batch) == 1:
                cost = max(cost, derived)
            if shared:
                size *= 2
        return proofs

    def _prover(
        self,
        state: _State,
        rel: tuple[str, bool, int],
        seeds: list[Row],
        max_rows: int | None = None,
    ) -> tuple[Callable[[Row], Proof | None], int]:
        """Evaluate the fully bound rewrite of ``rel`` for ``seeds`` with ranks.

        Returns what builds a proof of one seed row from it, and the rows derived.

        :raises RowLimitExceeded: past ``max_rows``.
        """
        rewritten = rewrite(
            rel,
            tuple(range(rel[2])),
            state.rules,
            lambda r: r not in state.rules,
            lambda r: self.facts.relation(r) is not None,  # type: ignore[arg-type]  # rules name user relations
            self_contained=True,
            seed=seeds[0] if len(seeds) == 1 else None,
        )
        if rewritten.complete:
            self._complete(state, rewritten.complete)
        ranks: dict[RelKey, dict[Row, int]] = {}
        resolve = self._resolver(state)
        evaluation = Evaluation(
            resolve,
            self.facts.interner,
            self._weighted_for(state, [rel]),
            ranks,
            max_rows=max_rows,
            budget=self.budget,
            observe=self.observe,
        )
        evaluation.run(rewritten.rules, {rewritten.seed: dict.fromkeys(seeds)})
        by_head: dict[RelKey, list[IRule]] = {}
        for rule in rewritten.rules:
            by_head.setdefault(rule.head, []).append(rule)
        if rewritten.answer not in by_head:
            return (lambda row: None), evaluation.derived
        builder = ProofBuilder(
            ProofSource(
                interner=self.facts.interner,
                rules=by_head,
                tables=evaluation.tables,
                ranks=ranks,
                resolve=resolve,
                comparisons=lambda op: comparison(op, self.facts.interner),
            )
        )
        answer = rewritten.answer
        return (lambda row: builder.proof(answer, row)), evaluation.derived

    # -- internals ---------------------------------------------------------------

    def _state(self, program: Program, plans: Plans | None = None) -> _State:
        key = ("nocturnus.engine", program.key)
        state = self.facts.cache.get(key)
        if state is None:
            state = _State(program, self._lowered(program, plans))
            self.facts.cache[key] = state
        return state

    def _lowered(self, program: Program, plans: Plans | None) -> Lowered:
        """The program's interned rules, prepared once per interner with ``plans``."""
        interner = self.facts.interner
        if plans is None:
            return Lowered.of(program, interner)
        key = ("lowered", program.key, id(interner))
        found: Lowered | None = plans.get(key)
        if found is None or found.interner is not interner:
            found = Lowered.of(program, interner)
            plans.put(key, found)
        return found

    def _rows(
        self, program: Program, goal: Literal, min_confidence: float | None
    ) -> list[tuple[Row, float | None]]:
        found = self._evaluate(program, goal)
        if found is None:
            return []
        source, pattern, bound = found
        candidates = _match(source, pattern, bound)
        rows = source.rows
        if min_confidence is None:
            return [(row, rows[row]) for row in candidates]
        return [
            (row, conf)
            for row in candidates
            if ((1.0 if (conf := rows[row]) is None else conf) >= min_confidence)
        ]

    def _evaluate(
        self, program: Program, goal: Literal, plans: Plans | None = None
    ) -> tuple[Source, tuple[Var | int, ...], tuple[int, ...]] | None:
        """Evaluate what ``goal`` needs; return its relation, pattern, bound positions.

        None means the goal names a constant nobody ever mentioned: no answers.
        ``plans`` keeps what only the rules decide across writes (prepared.py).
        """
        _check_goal(goal)
        state = self._state(program, plans)
        lookup = self.facts.interner.lookup
        pattern: list[Var | int] = []
        for arg in goal.args:
            if isinstance(arg, Var):
                pattern.append(arg)
                continue
            found = lookup(arg)
            if found is None:
                return None
            pattern.append(found)
        rel = (goal.predicate, goal.negated, len(pattern))
        bound = tuple(p for p, a in enumerate(pattern) if not isinstance(a, Var))
        source: Source
        if rel not in state.rules:
            source = self.facts.relation(rel) or EMPTY
        elif not bound:
            self._complete(state, {rel})
            source = state.complete[rel]
        else:
            values = tuple(pattern[p] for p in bound)
            source = self._magic(
                state, rel, bound, values, plans  # type: ignore[arg-type]  # bound pattern positions hold constants
            )
            if not isinstance(source, GroupedTable) and rel not in state.complete:
                bound = ()  # the demanded answers hold only this goal's rows
        return source, tuple(pattern), bound

    def _resolver(self, state: _State) -> Callable[[RelKey], Source]:
        complete = state.complete
        relation = self.facts.relation

        def resolve(rel: RelKey) -> Source:
            table = complete.get(rel)
            if table is not None:
                return table
            return relation(user_relation(rel)) or EMPTY

        return resolve

    def _needed(self, state: _State, rels: Iterable[RelKey], skip: Any) -> set[RelKey]:
        """Derived relations ``rels`` depend on (themselves included), minus ``skip``."""
        needed: set[RelKey] = set()
        todo = [r for r in rels if r in state.rules and r not in skip]
        while todo:
            rel = todo.pop()
            if rel in needed:
                continue
            needed.add(rel)
            for rule in state.rules[rel]:
                for step in rule.body:
                    if (
                        step.kind != COMPARE
                        and step.rel in state.rules
                        and step.rel not in skip
                    ):
                        todo.append(step.rel)
        return needed

    def _weighted_for(self, state: _State, rels: Iterable[RelKey]) -> bool:
        """Whether evaluating ``rels`` must track confidences at all.

        Only when some rule or some stored fact they depend on carries one; otherwise
        every confidence is ``None`` and the cheaper set-only joins give the same
        answers.
        """
        if state.has_confidence:
            return True
        seen: set[RelKey] = set()
        todo = list(rels)
        while todo:
            rel = todo.pop()
            if rel in seen:
                continue
            seen.add(rel)
            stored = self.facts.relation(rel)  # type: ignore[arg-type]  # a stored relation key
            if stored is not None and stored.annotated:
                return True
            for rule in state.rules.get(rel, ()):
                for step in rule.body:
                    if step.kind == POSITIVE:
                        todo.append(step.rel)
        return False

    def _complete(self, state: _State, rels: set[RelKey]) -> None:
        needed = self._needed(state, rels, state.complete)
        if not needed:
            return
        evaluation = Evaluation(
            self._resolver(state),
            self.facts.interner,
            self._weighted_for(state, needed),
            budget=self.budget,
            observe=self.observe,
        )
        evaluation.run(
            [rule for rel in needed for rule in state.rules[rel]],
            {rel: self._stored_rows(rel) for rel in needed},
        )
        for rel in needed:
            state.complete[rel] = evaluation.tables[rel]

    def _stored_rows(self, rel: RelKey) -> dict[Row, float | None]:
        stored = self.facts.relation(rel)  # type: ignore[arg-type]  # a stored relation key
        return stored.rows if stored is not None else {}

    def _rewrite(
        self,
        state: _State,
        rel: tuple[str, bool, int],
        bound: tuple[int, ...],
        seed: Row,
        weighted: bool,
    ) -> MagicProgram:
        """The magic-set rewrite for ``rel`` bound at ``bound`` to ``seed``."""
        relation = self.facts.relation
        return rewrite(
            rel,
            bound,
            state.rules,
            lambda r: r not in state.rules or r in state.complete,
            lambda r: relation(r) is not None,  # type: ignore[arg-type]  # rules name user relations
            factor_with=None if weighted else seed,
            seed=seed,
        )

    def _prepared(
        self,
        state: _State,
        rel: tuple[str, bool, int],
        bound: tuple[int, ...],
        values: Row,
        weighted: bool,
        plans: Plans,
    ) -> PreparedGoal:
        """The plan answering ``rel`` bound at ``bound``, whatever the values.

        Prepared once per goal relation, adornment and what the rewrite reads of the
        data (stored derived relations, complete ones, confidences), with the values
        as placeholders (prepared.py).
        """
        interner = self.facts.interner
        relation = self.facts.relation
        shape = placeholders(values, state.constants)
        stored = frozenset(
            r for r in state.rules if relation(r) is not None  # type: ignore[arg-type]  # rules name user relations
        )
        key = (
            "goal",
            state.key,
            id(interner),
            rel,
            bound,
            weighted,
            stored,
            frozenset(state.complete),
            shape,
        )
        found: PreparedGoal | None = plans.get(key)
        if found is None or found.interner is not interner:
            program = self._rewrite(state, rel, bound, shape, weighted)
            stages = schedule(
                program.rules,
                {program.seed: {shape: None}},
                weighted=weighted,
                ranked=False,
            )
            found = PreparedGoal(interner, program, shape, stages)
            plans.put(key, found)
        return found

    def _magic(
        self,
        state: _State,
        rel: tuple[str, bool, int],
        bound: tuple[int, ...],
        values: Row,
        plans: Plans | None = None,
    ) -> Source:
        if rel in state.complete:
            return state.complete[rel]
        key = (rel, bound, values)
        found = state.answers.get(key)
        if found is not None:
            return found
        weighted = self._weighted_for(state, [rel])
        filled = None
        if plans is None:
            program = self._rewrite(state, rel, bound, values, weighted)
            initial = {program.seed: {values: None}}
            stages = schedule(program.rules, initial, weighted=weighted, ranked=False)
        else:
            prepared = self._prepared(state, rel, bound, values, weighted, plans)
            program, stages = prepared.program, prepared.stages
            initial = {program.seed: {values: None}}
            filled = prepared.filled(values)
        if program.complete:
            self._complete(state, program.complete)
        evaluation = Evaluation(
            self._resolver(state),
            self.facts.interner,
            weighted,
            budget=self.budget,
            observe=self.observe,
            filled=filled,
        )
        evaluation.run_planned(stages, initial)
        if plans is not None:
            plans.compiled(evaluation.compiled)
        table = evaluation.tables.get(program.answer) or Table()
        if not (program.factored or program.propagated):
            # The demanded relation also holds answers to the subgoals the goal
            # needed; keep only the goal's own rows (a scan beats building an index
            # for a table asked once).
            if len(bound) == 1 and isinstance(table, GroupedTable):
                (at,), (value,) = bound, values
                partners = table.ensure(at).get(value, ())
                if at == 0:
                    kept = {(value, p): None for p in partners}
                else:
                    kept = {(p, value): None for p in partners}
            elif len(bound) == 1:
                (at,), (value,) = bound, values
                kept = {r: c for r, c in table.rows.items() if r[at] == value}
            else:
                pick = itemgetter(*bound)
                kept = {r: c for r, c in table.rows.items() if pick(r) == values}
            table = Table(kept)
        if len(state.answers) >= _MAGIC_RESULTS_KEPT:
            del state.answers[next(iter(state.answers))]
        state.answers[key] = table
        return table


def _check_goal(goal: Literal) -> None:
    if goal.is_builtin:
        raise ProgramError(
            f"{goal.predicate!r} is a built-in comparison; it can only be used in a "
            "rule body, not asked"
        )
    if goal.naf:
        raise ProgramError("a goal cannot use negation as failure")


def _match(
    source: Source, pattern: tuple[Var | int, ...], bound: tuple[int, ...]
) -> Collection[Row]:
    """Return the rows of ``source`` matching ``pattern`` (by index, never a scan)."""
    rows = source.rows
    candidates: Collection[Row]
    if not bound:
        candidates = rows.keys()
    elif len(bound) == len(pattern):
        key = tuple(pattern)
        candidates = (key,) if key in rows else ()  # type: ignore[assignment]  # a one-row view of the keys
    else:
        values = [pattern[p] for p in bound]
        index = source.index(bound)
        candidates = index.get(values[0] if len(values) == 1 else tuple(values), ())
    repeats: list[tuple[int, int]] = []
    first: dict[Var, int] = {}
    for position, arg in enumerate(pattern):
        if isinstance(arg, Var):
            if arg in first:
                repeats.append((first[arg], position))
            else:
                first[arg] = position
    if repeats:
        return [row for row in candidates if all(row[a] == row[b] for a, b in repeats)]
    return candidates


def _answer(args: tuple[Const, ...], confidence: float | None) -> Answer:
    """``Answer(args, confidence)`` without the frozen dataclass's ``__setattr__`` calls.

    A goal can have tens of thousands of answers; this halves building them.
    """
    answer = _new(Answer)
    _set_args(answer, args)
    _set_confidence(answer, confidence)
    return answer


_new = object.__new__
_set_args = getattr(Answer, "args").__set__  # noqa: B009 (the slot descriptor)
_set_confidence = getattr(Answer, "confidence").__set__  # noqa: B009
