"""Context windows: the most salient facts of a tenant now, ranked (issue 6).

A *window* is the top ``maxFacts`` visible facts of a tenant (one scope or all), ranked
by salience (see ``salience.py``); with goals, the facts that prove the goals come first.
Everything a window contains is a function of the tenant's knowledge and the request,
never of the wall clock between two calls: the same knowledge and request give the
same window, byte for byte (its id is a hash of its content, its ``generatedAt`` the
``createdAt`` of the tenant's newest visible fact).

The ranking and the last windows are kept in the tenant's read model
(``readmodels.py``), never logged; the uses the ranking counts are logged
(``uses.py``), so every process builds the same window; a session's last window is
kept in the shared store (``sessions.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson

from nocturnus.engine.proofs import Proof
from nocturnus.engine.rules import Literal
from nocturnus.service import tenants
from nocturnus.service.answers import Answer
from nocturnus.service.context.sessions import WINDOWS, SentWindow, Sessions
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.events import Scalar
from nocturnus.service.facts import FactKey, FactRecord
from nocturnus.service.formats import fact_text, render_line, render_text
from nocturnus.service.projection import TenantState
from nocturnus.service.readmodels import TenantReadModel
from nocturnus.service.rulebook import Rulebook, RuleRecord
from nocturnus.service.salience import Ranking, knowledge_key

Db = Database[DatabaseState]

RECENT_MS = 5 * 60 * 1000
"""An entry created within this of the newest fact is ``recent``, else ``salient``."""

MAX_GOAL_ANSWERS = 1000


@dataclass(frozen=True, slots=True)
class ContextConfig:
    """The context settings a request runs with (``salience_half_life_ms``; the
    sessions' bound, ``context_sessions``, is the :class:`Sessions` object's)."""

    half_life_ms: int = 3_600_000


MAX_CACHED_WINDOWS = 16


# -- requests and results ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bucket:
    """A relevance bucket of a window: its predicates (None: any) and weight."""

    name: str
    predicates: frozenset[str] | None
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class WindowRequest:
    """A ``POST /context/optimize`` body (``/context/diff`` needs ``session_id``)."""

    scope: str | None = None
    max_facts: int = 25
    goals: tuple[Literal, ...] = ()
    predicates: frozenset[str] | None = None
    fmt: str = "predicate"
    include_rules: bool = True
    max_per_predicate: int | None = None
    min_salience: float = 0.0
    auto_resolve: bool = True
    buckets: tuple[Bucket, ...] = ()
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Provenance:
    """Why an entry is in a goal-driven window: the rule applied, its premises, and
    the goal answers the entry helps prove (``rule`` is ``""`` for a stored answer)."""

    rule: str
    premises: tuple[str, ...]
    supports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WindowEntry:
    """One fact of a window, as ranked and rendered (``line``) for the request.

    ``fingerprint`` is the entry's knowledge content (attributes, confidence,
    provenance; not salience or category): a session diff compares it.
    """

    key: FactKey
    record: FactRecord | None
    confidence: float | None
    salience: float
    category: str
    provenance: Provenance | None
    line: str
    fingerprint: bytes


def fingerprint(
    record: FactRecord | None, confidence: float | None, provenance: Provenance | None
) -> bytes:
    """:attr:`WindowEntry.fingerprint` of an entry with these parts."""
    attrs = None if record is None else record.attributes()
    prov = (
        None
        if provenance is None
        else (provenance.rule, provenance.premises, provenance.supports)
    )
    return orjson.dumps([confidence, attrs, prov], option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class Contradiction:
    """A fact visible in its scope together with its negation, and both saliences."""

    positive: FactKey
    positive_salience: float
    negative_salience: float


@dataclass(frozen=True, slots=True)
class BucketStat:
    """How a relevance bucket was filled."""

    included: int
    max_allocation: int
    min_salience: float
    max_salience: float


@dataclass(frozen=True, slots=True)
class Window:
    """A context window: its entries in order, what else it found, and its text."""

    window_id: str
    entries: tuple[WindowEntry, ...]
    relevant_rules: tuple[str, ...]
    total_available: int
    deduplication_savings: int
    contradictions: tuple[Contradiction, ...]
    contradictions_resolved: int
    bucket_stats: dict[str, BucketStat]
    goal_driven: bool
    knowledge_generation: int
    generated_at: int
    text: str
    fmt: str


# -- building a window ---------------------------------------------------------------


def ranking_of(
    state: TenantState, model: TenantReadModel, cfg: ContextConfig
) -> Ranking:
    """The tenant's ranking, synced with its knowledge (once per knowledge change)."""
    generation = knowledge_key(state)
    ranking = model.ranking
    if ranking is None or ranking.half_life_ms != cfg.half_life_ms:
        ranking = model.ranking = Ranking(cfg.half_life_ms)
        state.changed = None  # no journal to trust: the first sync rebuilds everything
    if ranking.generation != generation:
        ranking.sync(state)
        ranking.generation = generation
    return ranking


