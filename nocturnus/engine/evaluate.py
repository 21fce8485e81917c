"""Semi-naive, stratified, goal-directed bottom-up evaluation, with caching.

:class:`Program` is a checked rule set; :class:`Reasoner` answers goals over one
:class:`~nocturnus.engine.index.FactIndex`. Evaluation runs component by component
(strongly connected groups of relations, dependencies first, which also respects NAF
strata). Within a component each round joins only the previous round's new rows (the
delta) against full relations, so every derivation is made once, and recursion of any
shape ends when a round adds nothing.

Confidence is a max-product semiring: a derived row's confidence is the product of
its rule's and premises' confidences, best over all derivations. ``None`` means "no
confidence anywhere along the best proof" and acts as 1.0 that wins ties. A row
re-enters the delta only when its confidence strictly improves; products of values
<= 1 cannot keep improving around a cycle, so this terminates. When no relevant fact
or rule carries a confidence, evaluation skips the bookkeeping entirely.

Bound goals go through the magic-set rewrite (:mod:`nocturnus.engine.magic`); unbound
ones, and relations under NAF, are evaluated completely. Results are cached in the
FactIndex's ``cache``, which the index empties on every change, and keyed by the
program's content, so a cached answer is never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from nocturnus.engine.analysis import (
    ProgramError,
    check_program,
    strongly_connected_components,
)
from nocturnus.engine.grouped import (
    Chain,
    GroupedTable,
    chain_of,
    column,
    regroup,
    step_by_passed,
)
from nocturnus.engine.grouped import (
    step as grouped_step,
)
from nocturnus.engine.index import FactIndex, Relation
from nocturnus.engine.ir import COMPARE, POSITIVE, IRule, RelKey, lower_rule
from nocturnus.engine.joins import (
    CompiledRule,
    Param,
    comparison,
    compile_version,
    exists_with_repeats,
    order_body,
)
from nocturnus.engine.magic import rewrite
from nocturnus.engine.proofs import Proof, ProofSource, build_proof
from nocturnus.engine.rules import Literal, Rule
from nocturnus.engine.table import Row, Table
from nocturnus.engine.terms import Const, Interner, Var, const_key, sort_key

_MAGIC_RESULTS_KEPT = 64  # distinct bound goals cached per program and fact version


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer to a goal: its arguments with variables filled, and confidence."""

    args: tuple[Const, ...]
    confidence: float | None


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


class _Empty:
    """A relation with no rows, for relations nobody has told or derived."""

    rows: ClassVar[Mapping[Row, float | None]] = MappingProxyType({})

    def index(self, positions: tuple[int, ...]) -> dict[Any, list[Row]]:
        return {}

    def __len__(self) -> int:
        return 0


_EMPTY = _Empty()
Source = Table | Relation | GroupedTable | _Empty


