"""The PostgreSQL recorder: one schema per Nocturnus database, on psycopg 3 and a pool.

``NOCTURNUS_STORE=postgresql://user@host:5432/dbname`` puts every Nocturnus database
of a server in a schema of its own (``nocturnus_<name>``) of that PostgreSQL database,
with the same tables as the SQLite log: PostgreSQL sees ciphertext, ids, kinds, times
and wrapped keys, never a key or a plaintext. The contract is the one in
:mod:`nocturnus.store.recorder`:

- the write lock is the schema's ``head`` row, taken ``FOR UPDATE`` by every appender
  before it reads the head, on any node: seqs are given out in commit order, gapless,
  and readers never wait (MVCC);
- every commit ``NOTIFY``s the schema's channel with the new head; a tailing reader
  ``LISTEN``s but re-reads the head at least every :data:`POLL_S`, so a lost
  notification (or an engine without them) only delays it;
- connections come from one pool per process (:class:`PostgresStore`); the writer
  thread holds one for a batch's transaction, readers one per page of rows;
- migrations are ``migrations/postgresql/``: a new schema is created at the current
  version; an existing one with pending migrations is refused until ``nocturnus
  migrate`` applies them (several nodes share it: none upgrades it under the others).

This module, :mod:`nocturnus.store.sqlite` and the backends of
:mod:`nocturnus.store.shared` are the only ones that import a driver;
``psycopg`` errors are translated here (STYLE rule 6).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from nocturnus.errors import StartupError
from nocturnus.store import migrate
from nocturnus.store.chain import pack_head, unpack_head
from nocturnus.store.errors import MigrationError, StorageError
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
from nocturnus.store.sqlite import SqliteRecorder, create_backup_file

if TYPE_CHECKING:
    from nocturnus.store.shared.postgresql import PostgresShared

log = logging.getLogger("nocturnus.store")

SCHEMA_PREFIX = "nocturnus_"
POLL_S = 0.25
PAGE_ROWS = 10_000
CONNECT_TIMEOUT_S = 5
_KEY_COLUMNS = "key_id, tenant, wrapped, created_seq, created_ts_ms, destroyed_seq"
_EVENT_COLUMNS = ", ".join(TABLES["events"])
_INSERT = (
    f"INSERT INTO {{e}} ({_EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def schema_name(database: str) -> str:
    """The schema of ``database``: ``nocturnus_<name>``, or for a name too long for an
    identifier (63 bytes), its start and a hash of the whole."""
    name = SCHEMA_PREFIX + database
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(database.encode()).hexdigest()[:22]
    return f"{SCHEMA_PREFIX}{database[:30]}_{digest}"


def describe_url(url: str) -> str:
    """``user@host:port/dbname`` of a connection string, without its password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unparsable PostgreSQL URL"
    host = parts.get("host") or "localhost"
    return (
        f"{parts.get('user') or os.environ.get('USER', '')}@{host}:"
        f"{parts.get('port') or 5432}/{parts.get('dbname') or ''}"
    )


def storage_error(e: psycopg.Error, doing: str, where: object = None) -> StorageError:
    """Translate a ``psycopg`` error into a StorageError naming what was being done."""
    place = f" ({where})" if where is not None else ""
    state = getattr(e, "sqlstate", None) or type(e).__name__
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, psycopg.OperationalError) and "connection" in reason:
        reason = f"the connection to PostgreSQL failed: {reason}"
    elif state == "53100":
        reason = "PostgreSQL's disk is full"
    return StorageError(f"event log failed while {doing}{place}: {reason} [{state}]")


def startup_error(url: str, e: Exception) -> StartupError:
    """One line saying why PostgreSQL at ``url`` cannot be used (never the password)."""
    where = describe_url(url)
    text = " ".join(str(e).split())
    if "password authentication failed" in text or (
        "role" in text and "does not exist" in text
    ):
        why = "it refused the credentials (check the user and password in NOCTURNUS_STORE)"
    elif "database" in text and "does not exist" in text:
        why = "the database does not exist (create it, or name another in NOCTURNUS_STORE)"
    elif "Connection refused" in text or "timeout" in text.lower() or isinstance(
        e, PoolTimeout
    ):
        why = f"it is unreachable ({text[:160]})"
    else:
        why = text[:200]
    return StartupError(f"cannot use the PostgreSQL store {where}: {why}")


