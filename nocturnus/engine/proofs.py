"""Proof trees, rebuilt on request from an evaluation's relations and ranks.

Keeping a derivation for every derived row would slow every query down for the few
that ask for proofs. Instead, a goal-directed evaluation made for one proof (the
magic-set rewrite of the ground fact) records each row's *rank*:
the round in which it reached its final confidence. A proof of a row of rank r is then
any rule instance whose body rows all have ranks below r and whose confidence product
equals the row's confidence. Ranks strictly decrease towards the leaves, so proofs are
finite even for cyclic and recursive rules, and the tree is built bottom-up without
recursion (a chain of 20 000 steps is fine).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nocturnus.engine.ir import (
    ABSENT,
    COMPARE,
    POSITIVE,
    IRule,
    RelKey,
    is_magic,
    user_relation,
)
from nocturnus.engine.rules import Literal, Rule
from nocturnus.engine.table import Row
from nocturnus.engine.terms import Interner, Var

Node = tuple[RelKey, Row]


@dataclass(frozen=True, slots=True)
class Proof:
    """One step of a proof tree.

    ``type`` is ``"fact"`` (a stored fact), ``"rule"`` (an application of ``rule`` to
    the ``children``), ``"naf"`` (a negation-as-failure test that held; ``goal`` is
    the NAF literal) or ``"builtin"`` (a comparison that held).
    """

    goal: Literal
    type: str
    rule: Rule | None
    children: tuple[Proof, ...]
    confidence: float | None

    def depth(self) -> int:
        """The number of steps on the longest path to a leaf, this one included."""
        deepest = 0
        stack: list[tuple[Proof, int]] = [(self, 1)]
        while stack:
            proof, level = stack.pop()
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in proof.children)
        return deepest


@dataclass(slots=True)
class ProofSource:
    """What proof building reads.

    ``rules`` and ``tables`` are the evaluated (rewritten) program by head relation,
    with ``ranks``; ``resolve`` gives every other relation (stored facts, or complete
    relations read under NAF).
    """

    interner: Interner
    rules: Mapping[RelKey, list[IRule]]
    tables: Mapping[RelKey, Any]
    ranks: Mapping[RelKey, dict[Row, int]]
    resolve: Callable[[RelKey], Any]
    comparisons: Callable[[str], Callable[[int, int], bool]]


@dataclass(slots=True)
class _Choice:
    rule: IRule | None
    confidence: float | None
    children: list[tuple[int, Any]]  # (body position, Node or a finished leaf Proof)


def build_proof(source: ProofSource, rel: RelKey, row: Row) -> Proof | None:
    """Return a best-confidence proof of ``row`` in ``rel``, or None if it does not hold.

    ``rel`` is a head of ``source.rules``, evaluated into ``source.tables`` with ranks.
    """
    return ProofBuilder(source).proof(rel, row)


class ProofBuilder:
    """Builds proofs of several rows from one evaluation, sharing their sub-proofs.

    A node's proof depends only on the evaluation (its tables and ranks), so once
    built it serves every later row whose proof reaches it: the proofs of
    ``anc(?x, n19999)``'s 812 answers share one chain instead of building 812.
    """

    def __init__(self, source: ProofSource) -> None:
        self.source = source
        self._choices: dict[Node, _Choice] = {}
        self._built: dict[Node, Proof] = {}

    def proof(self, rel: RelKey, row: Row) -> Proof | None:
        """A best-confidence proof of ``row`` in ``rel``, or None if it does not hold."""
        source = self.source
        choices, built = self._choices, self._built
        found = built.get((rel, row))
        if found is not None:
            return found
        if _lookup(source, rel, row) is None:
            return None
        fresh: list[Node] = []
        stack: list[Node] = [(rel, row)]
        while stack:
            node = stack.pop()
            if node in choices:
                continue
            choice = _choose(source, node)
            choices[node] = choice
            fresh.append(node)
            for _, child in choice.children:
                if isinstance(child, tuple) and child not in choices:
                    stack.append(child)
        for node in sorted(fresh, key=lambda n: _rank(source, n)):
            choice = choices[node]
            node_rel, node_row = node
            children = tuple(
                child if isinstance(child, Proof) else built[child]
                for _, child in sorted(choice.children, key=lambda item: item[0])
            )
            goal = _literal(source, node_rel, node_row)
            if choice.rule is None:
                built[node] = Proof(goal, "fact", None, (), choice.confidence)
            else:
                built[node] = Proof(
                    goal, "rule", choice.rule.origin, children, choice.confidence
                )
        return built[(rel, row)]


def _lookup(source: ProofSource, rel: RelKey, row: Row) -> tuple[float | None] | None:
    """Return ``(confidence,)`` if the row holds, else None."""
    rows = _rows(source, rel)
    if row not in rows:
        return None
    return (rows[row],)


def _relation(source: ProofSource, rel: RelKey) -> Any:
    table = source.tables.get(rel)
    return table if table is not None else source.resolve(rel)


def _rows(source: ProofSource, rel: RelKey) -> Mapping[Row, float | None]:
    return _relation(source, rel).rows  # type: ignore[no-any-return]  # the relation's rows mapping, typed Any by the protocol


def _index(source: ProofSource, rel: RelKey, positions: tuple[int, ...]) -> Any:
    return _relation(source, rel).index(positions)


def _rank(source: ProofSource, node: Node) -> int:
    rel, row = node
    ranks = source.ranks.get(rel)
    return ranks.get(row, 0) if ranks is not None else 0


def _literal(source: ProofSource, rel: RelKey, row: Row) -> Literal:
    predicate, negated, _ = user_relation(rel)
    return Literal(predicate, source.interner.decode(row), negated)


def _choose(source: ProofSource, node: Node) -> _Choice:
    rel, row = node
    confidence = _rows(source, rel)[row]
    rank = _rank(source, node)
    if rel not in source.rules or rank == 0:
        return _Choice(None, confidence, [])
    best: _Choice | None = None
    # Rules with no origin copy stored facts into a demanded relation: try them
    # first, so a fact that is stored is shown as such when it is as good.
    for rule in sorted(source.rules[rel], key=lambda r: r.origin is not None):
        binding = _unify(rule.head_args, row)
        if binding is None:
            continue
        for children, product in _instances(source, rule, binding, rank):
            candidate = _Choice(rule, product, children)
            if rule.origin is None:
                candidate = _Choice(None, product, [])
            if product == confidence and (product is None) == (confidence is None):
                candidate.confidence = confidence
                return candidate
            if best is None or _better(product, best.confidence):
                best = candidate
    if best is None:  # unreachable when ranks come from the same evaluation
        return _Choice(None, confidence, [])
    best.confidence = confidence
    return best


def _better(new: float | None, old: float | None) -> bool:
    return old is not None and (new is None or new > old)


def _unify(args: tuple[Var | int, ...], row: Row) -> dict[Var, int] | None:
    binding: dict[Var, int] = {}
    for arg, value in zip(args, row, strict=True):
        if isinstance(arg, Var):
            if binding.setdefault(arg, value) != value:
                return None
        elif arg != value:
            return None
    return binding


def _instances(
    source: ProofSource, rule: IRule, binding: dict[Var, int], rank: int
) -> Iterator[tuple[list[tuple[int, Any]], float | None]]:
    """Yield (children, confidence product) for body instances ranked below ``rank``."""
    body = rule.body
    origin = rule.origin
    chosen: list[tuple[int, Any]] = []
    weights: list[tuple[int, Node]] = []  # premises whose confidence multiplies in
    values = source.interner.decode

    def pick(
        remaining: tuple[int, ...], env: dict[Var, int]
    ) -> tuple[int, Collection[Row]]:
        """Choose the next step: a test once its variables are bound, else the
        positive literal with the fewest candidate rows right now (a one-row
        parent lookup before a 20 000-row ancestor scan). Candidates are compared
        by size, never copied: on a chain of 812 steps a copied ancestor bucket
        per step made building the proof quadratic."""
        best: tuple[int, Collection[Row]] | None = None
        for j in remaining:
            step = body[j]
            if step.kind != POSITIVE:
                if all(v in env for v in step.variables if not v.is_anonymous):
                    return j, ()
                continue
            found = _candidates(source, step.rel, step.args, env)
            if len(found) <= 1:
                return j, found  # nothing can beat a lookup: no need to size others
            if best is None or len(found) < len(best[1]):
                best = (j, found)
        assert best is not None  # range restriction: some positive step remains
        return best

    def walk(remaining: tuple[int, ...], env: dict[Var, int]) -> Iterator[None]:
        if not remaining:
            yield None
            return
        j, rows = pick(remaining, env)
        rest = tuple(k for k in remaining if k != j)
        step = body[j]
        place = j if step.position is None else step.position
        if step.kind == COMPARE:
            a, b = (env[t] if isinstance(t, Var) else t for t in step.args)
            if source.comparisons(step.rel)(a, b):  # type: ignore[arg-type]  # a compare step's rel is its operator's name
                spelled = str(step.rel)
                if origin is not None and step.position is not None:
                    spelled = origin.body[step.position].predicate
                chosen.append(
                    (
                        place,
                        Proof(
                            Literal(spelled, values((a, b))), "builtin", None, (), None
                        ),
                    )
                )
                yield from walk(rest, env)
                chosen.pop()
            return
        if step.kind == ABSENT:
            if not _absent(source, step.rel, step.args, env):
                return
            predicate, negated, _ = user_relation(step.rel)
            args = tuple(
                a
                if isinstance(a, Var) and a not in env
                else source.interner.values[env[a] if isinstance(a, Var) else a]
                for a in step.args
            )
            chosen.append(
                (
                    place,
                    Proof(
                        Literal(predicate, args, negated, True), "naf", None, (), None
                    ),
                )
            )
            yield from walk(rest, env)
            chosen.pop()
            return
        ranks = source.ranks.get(step.rel)
        for candidate in rows:
            if ranks is not None and ranks.get(candidate, 0) >= rank:
                continue
            extended = _unify_into(step.args, candidate, env)
            if extended is None:
                continue
            if is_magic(step.rel):  # demand bookkeeping, not a premise
                yield from walk(rest, extended)
                continue
            chosen.append((place, (step.rel, candidate)))
            if step.weight_order is not None:
                weights.append((step.weight_order, (step.rel, candidate)))
            yield from walk(rest, extended)
            chosen.pop()
            if step.weight_order is not None:
                weights.pop()

    for _ in walk(tuple(range(len(body))), binding):
        product = rule.confidence
        for _, (child_rel, child_row) in sorted(weights, key=lambda w: w[0]):
            value = _rows(source, child_rel)[child_row]
            if value is not None:
                product = value if product is None else product * value
        yield list(chosen), product


def _candidates(
    source: ProofSource, rel: RelKey, args: tuple[Var | int, ...], env: dict[Var, int]
) -> Collection[Row]:
    """The rows of ``rel`` agreeing with the bound arguments (a live view: read-only)."""
    positions: list[int] = []
    key: list[int] = []
    for p, a in enumerate(args):
        if type(a) is not Var:
            positions.append(p)
            key.append(a)  # type: ignore[arg-type]  # a non-Var arg is a constant
        else:
            value = env.get(a)
            if value is not None:
                positions.append(p)
                key.append(value)
    if not positions:
        return _rows(source, rel).keys()
    if len(positions) == len(args):
        row = tuple(key)
        return (row,) if row in _rows(source, rel) else ()
    found = _index(source, rel, tuple(positions)).get(
        key[0] if len(key) == 1 else tuple(key)
    )
    return found if found else ()


def _unify_into(
    args: tuple[Var | int, ...], row: Row, env: dict[Var, int]
) -> dict[Var, int] | None:
    extended = dict(env)
    for arg, value in zip(args, row, strict=True):
        if isinstance(arg, Var):
            if extended.setdefault(arg, value) != value:
                return None
        elif arg != value:
            return None
    return extended


def _absent(
    source: ProofSource, rel: RelKey, args: tuple[Var | int, ...], env: dict[Var, int]
) -> bool:
    pattern = tuple(
        a
        if isinstance(a, Var) and a.is_anonymous
        else (env[a] if isinstance(a, Var) else a)
        for a in args
    )
    return not any(
        _unify_into(pattern, row, {}) is not None
        for row in _candidates(source, rel, pattern, {})
    )
