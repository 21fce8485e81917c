"""The event log of one database: one SQLite file, encrypted, hash-chained.

Write path (STYLE rule 8): body bytes → AES-256-GCM under the tenant's data key with
AAD = (database, seq, tenant, kind) → hash-chained row, all rows of a batch in one
``BEGIN IMMEDIATE`` transaction (WAL, ``synchronous=FULL``: durable on return).
Read path reverses it; a record whose key was destroyed reads back with ``body=None``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from itertools import starmap
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag

from nocturnus.errors import StartupError
from nocturnus.store import migrate
from nocturnus.store.chain import (
    GENESIS,
    Break,
    event_hash,
    head_break,
    pack_head,
    unpack_head,
    walk,
)
from nocturnus.store.compact import Compaction, drop_shredded
from nocturnus.store.crypto import AesGcmCipher, MasterKey
from nocturnus.store.errors import (
    ChainBroken,
    CorruptRecord,
    InvalidRecord,
    SeqConflict,
    StorageError,
    WrongMasterKey,
    storage_error,
)
from nocturnus.store.keys import KeyRing
from nocturnus.store.record import Entry, LogRecord, build_record, frame
from nocturnus.store.snapshots import SealedSnapshot, Snapshots, seal
from nocturnus.store.verify import VerifyReport, verify_log

log = logging.getLogger("nocturnus.store")

TENANT_DELETED = "tenant_deleted"
BUSY_TIMEOUT_MS = 10_000
_EVENT_COLUMNS = "seq, ts_ms, tenant, kind, key_id, nonce, payload, prev_hash, hash"


class EventLog:
    """One SQLite event-log file for one database. Not thread-safe: one instance per thread.

    Open it with :meth:`open`. A read-write instance must be the file's only writer (the
    :class:`~nocturnus.store.writer.Writer` owns it); any number of ``readonly=True``
    instances may read alongside it in other threads or processes (WAL).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        database: str,
        keyring: KeyRing,
        *,
        readonly: bool,
    ) -> None:
        self._conn = conn
        self.path = path
        self.database = database
        self.readonly = readonly
        self._keys = keyring
        self._snapshots = Snapshots(conn, database, keyring)
        self._head = 0
        self._head_hash = GENESIS
        self._data_version = -1
        self._aad_prefix = frame("event", database)
        self._closed = False

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        database: str,
        master_key: MasterKey,
        *,
        check_tail: int | None = 1000,
        readonly: bool = False,
    ) -> EventLog:
        """Open (creating if missing, unless ``readonly``) the log of ``database``.

        Applies pending migrations, checks the master key against the stored data keys
        and checks the hash chain of the newest ``check_tail`` events (``None`` skips
        that check: ``verify`` reports on the whole chain instead of refusing to open).

        :raises WrongMasterKey: the master key is not the one this log was written with.
        :raises ChainBroken: a changed, removed or reordered event, naming its seq.
        :raises StartupError: the file belongs to another database.
        :raises StorageError: SQLite cannot open or migrate the file.
        """
        if not isinstance(database, str) or not database:
            raise ValueError("database must be a non-empty string")
        path = Path(path)
        conn = _connect(path, readonly=readonly)
        try:
            keyring = KeyRing(conn, database, master_key)
            self = cls(conn, path, database, keyring, readonly=readonly)
            self._init(master_key, check_tail)
        except BaseException:
            conn.close()
            raise
        return self

    @staticmethod
    def stored_name(path: Path) -> str | None:
        """Return the database name a log file was created for, without any key.

        :raises StorageError: the file is missing or not a Nocturnus log.
        """
        conn = _connect(Path(path), readonly=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE name = 'database'").fetchone()
        except sqlite3.Error as e:
            raise storage_error(e, "reading the database name", path) from e
        finally:
            conn.close()
        return None if row is None else bytes(row[0]).decode()

    def _init(self, master_key: MasterKey, check_tail: int | None) -> None:
        conn = self._conn
        try:
            if self.readonly:
                pending = migrate.check(conn, migrate.discover())
                if pending:
                    raise StorageError(
                        f"event log {self.path} needs migration "
                        f"{pending[0].version:04d}_{pending[0].name}; open it read-write first"
                    )
            else:
                migrate.apply_migrations(conn)
            master_checked = self._check_identity(master_key)
            self._keys.load(master_checked=master_checked)
            # One read transaction: a reader opening beside a running writer must see
            # the head and the tail of the same commit, not a newer tail.
            self._conn.execute("BEGIN")
            try:
                self._load_head()
                if check_tail is not None:
                    self._check_tail(check_tail)
            finally:
                self._conn.execute("COMMIT")
            self._data_version = self._current_data_version()
        except sqlite3.Error as e:
            raise storage_error(e, "opening", self.path) from e

    def _check_identity(self, master_key: MasterKey) -> bool:
        """Check the file's database name and master-key token; write them on first open."""
        meta = self._meta()
        stored_name = meta.get("database")
        if stored_name is not None and stored_name.decode() != self.database:
            raise StartupError(
                f"event log {self.path} belongs to database {stored_name.decode()!r}, "
                f"not {self.database!r}"
            )
        token = meta.get("master_key_check")
        if token is not None:
            if not master_key.matches(token, self.database):
                raise WrongMasterKey(
                    f"wrong master key for database {self.database!r} ({self.path}): "
                    "set the NOCTURNUS_MASTER_KEY (or master.key) it was created with"
                )
            return True
        if self.readonly:
            return False
        has_keys = self._conn.execute("SELECT 1 FROM data_keys LIMIT 1").fetchone()
        if has_keys:
            # Keys without a token: check them first, then record the token.
            self._keys.load(master_checked=False)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('database', ?)",
                (self.database.encode(),),
            )
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('master_key_check', ?)",
                (master_key.check_value(self.database),),
            )
            self._conn.execute("COMMIT")
        except BaseException:
            _rollback(self._conn)
            raise
        # Another process may have opened the new file first: its token won.
        if not master_key.matches(self._meta()["master_key_check"], self.database):
            raise WrongMasterKey(
                f"wrong master key for database {self.database!r} ({self.path}): "
                "another process created it with a different master key"
            )
        return True

    def _meta(self) -> dict[str, bytes]:
        return {
            name: bytes(value)
            for name, value in self._conn.execute("SELECT name, value FROM meta")
        }

    def _load_head(self) -> None:
        row = self._conn.execute(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        self._head, self._head_hash = (row[0], row[1]) if row else (0, GENESIS)

    def _chain_start(self, meta: dict[str, bytes]) -> tuple[int, bytes]:
        """Return (seq before the first event, its hash): (0, GENESIS) until compaction."""
        value = meta.get("chain_start")
        return unpack_head(value) if value is not None else (0, GENESIS)

    def _check_tail(self, count: int) -> None:
        """Check links and hashes of the newest ``count`` events and the recorded head.

        :raises ChainBroken: naming the first bad seq.
        """
        meta = self._meta()
        start_seq, start_hash = self._chain_start(meta)
        rows = self._conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?",
            (max(count, 0) + 1,),
        ).fetchall()
        rows.reverse()
        if rows and (rows[0][0] <= start_seq + 1 or len(rows) <= count):
            anchor_seq, anchor_hash = start_seq, start_hash
        elif rows:
            # The oldest row fetched anchors the window: check its own hash, trust its link.
            first = rows.pop(0)
            anchor_seq, anchor_hash = first[0], first[8]
            if _row_hash(first) != first[8]:
                raise ChainBroken(
                    first[0], "the row does not match its hash: it was changed or moved"
                )
        else:
            anchor_seq, anchor_hash = start_seq, start_hash
        last_seq, last_hash = anchor_seq, anchor_hash
        for item in walk(rows, anchor_seq, anchor_hash, self._gaps()):
            if isinstance(item, Break):
                raise ChainBroken(item.seq, item.reason)
            last_seq, last_hash = item[0], item[8]
        recorded = meta.get("head")
        broken = head_break(
            unpack_head(recorded) if recorded is not None else None, last_seq, last_hash
        )
        if broken is not None:
            raise ChainBroken(broken.seq, broken.reason)

    def _gaps(self) -> dict[int, int]:
        """first seq -> last seq of every range dropped by compaction."""
        return dict(self._conn.execute("SELECT first_seq, last_seq FROM compacted"))

    def _current_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _sync(self) -> None:
        """Pick up commits made by other connections (a reader following the writer)."""
        version = self._current_data_version()
        if version != self._data_version:
            self._data_version = version
            self._load_head()
            self._keys.refresh_destroyed()

    # -- writing -------------------------------------------------------------------

    def append(self, records: Sequence[LogRecord]) -> None:
        """Append ``records`` in one transaction; durable when this returns.

        Seqs must continue the head contiguously. Each tenant's first record creates its
        data key in the same transaction. A ``tenant_deleted`` record is encrypted under
        the database-level key and destroys the tenant's current key and snapshots,
        shredding everything written under that key.

        :raises SeqConflict: a seq out of order; nothing is written.
        :raises InvalidRecord: a malformed record; nothing is written.
        :raises StorageError: SQLite failed; nothing is written.
        """
        self._require_writable()
        if not records:
            return
        conn = self._conn
        first_seq = records[0].seq
        try:
            self._sync()
            conn.execute("BEGIN IMMEDIATE")
            try:
                head, head_hash, shredded = self._write(
                    records, self._head, self._head_hash
                )
                conn.execute("COMMIT")
            except BaseException:
                self._keys.rollback()
                _rollback(conn)
                raise
        except sqlite3.IntegrityError as e:
            self._load_head()
            raise SeqConflict(first_seq, self._head + 1) from e
        except sqlite3.Error as e:
            last = records[-1].seq
            raise storage_error(e, "appending", f"seqs {first_seq}..{last}") from e
        self._keys.commit()
        self._head, self._head_hash = head, head_hash
        if shredded:
            self._purge_wal()

    def _write(
        self, records: Sequence[LogRecord], head: int, head_hash: bytes
    ) -> tuple[int, bytes, bool]:
        """Encrypt, chain and insert ``records`` after (head, head_hash) in the open
        transaction, and record the new head; return (head, head hash, shredded?)."""
        conn = self._conn
        keys = self._keys
        expected = head + 1
        prev = head_hash
        rows: list[tuple[object, ...]] = []
        shredded = False
        aad_head = self._aad_prefix + b"i"
        packers: dict[tuple[str, str], tuple[Callable[..., bytes], bytes]] = {}
        for r in records:
            seq = r.seq
            if seq != expected:
                raise SeqConflict(seq, expected)
            _validate(r)
            tenant, kind = r.tenant, r.kind
            key_tenant = "" if kind == TENANT_DELETED else tenant
            found = keys.current(key_tenant) or keys.create(key_tenant, seq, r.ts_ms)
            key_id, cipher = found
            packer = packers.get((tenant, kind))
            if packer is None:  # record_aad(database, seq, tenant, kind), packed
                packer = packers[(tenant, kind)] = _aad_packer(aad_head, tenant, kind)
            nonce, payload = cipher.encrypt(
                r.body,  # type: ignore[arg-type]  # _validate checked bytes
                packer[0](aad_head, seq, packer[1]),
            )
            h = event_hash(prev, seq, r.ts_ms, tenant, kind, key_id, nonce, payload)
            # Blobs bound as bytearray: sqlite3 binds that type directly, while each
            # bytes value first goes through its adaptation protocol (a formatted,
            # swallowed AttributeError each): the same BLOB, a fraction of the cost.
            rows.append(
                (
                    seq, r.ts_ms, tenant, kind, key_id,
                    bytearray(nonce), bytearray(payload), bytearray(prev), bytearray(h),
                )
            )
            if kind == TENANT_DELETED:
                keys.destroy(tenant, seq, r.ts_ms)
                conn.execute("DELETE FROM snapshots WHERE tenant = ?", (tenant,))
                conn.execute("DELETE FROM snapshot_parts WHERE tenant = ?", (tenant,))
                shredded = True
            prev = h
            expected += 1
        conn.executemany(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute(
            "INSERT INTO meta (name, value) VALUES ('head', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (pack_head(expected - 1, prev),),
        )
        return expected - 1, prev, shredded

    def _purge_wal(self) -> None:
        """Checkpoint and truncate the WAL so destroyed wrapped keys leave the -wal file.

        ``secure_delete`` already zeroes them in the main file. A reader holding an old
        snapshot can make this a partial checkpoint; the next one finishes the job.
        """
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as e:
            log.warning("WAL checkpoint after a tenant deletion failed: %s", e)

    def _require_writable(self) -> None:
        if self._closed:
            raise StorageError(f"event log {self.path} is closed")
        if self.readonly:
            raise StorageError(f"event log {self.path} was opened read-only")

    # -- reading -------------------------------------------------------------------

    def head(self) -> int:
        """Return the last seq, 0 when the log is empty."""
        self._require_open()
        try:
            self._sync()
        except sqlite3.Error as e:
            raise storage_error(e, "reading the head", self.path) from e
        return self._head

    def read(
        self,
        after_seq: int = 0,
        *,
        tenant: str | None = None,
        until_seq: int | None = None,
        limit: int | None = None,
    ) -> Iterator[LogRecord]:
        """Yield decrypted records with ``after_seq < seq <= until_seq`` in seq order.

        Consume the iterator in the thread that opened the log. Shredded records come
        back with ``body=None``.

        :raises CorruptRecord: a record whose key exists fails to decrypt (never skipped).
        """
        entries = self.entries(
            after_seq, tenant=tenant, until_seq=until_seq, limit=limit
        )
        return _records(entries)

    def entries(
        self,
        after_seq: int = 0,
        *,
        tenant: str | None = None,
        tenants: Collection[str] | None = None,
        until_seq: int | None = None,
        limit: int | None = None,
    ) -> Generator[Entry, None, None]:
        """:meth:`read`'s records as plain ``(seq, ts_ms, tenant, kind, body)`` tuples.

        Replay's path (issue 3): a tuple is built and unpacked for a fraction of what
        a record costs. The same rows, order, errors and shredded ``body=None``.
        ``tenants`` keeps the rows of those tenants only, read in one scan of the
        table in seq order (a parallel replay's share: skipping a row in SQLite
        costs far less than fetching it through the tenant index).
        """
        self._require_open()
        sql = "SELECT seq, ts_ms, tenant, kind, key_id, nonce, payload FROM events"
        if tenants is not None:
            sql += " NOT INDEXED WHERE seq > ?"
        else:
            sql += " WHERE seq > ?"
        params: list[object] = [after_seq]
        if tenant is not None:
            sql += " AND tenant = ?"
            params.append(tenant)
        if tenants is not None:
            sql += " AND tenant IN (SELECT value FROM json_each(?))"
            params.append(orjson.dumps(sorted(tenants)).decode())
        if until_seq is not None:
            sql += " AND seq <= ?"
            params.append(until_seq)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        try:
            self._sync()
            cursor = self._conn.execute(sql, params)
        except sqlite3.Error as e:
            raise storage_error(e, "reading", self.path) from e
        return self._decrypt(cursor)

    def _decrypt(self, cursor: sqlite3.Cursor) -> Generator[Entry, None, None]:
        head = self._aad_prefix + b"i"  # frame(seq) starts with its tag
        # (key_id, tenant, kind) -> (decrypt, pack, tail) of its rows; None: shredded
        plans: dict[tuple[int, str, str], _Plan | None] = {}
        plan: Any
        try:
            for seq, ts_ms, tenant, kind, key_id, nonce, payload in cursor:
                plan = plans.get((key_id, tenant, kind), _MISSING)
                if plan is _MISSING:
                    plan = plans[(key_id, tenant, kind)] = self._plan(
                        seq, head, key_id, tenant, kind
                    )
                if plan is None:
                    yield seq, ts_ms, tenant, kind, None
                    continue
                decrypt, pack, tail = plan
                try:
                    body = decrypt(nonce, payload, pack(head, seq, tail))
                except (InvalidTag, ValueError, TypeError) as e:
                    raise CorruptRecord(seq) from e
                yield seq, ts_ms, tenant, kind, body
        except sqlite3.Error as e:
            raise storage_error(e, "reading", self.path) from e
        finally:
            cursor.close()

    def _plan(
        self, seq: int, head: bytes, key_id: int, tenant: str, kind: str
    ) -> _Plan | None:
        """How rows of (key_id, tenant, kind) decrypt: None when the key was destroyed.

        :raises CorruptRecord: naming ``seq``, when the key does not exist at all.
        """
        try:
            cipher = self._keys.cipher(key_id)
        except KeyError:
            raise CorruptRecord(seq, f"its data key {key_id} does not exist") from None
        if cipher is None:
            return None
        pack, tail = _aad_packer(head, tenant, kind)  # record_aad(...), packed
        return cipher.aead.decrypt, pack, tail

    def tenant_events(self, until_seq: int | None = None) -> dict[str, int]:
        """Return tenant -> how many events it has up to ``until_seq`` (every name in
        the log, ``""`` for database-level events, shredded tenants included)."""
        self._require_open()
        sql = "SELECT tenant, count(*) FROM events"
        params: list[object] = []
        if until_seq is not None:
            sql += " WHERE seq <= ?"
            params.append(until_seq)
        try:
            self._sync()
            return dict(self._conn.execute(sql + " GROUP BY tenant", params))
        except sqlite3.Error as e:
            raise storage_error(e, "counting events", self.path) from e

    def tenants(self) -> dict[str, int]:
        """Return live tenants (those with a non-destroyed key), excluding '', -> created ts_ms."""
        self._require_open()
        try:
            return self._keys.live_tenants()
        except sqlite3.Error as e:
            raise storage_error(e, "listing tenants", self.path) from e

    # -- snapshots -----------------------------------------------------------------

    def save_snapshot(self, tenant: str, seq: int, body: bytes) -> bool:
        """Store ``body`` as ``tenant``'s state as of ``seq``, keeping the newest few.

        All steps at once, in this thread (offline tools, tests); a running server
        takes them one writer job at a time (:meth:`snapshot_key`, ``snapshots.seal``,
        :meth:`write_snapshot_part`, :meth:`finish_snapshot`). Returns False without
        storing when the tenant has no live key or ``seq`` predates its current key
        (the state belongs to a deleted incarnation: storing it under the new key
        would resurrect shredded data).

        :raises InvalidRecord: ``seq`` is beyond the head.
        """
        key = self.snapshot_key(tenant, seq)
        if key is None:
            return False
        sealed = seal(self.database, tenant, seq, key, body)
        for part in range(sealed.parts):
            self.write_snapshot_part(sealed, part)
        return self.finish_snapshot(sealed)

    def snapshot_key(self, tenant: str, seq: int) -> tuple[int, AesGcmCipher] | None:
        """The key to seal a snapshot of ``tenant`` as of ``seq`` with; None: not storable.

        :raises InvalidRecord: ``seq`` is beyond the head.
        """
        self._require_writable()
        try:
            self._sync()
            return self._snapshots.key_for(tenant, seq, head=self._head)
        except sqlite3.Error as e:
            raise storage_error(e, "saving a snapshot", f"tenant {tenant!r} seq {seq}") from e

    def write_snapshot_part(self, sealed: SealedSnapshot, part: int) -> None:
        """Store one piece of a sealed snapshot, in a transaction of its own."""
        self._require_writable()
        try:
            self._snapshots.write_part(sealed, part)
        except sqlite3.Error as e:
            raise storage_error(
                e, "saving a snapshot", f"tenant {sealed.tenant!r} seq {sealed.seq}"
            ) from e

    def finish_snapshot(self, sealed: SealedSnapshot) -> bool:
        """Make a sealed snapshot visible once all its parts are stored (see
        ``Snapshots.finish``); False when it was not stored."""
        self._require_writable()
        try:
            self._sync()
            return self._snapshots.finish(sealed)
        except sqlite3.Error as e:
            raise storage_error(
                e, "saving a snapshot", f"tenant {sealed.tenant!r} seq {sealed.seq}"
            ) from e

    def latest_snapshot(self, tenant: str) -> tuple[int, bytes] | None:
        """Return (seq, body) of the newest readable snapshot of ``tenant``, if any."""
        self._require_open()
        try:
            self._sync()
            return self._snapshots.latest(tenant)
        except sqlite3.Error as e:
            raise storage_error(e, "reading a snapshot", f"tenant {tenant!r}") from e

    # -- operations ----------------------------------------------------------------

    def verify(
        self, progress: Callable[[int, int], None] | None = None
    ) -> VerifyReport:
        """Check the whole chain, every GCM tag and every snapshot; report, don't raise.

        ``progress(done, total)`` is called every few thousand events.
        """
        self._require_open()
        try:
            self._sync()
            meta = self._meta()
            return verify_log(
                self._conn,
                self.database,
                self._keys,
                chain_start=self._chain_start(meta),
                recorded_head=unpack_head(meta["head"]) if "head" in meta else None,
                gaps=self._gaps(),
                progress=progress,
            )
        except sqlite3.Error as e:
            raise storage_error(e, "verifying", self.path) from e

    def rotate_master_key(self, new_master_key: MasterKey) -> int:
        """Re-wrap every live data key under ``new_master_key``; events are untouched.

        One transaction: a crash leaves either the old or the new wrapping. Returns the
        number of keys re-wrapped. Reopen the log with the new key afterwards.
        """
        self._require_writable()
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                count = self._keys.rewrap(new_master_key)
                conn.execute(
                    "UPDATE meta SET value = ? WHERE name = 'master_key_check'",
                    (new_master_key.check_value(self.database),),
                )
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as e:
            raise storage_error(e, "rotating the master key", self.path) from e
        self._keys.use_master(new_master_key)
        return count

    def compact(
        self,
        marker_kind: str,
        marker_body: Callable[[Compaction], bytes],
        ts_ms: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> Compaction | None:
        """Drop the rows of shredded tenants, re-chain, and append a marker event.

        The whole log is verified first, under the write lock: compaction re-computes
        hashes, so it must never launder tampering into a valid chain. One
        transaction; the file is vacuumed afterwards so no dropped byte stays on disk.
        The marker is a database-level (tenant "") event of ``marker_kind`` whose body
        ``marker_body`` builds from what was dropped. Returns None when nothing is
        shredded (nothing changes then).

        :raises ChainBroken: the log does not verify; nothing is changed.
        """
        self._require_writable()
        conn = self._conn
        try:
            self._sync()
            conn.execute("BEGIN IMMEDIATE")
            try:
                report = self.verify()
                if not report.ok:
                    first = min(report.problems, key=lambda p: p.seq)
                    raise ChainBroken(
                        first.seq,
                        f"{report.summary()}; compaction refused (it would re-chain "
                        "over the damage)",
                    )
                marker_seq = self._head + 1
                done = drop_shredded(
                    conn, self._chain_start(self._meta()), marker_seq, progress
                )
                if done is None:
                    conn.execute("ROLLBACK")
                    return None
                marker = LogRecord(marker_seq, ts_ms, "", marker_kind, marker_body(done))
                head, head_hash, _ = self._write([marker], marker_seq - 1, done.last_hash)
                conn.execute("COMMIT")
            except BaseException:
                self._keys.rollback()
                _rollback(conn)
                raise
            self._keys.commit()
            self._head, self._head_hash = head, head_hash
            self._keys.load(master_checked=True)
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as e:
            raise storage_error(e, "compacting", self.path) from e
        return done

    def backup(self, dest: Path, meta: dict[str, bytes] | None = None) -> None:
        """Write a consistent copy of the log (events, wrapped keys, snapshots) to ``dest``.

        Uses SQLite's online backup API in one step, so it may run while the writer
        appends and the copy is one committed state. ``meta`` rows are added to the
        copy's ``meta`` table (e.g. what the registry knows about the database). The
        master key is never part of it. The copy is a single file (rollback journal
        mode) created with mode 0600.
        """
        self._require_open()
        dest = Path(dest)
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        except OSError as e:
            raise StorageError(f"cannot create backup file {dest}: {e.strerror}") from e
        try:
            target = sqlite3.connect(str(dest), isolation_level=None)
            try:
                self._conn.backup(target)
                target.execute("PRAGMA journal_mode = DELETE").fetchone()
                for name, value in (meta or {}).items():
                    target.execute(
                        "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                        (name, value),
                    )
            finally:
                target.close()
        except sqlite3.Error as e:
            dest.unlink(missing_ok=True)
            raise storage_error(e, "backing up", dest) from e

    def meta_value(self, name: str) -> bytes | None:
        """Return one row of the ``meta`` table (e.g. a backup's ``backup_info``)."""
        self._require_open()
        try:
            return self._meta().get(name)
        except sqlite3.Error as e:
            raise storage_error(e, "reading meta", self.path) from e

    def close(self) -> None:
        """Close the connection; further calls raise StorageError."""
        if not self._closed:
            self._closed = True
            try:
                self._conn.close()
            except sqlite3.Error as e:
                raise storage_error(e, "closing", self.path) from e

    def _require_open(self) -> None:
        if self._closed:
            raise StorageError(f"event log {self.path} is closed")

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"EventLog({self.database!r}, {str(self.path)!r}, {mode})"


_MISSING = object()
_Plan = tuple[Callable[[bytes, bytes, bytes], bytes], Callable[..., bytes], bytes]


def _records(entries: Generator[Entry, None, None]) -> Iterator[LogRecord]:
    """The entries as records; closing this closes them (and their cursor)."""
    try:
        yield from starmap(build_record, entries)
    finally:
        entries.close()


def _aad_packer(head: bytes, tenant: str, kind: str) -> tuple[Callable[..., bytes], bytes]:
    """``record_aad`` for one (tenant, kind) as one struct pack: (pack, tail).

    ``pack(head, seq, tail)`` equals ``record_aad(database, seq, tenant, kind)`` when
    ``head`` is ``frame("event", database) + b"i"``: one C call per record instead of
    framing four parts in Python.
    """
    tail = frame(tenant, kind)
    return struct.Struct(f">{len(head)}sq{len(tail)}s").pack, tail


def _row_hash(row: tuple[object, ...]) -> bytes:
    seq, ts_ms, tenant, kind, key_id, nonce, payload, prev_hash, _ = row
    return event_hash(prev_hash, seq, ts_ms, tenant, kind, key_id, nonce, payload)  # type: ignore[arg-type]


def _validate(r: LogRecord) -> None:
    if not isinstance(r.body, bytes):
        raise InvalidRecord(r.seq, "body must be bytes")
    if not isinstance(r.tenant, str) or not isinstance(r.kind, str) or not r.kind:
        raise InvalidRecord(
            r.seq, "tenant must be a string and kind a non-empty string"
        )
    if not isinstance(r.ts_ms, int) or isinstance(r.ts_ms, bool):
        raise InvalidRecord(r.seq, "ts_ms must be an int")
    if r.kind == TENANT_DELETED and not r.tenant:
        raise InvalidRecord(r.seq, "tenant_deleted needs a tenant name")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            if not path.exists():
                raise StorageError(f"no event log at {path}")
            conn = sqlite3.connect(
                path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
            return conn
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"event log {path} cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")
        except BaseException:
            conn.close()
            raise
        return conn
    except sqlite3.Error as e:
        raise storage_error(e, "opening", path) from e
    except OSError as e:
        raise StorageError(
            f"cannot create the directory of event log {path}: {e.strerror}"
        ) from e