class PostgresStore:
    """Every Nocturnus database of one server in one PostgreSQL database."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pools: dict[int, ConnectionPool[psycopg.Connection[Any]]] = {}
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"PostgreSQL {describe_url(self.url)}"

    def where_is(self, database: str) -> str:
        return f"schema {schema_name(database)} of {self.where}"

    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """This process's pool, opened on first use (a forked child opens its own).

        :raises StartupError: PostgreSQL is unreachable or refuses the credentials.
        """
        pid = os.getpid()
        pool = self._pools.get(pid)
        if pool is not None:
            return pool
        with self._lock:
            pool = self._pools.get(pid)
            if pool is not None:
                return pool
            try:  # one direct attempt first: its error says why, a pool's would not
                psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S).close()
            except psycopg.Error as e:
                raise startup_error(self.url, e) from e
            pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                # UTF-8 whatever the database's encoding: on a SQL_ASCII database
                # (initdb in the C locale) psycopg would otherwise return text as bytes.
                kwargs={
                    "autocommit": True,
                    "connect_timeout": CONNECT_TIMEOUT_S,
                    "client_encoding": "utf8",
                },
                open=False,
                name="nocturnus",
            )
            try:
                pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
            except PoolTimeout as e:
                raise startup_error(self.url, e) from e
            self._pools[pid] = pool
            return pool

    @contextmanager
    def connection(self, doing: str, where: object = None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (autocommit); psycopg errors leave as StorageError."""
        try:
            with self.pool().connection() as conn:
                yield conn
        except psycopg.Error as e:
            raise storage_error(e, doing, where) from e
        except PoolTimeout as e:
            raise StorageError(
                f"event log failed while {doing}: no PostgreSQL connection free within "
                f"the pool's timeout ({self.where})"
            ) from e

    def recorder(self, database: str, *, readonly: bool = False) -> PostgresRecorder:
        schema = schema_name(database)
        with self.connection("opening", self.where_is(database)) as conn:
            if not _schema_exists(conn, schema):
                if readonly:
                    raise StorageError(f"no event log for {database!r} in {self.where}")
                _create_schema(conn, schema)
            waiting = migrate.pending(_applied(conn, schema), _migrations())
        if waiting:
            raise MigrationError(
                f"database {database!r} ({self.where_is(database)}) needs migration "
                f"{waiting[0].label}: run `nocturnus migrate`"
            )
        return PostgresRecorder(self, database, readonly=readonly)

    def migrate(self, database: str) -> list[Migration]:
        """Apply ``database``'s pending migrations (``nocturnus migrate``); return them."""
        schema = schema_name(database)
        with self.connection("migrating", self.where_is(database)) as conn:
            if not _schema_exists(conn, schema):
                raise StorageError(f"no event log for {database!r} in {self.where}")
            return _apply_migrations(conn, schema)

    def migration_status(self, database: str) -> list[MigrationStatus]:
        with self.connection("listing migrations", self.where_is(database)) as conn:
            return migrate.status(_applied(conn, schema_name(database)), _migrations())

    def exists(self, database: str) -> bool:
        with self.connection("looking up", self.where_is(database)) as conn:
            return _schema_exists(conn, schema_name(database))

    def names(self) -> list[str]:
        names: list[str] = []
        with self.connection("listing databases", self.where) as conn:
            schemas = [
                row[0]
                for row in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
                    (SCHEMA_PREFIX,),
                )
            ]
            for schema in schemas:
                if conn.execute(
                    "SELECT to_regclass(%s)", (f'"{schema}".meta',)
                ).fetchone() in (None, (None,)):
                    # Not migrated yet: only a plain name can be read off its schema.
                    plain = schema.removeprefix(SCHEMA_PREFIX)
                    if schema_name(plain) == schema:
                        names.append(plain)
                    continue
                row = conn.execute(
                    sql.SQL("SELECT value FROM {}.meta WHERE name = 'database'").format(
                        sql.Identifier(schema)
                    )
                ).fetchone()
                if row is not None and schema_name(bytes(row[0]).decode()) == schema:
                    names.append(bytes(row[0]).decode())
        return sorted(names)

    def remove(self, database: str) -> None:
        with self.connection("removing", self.where_is(database)) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema_name(database))
                )
            )

    def restore(self, database: str, backup: Path) -> None:
        """Load a backup file into a fresh schema and swap it in, in one transaction."""
        schema = schema_name(database)
        staging = schema_name(f"{database}.restore")[:50] + "_" + os.urandom(4).hex()
        source = SqliteRecorder(Path(backup), database, readonly=True)
        try:
            with (
                self.connection("restoring", self.where_is(database)) as conn,
                conn.transaction(),
            ):
                _create_schema(conn, staging)
                for table, columns in TABLES.items():
                    target = sql.SQL("{}.{}").format(
                        sql.Identifier(staging), sql.Identifier(table)
                    )
                    conn.execute(sql.SQL("DELETE FROM {}").format(target))
                    _copy_in(conn, target, columns, source.dump(table))
                conn.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({}, 'key_id'),"
                        " greatest(1, (SELECT max(key_id) FROM {})))"
                    ).format(
                        sql.Literal(f'"{staging}".data_keys'),
                        sql.SQL("{}.data_keys").format(sql.Identifier(staging)),
                    )
                )
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(schema)
                    )
                )
                conn.execute(
                    sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                        sql.Identifier(staging), sql.Identifier(schema)
                    )
                )
        finally:
            source.close()

    def shared(self) -> PostgresShared:
        # imported here: that module builds on this one
        from nocturnus.store.shared.postgresql import PostgresShared

        return PostgresShared(self)

    def probe(self, database: str) -> None:
        """No probe cheaper than a query: the caller asks a recorder for the head."""

    def close(self) -> None:
        pool = self._pools.pop(os.getpid(), None)
        if pool is not None:
            pool.close()


