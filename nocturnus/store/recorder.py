"""The recorder seam: where sealed rows are kept, behind one protocol, two backends.

A :class:`Recorder` stores the rows of one Nocturnus database and knows nothing of what
they mean: ciphertext, ids, kinds and times, wrapped keys, snapshot pieces and a few
named metadata values. Everything that needs a key (encryption, the chain, shredding
policy, verification) lives above it in :mod:`nocturnus.store.sealer` and its siblings,
written once against this protocol. :mod:`nocturnus.store.sqlite` and
:mod:`nocturnus.store.postgresql` implement it; they are the only modules that import a
database driver.

The contract (``tests/store/test_recorder_contract.py`` runs it against both):

- **Positions.** Every event row has a ``seq``, unique in the database. Seqs are given
  out by whoever holds the write lock, as ``head + 1, head + 2, ...``, so they are
  contiguous and increase in commit order: a reader that has seen seq ``n`` has seen
  every seq below it (compaction's recorded ranges are the only gaps). A stream's
  position (a tenant's, ``""`` for the database level) is the seq of its last row, 0
  when it has none.
- **One writer at a time, any number of processes.** :meth:`Recorder.transaction`
  takes the database's write lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the head
  row ``FOR UPDATE``) before it reads the head, and holds it until commit. Everything
  read through the :class:`WriteTransaction` (head, positions, keys) therefore stays
  true until the commit: an append decided on them is refused atomically if another
  writer appended since (the optimistic check in the sealer), and two processes never
  give out the same seq. A transaction commits on a normal exit and rolls back on an
  exception; nothing of a rolled-back transaction is visible, and a crash in the middle
  of one leaves the store as it was before it began.
- **Durable on return.** When :meth:`Recorder.transaction` exits normally the commit is
  durable (SQLite ``synchronous=FULL`` in WAL mode; PostgreSQL's commit).
- **Reads never block writes**, and see committed state only. :meth:`Recorder.rows`
  yields rows in seq order up to the head as of the call.
- **Tailing.** :meth:`Recorder.wait_for` returns as soon as the head passes a position
  or the timeout ends; wake-ups (PostgreSQL ``NOTIFY``) only shorten the wait, the head
  is always re-read (a poll), so correctness never depends on a notification.
- **Errors.** Driver errors leave a recorder only as :class:`~nocturnus.store.errors.
  StorageError` (or its subclasses), chained with ``from e``, naming what was being done.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NamedTuple, Protocol

from nocturnus.store.migrate import Migration, MigrationStatus
from nocturnus.store.shared import SharedState

TABLES: dict[str, tuple[str, ...]] = {
    "events": (
        "seq", "ts_ms", "tenant", "kind", "key_id", "nonce", "payload", "prev_hash",
        "hash",
    ),
    "data_keys": (
        "key_id", "tenant", "wrapped", "created_seq", "created_ts_ms", "destroyed_seq",
        "destroyed_ts_ms",
    ),
    "snapshots": ("tenant", "seq", "ts_ms", "key_id", "nonce", "payload", "parts"),
    "snapshot_parts": ("tenant", "seq", "part", "data"),
    "meta": ("name", "value"),
    "compacted": ("first_seq", "last_seq", "compacted_seq", "mac"),
}
"""Every row a recorder keeps, table by table: what a backup copies, on any backend."""


class Tip(NamedTuple):
    """The newest row of the chain: its seq and its hash (0 and the genesis hash when
    the log is empty)."""

    seq: int
    hash: bytes


# (seq, ts_ms, tenant, kind, key_id, nonce, payload): what replay reads and decrypts.
EventRow = tuple[int, int, str, str, int, bytes, bytes]
# An event row with its chain columns: (..., prev_hash, hash).
ChainRow = tuple[int, int, str, str, int, bytes, bytes, bytes, bytes]
# A seq range dropped by compaction: (first, last, compacted_seq, its MAC or None).
CompactedRange = tuple[int, int, int, bytes | None]


class KeyRow(NamedTuple):
    """One wrapped data key; ``wrapped`` is None once destroyed (crypto-shredding)."""

    key_id: int
    tenant: str
    wrapped: bytes | None
    created_seq: int
    created_ts_ms: int
    destroyed_seq: int | None


class SnapshotRow(NamedTuple):
    """A stored snapshot: ``ciphertext`` is its parts joined, None if a part is missing."""

    tenant: str
    seq: int
    key_id: int
    nonce: bytes
    ciphertext: bytes | None
    parts: int


class WriteTransaction(Protocol):
    """What a writer may read and change while it holds the database's write lock."""

    @property
    def head(self) -> Tip:
        """The head as of taking the lock: no other writer can move it until commit."""
        ...

    def positions(self, streams: Collection[str]) -> dict[str, int]:
        """Each stream's position (seq of its last row; 0 when it has none)."""
        ...

    def key_rows(self) -> list[KeyRow]:
        """Every data key row, in key id order."""
        ...

    def create_key(
        self, tenant: str, seq: int, ts_ms: int, wrap: Callable[[int], bytes]
    ) -> int:
        """Insert a live key for ``tenant``; ``wrap(key_id)`` gives its wrapped bytes.

        Key ids are never reused, not even after compaction deleted a key's row.
        """
        ...

    def destroy_key(self, key_id: int, seq: int, ts_ms: int) -> None:
        """Forget a key's wrapped bytes for good, recording the seq that did it."""
        ...

    def rewrap_key(self, key_id: int, wrapped: bytes) -> None:
        """Replace a live key's wrapped bytes (master-key rotation)."""
        ...

    def delete_keys(self, key_ids: Collection[int]) -> None:
        """Remove key rows entirely (compaction of destroyed keys)."""
        ...

    def drop_snapshots(self, tenant: str) -> None:
        """Delete every snapshot (and snapshot piece) of ``tenant``."""
        ...

    def insert(self, rows: Sequence[ChainRow]) -> None:
        """Insert event rows; a seq that exists already fails the transaction."""
        ...

    def set_head(self, tip: Tip) -> None:
        """Record the chain's head in the same transaction as the rows it covers."""
        ...

    def set_meta(self, name: str, value: bytes) -> None:
        """Set one metadata value."""
        ...

    def chain_rows(self, after_seq: int, limit: int | None = None) -> Iterator[ChainRow]:
        """The rows after ``after_seq`` in seq order (at most ``limit``), as this
        transaction sees them. Consume it before changing rows."""
        ...

    def delete_events(self, seqs: Collection[int]) -> None:
        """Remove event rows (compaction)."""
        ...

    def rechain(self, links: Sequence[tuple[bytes, bytes, int]]) -> None:
        """Set ``(prev_hash, hash)`` of the row ``seq`` for each ``(prev, hash, seq)``."""
        ...

    def add_compacted(self, ranges: Sequence[CompactedRange]) -> None:
        """Record seq ranges dropped by a compaction, each with its MAC."""
        ...

    def set_range_macs(self, macs: Sequence[tuple[bytes, int]]) -> None:
        """Set the MAC of the compacted range starting at each ``(mac, first_seq)``."""
        ...