class _Scores:
    """Salience lookups for single facts (goal proofs, contradictions)."""

    def __init__(self, state: TenantState, ranking: Ranking) -> None:
        self.state = state
        self.ranking = ranking

    def of(self, key: FactKey) -> float:
        record = self.state.visible(key)
        if record is None:
            return 0.0
        return self.ranking.score(key, record, self.state)


def _identity(key: FactKey) -> tuple[Any, ...]:
    return (key.predicate, key.negated, key.args)


class _Builder:
    """Collects entries in window order, removing duplicates across scopes."""

    def __init__(self, req: WindowRequest) -> None:
        self.req = req
        self.show_scope = req.scope is None
        self.order: list[FactKey] = []
        self.items: dict[FactKey, dict[str, Any]] = {}
        self.identities: dict[tuple[Any, ...], FactKey] = {}
        self.per_predicate: dict[str, int] = {}
        self.dedup = 0

    def __len__(self) -> int:
        return len(self.order)

    def full(self) -> bool:
        return len(self.order) >= self.req.max_facts

    def taken(self, key: FactKey) -> bool:
        """True (counting a saved duplicate) when this fact is already in the window."""
        if key in self.items:
            return True
        if _identity(key) in self.identities:
            self.dedup += 1
            return True
        return False

    def add(self, key: FactKey, **item: Any) -> dict[str, Any]:
        self.order.append(key)
        self.items[key] = item
        self.identities[_identity(key)] = key
        self.per_predicate[key.predicate] = self.per_predicate.get(key.predicate, 0) + 1
        return item

    def capped(self, predicate: str) -> bool:
        cap = self.req.max_per_predicate
        return cap is not None and self.per_predicate.get(predicate, 0) >= cap


def cached_window(
    state: TenantState,
    model: TenantReadModel,
    database_rules: Rulebook,
    req: WindowRequest,
    cfg: ContextConfig,
) -> Window | None:
    """The window cached for ``req`` at the tenant's current knowledge (state
    refreshed), if any.

    Windows are cached in the tenant's read model for the knowledge generation they
    were built in (the cache of an older one is dropped here): the same request then
    answers with the same object.
    """
    ranking = ranking_of(state, model, cfg)
    generation = (ranking.generation, database_rules.version, cfg)
    if model.windows_generation != generation:
        model.windows.clear()
        model.windows_generation = generation
    return model.windows.get(dataclasses.replace(req, session_id=None))


def build_window(
    state: TenantState,
    model: TenantReadModel,
    database_rules: Rulebook,
    req: WindowRequest,
    cfg: ContextConfig,
) -> Window:
    """The window for ``req``, which has no goals, over the tenant's current
    knowledge (state refreshed); the cached one if there is one.

    A request with goals goes through :func:`goal_window`, which evaluates them.
    """
    window = cached_window(state, model, database_rules, req, cfg)
    if window is None:
        window = _build(state, database_rules, req, model, ())
        _keep(model, req, window)
    return window


