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
any step no longer applies — nothing (409). Rollback and expiry drop the buffer; the
log never saw it. A restart does not: the buffer is in the shared store.

Cost: a view is a copy-on-write copy, built when a request of the transaction finds the
tenant's committed state moved since the last one, or its steps changed elsewhere (a
process builds it from every step: requests alternating between processes cost a
replay of the steps each); it shares every relation with the
live state, so the first write to a relation afterwards, on either side, copies that
relation (as after a scope fork). Keep transactions short on very large relations.

Where the buffers live (issue 16). An open transaction is two entries of the shared
state store (``service/shared.py``), so any process or node continues it — a
transaction begun on one, written through another and committed on a third is one
transaction:

- :data:`HEADS` ``tx_id`` → ``[version, database, tenant, owner]``, plain (names and the
  owner, no tenant data), expiring at the deadline: what :meth:`SharedTransactions.find`
  checks the caller against before anything else, and what the per-key count scans
  (an id starts with a digest of its owner, ``tx_<owner>_<random>``);
- :data:`STEPS` ``(database, tenant, tx_id)`` → ``[version, ended, [step, ...]]``,
  sealed with the tenant's data key (a step holds the request's body): a deleted or
  recreated tenant's transactions read as ended.

Every change of the steps is a compare-and-set on the entry's version: a step is kept
only if no other request added one since its view was built (otherwise the request is
decided again on the newer steps), and commit and rollback end the transaction by
storing ``ended`` on the version they read — so no acknowledged step is lost, and none
is acknowledged after the end. The view is a per-process cache of the steps, kept for
the version it was built from (:meth:`SharedTransactions.find` hands it back); a process
that never saw the transaction builds it from the steps.

A tenant that was never written has no data key yet: beginning a transaction on it
registers it (``tenant_created``, as its first write would), so that the steps can be
sealed.

