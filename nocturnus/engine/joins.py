"""Join planning and compilation of rule bodies into specialised Python loops.

An interpreter that walks a rule body per binding pays for dispatch, binding
dictionaries and tuple building on every row. Instead each rule version (a rule with
one body literal reading the last round's delta) is planned once and generated as a
nest of ``for`` loops over hash-index lookups, with variables as local names. This is
the whole inner loop of evaluation, so it is where the engine's speed comes from.

Generated source only ever contains names this module makes up (``v0``, ``p3``...);
constants, relations and comparison functions are passed in as parameters. So no
user text reaches ``exec``, and one compiled function serves every partition whose
rules have the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nocturnus.engine.ir import ABSENT, COMPARE, POSITIVE, IRule, RelKey, Step, is_magic
from nocturnus.engine.rules import compare_numbers
from nocturnus.engine.terms import Interner, Var

MISSING = object()
"""Sentinel for "no row" where ``None`` is a valid confidence."""

MAX_NESTED_LOOPS = 16
"""Loops nested in one generated function before the rest moves to another.

CPython refuses a function with more than 20 statically nested blocks (issue 13: a
rule of 20 or more body literals was a ``SyntaxError`` at ``/ask``); past this many,
the innermost loop calls a nested function holding the remaining steps, passing it
every name bound so far. Rules of ordinary length never reach it.
"""


@dataclass(frozen=True, slots=True)
class Param:
    """What the caller must pass for one parameter of a compiled rule version.

    ``kind`` is one of ``rows`` (a relation's row dict), ``delta`` (the last round's
    new rows of ``rel``), ``index`` (the index of ``rel`` on ``positions``),
    ``const`` (an interned constant), ``compare`` (a built-in, ``value`` names it),
    ``exists`` (a row test for repeated unbound NAF variables, ``value`` the pairs),
    ``rule_confidence``, ``full`` (the head relation's rows), ``next`` (the dict
    collecting this round's new head rows) or ``tick`` (the budget check: called
    with no argument, it raises past the budget, else returns how many outer
    iterations may run before the next call).
    """

    kind: str
    rel: RelKey = None
    positions: tuple[int, ...] = ()
    value: Any = None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule version ready to run: ``run(*arguments)`` for arguments per ``params``."""

    rule: IRule
    delta_at: int | None
    run: Callable[..., None]
    params: tuple[Param, ...]
    source: str


def order_body(
    body: tuple[Step, ...],
    first: int | None,
    size_of: Callable[[RelKey], int],
    bound: set[Var] | None = None,
) -> list[int]:
    """Choose the order in which to join a rule body.

    The delta literal (``first``) goes first, since it is the smallest input of a
    semi-naive round. Then, greedily: every comparison or NAF test as soon as its
    variables are bound (they only filter), and otherwise the positive literal with
    the most bound arguments, smaller relations first, the user's order breaking ties.
    """
    placed: list[int] = []
    known: set[Var] = set(bound or ())
    remaining = list(range(len(body)))
    if first is not None:
        placed.append(first)
        remaining.remove(first)
        known |= body[first].variables
    while remaining:
        for j in list(remaining):
            step = body[j]
            if step.kind != POSITIVE and all(
                v in known for v in step.variables if not v.is_anonymous
            ):
                placed.append(j)
                remaining.remove(j)
        candidates = [j for j in remaining if body[j].kind == POSITIVE]
        if not candidates:
            placed.extend(remaining)  # unreachable for range-restricted rules
            break

        best = min(candidates, key=lambda j: _score(body[j], j, known, size_of))
        placed.append(best)
        remaining.remove(best)
        known |= body[best].variables
    return placed


