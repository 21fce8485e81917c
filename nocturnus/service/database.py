"""One database: its event log writer, its database-level state and its tenants.

Writes: a decision produces events; :meth:`Database.commit` numbers them, applies them to
the projection at once (so the next decision in write order sees them) and waits until the
writer has made the batch durable. Events are encoded before any of that, so a write that
cannot be stored changes nothing. Each append carries the position of the stream (the
tenant, or the database level) its decision was made on, or the previous append of that
stream still in flight: the store refuses it if another writer appended to the stream
since (:class:`~nocturnus.store.errors.AppendConflict`, issue 15), so the service never
relies on being the only writer. If the writer fails or refuses an append, or stores it
under other seqs than this process numbered it with (another writer took seqs
meanwhile), the projections holding writes in flight are dropped and rebuilt from the
log on next use, the database level goes back to its durable copy, and every other
tenant keeps its projection: memory never keeps what the store does not hold.

Snapshots (issue 3): every ``snapshot_every`` events of a tenant (later for a tenant with
more than twice as many facts: see :meth:`Database._maybe_snapshot`), and for every changed
tenant on :meth:`Database.close`, the projection is captured on the loop (reference
copies only), encoded in a worker thread and saved through the writer's queue, so it is
stored only after every event it covers is durable. A tenant loads from its newest
snapshot plus the events after it.

Many processes (issue 16): the log is the truth and every projection here a cache of
it. Before it answers or decides, a request asks the store's cheap probe whether another
writer appended since this process last looked (:meth:`Database.fresh`); if so the
process catches up, applying the rows it missed through the same ``apply`` as replay,
so a read reflects every write any process acknowledged before the read began. A write
decided on a stale tenant anyway (a race with another writer) is refused by the store;
:func:`nocturnus.service.retry.retried` catches up and decides again.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from nocturnus.engine.collector import collector_paused
from nocturnus.engine.prepared import PlanCache
from nocturnus.errors import NocturnusError, StartupError, Unavailable
from nocturnus.service import snapshot_format
from nocturnus.service.codec import CODEC
from nocturnus.service.constraints import check_writes
from nocturnus.service.evaluation import Evaluator
from nocturnus.service.events import (
    Event,
    RuleRemoved,
    RuleTaught,
    TenantDeleted,
)
from nocturnus.service.facts import FactKey
from nocturnus.service.integrity import Integrity
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.readmodels import ReadModels
from nocturnus.service.replay import read_tenant, replay_tenant, restore_tenant
from nocturnus.service.residency import Residency
from nocturnus.service.retry import attempt
from nocturnus.service.rulebook import Rulebook, RuleRecord
from nocturnus.service.uses import UseBuffer
from nocturnus.store import distribution
from nocturnus.store.crypto import AesGcmCipher, MasterKey
from nocturnus.store.distribution import Distribution
from nocturnus.store.errors import AppendConflict, CorruptRecord, WrongMasterKey
from nocturnus.store.reader import Reader
from nocturnus.store.record import RecordTuple
from nocturnus.store.recorder import Store
from nocturnus.store.sealer import Append, Sealer
from nocturnus.store.snapshots import PART_BYTES, seal
from nocturnus.store.writer import Writer

__all__ = ["DATABASE_LEVEL", "Database", "DatabaseState", "now_ms", "replay_tenant"]

log = logging.getLogger("nocturnus.service")

DATABASE_LEVEL = ""
DEFAULT_SNAPSHOT_EVERY = 10_000
DEFAULT_USES_FLUSH_MS = 2_000
SNAPSHOT_TAIL_SHARE = 2
"""A tenant's tail must reach 1/SNAPSHOT_TAIL_SHARE of its facts before a snapshot."""
CATCH_UP_ROWS = 2_000
FOREIGN_COMMIT_POLL_S = 0.25
"""How often, while a live feed waits, a process looks for other processes' commits."""
"""Rows read and applied per step of a catch-up: the event loop is never held longer."""


def now_ms() -> int:
    """The wall clock in ms since the epoch: where the service reads it for writes."""
    return time.time_ns() // 1_000_000


def _ready(
    build: Callable[[str, Any], TenantState | None],
) -> Callable[[str, Any], TenantState | None]:
    """Wrap a projection builder so the result is refreshed to now, GC paused."""

    def run(name: str, stored: Any) -> TenantState | None:
        state = build(name, stored)
        if state is not None:
            with collector_paused():
                state.refresh(now_ms())
        return state

    return run


@dataclass(slots=True)
class DatabaseState:
    """Database-level knowledge: the rules every tenant of the database shares."""

    rules: Rulebook = field(default_factory=Rulebook)
    last_seq: int = 0


def apply_database_event(state: DatabaseState, seq: int, event: Event) -> None:
    """Apply a database-level (tenant "") event."""
    if isinstance(event, RuleTaught):
        state.rules.add(RuleRecord.from_event(event, level="database"))
    elif isinstance(event, RuleRemoved):
        state.rules.remove(event.id)
    state.last_seq = seq


