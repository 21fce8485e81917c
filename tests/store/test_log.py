"""The EventLog contract (STYLE rule 9) and the SQLite backend's own guarantees."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nocturnus.errors import StartupError
from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import (
    ChainBroken,
    CorruptRecord,
    InvalidRecord,
    SeqConflict,
    StorageError,
    WrongMasterKey,
)
from nocturnus.store.log import EventLog
from nocturnus.store.record import LogRecord

Records = Callable[..., list[LogRecord]]
Record = Callable[..., LogRecord]


class EventLogContract:
    """Behaviour every EventLog backend must show. Subclasses provide make/reopen."""

    def make_log(self, tmp_path: Path, master_key: MasterKey) -> EventLog:
        raise NotImplementedError

    def reopen(self, log: EventLog, master_key: MasterKey, **kw: object) -> EventLog:
        raise NotImplementedError

    @pytest.fixture
    def log(self, tmp_path: Path, master_key: MasterKey) -> EventLog:
        log = self.make_log(tmp_path, master_key)
        yield log
        log.close()

    def test_empty_log(self, log: EventLog) -> None:
        assert log.head() == 0
        assert list(log.read()) == []
        assert log.tenants() == {}

    def test_append_read_head(self, log: EventLog, records: Records) -> None:
        batch = records(1, 5)
        log.append(batch)
        assert log.head() == 5
        assert list(log.read()) == batch
        assert list(log.read(after_seq=3)) == batch[3:]
        assert list(log.read(after_seq=1, until_seq=3)) == batch[1:3]
        assert list(log.read(limit=2)) == batch[:2]

    def test_empty_append_is_a_no_op(self, log: EventLog) -> None:
        log.append([])
        assert log.head() == 0

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ([1, 2], [2]),  # duplicate
            ([1, 2], [4]),  # gap
            ([1], [3, 2]),  # out of order
            ([1], [2, 2]),  # duplicate inside a batch
            ([], [0]),  # seqs start at 1
        ],
    )
    def test_seqs_must_continue_the_head(
        self, log: EventLog, record: Record, first: list[int], second: list[int]
    ) -> None:
        log.append([record(s) for s in first])
        with pytest.raises(SeqConflict) as info:
            log.append([record(s) for s in second])
        assert str(info.value.seq) in str(info.value)
        assert log.head() == len(first)
        # Nothing of the refused batch was written; the log still takes the right seq.
        log.append([record(len(first) + 1)])
        assert [r.seq for r in log.read()] == [*first, len(first) + 1]

    def test_invalid_record_is_refused_and_nothing_written(
        self, log: EventLog, record: Record
    ) -> None:
        bad = LogRecord(2, 1, "acme", "fact_told", None)
        with pytest.raises(InvalidRecord):
            log.append([record(1), bad])
        assert log.head() == 0
        with pytest.raises(InvalidRecord):
            log.append([record(1, tenant="", kind="tenant_deleted")])

    def test_reopen_keeps_everything(
        self, log: EventLog, master_key: MasterKey, records: Records
    ) -> None:
        batch = records(1, 3, tenant="a") + records(4, 2, tenant="b")
        log.append(batch)
        log.save_snapshot("a", 5, b"state-a")
        log = self.reopen(log, master_key)
        try:
            assert log.head() == 5
            assert list(log.read()) == batch
            assert set(log.tenants()) == {"a", "b"}
            assert log.latest_snapshot("a") == (5, b"state-a")
            log.append(records(6, 1, tenant="a"))
            assert log.head() == 6
        finally:
            log.close()

    def test_tenant_filter(self, log: EventLog, records: Records) -> None:
        a1, b1, a2, db = (
            records(1, 2, "a"),
            records(3, 2, "b"),
            records(5, 1, "a"),
            records(6, 1, ""),
        )
        log.append(a1 + b1)
        log.append(a2 + db)
        assert list(log.read(tenant="a")) == a1 + a2
        assert list(log.read(tenant="b")) == b1
        assert list(log.read(tenant="")) == db
        assert list(log.read(after_seq=2, tenant="a")) == a2
        assert list(log.read(tenant="nobody")) == []
        assert log.tenants() == {"a": a1[0].ts_ms, "b": b1[0].ts_ms}

    def test_wrong_master_key_is_refused(
        self, log: EventLog, master_key: MasterKey, records: Records
    ) -> None:
        log.append(records(1, 2))
        with pytest.raises(WrongMasterKey) as info:
            self.reopen(log, MasterKey.generate())
        message = str(info.value)
        assert "\n" not in message and "master key" in message
        assert isinstance(info.value, StartupError)

    def test_wrong_master_key_is_refused_on_an_empty_log(self, log: EventLog) -> None:
        with pytest.raises(WrongMasterKey):
            self.reopen(log, MasterKey.generate())

    def test_tenant_deleted_shreds_earlier_records(
        self, log: EventLog, master_key: MasterKey, records: Records, record: Record
    ) -> None:
        log.append(records(1, 3, tenant="gone") + records(4, 1, tenant="kept"))
        log.save_snapshot("gone", 4, b"state of gone")
        log.append(
            [record(5, tenant="gone", kind="tenant_deleted", body=b'{"why":"asked"}')]
        )
        assert "gone" not in log.tenants()
        assert log.latest_snapshot("gone") is None
        got = {r.seq: r for r in log.read()}
        assert [got[s].body for s in (1, 2, 3)] == [None, None, None]
        assert got[4].body is not None
        # The deletion itself stays readable (it is under the database-level key).
        assert got[5].body == b'{"why":"asked"}' and got[5].tenant == "gone"
        # A new tenant of the same name gets a new key and reads fine.
        fresh = records(6, 2, tenant="gone")
        log.append(fresh)
        assert "gone" in log.tenants()
        assert [r.body for r in log.read(after_seq=5, tenant="gone")] == [
            r.body for r in fresh
        ]
        # The old incarnation's snapshot cannot come back under the new key.
        assert log.save_snapshot("gone", 4, b"old state") is False
        log = self.reopen(log, master_key)
        try:
            bodies = [r.body for r in log.read(tenant="gone")]
            assert bodies == [
                None,
                None,
                None,
                b'{"why":"asked"}',
                fresh[0].body,
                fresh[1].body,
            ]
            assert log.verify().events_shredded == 3
        finally:
            log.close()

    def test_delete_and_recreate_in_one_batch(
        self, log: EventLog, record: Record
    ) -> None:
        log.append(
            [
                record(1, tenant="t"),
                record(2, tenant="t", kind="tenant_deleted"),
                record(3, tenant="t", body=b'"again"'),
            ]
        )
        assert [r.body for r in log.read()] == [None, record(2).body, b'"again"']

    def test_deleting_a_tenant_without_events(
        self, log: EventLog, record: Record
    ) -> None:
        log.append([record(1, tenant="never", kind="tenant_deleted")])
        assert log.tenants() == {}
        assert [r.body for r in log.read()] == [record(1).body]

    def test_snapshots_round_trip(self, log: EventLog, records: Records) -> None:
        log.append(records(1, 10, tenant="a") + records(11, 1, tenant=""))
        assert log.latest_snapshot("a") is None
        for seq in (2, 4, 6, 8, 10):
            assert log.save_snapshot("a", seq, f"state@{seq}".encode()) is True
        assert log.latest_snapshot("a") == (10, b"state@10")
        assert log.save_snapshot("", 11, b"db state")
        assert log.latest_snapshot("") == (11, b"db state")
        assert log.latest_snapshot("b") is None
        assert log.save_snapshot("b", 11, b"no key yet") is False
        with pytest.raises(InvalidRecord):
            log.save_snapshot("a", 99, b"from the future")
        report = log.verify()
        assert report.ok, report.summary()
        assert report.snapshots_checked == 4  # only the newest few are kept

    def test_verify_clean_log(self, log: EventLog, records: Records) -> None:
        log.append(records(1, 7))
        calls: list[tuple[int, int]] = []
        report = log.verify(progress=lambda done, total: calls.append((done, total)))
        assert report.ok and report.first_bad_seq is None
        assert (report.head, report.events_checked) == (7, 7)
        assert calls[-1] == (7, 7)
        assert "OK" in report.summary()

    def test_closed_log_refuses(self, log: EventLog, record: Record) -> None:
        log.close()
        with pytest.raises(StorageError):
            log.append([record(1)])
        with pytest.raises(StorageError):
            log.head()


class TestSqliteEventLog(EventLogContract):
    def make_log(self, tmp_path: Path, master_key: MasterKey) -> EventLog:
        return EventLog.open(tmp_path / "acme.db", "acme", master_key)

    def reopen(self, log: EventLog, master_key: MasterKey, **kw: object) -> EventLog:
        log.close()
        return EventLog.open(log.path, log.database, master_key, **kw)  # type: ignore[arg-type]

    # -- SQLite specifics ------------------------------------------------------------

    def test_file_settings(self, log: EventLog) -> None:
        conn = log._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
        assert columns == [
            "seq",
            "ts_ms",
            "tenant",
            "kind",
            "key_id",
            "nonce",
            "payload",
            "prev_hash",
            "hash",
        ]

    def test_migrations_rerun_is_a_no_op(
        self, log: EventLog, master_key: MasterKey
    ) -> None:
        for _ in range(2):
            log = self.reopen(log, master_key)
        rows = log._conn.execute(
            "SELECT version, name FROM schema_migrations"
        ).fetchall()
        assert rows == [(1, "events"), (2, "compaction"), (3, "snapshot_parts")]
        log.close()

    def test_file_of_another_database_is_refused(
        self, log: EventLog, master_key: MasterKey
    ) -> None:
        log.close()
        with pytest.raises(StartupError, match="belongs to database 'acme'"):
            EventLog.open(log.path, "globex", master_key)

    def test_no_plaintext_anywhere_in_the_files(
        self, log: EventLog, record: Record
    ) -> None:
        secret = "ZEBRA-7f3a-plaintext-sentinel"
        body = orjson.dumps({"fact": ["likes", "alice", secret]})
        log.append([record(1, body=body), record(2, tenant="", body=body)])
        log.save_snapshot("acme", 2, body)

        def leaked() -> list[str]:
            found = []
            for path in log.path.parent.iterdir():
                data = path.read_bytes()
                for needle in (secret.encode(), secret.encode("utf-16-le")):
                    if needle in data:
                        found.append(path.name)
            return found

        assert log.path.with_name(log.path.name + "-wal").exists()
        assert leaked() == []
        log.close()
        assert leaked() == []

    def test_destroyed_wrapped_key_leaves_the_files(
        self, log: EventLog, records: Records, record: Record, tamper: type
    ) -> None:
        log.append(records(1, 3, tenant="gone"))
        with tamper.raw(log.path) as conn:
            (wrapped,) = conn.execute(
                "SELECT wrapped FROM data_keys WHERE tenant = 'gone'"
            ).fetchone()
        log.append([record(4, tenant="gone", kind="tenant_deleted")])

        def files_holding_it() -> list[str]:
            return [
                p.name for p in log.path.parent.iterdir() if wrapped in p.read_bytes()
            ]

        assert files_holding_it() == []  # secure_delete + WAL truncation, while open
        log.close()
        assert files_holding_it() == []

    def test_flipped_ciphertext_bit(
        self, log: EventLog, master_key: MasterKey, records: Records, tamper: type
    ) -> None:
        log.append(records(1, 5))
        tamper.flip_payload(log.path, 3)
        # Already open: the read itself detects it, naming the seq; never skipped.
        it = log.read()
        assert [next(it).seq for _ in range(2)] == [1, 2]
        with pytest.raises(CorruptRecord) as info:
            next(it)
        assert info.value.seq == 3 and "seq 3" in str(info.value)
        report = log.verify()
        assert not report.ok and report.first_bad_seq == 3
        assert "seq 3" in report.summary()
        # Reopening: the tail check already catches it through the chain.
        with pytest.raises(ChainBroken) as broken:
            self.reopen(log, master_key)
        assert broken.value.seq == 3

    def test_flipped_bit_with_a_recomputed_chain_is_still_caught(
        self, log: EventLog, master_key: MasterKey, records: Records, tamper: type
    ) -> None:
        log.append(records(1, 5))
        log.close()
        tamper.flip_payload(log.path, 4)
        tamper.rechain(log.path)
        log = EventLog.open(log.path, "acme", master_key)
        try:
            with pytest.raises(CorruptRecord) as info:
                list(log.read())
            assert info.value.seq == 4
            report = log.verify()
            assert report.first_bad_seq == 4
            assert [p.kind for p in report.problems] == ["record"]
        finally:
            log.close()

    def test_record_moved_to_another_tenant_fails_its_tag(
        self, log: EventLog, master_key: MasterKey, records: Records, tamper: type
    ) -> None:
        log.append(records(1, 3, tenant="a") + records(4, 1, tenant="b"))
        log.close()
        tamper.sql(log.path, "UPDATE events SET tenant = 'b' WHERE seq = 2")
        tamper.rechain(log.path)
        log = EventLog.open(log.path, "acme", master_key)
        try:
            with pytest.raises(CorruptRecord) as info:
                list(log.read(tenant="b"))
            assert info.value.seq == 2
        finally:
            log.close()

    @pytest.mark.parametrize(
        ("damage", "bad_seq"),
        [
            ("UPDATE events SET ts_ms = ts_ms + 1 WHERE seq = 4", 4),
            ("UPDATE events SET kind = 'rule_taught' WHERE seq = 2", 2),
            ("UPDATE events SET prev_hash = zeroblob(32) WHERE seq = 6", 6),
            ("DELETE FROM events WHERE seq = 5", 5),
            ("DELETE FROM events WHERE seq = 1", 1),
            ("DELETE FROM events WHERE seq = 8", 8),  # the newest row
            ("DELETE FROM events WHERE seq >= 7", 7),  # a truncated tail
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
    def test_changed_removed_reordered_rows_stop_the_open(
        self,
        log: EventLog,
        master_key: MasterKey,
        records: Records,
        tamper: type,
        damage: str,
        bad_seq: int,
    ) -> None:
        log.append(records(1, 4))
        log.append(records(5, 4, tenant="other"))
        log.close()
        for statement in damage.split(";"):
            tamper.sql(log.path, statement)
        with pytest.raises(ChainBroken) as info:
            EventLog.open(log.path, "acme", master_key)
        assert info.value.seq == bad_seq
        assert f"seq {bad_seq}" in str(info.value) and "\n" not in str(info.value)
        if bad_seq >= 7:
            return  # the tail itself is damaged: even a zero-row tail check refuses it
        # verify, on a log opened without the tail check, names the same seq.
        log = EventLog.open(log.path, "acme", master_key, check_tail=0)
        try:
            assert log.verify().first_bad_seq == bad_seq
        finally:
            log.close()

    def test_rewritten_row_with_its_own_hash_recomputed_is_named(
        self, log: EventLog, master_key: MasterKey, records: Records, tamper: type
    ) -> None:
        from nocturnus.store.chain import event_hash

        log.append(records(1, 5))
        log.close()
        with tamper.raw(log.path) as conn:
            row = conn.execute(
                "SELECT seq, ts_ms, tenant, kind, key_id, nonce, payload, prev_hash"
                " FROM events WHERE seq = 2"
            ).fetchone()
            seq, ts, tenant, kind, key_id, nonce, payload, prev = row
            h = event_hash(prev, seq, ts + 5, tenant, kind, key_id, nonce, payload)
            conn.execute(
                "UPDATE events SET ts_ms = ?, hash = ? WHERE seq = 2", (ts + 5, h)
            )
        with pytest.raises(ChainBroken) as info:
            EventLog.open(log.path, "acme", master_key)
        assert info.value.seq == 2

    def test_tail_check_covers_only_the_tail(
        self, log: EventLog, master_key: MasterKey, records: Records, tamper: type
    ) -> None:
        log.append(records(1, 50))
        log.close()
        tamper.sql(log.path, "UPDATE events SET ts_ms = 0 WHERE seq = 10")
        log = EventLog.open(log.path, "acme", master_key, check_tail=20)
        try:
            assert log.verify().first_bad_seq == 10
        finally:
            log.close()
        with pytest.raises(ChainBroken):
            EventLog.open(log.path, "acme", master_key, check_tail=45)

    def test_readonly_reader_follows_the_writer(
        self, log: EventLog, master_key: MasterKey, records: Records, record: Record
    ) -> None:
        log.append(records(1, 2, tenant="t"))
        reader = EventLog.open(log.path, "acme", master_key, readonly=True)
        try:
            assert reader.head() == 2
            log.append(records(3, 2, tenant="u"))
            assert reader.head() == 4
            assert [r.seq for r in reader.read(after_seq=2)] == [3, 4]
            log.append([record(5, tenant="t", kind="tenant_deleted")])
            # Shredding is immediate for readers too.
            assert [r.body for r in reader.read(tenant="t", until_seq=2)] == [
                None,
                None,
            ]
            with pytest.raises(StorageError, match="read-only"):
                reader.append([record(6)])
        finally:
            reader.close()

    def test_readonly_open_of_a_missing_file(
        self, tmp_path: Path, master_key: MasterKey
    ) -> None:
        with pytest.raises(StorageError, match="no event log"):
            EventLog.open(tmp_path / "missing.db", "acme", master_key, readonly=True)
        assert not (tmp_path / "missing.db").exists()

    def test_rotate_master_key(
        self, log: EventLog, master_key: MasterKey, records: Records
    ) -> None:
        batch = records(1, 3, tenant="a") + records(4, 1, tenant="b")
        log.append(batch)
        new_key = MasterKey.generate()
        assert log.rotate_master_key(new_key) == 2
        log.append(records(5, 1, tenant="c"))
        log.close()
        with pytest.raises(WrongMasterKey):
            EventLog.open(log.path, "acme", master_key)
        log = EventLog.open(log.path, "acme", new_key)
        try:
            assert list(log.read())[:4] == batch
        finally:
            log.close()

    def test_backup_is_a_working_copy(
        self, log: EventLog, master_key: MasterKey, records: Records, tmp_path: Path
    ) -> None:
        log.append(records(1, 3))
        log.backup(tmp_path / "copy.db")
        copy = EventLog.open(tmp_path / "copy.db", "acme", master_key)
        try:
            assert list(copy.read()) == list(log.read())
            assert copy.verify().ok
        finally:
            copy.close()


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
    """Whatever is appended reads back, except what a later tenant_deleted shredded."""
    with tempfile.TemporaryDirectory() as tmp:
        key = MasterKey.generate()
        log = EventLog.open(Path(tmp) / "db.sqlite", "db", key)
        expected: list[LogRecord] = []
        seq = 0
        for batch in batches:
            out = []
            for tenant, kind, body in batch:
                if kind == "tenant_deleted" and not tenant:
                    kind = "fact_told"
                seq += 1
                out.append(LogRecord(seq, seq, tenant, kind, body))
            log.append(out)
            expected.extend(out)
        # Model of shredding: a record is unreadable if a later tenant_deleted for its
        # tenant exists and it is not itself a tenant_deleted record.
        model = []
        for i, r in enumerate(expected):
            later_delete = any(
                o.kind == "tenant_deleted" and o.tenant == r.tenant
                for o in expected[i + 1 :]
            )
            shredded = later_delete and r.kind != "tenant_deleted"
            model.append(
                LogRecord(
                    r.seq, r.ts_ms, r.tenant, r.kind, None if shredded else r.body
                )
            )
        log.close()
        log = EventLog.open(Path(tmp) / "db.sqlite", "db", key)
        try:
            assert list(log.read()) == model
            # replay's plain tuples (issue 3): the same rows, a record unpacks alike
            assert list(log.entries()) == [tuple(r) for r in model]
            tenants = {r.tenant for r in model}
            for tenant in tenants:
                assert list(log.entries(1, tenant=tenant, until_seq=seq - 1)) == [
                    tuple(r) for r in list(log.read(1, tenant=tenant, until_seq=seq - 1))
                ]
            assert log.verify().ok
        finally:
            log.close()
