"""The in-memory projection of one tenant, changed only by its event kinds' appliers.

Every event runs its kind's applier (:func:`applies`), through one door for each form
it comes in: a logged event, read from its body, enters through :func:`apply_fields`
(replay; a snapshot restores the state it captured, then its tail comes through here),
a decided one through :func:`apply` (writes). ``facts`` holds every stored fact, by
scope (:class:`ScopeFacts`, the one owner of how facts are kept and when they are
visible).
Each scope also has an engine ``FactIndex`` of the facts *visible now*; it is a view
kept in step with the clock by :meth:`TenantState.refresh`, which callers run with the
current time before reading. Appliers never read the clock: they mark the touched keys
dirty and ``refresh`` settles them, so replay and live writes run exactly the same code.

A fork (``scope_forked``) shares the source's stored facts (:class:`ScopeFacts`) and its
visible index (``FactIndex.copy``) with the target, both copy-on-write per relation, so
it costs O(#relations). The target also inherits the source's pending visibility
changes: its not-yet-settled keys now, and its timeline entries through ``_heirs``.
"""

from __future__ import annotations

import dataclasses
import heapq
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nocturnus.engine.evaluate import Program, Reasoner
from nocturnus.engine.index import FactIndex
from nocturnus.service.codec import CODEC, Fields, unnest
from nocturnus.service.constraints import ConstraintRecord
from nocturnus.service.events import (
    ConstraintAdded,
    ConstraintRemoved,
    Event,
    FactExpired,
    FactRetracted,
    FactsUsed,
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
)
from nocturnus.service.facts import (
    DUMP_VERSION,
    FactKey,
    FactRecord,
    ScopeFacts,
    VisibleRow,
)
from nocturnus.service.rulebook import Rulebook, RuleRecord