@dataclass(slots=True)
class DatabaseStats:
    """What ``/metrics`` and ``/health`` report about replays and snapshots (issue 9).

    Cheap to keep: a few additions per tenant load or snapshot, read at scrape time.
    """

    replays: Distribution = field(default_factory=distribution.seconds)
    snapshots: Distribution = field(default_factory=distribution.seconds)
    # time.time() of the newest snapshot written or found (0.0: none known).
    last_snapshot_at: float = 0.0
    # Catching up with other writers (issue 16): how often, how many of their events,
    # and how far behind the last one found this process.
    catch_ups: int = 0
    caught_up_events: int = 0
    catch_up_lag: int = 0
    # Appends refused because another writer got there first, decisions taken again,
    # and writes given up after MAX_ATTEMPTS (answered WRITE_CONTENTION).
    conflicts: int = 0
    retries: int = 0
    contended: int = 0

    def record_snapshot(self, seconds: float, at: float | None = None) -> None:
        """The hook for whoever writes snapshots: call once per snapshot written."""
        self.snapshots.observe(seconds)
        self.last_snapshot_at = time.time() if at is None else at


class Positioned(Protocol):
    """A database-level projection: it knows the seq of the last event it applied."""

    last_seq: int


RootState = TypeVar("RootState", bound=Positioned)
T = TypeVar("T")