def _score(
    step: Step, j: int, known: set[Var], size_of: Callable[[RelKey], int]
) -> tuple[int, int, int]:
    """Rank a join candidate: fully bound, then partly bound, then small, then first.

    A partly bound demand (magic) relation ranks after the other partly bound
    literals: it is a filter, best probed once every argument is bound. Scanned by
    one argument it can yield every demanded row per delta row (all of
    ``m(?z, n19999)`` for each new ``anc(?z, n19999)``: 2 s instead of 8 ms).
    """
    count = sum(1 for a in step.args if not isinstance(a, Var) or a in known)
    if count == len(step.args):
        tier = 0
    elif count:
        tier = 2 if is_magic(step.rel) else 1
    else:
        tier = 3
    return (tier, size_of(step.rel), j)


def compile_version(
    rule: IRule, order: list[int], delta_at: int | None, weighted: bool
) -> CompiledRule:
    """Generate and compile the loop nest for ``rule`` joined in ``order``.

    ``delta_at`` names the body step that reads the previous round's delta (scanned);
    every other positive step reads its full relation through an index on the
    positions bound at that point. With ``weighted`` the code also carries
    confidences (max-product); without it every confidence is ``None``.
    """
    source, params = _generate(rule, order, delta_at, weighted)
    return CompiledRule(rule, delta_at, _compile(source), tuple(params), source)


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 1
        self.params: list[Param] = []
        self.names: dict[Var, str] = {}
        self.temps = 0
        self.confidences: list[str] = []  # the names of confidences read so far
        self.loops = 0
        self.nested: list[str] = []  # the continuations' definitions, innermost last
        self.tick: str | None = None  # the budget check's parameter, once one is made
        self.open_function()

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def open_function(self) -> None:
        """Start a function body: a one-pass loop, so every test may ``continue``."""
        self.emit("for _once in ONCE:")
        self.depth += 1
        self.loops = 1

    def open_loop(self) -> None:
        """Account for one more nested loop, continuing in a new function past the
        limit (:data:`MAX_NESTED_LOOPS`).

        Everything emitted after a loop is nested inside it, so the function being
        written is complete here: it ends with a call of the continuation, which
        takes every variable and confidence bound so far.
        """
        if self.loops >= MAX_NESTED_LOOPS:
            bound = [*self.names.values(), *self.confidences]
            name = f"s{len(self.nested) + 1}"
            self.emit(f"{name}({', '.join(bound)})")
            self.nested.append(self.body())
            self.lines = [f"    def {name}({', '.join(bound)}):", "        nonlocal k"]
            self.depth = 2
            self.open_function()
        self.loops += 1
        if self.loops > 2 or self.nested:  # inside another loop (the first is ONCE)
            self.countdown()

    def countdown(self) -> None:
        """Check the budget every :data:`~nocturnus.engine.budget.CHECK_EVERY`
        iterations of the enclosing loop: a countdown in the local ``k``, which the
        check's answer resets (and ``run`` starts with)."""
        if self.tick is None:
            self.tick = self.param(Param("tick"))
        self.emit("k -= 1")
        self.emit(f"if not k: k = {self.tick}()")

    def body(self) -> str:
        """The lines of the function being written."""
        return "\n".join(self.lines)

    def confidence(self) -> str:
        """A fresh name for the confidence of a row a positive step reads.

        The name joins ``confidences`` (what a continuation takes) once the step
        has assigned it.
        """
        return f"c{len(self.confidences)}"

    def param(self, param: Param) -> str:
        self.params.append(param)
        return f"p{len(self.params) - 1}"

    def temp(self) -> str:
        self.temps += 1
        return f"t{self.temps}"

    def bind(self, var: Var) -> str:
        name = f"v{len(self.names)}"
        self.names[var] = name
        return name

    def expr(self, arg: Var | int) -> str:
        if isinstance(arg, Var):
            return self.names[arg]
        return self.param(Param("const", value=arg))


def _tuple(parts: list[str]) -> str:
    if len(parts) == 1:
        return f"({parts[0]},)"
    return f"({', '.join(parts)})"