async def goal_window(
    db: Db,
    tenant: str,
    state: TenantState,
    model: TenantReadModel,
    req: WindowRequest,
    cfg: ContextConfig,
) -> Window:
    """:func:`build_window` with the goals' answers and proofs evaluated by the
    database's evaluator (issue 13: off the event loop, under the query budget);
    the caller holds the tenant's turn (``Evaluator.turn``).

    A write landing while the goals are evaluated makes a window of the goals'
    answers before it and the rest after it: it is returned but not cached.

    :raises QueryBudgetExceeded: a goal's evaluation went past the budget.
    """
    window = cached_window(state, model, db.root.rules, req, cfg)
    if window is not None:
        return window
    generation = model.windows_generation
    limit = min(req.max_facts, MAX_GOAL_ANSWERS)
    answered = [
        await tenants.proved_answers(db, tenant, state, goal, req.scope, limit)
        for goal in req.goals
    ]
    rules = db.root.rules  # as they are now: the goals were evaluated meanwhile
    window = cached_window(state, model, rules, req, cfg)
    if window is None:
        window = _build(state, rules, req, model, answered)
        if model.windows_generation == generation:
            _keep(model, req, window)
    return window


def _keep(model: TenantReadModel, req: WindowRequest, window: Window) -> None:
    """Cache ``window`` as the answer to ``req`` (any session) in this generation."""
    if len(model.windows) >= MAX_CACHED_WINDOWS:
        model.windows.pop(next(iter(model.windows)))
    model.windows[dataclasses.replace(req, session_id=None)] = window


def _build(
    state: TenantState,
    database_rules: Rulebook,
    req: WindowRequest,
    model: TenantReadModel,
    answered: Sequence[Sequence[Answer]],
) -> Window:
    """The window for ``req``; ``answered``: each goal's answers with their proofs."""
    ranking = model.ranking
    assert ranking is not None  # cached_window ranked the tenant
    scores = _Scores(state, ranking)
    ref_ms = ranking.ref_ms
    excluded: set[FactKey] = set()
    found = _contradictions(ranking, scores, req)
    if req.auto_resolve:
        for c in found:
            excluded.add(_loser(state, c))
    builder = _Builder(req)
    used_rules: dict[str, RuleRecord | None] = {}
    if req.goals:
        _goal_entries(state, answered, req, scores, builder, excluded, used_rules)
    bucket_stats: dict[str, BucketStat] = {}
    if req.buckets:
        bucket_stats = _fill_buckets(state, ranking, req, builder, excluded)
    else:
        _fill(state, ranking, req, builder, excluded, None, None)
    rules = (
        _relevant_rules(state, database_rules, req, builder, used_rules)
        if req.include_rules
        else []
    )
    entries = []
    lines = []
    for key in builder.order:
        item = builder.items[key]
        line = render_line(
            req.fmt,
            key,
            item["confidence"],
            item["salience"],
            item["category"],
            builder.show_scope,
        )
        provenance = item.get("provenance")
        entries.append(
            WindowEntry(
                key,
                item["record"],
                item["confidence"],
                item["salience"],
                item["category"],
                provenance,
                line,
                fingerprint(item["record"], item["confidence"], provenance),
            )
        )
        lines.append((key.predicate, line))
    text = render_text(req.fmt, lines, rules)
    window = Window(
        window_id="",
        entries=tuple(entries),
        relevant_rules=tuple(rules),
        total_available=ranking.count(req.scope, req.predicates),
        deduplication_savings=builder.dedup,
        contradictions=tuple(found),
        contradictions_resolved=len(found) if req.auto_resolve else 0,
        bucket_stats=bucket_stats,
        goal_driven=bool(req.goals),
        knowledge_generation=state.last_seq,
        generated_at=ref_ms,
        text=text,
        fmt=req.fmt,
    )
    return _with_id(window)


def _with_id(window: Window) -> Window:
    canon = [
        [
            [e.key.scope, e.key.predicate, e.key.negated, list(e.key.args)],
            e.salience,
            e.category,
            e.line,
            e.fingerprint.decode(),
        ]
        for e in window.entries
    ]
    body = orjson.dumps(
        [
            canon,
            list(window.relevant_rules),
            [
                [list(c.positive), c.positive_salience, c.negative_salience]
                for c in window.contradictions
            ],
            window.total_available,
            window.deduplication_savings,
            window.contradictions_resolved,
            sorted([name, _stat(stat)] for name, stat in window.bucket_stats.items()),
            window.goal_driven,
            window.knowledge_generation,
            window.generated_at,
            window.text,
        ]
    )
    digest = hashlib.sha256(body).hexdigest()[:16]
    return Window(**{**_fields(window), "window_id": "ctx_" + digest})