class Database(Generic[RootState]):
    """A database: a writer, a root (database-level) projection, lazy tenants."""

    def __init__(
        self,
        name: str,
        store: Store,
        master_key: MasterKey,
        *,
        root_factory: Callable[[], RootState],
        root_apply: Callable[[RootState, int, Event], None],
        default_conflict_strategy: str = "REJECT",
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        uses_flush_ms: int = DEFAULT_USES_FLUSH_MS,
        plans: PlanCache | None = None,
        evaluator: Evaluator | None = None,
        residency: Residency | None = None,
    ) -> None:
        self.name = name
        # the process's memory budget for tenant projections (None: every tenant stays)
        self.residency = residency
        # requests in flight per tenant (:meth:`pin`): such a tenant is never evicted
        self._pins: dict[str, int] = {}
        # prepared query plans (rewrites, lowered rules), kept across writes and
        # bounded per tenant and in total; keyed by rule content, never stale
        self.plans = plans if plans is not None else PlanCache()
        # where questions are evaluated, under which budget (issue 13)
        self.evaluator = evaluator if evaluator is not None else Evaluator()
        self.snapshot_every = snapshot_every
        self.snapshot_part_bytes = PART_BYTES
        self.store = store
        self.default_conflict_strategy = default_conflict_strategy
        self._master_key = master_key
        self._root_factory = root_factory
        self._root_apply = root_apply
        self.root: RootState = root_factory()
        # The database level and the tenant list as the log holds them: what a failed
        # commit puts back (``root`` and ``tenant_names`` run ahead of the disk).
        self._durable_root: RootState = root_factory()
        self._durable_tenants: dict[str, int] = {}
        self.writer = Writer(lambda: Sealer.open(store.recorder(name), master_key))
        # A second connection, read-only, in a thread of its own: see :meth:`read_log`.
        self.reader = Reader(self.open_readonly_log)
        # Where the head is asked when the store has no cheap probe (PostgreSQL): a
        # thread of its own, so a probe never waits behind a tenant load in the reader.
        self._prober: Reader | None = None
        # damage found by verification or by reads (issue 14): see service/integrity.py
        self.integrity = Integrity(name)
        self._tenants: dict[str, TenantState] = {}
        # The stream position of each loaded tenant as the log holds it (its own
        # appends in flight not counted): what an append is decided on, and which
        # rows a catch-up still has to apply.
        self._positions: dict[str, int] = {}
        # Every row up to this seq is reflected in the loaded tenants, the database
        # level and the tenant list (ours as we stored them, others' caught up).
        self._known = 0
        self._catching_up: asyncio.Lock | None = None
        # Snapshots being taken, per tenant, and meanwhile the stored last seq of each
        # of its appends stored under other seqs than numbered here: a capture's seq
        # may be a numbered one (see snapshot_tenant).
        self._captures: dict[str, int] = {}
        self._stored_as: dict[tuple[str, int], int] = {}
        # Rows a catch-up passed over because their tenant had appends in flight, and
        # the seqs those appends got: see _apply_caught_up and _settled.
        self._passed_over: dict[str, list[int]] = {}
        self._own_seqs: dict[str, list[range]] = {}
        # rankings, cached windows: per-process caches of the log, per tenant
        self.read_models = ReadModels()
        # uses of facts noted and not logged yet (service/uses.py), appended with the
        # tenant's next write or after uses_flush_ms (0: only with writes and at close)
        self.uses = UseBuffer()
        self.uses_flush_ms = uses_flush_ms
        self._uses_flusher: asyncio.Task[None] | None = None
        self._uses_settled = False
        self._loading: dict[str, asyncio.Future[TenantState]] = {}
        self._next_seq = 1
        self.tenant_names: dict[str, int] = {}
        self.stats = DatabaseStats()
        # Events applied to each loaded tenant since its last snapshot (or load).
        self._unsnapshotted: dict[str, int] = {}
        self._snapshotting: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        # Bumped when a failed commit drops the projections: a snapshot captured before
        # must not be stored, its newest events were never made durable.
        self._epoch = 0
        # Bumped when a failed append renumbers from the durable head (see _settled).
        self._numbering = 0
        # Commits numbered and not yet answered by the writer, per tenant, and the
        # newest of them: the position the next decision about that stream saw.
        self._in_flight: dict[str, int] = {}
        self._newest: dict[str, Append] = {}
        self._closing: asyncio.Future[None] | None = None
        # live feeds waiting for the next durable commit (issue 18, next_commit), and
        # the task looking for other processes' commits while any feed waits
        self._commit_waiters: list[asyncio.Future[None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._watched = 0

    def open_readonly_log(self) -> Sealer:
        """A read-only connection to this database's log, without the tail check (its
        readers verify what they read). Call it in the thread that will use it."""
        return Sealer.open(
            self.store.recorder(self.name, readonly=True), self._master_key, check_tail=None
        )

    async def open(self) -> None:
        """Start the writer and replay the database-level events.

        :raises WrongMasterKey: as the log raised it (it names the database).
        :raises StartupError: anything else that stops the log from opening (a broken
            hash chain in the tail, a corrupt record, a failed migration), in one line
            naming the database, its file and, where there is one, the seq.
        """
        try:
            await self.writer.start()
            await self._replay_root()
            await self.reader.start()
            if self.store.probe(self.name) is None:
                self._prober = Reader(self.open_readonly_log, name="prober")
                await self._prober.start()
        except NocturnusError as e:
            await self.writer.close()
            await self.reader.close()
            if self._prober is not None:
                await self._prober.close()
            if isinstance(e, WrongMasterKey):
                raise
            raise StartupError(
                f"cannot open database {self.name!r} ({self.store.where_is(self.name)}): "
                f"{e.message}",
                e.details,
            ) from e

    async def _replay_root(self) -> None:
        """Build the database level and the tenant list from the log, as of one head."""

        def read(log: Sealer) -> tuple[int, list[RecordTuple], dict[str, int]]:
            head = log.head()
            rows = list(log.entries(tenant=DATABASE_LEVEL, until_seq=head))
            return head, rows, log.tenants()

        head, rows, names = await self.writer.run(read)
        root = self._root_factory()
        for seq, _, _, kind, body in rows:
            if body is not None:
                self._root_apply(root, seq, CODEC.decode(kind, body))
        self.root = root
        self._durable_root = copy.deepcopy(root)
        self.tenant_names = names
        self._durable_tenants = dict(names)
        self._known = head
        self._next_seq = max(self._next_seq, head + 1)

    async def close(self) -> None:
        """Finish background snapshots, snapshot every changed tenant, stop the writer.

        Safe to call again while it runs (Sanic under uvloop may restart its stop
        listeners): later calls wait for the first one.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self.settle_uses()
        await self.flush_snapshots()
        if self.residency is not None:
            self.residency.forget_database(self.name)
        if self.writer.is_alive:
            for tenant, pending in sorted(self._unsnapshotted.items()):
                if pending > 0 and tenant in self._tenants:
                    try:
                        await self.snapshot_tenant(tenant)
                    except NocturnusError as e:  # the log still has every event
                        log.warning("shutdown snapshot of tenant %r in %r failed: %s",
                                    tenant, self.name, e)
        await self.writer.close()
        await self.reader.close()
        if self._prober is not None:
            await self._prober.close()
        stats = self.writer.stats
        if stats.commits:
            log.debug(
                "database %r: %d appends in %d commits (largest batch %d)",
                self.name, stats.appends, stats.commits, stats.largest_batch,
            )

    @property
    def head(self) -> int:
        """The seq of the last event handed to the writer."""
        return self._next_seq - 1

    # -- tenants --------------------------------------------------------------------

    async def tenant(self, name: str) -> TenantState:
        """The tenant's projection caught up with the log (:meth:`fresh`), replayed
        from the log on first use.

        When a catch-up passed over rows of it (appends of ours were in flight), the
        writer's queue is waited for first: then every append that could own them
        has settled, and a row none of them owns (another writer's) reloads it.

        :raises TenantDamaged: its history is damaged (see :mod:`~nocturnus.service.
            integrity`); a damaged tenant is never loaded.
        """
        if not self.seems_fresh():
            await self.fresh()
        if name in self._passed_over:
            await self.writer.run(_barrier)
            self._check_passed_over(name)
        return await self._loaded(name)

    async def _loaded(self, name: str) -> TenantState:
        state = self._tenants.get(name)
        if state is not None:
            if self.residency is not None:
                self.residency.touch(self, state)
            return state
        if name in self.integrity.damaged:
            raise self.integrity.refusal(name)
        pending = self._loading.get(name)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[name] = pending
            try:
                started = time.perf_counter()
                state = await self._load_tenant(name)
                self.stats.replays.observe(time.perf_counter() - started)
                if name in self.integrity.damaged:  # found while it loaded
                    raise self.integrity.refusal(name)
                self._positions[name] = state.last_seq
            except BaseException as e:
                pending.set_exception(e)
                pending.exception()  # mark retrieved; waiters re-raise it
                raise
            finally:
                del self._loading[name]
            self._tenants[name] = state
            if self.residency is not None:
                self.residency.touch(self, state)
            pending.set_result(state)
            return state
        return await asyncio.shield(pending)

    def loaded_tenants(self) -> Iterator[TenantState]:
        """The tenant projections in memory now (for metrics; never loads one)."""
        return iter(list(self._tenants.values()))

    def evict(self, name: str) -> None:
        """Drop a tenant's projection from memory; the next use reloads it from the log."""
        self._tenants.pop(name, None)
        self.read_models.drop(name)
        self._unsnapshotted.pop(name, None)
        self._positions.pop(name, None)
        self._passed_over.pop(name, None)
        self._own_seqs.pop(name, None)
        if self.residency is not None:
            self.residency.forget(self.name, name)

    # -- the memory budget (service/residency.py) ------------------------------------

    def pin(self, name: str) -> None:
        """Keep the tenant in memory until :meth:`unpin`: a request of it is running
        (REST and MCP routes, ``api/endpoint.py``)."""
        self._pins[name] = self._pins.get(name, 0) + 1

    def unpin(self, name: str) -> None:
        """End one :meth:`pin`; an eviction round starts if the budget is exceeded."""
        left = self._pins[name] - 1
        if left:
            self._pins[name] = left
            return
        del self._pins[name]
        if self.residency is not None:
            self.residency.settle_soon()

    def is_idle(self, name: str) -> bool:
        """Loaded, and nothing of this process needs its projection right now: no
        request pinning it, no commit of it in flight, no load or snapshot running."""
        return (
            name in self._tenants
            and name not in self._pins
            and name not in self._in_flight
            and name not in self._loading
            and name not in self._snapshotting
        )

    async def persist(self, name: str) -> bool:
        """Snapshot the tenant unless its newest snapshot already covers every event;
        False when it could not be stored (the tenant then stays in memory)."""
        if not self._unsnapshotted.get(name):
            return True
        try:
            return await self.snapshot_tenant(name)
        except NocturnusError as e:
            log.warning("snapshot of tenant %r in %r before eviction failed: %s",
                        name, self.name, e)
            return False

    def unload(self, name: str) -> bool:
        """Drop an idle tenant whose snapshot covers every event; False (and nothing
        done) otherwise."""
        if not self.is_idle(name) or self._unsnapshotted.get(name):
            return False
        self.evict(name)
        return True

    async def current(self, tenant: str) -> tuple[TenantState, int]:
        """The tenant's projection caught up with the log and brought to the present,
        and that present in ms: what every read answers from and every write decides
        on.

        Views an evaluation is reading in a worker are detached first: what the
        caller changes or reads from here on is a view of its own.
        """
        state = await self.tenant(tenant)
        now = now_ms()
        state.detach_read_views()
        state.refresh(now)
        return state, now

    async def _load_tenant(self, name: str) -> TenantState:
        """Newest snapshot + tail, built in a worker thread, indexes included, then
        brought up to every row this process knows of.

        The first ``refresh`` builds every visibility index; doing it here keeps that
        work (seconds for a big tenant) off the event loop. The load reads the log as
        of some head; catch-ups that ran meanwhile could not apply their rows to a
        tenant not loaded yet, so whatever of the tenant lies between that head and
        the rows this process knows of is read and applied before anyone sees it.
        """
        loaded_at, stored = await self.read_log(
            lambda log: (log.head(), read_tenant(log, name))
        )
        state = await asyncio.to_thread(_ready(restore_tenant), name, stored)
        if state is None:  # unreadable snapshot (logged): replay from seq 0
            loaded_at, records = await self.read_log(
                lambda log: (log.head(), list(log.entries(tenant=name)))
            )
            state = await asyncio.to_thread(_ready(replay_tenant), name, records)
            assert state is not None  # a replay always builds a state
            self._unsnapshotted[name] = len(records)
        else:
            self._unsnapshotted[name] = len(stored.tail)
        while loaded_at < self._known:
            until = self._known
            rows = await self._read(_rows(state.last_seq, until, name))
            replay_tenant(name, [row for row in rows if row[0] > state.last_seq], state)
            loaded_at = until
        return state

    def seems_fresh(self) -> bool:
        """Whether the store's cheap probe says nobody else appended since this process
        last looked: no await, so a caller on the hot path makes no coroutine when it
        is True. False also when the backend has no such probe (PostgreSQL)."""
        probed = self.store.probe(self.name)
        return probed is not None and probed <= self._known

    async def fresh(self) -> None:
        """Catch up with what other writers appended, if the store's probe says they did.

        Costs one probe when nothing changed (a pread on SQLite; a query on PostgreSQL,
        which has no cheaper way to know). Afterwards every append any process had
        acknowledged when this was called is reflected in the loaded tenants, the
        database level and the tenant list.
        """
        probed = self.store.probe(self.name)
        if probed is None:
            probed = await (self._prober or self.reader).run(Sealer.head)
        if probed > self._known:
            await self.catch_up(probed)

    async def catch_up(self, probed: int | None = None) -> None:
        """Apply every row between what this process knows and the log's head.

        ``probed`` is the head a probe saw, None when the caller knows this process is
        behind without one (the store refused an append of it). One catch-up at a
        time; one that finds its work done by another returns. The rows are read with
        the head as of the same read (a probe may run ahead of the commits), a step at
        a time; this process's own rows among them are told apart by the positions
        its settled appends recorded, or, for appends not settled yet, when they are
        (see :meth:`_apply_caught_up`). Nothing here waits for this process's writer.
        """
        if self._catching_up is None:
            self._catching_up = asyncio.Lock()
        async with self._catching_up:
            if probed is not None and probed <= self._known:
                return
            counted = False
            while True:
                after = self._known
                wanted = {DATABASE_LEVEL, *self._tenants}
                until, head, rows, damaged = await self.reader.run(_rows_to_head(after))
                for corrupt in damaged:
                    assert corrupt.tenant  # _rows_to_head raises the others
                    self.evict(corrupt.tenant)
                    self.integrity.mark(corrupt.tenant, corrupt.seq, corrupt.reason)
                if until <= after:
                    break
                if not counted:
                    counted = True
                    self.stats.catch_ups += 1
                    self.stats.catch_up_lag = head - after
                if DATABASE_LEVEL in self._in_flight and any(
                    row[2] == DATABASE_LEVEL and row[0] > self._durable_root.last_seq
                    for row in rows
                ):
                    # the database level's rows may be ours, committed but not settled:
                    # let them settle, then read this step again
                    await self.writer.run(_barrier)
                    continue
                self._apply_caught_up(rows, wanted)
                self._known = max(self._known, until)
                self._next_seq = max(self._next_seq, until + 1)
                if until >= head:
                    break

    def _apply_caught_up(self, rows: list[RecordTuple], wanted: set[str]) -> None:
        """Apply the rows of a catch-up step this process does not hold yet.

        A row at or below a stream's known position is already here (ours, or read by
        a load). A row of a tenant with appends of ours in flight is passed over and
        noted: it is either ours (committed, its settle not run yet: applied when it
        was decided) or another writer's, and then those appends, decided without
        it, are refused and the tenant reloads. :meth:`_settled` checks which, once
        the tenant has nothing in flight. A tenant loaded while the rows were read
        (not ``wanted``) is dropped to reload, and so is one with a shredded row (it
        was deleted since: its reload reads the log as it now stands).
        """
        applied = 0
        for seq, ts_ms, tenant, kind, body in rows:
            if tenant == DATABASE_LEVEL:
                if seq <= self._durable_root.last_seq or body is None:
                    continue
                event = CODEC.decode(kind, body)
                self._root_apply(self._durable_root, seq, event)
                if DATABASE_LEVEL not in self._in_flight:
                    self._root_apply(self.root, seq, event)
                applied += 1
                continue
            deleted = kind == TenantDeleted.kind
            _track_tenant(self.tenant_names, tenant, deleted, ts_ms)
            _track_tenant(self._durable_tenants, tenant, deleted, ts_ms)
            if deleted:
                self.uses.drop(tenant)  # another process deleted it: they go with it
            state = self._tenants.get(tenant)
            if state is None or seq <= self._positions.get(tenant, 0):
                continue
            if tenant in self._in_flight:
                self._passed_over.setdefault(tenant, []).append(seq)
                continue
            applied += 1
            if tenant not in wanted or body is None:
                self.evict(tenant)
                continue
            state.detach_read_views()  # as a commit: a worker may be reading them
            apply(state, seq, CODEC.decode(kind, body))
            self._positions[tenant] = seq
            self._unsnapshotted[tenant] = self._unsnapshotted.get(tenant, 0) + 1
        self.stats.caught_up_events += applied

    async def read_log(self, fn: Callable[[Sealer], T]) -> T:
        """Run ``fn(log)`` on the read-only connection, after every append queued so far.

        Reads that scan many events (loading a tenant, time travel, the audit trail)
        run in the reader's thread, so the writer keeps committing everyone else's
        writes meanwhile; a barrier through the writer first makes the read see every
        append queued before the call, as running it in the writer would.
        """
        await self.writer.run(_barrier)
        return await self._read(fn)

    async def _read(self, fn: Callable[[Sealer], T]) -> T:
        """Run ``fn(log)`` in the reader; a damaged record stops its tenant only.

        :raises TenantDamaged: ``fn`` met a damaged record of a tenant.
        """
        try:
            return await self.reader.run(fn)
        except CorruptRecord as e:
            if e.tenant is None:
                raise
            self.evict(e.tenant)
            raise self.integrity.mark(e.tenant, e.seq, e.reason) from e

    # -- snapshots ------------------------------------------------------------------

    async def snapshot_tenant(self, name: str) -> bool:
        """Snapshot a loaded tenant now; False if not stored (see ``save_snapshot``)."""
        state = self._tenants.get(name)
        if state is None:
            return False
        self._captures[name] = self._captures.get(name, 0) + 1
        try:
            return await self._snapshot(name, state)
        finally:
            left = self._captures.pop(name) - 1
            if left:
                self._captures[name] = left
            else:
                for numbered in [k for k in self._stored_as if k[0] == name]:
                    del self._stored_as[numbered]

    async def _snapshot(self, name: str, state: TenantState) -> bool:
        started = time.perf_counter()
        seq, captured, epoch = state.last_seq, snapshot_format.capture(state), self._epoch
        self._unsnapshotted[name] = 0
        body = await asyncio.to_thread(snapshot_format.encode_capture, captured)
        # Every append the capture holds was queued before this barrier: once it is
        # through, each is stored (its settle has run: the seq it got is known) or
        # failed (the epoch moved on). Another writer may have taken the seqs this
        # process numbered the newest of them with.
        await self.writer.run(_barrier)
        seq = self._stored_as.get((name, seq), seq)

        def key(event_log: Sealer) -> tuple[int, AesGcmCipher] | None:
            return None if epoch != self._epoch else event_log.snapshot_key(name, seq)

        found = await self.writer.run(key)
        if found is None:
            return False
        sealed = await asyncio.to_thread(
            seal, self.name, name, seq, found, body, self.snapshot_part_bytes
        )
        del body
        # One writer job per part: appends queued meanwhile commit in between, so a
        # big tenant's snapshot holds the writer for one part at a time, never whole.
        for part in range(sealed.parts):
            await self.writer.run(partial(Sealer.write_snapshot_part, part=part, sealed=sealed))

        def finish(event_log: Sealer) -> bool:
            return epoch == self._epoch and event_log.finish_snapshot(sealed)

        stored = await self.writer.run(finish)
        if stored:
            self.stats.record_snapshot(time.perf_counter() - started)
        return stored

    def _maybe_snapshot(self, name: str) -> None:
        """Snapshot ``name`` in the background once its tail is long enough.

        A snapshot re-encodes the whole tenant, so a tenant with many facts also waits
        until its tail holds ``1 / SNAPSHOT_TAIL_SHARE`` of its fact count: however big
        the tenant, writes pay for at most that many facts encoded per event (with
        a fixed interval a 1 M-fact tenant re-encoded 100 facts per write), and a
        load replays a tail at most that share of the snapshot's size.
        """
        every = self.snapshot_every
        pending = self._unsnapshotted.get(name, 0)
        if every <= 0 or pending < every:
            return
        state = self._tenants.get(name)
        if name in self._snapshotting or state is None:
            return
        if pending * SNAPSHOT_TAIL_SHARE < state.fact_count():
            return
        self._snapshotting.add(name)
        task = asyncio.get_running_loop().create_task(self._background_snapshot(name))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _background_snapshot(self, name: str) -> None:
        try:
            await self.snapshot_tenant(name)
        except NocturnusError as e:
            log.warning("snapshot of tenant %r in %r failed: %s", name, self.name, e)
        except Exception:  # a bug must not kill the writes that triggered it
            log.exception("snapshot of tenant %r in %r failed", name, self.name)
        finally:
            self._snapshotting.discard(name)

    async def flush_snapshots(self) -> None:
        """Wait for the background snapshots in flight."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- writes ---------------------------------------------------------------------

    async def commit(self, tenant: str, events: Sequence[Event], now: int) -> range:
        """Log ``events`` for ``tenant`` (``""`` = database level) and apply them;
        the seqs the store gave them.

        Must be called right after the decision, with no ``await`` in between, so that
        decisions and seqs follow one order. Every event is encoded before a seq is
        taken or a projection touched (issue 14): an event that cannot be stored
        raises here and changes nothing, for this tenant or any other.

        The uses of the tenant's facts noted since its last append go first, in the
        same commit, as ``facts_used`` events (``service/uses.py``); a deletion drops
        them instead. The range returned is that of ``events``.

        :raises AppendConflict: another writer changed the stream since the decision
            (issue 15); the stale projection is gone by then, the request may be retried.
        :raises Unavailable: the writer could not make the batch durable; what the
            projections held of it is gone by then (see :meth:`_settled`).
        """
        if not events:
            return range(0)
        if tenant == DATABASE_LEVEL:
            return await self._append(tenant, events, now)
        state = self._tenants.get(tenant)
        if state is not None:
            state.detach_read_views()  # a worker reads them: change copies
        if state is not None and state.constraints:  # RESTRICT (issue 18): refuse
            root = self.root  # before taking a seq
            assert isinstance(root, DatabaseState)  # tenants live in data databases
            rules = root.rules
            self.evaluator.bounded(
                lambda budget: check_writes(state, rules, events, now, budget)
            )
        if isinstance(events[-1], TenantDeleted):
            self.uses.drop(tenant)  # the uses go with the data
        used = self.uses.take(tenant)
        if not used:
            return await self._append(tenant, events, now)
        try:
            stored = await self._append(tenant, [*used, *events], now)
        except Exception:
            self.uses.give_back(tenant, used)
            raise
        return stored[len(used) :]

    def record_uses(self, tenant: str, keys: Iterable[FactKey], now: int) -> None:
        """Note a use of each of the tenant's facts ``keys`` at ``now`` (salience): it
        is logged with the tenant's next write, or after ``uses_flush_ms``
        (``service/uses.py``)."""
        if self.uses.record(tenant, keys, now):
            self._arm_uses_flusher()

    def _arm_uses_flusher(self) -> None:
        if (
            self.uses_flush_ms > 0
            and self._uses_flusher is None
            and not self._uses_settled
            and self.uses
        ):
            self._uses_flusher = asyncio.get_running_loop().create_task(
                self._flush_uses_later()
            )

    async def _flush_uses_later(self) -> None:
        try:
            await asyncio.sleep(self.uses_flush_ms / 1000)
            await self.flush_uses()
        except Exception:  # a bug must not stop later flushes
            log.exception("flushing the uses of %r failed", self.name)
        finally:
            self._uses_flusher = None
        self._arm_uses_flusher()  # uses noted while it flushed

    async def flush_uses(self) -> None:
        """Append the uses noted for every tenant, one commit per tenant, deciding
        again on conflict. A tenant whose uses could not be stored keeps them for
        the next flush, unless it is damaged (they are dropped: it serves nothing)."""
        for tenant in self.uses.tenants():
            try:
                await attempt(self, partial(self._append_uses, tenant))
            except NocturnusError as e:
                if tenant in self.integrity.damaged:
                    self.uses.drop(tenant)
                log.warning("uses of tenant %r in %r not stored: %s", tenant, self.name, e)

    async def settle_uses(self) -> None:
        """Append every use noted and stop the timer for good: the database closes.

        Its own step, so that whoever closes many databases runs it for all of them
        before the last round of evictions (a flush may load a tenant)."""
        self._uses_settled = True
        flusher = self._uses_flusher
        if flusher is not None:
            flusher.cancel()  # an append it queued is stored; nothing taken is lost
            await asyncio.gather(flusher, return_exceptions=True)
        if self.writer.is_alive:
            await self.flush_uses()

    async def _append_uses(self, tenant: str) -> None:
        """Log the tenant's noted uses alone, decided on the tenant caught up (a
        deletion found there drops them)."""
        _, now = await self.current(tenant)
        used = self.uses.take(tenant)
        if not used:
            return
        try:
            await self._append(tenant, used, now)
        except Exception:
            self.uses.give_back(tenant, used)
            raise

    async def _append(self, tenant: str, events: Sequence[Event], now: int) -> range:
        """:meth:`commit` from the point where the events are final."""
        append = Append(
            tenant,
            self._expected(tenant),
            now,
            [(event.kind, CODEC.encode(event)) for event in events],
            ends_stream=isinstance(events[-1], TenantDeleted),
        )
        first = self._next_seq
        self._next_seq = first + len(events)
        try:
            self._apply(tenant, first, events)
        except BaseException:
            # A bug in an applier. No await since the seqs were taken, so nobody took
            # one after them; nothing was queued; the half-applied tenant reloads.
            self._next_seq = first
            if tenant != DATABASE_LEVEL:
                self.evict(tenant)
            raise
        if tenant != DATABASE_LEVEL:
            deleted = isinstance(events[-1], TenantDeleted)
            _track_tenant(self.tenant_names, tenant, deleted, now)
        self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
        self._newest[tenant] = append
        settled = partial(
            self._settled, tenant, events, now, self._numbering, first,
            self._tenants.get(tenant),
        )
        try:
            stored = await self.writer.append(append, settled)
        except AppendConflict:
            raise
        except NocturnusError as e:
            raise Unavailable(f"database '{self.name}' could not store the write: {e}") from e
        self._wake_commit_waiters()
        if tenant != DATABASE_LEVEL and tenant in self._tenants:
            self._maybe_snapshot(tenant)
        return stored

    def _expected(self, stream: str) -> int | Append | None:
        """The position the decision about to be appended to ``stream`` was made on.

        The newest append of the stream still in flight (the decision saw its events),
        else the stream's position in the projection; None for a tenant that is not
        loaded (its appends do not depend on its state: the audit trail).
        """
        pending = self._newest.get(stream)
        if pending is not None:
            return pending
        if stream == DATABASE_LEVEL:
            return self._durable_root.last_seq
        return self._positions.get(stream)

    def _apply(self, tenant: str, first: int, events: Sequence[Event]) -> None:
        if tenant == DATABASE_LEVEL:
            for seq, event in enumerate(events, first):
                self._root_apply(self.root, seq, event)
            return
        state = self._tenants.get(tenant)
        if state is None:
            return
        for seq, event in enumerate(events, first):
            apply(state, seq, event)
        self._unsnapshotted[tenant] = self._unsnapshotted.get(tenant, 0) + len(events)

    def _check_passed_over(self, tenant: str) -> None:
        """Were the rows a catch-up passed over all the tenant's own appends? (Called
        once every append that could own them has settled.) One that is not is another
        writer's, stored after ours (so ours were not refused): the tenant reloads to
        hold it."""
        passed = self._passed_over.pop(tenant, [])
        own = self._own_seqs.pop(tenant, [])
        if any(not any(seq in stored for stored in own) for seq in passed):
            self.evict(tenant)

    def next_commit(self) -> asyncio.Future[None]:
        """A future resolved once the log has a commit newer than now.

        What a live feed waits on before it reads the log again (``service/feed.py``).
        This process's commits resolve it when they are durable; those of other
        processes sharing the store within :data:`FOREIGN_COMMIT_POLL_S`, by one probe
        of the head per database at that interval while any feed waits.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commit_waiters.append(waiter)
        if self._watcher is None or self._watcher.done():
            self._watched = max(self._watched, self._known)
            self._watcher = asyncio.ensure_future(self._watch_foreign_commits())
        return waiter

    async def _watch_foreign_commits(self) -> None:
        while self._commit_waiters and self._closing is None:
            await asyncio.sleep(FOREIGN_COMMIT_POLL_S)
            if not self._commit_waiters or self._closing is not None:
                return
            try:
                head = self.store.probe(self.name)
                if head is None:
                    head = await (self._prober or self.reader).run(Sealer.head)
            except NocturnusError as e:  # the feeds' own reads will report it
                log.debug("database %r: probing for other commits failed: %s", self.name, e)
                continue
            if head > max(self._watched, self._known):
                self._watched = head
                self._wake_commit_waiters()

    def _wake_commit_waiters(self) -> None:
        waiters, self._commit_waiters = self._commit_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _settled(
        self,
        tenant: str,
        events: Sequence[Event],
        now: int,
        numbering: int,
        first: int,
        applied_to: TenantState | None,
        error: BaseException | None,
        head: int | None,
    ) -> None:
        """The writer's word on one commit, on the loop, in commit order.

        A stored commit moves the durable copies on. A failed one: every commit
        numbered before the failure and not stored yet failed with it or will (its
        seqs no longer continue the log), so the first failure of a numbering round
        drops exactly the projections holding such commits (issue 14: never every
        tenant's), puts back the durable database level and tenant list, and numbers
        on from the head the writer reports. Later failures of that round find the
        round over and only leave. A refused append (another writer changed its
        stream: issue 15) is such a failure too.

        A stored append may have got other seqs than this process numbered it with
        (another writer took seqs meanwhile): what it applied is still right (the
        store checked nobody else wrote its stream), only its positions move to the
        stored ones (a snapshot being taken of its tenant learns them too). It
        continues what this process knows of the log when it
        follows it directly; otherwise another writer's rows lie between, for the
        next :meth:`fresh` to catch up.
        """
        left = self._in_flight[tenant] - 1
        if left:
            self._in_flight[tenant] = left
        else:
            del self._in_flight[tenant]
            del self._newest[tenant]
        if error is None:
            assert head is not None
            self._next_seq = max(self._next_seq, head + 1)
            stored_first = head - len(events) + 1
            if stored_first == self._known + 1:
                self._known = head
            if stored_first != first and tenant in self._captures:
                self._stored_as[(tenant, first + len(events) - 1)] = head
            if tenant == DATABASE_LEVEL:
                for seq, event in enumerate(events, stored_first):
                    self._root_apply(self._durable_root, seq, event)
                if not left:
                    self.root.last_seq = head
            else:
                deleted = isinstance(events[-1], TenantDeleted)
                _track_tenant(self._durable_tenants, tenant, deleted, now)
                if applied_to is not None and self._tenants.get(tenant) is applied_to:
                    self._positions[tenant] = head
                    if not left:
                        applied_to.last_seq = head
                if tenant in self._passed_over:
                    self._own_seqs.setdefault(tenant, []).append(range(stored_first, head + 1))
                    if not left:
                        self._check_passed_over(tenant)
            return
        if numbering != self._numbering:
            return
        self._numbering += 1
        self._epoch += 1  # a snapshot captured before may hold lost events
        for lost in (tenant, *self._in_flight):
            if lost != DATABASE_LEVEL:
                self.evict(lost)
        if tenant == DATABASE_LEVEL or DATABASE_LEVEL in self._in_flight:
            self.root = copy.deepcopy(self._durable_root)
        self.tenant_names = dict(self._durable_tenants)
        if head is not None:
            self._next_seq = head + 1


def _track_tenant(names: dict[str, int], tenant: str, deleted: bool, now: int) -> None:
    if deleted:
        names.pop(tenant, None)
    else:
        names.setdefault(tenant, now)


CaughtUp = tuple[int, int, list[RecordTuple], list[CorruptRecord]]


def _rows_to_head(after: int) -> Callable[[Sealer], CaughtUp]:
    """A reader job: up to where it read, the committed head, the records after
    ``after`` (at most CATCH_UP_ROWS seqs of them), and the damaged records it stepped
    over: a tenant's damaged row stops that tenant (issue 14), not everyone's
    catch-up.

    :raises CorruptRecord: a damaged row of the database level or of no known stream.
    """

    def read(log: Sealer) -> CaughtUp:
        head = log.head()
        until = min(head, after + CATCH_UP_ROWS)
        rows: list[RecordTuple] = []
        damaged: list[CorruptRecord] = []
        start = after
        while True:
            try:
                rows.extend(log.entries(start, until_seq=until))
                return until, head, rows, damaged
            except CorruptRecord as e:
                if not e.tenant:
                    raise
                damaged.append(e)
                start = e.seq

    return read


def _rows(
    after: int, until: int, tenant: str | None = None
) -> Callable[[Sealer], list[RecordTuple]]:
    """A reader job: the records with ``after < seq <= until`` (of ``tenant``)."""
    return lambda log: list(log.entries(after, tenant=tenant, until_seq=until))


def _barrier(log: Sealer) -> None:
    """A writer job doing nothing: it runs once every append queued before it is done."""
