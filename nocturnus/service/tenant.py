"""The in-memory projection of one tenant, changed only by :func:`apply`.

``facts`` holds every stored fact, by scope, with its attributes. Each scope also has an engine
``FactIndex`` of the facts *visible now*; it is a view kept in step with the clock by
:meth:`TenantState.refresh`, which callers run with the current time before reading.
``apply`` never reads the clock: it marks the touched keys dirty and ``refresh`` settles
them, so replay and live writes run exactly the same code.

A fork (``scope_forked``) shares the source's stored facts (:class:`ScopeFacts`) and its
visible index (``FactIndex.copy``) with the target, both copy-on-write per relation, so
it costs O(#relations). The target also inherits the source's pending visibility
changes: its not-yet-settled keys now, and its timeline entries through ``_heirs``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from nocturnus.engine.evaluate import Program, Reasoner
from nocturnus.engine.index import FactIndex
from nocturnus.service.constraints import ConstraintRecord
from nocturnus.service.events import (
    ConstraintAdded,
    ConstraintRemoved,
    Event,
    FactExpired,
    FactRetracted,
    FactTold,
    PrioritySet,
    RuleRemoved,
    RuleTaught,
    Scalar,
    ScopeDeleted,
    ScopeForked,
    ScopeMerged,
    TenantCreated,
    TenantDeleted,
    TransactionCommitted,
    unnest,
)
from nocturnus.service.facts import (
    FactKey,
    FactRecord,
    ScopeFacts,
    is_plain,
    new_record,
)
from nocturnus.service.rulebook import Rulebook, RuleRecord


@dataclass(slots=True)
class ScopeView:
    """The visible facts of one scope and the reasoner answering over them."""

    index: FactIndex
    reasoner: Reasoner
    program: Program | None = None
    program_key: tuple[int, int] = (-1, -1)

    @classmethod
    def empty(cls) -> ScopeView:
        index = FactIndex()
        return cls(index=index, reasoner=Reasoner(index))


@dataclass(slots=True, weakref_slot=True)
class TenantState:
    """Everything one tenant knows: facts, its own rules, and per-scope indexes."""

    name: str
    last_seq: int = 0
    created_at: int | None = None
    facts: dict[str, ScopeFacts] = field(default_factory=dict)
    rules: Rulebook = field(default_factory=Rulebook)
    views: dict[str, ScopeView] = field(default_factory=dict)
    # explicit salience priorities of stored facts (``priority_set`` events, issue 6)
    priorities: dict[FactKey, float] = field(default_factory=dict)
    # RESTRICT constraints by id (``constraint_added`` events, issue 18)
    constraints: dict[str, ConstraintRecord] = field(default_factory=dict)
    # bumped when the tenant is deleted: the read model of the deleted incarnation
    # (uses, sessions: ``readmodels.py``) is dropped with the tenant's data
    incarnation: int = 0
    # keys whose visibility, attributes or priority changed, while a consumer (the
    # context ranking) keeps a derived view up to date incrementally; None otherwise
    changed: set[FactKey] | None = None
    # scope -> (predicate, negated) -> args of the facts to settle on the next refresh;
    # plain tuples, not FactKeys: a replay marks every fact it loads (memory, issue 4).
    # A list, not a set: settling a key twice is settling it once (each key's row
    # follows its record), and a replay appends a million of them far cheaper than it
    # hashes them into a set (issue 3).
    _dirty: dict[str, dict[tuple[str, bool], list[tuple[Any, ...]]]] = field(
        default_factory=dict
    )
    # (when, ticket, key): the ticket breaks ties, keys of mixed-type args don't compare
    _timeline: list[tuple[int, int, FactKey]] = field(default_factory=list)
    _tickets: int = 0
    _heirs: dict[str, set[str]] = field(default_factory=dict)

    def refresh(self, now_ms: int) -> None:
        """Bring every scope index in line with visibility at ``now_ms``.

        Due keys (marked dirty, or whose timeline instant has come) are settled scope by
        scope (:meth:`_settle_scope`): each key's index row follows its stored record,
        independently of every other key, so the order and batching do not matter.
        """
        dirty = self._dirty
        timeline = self._timeline
        while timeline and timeline[0][0] <= now_ms:
            key = heapq.heappop(timeline)[2]
            for scope in (key.scope, *self._heirs_of(key.scope)):
                relations = dirty.get(scope)
                if relations is None:
                    relations = dirty[scope] = {}
                pending = relations.get((key.predicate, key.negated))
                if pending is None:
                    pending = relations[(key.predicate, key.negated)] = []
                pending.append(key.args)
        if not dirty:
            return
        self._dirty = {}
        for scope, relations in dirty.items():
            self._settle_scope(scope, relations, now_ms)

    def _heirs_of(self, scope: str) -> list[str]:
        """Scopes forked (transitively) from ``scope``: they share its timed records."""
        if not self._heirs:
            return []
        found: list[str] = []
        seen = {scope}
        pending = [scope]
        while pending:
            for heir in self._heirs.get(pending.pop(), ()):
                if heir not in seen:
                    seen.add(heir)
                    found.append(heir)
                    pending.append(heir)
        return found

    def _settle_scope(
        self,
        scope: str,
        relations: dict[tuple[str, bool], list[tuple[Any, ...]]],
        now_ms: int,
    ) -> None:
        """Settle the due facts of ``scope``: each one's index row follows its record.

        Visible rows go to the index one relation at a time (``FactIndex.add_many``):
        a replay's single refresh of a million facts costs a dict lookup and an append
        per fact before the index takes them in bulk.
        """
        changed = self.changed
        if changed is not None:
            changed.update(
                FactKey(scope, predicate, negated, args)
                for (predicate, negated), pending in relations.items()
                for args in pending
            )
        scoped = self.facts.get(scope)
        view = self.views.get(scope)
        if scoped is None:
            if view is not None:
                remove = view.index.remove
                for (predicate, negated), pending in relations.items():
                    for args in pending:
                        remove(predicate, negated, args)
                del self.views[scope]
            return
        if view is not None and not view.index and not self._timeline:
            self._fill(scope, scoped, view, now_ms)
            return
        groups = scoped.groups()
        visible: list[tuple[str, bool, list[tuple[Any, float | None]]]] = []
        hidden: list[tuple[str, bool, tuple[Any, ...]]] = []
        timed: list[tuple[int, FactKey]] = []
        found = 0
        for (predicate, negated), pending in relations.items():
            arity = -1
            group: Any = None
            rows: list[tuple[Any, float | None]] = []
            for args in pending:
                if len(args) != arity:  # a (predicate, negated) mostly has one arity
                    if rows:
                        visible.append((predicate, negated, rows))
                        rows = []
                    arity = len(args)
                    group = groups.get((predicate, negated, arity))
                stored = None if group is None else group.get(args)
                if stored is None:
                    hidden.append((predicate, negated, args))
                    continue
                found += 1
                if type(stored) is int:  # a plain fact: visible from its createdAt on
                    if now_ms >= stored:
                        rows.append((args, None))
                    else:
                        hidden.append((predicate, negated, args))
                        timed.append((stored, FactKey(scope, predicate, negated, args)))
                    continue
                record: FactRecord = stored
                shown, change = _visibility(record, now_ms)
                if shown:
                    rows.append((args, record.confidence))
                else:
                    hidden.append((predicate, negated, args))
                if change is not None:
                    timed.append((change, FactKey(scope, predicate, negated, args)))
            if rows:
                visible.append((predicate, negated, rows))
        if view is None:
            if not found:
                return  # no stored record among the keys: nothing to show, no view
            view = self.views[scope] = ScopeView.empty()
        index = view.index
        for predicate, negated, args in hidden:
            index.remove(predicate, negated, args)
        for predicate, negated, rows in visible:
            if len(rows) == 1:  # a write's refresh: one fact
                index.add(predicate, negated, *rows[0])
            else:
                index.add_many(predicate, negated, rows)
        for when, key in timed:
            self._tickets += 1
            heapq.heappush(self._timeline, (when, self._tickets, key))

    def _fill(self, scope: str, scoped: ScopeFacts, view: ScopeView, now_ms: int) -> None:
        """Settle every stored fact of ``scope`` into its empty index, group by group.

        What :meth:`_settle_scope` does for the due facts when the index is empty and
        nothing waits on the timeline (a replay's first refresh): no fact is visible
        yet, so settling all stored facts gives the same index as settling the due
        ones — a stored fact that is not due was settled hidden for good (expired) and
        stays hidden. Reading the groups in order replaces a hash lookup per fact.
        """
        index = view.index
        timed: list[tuple[int, FactKey]] = []
        for (predicate, negated, _), group in scoped.groups().items():
            rows: list[tuple[Any, float | None]] = []
            for args, stored in group.items():
                if type(stored) is FactRecord:
                    shown, change = _visibility(stored, now_ms)
                    if shown:
                        rows.append((args, stored.confidence))
                    if change is not None:
                        timed.append((change, FactKey(scope, predicate, negated, args)))
                elif now_ms >= stored:  # a plain fact: visible from its createdAt on
                    rows.append((args, None))
                else:
                    timed.append((stored, FactKey(scope, predicate, negated, args)))
            if rows:
                index.add_many(predicate, negated, rows)
        for when, key in timed:
            self._tickets += 1
            heapq.heappush(self._timeline, (when, self._tickets, key))

    def record(self, key: FactKey) -> FactRecord | None:
        """The stored record for ``key``, visible or not."""
        scoped = self.facts.get(key.scope)
        return None if scoped is None else scoped.get(key)

    def put(self, record: FactRecord) -> None:
        """Store ``record``, replacing the fact of its key, and mark it for refresh."""
        key = record.key
        if is_plain(record):
            self.tell(key.predicate, key.args, key.negated, key.scope, record.created_at)
            return
        scoped, args = self._stored_args(key.scope, key.args)
        scoped.put(record, args)
        self._pending(key.scope, key.predicate, key.negated).append(args)

    def tell(
        self,
        predicate: str,
        args: tuple[Any, ...] | list[Any],
        negated: bool,
        scope: str,
        created_at: int,
        valid_from: int | None = None,
        valid_until: int | None = None,
        ttl: int | None = None,
        confidence: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """:meth:`put` of the record these fields make (``valid_from`` defaults to
        ``created_at``), without building it for a plain fact: the hot path of
        ``fact_told`` at write time, at replay and from a snapshot (issue 3).

        The parameters are ``FactTold``'s fields in their order, so this is the
        kind's field applier itself (``FIELD_APPLIERS``); ``args`` a tuple or list.
        """
        if valid_from is None:
            valid_from = created_at
        scoped = self.facts.get(scope)  # self._stored_args(scope, args), inline
        if scoped is None:
            scoped = self.facts[scope] = ScopeFacts(scope)
        view = self.views.get(scope)
        if view is None:
            view = self.views[scope] = ScopeView.empty()
        stored_args = view.index.interner.canonical(args)  # type: ignore[arg-type]
        if (
            valid_from == created_at
            and valid_until is None
            and ttl is None
            and confidence is None
            and not metadata
            and type(created_at) is int
        ):  # is_plain(record), asked of the fields
            scoped.put_plain(predicate, negated, stored_args, created_at)
        else:
            key = _tuple_new(FactKey, (scope, predicate, negated, stored_args))
            record = new_record(
                key,
                created_at,
                valid_from,
                valid_until,
                ttl,
                confidence,
                {} if metadata is None else metadata,
            )
            scoped.put(record, stored_args)
        self._pending(scope, predicate, negated).append(stored_args)

    def tell_many(
        self,
        predicate: str,
        negated: bool,
        scope: str,
        plain_args: list[Any],
        plain_created: list[int],
        records: Sequence[Sequence[Any]] = (),
    ) -> None:
        """:meth:`tell` of many facts of one relation, in bulk: a snapshot's group.

        The same as telling the plain facts ``(plain_args[i], plain_created[i])`` in
        order, then each of ``records`` (``[args, created_at, valid_from,
        valid_until, ttl, confidence, metadata]``). Each fact is interned as
        :meth:`tell` interns it; the group takes them all at once; equal plain
        ``createdAt`` values share one int object.

        :raises TypeError: an argument is not a constant, or a plain createdAt not an
            int.
        :raises ValueError: mixed arities, lengths that differ, or a short record.
        """
        if not plain_args and not records:
            return
        if plain_created and set(map(type, plain_created)) != {int}:  # is_plain's
            raise TypeError("tell_many: every plain createdAt must be an int")
        if len(plain_args) != len(plain_created):
            raise ValueError("tell_many: one createdAt per plain fact")
        scoped, _ = self._stored_args(scope, ())
        interner = self.views[scope].index.interner
        stored_args = interner.canonical_rows(plain_args)
        if records:
            stored_args += interner.canonical_rows([row[0] for row in records])
        stamps: dict[int, int] = {}
        stored: list[Any] = list(map(stamps.setdefault, plain_created, plain_created))
        new_key = FactKey._make
        for args, (_, created, since, until, ttl, conf, meta) in zip(
            stored_args[len(plain_args) :], records
        ):
            if (  # is_plain(record), asked of the fields, as tell does
                since == created
                and until is None
                and ttl is None
                and conf is None
                and not meta
                and type(created) is int
            ):
                stored.append(stamps.setdefault(created, created))
            else:
                key = new_key((scope, predicate, negated, args))
                stored.append(new_record(key, created, since, until, ttl, conf, meta))
        scoped.put_many(predicate, negated, stored_args, stored)
        self._pending(scope, predicate, negated).extend(stored_args)

    def _stored_args(
        self, scope: str, args: tuple[Any, ...] | list[Any]
    ) -> tuple[ScopeFacts, tuple[Any, ...]]:
        """The stored facts of ``scope`` (created if new) and ``args`` as stored there.

        Memory (issue 4): what stays (the stored args, the key waiting in ``_dirty``)
        shares its constants with the index and with every other fact, instead of
        keeping the ones each request or replayed event parsed for itself.
        """
        scoped = self.facts.get(scope)
        if scoped is None:
            scoped = self.facts[scope] = ScopeFacts(scope)
        view = self.views.get(scope)
        if view is None:
            view = self.views[scope] = ScopeView.empty()
        return scoped, view.index.interner.canonical(args)  # type: ignore[arg-type]

    def discard(self, key: FactKey) -> bool:
        scoped = self.facts.get(key.scope)
        if scoped is None or scoped.pop(key) is None:
            return False
        if not scoped:
            del self.facts[key.scope]
        self._pending(key.scope, key.predicate, key.negated).append(key.args)
        return True

    def _pending(self, scope: str, predicate: str, negated: bool) -> list[tuple[Any, ...]]:
        """The args of ``scope``'s (predicate, negated) facts waiting for the next refresh."""
        relations = self._dirty.get(scope)
        if relations is None:
            relations = self._dirty[scope] = {}
        pending = relations.get((predicate, negated))
        if pending is None:
            pending = relations[(predicate, negated)] = []
        return pending

    def fork(self, source: str, target: str) -> None:
        """Make ``target`` a copy of ``source``'s facts in O(#relations + #unsettled).

        ``target`` holds no facts (the decision checked it). Its index starts as a
        copy-on-write copy of the source's; keys of the source not settled yet are
        settled for the target too, and later timeline entries of the source wake
        the target through ``_heirs``. Explicit priorities of the source's facts
        (few: one ``priority_set`` event each) are copied along.
        """
        self._replaced()
        scoped = self.facts.get(source)
        if scoped is not None:
            self.facts[target] = scoped.fork(target)
        view = self.views.get(source)
        if view is not None:
            index = view.index.copy()
            self.views[target] = ScopeView(index=index, reasoner=Reasoner(index))
        else:
            self.views.pop(target, None)
        pending = self._dirty.get(source)
        if pending:
            owed = self._dirty.setdefault(target, {})
            for relation, args in pending.items():
                owed.setdefault(relation, []).extend(args)
        if source != target:
            self._heirs.setdefault(source, set()).add(target)
        inherited = [(k, p) for k, p in self.priorities.items() if k.scope == source]
        for key, priority in inherited:
            self.priorities[key._replace(scope=target)] = priority

    def staged_copy(self) -> TenantState:
        """A copy to stage a transaction's writes on (issue 18); neither side sees the
        other's later changes.

        Copy-on-write as a fork is: every scope's stored facts and visible index are
        shared per relation until one side writes, so the copy costs O(#scopes x
        #relations) (and each side's first write to a shared relation copies that
        relation). Pending visibility changes are copied along; read models (uses,
        sessions: ``readmodels.py``) are the database's, kept apart for a copy by
        whoever stages on it (``transactions.StagedDatabase``).
        """
        twin = TenantState(self.name, self.last_seq, self.created_at)
        twin.incarnation = self.incarnation
        for scope, scoped in self.facts.items():
            twin.facts[scope] = scoped.fork(scope)
        for scope, view in self.views.items():
            index = view.index.copy()
            twin.views[scope] = ScopeView(index=index, reasoner=Reasoner(index))
        twin.rules = self.rules.copy()
        twin.priorities = dict(self.priorities)
        twin.constraints = dict(self.constraints)
        twin._dirty = {
            scope: {relation: list(args) for relation, args in relations.items()}
            for scope, relations in self._dirty.items()
        }
        twin._timeline = list(self._timeline)
        twin._tickets = self._tickets
        twin._heirs = {scope: set(heirs) for scope, heirs in self._heirs.items()}
        return twin

    def drop_scope(self, scope: str) -> None:
        """Forget every fact of ``scope`` at once (its index and priorities go too)."""
        self._replaced()
        self.facts.pop(scope, None)
        self.views.pop(scope, None)
        self._dirty.pop(scope, None)
        for key in [k for k in self.priorities if k.scope == scope]:
            del self.priorities[key]

    def _replaced(self) -> None:
        """A whole scope changes at once, without a ``changed`` entry per key.

        Dropping the journal tells its consumer (the context ranking) to rebuild on its
        next sync instead of patching: cheaper than journaling every fact of the scope.
        """
        self.changed = None

    def fact_count(self) -> int:
        return sum(len(scoped) for scoped in self.facts.values())

    # -- reads (call refresh first) -------------------------------------------------

    def scopes(self) -> list[str]:
        """Scopes holding at least one stored fact, sorted."""
        return sorted(self.facts)

    def visible(self, key: FactKey) -> FactRecord | None:
        """The stored record for ``key`` if it is visible in its scope's index now."""
        view = self.views.get(key.scope)
        if view is None or not view.index.contains(key.predicate, key.negated, key.args):
            return None
        return self.record(key)

    def iter_visible(self, scope: str | None = None) -> Iterator[FactRecord]:
        """Visible records, optionally of one scope (unordered)."""
        scopes = self.scopes() if scope is None else [scope]
        for name in scopes:
            view = self.views.get(name)
            if view is None:
                continue
            for key, record in self.facts.get(name, {}).items():
                if view.index.contains(key.predicate, key.negated, key.args):
                    yield record

    def program_for(self, scope: str, database_rules: Rulebook) -> Program:
        """The checked rule program for ``scope``: database rules plus this tenant's own."""
        view = self.views.get(scope) or ScopeView.empty()
        key = (database_rules.version, self.rules.version)
        if view.program is None or view.program_key != key:
            rules = database_rules.for_scope(scope) + self.rules.for_scope(scope)
            view.program = Program(rules)
            view.program_key = key
        return view.program


def _visibility(record: FactRecord, now_ms: int) -> tuple[bool, int | None]:
    """Whether a stored record is visible at ``now_ms``, and when that next changes.

    ``(record.is_visible(now_ms), record.next_change(now_ms))``, without the property
    calls for the common record with neither TTL nor ``validUntil``.
    """
    if record.ttl is None and record.valid_until is None:
        if now_ms >= record.valid_from:
            return True, None
        return False, record.valid_from
    return record.is_visible(now_ms), record.next_change(now_ms)


Applier = Callable[[TenantState, Event], None]
_tuple_new = tuple.__new__


_tell = TenantState.tell
"""``fact_told`` from its fields, in FactTold's order (``args`` a tuple or list)."""


def _retract(
    state: TenantState,
    predicate: str,
    args: tuple[Scalar, ...] | list[Scalar],
    negated: bool,
    scope: str,
) -> None:
    """``fact_retracted`` from its fields (in FactRetracted's order)."""
    key = _tuple_new(FactKey, (scope, predicate, negated, tuple(args)))
    state.discard(key)
    state.priorities.pop(key, None)


def _apply_fact_told(state: TenantState, event: FactTold) -> None:
    _tell(
        state,
        event.predicate,
        event.args,
        event.negated,
        event.scope,
        event.created_at,
        event.valid_from,
        event.valid_until,
        event.ttl,
        event.confidence,
        event.metadata,
    )


def _apply_fact_retracted(state: TenantState, event: FactRetracted) -> None:
    _retract(state, event.predicate, event.args, event.negated, event.scope)


def _apply_fact_expired(state: TenantState, event: FactExpired) -> None:
    _retract(state, event.predicate, event.args, event.negated, event.scope)


def _apply_transaction_committed(state: TenantState, event: TransactionCommitted) -> None:
    for inner in unnest(event.events):
        APPLIERS[inner.kind](state, inner)


def _apply_priority_set(state: TenantState, event: PrioritySet) -> None:
    key = FactKey(event.scope, event.predicate, event.negated, event.args)
    state.priorities[key] = event.priority
    if state.changed is not None:
        state.changed.add(key)


def _apply_rule_taught(state: TenantState, event: RuleTaught) -> None:
    state.rules.add(RuleRecord.from_event(event, level="tenant"))


def _apply_rule_removed(state: TenantState, event: RuleRemoved) -> None:
    state.rules.remove(event.id)


def _apply_constraint_added(state: TenantState, event: ConstraintAdded) -> None:
    state.constraints[event.id] = ConstraintRecord.from_event(event)


def _apply_constraint_removed(state: TenantState, event: ConstraintRemoved) -> None:
    state.constraints.pop(event.id, None)


def _apply_scope_forked(state: TenantState, event: ScopeForked) -> None:
    state.fork(event.source, event.target)
    for record in [r for r in state.rules if r.scope == event.source]:
        state.rules.add(record.forked(event.target, event.created_at))


def _apply_scope_merged(state: TenantState, event: ScopeMerged) -> None:
    target = event.target
    for fact in event.retracted:
        key = FactKey(target, fact["predicate"], fact["negated"], tuple(fact["args"]))
        state.discard(key)
        state.priorities.pop(key, None)
    for fact in event.facts:
        told = FactTold(**{**fact, "args": tuple(fact["args"]), "scope": target})
        state.put(FactRecord.from_event(told))


def _apply_scope_deleted(state: TenantState, event: ScopeDeleted) -> None:
    state.drop_scope(event.scope)
    for record in [r for r in state.rules if r.scope == event.scope]:
        state.rules.remove(record.rule.id)


def _apply_tenant_created(state: TenantState, event: TenantCreated) -> None:
    if state.created_at is None:
        state.created_at = event.created_at


def _apply_tenant_deleted(state: TenantState, event: TenantDeleted) -> None:
    state.facts.clear()
    state.rules.clear()
    state.views.clear()
    state._dirty.clear()
    state._timeline.clear()
    state._heirs.clear()
    state.priorities.clear()
    state.constraints.clear()
    state.incarnation += 1
    state.changed = None
    state.created_at = None


APPLIERS: dict[str, Applier] = {
    FactTold.kind: _apply_fact_told,  # type: ignore[dict-item]
    FactRetracted.kind: _apply_fact_retracted,  # type: ignore[dict-item]
    RuleTaught.kind: _apply_rule_taught,  # type: ignore[dict-item]
    RuleRemoved.kind: _apply_rule_removed,  # type: ignore[dict-item]
    ScopeForked.kind: _apply_scope_forked,  # type: ignore[dict-item]
    ScopeMerged.kind: _apply_scope_merged,  # type: ignore[dict-item]
    ScopeDeleted.kind: _apply_scope_deleted,  # type: ignore[dict-item]
    TenantCreated.kind: _apply_tenant_created,  # type: ignore[dict-item]
    TenantDeleted.kind: _apply_tenant_deleted,  # type: ignore[dict-item]
    PrioritySet.kind: _apply_priority_set,  # type: ignore[dict-item]
    ConstraintAdded.kind: _apply_constraint_added,  # type: ignore[dict-item]
    ConstraintRemoved.kind: _apply_constraint_removed,  # type: ignore[dict-item]
    FactExpired.kind: _apply_fact_expired,  # type: ignore[dict-item]
    TransactionCommitted.kind: _apply_transaction_committed,  # type: ignore[dict-item]
}


FIELD_APPLIERS: dict[str, Callable[..., None]] = {
    FactTold.kind: _tell,
    FactRetracted.kind: _retract,
}
"""The appliers of the hot kinds, taking the event's fields positionally: for these
kinds ``APPLIERS[kind](state, event)`` is exactly ``FIELD_APPLIERS[kind](state,
*fields)``, so replay can feed them the fields read straight from a logged body
(``events.FIELD_READERS``) without building the event first (see ``replay.fold``)."""


def apply(state: TenantState, seq: int, event: Event) -> None:
    """Apply one logged event; the same function serves writes and replay."""
    APPLIERS[event.kind](state, event)
    state.last_seq = seq
