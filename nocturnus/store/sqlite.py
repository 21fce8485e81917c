"""The embedded recorder: one SQLite file per database in a data dir.

WAL mode with ``synchronous=FULL`` (a commit is durable when it returns),
``secure_delete`` (deleted bytes are zeroed), and ``BEGIN IMMEDIATE`` as the write lock:
any number of processes may open the same file, their writers take turns and their
readers never block (the contract in :mod:`nocturnus.store.recorder`). This module,
:mod:`nocturnus.store.postgresql` and the backends of :mod:`nocturnus.store.shared` are
the only ones that import a driver; ``sqlite3`` errors are translated here (STYLE rule 6).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson

from nocturnus.store import migrate
from nocturnus.store.chain import GENESIS, pack_head, unpack_head
from nocturnus.store.errors import MigrationError, StorageError
from nocturnus.store.files import private_dir, private_file
from nocturnus.store.headfile import HeadProbe, HeadWriter, head_path
from nocturnus.store.migrate import Migration, MigrationStatus
from nocturnus.store.recorder import (
    TABLES,
    ChainRow,
    CompactedRange,
    EventRow,
    KeyRow,
    SnapshotRow,
    Tip,
)
from nocturnus.store.shared.sqlite import SqliteShared

log = logging.getLogger("nocturnus.store")

BUSY_TIMEOUT_MS = 10_000
SUFFIX = ".db"
POLL_S = 0.05
_EVENT_COLUMNS = "seq, ts_ms, tenant, kind, key_id, nonce, payload, prev_hash, hash"
_KEY_COLUMNS = "key_id, tenant, wrapped, created_seq, created_ts_ms, destroyed_seq"
_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version       INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,
    applied_ts_ms INTEGER NOT NULL
)
"""


def storage_error(e: sqlite3.Error, doing: str, where: object = None) -> StorageError:
    """Translate a ``sqlite3`` error into a StorageError naming what was being done.

    The caller raises the result ``from e`` so the driver traceback stays attached.
    """
    name = getattr(e, "sqlite_errorname", None) or type(e).__name__
    place = f" ({where})" if where is not None else ""
    if name in {"SQLITE_FULL"}:
        reason = "the disk is full"
    elif name.startswith("SQLITE_BUSY") or "locked" in str(e):
        reason = "the database file is locked by another writer"
    elif name.startswith("SQLITE_READONLY"):
        reason = "the database file is read-only"
    elif name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
        reason = "the database file is damaged or not a Nocturnus log"
    else:
        reason = str(e)
    return StorageError(f"event log failed while {doing}{place}: {reason} [{name}]")