class Evaluation:
    """One bottom-up run over a rule list, reading other relations through ``resolve``.

    With ``ranks`` given, it also records for every derived row the round in which its
    final confidence was reached; proofs use that to pick premises derived strictly
    earlier, which keeps proof trees finite under recursion.
    """

    def __init__(
        self,
        resolve: Callable[[RelKey], Source],
        interner: Interner,
        weighted: bool,
        ranks: dict[RelKey, dict[Row, int]] | None = None,
    ) -> None:
        self.resolve = resolve
        self.interner = interner
        self.weighted = weighted
        self.ranks = ranks
        self.tables: dict[RelKey, Table] = {}
        self.round = 0
        self._comparisons: dict[str, Callable[[int, int], bool]] = {}

    def source(self, rel: RelKey) -> Source:
        """The relation as this evaluation currently sees it."""
        table = self.tables.get(rel)
        return table if table is not None else self.resolve(rel)

    def run(
        self, rules: Iterable[IRule], initial: dict[RelKey, dict[Row, Any]]
    ) -> None:
        """Evaluate ``rules`` to fixpoint, heads starting from ``initial`` rows."""
        by_head: dict[RelKey, list[IRule]] = {}
        for rule in rules:
            by_head.setdefault(rule.head, []).append(rule)
        for rel in initial:
            by_head.setdefault(rel, [])
        graph = {
            head: [
                s.rel
                for r in group
                for s in r.body
                if s.rel in by_head and s.kind != COMPARE
            ]
            for head, group in by_head.items()
        }
        for component in strongly_connected_components(graph):
            members = set(component)
            group = [r for rel in component for r in by_head[rel]]
            self._component(members, group, initial)

    def _component(
        self,
        members: set[RelKey],
        rules: list[IRule],
        initial: dict[RelKey, dict[Row, Any]],
    ) -> None:
        for rel in members:
            rows = dict(initial.get(rel, {}))
            self.tables[rel] = Table(rows)
            if self.ranks is not None:
                self.ranks[rel] = dict.fromkeys(rows, 0)
        if not rules:
            return

        def size_of(rel: RelKey) -> int:
            return 1 << 40 if rel in members else len(self.source(rel))

        # Round 0 runs only the rules that read nothing of this component; the
        # component's stored rows then join the first delta, so recursive rules only
        # ever run in their delta versions (an all-full version would re-derive
        # everything and force indexes on relations that are only ever scanned).
        exits: list[CompiledRule] = []
        recursive: list[CompiledRule] = []
        for rule in rules:
            reads = [
                j
                for j, step in enumerate(rule.body)
                if step.kind == POSITIVE and step.rel in members
            ]
            if not reads:
                order = order_body(rule.body, None, size_of)
                exits.append(compile_version(rule, order, None, self.weighted))
            for j in reads:
                order = order_body(rule.body, j, size_of)
                recursive.append(compile_version(rule, order, j, self.weighted))
        chains = [
            chain_of(version.rule, version.delta_at)  # type: ignore[arg-type]
            for version in recursive
        ]
        if (
            not self.weighted
            and self.ranks is None
            and all(len(rule.head_args) == 2 for rule in rules)
            and all(chain is not None for chain in chains)
        ):
            self._round(exits, members, {})
            self._grouped(members, chains)  # type: ignore[arg-type]
            return
        delta = self._round(exits, members, {})
        for rel in members:
            stored = initial.get(rel)
            if stored:
                delta[rel] = {**stored, **delta[rel]}
        while recursive and any(delta.values()):
            delta = self._round(recursive, members, delta)

    def _grouped(self, members: set[RelKey], chains: list[Chain]) -> None:
        """Run the recursive rounds of a binary chain component set-at-a-time.

        See :mod:`nocturnus.engine.grouped`. The tables start from the stored rows
        and the exit rules' results, all of which form the first delta.
        """
        delta: dict[RelKey, _GroupedDelta] = {}
        for rel in members:
            rows = self.tables[rel].rows
            delta[rel] = _GroupedDelta({p: column(rows, p) for p in (0, 1)})
        # Per version: group by the join variable or by the passed one, whichever
        # makes the first delta's groups larger (fewer keys).
        by_join: list[bool] = []
        for chain in chains:
            first = delta[chain.delta_rel]
            joins = len(first.by(chain.delta_join))
            passes = len(first.by(1 - chain.delta_join))
            by_join.append(joins <= passes)
        keep: dict[RelKey, set[int]] = {rel: set() for rel in members}
        for chain, joined in zip(chains, by_join, strict=True):
            keep[chain.head].add(chain.group if joined else chain.passed_at)
            if chain.other_rel in members:
                keep[chain.other_rel].add(chain.other_join)
        tables: dict[RelKey, GroupedTable] = {}
        for rel in members:
            table = GroupedTable(keep[rel] or {0})
            table.add_rows(self.tables[rel].rows)
            tables[rel] = table
        partners: dict[tuple[RelKey, int], dict[int, set[int]]] = {}
        for chain in chains:
            key = (chain.other_rel, chain.other_join)
            if chain.other_rel in members or key in partners:
                continue
            source = self.source(chain.other_rel)
            if isinstance(source, GroupedTable):
                partners[key] = source.ensure(chain.other_join)
            else:
                partners[key] = column(source.rows, chain.other_join)
        while True:
            out: dict[RelKey, dict[int, dict[int, set[int]]]] = {}
            for chain, joined in zip(chains, by_join, strict=True):
                side = chain.delta_join if joined else 1 - chain.delta_join
                new = delta[chain.delta_rel].by(side)
                if not new:
                    continue
                if chain.other_rel in members:
                    partner = tables[chain.other_rel].by[chain.other_join]
                else:
                    partner = partners[(chain.other_rel, chain.other_join)]
                position = chain.group if joined else chain.passed_at
                target = out.setdefault(chain.head, {}).setdefault(position, {})
                full = tables[chain.head].by[position]
                if joined:
                    grouped_step(new, partner, full, target)
                else:
                    step_by_passed(new, partner, full, target)
            self.round += 1
            if not any(g for groups in out.values() for g in groups.values()):
                break
            for rel, groups in out.items():
                for at, grouping in groups.items():
                    tables[rel].merge(at, grouping)
            delta = {rel: _GroupedDelta(out.get(rel, {})) for rel in members}
        self.tables.update(tables)  # type: ignore[arg-type]

    def _round(
        self,
        versions: list[CompiledRule],
        members: set[RelKey],
        delta: dict[RelKey, dict[Row, Any]],
    ) -> dict[RelKey, dict[Row, Any]]:
        fresh: dict[RelKey, dict[Row, Any]] = {rel: {} for rel in members}
        for version in versions:
            if version.delta_at is not None and not delta.get(
                version.rule.body[version.delta_at].rel
            ):
                continue
            version.run(*self._arguments(version, delta, fresh))
        self.round += 1
        for rel, rows in fresh.items():
            if rows:
                self.tables[rel].merge(rows)
                if self.ranks is not None:
                    ranks = self.ranks[rel]
                    for row in rows:
                        ranks[row] = self.round
        return fresh

    def _arguments(
        self,
        version: CompiledRule,
        delta: dict[RelKey, dict[Row, Any]],
        fresh: dict[RelKey, dict[Row, Any]],
    ) -> list[Any]:
        arguments: list[Any] = []
        for param in version.params:
            kind = param.kind
            if kind == "const" or kind == "rule_confidence":
                arguments.append(param.value)
            elif kind == "rows":
                arguments.append(self.source(param.rel).rows)
            elif kind == "index":
                arguments.append(self.source(param.rel).index(param.positions))
            elif kind == "delta":
                arguments.append(delta[param.rel])
            elif kind == "full":
                arguments.append(self.tables[param.rel].rows)
            elif kind == "next":
                arguments.append(fresh[param.rel])
            elif kind == "exists":
                arguments.append(exists_with_repeats(param.value))
            else:
                arguments.append(self._comparison(param))
        return arguments

    def _comparison(self, param: Param) -> Callable[[int, int], bool]:
        found = self._comparisons.get(param.value)
        if found is None:
            found = comparison(param.value, self.interner)
            self._comparisons[param.value] = found
        return found