@dataclass(slots=True)
class ScopeView:
    """The visible facts of one scope and the reasoner answering over them.

    ``readers`` counts evaluations reading this view in a worker thread
    (``service/evaluation.py``); such a view is never changed again: the tenant
    detaches it first (:meth:`TenantState.detach_read_views`). ``interned`` is the
    program whose rule constants the index's interner already holds, so a worker
    never interns (the event loop is the interner's one writer).
    """

    index: FactIndex
    reasoner: Reasoner
    program: Program | None = None
    program_key: tuple[int, int] = (-1, -1)
    readers: int = 0
    interned: Program | None = None

    @classmethod
    def empty(cls) -> ScopeView:
        """A view with no visible facts."""
        index = FactIndex()
        return cls(index=index, reasoner=Reasoner(index))

    def detached(self) -> ScopeView:
        """A copy to change while this one is read: the index forked copy-on-write
        (O(#relations); a relation is cloned on its first write), the program kept."""
        index = self.index.copy()
        return ScopeView(
            index, Reasoner(index), self.program, self.program_key, 0, self.interned
        )


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
    # (uses, last use in ms) of stored facts, as logged (``facts_used`` events,
    # issue 16): what salience counts, the same on every process
    uses: dict[FactKey, tuple[int, int]] = field(default_factory=dict)
    # RESTRICT constraints by id (``constraint_added`` events, issue 18)
    constraints: dict[str, ConstraintRecord] = field(default_factory=dict)
    # bumped when the tenant is deleted: the read model of the deleted incarnation
    # (uses, sessions: ``readmodels.py``) is dropped with the tenant's data
    incarnation: int = 0
    # evaluations in flight in worker threads, each reading views it pinned
    # (``ScopeView.readers``): while any is, a change detaches the pinned views first
    reading: int = 0
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

    def detach_read_views(self) -> None:
        """Give every view a worker is reading a copy of its own to change (call
        before any change while ``reading``): a reader never sees half a write, and a
        write never waits for a reader (issue 13)."""
        if not self.reading:
            return
        views = self.views
        for scope, view in views.items():
            if view.readers:
                views[scope] = view.detached()

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

    def next_change(self) -> int | None:
        """The next instant a fact's visibility changes without an event (its validity
        window or TTL), as of the last :meth:`refresh`; None when none is due."""
        return self._timeline[0][0] if self._timeline else None

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
        """Settle the due facts of ``scope``: each one's index row follows its stored
        fact (``ScopeFacts.settle``)."""
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
        visible: list[tuple[str, bool, list[VisibleRow]]] = []
        hidden: list[tuple[str, bool, tuple[Any, ...]]] = []
        timed: list[tuple[int, FactKey]] = []
        if view is not None and not view.index and not self._timeline:
            # A replay's first refresh: no fact is visible yet, so settling every
            # stored fact gives the same index as settling the due ones (a stored
            # fact that is not due was settled hidden for good, expired, and stays
            # hidden), and reading the groups in order saves a lookup per fact.
            scoped.settle_all(now_ms, visible, timed)
        else:
            found = scoped.settle(relations, now_ms, visible, hidden, timed)
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

    def record(self, key: FactKey) -> FactRecord | None:
        """The stored record for ``key``, visible or not."""
        scoped = self.facts.get(key.scope)
        return None if scoped is None else scoped.get(key)

    def tell(
        self,
        scope: str,
        predicate: str,
        negated: bool,
        args: Sequence[Scalar],
        created_at: int,
        valid_from: int,
        *rest: Any,
    ) -> None:
        """Store the fact these fields make, replacing the fact of its key, and mark it
        for the next refresh: ``fact_told``'s applier, given the event's fields by name
        (:func:`applies`; ``args`` a tuple or a list), the attributes after
        ``valid_from`` in the fact owner's order (``facts.ATTRIBUTES``).

        Memory (issue 4): the args kept (stored, and waiting in ``_dirty``) share their
        constants with the index and with every other fact, instead of keeping the
        ones each request or replayed event parsed for itself.
        """
        scoped = self.facts.get(scope)
        view = self.views.get(scope)
        if scoped is None or view is None:
            scoped, view = self._opened(scope)
        interner = view.index.interner
        stored_args = interner.canonical(args)
        exact = not interner.has_floats  # no float interned: none among the args
        scoped.tell(predicate, negated, stored_args, created_at, valid_from, rest, exact)
        self._pending(scope, predicate, negated).append(stored_args)

    def put(self, record: FactRecord) -> None:
        """Store ``record``, replacing the fact of its key, and mark it for refresh."""
        self.tell(*record.key, *record.attributes())

    def tell_many(
        self,
        predicate: str,
        negated: bool,
        scope: str,
        plain_args: list[Any],
        plain_created: list[int],
        records: Sequence[Sequence[Any]] = (),
        version: int = DUMP_VERSION,
    ) -> None:
        """:meth:`tell` of many facts of one relation, in bulk: a snapshot's group
        (``ScopeFacts.dump`` / ``ScopeFacts.tell_many``), each fact's args interned as
        :meth:`tell` interns them.

        :raises TypeError: an argument is not a constant, or a plain createdAt not an
            int.
        :raises ValueError: mixed arities, lengths that differ, or a short record.
        """
        if not plain_args and not records:
            return
        scoped, view = self._opened(scope)
        interner = view.index.interner
        stored_args = interner.canonical_rows(plain_args)
        rows: Sequence[Sequence[Any]] = records
        if records:
            record_args = interner.canonical_rows([row[0] for row in records])
            rows = [[args, *row[1:]] for args, row in zip(record_args, records)]
            stored_args += record_args
        plain = stored_args[: len(plain_args)]
        exact = not interner.has_floats  # no float interned: none among the args
        scoped.tell_many(predicate, negated, plain, plain_created, rows, version, exact)
        self._pending(scope, predicate, negated).extend(stored_args)

    def _opened(self, scope: str) -> tuple[ScopeFacts, ScopeView]:
        """The stored facts and the view of ``scope``, each made empty when missing."""
        scoped = self.facts.get(scope)
        if scoped is None:
            scoped = self.facts[scope] = ScopeFacts(scope)
        view = self.views.get(scope)
        if view is None:
            view = self.views[scope] = ScopeView.empty()
        return scoped, view

    def discard(self, key: FactKey) -> bool:
        """Remove the stored fact of ``key`` (marked for refresh); False when absent."""
        scoped = self.facts.get(key.scope)
        if scoped is None or scoped.retract(key) is None:
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
        twin.uses = dict(self.uses)
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
        """Forget every fact of ``scope`` at once (its index, priorities and uses go
        too)."""
        self._replaced()
        self.facts.pop(scope, None)
        self.views.pop(scope, None)
        self._dirty.pop(scope, None)
        for key in [k for k in self.priorities if k.scope == scope]:
            del self.priorities[key]
        for key in [k for k in self.uses if k.scope == scope]:
            del self.uses[key]

    def remove(self, key: FactKey) -> None:
        """Remove the stored fact of ``key`` with its priority and uses (retracted,
        expired, or lost to a merge)."""
        self.discard(key)
        self.priorities.pop(key, None)
        self.uses.pop(key, None)

    def _replaced(self) -> None:
        """A whole scope changes at once, without a ``changed`` entry per key.

        Dropping the journal tells its consumer (the context ranking) to rebuild on its
        next sync instead of patching: cheaper than journaling every fact of the scope.
        """
        self.changed = None

    def fact_count(self) -> int:
        """How many facts the tenant stores, visible or not, over every scope."""
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