# -- migrations -----------------------------------------------------------------------


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (triggers' ``BEGIN ... END`` included)."""
    statements: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if _has_code(pending):
                statements.append(pending.strip())
            pending = ""
    if _has_code(pending):
        raise MigrationError(
            f"migration ends with an incomplete statement: {pending.strip()[:60]!r}"
        )
    return statements


def _has_code(sql: str) -> bool:
    return any(
        line.strip() and not line.strip().startswith("--") for line in sql.splitlines()
    )


def applied(conn: sqlite3.Connection) -> dict[int, migrate.Applied]:
    """Version -> row of the applied migrations of the file behind ``conn``."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return {}
    rows = conn.execute(
        "SELECT version, name, sha256, applied_ts_ms FROM schema_migrations"
    )
    return {v: migrate.Applied(n, h, t) for v, n, h, t in rows}


def apply_migrations(
    conn: sqlite3.Connection, migrations: list[migrate.Migration] | None = None
) -> list[Migration]:
    """Apply the pending migrations, each in one transaction with its row; return them.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Safe against a
    second process migrating the same file at the same time: the pending list is
    re-read under the write lock.
    """
    if migrations is None:
        migrations = migrate.discover(migrate.migrations_dir("sqlite"))
    applied_now: list[migrate.Migration] = []
    try:
        conn.execute(_MIGRATIONS_TABLE)
        if not migrate.pending(applied(conn), migrations):
            return applied_now
        for m in migrations:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if m.version in applied(conn):
                    conn.execute("ROLLBACK")
                    continue
                for statement in split_statements(m.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, sha256, applied_ts_ms)"
                    " VALUES (?, ?, ?, ?)",
                    (m.version, m.name, m.sha256, int(time.time() * 1000)),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            applied_now.append(m)
    except sqlite3.Error as e:
        raise MigrationError(
            f"cannot apply migrations: {storage_error(e, 'migrating').message}"
        ) from e
    return applied_now


# -- the recorder ---------------------------------------------------------------------


class SqliteRecorder:
    """The rows of one database in one SQLite file (see :class:`~nocturnus.store.
    recorder.Recorder`). Not thread-safe: one instance per thread."""

    def __init__(
        self,
        path: Path,
        database: str,
        *,
        readonly: bool = False,
        head_file: bool = True,
        anchored: bool = False,
    ) -> None:
        """Open (creating it unless ``readonly``) and migrate the file at ``path``.

        A writable log keeps its head file (:mod:`nocturnus.store.headfile`) unless
        ``head_file`` is False (a backup file: no server reads it). ``anchored``: the
        log keeps a head anchor beside it (a store's logs; a loose file such as a
        backup has none).

        :raises StorageError: SQLite cannot open it, or (``readonly``) it is missing.
        :raises MigrationError: a migration fails, or (``readonly``) one is pending.
        """
        if not isinstance(database, str) or not database:
            raise ValueError("database must be a non-empty string")
        self.path = Path(path)
        self.database = database
        self.readonly = readonly
        self.anchor_path = anchor_path(self.path) if anchored else None
        self._conn = _connect(self.path, readonly=readonly)
        self._closed = False
        self._data_version = -1
        self._head = Tip(0, GENESIS)
        self._head_file = HeadWriter(self.path) if head_file and not readonly else None
        # The head after this recorder's own last commit, and the newest seq it knows
        # another writer wrote (what the head file tells this process's readers).
        self._own_head = 0
        self._foreign = 0
        try:
            self._migrate()
            self._record_head()
        except BaseException:
            self._conn.close()
            if self._head_file is not None:
                self._head_file.close()
            raise

    def _migrate(self) -> None:
        conn = self._conn
        if not self.readonly:
            apply_migrations(conn)
            return
        try:
            waiting = migrate.pending(
                applied(conn), migrate.discover(migrate.migrations_dir("sqlite"))
            )
        except sqlite3.Error as e:
            raise storage_error(e, "opening", self.path) from e
        if waiting:
            raise MigrationError(
                f"event log {self.path} needs migration {waiting[0].label}; "
                "open it read-write first"
            )

    def _record_head(self) -> None:
        """Bring the head file up to the log (a file from before it existed, or one a
        crash left ahead of the log): under the write lock, as every later write."""
        if self._head_file is None:
            return
        try:
            with self._write():
                seq = _read_head(self._conn).seq
                self._own_head = self._foreign = seq
                _write_head_file(self._head_file, seq, seq)
        except sqlite3.Error as e:
            raise storage_error(e, "recording the head", self.path) from e

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def head_writer(self) -> int | None:
        """The id this recorder writes into the head file with (None: it writes none)."""
        return None if self._head_file is None else self._head_file.writer

    # -- metadata and head -------------------------------------------------------------

    def meta(self) -> dict[str, bytes]:
        self._require_open()
        try:
            return self._meta()
        except sqlite3.Error as e:
            raise storage_error(e, "reading meta", self.path) from e

    def _meta(self) -> dict[str, bytes]:
        return {
            name: bytes(value)
            for name, value in self._conn.execute("SELECT name, value FROM meta")
        }

    def init_meta(self, values: Mapping[str, bytes]) -> dict[str, bytes]:
        self._require_writable()
        try:
            with self._write():
                self._conn.executemany(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                    list(values.items()),
                )
            return self._meta()
        except sqlite3.Error as e:
            raise storage_error(e, "writing meta", self.path) from e

    def head(self) -> Tip:
        self._require_open()
        try:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._data_version = version
                self._head = _read_head(self._conn)
        except sqlite3.Error as e:
            raise storage_error(e, "reading the head", self.path) from e
        return self._head

    # -- reading events ----------------------------------------------------------------

    def rows(
        self,
        after_seq: int = 0,
        *,
        tenant: str | None = None,
        tenants: Collection[str] | None = None,
        until_seq: int | None = None,
        limit: int | None = None,
    ) -> Iterator[EventRow]:
        self._require_open()
        sql = "SELECT seq, ts_ms, tenant, kind, key_id, nonce, payload FROM events"
        # A share of a parallel replay (``tenants``) reads in one scan of the table in
        # seq order: skipping a row in SQLite costs far less than fetching it through
        # the tenant index (issue 3).
        sql += " NOT INDEXED WHERE seq > ?" if tenants is not None else " WHERE seq > ?"
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
            cursor = self._conn.execute(sql, params)
        except sqlite3.Error as e:
            raise storage_error(e, "reading", self.path) from e
        return self._iterate(cursor, "reading")

    def _iterate(self, cursor: sqlite3.Cursor, doing: str) -> Iterator[EventRow]:
        try:
            yield from cursor
        except sqlite3.Error as e:
            raise storage_error(e, doing, self.path) from e
        finally:
            cursor.close()

    def chain_rows(
        self, after_seq: int = 0, until_seq: int | None = None
    ) -> Iterator[ChainRow]:
        self._require_open()
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ?"
        params: list[object] = [after_seq]
        if until_seq is not None:
            sql += " AND seq <= ?"
            params.append(until_seq)
        try:
            cursor = self._conn.execute(sql + " ORDER BY seq", params)
        except sqlite3.Error as e:
            raise storage_error(e, "verifying", self.path) from e
        return self._iterate(cursor, "verifying")  # type: ignore[return-value]  # 9 columns

    def chain_tail(self, count: int) -> tuple[dict[str, bytes], list[ChainRow]]:
        self._require_open()
        conn = self._conn
        # One read snapshot for the meta and the rows (inside a write transaction, e.g.
        # compaction's verify, that transaction is the snapshot already).
        own = not conn.in_transaction
        try:
            if own:
                conn.execute("BEGIN")
            try:
                meta = self._meta()
                rows = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?",
                    (max(count, 0),),
                ).fetchall()
            finally:
                if own:
                    conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise storage_error(e, "checking the tail", self.path) from e
        rows.reverse()
        return meta, rows

    def count_events(self) -> int:
        self._require_open()
        try:
            return int(self._conn.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.Error as e:
            raise storage_error(e, "counting events", self.path) from e

    def tenant_event_counts(self, until_seq: int | None = None) -> dict[str, int]:
        self._require_open()
        sql = "SELECT tenant, count(*) FROM events"
        params: list[object] = []
        if until_seq is not None:
            sql += " WHERE seq <= ?"
            params.append(until_seq)
        try:
            return dict(self._conn.execute(sql + " GROUP BY tenant", params))
        except sqlite3.Error as e:
            raise storage_error(e, "counting events", self.path) from e

    def compacted(self) -> list[CompactedRange]:
        self._require_open()
        try:
            return [
                (first, last, cseq, None if mac is None else bytes(mac))
                for first, last, cseq, mac in self._conn.execute(
                    "SELECT first_seq, last_seq, compacted_seq, mac FROM compacted"
                    " ORDER BY first_seq"
                )
            ]
        except sqlite3.Error as e:
            raise storage_error(e, "reading compactions", self.path) from e

    def wait_for(self, after_seq: int, timeout_s: float) -> int:
        """Poll the head (SQLite has no cross-process wake-up) every few ms."""
        deadline = time.monotonic() + timeout_s
        while True:
            head = self.head().seq
            remaining = deadline - time.monotonic()
            if head > after_seq or remaining <= 0:
                return head
            time.sleep(min(POLL_S, remaining))

    # -- keys --------------------------------------------------------------------------

    def key_rows(self) -> list[KeyRow]:
        self._require_open()
        try:
            return _key_rows(self._conn)
        except sqlite3.Error as e:
            raise storage_error(e, "reading data keys", self.path) from e

    def key_row(self, key_id: int) -> KeyRow | None:
        self._require_open()
        try:
            row = self._conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM data_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
        except sqlite3.Error as e:
            raise storage_error(e, "reading a data key", self.path) from e
        return None if row is None else KeyRow(*row)

    # -- snapshots ---------------------------------------------------------------------

    def snapshots(self, tenant: str | None = None) -> Iterator[SnapshotRow]:
        self._require_open()
        sql = "SELECT tenant, seq, key_id, nonce, payload, parts FROM snapshots"
        try:
            if tenant is None:
                rows = self._conn.execute(sql + " ORDER BY tenant, seq").fetchall()
            else:
                rows = self._conn.execute(
                    sql + " WHERE tenant = ? ORDER BY seq DESC", (tenant,)
                ).fetchall()
            for name, seq, key_id, nonce, payload, parts in rows:
                yield SnapshotRow(
                    name, seq, key_id, nonce, self._ciphertext(name, seq, payload, parts),
                    parts,
                )
        except sqlite3.Error as e:
            raise storage_error(e, "reading snapshots", self.path) from e

    def _ciphertext(
        self, tenant: str, seq: int, payload: bytes, parts: int
    ) -> bytes | None:
        if not parts:
            return bytes(payload)
        pieces = [
            data
            for (data,) in self._conn.execute(
                "SELECT data FROM snapshot_parts WHERE tenant = ? AND seq = ?"
                " ORDER BY part",
                (tenant, seq),
            )
        ]
        if len(pieces) != parts:
            return None
        pieces.append(payload)
        return b"".join(pieces)

    def write_snapshot_part(self, tenant: str, seq: int, part: int, data: bytes) -> None:
        self._require_writable()
        try:
            with self._write():
                self._conn.execute(
                    "INSERT OR REPLACE INTO snapshot_parts (tenant, seq, part, data)"
                    " VALUES (?, ?, ?, ?)",
                    (tenant, seq, part, data),
                )
        except sqlite3.Error as e:
            raise storage_error(
                e, "saving a snapshot", f"tenant {tenant!r} seq {seq}"
            ) from e

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
        self._require_writable()
        conn = self._conn
        try:
            with self._write():
                live = conn.execute(
                    "SELECT created_seq FROM data_keys"
                    " WHERE key_id = ? AND wrapped IS NOT NULL",
                    (key_id,),
                ).fetchone()
                if live is None or live[0] > seq:
                    conn.execute("DELETE FROM snapshot_parts WHERE tenant = ?", (tenant,))
                    return False
                stored = conn.execute(
                    "SELECT count(*) FROM snapshot_parts WHERE tenant = ? AND seq = ?",
                    (tenant, seq),
                ).fetchone()[0]
                if stored != parts:
                    return False
                conn.execute(
                    "INSERT OR REPLACE INTO snapshots"
                    " (tenant, seq, ts_ms, key_id, nonce, payload, parts)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (tenant, seq, int(time.time() * 1000), key_id, nonce, last_piece,
                     parts),
                )
                conn.execute(
                    "DELETE FROM snapshots WHERE tenant = ? AND seq NOT IN"
                    " (SELECT seq FROM snapshots WHERE tenant = ?"
                    " ORDER BY seq DESC LIMIT ?)",
                    (tenant, tenant, keep),
                )
                conn.execute(
                    "DELETE FROM snapshot_parts WHERE tenant = ? AND seq <= ? AND seq"
                    " NOT IN (SELECT seq FROM snapshots WHERE tenant = ?)",
                    (tenant, seq, tenant),
                )
            return True
        except sqlite3.Error as e:
            raise storage_error(
                e, "saving a snapshot", f"tenant {tenant!r} seq {seq}"
            ) from e

    # -- writing -----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        self._require_writable()
        with self._turn():
            yield from self._transaction()

    def _transaction(self) -> Iterator[SqliteTransaction]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise storage_error(e, "taking the write lock", self.path) from e
        try:
            found = _read_head(conn)
            if found.seq != self._own_head:  # another writer appended since our last
                self._foreign = found.seq
            tx = SqliteTransaction(conn, found, self._head_file, self._foreign)
            yield tx
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            _rollback(conn)
            raise storage_error(e, "appending", self.path) from e
        except BaseException:
            _rollback(conn)
            raise
        # Our own commits do not move ``data_version``: remember the head they wrote.
        self._head = tx.head
        self._own_head = tx.head.seq
        if tx.shredded:
            self._purge_wal()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """A short transaction of this module's own (snapshots, meta)."""
        conn = self._conn
        with self._turn():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Wait for the writers' turn before SQLite's lock (see
        :mod:`nocturnus.store.headfile`); a log without a head file takes SQLite's
        lock alone."""
        if self._head_file is None:
            yield
            return
        try:
            turn = self._head_file.turn()
            turn.__enter__()
        except OSError as e:
            raise StorageError(
                f"cannot take the write turn on {self._head_file.path}: {e.strerror}"
            ) from e
        try:
            yield
        finally:
            turn.__exit__(None, None, None)

    def _purge_wal(self) -> None:
        """Checkpoint and truncate the WAL so destroyed wrapped keys leave the -wal file.

        ``secure_delete`` already zeroes them in the main file. A reader holding an old
        snapshot can make this a partial checkpoint; the next one finishes the job.
        """
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as e:
            log.warning("WAL checkpoint after a tenant deletion failed: %s", e)

    def reclaim(self) -> None:
        self._require_writable()
        try:
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as e:
            raise storage_error(e, "vacuuming", self.path) from e

    def backup_to(self, dest: Path, meta: Mapping[str, bytes]) -> None:
        """SQLite's online backup API in one step: one committed state, even while
        another connection appends. The copy uses a rollback journal (one file)."""
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
                target.executemany(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                    list(meta.items()),
                )
            finally:
                target.close()
        except sqlite3.Error as e:
            dest.unlink(missing_ok=True)
            raise storage_error(e, "backing up", dest) from e

    def dump(self, table: str) -> Iterator[tuple[object, ...]]:
        """Every row of one of :data:`TABLES` (a backup's copy), in key order."""
        self._require_open()
        columns = TABLES[table]
        try:
            yield from self._conn.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {columns[0]}"
            )
        except sqlite3.Error as e:
            raise storage_error(e, "reading a backup", self.path) from e

    def load(self, rows: Mapping[str, Iterable[Sequence[object]]]) -> None:
        """Replace this (new) file's rows with ``rows`` per table, in one transaction."""
        self._require_writable()
        try:
            with self._write():
                for table, table_rows in rows.items():
                    columns = TABLES[table]
                    self._conn.execute(f"DELETE FROM {table}")
                    self._conn.executemany(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                        f"({', '.join('?' * len(columns))})",
                        table_rows,
                    )
        except sqlite3.Error as e:
            raise storage_error(e, "writing a backup", self.path) from e

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._head_file is not None:
                self._head_file.close()
            try:
                self._conn.close()
            except sqlite3.Error as e:
                raise storage_error(e, "closing", self.path) from e

    def _require_open(self) -> None:
        if self._closed:
            raise StorageError(f"event log {self.path} is closed")

    def _require_writable(self) -> None:
        self._require_open()
        if self.readonly:
            raise StorageError(f"event log {self.path} was opened read-only")

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"SqliteRecorder({self.database!r}, {str(self.path)!r}, {mode})"


class SqliteTransaction:
    """The write side of :class:`SqliteRecorder` inside ``BEGIN IMMEDIATE``."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        head: Tip,
        head_file: HeadWriter | None,
        foreign: int,
    ) -> None:
        self._conn = conn
        self._head = head
        self._head_file = head_file
        self._foreign = foreign
        self.shredded = False

    @property
    def head(self) -> Tip:
        return self._head

    def positions(self, streams: Collection[str]) -> dict[str, int]:
        found = dict.fromkeys(streams, 0)
        for stream in found:
            row = self._conn.execute(
                "SELECT max(seq) FROM events WHERE tenant = ?", (stream,)
            ).fetchone()
            found[stream] = row[0] or 0
        return found

    def key_rows(self) -> list[KeyRow]:
        return _key_rows(self._conn)

    def create_key(
        self, tenant: str, seq: int, ts_ms: int, wrap: Callable[[int], bytes]
    ) -> int:
        cur = self._conn.execute(
            "INSERT INTO data_keys (tenant, wrapped, created_seq, created_ts_ms)"
            " VALUES (?, ?, ?, ?)",
            (tenant, b"", seq, ts_ms),
        )
        key_id = cur.lastrowid
        assert key_id is not None  # an INSERT into a rowid table always sets it
        self._conn.execute(
            "UPDATE data_keys SET wrapped = ? WHERE key_id = ?", (wrap(key_id), key_id)
        )
        return key_id

    def destroy_key(self, key_id: int, seq: int, ts_ms: int) -> None:
        self._conn.execute(
            "UPDATE data_keys SET wrapped = NULL, destroyed_seq = ?, destroyed_ts_ms = ?"
            " WHERE key_id = ?",
            (seq, ts_ms, key_id),
        )
        self.shredded = True

    def rewrap_key(self, key_id: int, wrapped: bytes) -> None:
        self._conn.execute(
            "UPDATE data_keys SET wrapped = ? WHERE key_id = ? AND wrapped IS NOT NULL",
            (wrapped, key_id),
        )

    def delete_keys(self, key_ids: Collection[int]) -> None:
        self._conn.executemany(
            "DELETE FROM data_keys WHERE key_id = ?", [(k,) for k in key_ids]
        )

    def drop_snapshots(self, tenant: str) -> None:
        self._conn.execute("DELETE FROM snapshots WHERE tenant = ?", (tenant,))
        self._conn.execute("DELETE FROM snapshot_parts WHERE tenant = ?", (tenant,))

    def insert(self, rows: Sequence[ChainRow]) -> None:
        # Blobs bound as bytearray: sqlite3 binds that type directly, while each bytes
        # value first goes through its adaptation protocol (a formatted, swallowed
        # AttributeError each): the same BLOB, a fraction of the cost.
        self._conn.executemany(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (seq, ts, tenant, kind, key_id, bytearray(nonce), bytearray(payload),
                 bytearray(prev), bytearray(h))
                for seq, ts, tenant, kind, key_id, nonce, payload, prev, h in rows
            ],
        )

    def set_head(self, tip: Tip) -> None:
        self.set_meta("head", pack_head(tip.seq, tip.hash))
        if self._head_file is not None:  # under the lock, before the commit
            _write_head_file(self._head_file, tip.seq, self._foreign)
        self._head = tip

    def set_meta(self, name: str, value: bytes) -> None:
        self._conn.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def chain_rows(self, after_seq: int, limit: int | None = None) -> Iterator[ChainRow]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq"
        if limit is None:
            yield from self._conn.execute(sql, (after_seq,))
        else:
            yield from self._conn.execute(sql + " LIMIT ?", (after_seq, limit)).fetchall()

    def delete_events(self, seqs: Collection[int]) -> None:
        self._conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])

    def rechain(self, links: Sequence[tuple[bytes, bytes, int]]) -> None:
        self._conn.executemany(
            "UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", links
        )

    def add_compacted(self, ranges: Sequence[CompactedRange]) -> None:
        self._conn.executemany(
            "INSERT INTO compacted (first_seq, last_seq, compacted_seq, mac)"
            " VALUES (?, ?, ?, ?)",
            ranges,
        )

    def set_range_macs(self, macs: Sequence[tuple[bytes, int]]) -> None:
        self._conn.executemany(
            "UPDATE compacted SET mac = ? WHERE first_seq = ?", macs
        )


def _read_head(conn: sqlite3.Connection) -> Tip:
    row = conn.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()
    if row is None:
        return Tip(0, GENESIS)
    return Tip(*unpack_head(bytes(row[0])))


def _write_head_file(head_file: HeadWriter, seq: int, foreign: int) -> None:
    try:
        head_file.write(seq, foreign)
    except OSError as e:
        raise StorageError(
            f"cannot write the head file {head_file.path}: {e.strerror}"
        ) from e


def _key_rows(conn: sqlite3.Connection) -> list[KeyRow]:
    return [
        KeyRow(*row)
        for row in conn.execute(f"SELECT {_KEY_COLUMNS} FROM data_keys ORDER BY key_id")
    ]


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
        private_dir(path.parent)
        if not path.exists():
            private_file(path)
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


def create_backup_file(dest: Path, database: str) -> SqliteRecorder:
    """A new, empty SQLite log at ``dest`` (mode 0600) for a backup to fill.

    :raises StorageError: ``dest`` exists or cannot be created.
    """
    dest = Path(dest)
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except OSError as e:
        raise StorageError(f"cannot create backup file {dest}: {e.strerror}") from e
    try:
        recorder = SqliteRecorder(dest, database, head_file=False)
        recorder._conn.execute("PRAGMA journal_mode = DELETE").fetchone()
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return recorder


def anchor_path(path: Path) -> Path:
    """The head anchor of the log at ``path`` (:mod:`nocturnus.store.anchor`)."""
    return Path(f"{path}.anchor")


def read_database_name(path: Path) -> str | None:
    """The database name a log file was created for, read without any key.

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


# -- the store ------------------------------------------------------------------------


class SqliteStore:
    """A data dir holding one ``<database>.db`` file per database."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._probes: dict[str, HeadProbe] = {}
        # the head-file writer ids of the recorders this store opened, per database
        self._writers: dict[str, set[int]] = {}

    @property
    def where(self) -> str:
        return f"data dir {self.data_dir}"

    def path(self, database: str) -> Path:
        return self.data_dir / f"{database}{SUFFIX}"

    def where_is(self, database: str) -> str:
        return str(self.path(database))

    def recorder(self, database: str, *, readonly: bool = False) -> SqliteRecorder:
        recorder = SqliteRecorder(
            self.path(database), database, readonly=readonly, anchored=True
        )
        if recorder.head_writer is not None:
            self._writers.setdefault(database, set()).add(recorder.head_writer)
        return recorder

    def shared(self) -> SqliteShared:
        return SqliteShared(self.data_dir)

    def probe(self, database: str) -> int | None:
        """From the head file, one pread (fit for the event loop): its seq, or when this
        store's own recorder wrote it, the newest seq that recorder knows another
        writer wrote (every row after it is this process's own)."""
        probe = self._probes.get(database)
        if probe is None:
            probe = self._probes[database] = HeadProbe(self.path(database))
        recorded = probe.read()
        if recorded is None:
            return None
        seq, foreign, writer = recorded
        return foreign if writer in self._writers.get(database, ()) else seq

    def _forget_probe(self, database: str) -> None:
        probe = self._probes.pop(database, None)
        if probe is not None:
            probe.close()

    def migrate(self, database: str) -> list[Migration]:
        conn = _connect(self.path(database), readonly=False)
        try:
            return apply_migrations(conn)
        finally:
            conn.close()

    def migration_status(self, database: str) -> list[MigrationStatus]:
        conn = _connect(self.path(database), readonly=True)
        try:
            return migrate.status(
                applied(conn), migrate.discover(migrate.migrations_dir("sqlite"))
            )
        except sqlite3.Error as e:
            raise storage_error(e, "listing migrations", self.path(database)) from e
        finally:
            conn.close()

    def exists(self, database: str) -> bool:
        return self.path(database).is_file()

    def names(self) -> list[str]:
        if not self.data_dir.is_dir():
            return []
        return sorted(
            p.name[: -len(SUFFIX)]
            for p in self.data_dir.glob(f"*{SUFFIX}")
            if p.is_file()
        )

    def remove(self, database: str) -> None:
        self._forget_probe(database)
        path = self.path(database)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        anchor_path(path).unlink(missing_ok=True)
        head_path(path).unlink(missing_ok=True)

    def restore(self, database: str, backup: Path) -> None:
        """Copy the backup beside the target, then swap it in with one rename."""
        dest = self.path(database)
        private_dir(self.data_dir)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.restore")
        tmp.unlink(missing_ok=True)
        source = SqliteRecorder(backup, database, readonly=True)
        try:
            source.backup_to(tmp, {})
        finally:
            source.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{dest}{suffix}").unlink(missing_ok=True)
        # The restored log is a history of its own: its first open anchors its head.
        anchor_path(dest).unlink(missing_ok=True)
        os.replace(tmp, dest)
        self._forget_probe(database)
        self.recorder(database).close()  # back to WAL mode, migrated, head file rewritten

    def close(self) -> None:
        """Close the head files' probes (nothing else is shared between the files)."""
        for database in list(self._probes):
            self._forget_probe(database)
