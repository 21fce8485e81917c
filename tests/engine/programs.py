"""Random stratified programs for the differential tests (issue 13).

A program is rules (some database-wide, some scoped) and facts in several scopes.
Rules come from *templates* of the shapes the fixpoint's strategies accept (copies,
projections, transitive closures, reachability, same generation, binary chains),
from random *near-misses* of those shapes (a constant, a repeated variable, an extra
literal, a swapped argument, a second exit rule, a confidence...), and from fully
random rules mixing joins, constants, explicit negation, negation as failure and
comparisons. Only stratified, range-restricted rule sets are kept: a rule that would
break that is dropped, as teaching it would be refused.

Every predicate has one arity, so the oracle's strata (by predicate and negation)
are the engine's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from nocturnus.engine.analysis import ProgramError, check_program
from nocturnus.engine.rules import Literal, Rule
from nocturnus.engine.terms import Const, Var, fresh_var

BASE = {"e": 2, "d": 2, "s": 1, "n": 1, "w": 3}
DERIVED = {"t": 2, "u": 2, "r": 1, "q": 1, "g": 2, "h": 3, "k": 2}
ARITY = {**BASE, **DERIVED}
# 1 and "1" must stay apart; no float equals an int here: the service's stored facts
# key args by Python equality, which conflates p(1) and p(1.0) (reported, issue 13).
CONSTANTS: list[Const] = ["a", "b", "c", "d", 1, "1", 2.5, 2]
OUTSIDER: Const = "zz"  # a constant no fact mentions
SCOPES = ["main", "s1", "s2"]
CONFIDENCES = [0.5, 0.8, 0.9, 1.0]
COMPARISONS = ["lt", "gt", "eq", "neq", "<=", ">="]

x, y, z, px, py = (Var(n) for n in ("x", "y", "z", "px", "py"))


@dataclass
class Taught:
    """A rule with where it was taught: a scope (None: every scope) and its level."""

    rule: Rule
    scope: str | None = None
    database: bool = False


@dataclass
class Told:
    """A stored fact of one scope."""

    scope: str
    predicate: str
    negated: bool
    args: tuple[Const, ...]
    confidence: float | None = None


@dataclass
class Program:
    """One generated test case."""

    rules: list[Taught] = field(default_factory=list)
    facts: list[Told] = field(default_factory=list)
    domain: list[Const] = field(default_factory=list)

    def describe(self) -> str:
        """The case, in text a failure message can show."""
        lines = []
        for taught in self.rules:
            where = "database" if taught.database else "tenant"
            scope = taught.scope or "*"
            confidence = taught.rule.confidence
            lines.append(
                f"  [{where} {scope}] {taught.rule.text()}"
                + ("" if confidence is None else f"  @{confidence}")
            )
        for fact in self.facts:
            atom = Literal(fact.predicate, fact.args, fact.negated).text()
            confidence = "" if fact.confidence is None else f" @{fact.confidence}"
            lines.append(f"  {fact.scope}: {atom}{confidence}")
        return "\n".join(lines)


def lit(predicate: str, *args: Var | Const, negated: bool = False) -> Literal:
    return Literal(predicate, tuple(args), negated)


def generate(rng: random.Random) -> Program:
    """One random program with its facts."""
    program = Program(domain=rng.sample(CONSTANTS, rng.randint(3, 5)))
    candidates: list[Rule] = []
    for _ in range(rng.choice((1, 1, 2))):
        candidates += rng.choice(TEMPLATES)(rng)
    if rng.random() < 0.6:
        at = rng.randrange(len(candidates))
        candidates[at] = mutate(candidates[at], rng, program.domain)
    for _ in range(rng.choice((0, 0, 1, 2))):
        candidates.append(random_rule(rng, program.domain))
    kept: list[Rule] = []
    for number, candidate in enumerate(candidates):
        if rng.random() < 0.25:
            candidate = Rule(
                candidate.id, candidate.head, candidate.body, rng.choice(CONFIDENCES)
            )
        candidate = Rule(
            f"r{number}", candidate.head, candidate.body, candidate.confidence
        )
        try:
            check_program([*kept, candidate])
        except ProgramError:
            continue
        kept.append(candidate)
    scopes = SCOPES[: rng.choice((1, 2, 2, 3))]
    for rule in kept:
        scope = rng.choice(scopes) if len(scopes) > 1 and rng.random() < 0.2 else None
        program.rules.append(Taught(rule, scope, database=rng.random() < 0.2))
    program.facts = facts(rng, program, scopes)
    return program


def facts(rng: random.Random, program: Program, scopes: list[str]) -> list[Told]:
    """Facts of the base relations, a few of derived ones, in every scope."""
    told: dict[tuple[str, str, bool, tuple[object, ...]], Told] = {}
    mentioned = {p for t in program.rules for p in _predicates(t.rule)}
    base = [p for p in BASE if p in mentioned] or ["e"]
    derived = [p for p in DERIVED if p in mentioned]
    for scope in scopes:
        for _ in range(rng.randint(3, 12)):
            if derived and rng.random() < 0.12:
                predicate = rng.choice(derived)
            else:
                predicate = rng.choice(base)
            args = tuple(rng.choice(program.domain) for _ in range(ARITY[predicate]))
            negated = rng.random() < 0.1
            confidence = rng.choice(CONFIDENCES) if rng.random() < 0.15 else None
            fact = Told(scope, predicate, negated, args, confidence)
            key = (scope, predicate, negated, tuple((type(a), a) for a in args))
            told[key] = fact  # told again: the later attributes replace the earlier
    return list(told.values())


def _predicates(rule: Rule) -> set[str]:
    return {rule.head.predicate} | {b.predicate for b in rule.body if not b.is_builtin}


# -- templates: the shapes the strategies accept ----------------------------------


def copy_rule(rng: random.Random) -> list[Rule]:
    """A single non-recursive rule: copy, reversed copy, or projection."""
    head = rng.choice(["t", "u", "k"])
    source = rng.choice(["e", "d"])
    return [
        rng.choice(
            [
                Rule("", lit(head, x, y), (lit(source, x, y),)),
                Rule("", lit(head, x, y), (lit(source, y, x),)),
                Rule("", lit("r", x), (lit(source, x, y),)),
                Rule("", lit("r", y), (lit(source, x, y),)),
                Rule("", lit(head, x, z), (lit("w", x, y, z),)),
                Rule("", lit("h", y, x, x), (lit(source, x, y),)),
            ]
        )
    ]


def closure(rng: random.Random) -> list[Rule]:
    """A transitive closure: one exit rule and one or two recursive chain rules."""
    t, e = rng.choice(["t", "u"]), rng.choice(["e", "d"])
    forward = rng.random() < 0.7
    exit_rule = Rule("", lit(t, x, y), (lit(e, x, y) if forward else lit(e, y, x),))

    def edge(a: Var, b: Var) -> Literal:
        return lit(e, a, b) if forward else lit(e, b, a)

    steps = [
        (lit(t, x, z), edge(z, y)),
        (edge(x, z), lit(t, z, y)),
        (lit(t, x, z), lit(t, z, y)),
    ]
    recursive = []
    for body in rng.sample(steps, rng.choice((1, 1, 2))):
        ordered = body if rng.random() < 0.7 else body[::-1]
        recursive.append(Rule("", lit(t, x, y), tuple(ordered)))
    return [exit_rule, *recursive]


def reachability(rng: random.Random) -> list[Rule]:
    """Unary recursion along a binary relation, plain or mutual."""
    e = rng.choice(["e", "d"])
    step = lit(e, x, y) if rng.random() < 0.6 else lit(e, y, x)
    body = (lit("r", x), step)
    rules = [
        Rule("", lit("r", y), (lit("s", y),)),
        Rule("", lit("r", y), body if rng.random() < 0.6 else body[::-1]),
    ]
    if rng.random() < 0.3:
        rules.append(Rule("", lit("q", y), (lit("r", x), lit("d", x, y))))
        rules.append(Rule("", lit("r", y), (lit("q", x), lit("d", y, x))))
    return rules


def same_generation(rng: random.Random) -> list[Rule]:
    """``g(?x, ?y) :- a(?px, ?x), g(?px, ?py), b(?py, ?y)`` with exits and guards."""
    a, b = rng.choice(["e", "d"]), rng.choice(["e", "d"])
    exits = [
        Rule("", lit("g", x, x), (lit("n", x),)),
        Rule("", lit("g", x, y), (lit("d", x, y),)),
    ]
    body = [
        lit(a, px, x) if rng.random() < 0.7 else lit(a, x, px),
        lit("g", px, py),
        lit(b, py, y) if rng.random() < 0.7 else lit(b, y, py),
    ]
    if rng.random() < 0.3:
        body.append(lit("n", rng.choice((x, y))))
    rng.shuffle(body)
    return [rng.choice(exits), Rule("", lit("g", x, y), tuple(body))]


def chain(rng: random.Random) -> list[Rule]:
    """Binary chain recursion that is not a closure: mutual, or heads reversed."""
    if rng.random() < 0.5:
        return [
            Rule("", lit("t", x, y), (lit("e", x, y),)),
            Rule("", lit("t", x, y), (lit("e", x, z), lit("u", z, y))),
            Rule("", lit("u", x, y), (lit("t", x, z), lit("d", z, y))),
        ]
    return [
        Rule("", lit("t", x, y), (lit("e", x, y),)),
        Rule("", lit("t", y, x), (lit("t", x, z), lit("d", y, z))),
    ]


def join(rng: random.Random) -> list[Rule]:
    """A non-recursive join, possibly with constants, NAF or a comparison."""
    body = [lit("e", x, z), lit("d", z, y)]
    if rng.random() < 0.3:
        body.append(Literal("n", (x,), naf=True))
    if rng.random() < 0.3:
        body.append(Literal(rng.choice(COMPARISONS), (x, y)))
    return [Rule("", lit(rng.choice(["k", "t"]), x, y), tuple(body))]


TEMPLATES = [copy_rule, closure, closure, reachability, same_generation, chain, join]


# -- near-misses and random rules -------------------------------------------------


def mutate(rule: Rule, rng: random.Random, domain: list[Const]) -> Rule:
    """A near-miss of ``rule``: one small change its shape's strategy must notice."""
    kind = rng.choice(
        ["constant", "repeat", "literal", "swap", "naf", "compare", "negated"]
    )
    body = list(rule.body)
    variables = sorted({v for b in body for v in b.variables}, key=lambda v: v.name)
    head = rule.head
    if kind == "constant" and variables:
        victim, value = rng.choice(variables), rng.choice(domain)
        if rng.random() < 0.5:
            head = _substitute(head, victim, value)
        body = [_substitute(b, victim, value) for b in body]
        if rng.random() < 0.5:
            head = _substitute(head, victim, value)
    elif kind == "repeat" and len(variables) >= 2:
        keep, drop = rng.sample(variables, 2)
        head = _substitute(head, drop, keep)
        body = [_substitute(b, drop, keep) for b in body]
    elif kind == "literal" and variables:
        predicate = rng.choice(list(BASE))
        body.insert(
            rng.randrange(len(body) + 1),
            lit(predicate, *(rng.choice(variables) for _ in range(BASE[predicate]))),
        )
    elif kind == "swap":
        at = rng.randrange(len(body))
        if not body[at].is_builtin:
            body[at] = Literal(
                body[at].predicate, body[at].args[::-1], body[at].negated, body[at].naf
            )
    elif kind == "naf" and variables:
        predicate = rng.choice(["n", "s"])
        body.append(Literal(predicate, (rng.choice(variables),), naf=True))
    elif kind == "compare" and variables:
        body.append(
            Literal(
                rng.choice(COMPARISONS),
                (rng.choice(variables), rng.choice([*variables, *domain])),
            )
        )
    elif kind == "negated":
        at = rng.randrange(len(body))
        if not body[at].is_builtin:
            body[at] = Literal(body[at].predicate, body[at].args, True, body[at].naf)
    return Rule(rule.id, head, tuple(body), rule.confidence)


