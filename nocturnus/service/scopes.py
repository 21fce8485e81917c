"""Scopes inside a tenant: fork, diff, merge, list and delete (API.md §4).

A scope is a partition of a tenant's facts (and of its scoped rules), not an isolation
boundary. Each write here is one event: ``scope_forked`` carries only the two names
(the projection shares the source's facts copy-on-write, so a fork costs O(#relations)
live and at replay), ``scope_merged`` carries the facts it moves, ``scope_deleted`` the
name. Diff and merge compare the facts visible now — what every read shows — while a
fork copies everything stored, so the copy also holds facts whose validity is still
ahead.

Every write decides and commits with no ``await`` in between, like the other commands.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from nocturnus.engine.analysis import ProgramError
from nocturnus.engine.evaluate import Program
from nocturnus.errors import Conflict, ValidationError
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.events import Event, ScopeDeleted, ScopeForked, ScopeMerged
from nocturnus.service.facts import FactRecord, RelationKey, ScopeFacts
from nocturnus.service.projection import TenantState
from nocturnus.service.queries import fact_order
from nocturnus.service.retry import retried
from nocturnus.service.rulebook import Rulebook

Db = Database[DatabaseState]

MERGE_STRATEGIES = ("SOURCE_WINS", "TARGET_WINS", "KEEP_BOTH", "REJECT")
DEFAULT_MERGE_STRATEGY = "SOURCE_WINS"


# -- outcomes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForkOutcome:
    """What a fork copied: facts and scoped rules."""

    source: str
    target: str
    copied: int
    rules: int


@dataclass(frozen=True, slots=True)
class ScopeDiff:
    """How ``source`` differs from ``target``; every list in :func:`fact_order`."""

    source: str
    target: str
    only_in_source: list[FactRecord]
    only_in_target: list[FactRecord]
    conflicts: list[tuple[FactRecord, FactRecord]]
    same: int


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """What a merge did: facts merged and conflicts met."""

    source: str
    target: str
    strategy: str
    merged: int
    conflicts: int


@dataclass(frozen=True, slots=True)
class ScopeInfo:
    """A scope with its stored facts and tenant rules scoped to it."""

    name: str
    facts: int
    rules: int


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    """What deleting a scope removed."""

    scope: str
    facts: int
    rules: int


class MergeRejected(Conflict):
    """A ``REJECT`` merge met conflicts; nothing was changed."""

    def __init__(self, diff: ScopeDiff) -> None:
        super().__init__(
            f"Merge of scope '{diff.source}' into '{diff.target}' rejected: "
            f"{len(diff.conflicts)} conflict(s)",
            {"conflicts": len(diff.conflicts)},
        )
        self.diff = diff


# -- reads ------------------------------------------------------------------------------


def list_scopes(state: TenantState) -> list[ScopeInfo]:
    """Scopes holding stored facts or tenant rules scoped to them, sorted by name."""
    rules: dict[str, int] = {}
    for record in state.rules:
        if record.scope is not None:
            rules[record.scope] = rules.get(record.scope, 0) + 1
    names = sorted(set(state.facts) | set(rules))
    return [ScopeInfo(n, len(state.facts.get(n, ())), rules.get(n, 0)) for n in names]


def diff_scopes(state: TenantState, source: str, target: str, now: int) -> ScopeDiff:
    """Compare the visible facts of two scopes (call ``state.refresh(now)`` first).

    A fact is *same* when both scopes hold it (attributes aside). A *conflict* pairs a
    fact only ``source`` holds with its opposite that only ``target`` holds; every other
    fact is only in its side. Relations both scopes still share since a fork (the same
    group and index objects) count as same without being compared, so a diff after a
    fork costs only what changed since.
    """
    src = state.facts.get(source) or ScopeFacts(source)
    tgt = state.facts.get(target) or ScopeFacts(target)
    same = 0
    only_source: list[FactRecord] = []
    only_target: list[FactRecord] = []
    conflicts: list[tuple[FactRecord, FactRecord]] = []
    for relation in src.relations() | tgt.relations():
        if src.shares(relation, tgt):
            shared = _shared_visible(state, source, target, relation)
            if shared is not None:
                same += shared
                continue
        predicate, negated, arity = relation
        opposite = (predicate, not negated, arity)
        for args in src.visible_args(relation, now):
            if tgt.holds_visible(relation, args, now):
                same += 1
            elif tgt.holds_visible(opposite, args, now) and not src.holds_visible(
                opposite, args, now
            ):
                theirs = tgt.record_at(opposite, args)
                conflicts.append((src.record_at(relation, args), theirs))
            else:
                only_source.append(src.record_at(relation, args))
        for args in tgt.visible_args(relation, now):
            if src.holds_visible(relation, args, now):
                continue
            if src.holds_visible(opposite, args, now) and not tgt.holds_visible(
                opposite, args, now
            ):
                continue  # the conflict was recorded from the source's side
            only_target.append(tgt.record_at(relation, args))
    only_source.sort(key=lambda r: fact_order(r.key))
    only_target.sort(key=lambda r: fact_order(r.key))
    conflicts.sort(key=lambda pair: fact_order(pair[0].key))
    return ScopeDiff(source, target, only_source, only_target, conflicts, same)


def _shared_visible(
    state: TenantState, source: str, target: str, relation: RelationKey
) -> int | None:
    """How many visible facts a relation shared by both scopes has, if the indexes agree.

    The stored records are the same objects; when both visible indexes also still share
    the relation, the visible facts are identical. None: compare them one by one.
    """
    src_view, tgt_view = state.views.get(source), state.views.get(target)
    if src_view is None or tgt_view is None:
        return None
    src_rel = src_view.index.relation(relation)
    if src_rel is not tgt_view.index.relation(relation):
        return None
    return 0 if src_rel is None else len(src_rel)


# -- decisions --------------------------------------------------------------------------


def decide_fork(
    state: TenantState, database_rules: Rulebook, source: str, target: str, now: int
) -> tuple[list[Event], ForkOutcome]:
    """Copy ``source`` (facts and tenant rules scoped to it) into an empty ``target``.

    :raises ValidationError: source and target are the same scope.
    :raises Conflict: ``target`` already holds facts or scoped rules.
    """
    if source == target:
        raise ValidationError("target: must differ from source", field="target")
    held = len(state.facts.get(target, ()))
    held_rules = sum(1 for r in state.rules if r.scope == target)
    if held or held_rules:
        raise Conflict(
            f"Scope '{target}' is not empty ({held} fact(s), {held_rules} rule(s)); "
            "delete it first or fork into a new scope",
            {"scope": target, "facts": held, "rules": held_rules},
        )
    copies = [r.forked(target, now) for r in state.rules if r.scope == source]
    try:
        Program(
            database_rules.for_scope(target)
            + state.rules.for_scope(target)
            + [c.rule for c in copies]
        )
    except ProgramError as e:
        raise ValidationError(
            f"target: the rules of scope '{source}' cannot join those of '{target}': {e}",
            field="target",
        ) from e
    copied = len(state.facts.get(source, ()))
    event = ScopeForked(source=source, target=target, created_at=now)
    return [event], ForkOutcome(source, target, copied, len(copies))


def decide_merge(
    state: TenantState, source: str, target: str, strategy: str, now: int
) -> tuple[list[Event], MergeOutcome]:
    """Bring the facts only ``source`` holds into ``target``; resolve conflicts by strategy.

    ``SOURCE_WINS`` replaces the target's side of a conflict, ``TARGET_WINS`` keeps it,
    ``KEEP_BOTH`` adds the source's side next to it. Facts only the target holds stay,
    and the source is left as it is.

    :raises ValidationError: source and target are the same scope, or unknown strategy.
    :raises MergeRejected: ``REJECT`` with any conflict.
    """
    if source == target:
        raise ValidationError("target: must differ from source", field="target")
    if strategy not in MERGE_STRATEGIES:
        raise ValidationError(
            f"strategy: must be one of {', '.join(MERGE_STRATEGIES)}", field="strategy"
        )
    diff = diff_scopes(state, source, target, now)
    if strategy == "REJECT" and diff.conflicts:
        raise MergeRejected(diff)
    told = list(diff.only_in_source)
    retracted: list[FactRecord] = []
    if strategy in ("SOURCE_WINS", "KEEP_BOTH"):
        told += [ours for ours, _ in diff.conflicts]
    if strategy == "SOURCE_WINS":
        retracted = [theirs for _, theirs in diff.conflicts]
    event = ScopeMerged(
        source=source,
        target=target,
        strategy=strategy,
        facts=tuple(_fact_body(r) for r in told),
        retracted=tuple(
            {
                "predicate": r.key.predicate,
                "args": list(r.key.args),
                "negated": r.key.negated,
            }
            for r in retracted
        ),
    )
    return [event], MergeOutcome(
        source, target, strategy, len(told), len(diff.conflicts)
    )


def _fact_body(record: FactRecord) -> dict[str, Any]:
    """The record's ``fact_told`` body without its scope (the merge names the target)."""
    told = record.to_event()
    return {f.name: getattr(told, f.name) for f in fields(told) if f.name != "scope"}


