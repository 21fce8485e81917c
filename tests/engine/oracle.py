"""A naive reference evaluator: obviously correct, hopelessly slow, for comparison.

Each stratum is the fixpoint of applying every rule to every combination of rows, with
no indexes, no deltas and no magic sets. Constants are tagged with their type so that
500, 500.0 and "500" stay apart exactly as the engine must keep them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from nocturnus.engine.rules import Literal, Rule, compare
from nocturnus.engine.terms import Const, Var

Tagged = tuple[str, Const]
Rel = tuple[str, bool, int]
Model = dict[Rel, dict[tuple[Tagged, ...], float | None]]


def tag(value: Const) -> Tagged:
    return (type(value).__name__, value)


def naive_model(
    rules: Sequence[Rule],
    facts: Sequence[tuple[str, bool, tuple[Const, ...], float | None]],
) -> Model:
    """Return every relation's rows with their best confidence."""
    model: Model = {}
    for predicate, negated, args, confidence in facts:
        model.setdefault((predicate, negated, len(args)), {})[
            tuple(tag(a) for a in args)
        ] = confidence
    for stratum in _strata(rules):
        changed = True
        while changed:
            changed = False
            for rule in stratum:
                head = rule.head
                rel = (head.predicate, head.negated, len(head.args))
                for env, confidence in list(_instances(rule, model)):
                    row = tuple(
                        env[a] if isinstance(a, Var) else tag(a) for a in head.args
                    )
                    rows = model.setdefault(rel, {})
                    if row not in rows or _better(confidence, rows[row]):
                        rows[row] = confidence
                        changed = True
    return model


def _better(new: float | None, old: float | None) -> bool:
    return old is not None and (new is None or new > old)


def _strata(rules: Sequence[Rule]) -> list[list[Rule]]:
    level: dict[tuple[str, bool], int] = {}
    for _ in range(len(rules) + 2):
        for rule in rules:
            head = (rule.head.predicate, rule.head.negated)
            need = level.get(head, 0)
            for body in rule.body:
                dep = level.get((body.predicate, body.negated), 0)
                need = max(need, dep + 1 if body.naf else dep)
            level[head] = need
    top = max(level.values(), default=0)
    return [
        [r for r in rules if level[(r.head.predicate, r.head.negated)] == s]
        for s in range(top + 1)
    ]


def _instances(
    rule: Rule, model: Model
) -> Iterator[tuple[dict[Var, Tagged], float | None]]:
    def walk(i: int, env: dict[Var, Tagged], conf: list[float | None]) -> Iterator:
        if i == len(rule.body):
            product = rule.confidence
            for c in conf:
                if c is not None:
                    product = c if product is None else product * c
            yield env, product
            return
        literal = rule.body[i]
        if literal.is_builtin:
            left, right = (env[a][1] if isinstance(a, Var) else a for a in literal.args)
            if compare(literal.predicate, left, right):
                yield from walk(i + 1, env, conf)
            return
        rows = model.get((literal.predicate, literal.negated, len(literal.args)), {})
        if literal.naf:
            if not any(_unify(literal, row, env) is not None for row in rows):
                yield from walk(i + 1, env, conf)
            return
        for row, confidence in rows.items():
            extended = _unify(literal, row, env)
            if extended is not None:
                yield from walk(i + 1, extended, [*conf, confidence])

    # NAF and builtins must see bound variables: move them after positive literals.
    ordered = [b for b in rule.body if not (b.naf or b.is_builtin)] + [
        b for b in rule.body if b.naf or b.is_builtin
    ]
    rule = Rule(rule.id, rule.head, tuple(ordered), rule.confidence)
    yield from walk(0, {}, [])


def _unify(
    literal: Literal, row: tuple[Tagged, ...], env: dict[Var, Tagged]
) -> dict | None:
    extended = dict(env)
    for arg, value in zip(literal.args, row):
        if isinstance(arg, Var):
            if extended.setdefault(arg, value) != value:
                return None
        elif tag(arg) != value:
            return None
    return extended