# -- appliers: what each event kind does to the projection ---------------------------

Applier = Callable[..., None]
"""``applier(state, *fields)``: an event given as its field values, in the order its
applier names them (:func:`reader` reads a body in that order)."""

APPLIERS: dict[str, Applier] = {}
"""Each kind's applier, taking the event's field values (what replay reads)."""

_ORDERS: dict[str, tuple[str, ...]] = {}
"""Each kind's field names in the order its applier takes them."""

_READERS: dict[str, Callable[[bytes], Fields]] = {}
"""Each kind's codec reader for that order, made on first use (:func:`reader`)."""

_EVENT_APPLIERS: dict[type[Event], Callable[[TenantState, Event], None]] = {}
"""The same applier per event class, taking the event (what a write decided)."""

_F = TypeVar("_F", bound=Callable[..., None])


def applies(cls: type[Event]) -> Callable[[_F], _F]:
    """Register the function below as what an event of ``cls`` does to a tenant.

    The function takes the projection, then either the event (one parameter named
    ``event``: the kinds that are rare in a log) or the event's fields as parameters
    of the same names, in any order (the kinds replay folds by the million: no event
    is built for them); a final ``*rest`` takes the fields it does not name, in
    declaration order. How the fields reach those parameters is generated from the
    names: the codec reads a logged body straight into that order (:func:`reader`),
    and a decided event is unpacked by a generated call (:func:`_field_caller`), so
    nothing matches fields to parameters by position by hand, and a field renamed or
    removed fails here, at import, instead of misapplying at replay.

    :raises TypeError: a parameter that names no field, a field named twice, fields
        left over without a ``*rest``, or ``cls`` already has an applier.
    """

    def register(fn: _F) -> _F:
        names = tuple(f.name for f in dataclasses.fields(cls))
        params = list(inspect.signature(fn).parameters.values())[1:]
        takes_event = [p.name for p in params] == ["event"]
        order = names if takes_event else _field_order(fn, cls, names, params)
        if cls.kind in APPLIERS:
            raise TypeError(f"{cls.kind!r} already has an applier")
        _ORDERS[cls.kind] = order
        if takes_event:
            build = CODEC.build

            def from_fields(state: TenantState, *fields: Any) -> None:
                fn(state, build(cls, fields))

            APPLIERS[cls.kind] = from_fields
            _EVENT_APPLIERS[cls] = fn
        else:
            APPLIERS[cls.kind] = fn
            _EVENT_APPLIERS[cls] = _field_caller(fn, order)
        return fn

    return register


def _field_order(
    fn: Callable[..., None],
    cls: type[Event],
    names: tuple[str, ...],
    params: list[inspect.Parameter],
) -> tuple[str, ...]:
    """The event's field names in the order the applier's parameters take them.

    :raises TypeError: see :func:`applies`.
    """
    named = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    rest = [p for p in params if p.kind is p.VAR_POSITIONAL]
    if (
        not set(named) <= set(names)
        or len(set(named)) != len(named)
        or len(named) + len(rest) != len(params)
        or (not rest and len(named) != len(names))
    ):
        raise TypeError(
            f"applier {fn.__name__}{named} does not take {cls.__name__}'s fields "
            f"{list(names)} by name (each once, the rest through a final *rest)"
        )
    return (*named, *(n for n in names if n not in named))


def _field_caller(
    fn: Callable[..., None], order: tuple[str, ...]
) -> Callable[[TenantState, Event], None]:
    """``fn(state, event.<name>, ...)`` over the fields in ``order``, generated: a
    write's event goes to a field applier without a tuple of its fields built first."""
    fields = ", ".join(f"event.{name}" for name in order)
    namespace: dict[str, Any] = {"fn": fn}
    # the source is made of the dataclass's field names only
    exec(f"def call(state, event):\n    fn(state, {fields})", namespace)  # noqa: S102
    call: Callable[[TenantState, Event], None] = namespace["call"]
    return call


applies(FactTold)(TenantState.tell)  # its parameters name FactTold's fields


@applies(FactRetracted)
def _fact_retracted(
    state: TenantState,
    predicate: str,
    args: Sequence[Scalar],
    negated: bool,
    scope: str,
) -> None:
    state.remove(_tuple_new(FactKey, (scope, predicate, negated, tuple(args))))


@applies(FactExpired)
def _fact_expired(state: TenantState, event: FactExpired) -> None:
    state.remove(FactKey(event.scope, event.predicate, event.negated, tuple(event.args)))


