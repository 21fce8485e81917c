"""Transactions: a tenant's writes buffered, then committed as one event or dropped.

``POST /tx/begin`` opens a transaction for one (database, tenant), bound to the key that
opened it; it ends after ``transaction_timeout_ms`` unless committed or rolled back
first. A request sent with ``X-Transaction-ID`` runs against the transaction's *view*:
the tenant's committed state (a copy-on-write copy, :meth:`TenantState.staged_copy`)
with the transaction's earlier writes applied, so its reads see its own writes. A write
is not stored: the events it decides are applied to the view only, and the request is
kept as a :class:`Step`. ``commit`` decides every step again, in order, against the
tenant's state at that moment, with no suspension in between (:func:`run_now`), and
appends what they decide as one ``transaction_committed`` event: all of it, or — when
any step no longer applies — nothing (409). Rollback, expiry and a restart drop the
buffer; the log never saw it.

Cost: a view is a copy-on-write copy, built when a request of the transaction finds the
tenant's committed state moved since the last one; it shares every relation with the
live state, so the first write to a relation afterwards, on either side, copies that
relation (as after a scope fork). Keep transactions short on very large relations.

Where the buffers live (issue 16). Open transactions are this process's memory, behind
the :class:`TransactionStore` protocol (open, find, close). A :class:`Step` is data — the
route and its validated request — so a server of several processes or nodes sharing one
store can either implement the protocol over the shared store (a transaction becomes a
row of steps; the view is rebuilt from them wherever the next request lands), or route
every request carrying ``X-Transaction-ID`` (and every ``/tx/*`` call) to the process
that began it: sticky routing on the id, whose first part names that process
(``tx_<process>_<random>``). Until one of the two is done, a transaction is known to the
process that began it only; any other answers 404 — never a silent immediate write.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from nocturnus.errors import (
    Conflict,
    Forbidden,
    NocturnusError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ValidationError,
)
from nocturnus.service.authenticator import Principal
from nocturnus.service.codec import nest
from nocturnus.service.constraints import check_writes
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.events import Event, TransactionCommitted
from nocturnus.service.facts import FactKey
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.readmodels import ReadModels
from nocturnus.service.retry import retried

Db = Database[DatabaseState]
T = TypeVar("T")


def owner_of(principal: Principal) -> str:
    """Who a transaction (or a feed) belongs to: the key, or the anonymous caller."""
    return f"{principal.source}:{principal.key_id or principal.name}"


@dataclass(frozen=True, slots=True)
class Step:
    """One buffered write: the route it was sent to and its validated request."""

    method: str
    path: str
    body: dict[str, Any]
    params: dict[str, str]

    @property
    def route(self) -> str:
        """``METHOD /path`` of the route, as errors name it."""
        return f"{self.method} {self.path}"


StepRunner = Callable[[Step, Db], Coroutine[Any, Any, Any]]
"""Runs a step's route against a database (the transaction's staged one); returns its
answer. The API layer provides it: it re-runs the route's handler."""


@dataclass(slots=True, eq=False)
class Transaction:
    """An open transaction: who may use it, for which tenant, and its steps so far."""

    id: str
    database: str
    tenant: str
    owner: str
    """:func:`owner_of` the key that began it."""
    expires_at: float
    """``time.monotonic()`` deadline."""
    steps: list[Step] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # the view and the committed log position it was built on (see stage())
    view: TenantState | None = None
    view_seq: int = -1

    def check(self, owner: str, database: str, tenant: str) -> None:
        """:raises Forbidden: another key. :raises ValidationError: another tenant."""
        if owner != self.owner:
            raise Forbidden(
                f"Transaction '{self.id}' was begun by another key",
                {"transactionId": self.id},
            )
        if (database, tenant) != (self.database, self.tenant):
            raise ValidationError(
                f"X-Transaction-ID: transaction '{self.id}' belongs to database "
                f"'{self.database}', tenant '{self.tenant}'",
                field="X-Transaction-ID",
            )


class TransactionStore(Protocol):
    """Where open transactions are kept (see the module docstring, issue 16)."""

    timeout_ms: int

    def open(self, database: str, tenant: str, owner: str) -> Transaction:
        """Begin a transaction. :raises RateLimited: ``owner`` holds too many."""
        ...

    def find(self, tx_id: str) -> Transaction:
        """An open transaction. :raises NotFound: unknown or ended."""
        ...

    def close(self, tx_id: str) -> Transaction:
        """End a transaction (commit or rollback). :raises NotFound: as ``find``."""
        ...

    def holds(self, database: str, tenant: str) -> bool:
        """Whether a transaction of ``tenant`` is open here (its projection stays in
        memory under a budget: ``service/residency.py``)."""
        ...

    def __len__(self) -> int: ...


