"""Snapshots under damage, files that are not logs, and the canonical encoding."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import StorageError
from nocturnus.store.record import LogRecord, build_record, frame
from nocturnus.store.sealer import Sealer
from nocturnus.store.snapshots import seal
from nocturnus.store.sqlite import SqliteStore
from nocturnus.store.verify import verify_log
from tests.store.conftest import SqliteBackend, delete, flip_bit, put


def open_log(path: Path, key: MasterKey) -> Sealer:
    return Sealer.open(SqliteStore(path.parent).recorder(path.stem), key)


def test_damaged_newest_snapshot_falls_back_loudly(
    tmp_path: Path,
    master_key: MasterKey,
        caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(tmp_path / "acme.db", master_key)
    try:
        put(log, "acme", 6)
        log.save_snapshot("acme", 3, b"at three")
        log.save_snapshot("acme", 6, b"at six")
        raw = SqliteBackend(tmp_path)
        ((payload,),) = raw.sql("acme", "SELECT payload FROM snapshots WHERE seq = 6")
        raw.sql("acme", "UPDATE snapshots SET payload = ? WHERE seq = 6", (flip_bit(payload),))
        with caplog.at_level(logging.ERROR, logger="nocturnus.store"):
            assert log.latest_snapshot("acme") == (3, b"at three")
        assert "seq 6 is corrupt" in caplog.text
        report = verify_log(log)
        assert not report.ok
        assert [(p.kind, p.seq, p.tenant) for p in report.problems] == [
            ("snapshot", 6, "acme")
        ]
        assert report.first_bad_seq is None  # the events themselves are fine
        assert "tenant 'acme' seq 6" in report.summary()
    finally:
        log.close()


def test_snapshot_moved_to_another_seq_does_not_open(
    tmp_path: Path, master_key: MasterKey
) -> None:
    log = open_log(tmp_path / "acme.db", master_key)
    try:
        put(log, "acme", 6)
        log.save_snapshot("acme", 2, b"at two")
        SqliteBackend(tmp_path).sql("acme", "UPDATE snapshots SET seq = 5 WHERE seq = 2")
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
        open_log(path, master_key)
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


def _count(log: Sealer, table: str) -> int:
    return int(log.recorder._conn.execute(  # type: ignore[attr-defined]
        f"SELECT count(*) FROM {table}").fetchone()[0])


def _store_in_parts(log: Sealer, tenant: str, seq: int, body: bytes, *, finish: bool = True) -> bool:
    key = log.snapshot_key(tenant, seq)
    assert key is not None
    sealed = seal(log.database, tenant, seq, key, body, part_bytes=1000)
    for part in range(sealed.parts):
        log.write_snapshot_part(sealed, part)
    return log.finish_snapshot(sealed) if finish else False


def test_a_big_snapshot_is_stored_in_parts_and_read_back_whole(
    tmp_path: Path, master_key: MasterKey
) -> None:
    log = open_log(tmp_path / "acme.db", master_key)
    try:
        put(log, "acme", 6)
        body = bytes(range(256)) * 40  # 10 240 bytes: 10 parts of 1000 + the row's piece
        assert _store_in_parts(log, "acme", 3, body)
        assert _count(log, "snapshot_parts") == 10
        assert log.latest_snapshot("acme") == (3, body)
        assert verify_log(log).ok

        # A crash between parts and the row: the parts are never read ...
        _store_in_parts(log, "acme", 5, body[::-1], finish=False)
        assert log.latest_snapshot("acme") == (3, body)
        assert verify_log(log).ok
        # ... and the tenant's next snapshot removes them.
        assert _store_in_parts(log, "acme", 6, b"small")
        assert _count(log, "snapshot_parts") == 10  # only seq 3's
        assert log.latest_snapshot("acme") == (6, b"small")

        # A damaged or missing part is a damaged snapshot: named, never used.
        raw = SqliteBackend(tmp_path)
        raw.sql("acme", "DELETE FROM snapshots WHERE seq = 6")
        ((data,),) = raw.sql(
            "acme", "SELECT data FROM snapshot_parts WHERE seq = 3 AND part = 4"
        )
        raw.sql(
            "acme",
            "UPDATE snapshot_parts SET data = ? WHERE seq = 3 AND part = 4",
            (flip_bit(data),),
        )
        assert log.latest_snapshot("acme") is None
        assert [(p.kind, p.seq) for p in verify_log(log).problems] == [("snapshot", 3)]
        raw.sql("acme", "DELETE FROM snapshot_parts WHERE seq = 3 AND part = 7")
        assert log.latest_snapshot("acme") is None
        problems = verify_log(log).problems
        assert [(p.kind, p.seq) for p in problems] == [("snapshot", 3)]
        assert "parts are missing" in problems[0].message
    finally:
        log.close()


def test_deleting_a_tenant_deletes_its_snapshot_parts(
    tmp_path: Path, master_key: MasterKey
) -> None:
    log = open_log(tmp_path / "acme.db", master_key)
    try:
        put(log, "t", 4)
        assert _store_in_parts(log, "t", 4, b"x" * 5000)
        _store_in_parts(log, "t", 4, b"y" * 5000, finish=False)
        assert _count(log, "snapshot_parts") > 0
        delete(log, "t")
        assert _count(log, "snapshot_parts") == 0
        assert _count(log, "snapshots") == 0
    finally:
        log.close()


def test_a_snapshot_whose_parts_another_save_removed_is_not_stored(
    tmp_path: Path, master_key: MasterKey
) -> None:
    """Two connections snapshotting one tenant: the older one's orphans go, and its
    row is then refused rather than stored without them."""
    path = tmp_path / "acme.db"
    first, second = open_log(path, master_key), open_log(path, master_key)
    try:
        put(first, "acme", 6)
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