def _stat(stat: BucketStat) -> list[Any]:
    return [stat.included, stat.max_allocation, stat.min_salience, stat.max_salience]


def _fields(window: Window) -> dict[str, Any]:
    return {name: getattr(window, name) for name in Window.__dataclass_fields__}


def _contradictions(
    ranking: Ranking, scores: _Scores, req: WindowRequest
) -> list[Contradiction]:
    found = []
    for positive in ranking.contradictions(req.scope):
        if req.predicates is not None and positive.predicate not in req.predicates:
            continue
        found.append(
            Contradiction(positive, scores.of(positive), scores.of(positive.opposite()))
        )
    return found


def _loser(state: TenantState, c: Contradiction) -> FactKey:
    """The side a resolved contradiction drops: the less salient, then the older;
    on a full tie the negative side."""
    negative = c.positive.opposite()
    pos, neg = state.record(c.positive), state.record(negative)
    pos_rank = (c.positive_salience, pos.created_at if pos else 0, 1)
    neg_rank = (c.negative_salience, neg.created_at if neg else 0, 0)
    return negative if pos_rank > neg_rank else c.positive


def _category(record: FactRecord, ref_ms: int) -> str:
    return "recent" if ref_ms - record.created_at <= RECENT_MS else "salient"


def _fill(
    state: TenantState,
    ranking: Ranking,
    req: WindowRequest,
    builder: _Builder,
    excluded: set[FactKey],
    predicates: frozenset[str] | None,
    category: str | None,
    limit: int | None = None,
) -> list[float]:
    """Add ranked facts (most salient first) until the window or ``limit`` is full."""
    taken: list[float] = []
    if builder.full() or limit == 0:
        return taken
    wanted = req.predicates
    ref_ms = ranking.ref_ms
    facts = state.facts
    for neg_salience, _created, _order, key in ranking.rows(req.scope):
        salience = -neg_salience
        if salience < req.min_salience:
            break
        if wanted is not None and key.predicate not in wanted:
            continue
        if predicates is not None and key.predicate not in predicates:
            continue
        if key in excluded or builder.capped(key.predicate) or builder.taken(key):
            continue
        record = facts[key.scope][key]
        builder.add(
            key,
            record=record,
            confidence=record.confidence,
            salience=salience,
            category=category or _category(record, ref_ms),
        )
        taken.append(salience)
        if builder.full() or (limit is not None and len(taken) >= limit):
            break
    return taken


def _fill_buckets(
    state: TenantState,
    ranking: Ranking,
    req: WindowRequest,
    builder: _Builder,
    excluded: set[FactKey],
) -> dict[str, BucketStat]:
    """Relevance buckets: each gets ``max(1, floor(weight / Σweights · room))`` slots,
    filled with its most salient unused facts; what is left goes to ``_overflow``."""
    room = req.max_facts - len(builder)
    total = sum(b.weight for b in req.buckets) or 1.0
    stats: dict[str, BucketStat] = {}
    for bucket in req.buckets:
        allocation = max(1, math.floor(bucket.weight / total * room))
        taken = _fill(
            state,
            ranking,
            req,
            builder,
            excluded,
            bucket.predicates,
            bucket.name,
            allocation,
        )
        stats[bucket.name] = BucketStat(
            len(taken), allocation, min(taken, default=0.0), max(taken, default=0.0)
        )
    taken = _fill(state, ranking, req, builder, excluded, None, "_overflow")
    if taken:
        stats["_overflow"] = BucketStat(len(taken), len(taken), min(taken), max(taken))
    return stats


def _goal_entries(
    state: TenantState,
    answered: Sequence[Sequence[Answer]],
    req: WindowRequest,
    scores: _Scores,
    builder: _Builder,
    excluded: set[FactKey],
    used_rules: dict[str, RuleRecord | None],
) -> None:
    """Answers of the goals and the facts their proofs use, in discovery order."""
    for _, answers in zip(req.goals, answered, strict=True):
        for answer in answers:
            if builder.full():
                return
            if answer.proof is None:
                continue
            supports = fact_text(answer.key)
            _walk(
                answer.proof,
                answer.key.scope,
                "",
                supports,
                state,
                scores,
                builder,
                excluded,
                used_rules,
            )