def decide_delete(state: TenantState, scope: str) -> tuple[list[Event], DeleteOutcome]:
    """Remove every fact of ``scope`` and the tenant rules scoped to it.

    Deleting a scope that holds nothing logs nothing and reports zero.
    """
    facts = len(state.facts.get(scope, ()))
    rules = sum(1 for r in state.rules if r.scope == scope)
    outcome = DeleteOutcome(scope, facts, rules)
    if not facts and not rules:
        return [], outcome
    return [ScopeDeleted(scope=scope, facts=facts, rules=rules)], outcome


# -- operations (what REST and MCP call) --------------------------------------------------


@retried
async def fork(db: Db, tenant: str, source: str, target: str) -> ForkOutcome:
    """Copy scope ``source`` into an empty ``target`` (``POST /scope/fork``).

    :raises ValidationError: the same scope twice.
    :raises Conflict: ``target`` holds facts or scoped rules.
    """
    state, now = await db.current(tenant)
    events, outcome = decide_fork(state, db.root.rules, source, target, now)
    await db.commit(tenant, events, now)
    return outcome


async def diff(db: Db, tenant: str, source: str, target: str) -> ScopeDiff:
    """How the visible facts of two scopes differ (``POST /scope/diff``)."""
    state, now = await db.current(tenant)
    return diff_scopes(state, source, target, now)


@retried
async def merge(
    db: Db, tenant: str, source: str, target: str, strategy: str
) -> MergeOutcome:
    """Merge ``source``'s facts into ``target`` (``POST /scope/merge``).

    :raises ValidationError: the same scope twice, or an unknown strategy.
    :raises MergeRejected: ``REJECT`` with a conflict.
    """
    state, now = await db.current(tenant)
    events, outcome = decide_merge(state, source, target, strategy, now)
    await db.commit(tenant, events, now)
    return outcome


async def scopes(db: Db, tenant: str) -> list[ScopeInfo]:
    """The tenant's scopes, by name (``GET /scopes``)."""
    state = await db.tenant(tenant)
    return list_scopes(state)


@retried
async def delete(db: Db, tenant: str, scope: str) -> DeleteOutcome:
    """Remove a scope's facts and the tenant rules scoped to it.

    ``DELETE /scope/<name>``; a scope holding nothing logs nothing.
    """
    state, now = await db.current(tenant)
    events, outcome = decide_delete(state, scope)
    await db.commit(tenant, events, now)
    return outcome