def _substitute(literal: Literal, var: Var, value: Var | Const) -> Literal:
    args = tuple(value if a == var else a for a in literal.args)
    return Literal(literal.predicate, args, literal.negated, literal.naf)


def random_rule(rng: random.Random, domain: list[Const]) -> Rule:
    """A rule of random literals: joins, constants, negation, NAF, comparisons."""
    names = [x, y, z]
    body: list[Literal] = []
    for _ in range(rng.randint(1, 3)):
        predicate = rng.choice(list(ARITY))
        args = tuple(
            rng.choice(names) if rng.random() < 0.8 else rng.choice(domain)
            for _ in range(ARITY[predicate])
        )
        body.append(Literal(predicate, args, rng.random() < 0.15))
    bound = sorted({v for b in body for v in b.variables}, key=lambda v: v.name)
    if not bound:
        body.append(lit("s", x))
        bound = [x]
    if rng.random() < 0.3:
        predicate = rng.choice(list(ARITY))
        args = tuple(
            rng.choice([*bound, fresh_var()])
            if rng.random() < 0.8
            else rng.choice(domain)
            for _ in range(ARITY[predicate])
        )
        body.append(Literal(predicate, args, rng.random() < 0.2, naf=True))
    if rng.random() < 0.3:
        body.append(
            Literal(
                rng.choice(COMPARISONS),
                (rng.choice(bound), rng.choice([*bound, *domain])),
            )
        )
    predicate = rng.choice(list(DERIVED))
    head = Literal(
        predicate,
        tuple(
            rng.choice(bound) if rng.random() < 0.85 else rng.choice(domain)
            for _ in range(ARITY[predicate])
        ),
        rng.random() < 0.1,
    )
    return Rule("", head, tuple(body))