def _walk(
    proof: Proof,
    scope: str,
    parent_rule: str,
    supports: str,
    state: TenantState,
    scores: _Scores,
    builder: _Builder,
    excluded: set[FactKey],
    used_rules: dict[str, RuleRecord | None],
) -> float | None:
    """Add ``proof``'s node, then its subtree (a conclusion precedes its support).

    Returns the lowest salience among the stored facts the subtree rests on, which is
    also the salience of a derived (``inferred``) entry.
    """
    goal = proof.goal
    if proof.type not in ("fact", "rule") or goal.naf:
        return None
    # the goal of a fact or rule node is ground: its args are constants
    key = FactKey(scope, goal.predicate, goal.negated, cast(tuple[Scalar, ...], goal.args))
    record = state.visible(key) if proof.type == "fact" else None
    rule_text = ""
    premises: tuple[str, ...] = ()
    if proof.type == "rule" and proof.rule is not None:
        rule_text = proof.rule.text()
        used_rules.setdefault(proof.rule.id, None)
        premises = tuple(
            c.goal.text() for c in proof.children if c.type in ("fact", "rule", "naf")
        )
    item: dict[str, Any] | None = None
    existing = builder.items.get(key)
    if existing is not None:
        prov: Provenance | None = existing.get("provenance")
        if prov is not None and supports not in prov.supports:
            existing["provenance"] = Provenance(
                prov.rule, prov.premises, (*prov.supports, supports)
            )
    elif key not in excluded and not builder.full() and not builder.taken(key):
        if record is not None:
            builder.add(
                key,
                record=record,
                confidence=record.confidence,
                salience=scores.of(key),
                category="goal_relevant",
                provenance=Provenance(parent_rule, (), (supports,)),
            )
        else:
            item = builder.add(
                key,
                record=None,
                confidence=proof.confidence,
                salience=0.0,
                category="inferred",
                provenance=Provenance(rule_text, premises, (supports,)),
            )
    lowest = scores.of(key) if record is not None else None
    for child in proof.children:
        low = _walk(
            child,
            scope,
            rule_text,
            supports,
            state,
            scores,
            builder,
            excluded,
            used_rules,
        )
        if low is not None:
            lowest = low if lowest is None else min(lowest, low)
    if item is not None and lowest is not None:
        item["salience"] = lowest
    return lowest


def _relevant_rules(
    state: TenantState,
    database_rules: Rulebook,
    req: WindowRequest,
    builder: _Builder,
    used_rules: dict[str, RuleRecord | None],
) -> list[str]:
    """Rules used by goal proofs or mentioning a goal predicate; without goals, rules
    whose head or body mentions a predicate of the window. Database rules first."""
    if req.goals:
        wanted = {g.predicate for g in req.goals}
    else:
        wanted = {key.predicate for key in builder.order}
    texts = []
    for book in (database_rules, state.rules):
        records = sorted(book, key=lambda r: (r.created_at, r.rule.id))
        for record in records:
            if req.scope is not None and not record.applies_to(req.scope):
                continue
            rule = record.rule
            names = {rule.head.predicate, *(b.predicate for b in rule.body)}
            if rule.id in used_rules or names & wanted:
                texts.append(rule.text())
    return texts


# -- the service call -----------------------------------------------------------------


def remember_uses(db: Db, tenant: str, window: Window, now: int) -> None:
    """Facts a goal-driven window used in its proofs count as used. Merely listing a
    fact does not: that would keep whatever was shown once in every later window."""
    db.record_uses(
        tenant, (e.key for e in window.entries if e.category == "goal_relevant"), now
    )


async def optimize(
    db: Db,
    tenant: str,
    req: WindowRequest,
    cfg: ContextConfig,
    sessions: Sessions | None = None,
) -> Window:
    """Build a window; with a ``session_id`` it becomes that session's last window in
    ``sessions`` (stored as is: of two racing, the last stored is the session's)."""
    async with db.evaluator.turn((db.name, tenant)):
        state, now = await db.current(tenant)
        model = db.read_models.of(state)
        window = await goal_window(db, tenant, state, model, req, cfg)
    remember_uses(db, tenant, window, now)
    if req.session_id is not None:
        assert sessions is not None, "a window of a session needs its sessions"
        await sessions.write(WINDOWS, req.session_id, SentWindow.of(window).encode())
    return window

