"""Context summaries: fact and predicate counts, TTL and contradiction figures, and the
most salient facts of a tenant (``POST /context/summary``)."""

from __future__ import annotations

from dataclasses import dataclass

from nocturnus.service.context.window import (
    ContextConfig,
    Db,
    WindowEntry,
    WindowRequest,
    build_window,
)
from nocturnus.service.formats import fact_text

EXPIRING_WITHIN_MS = 3_600_000
TOP_PREDICATES = 10
TOP_SALIENT = 5


@dataclass(frozen=True, slots=True)
class Summary:
    """What :func:`summary` reports (see the module docstring)."""

    total_facts: int
    top_predicates: tuple[tuple[str, int], ...]
    predicate_count: int
    facts_with_ttl: int
    expiring_within_1h: int
    contradictions: int
    top_salient: tuple[WindowEntry, ...]
    total_chars: int
    knowledge_generation: int
    generated_at: int


async def summary(db: Db, tenant: str, scope: str | None, cfg: ContextConfig) -> Summary:
    """Counts per predicate, TTL and contradiction figures, the 5 most salient facts."""
    state, now = await db.current(tenant)
    model = db.read_models.of(state)
    window = build_window(
        state,
        model,
        db.root.rules,
        WindowRequest(
            scope=scope, max_facts=TOP_SALIENT, fmt="structured", include_rules=False
        ),
        cfg,
    )
    ranking = model.ranking
    assert ranking is not None  # build_window ranked the tenant
    counts = ranking.predicate_counts(scope)
    with_ttl = expiring = chars = 0
    for record in state.iter_visible(scope):
        if record.ttl is not None:
            with_ttl += 1
        ends = record.expires_at
        if ends is not None and ends <= now + EXPIRING_WITHIN_MS:
            expiring += 1
        chars += len(fact_text(record.key))
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PREDICATES]
    return Summary(
        total_facts=sum(counts.values()),
        top_predicates=tuple(top),
        predicate_count=len(counts),
        facts_with_ttl=with_ttl,
        expiring_within_1h=expiring,
        contradictions=len(window.contradictions),
        top_salient=window.entries,
        total_chars=chars,
        knowledge_generation=state.last_seq,
        generated_at=window.generated_at,
    )