class LocalTransactions:
    """Open transactions in this process's memory, expired lazily on every use.

    At most ``per_key`` open at once per key (anonymous callers count as one key).
    ``timeout_ms`` is read by the routes too (``/tx/begin`` reports it).
    """

    def __init__(
        self,
        timeout_ms: int,
        per_key: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_ms = timeout_ms
        self.per_key = per_key
        self._clock = clock
        self._process = secrets.token_hex(4)
        self._open: dict[str, Transaction] = {}

    def __len__(self) -> int:
        self._sweep()
        return len(self._open)

    def open(self, database: str, tenant: str, owner: str) -> Transaction:
        """:raises RateLimited: the key already has ``per_key`` open transactions."""
        self._sweep()
        held = sum(1 for tx in self._open.values() if tx.owner == owner)
        if held >= self.per_key:
            raise RateLimited(
                f"too many open transactions for this key (limit {self.per_key}): "
                "commit or roll one back first",
                retry_after_s=max(1, self.timeout_ms // 1000),
                details={"limit": self.per_key},
            )
        tx_id = f"tx_{self._process}_{secrets.token_hex(12)}"
        deadline = self._clock() + self.timeout_ms / 1000
        tx = self._open[tx_id] = Transaction(tx_id, database, tenant, owner, deadline)
        return tx

    def find(self, tx_id: str) -> Transaction:
        """:raises NotFound: unknown, expired, committed or rolled back."""
        self._sweep()
        tx = self._open.get(tx_id)
        if tx is None:
            raise NotFound(
                f"Transaction '{tx_id[:80]}' not found: unknown, expired, committed or "
                "rolled back (nothing was written)",
                {"transactionId": tx_id[:80]},
            )
        return tx

    def close(self, tx_id: str) -> Transaction:
        """Forget a transaction. :raises NotFound: as :meth:`find`."""
        tx = self.find(tx_id)
        del self._open[tx_id]
        return tx

    def holds(self, database: str, tenant: str) -> bool:
        """Whether an open transaction of this process works on (database, tenant)."""
        self._sweep()
        return any(
            (tx.database, tx.tenant) == (database, tenant) for tx in self._open.values()
        )

    def _sweep(self) -> None:
        now = self._clock()
        for tx_id in [i for i, tx in self._open.items() if tx.expires_at <= now]:
            del self._open[tx_id]


class StagedDatabase:
    """``db`` as a transaction sees it: its tenant's state is the transaction's view.

    Writes to that tenant apply to the view and are kept in :attr:`events`, never
    logged; reads of it read the view; everything else is ``db``'s own (attributes
    are looked up on ``db``), so every service function runs on it unchanged.
    """

    def __init__(self, db: Db, tenant: str, state: TenantState, now: int) -> None:
        self._db = db
        self._tenant = tenant
        self._state = state
        self._now = now
        self.events: list[Event] = []
        # the view's own sessions and ranking: the tenant's stay the live state's
        self.read_models = ReadModels()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def record_uses(self, tenant: str, keys: Iterable[FactKey], now: int) -> None:
        """Uses of the view's facts are not counted (the facts it reads may be its
        own, not the tenant's); any other tenant's are (``Database.record_uses``)."""
        if tenant != self._tenant:
            self._db.record_uses(tenant, keys, now)

    async def tenant(self, name: str) -> TenantState:
        """The view for the transaction's tenant; any other tenant's projection."""
        if name != self._tenant:
            return await self._db.tenant(name)
        return self._state

    async def current(self, tenant: str) -> tuple[TenantState, int]:
        """The view refreshed to the request's instant (``Database.current``)."""
        if tenant != self._tenant:
            return await self._db.current(tenant)
        self._state.detach_read_views()  # as Database.current: a worker may read them
        self._state.refresh(self._now)
        return self._state, self._now

    async def commit(self, tenant: str, events: list[Event], now: int) -> None:
        """Apply ``events`` to the view (the same ``apply`` as a commit) and keep them.

        :raises ValidationError: a write to another tenant.
        :raises Conflict: the events would make one of the tenant's constraints hold.
        """
        if tenant != self._tenant:
            raise ValidationError(
                f"a transaction of tenant '{self._tenant}' cannot write tenant '{tenant}'",
                field="X-Transaction-ID",
            )
        state = self._state
        state.detach_read_views()
        if state.constraints:  # refused now, as a commit would refuse it
            rules = self._db.root.rules
            self._db.evaluator.bounded(
                lambda budget: check_writes(state, rules, events, now, budget)
            )
        for event in events:
            apply(state, state.last_seq, event)
        self.events.extend(events)

    def as_database(self) -> Db:
        """This object where a service function expects a :class:`Database`.

        A proxy, not a subclass: it overrides the three methods through which a
        service function reads and writes a tenant, and forwards the rest.
        """
        return cast(Db, self)


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end without ever letting the event loop in.

    A commit decides every step with no suspension in between, so no other write can
    slip between two of them (each step's route is parse → decide → commit on the
    staged database, none of which waits).

    :raises RuntimeError: the coroutine suspended (a step that waits for I/O is a bug).
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("a transaction step suspended; steps must decide without waiting")


def _no_longer_applies(tx: Transaction, index: int, step: Step, e: NocturnusError) -> Conflict:
    return Conflict(
        f"Transaction '{tx.id}' cannot commit: step {index + 1} ({step.route}) no longer "
        f"applies: {e.message}",
        {
            "transactionId": tx.id,
            "step": index,
            "route": step.route,
            "code": e.code,
            "message": e.message,
            "details": e.details,
        },
    )


def _replay(tx: Transaction, staged: StagedDatabase, run: StepRunner) -> list[Any]:
    """Run every step of ``tx`` on ``staged``; their answers, in order.

    :raises Conflict: a step fails against the state ``staged`` starts from.
    """
    answers = []
    for index, step in enumerate(tx.steps):
        try:
            answers.append(run_now(run(step, staged.as_database())))
        except NocturnusError as e:
            raise _no_longer_applies(tx, index, step, e) from e
    return answers


async def stage(db: Db, tx: Transaction, run: StepRunner) -> StagedDatabase:
    """The transaction's view for one request: its steps applied to the current state.

    The view is kept between requests while the tenant's committed state does not move
    (its log position); otherwise it is built again, each step decided anew.

    :raises Conflict: a step no longer applies (the transaction cannot commit).
    """
    state, now = await db.current(tx.tenant)
    if tx.view is None or tx.view_seq != state.last_seq:
        tx.view = None
        view = state.staged_copy()
        _replay(tx, StagedDatabase(db, tx.tenant, view, now), run)
        tx.view, tx.view_seq = view, state.last_seq
    return StagedDatabase(db, tx.tenant, tx.view, now)


def record(tx: Transaction, staged: StagedDatabase, step: Step, max_steps: int) -> bool:
    """Keep ``step`` when its request wrote to the view; True when it did.

    :raises PayloadTooLarge: the transaction already holds ``max_steps`` writes (the
        write is undone from the view).
    """
    if not staged.events:
        return False
    if len(tx.steps) >= max_steps:
        tx.view = None
        raise PayloadTooLarge(
            f"Transaction '{tx.id}' holds at most {max_steps} writes: commit it first",
            {"transactionId": tx.id, "limit": max_steps},
        )
    tx.steps.append(step)
    return True


def abandon_view(tx: Transaction, staged: StagedDatabase) -> None:
    """After a request failed: drop the view if the request had written to it."""
    if staged.events:
        tx.view = None


@dataclass(frozen=True, slots=True)
class Committed:
    """What a commit appended: its steps, their events, the position, the answers."""
    transaction_id: str
    steps: int
    events: int
    seq: int
    """The log position of the ``transaction_committed`` event (0 when none was needed)."""
    answers: tuple[Any, ...]


@retried
async def commit(db: Db, tx: Transaction, run: StepRunner) -> Committed:
    """Decide every step against the state now and append them as one event.

    :raises Conflict: a step no longer applies; nothing is written.
    """
    state, now = await db.current(tx.tenant)
    staged = StagedDatabase(db, tx.tenant, state.staged_copy(), now)
    answers = _replay(tx, staged, run)
    seq = 0
    if staged.events:
        event = TransactionCommitted(id=tx.id, events=nest(staged.events))
        seq = (await db.commit(tx.tenant, [event], now))[-1]
    return Committed(tx.id, len(tx.steps), len(staged.events), seq, tuple(answers))


__all__ = [
    "Committed",
    "LocalTransactions",
    "StagedDatabase",
    "Step",
    "Transaction",
    "TransactionStore",
    "abandon_view",
    "commit",
    "owner_of",
    "record",
    "run_now",
    "stage",
]
