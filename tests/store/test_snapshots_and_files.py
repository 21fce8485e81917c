"""Snapshots under damage, files that are not logs, and the canonical encoding."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import StorageError
from nocturnus.store.log import EventLog
from nocturnus.store.record import LogRecord, build_record, frame
from nocturnus.store.snapshots import seal

Records = Callable[..., list[LogRecord]]


def test_damaged_newest_snapshot_falls_back_loudly(
    tmp_path: Path,
    master_key: MasterKey,
    records: Records,
    tamper: type,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = EventLog.open(tmp_path / "acme.db", "acme", master_key)
    try:
        log.append(records(1, 6))
        log.save_snapshot("acme", 3, b"at three")
        log.save_snapshot("acme", 6, b"at six")
        with tamper.raw(log.path) as conn:
            (payload,) = conn.execute(
                "SELECT payload FROM snapshots WHERE seq = 6"
            ).fetchone()
            conn.execute(
                "UPDATE snapshots SET payload = ? WHERE seq = 6",
                (tamper.flip_bit(payload),),
            )
        with caplog.at_level(logging.ERROR, logger="nocturnus.store"):
            assert log.latest_snapshot("acme") == (3, b"at three")
        assert "seq 6 is corrupt" in caplog.text
        report = log.verify()
        assert not report.ok
        assert [(p.kind, p.seq, p.tenant) for p in report.problems] == [
            ("snapshot", 6, "acme")
        ]
        assert report.first_bad_seq is None  # the events themselves are fine
        assert "tenant 'acme' seq 6" in report.summary()
    finally:
        log.close()


def test_snapshot_moved_to_another_seq_does_not_open(
    tmp_path: Path, master_key: MasterKey, records: Records, tamper: type
) -> None:
    log = EventLog.open(tmp_path / "acme.db", "acme", master_key)
    try:
        log.append(records(1, 6))
        log.save_snapshot("acme", 2, b"at two")
        tamper.sql(log.path, "UPDATE snapshots SET seq = 5 WHERE seq = 2")
        assert log.latest_snapshot("acme") is None
    finally:
        log.close()


@pytest.mark.parametrize(
    "content", [b"this is not sqlite at all" * 100, b"\x00" * 4096]
)
def test_a_file_that_is_not_a_log(
    tmp_path: Path, master_key: MasterKey, content: bytes
) -> None:
    path = tmp_path / "acme.db"
    path.write_bytes(content)
    with pytest.raises(StorageError) as info:
        EventLog.open(path, "acme", master_key)
    assert "\n" not in str(info.value)


def test_build_record_equals_the_constructor() -> None:
    assert build_record(1, 2, "t", "k", b"x") == LogRecord(1, 2, "t", "k", b"x")
    assert build_record(1, 2, "t", "k", None) == LogRecord(1, 2, "t", "k", None)
    with pytest.raises(AttributeError):
        build_record(1, 2, "t", "k", None).seq = 5  # type: ignore[misc]


_parts = st.lists(
    st.one_of(
        st.text(max_size=8), st.binary(max_size=8), st.integers(-(2**63), 2**63 - 1)
    ),
    max_size=5,
)


@given(_parts, _parts)
def test_frame_is_unambiguous(
    a: list[str | bytes | int], b: list[str | bytes | int]
) -> None:
    def typed(parts: list[str | bytes | int]) -> list[tuple[type, object]]:
        return [(type(p), p) for p in parts]

    assert (frame(*a) == frame(*b)) == (typed(a) == typed(b))


def test_snapshots_from_a_second_connection_respect_shredding(
    tmp_path: Path,
    master_key: MasterKey,
    records: Records,
    record: Callable[..., LogRecord],
) -> None:
    """A background snapshotter may use its own connection; it never outlives a shred."""
    path = tmp_path / "acme.db"
    writer_log = EventLog.open(path, "acme", master_key)
    snapper = EventLog.open(path, "acme", master_key)
    try:
        writer_log.append(records(1, 4, tenant="t"))
        assert snapper.save_snapshot("t", 4, b"state@4") is True
        assert writer_log.latest_snapshot("t") == (4, b"state@4")
        writer_log.append([record(5, tenant="t", kind="tenant_deleted")])
        assert snapper.save_snapshot("t", 4, b"late state@4") is False
        writer_log.append(records(6, 1, tenant="t"))
        assert snapper.save_snapshot("t", 5, b"pre-incarnation") is False
        assert writer_log.latest_snapshot("t") is None
        assert snapper.save_snapshot("t", 6, b"state@6") is True
        assert writer_log.latest_snapshot("t") == (6, b"state@6")
        assert writer_log.verify().ok
    finally:
        snapper.close()
        writer_log.close()


def test_disk_full_is_a_storage_error_and_leaves_no_trace(
    tmp_path: Path,
    master_key: MasterKey,
    records: Records,
    record: Callable[..., LogRecord],
) -> None:
    log = EventLog.open(tmp_path / "acme.db", "acme", master_key)
    try:
        log.append(records(1, 2, tenant="a"))
        pages = log._conn.execute("PRAGMA page_count").fetchone()[0]
        log._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        big = [record(3, tenant="new", body=b"x" * 100_000)]
        with pytest.raises(StorageError, match="disk is full") as info:
            log.append(big)
        assert info.value.__cause__ is not None  # chained from the sqlite3 error
        assert log.head() == 2 and log.tenants() == {"a": records(1, 1)[0].ts_ms}
        log._conn.execute("PRAGMA max_page_count = 1073741823")
        # The rolled-back key of "new" is not reused: a fresh one is created and works.
        log.append([record(3, tenant="new")])
        assert [r.seq for r in log.read(tenant="new")] == [3]
        assert log.verify().ok
    finally:
        log.close()


def _count(log: EventLog, table: str) -> int:
    return int(log._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _store_in_parts(log: EventLog, tenant: str, seq: int, body: bytes, *, finish: bool = True) -> bool:
    key = log.snapshot_key(tenant, seq)
    assert key is not None
    sealed = seal(log.database, tenant, seq, key, body, part_bytes=1000)
    for part in range(sealed.parts):
        log.write_snapshot_part(sealed, part)
    return log.finish_snapshot(sealed) if finish else False


def test_a_big_snapshot_is_stored_in_parts_and_read_back_whole(
    tmp_path: Path, master_key: MasterKey, records: Records, tamper: type
) -> None:
    log = EventLog.open(tmp_path / "acme.db", "acme", master_key)
    try:
        log.append(records(1, 6))
        body = bytes(range(256)) * 40  # 10 240 bytes: 10 parts of 1000 + the row's piece
        assert _store_in_parts(log, "acme", 3, body)
        assert _count(log, "snapshot_parts") == 10
        assert log.latest_snapshot("acme") == (3, body)
        assert log.verify().ok

        # A crash between parts and the row: the parts are never read ...
        _store_in_parts(log, "acme", 5, body[::-1], finish=False)
        assert log.latest_snapshot("acme") == (3, body)
        assert log.verify().ok
        # ... and the tenant's next snapshot removes them.
        assert _store_in_parts(log, "acme", 6, b"small")
        assert _count(log, "snapshot_parts") == 10  # only seq 3's
        assert log.latest_snapshot("acme") == (6, b"small")

        # A damaged or missing part is a damaged snapshot: named, never used.
        with tamper.raw(log.path) as conn:
            conn.execute("DELETE FROM snapshots WHERE seq = 6")
            (data,) = conn.execute(
                "SELECT data FROM snapshot_parts WHERE seq = 3 AND part = 4"
            ).fetchone()
            conn.execute(
                "UPDATE snapshot_parts SET data = ? WHERE seq = 3 AND part = 4",
                (tamper.flip_bit(data),),
            )
        assert log.latest_snapshot("acme") is None
        assert [(p.kind, p.seq) for p in log.verify().problems] == [("snapshot", 3)]
        tamper.sql(log.path, "DELETE FROM snapshot_parts WHERE seq = 3 AND part = 7")
        assert log.latest_snapshot("acme") is None
        problems = log.verify().problems
        assert [(p.kind, p.seq) for p in problems] == [("snapshot", 3)]
        assert "parts are missing" in problems[0].message
    finally:
        log.close()


def test_deleting_a_tenant_deletes_its_snapshot_parts(
    tmp_path: Path, master_key: MasterKey, records: Records, record: Callable[..., LogRecord]
) -> None:
    log = EventLog.open(tmp_path / "acme.db", "acme", master_key)
    try:
        log.append(records(1, 4, tenant="t"))
        assert _store_in_parts(log, "t", 4, b"x" * 5000)
        _store_in_parts(log, "t", 4, b"y" * 5000, finish=False)
        assert _count(log, "snapshot_parts") > 0
        log.append([record(5, tenant="t", kind="tenant_deleted")])
        assert _count(log, "snapshot_parts") == 0
        assert _count(log, "snapshots") == 0
    finally:
        log.close()


def test_a_snapshot_whose_parts_another_save_removed_is_not_stored(
    tmp_path: Path, master_key: MasterKey, records: Records
) -> None:
    """Two connections snapshotting one tenant: the older one's orphans go, and its
    row is then refused rather than stored without them."""
    path = tmp_path / "acme.db"
    first, second = EventLog.open(path, "acme", master_key), EventLog.open(path, "acme", master_key)
    try:
        first.append(records(1, 6))
        key = first.snapshot_key("acme", 3)
        assert key is not None
        old = seal("acme", "acme", 3, key, b"o" * 5000, part_bytes=1000)
        for part in range(old.parts):
            first.write_snapshot_part(old, part)
        assert _store_in_parts(second, "acme", 6, b"n" * 5000)
        assert first.finish_snapshot(old) is False
        assert first.latest_snapshot("acme") == (6, b"n" * 5000)
    finally:
        second.close()
        first.close()