def check_proof(proof: object, model: Model, stored: Model) -> None:
    """Assert that ``proof`` (an engine Proof) is a valid derivation in ``model``.

    Every node's goal holds in the model with the node's confidence; ``fact`` leaves
    are stored facts; a ``rule`` node's children are the rule's body literals, in
    order, under one substitution that also yields the goal; NAF children have no
    match in the model and built-in children hold. Runs without recursion (proofs
    can be thousands of steps deep).
    """
    stack = [proof]
    while stack:
        node = stack.pop()
        goal = node.goal  # type: ignore[attr-defined]
        rel = (goal.predicate, goal.negated, len(goal.args))
        row = tuple(tag(a) for a in goal.args)
        kind = node.type  # type: ignore[attr-defined]
        if kind == "fact":
            assert row in stored.get(rel, {}), goal.text()
            assert _same(node.confidence, stored[rel][row]), goal.text()  # type: ignore[attr-defined]
            continue
        assert kind == "rule", kind
        assert row in model.get(rel, {}), goal.text()
        assert _same(node.confidence, model[rel][row]), goal.text()  # type: ignore[attr-defined]
        rule = node.rule  # type: ignore[attr-defined]
        children = node.children  # type: ignore[attr-defined]
        assert len(children) == len(rule.body), rule.text()
        env: dict[Var, Tagged] = {}
        assert _bind(rule.head.args, goal.args, env), (rule.text(), goal.text())
        product = rule.confidence
        tests = []
        for literal, child in zip(rule.body, children, strict=True):
            if literal.is_builtin or literal.naf:
                tests.append((literal, child))  # checked once every premise binds
                continue
            assert child.type in ("fact", "rule")
            assert child.goal.predicate == literal.predicate
            assert child.goal.negated == literal.negated
            assert _bind(literal.args, child.goal.args, env), child.goal.text()
            value = child.confidence
            if value is not None:
                product = value if product is None else product * value
            stack.append(child)
        for literal, child in tests:
            if literal.is_builtin:
                assert child.type == "builtin"
                assert _bind(literal.args, child.goal.args, env)
                assert compare(literal.predicate, *child.goal.args)
                continue
            assert child.type == "naf"
            rows = model.get((literal.predicate, literal.negated, len(literal.args)), {})
            assert not any(
                _matches(literal.args, found, dict(env)) for found in rows
            ), child.goal.text()
        assert _same(node.confidence, product), (goal.text(), product)  # type: ignore[attr-defined]


def _bind(args: tuple[object, ...], values: tuple[Const, ...], env: dict) -> bool:
    for arg, value in zip(args, values, strict=True):
        if isinstance(arg, Var):
            if env.setdefault(arg, tag(value)) != tag(value):
                return False
        elif tag(arg) != tag(value):  # type: ignore[arg-type]
            return False
    return True


def _matches(args: tuple[object, ...], row: tuple[Tagged, ...], env: dict) -> bool:
    """Whether a model row matches the literal's arguments under ``env`` (extended)."""
    for arg, value in zip(args, row, strict=True):
        if isinstance(arg, Var):
            if env.setdefault(arg, value) != value:
                return False
        elif tag(arg) != value:  # type: ignore[arg-type]
            return False
    return True


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) < 1e-9


# -- what the service answers: scopes, rule scopes, minimum confidence (issue 13) --

ScopedRule = tuple[Rule, str | None]
"""A rule and the scope it is taught to (None: every scope)."""
ScopedFact = tuple[str, str, bool, tuple[Const, ...], float | None]
"""(scope, predicate, negated, args, confidence) of a stored fact."""
Answers = dict[tuple[str, tuple[Tagged, ...]], float | None]


def scoped_models(
    rules: Sequence[ScopedRule], facts: Sequence[ScopedFact]
) -> dict[str, Model]:
    """The model of every scope holding a fact: its facts under the rules it sees.

    A scope sees the unscoped rules and its own; inference never joins two scopes.
    """
    by_scope: dict[str, list[tuple[str, bool, tuple[Const, ...], float | None]]] = {}
    for scope, predicate, negated, args, confidence in facts:
        by_scope.setdefault(scope, []).append((predicate, negated, args, confidence))
    return {
        scope: naive_model([r for r, s in rules if s is None or s == scope], stored)
        for scope, stored in by_scope.items()
    }


def scoped_answers(
    models: dict[str, Model],
    goal: Literal,
    scope: str | None,
    min_confidence: float | None = None,
) -> Answers:
    """(scope, row) -> confidence of every answer to ``goal``, as ``/ask`` gives it.

    No ``scope`` asks every scope; ``min_confidence`` drops answers below it (no
    confidence counts as 1.0).
    """
    rel = (goal.predicate, goal.negated, len(goal.args))
    found: Answers = {}
    for name, model in models.items():
        if scope is not None and name != scope:
            continue
        for row, confidence in model.get(rel, {}).items():
            if _unify(goal, row, {}) is None:
                continue
            if min_confidence is not None and (
                (1.0 if confidence is None else confidence) < min_confidence
            ):
                continue
            found[(name, row)] = confidence
    return found