@applies(TransactionCommitted)
def _transaction_committed(state: TenantState, event: TransactionCommitted) -> None:
    for inner in unnest(event.events):
        _EVENT_APPLIERS[type(inner)](state, inner)


@applies(PrioritySet)
def _priority_set(state: TenantState, event: PrioritySet) -> None:
    key = FactKey(event.scope, event.predicate, event.negated, event.args)
    state.priorities[key] = event.priority
    if state.changed is not None:
        state.changed.add(key)


@applies(FactsUsed)
def _facts_used(state: TenantState, event: FactsUsed) -> None:
    """Add the uses to the facts still stored (salience); the others are ignored, so
    the counts never outlive their facts and every replay folds the same ones."""
    uses, changed = state.uses, state.changed
    for scope, predicate, negated, args, count, last_ms in event.facts:
        key = FactKey(scope, predicate, negated, tuple(args))
        if state.record(key) is None:
            continue
        old = uses.get(key)
        uses[key] = (count, last_ms) if old is None else (old[0] + count, max(old[1], last_ms))
        if changed is not None:
            changed.add(key)


@applies(RuleTaught)
def _rule_taught(state: TenantState, event: RuleTaught) -> None:
    state.rules.add(RuleRecord.from_event(event, level="tenant"))


@applies(RuleRemoved)
def _rule_removed(state: TenantState, event: RuleRemoved) -> None:
    state.rules.remove(event.id)


@applies(ConstraintAdded)
def _constraint_added(state: TenantState, event: ConstraintAdded) -> None:
    state.constraints[event.id] = ConstraintRecord.from_event(event)


@applies(ConstraintRemoved)
def _constraint_removed(state: TenantState, event: ConstraintRemoved) -> None:
    state.constraints.pop(event.id, None)


@applies(ScopeForked)
def _scope_forked(state: TenantState, event: ScopeForked) -> None:
    state.fork(event.source, event.target)
    for record in [r for r in state.rules if r.scope == event.source]:
        state.rules.add(record.forked(event.target, event.created_at))


@applies(ScopeMerged)
def _scope_merged(state: TenantState, event: ScopeMerged) -> None:
    target = event.target
    for fact in event.retracted:
        state.remove(
            FactKey(target, fact["predicate"], fact["negated"], tuple(fact["args"]))
        )
    for fact in event.facts:
        told = FactTold(**{**fact, "args": tuple(fact["args"]), "scope": target})
        state.put(FactRecord.from_event(told))


@applies(ScopeDeleted)
def _scope_deleted(state: TenantState, event: ScopeDeleted) -> None:
    state.drop_scope(event.scope)
    for record in [r for r in state.rules if r.scope == event.scope]:
        state.rules.remove(record.rule.id)


@applies(TenantCreated)
def _tenant_created(state: TenantState, event: TenantCreated) -> None:
    if state.created_at is None:
        state.created_at = event.created_at


@applies(TenantDeleted)
def _tenant_deleted(state: TenantState, event: TenantDeleted) -> None:
    state.facts.clear()
    state.rules.clear()
    state.views.clear()
    state._dirty.clear()
    state._timeline.clear()
    state._heirs.clear()
    state.priorities.clear()
    state.uses.clear()
    state.constraints.clear()
    state.incarnation += 1
    state.changed = None
    state.created_at = None


def reader(kind: str) -> Callable[[bytes], Fields]:
    """How a logged body of ``kind`` is read for :func:`apply_fields`: its field values
    in the order the kind's applier takes them (the codec's reader for that order;
    a reader of many bodies looks it up once per kind).

    :raises KeyError: a kind without an applier (not a tenant-level event).
    """
    found = _READERS.get(kind)
    if found is None:
        found = _READERS[kind] = CODEC.reader(kind, _ORDERS[kind])
    return found


def apply_fields(state: TenantState, seq: int, kind: str, fields: Fields) -> None:
    """The projection's one door for logged events: apply the event logged at ``seq``,
    given as its kind and field values as :func:`reader` reads them. Replay, from the
    log or from a snapshot's tail, comes through here.

    :raises KeyError: a kind without an applier (not a tenant-level event).
    """
    APPLIERS[kind](state, *fields)
    state.last_seq = seq


def apply(state: TenantState, seq: int, event: Event) -> None:
    """:func:`apply_fields` of an event object (what a write decided): the same applier,
    given the event's fields read off the event.

    :raises KeyError: a kind without an applier (not a tenant-level event).
    """
    _EVENT_APPLIERS[type(event)](state, event)
    state.last_seq = seq


_tuple_new = tuple.__new__