def _key(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"({', '.join(parts)})"


def _generate(
    rule: IRule, order: list[int], delta_at: int | None, weighted: bool
) -> tuple[str, list[Param]]:
    w = _Writer()
    confidences: list[tuple[int, str]] = []
    for j in order:
        step = rule.body[j]
        if step.kind == COMPARE:
            left, right = (w.expr(a) for a in step.args)
            test = w.param(Param("compare", value=step.rel))
            w.emit(f"if not {test}({left}, {right}): continue")
        elif step.kind == ABSENT:
            _emit_absent(w, step)
        else:
            conf = _emit_positive(w, step, j == delta_at, weighted)
            if conf is not None and step.weight_order is not None:
                confidences.append((step.weight_order, conf))
    head = _tuple([w.expr(a) for a in rule.head_args]) if rule.head_args else "()"
    full = w.param(Param("full", rel=rule.head))
    nxt = w.param(Param("next", rel=rule.head))
    w.emit(f"h = {head}")
    if not weighted:
        w.emit(f"if h not in {full}: {nxt}[h] = None")
    else:
        if rule.confidence is not None:
            w.emit(f"c = {w.param(Param('rule_confidence', value=rule.confidence))}")
        else:
            w.emit("c = None")
        for _, name in sorted(confidences):
            w.emit(f"if {name} is not None: c = {name} if c is None else c * {name}")
        w.emit(f"o = {full}.get(h, MISSING)")
        w.emit("if o is MISSING or (o is not None and (c is None or c > o)):")
        w.depth += 1
        w.emit(f"o = {nxt}.get(h, MISSING)")
        w.emit("if o is MISSING or (o is not None and (c is None or c > o)):")
        w.emit(f"    {nxt}[h] = c")
    signature = ", ".join(f"p{i}" for i in range(len(w.params)))
    # The continuations are closures over the parameters, defined before the loops.
    continuations = [*w.nested[1:], w.body()] if w.nested else []
    outer = w.nested[0] if w.nested else w.body()
    start = [f"    k = {w.tick}()"] if w.tick is not None else []
    lines = [f"def run({signature}):", *start, *continuations, outer, ""]
    source = "\n".join(lines)
    return source, w.params


def _emit_absent(w: _Writer, step: Step) -> None:
    positions: list[int] = []
    parts: list[str] = []
    first: dict[Var, int] = {}
    repeats: list[tuple[int, int]] = []
    for position, arg in enumerate(step.args):
        if isinstance(arg, Var) and arg.is_anonymous:
            if arg in first:  # the same unbound variable twice: values must agree
                repeats.append((first[arg], position))
            else:
                first[arg] = position
            continue
        positions.append(position)
        parts.append(w.expr(arg))
    if repeats:
        test = w.param(Param("exists", value=tuple(repeats)))
        if positions:
            index = w.param(Param("index", rel=step.rel, positions=tuple(positions)))
            w.emit(f"if {test}({index}.get({_key(parts)}, ())): continue")
        else:
            rows = w.param(Param("rows", rel=step.rel))
            w.emit(f"if {test}({rows}): continue")
    elif len(positions) == len(step.args):
        rows = w.param(Param("rows", rel=step.rel))
        key = _tuple(parts) if parts else "()"
        w.emit(f"if {key} in {rows}: continue")
    elif positions:
        index = w.param(Param("index", rel=step.rel, positions=tuple(positions)))
        w.emit(f"if {_key(parts)} in {index}: continue")
    else:
        rows = w.param(Param("rows", rel=step.rel))
        w.emit(f"if {rows}: continue")


def exists_with_repeats(
    pairs: tuple[tuple[int, int], ...],
) -> Callable[[Iterable[tuple[int, ...]]], bool]:
    """Return a test: does any row have equal values at each pair of positions?"""

    def exists(rows: Iterable[tuple[int, ...]]) -> bool:
        return any(all(row[a] == row[b] for a, b in pairs) for row in rows)

    return exists


def _emit_positive(
    w: _Writer, step: Step, is_delta: bool, weighted: bool
) -> str | None:
    """Emit the loop or test for one positive step; return its confidence name."""
    bound_positions: list[int] = []
    bound_parts: list[str] = []
    for position, arg in enumerate(step.args):
        if not isinstance(arg, Var) or arg in w.names:
            bound_positions.append(position)
    carries = weighted and step.weight_order is not None
    conf = w.confidence() if carries else None
    arity = len(step.args)
    scan = is_delta or not bound_positions
    if not scan and len(bound_positions) == arity:
        bound_parts = [w.expr(a) for a in step.args]
        rows = w.param(Param("rows", rel=step.rel))
        key = _tuple(bound_parts) if bound_parts else "()"
        if conf is not None:
            w.emit(f"{conf} = {rows}.get({key}, MISSING)")
            w.emit(f"if {conf} is MISSING: continue")
            w.confidences.append(conf)
        else:
            w.emit(f"if {key} not in {rows}: continue")
        return conf
    w.open_loop()  # before the step binds its names: a continuation takes the older
    # Build the unpacking target: fresh names for new variables, "_" for positions
    # the lookup already fixed, temporaries for values that must be checked.
    checks: list[tuple[str, str]] = []
    target: list[str] = []
    fresh: dict[Var, str] = {}
    for position, arg in enumerate(step.args):
        fixed = position in bound_positions
        if fixed and not scan:
            target.append("_")
            continue
        if fixed:
            name = w.temp()
            checks.append((name, w.expr(arg)))
            target.append(name)
            continue
        assert isinstance(arg, Var)
        if arg in fresh:
            name = w.temp()
            checks.append((name, fresh[arg]))
            target.append(name)
            continue
        fresh[arg] = w.bind(arg)
        target.append(fresh[arg])
    unpack = _tuple(target) if arity else "()"
    if scan:
        source = w.param(Param("delta" if is_delta else "rows", rel=step.rel))
        rows = source
        iterable = source
    else:
        parts = [w.expr(step.args[p]) for p in bound_positions]
        index = w.param(Param("index", rel=step.rel, positions=tuple(bound_positions)))
        iterable = f"{index}.get({_key(parts)}, ())"
        rows = w.param(Param("rows", rel=step.rel)) if carries else ""
    if conf is not None:
        row = w.temp()
        w.emit(f"for {row} in {iterable}:")
        w.depth += 1
        if any(name != "_" for name in target):
            w.emit(f"{unpack} = {row}")
        w.emit(f"{conf} = {rows}[{row}]")
        w.confidences.append(conf)
    else:
        w.emit(f"for {unpack} in {iterable}:")
        w.depth += 1
    for left, right in checks:
        w.emit(f"if {left} != {right}: continue")
    return conf


@lru_cache(maxsize=4096)
def _compile(source: str) -> Callable[..., None]:
    namespace: dict[str, Any] = {"ONCE": (None,), "MISSING": MISSING}
    exec(compile(source, "<nocturnus-join>", "exec"), namespace)  # noqa: S102
    return namespace["run"]  # type: ignore[no-any-return]  # the generated function


def comparison(op: str, interner: Interner) -> Callable[[int, int], bool]:
    """Return the built-in ``op`` as a test on two interned constant ids.

    Semantics are those of :func:`nocturnus.engine.rules.compare`; equal ids are the
    same constant, which settles ``eq``/``neq`` without looking at values.
    """
    values = interner.values
    numbers = interner.numbers
    if op in ("eq", "neq"):
        want = op == "eq"

        def equal(a: int, b: int) -> bool:
            if a == b:
                return want
            x = numbers[a]
            y = numbers[b]
            return (x is not None and y is not None and x == y) == want

        return equal

    def ordered(a: int, b: int) -> bool:
        return compare_numbers(op, values[a], values[b], numbers[a], numbers[b])

    return ordered