class _GroupedDelta:
    """One round's new rows of a grouped relation, regrouped on demand."""

    __slots__ = ("groups",)

    def __init__(self, groups: dict[int, dict[int, set[int]]]) -> None:
        self.groups = {p: g for p, g in groups.items() if g}

    def by(self, position: int) -> dict[int, set[int]]:
        found = self.groups.get(position)
        if found is not None or not self.groups:
            return found or {}
        merged: dict[int, set[int]] = {}
        for other in self.groups.values():
            for key, partners in regroup(other).items():
                existing = merged.get(key)
                if existing is None:
                    merged[key] = partners
                else:
                    existing |= partners
        self.groups[position] = merged
        return merged


class _State:
    """What one program has computed over one version of one FactIndex."""

    __slots__ = (
        "answers",
        "complete",
        "has_confidence",
        "proof_tables",
        "ranks",
        "rules",
    )

    def __init__(self, program: Program, interner: Interner) -> None:
        self.rules: dict[RelKey, list[IRule]] = {
            rel: [lower_rule(rule, interner) for rule in group]
            for rel, group in program.by_head.items()
        }
        self.has_confidence = program.has_confidence
        self.complete: dict[RelKey, Table] = {}
        self.answers: dict[Any, Table] = {}
        self.proof_tables: dict[RelKey, Table] = {}
        self.ranks: dict[RelKey, dict[Row, int]] = {}