class Recorder(Protocol):
    """The rows of one Nocturnus database in one backend (the module docstring states
    the contract). Not thread-safe: one instance per thread."""

    database: str
    readonly: bool
    anchor_path: Path | None
    """Where the head anchor of this log lives (:mod:`nocturnus.store.anchor`): beside
    a SQLite log of a store; None for a backend whose commits need none (PostgreSQL)
    and for loose files (backups)."""

    @property
    def where(self) -> str:
        """Where the rows live, for messages (a file path, a schema and host)."""
        ...

    def meta(self) -> dict[str, bytes]:
        """Every metadata value (database name, key check token, head, ...)."""
        ...

    def init_meta(self, values: Mapping[str, bytes]) -> dict[str, bytes]:
        """Set each value that is not set yet, atomically; return the metadata after.

        Two processes creating the same database at once agree on the first writer's
        values.
        """
        ...

    def head(self) -> Tip:
        """The committed head (as recorded with the last append)."""
        ...

    def rows(
        self,
        after_seq: int = 0,
        *,
        tenant: str | None = None,
        tenants: Collection[str] | None = None,
        until_seq: int | None = None,
        limit: int | None = None,
    ) -> Iterator[EventRow]:
        """Rows with ``after_seq < seq <= until_seq`` in seq order, of ``tenant`` (or of
        any of ``tenants``) when given. Closing the iterator releases what it holds."""
        ...

    def chain_rows(
        self, after_seq: int = 0, until_seq: int | None = None
    ) -> Iterator[ChainRow]:
        """Every row after ``after_seq`` (to ``until_seq``) with its chain columns, in
        seq order; without ``until_seq`` also any row past the recorded head."""
        ...

    def chain_tail(self, count: int) -> tuple[dict[str, bytes], list[ChainRow]]:
        """The metadata and the newest ``count`` rows (oldest first) as of one commit:
        a check of the head against the rows never sees a writer's half-way state."""
        ...

    def count_events(self) -> int:
        """How many event rows are stored."""
        ...

    def tenant_event_counts(self, until_seq: int | None = None) -> dict[str, int]:
        """Stream name -> how many rows it has up to ``until_seq``."""
        ...

    def compacted(self) -> list[CompactedRange]:
        """Every seq range dropped by compaction, in seq order."""
        ...

    def key_rows(self) -> list[KeyRow]:
        """Every data key row, in key id order."""
        ...

    def key_row(self, key_id: int) -> KeyRow | None:
        """One data key row, None when there is no such key."""
        ...

    def snapshots(self, tenant: str | None = None) -> Iterator[SnapshotRow]:
        """Stored snapshots: ``tenant``'s newest first, or (None) all by tenant and seq."""
        ...

    def write_snapshot_part(self, tenant: str, seq: int, part: int, data: bytes) -> None:
        """Store one piece of a snapshot's ciphertext, in a transaction of its own."""
        ...

    def finish_snapshot(
        self,
        tenant: str,
        seq: int,
        key_id: int,
        nonce: bytes,
        last_piece: bytes,
        parts: int,
        keep: int,
    ) -> bool:
        """Make a snapshot visible once its ``parts`` pieces are stored; keep the newest
        ``keep`` of the tenant and remove orphaned pieces.

        Refused (False, nothing stored) when ``key_id`` is no longer live or was created
        after ``seq`` (the tenant was deleted meanwhile: storing the state under a new
        key would resurrect shredded data), or when a piece is missing.
        """
        ...

    def wait_for(self, after_seq: int, timeout_s: float) -> int:
        """Block until the head passes ``after_seq`` or ``timeout_s`` ends; the head."""
        ...

    def transaction(self) -> AbstractContextManager[WriteTransaction]:
        """Take the write lock and open a transaction (see the module docstring).

        :raises StorageError: read-only, closed, or the lock or commit failed.
        """
        ...

    def reclaim(self) -> None:
        """Give the space of deleted rows back so no dropped byte stays in the files."""
        ...

    def backup_to(self, dest: Path, meta: Mapping[str, bytes]) -> None:
        """Write one consistent copy of every row to the new file ``dest`` (mode 0600).

        The copy is a SQLite log, whatever the backend: the portable backup format.
        ``meta`` values are added to the copy's metadata.
        """
        ...

    def close(self) -> None:
        """Release the connection; later calls raise StorageError."""
        ...