Bounds: ``transaction_steps`` per transaction and the timeout are exact (the deadline is
wall-clock time, so nodes' clocks should agree); ``transactions_per_key`` is counted
over every process, exact except for begins racing on several processes at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import orjson

from nocturnus.errors import (
    Conflict,
    Forbidden,
    NocturnusError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ValidationError,
    WriteContention,
)
from nocturnus.service import tenants
from nocturnus.service.authenticator import Principal
from nocturnus.service.codec import nest
from nocturnus.service.constraints import check_writes
from nocturnus.service.database import Database, DatabaseState, now_ms
from nocturnus.service.events import Event, TransactionCommitted
from nocturnus.service.facts import FactKey
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.readmodels import ReadModels
from nocturnus.service.retry import retried
from nocturnus.service.shared import Shared, shared_key

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
    expires_ms: int
    """Wall-clock deadline (epoch ms)."""
    steps: list[Step] = field(default_factory=list)
    version: int = 0
    """The version of its steps' entry in the shared store that ``steps`` are."""
    # the view and the committed log position it was built on (see stage()): this
    # process's cache, for ``version``
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

    async def open(self, db: Db, tenant: str, owner: str) -> Transaction:
        """Begin a transaction. :raises RateLimited: ``owner`` holds too many."""
        ...

    async def find(self, db: Db, tenant: str, owner: str, tx_id: str) -> Transaction:
        """An open transaction of ``tenant`` of ``db``, begun by ``owner``.

        :raises NotFound: unknown or ended. :raises Forbidden: another owner's.
        :raises ValidationError: another database or tenant's.
        """
        ...

    async def keep(self, db: Db, tx: Transaction) -> bool:
        """Store the steps after a request added one; False when another request
        changed them first (decide the request again on the newer steps)."""
        ...

    def release(self, tx: Transaction) -> None:
        """A request is done with ``tx``: its view is kept for the next one here."""
        ...

    async def close(self, db: Db, tenant: str, owner: str, tx_id: str) -> Transaction:
        """End a transaction (commit or rollback): its last steps. Raises as ``find``."""
        ...

    def holds(self, database: str, tenant: str) -> bool:
        """Whether this process holds a view of a transaction of ``tenant`` (its
        projection stays in memory under a budget: ``service/residency.py``)."""
        ...


HEADS = "tx"
"""The shared-store space of open transactions' heads (who, which tenant, deadline)."""
STEPS = "tx-steps"
"""The shared-store space of open transactions' steps (sealed)."""
ENCODING = 1
"""The version of the stored values' encoding (the first item of each)."""
MAX_ATTEMPTS = 10
"""Compare-and-set attempts of one end (commit, rollback) before it gives up."""
_TX_ID = re.compile(r"tx_[0-9a-f]{12}_[0-9a-f]{24}")


def encode_steps(steps: Sequence[Step], ended: bool = False) -> bytes:
    """A transaction's steps as stored: orjson ``[version, ended, [[method, path,
    body, params], ...]]``."""
    return orjson.dumps(
        [ENCODING, ended, [[s.method, s.path, s.body, s.params] for s in steps]]
    )


def decode_steps(raw: bytes) -> tuple[bool, list[Step]]:
    """Whether the transaction ended, and its steps.

    :raises ValueError: another encoding version (an upgrade mid-transaction: a
        newer process's transaction cannot be continued by an older one).
    """
    version, ended, steps = orjson.loads(raw)
    if version != ENCODING:
        raise ValueError(f"transaction steps of encoding version {version}")
    return bool(ended), [Step(*step) for step in steps]


def _not_found(tx_id: str) -> NotFound:
    return NotFound(
        f"Transaction '{tx_id[:80]}' not found: unknown, expired, committed or "
        "rolled back (nothing was written)",
        {"transactionId": tx_id[:80]},
    )


@dataclass(slots=True)
class _Held:
    """A view of a transaction cached by this process, for the steps' version it was
    built from. A request takes it (no two requests share a view) and gives it back."""

    database: str
    tenant: str
    expires_ms: int
    view: TenantState
    view_seq: int
    version: int


class SharedTransactions:
    """Open transactions in the shared state store (see the module docstring).

    At most ``per_key`` open at once per key (anonymous callers count as one key).
    ``timeout_ms`` is read by the routes too (``/tx/begin`` reports it). ``shared``
    gives the server's store (opened after this object is made).
    """

    def __init__(
        self, shared: Callable[[], Shared], timeout_ms: int, per_key: int
    ) -> None:
        self._shared = shared
        self.timeout_ms = timeout_ms
        self.per_key = per_key
        self._held: dict[str, _Held] = {}

    async def open(self, db: Db, tenant: str, owner: str) -> Transaction:
        """:raises RateLimited: the key already has ``per_key`` open transactions."""
        shared = self._shared()
        prefix = f"tx_{hashlib.blake2b(owner.encode(), digest_size=6).hexdigest()}_"
        if len(await shared.scan(HEADS, prefix)) >= self.per_key:
            raise RateLimited(
                f"too many open transactions for this key (limit {self.per_key}): "
                "commit or roll one back first",
                retry_after_s=max(1, self.timeout_ms // 1000),
                details={"limit": self.per_key},
            )
        tx_id = prefix + secrets.token_hex(12)
        ttl_s = self.timeout_ms / 1000
        expires_ms = now_ms() + self.timeout_ms  # the store's own reckoning, give or take
        key = _steps_key(db.name, tenant, tx_id)
        try:
            version = await shared.put_sealed(
                db, tenant, STEPS, key, encode_steps([]), ttl_s=ttl_s, expect=0
            )
        except LookupError:
            # a tenant never written (or deleted) has no data key to seal its steps
            # with: it is registered, as its first write would
            await tenants.create_tenant(db, tenant)
            try:
                version = await shared.put_sealed(
                    db, tenant, STEPS, key, encode_steps([]), ttl_s=ttl_s, expect=0
                )
            except LookupError:
                raise Conflict(
                    f"tenant '{tenant}' was deleted while a transaction of it began; "
                    "retry",
                    {"tenant": tenant},
                ) from None
        head = orjson.dumps([ENCODING, db.name, tenant, owner])
        created = await shared.put(HEADS, tx_id, head, ttl_s=ttl_s, expect=0)
        if version is None or created is None:  # a 96-bit random id met another
            raise _not_found(tx_id)
        return Transaction(tx_id, db.name, tenant, owner, expires_ms, [], version)

    async def find(self, db: Db, tenant: str, owner: str, tx_id: str) -> Transaction:
        """:raises NotFound: unknown, expired, committed or rolled back.
        :raises Forbidden: another key's. :raises ValidationError: another tenant's."""
        shared = self._shared()
        if not _TX_ID.fullmatch(tx_id):
            raise _not_found(tx_id)
        entry = await shared.get(HEADS, tx_id)
        if entry is None:
            raise _not_found(tx_id)
        _, database, tx_tenant, tx_owner = orjson.loads(entry.value)
        tx = Transaction(tx_id, database, tx_tenant, tx_owner, entry.expires_ms)
        tx.check(owner, db.name, tenant)
        opened = await shared.get_sealed(
            db, tenant, STEPS, _steps_key(db.name, tenant, tx_id)
        )
        if opened is None:  # ended, or the tenant was deleted (or recreated)
            raise _not_found(tx_id)
        try:
            ended, tx.steps = decode_steps(opened[0])
        except ValueError:
            raise _not_found(tx_id) from None
        if ended:
            raise _not_found(tx_id)
        tx.version = opened[1]
        held = self._held.pop(tx_id, None)
        if held is not None and held.version == tx.version:
            tx.view, tx.view_seq = held.view, held.view_seq
        return tx

    async def keep(self, db: Db, tx: Transaction) -> bool:
        """Store ``tx.steps`` on the version they were read at; False (the view
        dropped) when another request stored steps first, or the deadline passed."""
        remaining_s = (tx.expires_ms - now_ms()) / 1000
        version = None
        if remaining_s > 0:
            try:
                version = await self._shared().put_sealed(
                    db, tx.tenant, STEPS, _steps_key(tx.database, tx.tenant, tx.id),
                    encode_steps(tx.steps), ttl_s=remaining_s, expect=tx.version,
                )
            except LookupError:  # the tenant was deleted: the next find says so
                version = None
        if version is None:
            tx.view = None
            return False
        tx.version = version
        self.release(tx)
        return True

    def release(self, tx: Transaction) -> None:
        """Cache the view of ``tx`` (if any) for the next request here."""
        self._sweep()
        if tx.view is not None:
            self._held[tx.id] = _Held(
                tx.database, tx.tenant, tx.expires_ms, tx.view, tx.view_seq, tx.version
            )

    async def close(self, db: Db, tenant: str, owner: str, tx_id: str) -> Transaction:
        """End a transaction: store it ended on the version read, so that no step
        can be added after (a request that stored one first is part of it).

        :raises NotFound: as :meth:`find`. :raises WriteContention: its steps kept
            changing under :data:`MAX_ATTEMPTS` attempts.
        """
        shared = self._shared()
        for _ in range(MAX_ATTEMPTS):
            tx = await self.find(db, tenant, owner, tx_id)  # checks the id first
            key = _steps_key(db.name, tenant, tx_id)
            try:
                ended = await shared.put_sealed(
                    db, tenant, STEPS, key, encode_steps(tx.steps, ended=True),
                    ttl_s=max(1.0, (tx.expires_ms - now_ms()) / 1000), expect=tx.version,
                )
            except LookupError:  # the tenant was deleted meanwhile
                raise _not_found(tx_id) from None
            if ended is not None:
                await shared.delete(HEADS, tx_id)
                await shared.delete(STEPS, key)
                return tx
        raise WriteContention(
            f"Transaction '{tx_id}' kept changing under {MAX_ATTEMPTS} attempts to "
            "end it; retry",
            {"transactionId": tx_id, "attempts": MAX_ATTEMPTS},
        )

    def holds(self, database: str, tenant: str) -> bool:
        """Whether a view of a transaction of (database, tenant) is cached here."""
        self._sweep()
        return any((h.database, h.tenant) == (database, tenant) for h in self._held.values())

    def _sweep(self) -> None:
        """Drop the views of transactions past their deadline (one ended on another
        process is dropped here by its deadline at the latest)."""
        now = now_ms()
        for tx_id in [i for i, h in self._held.items() if h.expires_ms <= now]:
            del self._held[tx_id]


def _steps_key(database: str, tenant: str, tx_id: str) -> str:
    return shared_key(database, tenant, tx_id)


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
        # the view's own ranking: the tenant's stays the live state's (so do its
        # context sessions: a call in a transaction keeps its own for the call)
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
    "SharedTransactions",
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