class Reasoner:
    """Answers goals over one FactIndex.

    Evaluated relations are cached per (program content, ``facts.version``) inside
    ``facts.cache``, which the index clears on every effective change; so a Reasoner
    is cheap to create per request and never serves stale answers.
    """

    def __init__(self, facts: FactIndex) -> None:
        self.facts = facts

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
        rows = self._rows(program, goal, min_confidence)
        order = _sort_ranks(rows, self.facts.interner)
        if order is not None:
            rows.sort(key=order)
        if limit is not None:
            rows = rows[: max(limit, 0)]
        values = self.facts.interner.values
        return [Answer(tuple([values[i] for i in row]), conf) for row, conf in rows]

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

        :raises ProgramError: if the fact is not ground, is a built-in or uses NAF.
        """
        _check_goal(fact)
        if not fact.is_ground:
            raise ProgramError(f"explain needs a ground fact, got {fact.text()}")
        lookup = self.facts.interner.lookup
        ids = [lookup(a) for a in fact.args]  # type: ignore[arg-type]
        state = self._state(program)
        if any(i is None for i in ids):
            return None
        row: Row = tuple(ids)  # type: ignore[arg-type]
        rel = (fact.predicate, fact.negated, len(row))
        if rel in state.rules:
            self._prove_ready(state, rel)
        source = ProofSource(
            facts=self.facts,
            rules=state.rules,
            tables=state.proof_tables,
            ranks=state.ranks,
            comparisons=lambda op: comparison(op, self.facts.interner),
        )
        return build_proof(source, rel, row)

    # -- internals ---------------------------------------------------------------

    def _state(self, program: Program) -> _State:
        key = ("nocturnus.engine", program.key)
        state = self.facts.cache.get(key)
        if state is None:
            state = _State(program, self.facts.interner)
            self.facts.cache[key] = state
        return state  # type: ignore[no-any-return]

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
        self, program: Program, goal: Literal
    ) -> tuple[Source, tuple[Var | int, ...], tuple[int, ...]] | None:
        """Evaluate what ``goal`` needs; return its relation, pattern, bound positions.

        None means the goal names a constant nobody ever mentioned: no answers.
        """
        _check_goal(goal)
        state = self._state(program)
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
            source = self.facts.relation(rel) or _EMPTY
        elif not bound:
            self._complete(state, {rel})
            source = state.complete[rel]
        else:
            values = tuple(pattern[p] for p in bound)
            source = self._magic(state, rel, bound, values)  # type: ignore[arg-type]
        return source, tuple(pattern), bound

    def _resolver(self, state: _State) -> Callable[[RelKey], Source]:
        complete = state.complete
        relation = self.facts.relation

        def resolve(rel: RelKey) -> Source:
            table = complete.get(rel)
            if table is not None:
                return table
            return relation(rel) or _EMPTY  # type: ignore[arg-type]

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
            stored = self.facts.relation(rel)  # type: ignore[arg-type]
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
        )
        evaluation.run(
            [rule for rel in needed for rule in state.rules[rel]],
            {rel: self._stored_rows(rel) for rel in needed},
        )
        for rel in needed:
            state.complete[rel] = evaluation.tables[rel]

    def _stored_rows(self, rel: RelKey) -> dict[Row, float | None]:
        stored = self.facts.relation(rel)  # type: ignore[arg-type]
        return stored.rows if stored is not None else {}

    def _magic(
        self,
        state: _State,
        rel: tuple[str, bool, int],
        bound: tuple[int, ...],
        values: Row,
    ) -> Source:
        if rel in state.complete:
            return state.complete[rel]
        key = (rel, bound, values)
        found = state.answers.get(key)
        if found is not None:
            return found
        weighted = self._weighted_for(state, [rel])
        program = rewrite(
            rel,
            bound,
            state.rules,
            lambda r: r not in state.rules or r in state.complete,
            lambda r: self.facts.relation(r) is not None,  # type: ignore[arg-type]
            factor_with=None if weighted else values,
        )
        if program.complete:
            self._complete(state, program.complete)
        evaluation = Evaluation(self._resolver(state), self.facts.interner, weighted)
        evaluation.run(program.rules, {program.seed: {values: None}})
        table = evaluation.tables.get(program.answer) or Table()
        if len(state.answers) >= _MAGIC_RESULTS_KEPT:
            del state.answers[next(iter(state.answers))]
        state.answers[key] = table
        return table

    def _prove_ready(self, state: _State, rel: RelKey) -> None:
        needed = self._needed(state, [rel], state.proof_tables)
        if not needed:
            return

        def resolve(r: RelKey) -> Source:
            table = state.proof_tables.get(r)
            if table is not None:
                return table
            return self.facts.relation(r) or _EMPTY  # type: ignore[arg-type]

        evaluation = Evaluation(
            resolve, self.facts.interner, self._weighted_for(state, needed), state.ranks
        )
        evaluation.run(
            [rule for r in needed for rule in state.rules[r]],
            {r: self._stored_rows(r) for r in needed},
        )
        for r in needed:
            state.proof_tables[r] = evaluation.tables[r]


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
        candidates = (key,) if key in rows else ()  # type: ignore[assignment]
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


def _sort_ranks(
    rows: list[tuple[Row, float | None]], interner: Interner
) -> Callable[[tuple[Row, float | None]], Any] | None:
    """Return a sort key ordering rows by :func:`sort_key` of their constants.

    Sorting by per-constant ranks (computed once per distinct constant) instead of
    building a key of tuples per row keeps large answer sets cheap to order.
    """
    if len(rows) < 2:
        return None
    values = interner.values
    distinct: set[int] = set()
    for row, _ in rows:
        distinct.update(row)
    ordered = sorted(distinct, key=lambda i: sort_key(values[i]))
    rank = {value: position for position, value in enumerate(ordered)}
    arity = len(rows[0][0])
    if arity == 1:
        return lambda item: rank[item[0][0]]
    if arity == 2:
        return lambda item: (rank[item[0][0]], rank[item[0][1]])
    return lambda item: tuple([rank[i] for i in item[0]])
