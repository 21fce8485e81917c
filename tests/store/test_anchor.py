"""The head anchor (issue 14, item 6): a SQLite log whose head falls behind the head
anchored after its commits lost acknowledged events, and is refused, not opened silently.

The end-to-end regression (a real server, kill -9, a truncated -wal) is in
``tests/api/test_lost_wal.py``; these tests cover the anchor's own rules on real files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nocturnus.store.anchor import SLOT_BYTES, Anchor, AnchorDamaged
from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import ChainBroken
from nocturnus.store.recorder import Tip
from nocturnus.store.sealer import Sealer
from nocturnus.store.sqlite import SqliteStore
from nocturnus.store.verify import verify_log
from tests.store.conftest import DATABASE, Backend, SqliteBackend, open_log, put


@pytest.fixture
def sqlite(tmp_path: Path) -> SqliteBackend:
    return SqliteBackend(tmp_path / "data")


def files(store: SqliteStore) -> list[Path]:
    base = store.path(DATABASE)
    return [Path(f"{base}{suffix}") for suffix in ("", "-wal", "-shm")]


def anchored(log: Sealer) -> Tip | None:
    assert log.anchor is not None
    return log.anchor.read()


def test_every_commit_moves_the_anchor_to_the_head(
    sqlite: SqliteBackend, master_key: MasterKey
) -> None:
    log = open_log(sqlite, master_key)
    try:
        assert log.anchor is not None and log.anchor.path.name == f"{DATABASE}.db.anchor"
        assert (log.anchor.path.stat().st_mode & 0o777) == 0o600
        for _ in range(3):
            put(log, "acme", 2)
            assert anchored(log) == log.tip()
    finally:
        log.close()


def test_an_older_copy_of_the_log_put_back_is_refused_and_reported(
    sqlite: SqliteBackend, master_key: MasterKey, tmp_path: Path
) -> None:
    """What a truncated or lost -wal file does: the log as it was before some commits."""
    log = open_log(sqlite, master_key)
    put(log, "acme", 5)
    old = tmp_path / "old"
    old.mkdir()
    for path in files(sqlite.store):  # an online copy of the three files, taken now
        if path.exists():
            shutil.copy2(path, old / path.name)
    put(log, "acme", 3)
    log.close()
    for path in files(sqlite.store):
        path.unlink(missing_ok=True)
        if (old / path.name).exists():
            shutil.copy2(old / path.name, path)
    with pytest.raises(ChainBroken) as info:
        open_log(sqlite, master_key)
    assert info.value.seq == 6
    assert "events 6..8 are missing" in str(info.value) and "acme.db.anchor" in str(info.value)
    reader = open_log(sqlite, master_key, readonly=True, check_tail=None)
    try:
        report = verify_log(reader)
        assert not report.ok and report.first_bad_seq == 6
    finally:
        reader.close()
    # The documented way to accept the loss: remove the anchor; the log is anchored anew.
    (sqlite.store.data_dir / f"{DATABASE}.db.anchor").unlink()
    accepted = open_log(sqlite, master_key)
    try:
        assert anchored(accepted) == accepted.tip() and accepted.head() == 5
    finally:
        accepted.close()


def test_writers_of_one_file_only_move_the_anchor_forward(
    sqlite: SqliteBackend, master_key: MasterKey
) -> None:
    """Two writers on one file (two processes, each its own connection and descriptor):
    the anchor is the newest head whoever wrote last."""
    first, second = open_log(sqlite, master_key), open_log(sqlite, master_key)
    try:
        put(first, "a", 1)
        put(second, "b", 1)
        put(first, "a", 1)
        assert anchored(first) == anchored(second) == second.tip()
        stale = Tip(1, b"\x11" * 32)
        assert first.anchor is not None
        first.anchor.advance(stale)  # a writer late with an older head changes nothing
        assert anchored(second) == second.tip() and second.head() == 3
    finally:
        first.close()
        second.close()


def test_a_torn_slot_leaves_the_previous_anchor(
    sqlite: SqliteBackend, master_key: MasterKey
) -> None:
    log = open_log(sqlite, master_key)
    put(log, "acme", 1)
    put(log, "acme", 1)
    tip = log.tip()
    log.close()
    path = sqlite.store.data_dir / f"{DATABASE}.db.anchor"
    data = bytearray(path.read_bytes())
    newest = 0 if int.from_bytes(data[8:16], "big") == tip.seq else 1
    data[newest * SLOT_BYTES + 20] ^= 0xFF  # the slot written last, half-written
    path.write_bytes(bytes(data))
    log = open_log(sqlite, master_key)  # the older slot (seq 1) still anchors: head ahead
    try:
        assert log.head() == 2
        assert anchored(log) == tip  # and the open re-anchored the head
    finally:
        log.close()


def test_an_anchor_without_the_master_key_does_not_verify(
    sqlite: SqliteBackend, master_key: MasterKey
) -> None:
    log = open_log(sqlite, master_key)
    put(log, "acme", 1)
    log.close()
    path = sqlite.store.data_dir / f"{DATABASE}.db.anchor"
    forged = Anchor(path, b"\x00" * 32, DATABASE, writable=True)  # someone else's key
    path.write_bytes(b"")
    forged.advance(Tip(0, b"\x00" * 32))
    forged.close()
    with pytest.raises(AnchorDamaged, match="does not verify"):
        open_log(sqlite, master_key)


def test_a_restore_starts_a_new_anchor(
    sqlite: SqliteBackend, master_key: MasterKey, tmp_path: Path
) -> None:
    log = open_log(sqlite, master_key)
    put(log, "acme", 2)
    log.recorder.backup_to(tmp_path / "copy.db", {"backup_info": b"{}"})
    put(log, "acme", 2)
    log.close()
    sqlite.store.restore(DATABASE, tmp_path / "copy.db")
    restored = open_log(sqlite, master_key)
    try:
        assert restored.head() == 2 and anchored(restored) == restored.tip()
    finally:
        restored.close()
    assert not (tmp_path / "copy.db.anchor").exists()  # a loose file keeps none


def test_only_sqlite_logs_of_a_store_have_an_anchor(
    backend: Backend, master_key: MasterKey
) -> None:
    """PostgreSQL's own WAL makes a commit durable or the server refuses to start: no
    anchor. A SQLite log of a store has one."""
    log = open_log(backend, master_key)
    try:
        assert (log.anchor is not None) == (backend.name == "sqlite")
    finally:
        log.close()