class PostgresRecorder:
    """The rows of one database in its schema (see :class:`~nocturnus.store.recorder.
    Recorder`). Safe to use from one thread at a time, like every recorder."""

    def __init__(self, store: PostgresStore, database: str, *, readonly: bool) -> None:
        self.store = store
        self.database = database
        self.readonly = readonly
        # A commit is durable in PostgreSQL's own WAL, replayed whole or refused by the
        # server: nothing of it can be lost while the server starts (no head anchor).
        self.anchor_path: Path | None = None
        self.schema = schema_name(database)
        self._closed = False
        ident = sql.Identifier(self.schema)
        self._channel = sql.Identifier(self.schema)
        self._t = {
            table: sql.SQL("{}.{}").format(ident, sql.Identifier(table))
            for table in TABLES
        }

    @property
    def where(self) -> str:
        return self.store.where_is(self.database)

    def _q(self, text: str, **tables: str) -> sql.Composed:
        """``text`` with ``{events}``-style table names filled in, schema-qualified."""
        return sql.SQL(text).format(**{k: self._t[v] for k, v in tables.items()})

    @contextmanager
    def _conn(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        self._require_open()
        with self.store.connection(doing, self.where) as conn:
            yield conn

    # -- metadata and head -------------------------------------------------------------

    def meta(self) -> dict[str, bytes]:
        with self._conn("reading meta") as conn:
            rows = conn.execute(self._q("SELECT name, value FROM {m}", m="meta"))
            return {name: bytes(value) for name, value in rows}

    def init_meta(self, values: Mapping[str, bytes]) -> dict[str, bytes]:
        self._require_writable()
        with self._conn("writing meta") as conn, conn.transaction():
            for name, value in values.items():
                conn.execute(
                    self._q(
                        "INSERT INTO {m} (name, value) VALUES (%s, %s)"
                        " ON CONFLICT (name) DO NOTHING",
                        m="meta",
                    ),
                    (name, value),
                )
        return self.meta()

    def head(self) -> Tip:
        with self._conn("reading the head") as conn:
            return self._head(conn)

    def _head(self, conn: psycopg.Connection[Any]) -> Tip:
        row = conn.execute(
            self._q("SELECT value FROM {m} WHERE name = 'head'", m="meta")
        ).fetchone()
        if row is None:
            raise StorageError(f"event log {self.where} has no head row: it was damaged")
        return Tip(*unpack_head(bytes(row[0])))

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
        """Pages of :data:`PAGE_ROWS` rows, each its own short query, up to the head as
        of the call: seqs are commit-ordered, so the pages form one consistent prefix."""
        self._require_open()
        until = self.head().seq if until_seq is None else until_seq
        where = "seq > %s AND seq <= %s"
        extra: list[object] = []
        if tenant is not None:
            where += " AND tenant = %s"
            extra.append(tenant)
        if tenants is not None:
            where += " AND tenant = ANY(%s)"
            extra.append(list(tenants))
        query = self._q(
            "SELECT seq, ts_ms, tenant, kind, key_id, nonce, payload FROM {e}"
            f" WHERE {where} ORDER BY seq LIMIT %s",
            e="events",
        )
        return self._pages(query, after_seq, until, extra, limit, windowed=tenant is None)

    def _pages(
        self,
        query: sql.Composed,
        after: int,
        until: int,
        extra: list[object],
        limit: int | None,
        *,
        windowed: bool = False,
    ) -> Iterator[Any]:
        """The rows of ``query`` after ``after`` up to ``until``, a page at a time.

        ``windowed``: each page also asks for at most :data:`PAGE_ROWS` seqs, not only
        rows. Without it a page of the whole log (or of a replay share) is
        ``ORDER BY seq LIMIT`` over every row left, and a table without planner
        statistics (just restored or bulk-written, before autovacuum's ANALYZE) got a
        plan that sorted every row left for each page: 0.6-0.9 s a page, a 1 M-event
        replay 2.3 times slower on two processes. A window of seqs costs one short
        range whatever the statistics; a single tenant's rows come in order from the
        (tenant, seq) index and are paged by rows alone.
        """
        left = limit
        while (left is None or left > 0) and after < until:
            page = PAGE_ROWS if left is None else min(PAGE_ROWS, left)
            upto = min(until, after + PAGE_ROWS) if windowed else until
            with self._conn("reading") as conn:
                rows = conn.execute(query, (after, upto, *extra, page), binary=True).fetchall()
            yield from rows
            if left is not None:
                left -= len(rows)
            if len(rows) == page:
                after = rows[-1][0]
            elif upto < until:
                after = upto  # the window held fewer rows (gaps, other tenants)
            else:
                return

    def chain_rows(
        self, after_seq: int = 0, until_seq: int | None = None
    ) -> Iterator[ChainRow]:
        self._require_open()
        query = self._q(
            f"SELECT {_EVENT_COLUMNS} FROM {{e}} WHERE seq > %s AND seq <= %s"
            " ORDER BY seq LIMIT %s",
            e="events",
        )
        until = until_seq
        if until is None:  # every stored row, also any past the recorded head
            with self._conn("verifying") as conn:
                top = conn.execute(self._q("SELECT max(seq) FROM {e}", e="events")).fetchone()
            until = (top[0] if top else None) or 0
        return self._pages(query, after_seq, until, [], None, windowed=True)

    def chain_tail(self, count: int) -> tuple[dict[str, bytes], list[ChainRow]]:
        with self._conn("checking the tail") as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            meta = {
                name: bytes(value)
                for name, value in conn.execute(self._q("SELECT name, value FROM {m}", m="meta"))
            }
            rows = conn.execute(
                self._q(
                    f"SELECT {_EVENT_COLUMNS} FROM {{e}} ORDER BY seq DESC LIMIT %s",
                    e="events",
                ),
                (max(count, 0),),
                binary=True,
            ).fetchall()
        rows.reverse()
        return meta, rows

    def count_events(self) -> int:
        with self._conn("counting events") as conn:
            row = conn.execute(self._q("SELECT count(*) FROM {e}", e="events")).fetchone()
        return int(row[0]) if row else 0

    def tenant_event_counts(self, until_seq: int | None = None) -> dict[str, int]:
        with self._conn("counting events") as conn:
            if until_seq is None:
                rows = conn.execute(
                    self._q("SELECT tenant, count(*) FROM {e} GROUP BY tenant", e="events")
                )
            else:
                rows = conn.execute(
                    self._q(
                        "SELECT tenant, count(*) FROM {e} WHERE seq <= %s GROUP BY tenant",
                        e="events",
                    ),
                    (until_seq,),
                )
            return {tenant: int(n) for tenant, n in rows}

    def compacted(self) -> list[CompactedRange]:
        with self._conn("reading compactions") as conn:
            rows = conn.execute(
                self._q(
                    "SELECT first_seq, last_seq, compacted_seq, mac FROM {c}"
                    " ORDER BY first_seq",
                    c="compacted",
                ),
                binary=True,
            )
            return [
                (first, last, cseq, None if mac is None else bytes(mac))
                for first, last, cseq, mac in rows
            ]

    def wait_for(self, after_seq: int, timeout_s: float) -> int:
        """``LISTEN`` on the schema's channel, re-reading the head every
        :data:`POLL_S` whatever arrives: a notification only ends a wait early."""
        deadline = time.monotonic() + timeout_s
        with self._conn("waiting for appends") as conn:
            conn.execute(sql.SQL("LISTEN {}").format(self._channel))
            try:
                while True:
                    head = self._head(conn).seq
                    remaining = deadline - time.monotonic()
                    if head > after_seq or remaining <= 0:
                        return head
                    for _ in conn.notifies(timeout=min(POLL_S, remaining), stop_after=1):
                        pass
            finally:
                conn.execute(sql.SQL("UNLISTEN {}").format(self._channel))

    # -- keys --------------------------------------------------------------------------

    def key_rows(self) -> list[KeyRow]:
        with self._conn("reading data keys") as conn:
            return _key_rows(conn, self._t["data_keys"])

    def key_row(self, key_id: int) -> KeyRow | None:
        with self._conn("reading a data key") as conn:
            row = conn.execute(
                self._q(f"SELECT {_KEY_COLUMNS} FROM {{k}} WHERE key_id = %s", k="data_keys"),
                (key_id,),
            ).fetchone()
        return None if row is None else _key_row(row)

    # -- snapshots ---------------------------------------------------------------------

    def snapshots(self, tenant: str | None = None) -> Iterator[SnapshotRow]:
        select = "SELECT tenant, seq, key_id, nonce, payload, parts FROM {s}"
        with self._conn("reading snapshots") as conn:
            if tenant is None:
                rows = conn.execute(
                    self._q(select + ' ORDER BY tenant COLLATE "C", seq', s="snapshots"),
                    binary=True,
                ).fetchall()
            else:
                rows = conn.execute(
                    self._q(select + " WHERE tenant = %s ORDER BY seq DESC", s="snapshots"),
                    (tenant,),
                    binary=True,
                ).fetchall()
            found = []
            for name, seq, key_id, nonce, payload, parts in rows:
                found.append(
                    SnapshotRow(
                        name, seq, key_id, bytes(nonce),
                        self._ciphertext(conn, name, seq, bytes(payload), parts), parts,
                    )
                )
        yield from found

    def _ciphertext(
        self, conn: psycopg.Connection[Any], tenant: str, seq: int, payload: bytes, parts: int
    ) -> bytes | None:
        if not parts:
            return payload
        pieces = [
            bytes(data)
            for (data,) in conn.execute(
                self._q(
                    "SELECT data FROM {p} WHERE tenant = %s AND seq = %s ORDER BY part",
                    p="snapshot_parts",
                ),
                (tenant, seq),
                binary=True,
            )
        ]
        if len(pieces) != parts:
            return None
        pieces.append(payload)
        return b"".join(pieces)

    def write_snapshot_part(self, tenant: str, seq: int, part: int, data: bytes) -> None:
        self._require_writable()
        with self._conn("saving a snapshot") as conn:
            conn.execute(
                self._q(
                    "INSERT INTO {p} (tenant, seq, part, data) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (tenant, seq, part) DO UPDATE SET data = excluded.data",
                    p="snapshot_parts",
                ),
                (tenant, seq, part, data),
            )

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
        with self._conn("saving a snapshot") as conn, conn.transaction():
            # FOR SHARE: a tenant deletion (which destroys this key and drops the
            # snapshots) either commits first and is seen here, or waits for us.
            live = conn.execute(
                self._q(
                    "SELECT created_seq FROM {k} WHERE key_id = %s AND wrapped IS NOT NULL"
                    " FOR SHARE",
                    k="data_keys",
                ),
                (key_id,),
            ).fetchone()
            if live is None or live[0] > seq:
                conn.execute(
                    self._q("DELETE FROM {p} WHERE tenant = %s", p="snapshot_parts"),
                    (tenant,),
                )
                return False
            stored = conn.execute(
                self._q(
                    "SELECT count(*) FROM {p} WHERE tenant = %s AND seq = %s",
                    p="snapshot_parts",
                ),
                (tenant, seq),
            ).fetchone()
            if stored is None or stored[0] != parts:
                return False
            conn.execute(
                self._q(
                    "INSERT INTO {s} (tenant, seq, ts_ms, key_id, nonce, payload, parts)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (tenant, seq) DO UPDATE SET ts_ms = excluded.ts_ms,"
                    " key_id = excluded.key_id, nonce = excluded.nonce,"
                    " payload = excluded.payload, parts = excluded.parts",
                    s="snapshots",
                ),
                (tenant, seq, int(time.time() * 1000), key_id, nonce, last_piece, parts),
            )
            conn.execute(
                self._q(
                    "DELETE FROM {s} WHERE tenant = %s AND seq NOT IN"
                    " (SELECT seq FROM {s} WHERE tenant = %s ORDER BY seq DESC LIMIT %s)",
                    s="snapshots",
                ),
                (tenant, tenant, keep),
            )
            conn.execute(
                self._q(
                    "DELETE FROM {p} WHERE tenant = %s AND seq <= %s AND seq NOT IN"
                    " (SELECT seq FROM {s} WHERE tenant = %s)",
                    p="snapshot_parts",
                    s="snapshots",
                ),
                (tenant, seq, tenant),
            )
        return True

    # -- writing -----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """Two round trips for a plain batch: ``BEGIN`` and the head row's lock in one
        pipeline; the rows, the new head, the ``NOTIFY`` and ``COMMIT`` in another."""
        self._require_writable()
        with self._conn("appending") as conn:
            with conn.pipeline():
                conn.execute("BEGIN")
                head = conn.execute(
                    self._q("SELECT value FROM {m} WHERE name = 'head' FOR UPDATE", m="meta")
                )
            row = head.fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                raise StorageError(f"event log {self.where} has no head row: it was damaged")
            tx = PostgresTransaction(self, conn, Tip(*unpack_head(bytes(row[0]))))
            try:
                yield tx
                with conn.pipeline():
                    tx.flush()
                    if tx.head_moved:
                        conn.execute(
                            "SELECT pg_notify(%s, %s)", (self.schema, str(tx.head.seq))
                        )
                    conn.execute("COMMIT")
            except BaseException:
                if not conn.closed:
                    try:
                        conn.execute("ROLLBACK")
                    except psycopg.Error:
                        log.exception("rollback failed")
                raise
            if tx.shredded:
                self._vacuum(conn, ("data_keys", "snapshots", "snapshot_parts"))

    def _vacuum(self, conn: psycopg.Connection[Any], tables: Iterable[str]) -> None:
        """Remove dead row versions (a destroyed key's old wrapped bytes) now, not at
        autovacuum's leisure. WAL files and base backups keep them until they expire:
        ops/README.md says so."""
        for table in tables:
            try:
                conn.execute(sql.SQL("VACUUM {}").format(self._t[table]))
            except psycopg.Error as e:
                log.warning("VACUUM of %s after a tenant deletion failed: %s", table, e)

    def reclaim(self) -> None:
        self._require_writable()
        with self._conn("vacuuming") as conn:
            for table in TABLES:
                conn.execute(sql.SQL("VACUUM FULL {}").format(self._t[table]))

    def backup_to(self, dest: Path, meta: Mapping[str, bytes]) -> None:
        """Copy every table in one ``REPEATABLE READ`` snapshot into a new SQLite log."""
        self._require_open()
        target = create_backup_file(Path(dest), self.database)
        try:
            with self._conn("backing up") as conn, conn.transaction():
                conn.execute(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
                )
                rows: dict[str, list[Sequence[object]]] = {}
                for table, columns in TABLES.items():
                    rows[table] = [
                        row
                        for row in conn.execute(
                            sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                                sql.SQL(", ").join(map(sql.Identifier, columns)),
                                self._t[table],
                                sql.Identifier(columns[0]),
                            ),
                            binary=True,
                        )
                    ]
            meta_rows = {str(n): v for n, v in rows["meta"]}
            meta_rows.update(meta)
            rows["meta"] = list(meta_rows.items())
            target.load(rows)
        except BaseException:
            target.close()
            Path(dest).unlink(missing_ok=True)
            raise
        target.close()

    def close(self) -> None:
        self._closed = True

    def _require_open(self) -> None:
        if self._closed:
            raise StorageError(f"event log {self.where} is closed")

    def _require_writable(self) -> None:
        self._require_open()
        if self.readonly:
            raise StorageError(f"event log {self.where} was opened read-only")

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"PostgresRecorder({self.database!r}, {self.schema!r}, {mode})"


class PostgresTransaction:
    """The write side of :class:`PostgresRecorder`, holding the head row's lock."""

    def __init__(
        self, recorder: PostgresRecorder, conn: psycopg.Connection[Any], head: Tip
    ) -> None:
        self._r = recorder
        self._conn = conn
        self._head = head
        self.head_moved = False
        self.shredded = False
        # Rows and the head wait for the commit's pipeline (or the next read here).
        self._rows: list[ChainRow] = []
        self._head_value: bytes | None = None

    def flush(self) -> None:
        """Send the buffered rows and head (pipelined when the caller pipelines)."""
        if self._rows:
            with self._conn.cursor() as cur:
                cur.executemany(self._r._q(_INSERT, e="events"), self._rows)
            self._rows = []
        if self._head_value is not None:
            self.set_meta("head", self._head_value)
            self._head_value = None

    @property
    def head(self) -> Tip:
        return self._head

    def positions(self, streams: Collection[str]) -> dict[str, int]:
        self.flush()
        found = dict.fromkeys(streams, 0)
        rows = self._conn.execute(
            self._r._q(
                "SELECT tenant, max(seq) FROM {e} WHERE tenant = ANY(%s) GROUP BY tenant",
                e="events",
            ),
            (list(found),),
        )
        for tenant, seq in rows:
            found[tenant] = seq
        return found

    def key_rows(self) -> list[KeyRow]:
        self.flush()
        return _key_rows(self._conn, self._r._t["data_keys"])

    def create_key(
        self, tenant: str, seq: int, ts_ms: int, wrap: Callable[[int], bytes]
    ) -> int:
        row = self._conn.execute(
            self._r._q(
                "INSERT INTO {k} (tenant, wrapped, created_seq, created_ts_ms)"
                " VALUES (%s, '', %s, %s) RETURNING key_id",
                k="data_keys",
            ),
            (tenant, seq, ts_ms),
        ).fetchone()
        assert row is not None  # RETURNING always returns the inserted row
        key_id = int(row[0])
        self._conn.execute(
            self._r._q("UPDATE {k} SET wrapped = %s WHERE key_id = %s", k="data_keys"),
            (wrap(key_id), key_id),
        )
        return key_id

    def destroy_key(self, key_id: int, seq: int, ts_ms: int) -> None:
        self._conn.execute(
            self._r._q(
                "UPDATE {k} SET wrapped = NULL, destroyed_seq = %s, destroyed_ts_ms = %s"
                " WHERE key_id = %s",
                k="data_keys",
            ),
            (seq, ts_ms, key_id),
        )
        self.shredded = True

    def rewrap_key(self, key_id: int, wrapped: bytes) -> None:
        self._conn.execute(
            self._r._q(
                "UPDATE {k} SET wrapped = %s WHERE key_id = %s AND wrapped IS NOT NULL",
                k="data_keys",
            ),
            (wrapped, key_id),
        )

    def delete_keys(self, key_ids: Collection[int]) -> None:
        self._conn.execute(
            self._r._q("DELETE FROM {k} WHERE key_id = ANY(%s)", k="data_keys"),
            (list(key_ids),),
        )
        self.shredded = True

    def drop_snapshots(self, tenant: str) -> None:
        for table in ("snapshots", "snapshot_parts"):
            self._conn.execute(
                self._r._q("DELETE FROM {t} WHERE tenant = %s", t=table), (tenant,)
            )

    def insert(self, rows: Sequence[ChainRow]) -> None:
        self._rows.extend(rows)
        self.head_moved = True

    def set_head(self, tip: Tip) -> None:
        self._head_value = pack_head(tip.seq, tip.hash)
        self._head = tip
        self.head_moved = True

    def set_meta(self, name: str, value: bytes) -> None:
        self._conn.execute(
            self._r._q(
                "INSERT INTO {m} (name, value) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                m="meta",
            ),
            (name, value),
        )

    def chain_rows(self, after_seq: int, limit: int | None = None) -> Iterator[ChainRow]:
        self.flush()
        query = f"SELECT {_EVENT_COLUMNS} FROM {{e}} WHERE seq > %s ORDER BY seq"
        params: tuple[object, ...] = (after_seq,)
        if limit is not None:
            query += " LIMIT %s"
            params = (after_seq, limit)
        yield from self._conn.execute(self._r._q(query, e="events"), params, binary=True).fetchall()

    def delete_events(self, seqs: Collection[int]) -> None:
        self._conn.execute(
            self._r._q("DELETE FROM {e} WHERE seq = ANY(%s)", e="events"), (list(seqs),)
        )

    def rechain(self, links: Sequence[tuple[bytes, bytes, int]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                self._r._q(
                    "UPDATE {e} SET prev_hash = %s, hash = %s WHERE seq = %s", e="events"
                ),
                links,
            )

    def add_compacted(self, ranges: Sequence[CompactedRange]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                self._r._q(
                    "INSERT INTO {c} (first_seq, last_seq, compacted_seq, mac)"
                    " VALUES (%s, %s, %s, %s)",
                    c="compacted",
                ),
                ranges,
            )

    def set_range_macs(self, macs: Sequence[tuple[bytes, int]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                self._r._q("UPDATE {c} SET mac = %s WHERE first_seq = %s", c="compacted"),
                macs,
            )


# -- helpers --------------------------------------------------------------------------


def _migrations() -> list[Migration]:
    return migrate.discover(migrate.migrations_dir("postgresql"))


def _schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
    ).fetchone()
    return row is not None


def _applied(conn: psycopg.Connection[Any], schema: str) -> dict[int, migrate.Applied]:
    table = conn.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'schema_migrations'",
        (schema,),
    ).fetchone()
    if table is None:
        return {}
    rows = conn.execute(
        sql.SQL("SELECT version, name, sha256, applied_ts_ms FROM {}.schema_migrations").format(
            sql.Identifier(schema)
        )
    )
    return {v: migrate.Applied(n, h, t) for v, n, h, t in rows}


def _create_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create ``schema`` at the current migration (two nodes racing: one creates it)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
        if _schema_exists(conn, schema):
            return
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        _apply_migrations(conn, schema)


def _apply_migrations(conn: psycopg.Connection[Any], schema: str) -> list[Migration]:
    """Apply pending migrations to ``schema``, each in one transaction with its row."""
    ident = sql.Identifier(schema)
    done: list[migrate.Migration] = []
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    " sha256 TEXT NOT NULL, applied_ts_ms BIGINT NOT NULL)"
                ).format(ident)
            )
        for m in migrate.pending(_applied(conn, schema), _migrations()):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
                if m.version in _applied(conn, schema):
                    continue
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
                conn.execute(m.sql.encode())
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.schema_migrations"
                        " (version, name, sha256, applied_ts_ms) VALUES (%s, %s, %s, %s)"
                    ).format(ident),
                    (m.version, m.name, m.sha256, int(time.time() * 1000)),
                )
            done.append(m)
    except psycopg.Error as e:
        raise MigrationError(
            f"cannot apply migrations to schema {schema}: {storage_error(e, 'migrating').message}"
        ) from e
    return done


def _key_rows(conn: psycopg.Connection[Any], table: sql.Composable) -> list[KeyRow]:
    rows = conn.execute(
        sql.SQL(f"SELECT {_KEY_COLUMNS} FROM {{}} ORDER BY key_id").format(table),
        binary=True,
    )
    return [_key_row(row) for row in rows]


def _key_row(row: Sequence[Any]) -> KeyRow:
    key_id, tenant, wrapped, created_seq, created_ts, destroyed_seq = row
    return KeyRow(
        key_id, tenant, None if wrapped is None else bytes(wrapped), created_seq,
        created_ts, destroyed_seq,
    )


def _copy_in(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
) -> None:
    """``COPY ... FROM STDIN``: the fastest way in, one round trip for a whole batch."""
    with conn.cursor() as cur, cur.copy(
        sql.SQL("COPY {} ({}) FROM STDIN").format(
            table, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
    ) as copy:
        for row in rows:
            copy.write_row(row)