class Store(Protocol):
    """Where the recorders of every database of one server live (a data dir, a
    PostgreSQL database with one schema per Nocturnus database)."""

    @property
    def where(self) -> str:
        """The store, for messages."""
        ...

    def where_is(self, database: str) -> str:
        """Where ``database``'s rows live, for messages (its file, its schema)."""
        ...

    def recorder(self, database: str, *, readonly: bool = False) -> Recorder:
        """Open ``database``'s recorder, creating it (unless ``readonly``) if missing.

        :raises StorageError: it cannot be opened, or (``readonly``) does not exist.
        :raises MigrationError: its schema needs a migration this call may not apply.
        """
        ...

    def shared(self) -> SharedState:
        """The shared state beside this store (sessions, counters: ``store/shared``),
        seen by every process the store's logs are."""
        ...

    def probe(self, database: str) -> int | None:
        """``database``'s committed head as cheaply as this backend can tell it, safe on
        the event loop (no query, no network): at least the seq of every append
        acknowledged so far by any process, possibly more (then the rows say where
        the log really is). None when there is no such probe: ask a recorder's
        :meth:`Recorder.head` instead (PostgreSQL). What every read checks first
        (issue 16), so it must cost next to nothing.
        """
        ...

    def migrate(self, database: str) -> list[Migration]:
        """Apply ``database``'s pending schema migrations; return those applied."""
        ...

    def migration_status(self, database: str) -> list[MigrationStatus]:
        """Every known migration of ``database`` and when it was applied (read-only)."""
        ...

    def exists(self, database: str) -> bool:
        """Whether ``database`` has a recorder here."""
        ...

    def names(self) -> list[str]:
        """Every database with a recorder here, sorted."""
        ...

    def remove(self, database: str) -> None:
        """Delete ``database``'s rows for good (a deleted database)."""
        ...

    def restore(self, database: str, backup: Path) -> None:
        """Replace (or create) ``database`` with the rows of a backup file."""
        ...

    def close(self) -> None:
        """Release shared resources (a connection pool)."""
        ...
