"""The SQLite recorder's own guarantees: file settings, migrations, no plaintext or
destroyed key left in any file, damage only SQL on the file can do."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import ChainBroken, CorruptRecord, StorageError
from nocturnus.store.record import LogRecord
from nocturnus.store.sealer import Append, Sealer
from nocturnus.store.sqlite import SqliteRecorder, SqliteStore
from nocturnus.store.verify import verify_log
from tests.store.conftest import (
    DATABASE,
    TS0,
    SqliteBackend,
    delete,
    flip_payload,
    put,
    rechain,
)


@pytest.fixture
def sqlite(tmp_path: Path) -> SqliteBackend:
    return SqliteBackend(tmp_path / "data")


@pytest.fixture
def log(sqlite: SqliteBackend, master_key: MasterKey) -> Sealer:
    opened = Sealer.open(sqlite.store.recorder(DATABASE), master_key)
    yield opened
    opened.close()


def reopen(sqlite: SqliteBackend, key: MasterKey, **kw: object) -> Sealer:
    return Sealer.open(sqlite.store.recorder(DATABASE), key, **kw)  # type: ignore[arg-type]


def test_file_settings(log: Sealer) -> None:
    conn = log.recorder._conn  # type: ignore[attr-defined]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    assert columns == [
        "seq", "ts_ms", "tenant", "kind", "key_id", "nonce", "payload", "prev_hash",
        "hash",
    ]


def test_migrations_rerun_is_a_no_op(sqlite: SqliteBackend, master_key: MasterKey) -> None:
    for _ in range(2):
        reopen(sqlite, master_key).close()
    rows = sqlite.sql(DATABASE, "SELECT version, name FROM schema_migrations")
    assert rows == [
        (1, "events"), (2, "compaction"), (3, "snapshot_parts"), (4, "compacted_macs")
    ]


def test_the_file_of_another_database_is_refused(
    sqlite: SqliteBackend, master_key: MasterKey, log: Sealer
) -> None:
    from nocturnus.errors import StartupError

    put(log, "a", 1)
    with pytest.raises(StartupError, match="belongs to database 'acme'"):
        Sealer.open(SqliteRecorder(sqlite.store.path(DATABASE), "globex"), master_key)


def test_no_plaintext_anywhere_in_the_files(log: Sealer, sqlite: SqliteBackend) -> None:
    secret = "ZEBRA-7f3a-plaintext-sentinel"
    body = orjson.dumps({"fact": ["likes", "alice", secret]})
    put(log, "acme", bodies=[body])
    put(log, "", bodies=[body])
    log.save_snapshot("acme", 2, body)

    def leaked() -> list[str]:
        found = []
        for path in sqlite.store.data_dir.iterdir():
            data = path.read_bytes()
            for needle in (secret.encode(), secret.encode("utf-16-le")):
                if needle in data:
                    found.append(path.name)
        return found

    assert (sqlite.store.data_dir / "acme.db-wal").exists()
    assert leaked() == []
    log.close()
    assert leaked() == []


def test_a_destroyed_wrapped_key_leaves_the_files(log: Sealer, sqlite: SqliteBackend) -> None:
    put(log, "gone", 3)
    ((wrapped,),) = sqlite.sql(DATABASE, "SELECT wrapped FROM data_keys WHERE tenant = 'gone'")
    delete(log, "gone")

    def files_holding_it() -> list[str]:
        return [p.name for p in sqlite.store.data_dir.iterdir() if wrapped in p.read_bytes()]

    assert files_holding_it() == []  # secure_delete + WAL truncation, while open
    log.close()
    assert files_holding_it() == []


def test_a_flipped_bit_with_a_recomputed_chain_is_still_caught(
    sqlite: SqliteBackend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "acme", 5)
    log.close()
    flip_payload(sqlite, 4)
    rechain(sqlite, log.chain)  # a master-key holder's re-chain: the GCM tag still tells
    log = reopen(sqlite, master_key)
    try:
        with pytest.raises(CorruptRecord) as info:
            list(log.read())
        assert info.value.seq == 4
        report = verify_log(log)
        assert report.first_bad_seq == 4
        assert [p.kind for p in report.problems] == ["record"]
    finally:
        log.close()


def test_a_record_moved_to_another_tenant_fails_its_tag(
    sqlite: SqliteBackend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "a", 3)
    put(log, "b", 1)
    log.close()
    sqlite.sql(DATABASE, "UPDATE events SET tenant = 'b' WHERE seq = 2")
    rechain(sqlite, log.chain)
    log = reopen(sqlite, master_key)
    try:
        with pytest.raises(CorruptRecord) as info:
            list(log.read(tenant="b"))
        assert info.value.seq == 2
    finally:
        log.close()


@pytest.mark.parametrize(
    ("damage", "bad_seq"),
    [
        ("UPDATE events SET prev_hash = zeroblob(32) WHERE seq = 6", 6),
        # Reordered: rows 3 and 4 swap places (via negative seqs: seq is the key).
        (
            (
                "UPDATE events SET seq = -seq WHERE seq IN (3, 4);"
                "UPDATE events SET seq = CASE seq WHEN -3 THEN 4 ELSE 3 END"
                " WHERE seq < 0"
            ),
            3,
        ),
    ],
)
def test_rewritten_links_and_reordered_rows_stop_the_open(
    sqlite: SqliteBackend, master_key: MasterKey, log: Sealer, damage: str, bad_seq: int
) -> None:
    put(log, "acme", 4)
    put(log, "other", 4)
    log.close()
    for statement in damage.split(";"):
        sqlite.sql(DATABASE, statement)
    with pytest.raises(ChainBroken) as info:
        reopen(sqlite, master_key)
    assert info.value.seq == bad_seq


def test_a_rewritten_row_with_its_own_hash_recomputed_is_named(
    sqlite: SqliteBackend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "acme", 5)
    log.close()
    ((seq, ts, tenant, kind, key_id, nonce, payload, prev),) = sqlite.sql(
        DATABASE,
        "SELECT seq, ts_ms, tenant, kind, key_id, nonce, payload, prev_hash"
        " FROM events WHERE seq = 2",
    )
    h = log.chain.hash(prev, seq, ts + 5, tenant, kind, key_id, nonce, payload)
    sqlite.sql(DATABASE, "UPDATE events SET ts_ms = ?, hash = ? WHERE seq = 2", (ts + 5, h))
    with pytest.raises(ChainBroken) as info:
        reopen(sqlite, master_key)
    assert info.value.seq == 2


def test_the_tail_check_covers_only_the_tail(
    sqlite: SqliteBackend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "acme", 50)
    log.close()
    sqlite.sql(DATABASE, "UPDATE events SET ts_ms = 0 WHERE seq = 10")
    log = reopen(sqlite, master_key, check_tail=20)
    try:
        assert verify_log(log).first_bad_seq == 10
    finally:
        log.close()
    with pytest.raises(ChainBroken):
        reopen(sqlite, master_key, check_tail=45)


def test_a_readonly_open_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no event log"):
        SqliteRecorder(tmp_path / "missing.db", "acme", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def test_a_full_disk_is_a_storage_error_and_leaves_no_trace(log: Sealer) -> None:
    put(log, "a", 2)
    conn = log.recorder._conn  # type: ignore[attr-defined]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(StorageError, match="disk is full") as info:
        put(log, "new", bodies=[b"x" * 100_000])
    assert info.value.__cause__ is not None  # chained from the sqlite3 error
    assert log.head() == 2 and log.tenants() == {"a": TS0}
    conn.execute("PRAGMA max_page_count = 1073741823")
    # The rolled-back key of "new" is not reused: a fresh one is created and works.
    assert [r.seq for r in put(log, "new", 1)] == [3]
    assert verify_log(log).ok


def test_the_store_lists_and_removes_files(tmp_path: Path, master_key: MasterKey) -> None:
    store = SqliteStore(tmp_path)
    for name in ("b", "a"):
        Sealer.open(store.recorder(name), master_key).close()
    assert store.names() == ["a", "b"] and store.exists("a")
    store.remove("a")
    assert store.names() == ["b"] and not store.exists("a")


_tenants = st.sampled_from(["", "a", "b", "ünï", "x" * 40])
_kinds = st.sampled_from(["fact_told", "rule_taught", "tenant_deleted", "scope_forked"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(
            st.tuples(_tenants, _kinds, st.binary(max_size=64)), min_size=1, max_size=6
        ),
        max_size=5,
    )
)
def test_append_read_round_trip(batches: list[list[tuple[str, str, bytes]]]) -> None:
    """Whatever is appended reads back, except what a later deletion shredded."""
    with tempfile.TemporaryDirectory() as tmp:
        key = MasterKey.generate()
        store = SqliteStore(Path(tmp))
        log = Sealer.open(store.recorder("db"), key)
        expected: list[LogRecord] = []
        seq = 0
        for batch in batches:
            appends = []
            for tenant, kind, body in batch:
                ends = kind == "tenant_deleted" and bool(tenant)
                appends.append(Append(tenant, None, seq + 1, [(kind, body)], ends_stream=ends))
                seq += 1
                expected.append(LogRecord(seq, seq, tenant, kind, body))
            log.append(appends)
            assert all(a.error is None for a in appends)
        model = []
        for i, r in enumerate(expected):
            later_delete = any(
                o.kind == "tenant_deleted" and o.tenant == r.tenant and o.tenant
                for o in expected[i + 1 :]
            )
            ended = r.kind == "tenant_deleted" and bool(r.tenant)
            shredded = later_delete and not ended
            model.append(LogRecord(r.seq, r.ts_ms, r.tenant, r.kind, None if shredded else r.body))
        log.close()
        log = Sealer.open(store.recorder("db"), key)
        try:
            assert list(log.read()) == model
            assert list(log.entries()) == [tuple(r) for r in model]
            assert verify_log(log).ok
        finally:
            log.close()
